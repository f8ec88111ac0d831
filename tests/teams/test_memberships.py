import threading

import pytest
from django.db import connection
from django.urls import reverse

from common.errors import ServiceError
from teams import services
from teams.models import AuditEvent, Membership, Role
from tests.factories import MembershipFactory, OrganizationFactory

pytestmark = pytest.mark.django_db


def m(org, user) -> Membership:
    return Membership.objects.get(organization=org, user=user)


def test_the_last_owner_cannot_leave(org, owner):
    with pytest.raises(ServiceError) as error:
        services.membership_remove(membership=m(org, owner), actor=m(org, owner))
    assert error.value.code == "last_owner"
    assert Membership.objects.filter(organization=org, user=owner).exists()


def test_an_owner_can_leave_when_another_owner_remains(org, owner, admin):
    Membership.objects.filter(user=admin).update(role=Role.OWNER)
    services.membership_remove(membership=m(org, owner), actor=m(org, owner))
    assert not Membership.objects.filter(organization=org, user=owner).exists()
    assert AuditEvent.objects.filter(action="member.left", target=owner.email).exists()


def test_a_member_leaves_through_the_page(client_for, org, owner, member):
    response = client_for(member).post(reverse("organization_leave", args=[org.slug]))
    assert response.url == reverse("home")
    assert not Membership.objects.filter(organization=org, user=member).exists()


def test_the_last_owner_sees_why_they_cannot_leave(client_for, org, owner):
    response = client_for(owner).post(reverse("organization_leave", args=[org.slug]), follow=True)
    assert b"transfer ownership" in response.content
    assert Membership.objects.filter(organization=org, user=owner).exists()


def test_an_admin_removes_a_member(client_for, org, admin, member):
    client_for(admin).post(reverse("membership_remove", args=[org.slug, m(org, member).code]))
    assert not Membership.objects.filter(user=member, organization=org).exists()
    assert AuditEvent.objects.filter(action="member.removed", actor=admin).exists()


def test_an_admin_cannot_remove_an_owner(org, owner, admin):
    with pytest.raises(ServiceError) as error:
        services.membership_remove(membership=m(org, owner), actor=m(org, admin))
    assert error.value.code == "forbidden"


def test_a_member_cannot_remove_anyone(client_for, org, member, admin):
    response = client_for(member).post(reverse("membership_remove", args=[org.slug, m(org, admin).code]))
    assert response.status_code == 403
    assert Membership.objects.filter(user=admin).exists()


def test_an_admin_changes_a_role(client_for, org, admin, member):
    client_for(admin).post(
        reverse("membership_role", args=[org.slug, m(org, member).code]), {"role": "billing"}
    )
    assert m(org, member).role == Role.BILLING
    event = AuditEvent.objects.get(action="member.role_changed")
    assert event.data == {"from": "member", "to": "billing"}


def test_an_admin_cannot_make_an_owner(org, admin, member):
    with pytest.raises(ServiceError):
        services.membership_change_role(membership=m(org, member), actor=m(org, admin), role=Role.OWNER)
    assert m(org, member).role == Role.MEMBER


def test_the_last_owner_cannot_be_demoted(org, owner):
    with pytest.raises(ServiceError) as error:
        services.membership_change_role(membership=m(org, owner), actor=m(org, owner), role=Role.ADMIN)
    assert error.value.code == "last_owner"


def test_ownership_transfer_swaps_roles(client_for, org, owner, member):
    client_for(owner).post(reverse("ownership_transfer", args=[org.slug]), {"member": m(org, member).code})
    assert m(org, member).role == Role.OWNER
    assert m(org, owner).role == Role.ADMIN
    assert AuditEvent.objects.filter(action="organization.ownership_transferred").exists()


def test_only_an_owner_transfers_ownership(client_for, org, owner, admin, member):
    response = client_for(admin).post(
        reverse("ownership_transfer", args=[org.slug]), {"member": m(org, member).code}
    )
    assert response.status_code == 403
    assert m(org, owner).role == Role.OWNER


def test_a_member_of_another_org_cannot_be_targeted(client_for, org, owner, outsider):
    foreign = Membership.objects.get(user=outsider)
    response = client_for(owner).post(
        reverse("ownership_transfer", args=[org.slug]), {"member": foreign.code}
    )
    assert response.status_code == 404
    assert Membership.objects.get(user=outsider).role == Role.OWNER


@pytest.mark.django_db(transaction=True)
def test_two_owners_leaving_at_once_leave_one_owner_behind():
    org = OrganizationFactory()
    first = MembershipFactory(organization=org, role=Role.OWNER)
    second = MembershipFactory(organization=org, role=Role.OWNER)
    barrier = threading.Barrier(2)
    outcomes = []

    def leave(membership):
        try:
            barrier.wait()
            services.membership_remove(membership=membership, actor=membership)
            outcomes.append("left")
        except ServiceError as error:
            outcomes.append(error.code)
        finally:
            connection.close()

    threads = [threading.Thread(target=leave, args=(ms,)) for ms in (first, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(outcomes) == ["last_owner", "left"]
    assert Membership.objects.filter(organization=org, role=Role.OWNER).count() == 1


# --- Roles are read under the lock ------------------------------------------------------------
# Each request loads the memberships it acts on before the service takes the lock; a change
# that commits in between must be seen, or "only an owner grants ownership" can be got around.


def test_it_reads_the_targets_role_under_the_lock(org, owner, admin, member):
    loaded_by_admin = m(org, member)  # Bob, a member when Adam's page loaded
    services.membership_change_role(membership=m(org, member), actor=m(org, owner), role=Role.OWNER)
    with pytest.raises(ServiceError) as error:
        services.membership_change_role(membership=loaded_by_admin, actor=m(org, admin), role=Role.MEMBER)
    assert error.value.code == "forbidden"
    assert m(org, member).role == Role.OWNER


def test_it_reads_the_actors_role_under_the_lock(org, owner, admin, member):
    Membership.objects.filter(organization=org, user=admin).update(role=Role.OWNER)
    adam_as_loaded = m(org, admin)  # an owner when his request began
    services.membership_change_role(membership=m(org, admin), actor=m(org, owner), role=Role.ADMIN)
    with pytest.raises(ServiceError) as error:
        services.membership_change_role(membership=m(org, member), actor=adam_as_loaded, role=Role.OWNER)
    assert error.value.code == "forbidden"
    assert m(org, member).role == Role.MEMBER


def test_it_reads_a_removed_members_role_under_the_lock(org, owner, admin, member):
    loaded_by_admin = m(org, member)
    services.membership_change_role(membership=m(org, member), actor=m(org, owner), role=Role.OWNER)
    with pytest.raises(ServiceError) as error:
        services.membership_remove(membership=loaded_by_admin, actor=m(org, admin))
    assert error.value.code == "forbidden"
    assert m(org, member).role == Role.OWNER


@pytest.mark.django_db(transaction=True)
def test_a_concurrent_promote_and_demote_never_lets_an_admin_take_ownership_away(org, owner, admin):
    from tests.races import race

    for round_ in range(5):
        target = MembershipFactory(organization=org, role=Role.MEMBER)
        by_owner, by_admin = m(org, target.user), m(org, target.user)  # both pages loaded now
        actors = {0: m(org, owner), 1: m(org, admin)}

        def job(index, by_owner=by_owner, by_admin=by_admin, actors=actors):
            if index == 0:
                return services.membership_change_role(membership=by_owner, actor=actors[0], role=Role.OWNER)
            return services.membership_change_role(membership=by_admin, actor=actors[1], role=Role.MEMBER)

        outcomes = race(2, job)
        assert not [o for o in outcomes if isinstance(o, Exception) and not isinstance(o, ServiceError)]
        # Whichever ran first, the owner's promotion stands: the admin may only demote a member.
        assert m(org, target.user).role == Role.OWNER, round_
