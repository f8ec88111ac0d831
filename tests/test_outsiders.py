"""Every organization-scoped page and API answers an outsider with 404 and leaks nothing."""

import pytest
from django.urls import URLPattern, URLResolver, get_resolver, reverse

from billing.models import Addon, AddonPurchase
from credits import services as credit_services
from credits.models import CreditPurchase, CreditRecharge
from teams import api_keys
from teams.models import Membership, Role
from tests.factories import CreditPackageFactory, InvitationFactory, ProjectFactory

pytestmark = pytest.mark.django_db

SECRET_NAME = "Top secret launch"


@pytest.fixture
def acme(org, owner, member):
    project = ProjectFactory(organization=org, name=SECRET_NAME)
    invitation = InvitationFactory(organization=org, email="dora@example.com")
    key, _ = api_keys.api_key_create(organization=org, actor=owner, name="server")
    return {
        "org_slug": org.slug,
        "project": project.code,
        "member": Membership.objects.get(user=member).code,
        "invitation": invitation.code,
        "key": key.code,
        "reservation": credit_services.credit_reservation_create(
            organization=org, amount=1, idempotency_key="outsiders"
        ).code,
        "addon": "extra_seats",
        "addon_purchase": AddonPurchase.objects.create(
            organization=org,
            addon=Addon.objects.get(key="extra_seats"),
            quantity=1,
            unit_amount=9900,
            currency="usd",
            stripe_checkout_session_id="cs_test_outsiders",
        ).code,
        "purchase": CreditPurchase.objects.create(
            organization=org,
            account=credit_services.credit_account_for(organization=org),
            package=CreditPackageFactory(),
            credits=1000,
            amount=1000,
            currency="usd",
        ).code,
        "recharge": CreditRecharge.objects.create(
            organization=org,
            account=credit_services.credit_account_for(organization=org),
            package=CreditPackageFactory(),
            credits=1000,
            amount=1000,
            currency="usd",
        ).code,
    }


# name -> (kwargs that the URL needs besides org_slug, methods to try)
PAGES = {
    "dashboard": ([], ["get"]),
    "organization_settings": ([], ["get", "post"]),
    "organization_delete": ([], ["post"]),
    "organization_two_factor": ([], ["post"]),
    "members": ([], ["get"]),
    "invitation_create": ([], ["post"]),
    "ownership_transfer": ([], ["post"]),
    "organization_leave": ([], ["post"]),
    "membership_role": (["member"], ["post"]),
    "membership_remove": (["member"], ["post"]),
    "invitation_resend": (["invitation"], ["post"]),
    "invitation_revoke": (["invitation"], ["post"]),
    "api_keys": ([], ["get", "post"]),
    "api_key_revoke": (["key"], ["post"]),
    "project_list": ([], ["get"]),
    "project_create": ([], ["get", "post"]),
    "project_detail": (["project"], ["get"]),
    "project_edit": (["project"], ["get", "post"]),
    "project_delete": (["project"], ["post"]),
    "generation_create": (["project"], ["post"]),
    "billing": ([], ["get"]),
    "billing_upcoming": ([], ["get"]),
    "billing_invoices": ([], ["get"]),
    "billing_notices": ([], ["get", "post"]),
    "billing_checkout": ([], ["post"]),
    "billing_success": ([], ["get"]),
    "billing_change": ([], ["get", "post"]),
    "billing_cancel": ([], ["post"]),
    "billing_resume": ([], ["post"]),
    "billing_refund": ([], ["post"]),
    "billing_portal": ([], ["post"]),
    "billing_details": ([], ["post"]),
    "billing_seat_preview": ([], ["get"]),
    "billing_seats_prepaid": ([], ["get", "post"]),
    "billing_addon_buy": (["addon"], ["post"]),
    "billing_addon_add": (["addon"], ["get", "post"]),
    "billing_addon_bought": (["addon_purchase"], ["get"]),
    "billing_addon_remove": (["addon_purchase"], ["post"]),
    "credits": ([], ["get"]),
    "credits_widget": ([], ["get"]),
    "credits_settings": ([], ["post"]),
    "credits_buy": ([], ["post"]),
    "credits_purchase": (["purchase"], ["get"]),
    "credits_export": ([], ["get"]),
    "credits_recharge": (["recharge"], ["get", "post"]),
    "credits_card": ([], ["get", "post"]),
    "usage": ([], ["get"]),
    "usage_export": ([], ["get"]),
}


# Objects named in URLs by something other than their `code`.
URL_KWARGS = {"addon": "key"}


def _url(name, acme):
    extra, _ = PAGES[name]
    kwargs = {"org_slug": acme["org_slug"]}
    if extra:
        kwargs[URL_KWARGS.get(extra[0], "code")] = acme[extra[0]]
    return reverse(name, kwargs=kwargs)


def _org_scoped_names():
    names = set()

    def walk(patterns):
        for p in patterns:
            if isinstance(p, URLResolver):
                walk(p.url_patterns)
            elif isinstance(p, URLPattern) and "org_slug" in str(p.pattern):
                names.add(p.name)

    walk(get_resolver().url_patterns)
    return names


def test_every_org_scoped_page_is_listed_here():
    assert _org_scoped_names() == set(PAGES)


@pytest.mark.parametrize(("name", "method"), [(n, m) for n, (_, methods) in PAGES.items() for m in methods])
def test_an_outsider_gets_404_and_changes_nothing(client_for, acme, outsider, name, method):
    client = client_for(outsider)
    before = Membership.objects.filter(organization__slug="acme").count()
    response = getattr(client, method)(_url(name, acme), {"name": "x", "role": "admin"})
    assert response.status_code == 404
    assert SECRET_NAME.encode() not in response.content
    assert Membership.objects.filter(organization__slug="acme").count() == before


@pytest.mark.parametrize("name", [n for n, (_, methods) in PAGES.items() if "get" in methods])
def test_an_anonymous_visitor_is_sent_to_log_in(client, acme, name):
    response = client.get(_url(name, acme))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login"))


def test_a_member_sees_the_pages_for_members(client_for, acme, member):
    client = client_for(member)
    for name in ("dashboard", "members", "project_list", "project_detail"):
        assert client.get(_url(name, acme)).status_code == 200, name
    for name in ("organization_settings", "api_keys"):
        assert client.get(_url(name, acme)).status_code == 403, name


# --- API ----------------------------------------------------------------------------------

API = [
    ("get", "/api/v1/projects/"),
    ("post", "/api/v1/projects/"),
    ("get", "/api/v1/projects/{project}/"),
    ("patch", "/api/v1/projects/{project}/"),
    ("delete", "/api/v1/projects/{project}/"),
    ("get", "/api/v1/projects/{project}/generations/"),
    ("post", "/api/v1/projects/{project}/generations/"),
    ("get", "/api/v1/entitlements"),
    ("post", "/api/v1/entitlements/check"),
    ("post", "/api/v1/usage/events"),
    ("get", "/api/v1/usage/summary"),
    ("get", "/api/v1/billing/status"),
    ("post", "/api/v1/billing/checkout"),
    ("post", "/api/v1/billing/portal"),
    ("get", "/api/v1/credits/balance"),
    ("post", "/api/v1/credits/consume"),
    ("post", "/api/v1/credits/reservations"),
    ("post", "/api/v1/credits/reservations/{reservation}/confirm"),
    ("post", "/api/v1/credits/reservations/{reservation}/cancel"),
    ("get", "/api/v1/credits/transactions"),
    ("get", "/api/v1/credits/packages"),
    ("post", "/api/v1/credits/purchase"),
    ("post", "/api/v1/credits/estimate"),
    ("post", "/api/v1/credits/adjustments"),
]


@pytest.mark.parametrize(("method", "path"), API)
def test_an_outsider_session_cannot_reach_another_orgs_api(api_client, acme, outsider, method, path):
    api_client.force_authenticate(outsider)
    url = path.format(**acme) + "?org=acme"
    response = getattr(api_client, method)(url, {"name": "x", "prompt": "x"}, format="json")
    assert response.status_code == 404
    assert response.json()["code"] == "not_found"
    assert SECRET_NAME not in response.content.decode()


@pytest.mark.parametrize(("method", "path"), API)
def test_another_orgs_key_cannot_reach_acme(api_client, acme, outsider, method, path, stripe_sim):
    other = Membership.objects.get(user=outsider).organization
    _, secret = api_keys.api_key_create(organization=other, actor=outsider, name="theirs")
    api_client.credentials(HTTP_AUTHORIZATION=f"Bearer {secret}")
    response = getattr(api_client, method)(path.format(**acme), {"name": "x"}, format="json")
    if "{" not in path:
        # Their key acts on their own organization, never Acme's.
        assert SECRET_NAME not in response.content.decode()
    else:
        assert response.status_code == 404


@pytest.mark.parametrize(("method", "path"), API)
def test_an_anonymous_caller_gets_401(api_client, acme, method, path):
    response = getattr(api_client, method)(path.format(**acme), {}, format="json")
    assert response.status_code in (401, 403)
    assert response.json()["code"] == "not_authenticated"


def test_role_names_rank_in_order():
    assert [Role.rank(r) for r in (Role.MEMBER, Role.BILLING, Role.ADMIN, Role.OWNER)] == [0, 1, 2, 3]
