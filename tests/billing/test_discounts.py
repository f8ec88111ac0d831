"""Coupons and promotion codes: the catalog, Stripe, checkout, the admin and the pages that show
what a discount saves and when it ends."""

import copy
import tomllib
from decimal import Decimal

import pytest
from django.urls import reverse

from billing import discounts, subscriptions
from billing.catalog import (
    DEFAULT_PATH,
    CatalogError,
    catalog_apply,
    catalog_push,
    load_catalog,
    parse_catalog,
)
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import Coupon, OrgSubscription, Payment, Plan, PromotionCode, SubscriptionDiscount
from common.errors import ServiceError
from teams.models import AuditEvent
from tests.billing.conftest import pay_hosted_checkout
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


@pytest.fixture
def raw():
    with open(DEFAULT_PATH, "rb") as handle:
        return tomllib.load(handle)


@pytest.fixture
def catalog(stripe_sim):
    catalog_push()
    return stripe_client()


def _problems(data) -> list[str]:
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    return error.value.problems


# --- The catalog -------------------------------------------------------------------------------


def test_the_catalog_defines_coupons_and_their_codes():
    launch = Coupon.objects.get(key="launch")
    assert (launch.percent_off, launch.duration, launch.duration_in_months) == (
        Decimal("20.00"),
        "repeating",
        3,
    )
    welcome = Coupon.objects.get(key="welcome")
    assert (welcome.amount_off, welcome.currency, welcome.currency_options) == (1000, "usd", {"eur": 900})
    assert sorted(welcome.products.values_list("key", flat=True)) == ["platform", "pro", "team"]
    code = PromotionCode.objects.get(code="WELCOME10")
    assert (code.coupon, code.first_time_only, code.minimum_amount, code.minimum_amount_currency) == (
        welcome,
        True,
        2000,
        "usd",
    )


@pytest.mark.parametrize(
    "change, problem",
    [
        (
            {"percent_off": 20, "amount_off": 100, "currency": "usd"},
            "exactly one of percent_off and amount_off",
        ),
        ({"percent_off": 120}, "at most 100"),
        ({"amount_off": 500}, "amount_off needs its currency"),
        ({"percent_off": 10, "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": 10, "products": ["nope"]}, "unknown product 'nope'"),
        ({"percent_off": 10, "promotion_codes": [{"code": "HAS SPACE"}]}, "letters and digits"),
        ({"percent_off": 10, "promotion_codes": [{"code": "launch"}]}, "already a code of coupon 'launch'"),
        ({"percent_off": 10, "colour": "red"}, "unknown fields colour"),
    ],
)
def test_a_bad_coupon_is_refused_naming_where(raw, change, problem):
    data = copy.deepcopy(raw)
    data["coupons"]["bad"] = {"name": "Bad", **change}
    found = _problems(data)
    assert any(p.startswith("coupon 'bad'") and problem in p for p in found), found


def test_a_coupon_removed_from_the_file_is_deactivated_with_its_codes(raw):
    del raw["coupons"]["launch"]
    assert "- coupon launch (deactivated)" in catalog_apply(parse_catalog(raw))
    assert not Coupon.objects.get(key="launch").is_active
    assert not PromotionCode.objects.get(code="LAUNCH").is_active
    catalog_apply(load_catalog())
    assert PromotionCode.objects.get(code="LAUNCH").is_active


# --- Stripe ------------------------------------------------------------------------------------


def test_coupons_and_codes_are_pushed_to_stripe_once(catalog):
    launch = catalog.v1.coupons.retrieve("tally_launch")
    assert (launch.percent_off, launch.duration, launch.duration_in_months) == (20.0, "repeating", 3)
    welcome = catalog.v1.coupons.retrieve("tally_welcome")
    assert welcome.currency_options["eur"].amount_off == 900
    assert sorted(welcome.applies_to.products) == ["tally_platform", "tally_pro", "tally_team"]
    code = catalog.v1.promotion_codes.list({"code": "WELCOME10"}).data[0]
    assert code.promotion.coupon == "tally_welcome"
    assert (code.restrictions.first_time_transaction, code.restrictions.minimum_amount) == (True, 2000)
    assert PromotionCode.objects.get(code="WELCOME10").stripe_promotion_code_id == code.id
    assert catalog_push() == []


def test_a_code_taken_out_of_the_catalog_is_switched_off_in_stripe(catalog):
    PromotionCode.objects.filter(code="LAUNCH").update(is_active=False)
    assert "- stripe promotion code LAUNCH (deactivated)" in catalog_push()
    assert catalog.v1.promotion_codes.list({"code": "LAUNCH"}).data[0].active is False


def test_a_coupon_whose_terms_changed_is_reported_not_pushed(catalog):
    Coupon.objects.filter(key="partner").update(percent_off=Decimal("25"))
    lines = catalog_push()
    assert any(line.startswith("! stripe coupon tally_partner") for line in lines)
    assert catalog.v1.coupons.retrieve("tally_partner").percent_off == 15.0


# --- Checkout ----------------------------------------------------------------------------------


def _session(client, url: str):
    return client.v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])


def test_checkout_lets_the_customer_type_a_code(catalog, org, owner):
    url = subscriptions.checkout_start(organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner)
    session = _session(catalog, url)
    assert session.allow_promotion_codes is True and not session.discounts


def test_checkout_applies_a_code_brought_along(catalog, org, owner):
    code = PromotionCode.objects.get(code="LAUNCH")
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="pro_yearly"), actor=owner, promotion_code=code
    )
    session = _session(catalog, url)
    assert session.discounts[0].promotion_code == code.stripe_promotion_code_id
    assert not session.allow_promotion_codes
    assert (session.amount_subtotal, session.amount_total) == (49000, 0)  # a trial: nothing today
    event = AuditEvent.objects.get(organization=org, action="billing.checkout_started")
    assert event.data["promotion_code"] == "LAUNCH"


def test_a_code_stripe_refuses_is_a_clear_error(catalog, org, owner):
    # WELCOME10 needs $20.00 on the first invoice; AI Access costs $5.00.
    with pytest.raises(ServiceError) as error:
        subscriptions.checkout_start(
            organization=org,
            plan=Plan.objects.get(key="ai_monthly"),
            actor=owner,
            promotion_code=PromotionCode.objects.get(code="WELCOME10"),
        )
    assert error.value.code == "promotion_code_refused" and "WELCOME10" in error.value.message


def test_the_pricing_page_carries_a_code_to_checkout(client_for, catalog, org, owner):
    browser = client_for(owner)
    page = browser.get(reverse("pricing") + "?promo=launch")
    html = page.content.decode()
    assert 'data-testid="promo"' in html and "LAUNCH" in html and "20% off for 3 months" in html
    # AI Access: $5.00 a month, 20% off: $4.00 a month for 3 months.
    assert "$4 / month for 3 months" in html
    response = browser.post(reverse("billing_checkout", args=[org.slug]), {"plan": "ai_monthly"})
    session = _session(catalog, response["Location"])
    assert (
        session.discounts[0].promotion_code
        == PromotionCode.objects.get(code="LAUNCH").stripe_promotion_code_id
    )
    assert browser.session.get("billing_promo") is None  # used once


def test_the_pricing_page_says_when_a_code_is_not_valid(client, catalog):
    html = client.get(reverse("pricing") + "?promo=NOSUCH").content.decode()
    assert 'data-testid="promo-invalid"' in html and "NOSUCH" in html
    PromotionCode.objects.filter(code="LAUNCH").update(is_active=False)
    html = client.get(reverse("pricing") + "?promo=LAUNCH").content.decode()
    assert 'data-testid="promo-invalid"' in html


def test_the_pricing_page_escapes_a_code_it_does_not_know(client, catalog):
    html = client.get(reverse("pricing") + "?promo=<b>x</b>").content.decode()
    assert "&lt;b&gt;x&lt;/b&gt;" in html and "<b>x</b>" not in html


# --- Staff apply a coupon ----------------------------------------------------------------------


def _subscribe(client, org, plan_key="pro_monthly"):
    customer = customer_ensure(organization=org)
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer})
    client.v1.customers.update(customer, {"invoice_settings": {"default_payment_method": pm.id}})
    plan = Plan.objects.get(key=plan_key)
    remote = client.v1.subscriptions.create(
        {
            "customer": customer,
            "items": [{"price": i.stripe_price_id, "quantity": 1} for i in plan.line_items.all()],
            "metadata": {"tally_org_id": str(org.pk), "tally_plan": plan_key},
        }
    )
    subscriptions.invoice_record(invoice_id=remote.latest_invoice)
    return OrgSubscription.objects.get(organization=org)


def test_staff_apply_a_coupon_to_one_subscription_from_the_admin(client_for, catalog, org, owner):
    subscription = _subscribe(catalog, org)
    staff = UserFactory(is_staff=True, is_superuser=True)
    browser = client_for(staff)
    url = reverse("admin:billing_orgsubscription_coupon", args=[subscription.pk])
    assert browser.get(url).status_code == 200
    partner = Coupon.objects.get(key="partner")
    response = browser.post(url, {"coupon": partner.pk})
    assert response.status_code == 302
    remote = catalog.v1.subscriptions.retrieve(subscription.stripe_subscription_id, {"expand": ["discounts"]})
    assert [d.source.coupon for d in remote.discounts] == ["tally_partner"]
    row = SubscriptionDiscount.objects.get(organization=org)
    assert (row.coupon, row.ended_at) == (partner, None)
    event = AuditEvent.objects.get(organization=org, action="billing.coupon_applied")
    assert (event.actor, event.target, event.data["discount"]) == (staff, "partner", row.stripe_discount_id)
    # Twice is refused, and nothing changes.
    again = browser.post(url, {"coupon": partner.pk})
    assert again.status_code == 200 and "already has Partner discount" in again.content.decode()
    assert SubscriptionDiscount.objects.filter(organization=org).count() == 1
    # The upcoming invoice takes 15% off $49.00: 735.
    upcoming = subscriptions.upcoming_invoice(organization=org)
    assert ("Discount: Partner discount", -735) in upcoming.lines
    assert upcoming.amount_due == 4900 - 735


def test_only_staff_reach_the_apply_coupon_page(client_for, catalog, org, owner):
    subscription = _subscribe(catalog, org)
    url = reverse("admin:billing_orgsubscription_coupon", args=[subscription.pk])
    assert client_for(owner).get(url).status_code == 302
    assert not SubscriptionDiscount.objects.exists()


def test_a_coupon_cannot_be_applied_without_a_subscription(catalog, org, owner):
    with pytest.raises(ServiceError) as error:
        discounts.subscription_coupon_apply(
            organization=org, coupon=Coupon.objects.get(key="partner"), actor=owner
        )
    assert error.value.code == "no_subscription"


# --- Checkout to the billing page, through webhooks ----------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_a_code_at_checkout_shows_on_the_billing_page_with_its_savings(stripe_world, client_for, org, owner):
    code = PromotionCode.objects.get(code="LAUNCH")
    url = subscriptions.checkout_start(
        organization=org, plan=Plan.objects.get(key="ai_monthly"), actor=owner, promotion_code=code
    )
    assert pay_hosted_checkout(url).status_code == 303
    subscription = OrgSubscription.objects.get(organization=org)
    row = SubscriptionDiscount.objects.get(organization=org)
    assert (row.coupon.key, row.promotion_code, row.ended_at) == ("launch", code, None)
    assert row.ends_at.month == (row.starts_at.month + 2) % 12 + 1  # three months on
    payment = Payment.objects.get(organization=org)
    assert (payment.amount_paid, payment.amount_discount) == (400, 100)
    html = client_for(owner).get(reverse("billing", args=[org.slug])).content.decode()
    assert 'data-testid="discount"' in html and "Launch offer" in html and "LAUNCH" in html
    assert f"until {row.ends_at.day} {row.ends_at:%b %Y}" in html
    assert "$1 saved" in html
    upcoming = client_for(owner).get(reverse("billing_upcoming", args=[org.slug])).content.decode()
    assert "Discount: Launch offer" in upcoming and "$4" in upcoming
    # Three months on the discount has ended: Tally hears so and stops showing it.
    for _ in range(3):
        stripe_world.advance_past_period_end(org)
    row.refresh_from_db()
    assert row.ended_at is not None
    assert (
        'data-testid="discount"'
        not in client_for(owner).get(reverse("billing", args=[org.slug])).content.decode()
    )
    assert subscription.stripe_subscription_id
