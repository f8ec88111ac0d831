"""An organization may require a second factor of its owners, admins and billing managers."""

import pytest
from django.urls import reverse

from teams.models import AuditEvent, Organization, Role
from tests.factories import MembershipFactory, OrganizationFactory
from tests.teams.test_two_factor import enrolled

pytestmark = pytest.mark.django_db


def _require(org):
    Organization.objects.filter(pk=org.pk).update(require_two_factor=True)


def _switch(client, org, on=True):
    data = {"require_two_factor": "on"} if on else {}
    return client.post(reverse("organization_two_factor", args=[org.slug]), data)


def test_an_owner_turns_it_on_only_with_two_factor_of_their_own(client_for, org, owner):
    client = client_for(owner)
    response = _switch(client, org)
    assert response.status_code == 302
    org.refresh_from_db()
    assert not org.require_two_factor
    enrolled(owner)
    _switch(client, org)
    org.refresh_from_db()
    assert org.require_two_factor
    assert AuditEvent.objects.filter(organization=org, action="organization.two_factor_required").count() == 1
    _switch(client, org, on=False)
    org.refresh_from_db()
    assert not org.require_two_factor


def test_an_admin_may_turn_it_on(client_for, org, admin):
    enrolled(admin)
    _switch(client_for(admin), org)
    org.refresh_from_db()
    assert org.require_two_factor


@pytest.mark.parametrize("role", ["billing_manager", "member"], ids=["billing", "member"])
def test_billing_managers_and_members_cannot_switch_it(client_for, org, role, request):
    user = request.getfixturevalue(role)
    enrolled(user)
    assert _switch(client_for(user), org).status_code == 403
    org.refresh_from_db()
    assert not org.require_two_factor


def test_an_outsider_cannot_switch_it(client_for, org, outsider):
    enrolled(outsider)
    assert _switch(client_for(outsider), org).status_code == 404
    org.refresh_from_db()
    assert not org.require_two_factor


@pytest.mark.parametrize("role", ["owner", "admin", "billing_manager"], ids=["owner", "admin", "billing"])
def test_privileged_members_without_it_are_sent_to_set_it_up(client_for, org, role, request):
    user = request.getfixturevalue(role)
    _require(org)
    client = client_for(user)
    for page in ("dashboard", "members", "billing", "credits"):
        response = client.get(reverse(page, args=[org.slug]))
        assert response.status_code == 302, page
        assert response["Location"] == reverse("two_factor_required") + "?org=acme"
    page = client.get(response["Location"])
    assert page.status_code == 403
    text = page.content.decode()
    assert "Acme requires its owners, admins and billing managers" in text
    assert reverse("account_two_factor") in text
    # The API answers for itself.
    api = client.get("/api/v1/credits/balance/", HTTP_X_TALLY_ORG="acme")
    assert api.status_code == 403 and api.json()["code"] == "two_factor_required"


def test_with_two_factor_they_go_in(client_for, org, admin):
    _require(org)
    enrolled(admin)
    client = client_for(admin)
    assert client.get(reverse("members", args=[org.slug])).status_code == 200
    # The explanation page sends someone it does not concern back to the organization.
    response = client.get(reverse("two_factor_required") + "?org=acme")
    assert response.status_code == 302 and response["Location"] == org.get_absolute_url()


def test_members_are_not_affected(client_for, org, member):
    _require(org)
    client = client_for(member)
    assert client.get(reverse("members", args=[org.slug])).status_code == 200
    assert client.get(reverse("dashboard", args=[org.slug])).status_code == 200


def test_other_organizations_are_not_affected(client_for, org, owner):
    _require(org)
    client = client_for(owner)
    other = MembershipFactory(
        user=owner, role=Role.OWNER, organization=OrganizationFactory(slug="beta")
    ).organization
    assert client.get(reverse("members", args=[other.slug])).status_code == 200
    assert client.get(reverse("account_two_factor")).status_code == 200


def test_the_explanation_names_no_organization_to_an_outsider(client_for, org, outsider):
    _require(org)
    response = client_for(outsider).get(reverse("two_factor_required") + "?org=acme")
    assert response.status_code == 403 and "Acme" not in response.content.decode()
    assert client_for(outsider).get(reverse("members", args=[org.slug])).status_code == 404
