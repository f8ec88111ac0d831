"""Add-ons and prepaid seats bought after subscribing, from the billing page, against the Stripe
simulator: a one-time pack through Checkout in payment mode, granted once however its webhook is
delivered; a recurring add-on as a subscription item, with the proration Stripe invoices; a
prepaid-seat plan whose invitations stop at the seats bought."""

import time
import tomllib
from datetime import UTC, datetime

import pytest
from django.conf import settings
from django.urls import reverse
from djstripe.models import Event

from billing import entitlements, seats, subscriptions
from billing.catalog import CatalogError, catalog_apply, catalog_push, load_catalog, parse_catalog
from billing.catalog.export import catalog_export_toml
from billing.entitlements.gating import EntitlementError
from billing.gateway.client import stripe_client
from billing.models import AddonPurchase, EntitlementGrant, OrgSubscription, Plan
from billing.subscriptions import addons
from billing.webhooks import dispatch
from common.errors import ServiceError
from common.formatting import money as money_filter
from teams import services as team_services
from teams.models import AuditEvent
from tests.billing.conftest import pay_hosted_checkout, subscribe
from tests.factories import MembershipFactory

pytestmark = pytest.mark.django_db

APRIL_1 = int(datetime(2026, 4, 1, tzinfo=UTC).timestamp())
APRIL_16 = int(datetime(2026, 4, 16, tzinfo=UTC).timestamp())  # 15 of April's 30 days left


@pytest.fixture
def shop(stripe_sim, settings):
    settings.SITE_URL = "http://testserver"
    catalog_push()
    return stripe_client()


def on_clock(org, plan_key: str, *, at: int = APRIL_1, seats: int = 1) -> tuple[OrgSubscription, str]:
    clock = stripe_client().v1.test_helpers.test_clocks.create({"frozen_time": at}).id
    return subscribe(plan_key, organization=org, clock=clock, seats=seats, sync=True), clock


def billing_page(client, org) -> str:
    return client.get(reverse("billing", args=[org.slug])).content.decode()


def buy(client, org, key: str, quantity="1"):
    return client.post(reverse("billing_addon_buy", args=[org.slug, key]), {"quantity": quantity})


def addon_grants(org) -> list[int]:
    return list(
        EntitlementGrant.objects.filter(organizations=org, source="addon").values_list("amount", flat=True)
    )


# --- One-time add-ons: the five-seat pack ---------------------------------------------------


def test_it_lists_the_add_ons_the_plan_allows_with_a_quantity(shop, client_for, org, owner):
    on_clock(org, "pro_monthly")
    html = billing_page(client_for(owner), org)
    assert 'id="addon-extra_seats"' in html and 'data-testid="buy-extra_seats"' in html
    assert 'name="quantity" min="1" max="10"' in html  # max_quantity = 10
    assert 'id="addon-extra_projects"' in html  # recurring, monthly like Pro monthly
    assert 'data-testid="quantity-premium_onboarding"' not in html  # max_quantity = 1


def test_it_offers_no_seat_pack_on_unlimited_seats_nor_a_monthly_add_on_yearly(shop, client_for, org, owner):
    on_clock(org, "team_yearly")
    html = billing_page(client_for(owner), org)
    assert 'id="addon-extra_seats"' not in html  # Team seats are unlimited
    assert 'id="addon-extra_projects"' not in html  # Team projects are unlimited, and it is monthly
    assert 'id="addon-premium_onboarding"' in html


def test_a_subscriber_buys_the_five_seat_pack_from_the_billing_page(stripe_world, client_for, org, owner):
    subscribe("pro_monthly", organization=org, clock=stripe_world.clock, sync=True)
    assert entitlements.check(org, "team_members", 0).limit == 10
    client = client_for(owner)
    assert 'data-testid="buy-extra_seats"' in billing_page(client, org)

    to_stripe = buy(client, org, "extra_seats")
    assert to_stripe.status_code == 302 and "/checkout/" in to_stripe.headers["Location"]
    purchase = AddonPurchase.objects.get(organization=org)
    assert (purchase.status, purchase.quantity, purchase.amount) == ("pending", 1, 9900)
    session = stripe_world.client.v1.checkout.sessions.retrieve(purchase.stripe_checkout_session_id)
    assert (session.mode, session.amount_total) == ("payment", 9900)

    paid = pay_hosted_checkout(to_stripe.headers["Location"])
    assert paid.status_code == 303
    assert paid.headers["Location"].endswith(f"/o/acme/billing/addons/bought/{purchase.code}/")
    purchase.refresh_from_db()
    assert purchase.status == "granted"  # by the webhook
    assert entitlements.check(org, "team_members", 0).limit == 15
    assert addon_grants(org) == [5]

    # The person's return, and every webhook delivered again, grant nothing more.
    back = client.get(paid.headers["Location"].replace(stripe_world_site(), ""), follow=True)
    assert "is yours" in back.content.decode()
    for event in Event.objects.filter(type="checkout.session.completed"):
        dispatch.handle(event.id)
    subscriptions.checkout_complete(session_id=purchase.stripe_checkout_session_id)
    assert addon_grants(org) == [5]
    assert entitlements.check(org, "team_members", 0).limit == 15


def stripe_world_site() -> str:
    return settings.SITE_URL


def test_the_return_from_checkout_grants_once_before_any_webhook(
    shop, client_for, org, owner, django_capture_on_commit_callbacks
):
    on_clock(org, "pro_monthly")
    client = client_for(owner)
    to_stripe = buy(client, org, "extra_seats", "2")
    paid = pay_hosted_checkout(to_stripe.headers["Location"])  # no webhook endpoint here
    purchase = AddonPurchase.objects.get(organization=org)
    assert purchase.status == "pending"
    back = paid.headers["Location"].removeprefix("http://testserver")
    for _ in range(2):
        with django_capture_on_commit_callbacks(execute=True):
            assert client.get(back).status_code == 302
    subscriptions.checkout_complete(session_id=purchase.stripe_checkout_session_id)  # the late webhook
    assert addon_grants(org) == [10]
    assert entitlements.check(org, "team_members", 0).limit == 20


def test_an_unpaid_checkout_grants_nothing(shop, client_for, org, owner):
    on_clock(org, "pro_monthly")
    client = client_for(owner)
    buy(client, org, "extra_seats")
    purchase = AddonPurchase.objects.get(organization=org)
    assert client.get(reverse("billing_addon_bought", args=[org.slug, purchase.code])).status_code == 302
    purchase.refresh_from_db()
    assert purchase.status == "pending" and addon_grants(org) == []


def test_an_expired_add_on_checkout_is_recorded_abandoned(shop, client_for, org, owner):
    on_clock(org, "pro_monthly")
    buy(client_for(owner), org, "extra_seats")
    purchase = AddonPurchase.objects.get(organization=org)
    shop.v1.checkout.sessions.expire(purchase.stripe_checkout_session_id)
    subscriptions.checkout_expired(session_id=purchase.stripe_checkout_session_id)
    purchase.refresh_from_db()
    assert purchase.status == "abandoned" and addon_grants(org) == []


@pytest.mark.parametrize(
    ("key", "quantity", "code", "field"),
    [
        ("extra_seats", "many", "invalid_quantity", "quantity"),
        ("extra_seats", "11", "invalid_quantity", "quantity"),  # above max_quantity
        ("extra_seats", "0", "invalid_quantity", "quantity"),
        ("extra_seats", "-1", "invalid_quantity", "quantity"),
        ("extra_seats", "9" * 40, "invalid_quantity", "quantity"),
        ("no-such-addon", "1", "unknown_addon", "addon"),
        ("premium_onboarding", "2", "invalid_quantity", "quantity"),
    ],
)
def test_it_refuses_malformed_purchases_and_changes_nothing(
    shop, client_for, org, owner, key, quantity, code, field
):
    on_clock(org, "pro_monthly")
    refused = buy(client_for(owner), org, key, quantity)
    html = refused.content.decode()
    assert refused.status_code == 400
    assert f'data-code="{code}"' in html and f'data-field="{field}"' in html
    assert not AddonPurchase.objects.exists()


def test_it_refuses_an_add_on_the_plan_does_not_allow(shop, client_for, org, owner):
    on_clock(org, "team_monthly")
    refused = buy(client_for(owner), org, "extra_seats")
    assert refused.status_code == 400 and b'data-code="unknown_addon"' in refused.content
    assert not AddonPurchase.objects.exists()


def test_only_owners_admins_and_billing_managers_may_buy(
    shop, client_for, org, owner, admin, billing_manager, member, outsider
):
    on_clock(org, "pro_monthly")
    member_page = billing_page(client_for(member), org)
    assert 'id="addon-extra_seats"' in member_page and 'data-testid="buy-extra_seats"' not in member_page
    assert buy(client_for(member), org, "extra_seats").status_code == 403
    assert buy(client_for(outsider), org, "extra_seats").status_code == 404
    assert not AddonPurchase.objects.exists()
    for allowed in (admin, billing_manager):
        assert buy(client_for(allowed), org, "extra_seats").status_code == 302
    assert AddonPurchase.objects.count() == 2


def test_outsiders_and_members_reach_no_add_on_or_seat_view(shop, client_for, org, owner, member, outsider):
    on_clock(org, "pro_monthly")
    buy(client_for(owner), org, "extra_seats")
    code = AddonPurchase.objects.get().code
    views = [
        ("post", reverse("billing_addon_buy", args=[org.slug, "extra_seats"])),
        ("get", reverse("billing_addon_add", args=[org.slug, "extra_projects"])),
        ("post", reverse("billing_addon_add", args=[org.slug, "extra_projects"])),
        ("get", reverse("billing_addon_bought", args=[org.slug, code])),
        ("post", reverse("billing_addon_remove", args=[org.slug, code])),
        ("get", reverse("billing_seats_prepaid", args=[org.slug])),
        ("post", reverse("billing_seats_prepaid", args=[org.slug])),
    ]
    for user, status in ((outsider, 404), (member, 403)):
        client = client_for(user)
        for method, url in views:
            assert getattr(client, method)(url).status_code == status, (user.email, method, url)
    assert AddonPurchase.objects.count() == 1


def test_another_organizations_purchase_is_not_found(shop, client_for, org, owner, outsider):
    on_clock(org, "pro_monthly")
    buy(client_for(owner), org, "extra_seats")
    code = AddonPurchase.objects.get().code
    other = outsider.memberships.get().organization
    assert (
        client_for(outsider).get(reverse("billing_addon_bought", args=[other.slug, code])).status_code == 404
    )


# --- A refusal leads to the buy button ------------------------------------------------------


def test_the_member_limit_refusal_leads_straight_to_the_seat_pack_buy_button(shop, client_for, org, owner):
    on_clock(org, "pro_monthly")
    MembershipFactory.create_batch(9, organization=org)  # Pro: ten members
    with pytest.raises(EntitlementError) as refused:
        team_services.invitation_create(organization=org, actor=owner, email="eleven@example.com")
    upgrade = refused.value.decision.upgrade
    assert (upgrade.kind, upgrade.key, upgrade.quantity) == ("addon", "extra_seats", 1)
    assert upgrade.url == "/o/acme/billing/?quantity=1#addon-extra_seats"
    client = client_for(owner)
    members = client.post(
        reverse("invitation_create", args=[org.slug]), {"email": "eleven@example.com", "role": "member"}
    )
    assert b'href="/o/acme/billing/?quantity=1#addon-extra_seats"' in members.content
    page = client.get(upgrade.url.split("#")[0], {"quantity": "1"}).content.decode()
    assert 'id="addon-extra_seats"' in page and 'data-testid="buy-extra_seats"' in page


# --- Recurring add-ons ----------------------------------------------------------------------


def proration_lines(invoice) -> list[int]:
    return [line.amount for line in invoice.lines.data if addons._is_proration(line)]


def test_a_recurring_add_on_is_added_with_the_proration_stripe_invoices_then_removed(
    shop, client_for, org, owner, django_capture_on_commit_callbacks
):
    # On a clock at today's date: what the add-on grants is dated by the real clock.
    start = int(time.time())
    sub, clock = on_clock(org, "pro_monthly", at=start)
    shop.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": start + 15 * 86400})
    client = client_for(owner)
    assert entitlements.check(org, "projects", 0).limit == 5

    to_confirm = buy(client, org, "extra_projects", "2")
    assert to_confirm.status_code == 302
    confirm = client.get(to_confirm.headers["Location"])
    html = confirm.content.decode()
    shown = confirm.context["preview"].prorated
    assert 0 < shown < 2000  # the rest of the month for two packs
    assert f'data-testid="prorated">{money(shown)}<' in html
    code = confirm.context["code"]
    form = {"quantity": "2", "code": str(code), "proration_date": confirm.context["preview"].proration_date}
    with django_capture_on_commit_callbacks(execute=True):  # the cached limits are dropped
        added = client.post(to_confirm.headers["Location"].split("?")[0], form)
    assert added.status_code == 302
    client.post(to_confirm.headers["Location"].split("?")[0], form)  # sent twice: one purchase
    purchase = AddonPurchase.objects.get(organization=org)
    assert purchase.status == "granted" and purchase.stripe_subscription_item_id
    remote = shop.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    items = {i.price.id: i.quantity for i in remote["items"].data}
    assert items[purchase.addon.stripe_price_id] == 2
    assert entitlements.check(org, "projects", 0).limit == 5 + 20

    # The renewal invoices exactly the proration shown, and the add-on's next month.
    sub.refresh_from_db()
    shop.v1.test_helpers.test_clocks.advance(
        clock, {"frozen_time": int(sub.current_period_end.timestamp()) + 60}
    )
    renewal = shop.v1.invoices.list({"subscription": sub.stripe_subscription_id, "limit": 1}).data[0]
    assert sum(proration_lines(renewal)) == shown
    assert renewal.amount_due == 4900 + 2000 + shown
    subscriptions.subscription_sync(subscription_id=sub.stripe_subscription_id)

    # Removed: not billed again, no credit, the projects stay until the period paid for ends.
    page = billing_page(client, org)
    assert "Remove at period end" in page
    with django_capture_on_commit_callbacks(execute=True):
        removed = client.post(reverse("billing_addon_remove", args=[org.slug, purchase.code]))
    assert removed.status_code == 302
    purchase.refresh_from_db()
    sub.refresh_from_db()
    assert purchase.status == "ending" and purchase.ends_at == sub.current_period_end
    remote = shop.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert purchase.addon.stripe_price_id not in {i.price.id for i in remote["items"].data}
    upcoming = shop.v1.invoices.create_preview({"customer": remote.customer, "subscription": remote.id})
    assert upcoming.amount_due == 4900 and proration_lines(upcoming) == []
    assert entitlements.check(org, "projects", 0).limit == 25
    after = sub.current_period_end.replace(microsecond=0)
    assert entitlements.check(org, "projects", 0, now=after).limit == 5
    assert client.post(reverse("billing_addon_remove", args=[org.slug, purchase.code])).status_code == 302
    assert AddonPurchase.objects.get().status == "ending"  # removing twice is removing once


def money(cents: int) -> str:
    return money_filter(cents, "usd")


def test_a_recurring_add_on_needs_a_subscription(shop, client_for, org, owner):
    refused = client_for(owner).get(reverse("billing_addon_add", args=[org.slug, "extra_projects"]))
    assert refused.status_code == 400 and b'data-code="unknown_addon"' in refused.content


def test_a_confirmation_without_its_code_is_refused(shop, client_for, org, owner):
    on_clock(org, "pro_monthly")
    url = reverse("billing_addon_add", args=[org.slug, "extra_projects"])
    refused = client_for(owner).post(url, {"quantity": "1", "code": "not-a-uuid"})
    assert refused.status_code == 400 and b'data-field="code"' in refused.content
    assert not AddonPurchase.objects.exists()


# --- Prepaid seats --------------------------------------------------------------------------


@pytest.fixture
def prepaid(shop):
    Plan.objects.filter(key="platform_monthly").update(seat_mode="prepaid")
    entitlements.invalidate_catalog()


def seat_item_quantity(client, sub) -> int:
    remote = client.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    line = sub.plan.seat_item()
    return next(i.quantity for i in remote["items"].data if i.price.id == line.stripe_price_id)


def test_a_prepaid_seat_organization_is_refused_the_seat_beyond_its_count_and_offered_more(
    prepaid, shop, client_for, org, owner, member
):
    sub, _ = on_clock(org, "platform_monthly", seats=3)
    assert sub.seats == 3
    team_services.invitation_create(organization=org, actor=owner, email="third@example.com")
    with pytest.raises(EntitlementError) as refused:
        team_services.invitation_create(organization=org, actor=owner, email="fourth@example.com")
    decision = refused.value.decision
    assert (decision.limit, decision.used) == (3, 2)
    assert (decision.upgrade.kind, decision.upgrade.quantity) == ("seats", 1)
    assert decision.upgrade.url == "/o/acme/billing/#seats"
    page = client_for(owner).post(
        reverse("invitation_create", args=[org.slug]), {"email": "fourth@example.com", "role": "member"}
    )
    html = page.content.decode()
    assert "Acme has 2 of its 3 prepaid seats taken and 1 invitation is open." in html
    assert 'data-testid="upgrade-seats" href="/o/acme/billing/#seats"' in html or (
        'href="/o/acme/billing/#seats" data-testid="upgrade-seats"' in html
    )
    assert 'data-testid="prepaid-seats"' in billing_page(client_for(owner), org)


def test_raising_prepaid_seats_shows_the_proration_and_updates_the_stripe_quantity(
    prepaid, shop, client_for, org, owner, member
):
    sub, clock = on_clock(org, "platform_monthly", seats=2)
    shop.v1.test_helpers.test_clocks.advance(clock, {"frozen_time": APRIL_16})
    client = client_for(owner)
    url = reverse("billing_seats_prepaid", args=[org.slug])
    # Platform: five seats free, then 10.00 each; seat_policy "renewal" prorates an increase.
    preview = client.get(url, {"seats": "7"})
    assert preview.status_code == 200
    shown = preview.context["preview"].prorated
    assert shown == 2 * 1000 * 15 // 30
    assert client.post(url, {"seats": "7", "code": preview.context["code"]}).status_code == 302
    sub.refresh_from_db()
    assert sub.seats == 7 and seat_item_quantity(shop, sub) == 7
    upcoming = shop.v1.invoices.create_preview(
        {"customer": subscribe_customer(shop, sub), "subscription": sub.stripe_subscription_id}
    )
    assert sum(proration_lines(upcoming)) == shown
    # A member joining does not change the prepaid quantity.
    assert seats.seat_sync(organization_id=org.pk) is None
    assert seat_item_quantity(shop, sub) == 7
    for n in range(5):
        team_services.invitation_create(organization=org, actor=owner, email=f"n{n}@example.com")
    with pytest.raises(EntitlementError):
        team_services.invitation_create(organization=org, actor=owner, email="n5@example.com")


def subscribe_customer(client, sub) -> str:
    return client.v1.subscriptions.retrieve(sub.stripe_subscription_id).customer


@pytest.mark.parametrize(
    ("seats", "code"),
    [
        ("1", "seats_below_members"),
        ("x", "invalid_seats"),
        ("", "invalid_seats"),
        ("5000", "seats_above_maximum"),
    ],
)
def test_prepaid_seats_are_never_fewer_than_the_members(
    prepaid, shop, client_for, org, owner, member, seats, code
):
    sub, _ = on_clock(org, "platform_monthly", seats=3)
    url = reverse("billing_seats_prepaid", args=[org.slug])
    for method in ("get", "post"):
        refused = getattr(client_for(owner), method)(url, {"seats": seats})
        assert refused.status_code == 400
        assert f'data-code="{code}"'.encode() in refused.content and b'data-field="seats"' in refused.content
    assert seat_item_quantity(shop, sub) == 3


def test_seats_cannot_be_set_on_a_plan_that_counts_members(shop, client_for, org, owner):
    on_clock(org, "team_monthly")
    refused = client_for(owner).get(reverse("billing_seats_prepaid", args=[org.slug]), {"seats": "4"})
    assert refused.status_code == 400 and b'data-code="seats_not_prepaid"' in refused.content
    assert 'data-testid="prepaid-seats"' not in billing_page(client_for(owner), org)


def test_a_prepaid_seat_plan_reads_from_the_catalog_file():
    raw_spec = load_catalog()
    assert raw_spec.plans["team_monthly"]["seat_mode"] == "automatic"


def add_projects_pack(client, org, quantity="1", *, capture=None) -> AddonPurchase:
    url = reverse("billing_addon_add", args=[org.slug, "extra_projects"])
    confirm = client.get(url, {"quantity": quantity})
    form = {"quantity": quantity, "code": str(confirm.context["code"])}
    if capture is None:
        assert client.post(url, form).status_code == 302
    else:
        with capture(execute=True):
            assert client.post(url, form).status_code == 302
    return AddonPurchase.objects.get(organization=org, addon__key="extra_projects")


def test_a_recurring_add_on_stays_through_a_plan_change_on_its_interval(shop, client_for, org, owner):
    sub, _ = on_clock(org, "pro_monthly")
    client = client_for(owner)
    purchase = add_projects_pack(client, org)
    subscriptions.subscription_change(
        organization=org, plan=Plan.objects.get(key="platform_monthly"), actor=owner
    )
    remote = shop.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert purchase.stripe_subscription_item_id in {i.id for i in remote["items"].data}
    assert OrgSubscription.objects.get(organization=org).plan.key == "platform_monthly"


def test_a_plan_change_to_another_interval_asks_to_remove_the_add_on_first(shop, client_for, org, owner):
    sub, _ = on_clock(org, "pro_monthly")
    client = client_for(owner)
    purchase = add_projects_pack(client, org)
    with pytest.raises(ServiceError) as refused:
        subscriptions.subscription_change(
            organization=org, plan=Plan.objects.get(key="pro_yearly"), actor=owner
        )
    assert (refused.value.code, refused.value.field) == ("addon_interval_mismatch", "plan")
    remote = shop.v1.subscriptions.retrieve(sub.stripe_subscription_id)
    assert purchase.stripe_subscription_item_id in {i.id for i in remote["items"].data}


def test_an_add_on_item_removed_outside_tally_ends_its_grants(
    shop, client_for, org, owner, django_capture_on_commit_callbacks
):
    sub, _ = on_clock(org, "pro_monthly", at=int(time.time()))
    purchase = add_projects_pack(client_for(owner), org, capture=django_capture_on_commit_callbacks)
    assert entitlements.check(org, "projects", 0).limit == 15
    shop.v1.subscription_items.delete(purchase.stripe_subscription_item_id)
    with django_capture_on_commit_callbacks(execute=True):
        addons._subscription_updated(
            kind="customer.subscription.updated", object_id=sub.stripe_subscription_id
        )
    purchase.refresh_from_db()
    assert purchase.status == "ending"
    assert entitlements.check(org, "projects", 0).limit == 5


def test_a_canceled_subscription_takes_its_recurring_add_ons_along(
    shop, client_for, org, owner, django_capture_on_commit_callbacks
):
    sub, _ = on_clock(org, "pro_monthly", at=int(time.time()))
    purchase = add_projects_pack(client_for(owner), org)
    shop.v1.subscriptions.cancel(sub.stripe_subscription_id)
    with django_capture_on_commit_callbacks(execute=True):
        subscriptions.subscription_sync(subscription_id=sub.stripe_subscription_id)
    purchase.refresh_from_db()
    assert purchase.status == "ending"
    assert not EntitlementGrant.objects.filter(purchase=purchase, expires_at__isnull=True).exists()


def test_a_prepaid_seat_change_sent_twice_is_made_once_and_a_later_one_still_applies(
    prepaid, shop, client_for, org, owner, member
):
    sub, _ = on_clock(org, "platform_monthly", seats=2)
    client = client_for(owner)
    url = reverse("billing_seats_prepaid", args=[org.slug])
    for count in ("6", "3", "6"):
        code = client.get(url, {"seats": count}).context["code"]
        for _ in range(2):
            assert client.post(url, {"seats": count, "code": code}).status_code == 302
        assert seat_item_quantity(shop, sub) == int(count)
    changes = org.audit_events.filter(action="billing.seats_prepaid").count()
    assert changes == 3


def test_a_prepaid_seat_plan_is_exported_and_imported_as_it_is():
    Plan.objects.filter(key="platform_monthly").update(seat_mode="prepaid")
    exported = tomllib.loads(catalog_export_toml())
    assert catalog_apply(parse_catalog(exported)) == []
    assert Plan.objects.get(key="platform_monthly").seat_mode == "prepaid"
    exported["products"]["platform"]["plans"][0]["seat_mode"] = "sometimes"
    with pytest.raises(CatalogError, match="seat_mode: must be one of automatic, prepaid"):
        parse_catalog(exported)


# --- What a refund or a dispute of an add-on's payment takes back -------------------------------

DISPUTE_CARD = "4000000000000259"  # succeeds, then the cardholder disputes it


def bought_seat_pack(world, client, org, card="4242424242424242") -> tuple[AddonPurchase, str]:
    """A subscriber's five-seat pack paid through Checkout; with its PaymentIntent."""
    subscribe("pro_monthly", organization=org, clock=world.clock, sync=True)
    to_stripe = buy(client, org, "extra_seats")
    assert pay_hosted_checkout(to_stripe.headers["Location"], card=card).status_code == 303
    purchase = AddonPurchase.objects.get(organization=org)
    session = world.client.v1.checkout.sessions.retrieve(purchase.stripe_checkout_session_id)
    return purchase, session.payment_intent


def seats_meter(client, org) -> str:
    html = billing_page(client, org)
    start = html.index('data-feature="team_members"')
    return html[start : start + 300]


def replay(prefix: str) -> None:
    for event in Event.objects.filter(type__startswith=prefix).order_by("created", "id"):
        dispatch.handle(event.id)


def test_an_add_on_refunded_in_full_from_the_dashboard_is_taken_back_once(
    stripe_world, client_for, org, owner
):
    client = client_for(owner)
    purchase, intent = bought_seat_pack(stripe_world, client, org)
    assert entitlements.check(org, "team_members", 0).limit == 15
    assert "of 15" in seats_meter(client, org)

    # A partial refund is a goodwill gesture on a pack that cannot be split: the pack stays.
    stripe_world.client.v1.refunds.create({"payment_intent": intent, "amount": 1000})
    purchase.refresh_from_db()
    assert purchase.status == "granted"
    assert entitlements.check(org, "team_members", 0).limit == 15

    # The rest refunded from the dashboard: nothing paid for it any more, so nothing is granted.
    stripe_world.client.v1.refunds.create({"payment_intent": intent})
    purchase.refresh_from_db()
    assert purchase.status == "refunded"
    assert entitlements.check(org, "team_members", 0).limit == 10
    assert "of 10" in seats_meter(client, org)
    (grant,) = EntitlementGrant.objects.filter(purchase=purchase)
    ended_at = grant.expires_at
    assert ended_at is not None

    replay("charge.refunded")
    purchase.refresh_from_db()
    grant.refresh_from_db()
    assert (purchase.status, grant.expires_at) == ("refunded", ended_at)
    assert entitlements.check(org, "team_members", 0).limit == 10
    assert AuditEvent.objects.filter(action="billing.addon_refunded", organization=org).count() == 1


def dispute_of(world, intent: str):
    (dispute,) = world.client.v1.disputes.list({"payment_intent": intent}).data
    return dispute


def test_an_add_on_paid_with_a_disputed_payment_is_held_then_given_back_when_won(
    stripe_world, client_for, org, owner
):
    client = client_for(owner)
    purchase, intent = bought_seat_pack(stripe_world, client, org, card=DISPUTE_CARD)
    purchase.refresh_from_db()
    assert purchase.status == "disputed"  # held while the dispute is open
    assert entitlements.check(org, "team_members", 0).limit == 10
    assert "of 10" in seats_meter(client, org)

    dispute = dispute_of(stripe_world, intent)
    stripe_world.client.v1.disputes.update(
        dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}, "submit": True}
    )
    purchase.refresh_from_db()
    assert purchase.status == "granted"
    assert entitlements.check(org, "team_members", 0).limit == 15

    replay("charge.dispute.")
    purchase.refresh_from_db()
    assert purchase.status == "granted"
    assert entitlements.check(org, "team_members", 0).limit == 15
    assert AuditEvent.objects.filter(action="billing.addon_dispute_won", organization=org).count() == 1


@pytest.mark.parametrize("how", ["losing_evidence", "accept"])
def test_an_add_on_paid_with_a_disputed_payment_is_taken_back_when_lost(
    stripe_world, client_for, org, owner, how
):
    client = client_for(owner)
    purchase, intent = bought_seat_pack(stripe_world, client, org, card=DISPUTE_CARD)
    dispute = dispute_of(stripe_world, intent)
    if how == "accept":
        stripe_world.client.v1.disputes.close(dispute.id)
    else:
        stripe_world.client.v1.disputes.update(
            dispute.id, {"evidence": {"uncategorized_text": "losing_evidence"}, "submit": True}
        )
    purchase.refresh_from_db()
    assert purchase.status == "charged_back"
    assert entitlements.check(org, "team_members", 0).limit == 10

    replay("charge.dispute.")
    purchase.refresh_from_db()
    assert purchase.status == "charged_back"
    assert entitlements.check(org, "team_members", 0).limit == 10
    assert "of 10" in seats_meter(client, org)
    assert AuditEvent.objects.filter(action="billing.addon_dispute_lost", organization=org).count() == 1
