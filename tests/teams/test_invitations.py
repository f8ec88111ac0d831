import time
from datetime import timedelta

import pytest
from django.core import signing
from django.urls import reverse
from django.utils import timezone

from common.errors import ServiceError
from teams import services
from teams.models import AuditEvent, Invitation, InvitationStatus, Membership, Role
from tests.factories import InvitationFactory, UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def owner_membership(org, owner):
    return Membership.objects.get(organization=org, user=owner)


def invite(org, owner, email="dora@example.com", role=Role.MEMBER):
    return services.invitation_create(organization=org, actor=owner, email=email, role=role)


def test_it_emails_a_signed_link_once_the_invitation_is_committed(
    org, owner, mailoutbox, django_capture_on_commit_callbacks
):
    with django_capture_on_commit_callbacks(execute=True):
        invitation = invite(org, owner, "Dora@Example.com")
    assert invitation.email == "dora@example.com"
    assert len(mailoutbox) == 1
    assert mailoutbox[0].to == ["dora@example.com"]
    assert invitation.get_accept_url() in mailoutbox[0].body
    assert Invitation.from_token(invitation.token) == invitation
    assert AuditEvent.objects.filter(action="invitation.created", target="dora@example.com").exists()


def test_its_link_is_one_value_for_the_life_of_the_invitation(org, owner, monkeypatch):
    # The email, the resend page and the audit trail must all show the same link; a token that
    # embedded the signing time changed every second and the email no longer matched.
    invitation = invite(org, owner)
    first = invitation.get_accept_url()
    later = time.time() + 3600
    monkeypatch.setattr(signing.time, "time", lambda: later)
    assert invitation.get_accept_url() == first
    assert Invitation.from_token(invitation.token) == invitation


def test_links_emailed_before_the_stable_format_still_open_their_invitation(org, owner):
    invitation = invite(org, owner)
    legacy = signing.dumps({"c": str(invitation.code), "n": invitation.nonce}, salt=Invitation.TOKEN_SALT)
    assert Invitation.from_token(legacy) == invitation
    assert Invitation.from_token(legacy[:-2] + "xx") is None


def test_it_expires_invitations_after_seven_days(org, owner):
    invitation = invite(org, owner)
    assert timedelta(days=6, hours=23) < invitation.expires_at - timezone.now() <= timedelta(days=7)


def test_it_rejects_a_tampered_token(org, owner):
    invitation = invite(org, owner)
    assert Invitation.from_token(invitation.token[:-2] + "xx") is None
    assert Invitation.from_token("garbage") is None


def test_it_accepts_for_the_invited_account(org, owner):
    invitation = invite(org, owner, role=Role.BILLING)
    dora = UserFactory(email="dora@example.com")
    membership = services.invitation_accept(invitation=invitation, user=dora)
    assert membership.role == Role.BILLING
    invitation.refresh_from_db()
    assert invitation.status == InvitationStatus.ACCEPTED
    assert invitation.accepted_by == dora


def test_it_refuses_an_expired_invitation(org, owner):
    invitation = invite(org, owner)
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now())
    invitation.refresh_from_db()
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=invitation, user=UserFactory(email="dora@example.com"))
    assert error.value.code == "invitation_expired"
    assert not Membership.objects.filter(user__email="dora@example.com", organization=org).exists()


def test_it_refuses_a_revoked_invitation(org, owner):
    invitation = invite(org, owner)
    services.invitation_revoke(invitation=invitation, actor=owner)
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=invitation, user=UserFactory(email="dora@example.com"))
    assert error.value.code == "invitation_revoked"


def test_it_refuses_to_reuse_an_accepted_invitation(org, owner):
    invitation = invite(org, owner)
    dora = UserFactory(email="dora@example.com")
    services.invitation_accept(invitation=invitation, user=dora)
    Membership.objects.filter(user=dora, organization=org).delete()
    invitation.refresh_from_db()
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=invitation, user=dora)
    assert error.value.code == "invitation_used"
    assert not Membership.objects.filter(user=dora, organization=org).exists()


def test_it_refuses_a_stale_copy_of_an_invitation_accepted_elsewhere(org, owner):
    """Two tabs load the same invitation; the second accept loses the conditional update."""
    invitation = invite(org, owner)
    stale = Invitation.objects.get(pk=invitation.pk)
    dora = UserFactory(email="dora@example.com")
    services.invitation_accept(invitation=invitation, user=dora)
    Membership.objects.filter(user=dora, organization=org).delete()
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=stale, user=dora)
    assert error.value.code == "invitation_used"


def test_it_refuses_the_wrong_account(org, owner):
    invitation = invite(org, owner)
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=invitation, user=UserFactory(email="eve@example.com"))
    assert error.value.code == "wrong_account"
    assert Invitation.objects.get(pk=invitation.pk).status == InvitationStatus.PENDING


def test_it_refuses_to_invite_an_existing_member(org, owner, member):
    with pytest.raises(ServiceError) as error:
        invite(org, owner, member.email.upper())
    assert error.value.code == "already_member"
    assert not Invitation.objects.exists()


def test_it_refuses_to_accept_when_already_a_member(org, owner, member):
    invitation = InvitationFactory(organization=org, email=member.email)
    with pytest.raises(ServiceError) as error:
        services.invitation_accept(invitation=invitation, user=member)
    assert error.value.code == "already_member"


def test_it_refuses_a_second_open_invitation_for_one_address(org, owner):
    invite(org, owner)
    with pytest.raises(ServiceError) as error:
        invite(org, owner)
    assert error.value.code == "already_invited"
    assert Invitation.objects.count() == 1


def test_it_replaces_an_expired_invitation_with_a_new_one(org, owner):
    first = invite(org, owner)
    Invitation.objects.filter(pk=first.pk).update(expires_at=timezone.now())
    second = invite(org, owner)
    assert second.pk != first.pk
    assert Invitation.objects.get(pk=first.pk).status == InvitationStatus.REVOKED


def test_it_refuses_to_invite_an_owner(org, owner):
    with pytest.raises(ServiceError) as error:
        invite(org, owner, role=Role.OWNER)
    assert error.value.code == "invalid_role"


def test_resending_rotates_the_link_and_extends_the_expiry(
    org, owner, mailoutbox, django_capture_on_commit_callbacks
):
    invitation = invite(org, owner)
    old_token = invitation.token
    Invitation.objects.filter(pk=invitation.pk).update(expires_at=timezone.now() + timedelta(hours=1))
    invitation.refresh_from_db()
    with django_capture_on_commit_callbacks(execute=True):
        services.invitation_resend(invitation=invitation, actor=owner)
    assert Invitation.from_token(old_token) is None
    assert Invitation.from_token(invitation.token) == invitation
    assert invitation.expires_at - timezone.now() > timedelta(days=6)
    assert invitation.get_accept_url() in mailoutbox[-1].body


def test_it_cannot_resend_or_revoke_twice(org, owner):
    invitation = invite(org, owner)
    services.invitation_revoke(invitation=invitation, actor=owner)
    for action in (services.invitation_revoke, services.invitation_resend):
        with pytest.raises(ServiceError) as error:
            action(invitation=invitation, actor=owner)
        assert error.value.code == "invitation_closed"


# --- the accept page ----------------------------------------------------------------------


def test_the_accept_page_asks_a_visitor_to_sign_up_with_the_invited_email(client, org, owner):
    invitation = invite(org, owner)
    response = client.get(invitation.get_accept_url())
    assert response.status_code == 200
    assert b"Create an account" in response.content
    assert b"email=dora%40example.com" in response.content


def test_a_visitor_signs_up_and_comes_back_to_accept(client, org, owner):
    invitation = invite(org, owner)
    url = invitation.get_accept_url()
    response = client.post(
        f"{reverse('signup')}?next={url}",
        {"email": "dora@example.com", "password": "a-long-enough-pass", "next": url},
    )
    assert response.url == url
    response = client.post(url)
    assert response.status_code == 302
    assert response.url == f"/o/{org.slug}/"
    assert Membership.objects.filter(organization=org, user__email="dora@example.com").exists()


def test_the_accept_page_explains_the_wrong_account(client_for, org, owner, outsider):
    invitation = invite(org, owner)
    client = client_for(outsider)
    response = client.post(invitation.get_accept_url())
    assert response.status_code == 403
    assert b"charlie@example.com" in response.content
    assert not Membership.objects.filter(organization=org, user=outsider).exists()


def test_the_accept_page_reports_a_revoked_invitation(client, org, owner):
    invitation = invite(org, owner)
    services.invitation_revoke(invitation=invitation, actor=owner)
    response = client.get(invitation.get_accept_url())
    assert response.status_code == 410
    assert b"withdrawn" in response.content


def test_the_accept_page_rejects_an_unknown_token(client):
    assert client.get(reverse("invitation_accept", args=["nope"])).status_code == 404


def test_a_member_cannot_invite(client_for, org, member):
    response = client_for(member).post(
        reverse("invitation_create", args=[org.slug]), {"email": "x@example.com", "role": "member"}
    )
    assert response.status_code == 403
    assert not Invitation.objects.exists()


def test_an_admin_invites_through_htmx_and_gets_the_partial(client_for, org, admin):
    response = client_for(admin).post(
        reverse("invitation_create", args=[org.slug]),
        {"email": "dora@example.com", "role": "admin"},
        HTTP_HX_REQUEST="true",
    )
    assert response.status_code == 200
    assert b'id="invitations"' in response.content
    assert b"<html" not in response.content
    assert b"dora@example.com" in response.content
    assert Invitation.objects.get().role == Role.ADMIN


def test_an_invalid_invitation_form_shows_the_error_and_changes_nothing(client_for, org, owner):
    response = client_for(owner).post(
        reverse("invitation_create", args=[org.slug]), {"email": "not-an-email", "role": "member"}
    )
    assert response.status_code == 400
    assert b"Enter a valid email address" in response.content
    assert not Invitation.objects.exists()
