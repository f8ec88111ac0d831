"""Coupons, promotion codes and discounts: Stripe's objects, events and discount maths, checked
against amounts worked out by hand in each test."""

from typing import Any

import pytest
import stripe
from werkzeug.test import Client

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim
from tests.stripe_sim.helpers import APRIL_1, DAY

MAY_1 = APRIL_1 + 30 * DAY
JUNE_1 = MAY_1 + 31 * DAY
JULY_1 = JUNE_1 + 30 * DAY
AUGUST_1 = JULY_1 + 31 * DAY


def _coupon(client: stripe.StripeClient, **params: Any) -> stripe.Coupon:
    return client.v1.coupons.create(params)  # type: ignore[arg-type]


def _subscribe(
    client: stripe.StripeClient,
    price: stripe.Price,
    quantity: int = 1,
    *,
    clock: str | None = None,
    **extra: Any,
) -> stripe.Subscription:
    cus = helpers.customer(client, clock=clock)
    return client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": price.id, "quantity": quantity}], **extra}  # type: ignore[typeddict-item]
    )


def _invoice(client: stripe.StripeClient, invoice_id: str) -> stripe.Invoice:
    return client.v1.invoices.retrieve(invoice_id)


def _discounted(invoice: stripe.Invoice) -> list[tuple[int, list[int]]]:
    return [(line.amount, [d.amount for d in line.discount_amounts]) for line in invoice.lines.data]


# --- the objects -------------------------------------------------------------------------------


def test_it_creates_coupons_as_stripe_shapes_them(client: stripe.StripeClient, sim: Sim) -> None:
    product = client.v1.products.create({"name": "Pro"})
    percent = _coupon(
        client, id="LAUNCH", percent_off="25.5", duration="repeating", duration_in_months="3", name="Launch"
    )
    assert (percent.id, percent.percent_off, percent.amount_off) == ("LAUNCH", 25.5, None)
    assert (percent.duration, percent.duration_in_months, percent.valid) == ("repeating", 3, True)
    amount = _coupon(
        client,
        amount_off=500,
        currency="usd",
        currency_options={"eur": {"amount_off": 450}},
        duration="forever",
        applies_to={"products": [product.id]},
        max_redemptions=2,
    )
    assert amount.currency_options["eur"].amount_off == 450
    assert amount.applies_to.products == [product.id]
    assert client.v1.coupons.retrieve("LAUNCH").name == "Launch"
    assert client.v1.coupons.update("LAUNCH", {"name": "Launch week"}).name == "Launch week"
    assert {c.id for c in client.v1.coupons.list().data} == {"LAUNCH", amount.id}
    assert client.v1.coupons.delete(amount.id).deleted is True
    assert sim.events(type="coupon.created") and sim.events(type="coupon.updated")
    assert sim.events(type="coupon.deleted") == ["coupon.deleted"]


@pytest.mark.parametrize(
    "params, param",
    [
        ({"duration": "once"}, "percent_off"),
        ({"percent_off": "10", "amount_off": 100, "currency": "usd"}, "percent_off"),
        ({"amount_off": 100}, "currency"),
        ({"percent_off": "120"}, "percent_off"),
        ({"percent_off": "10", "duration": "repeating"}, "duration_in_months"),
        ({"percent_off": "10", "redeem_by": 1000}, "redeem_by"),
        ({"percent_off": "10", "applies_to": {"products": ["prod_missing"]}}, "applies_to[products][0]"),
    ],
)
def test_it_refuses_a_coupon_stripe_refuses(client: stripe.StripeClient, params: dict, param: str) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _coupon(client, **params)
    assert caught.value.param == param


def test_it_creates_promotion_codes_and_finds_them_by_code(client: stripe.StripeClient, sim: Sim) -> None:
    coupon = _coupon(client, percent_off="20", duration="once")
    promo = client.v1.promotion_codes.create(
        {
            "promotion": {"type": "coupon", "coupon": coupon.id},
            "code": "SPRING",
            "max_redemptions": 10,
            "restrictions": {
                "first_time_transaction": True,
                "minimum_amount": 2000,
                "minimum_amount_currency": "usd",
            },
        }
    )
    assert promo.id.startswith("promo_") and promo.promotion.coupon == coupon.id
    assert promo.restrictions.first_time_transaction is True
    assert promo.restrictions.minimum_amount == 2000
    assert [p.id for p in client.v1.promotion_codes.list({"code": "spring"}).data] == [promo.id]
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.promotion_codes.create(
            {"promotion": {"type": "coupon", "coupon": coupon.id}, "code": "SPRING"}
        )
    assert caught.value.code == "resource_already_exists"
    assert client.v1.promotion_codes.update(promo.id, {"active": False}).active is False
    assert sim.events(type="promotion_code.created") == ["promotion_code.created"]
    assert "promotion_code.updated" in sim.events()


# --- the maths ---------------------------------------------------------------------------------


def test_a_percent_coupon_takes_its_share_of_a_flat_price(client: stripe.StripeClient, sim: Sim) -> None:
    # $10.00 x 1, 25% off: 1000 - 250 = 750.
    coupon = _coupon(client, percent_off="25", duration="forever")
    sub = _subscribe(client, helpers.price(client, amount=1000), discounts=[{"coupon": coupon.id}])
    invoice = _invoice(client, sub.latest_invoice)
    assert _discounted(invoice) == [(1000, [250])]
    assert (invoice.subtotal, invoice.total, invoice.amount_due, invoice.amount_paid) == (1000, 750, 750, 750)
    assert [(t.amount, t.discount) for t in invoice.total_discount_amounts] == [(250, sub.discounts[0])]
    assert invoice.discounts == sub.discounts
    discount = client.v1.subscriptions.retrieve(sub.id, {"expand": ["discounts"]}).discounts[0]
    assert (discount.source.coupon, discount.subscription, discount.end) == (coupon.id, sub.id, None)
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 1
    assert "customer.discount.created" in sim.events()


def test_a_once_coupon_on_per_seat_graduated_seats_applies_to_the_first_invoice_only(
    client: stripe.StripeClient, sim: Sim
) -> None:
    # 8 seats, graduated: 5 x 1000 + 3 x 800 = 7400; 15% off once: 7400 x 0.15 = 1110 -> 6290.
    clock = helpers.clock(client)
    price = helpers.tiered(
        client, "graduated", [{"up_to": 5, "unit_amount": 1000}, {"up_to": "inf", "unit_amount": 800}]
    )
    coupon = _coupon(client, percent_off="15", duration="once")
    sub = _subscribe(client, price, 8, clock=clock.id, discounts=[{"coupon": coupon.id}])
    first = _invoice(client, sub.latest_invoice)
    assert (first.subtotal, first.total) == (7400, 6290)
    assert client.v1.subscriptions.retrieve(sub.id).discounts == []
    assert sim.events(type="customer.discount.deleted") == ["customer.discount.deleted"]
    helpers.advance(client, clock.id, MAY_1 + 60)
    renewal = _invoice(client, client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert (renewal.subtotal, renewal.total, renewal.discounts) == (7400, 7400, [])


def test_an_amount_off_coupon_on_a_volume_price(client: stripe.StripeClient) -> None:
    # 12 units at the volume tier of 700: 8400; $5.00 off: 7900.
    price = helpers.tiered(
        client, "volume", [{"up_to": 10, "unit_amount": 900}, {"up_to": "inf", "unit_amount": 700}]
    )
    coupon = _coupon(client, amount_off=500, currency="usd", duration="forever")
    sub = _subscribe(client, price, 12, discounts=[{"coupon": coupon.id}])
    invoice = _invoice(client, sub.latest_invoice)
    assert _discounted(invoice) == [(8400, [500])]
    assert invoice.total == 7900


def test_an_amount_off_is_spread_over_lines_in_proportion_adding_up_exactly(
    client: stripe.StripeClient,
) -> None:
    # Three $10.00 lines, $10.00 off: 333.33 each; the one cent left goes to the first line.
    prices = [helpers.price(client, amount=1000, name=n) for n in ("A", "B", "C")]
    coupon = _coupon(client, amount_off=1000, currency="usd", duration="forever")
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": p.id} for p in prices], "discounts": [{"coupon": coupon.id}]}
    )
    invoice = _invoice(client, sub.latest_invoice)
    assert _discounted(invoice) == [(1000, [334]), (1000, [333]), (1000, [333])]
    assert invoice.total == 2000


def test_an_amount_off_never_takes_more_than_the_lines_hold(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, amount_off=5000, currency="usd", duration="forever")
    sub = _subscribe(client, helpers.price(client, amount=1200), discounts=[{"coupon": coupon.id}])
    invoice = _invoice(client, sub.latest_invoice)
    assert (invoice.total, invoice.amount_due, invoice.status) == (0, 0, "paid")


def test_a_coupon_restricted_to_a_product_discounts_only_its_lines(client: stripe.StripeClient) -> None:
    # Base $20.00 and an add-on $5.00 x 2; 50% off the add-on only: 1000 x 0.5 = 500 off.
    base = helpers.price(client, amount=2000, name="Base")
    addon = helpers.price(client, amount=500, name="Add-on")
    coupon = _coupon(client, percent_off="50", duration="forever", applies_to={"products": [addon.product]})
    cus = helpers.customer(client)
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": base.id}, {"price": addon.id, "quantity": 2}],
            "discounts": [{"coupon": coupon.id}],
        }
    )
    invoice = _invoice(client, sub.latest_invoice)
    assert _discounted(invoice) == [(2000, [0]), (1000, [500])]
    assert invoice.total == 2500


def test_two_discounts_apply_in_order_each_to_what_is_left(client: stripe.StripeClient) -> None:
    # 3333: 10% off -> 333.3 rounds to 333, leaving 3000; then $1.00 off -> 2900.
    percent = _coupon(client, percent_off="10", duration="forever")
    amount = _coupon(client, amount_off=100, currency="usd", duration="forever")
    sub = _subscribe(
        client, helpers.price(client, amount=3333), discounts=[{"coupon": percent.id}, {"coupon": amount.id}]
    )
    invoice = _invoice(client, sub.latest_invoice)
    assert _discounted(invoice) == [(3333, [333, 100])]
    assert invoice.total == 2900


def test_a_repeating_coupon_ends_after_its_months(client: stripe.StripeClient, sim: Sim) -> None:
    # $20.00 a month, 50% off for 3 months from 1 April: April, May and June pay 1000, July 2000.
    clock = helpers.clock(client)
    coupon = _coupon(client, percent_off="50", duration="repeating", duration_in_months=3)
    sub = _subscribe(
        client, helpers.price(client, amount=2000), clock=clock.id, discounts=[{"coupon": coupon.id}]
    )
    discount = client.v1.subscriptions.retrieve(sub.id, {"expand": ["discounts"]}).discounts[0]
    assert (discount.start, discount.end) == (APRIL_1, JULY_1)
    totals = [_invoice(client, sub.latest_invoice).total]
    for moment in (MAY_1, JUNE_1, JULY_1, AUGUST_1):
        helpers.advance(client, clock.id, moment + 60)
        totals.append(_invoice(client, client.v1.subscriptions.retrieve(sub.id).latest_invoice).total)
    assert totals == [1000, 1000, 1000, 2000, 2000]
    assert client.v1.subscriptions.retrieve(sub.id).discounts == []
    assert sim.events(type="customer.discount.deleted") == ["customer.discount.deleted"]


def test_a_mid_period_proration_of_a_discounted_item(client: stripe.StripeClient) -> None:
    # 2 seats at $10.00, 20% off forever, on 1 April (a 30-day period). On 16 April (half of it
    # left) 4 seats: unused time on 2 seats -(2000 x 0.8)/2 = -800, remaining time on 4 seats
    # (4000 x 0.8)/2 = 1600. The discount is in those amounts (the lines name it, with 0); the
    # May invoice adds May in advance: 4000 - 800 = 3200, so 800 + 3200 = 4000 due.
    clock = helpers.clock(client)
    coupon = _coupon(client, percent_off="20", duration="forever")
    sub = _subscribe(
        client, helpers.price(client, amount=1000), 2, clock=clock.id, discounts=[{"coupon": coupon.id}]
    )
    assert _invoice(client, sub.latest_invoice).total == 1600
    helpers.advance(client, clock.id, APRIL_1 + 15 * DAY)
    item = sub["items"].data[0]
    client.v1.subscriptions.update(sub.id, {"items": [{"id": item.id, "quantity": 4}]})
    pending = client.v1.invoice_items.list({"customer": sub.customer, "pending": True}).data
    assert sorted(ii.amount for ii in pending) == [-800, 1600]
    assert all(ii.discounts == sub.discounts and ii.discountable is False for ii in pending)
    helpers.advance(client, clock.id, MAY_1 + 60)
    renewal = _invoice(client, client.v1.subscriptions.retrieve(sub.id).latest_invoice)
    assert sorted(_discounted(renewal)) == [(-800, [0]), (1600, [0]), (4000, [800])]
    assert [t.amount for t in renewal.total_discount_amounts] == [800]
    assert (renewal.subtotal, renewal.total) == (4800, 4000)


def test_a_preview_shows_the_discount_without_redeeming_it(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, percent_off="10", duration="forever")
    price = helpers.price(client, amount=5000)
    cus = helpers.customer(client)
    preview = client.v1.invoices.create_preview(
        {
            "customer": cus.id,
            "subscription_details": {"items": [{"price": price.id}]},
            "discounts": [{"coupon": coupon.id}],
        }
    )
    assert preview.total == 4500
    assert client.v1.coupons.retrieve(coupon.id).times_redeemed == 0


def test_removing_a_subscriptions_discount_ends_it(client: stripe.StripeClient, sim: Sim) -> None:
    coupon = _coupon(client, percent_off="10", duration="forever")
    sub = _subscribe(client, helpers.price(client), discounts=[{"coupon": coupon.id}])
    removed = client.v1.subscriptions.delete_discount(sub.id)
    assert removed.deleted is True
    assert client.v1.subscriptions.retrieve(sub.id).discounts == []
    again = client.v1.subscriptions.update(sub.id, {"discounts": [{"coupon": coupon.id}]})
    assert len(again.discounts) == 1
    assert client.v1.subscriptions.update(sub.id, {"discounts": ""}).discounts == []
    assert sim.events(type="customer.discount.deleted") == ["customer.discount.deleted"] * 2


# --- redemption rules --------------------------------------------------------------------------


def _promo(client: stripe.StripeClient, coupon: stripe.Coupon, **params: Any) -> stripe.PromotionCode:
    return client.v1.promotion_codes.create({"promotion": {"type": "coupon", "coupon": coupon.id}, **params})  # type: ignore[arg-type]


def _refusal(
    client: stripe.StripeClient, price: stripe.Price, promo: str, customer: str | None = None
) -> str:
    cus = customer or helpers.customer(client).id
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            {"customer": cus, "items": [{"price": price.id}], "discounts": [{"promotion_code": promo}]}
        )
    assert caught.value.param == "discounts[0][promotion_code]"
    return caught.value.user_message or ""


def test_a_promotion_code_keeps_its_restrictions(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, percent_off="10", duration="forever")
    price = helpers.price(client, amount=1500)
    minimum = _promo(client, coupon, restrictions={"minimum_amount": 2000, "minimum_amount_currency": "usd"})
    assert "at least 2000" in _refusal(client, price, minimum.id)
    first_time = _promo(client, coupon, restrictions={"first_time_transaction": True})
    paid = _subscribe(client, price)
    assert "never paid" in _refusal(client, price, first_time.id, customer=paid.customer)
    inactive = _promo(client, coupon, active=False)
    assert "inactive" in _refusal(client, price, inactive.id)
    once = _promo(client, coupon, max_redemptions=1)
    _subscribe(client, price, discounts=[{"promotion_code": once.id}])
    assert "fully redeemed" in _refusal(client, price, once.id)
    assert client.v1.promotion_codes.retrieve(once.id).times_redeemed == 1


def test_a_coupon_needs_an_amount_in_the_subscriptions_currency(client: stripe.StripeClient) -> None:
    product = client.v1.products.create({"name": "Pro"})
    eur = client.v1.prices.create(
        {"currency": "eur", "unit_amount": 1200, "product": product.id, "recurring": {"interval": "month"}}
    )
    usd_only = _coupon(client, amount_off=300, currency="usd", duration="forever")
    cus = helpers.customer(client)
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": eur.id}], "discounts": [{"coupon": usd_only.id}]}
        )
    assert caught.value.code == "coupon_invalid"
    both = _coupon(client, amount_off=300, currency="usd", currency_options={"eur": {"amount_off": 250}})
    sub = client.v1.subscriptions.create(
        {"customer": cus.id, "items": [{"price": eur.id}], "discounts": [{"coupon": both.id}]}
    )
    invoice = _invoice(client, sub.latest_invoice)
    assert (invoice.currency, invoice.total) == ("eur", 950)


def test_a_fully_redeemed_coupon_is_no_longer_valid(client: stripe.StripeClient) -> None:
    coupon = _coupon(client, percent_off="10", duration="once", max_redemptions=1)
    _subscribe(client, helpers.price(client), discounts=[{"coupon": coupon.id}])
    assert client.v1.coupons.retrieve(coupon.id).valid is False
    with pytest.raises(stripe.InvalidRequestError) as caught:
        _subscribe(client, helpers.price(client), discounts=[{"coupon": coupon.id}])
    assert caught.value.code == "coupon_expired"


# --- checkout ----------------------------------------------------------------------------------


def _checkout(client: stripe.StripeClient, **extra: Any) -> stripe.checkout.Session:
    price = helpers.price(client, amount=1500)
    return client.v1.checkout.sessions.create(
        {
            "mode": "subscription",
            "line_items": [{"price": price.id, "quantity": 2}],
            "success_url": "http://127.0.0.1:8000/done",
            "customer_email": "alice@example.com",
            **extra,
        }  # type: ignore[arg-type]
    )


def test_checkout_takes_a_discount_up_front(client: stripe.StripeClient, sim: Sim) -> None:
    coupon = _coupon(client, percent_off="20", duration="forever")
    session = _checkout(client, discounts=[{"coupon": coupon.id}])
    assert (session.amount_subtotal, session.amount_total) == (3000, 2400)
    assert session.total_details.amount_discount == 600
    assert session.discounts[0].coupon == coupon.id
    item = client.v1.checkout.sessions.line_items.list(session.id).data[0]
    assert (item.amount_subtotal, item.amount_discount, item.amount_total) == (3000, 600, 2400)
    with pytest.raises(stripe.InvalidRequestError):
        _checkout(client, discounts=[{"coupon": coupon.id}], allow_promotion_codes=True)


def test_the_hosted_checkout_page_takes_a_promotion_code(client: stripe.StripeClient, sim: Sim) -> None:
    coupon = _coupon(client, percent_off="20", duration="repeating", duration_in_months=3)
    _promo(client, coupon, code="LAUNCH")
    session = _checkout(client, allow_promotion_codes=True)
    page = Client(sim.app)
    assert "Promotion code" in page.get(f"/checkout/{session.id}").get_data(as_text=True)
    wrong = page.post(
        f"/checkout/{session.id}", data={"promotion_code": "NOPE", "action": "apply_promotion_code"}
    )
    assert wrong.status_code == 400 and "This code (NOPE) is invalid." in wrong.get_data(as_text=True)
    applied = page.post(
        f"/checkout/{session.id}", data={"promotion_code": "launch", "action": "apply_promotion_code"}
    )
    html = applied.get_data(as_text=True)
    assert applied.status_code == 200
    assert "LAUNCH" in html and "20% off for 3 months" in html and "$24.00" in html
    done = page.post(
        f"/checkout/{session.id}", data={"email": "alice@example.com", "card_number": "4242424242424242"}
    )
    assert done.status_code == 303
    session = client.v1.checkout.sessions.retrieve(session.id)
    assert session.amount_total == 2400
    sub = client.v1.subscriptions.retrieve(session.subscription, {"expand": ["discounts"]})
    assert sub.discounts[0].promotion_code and sub.discounts[0].checkout_session == session.id
    invoice = _invoice(client, sub.latest_invoice)
    assert (invoice.total, invoice.amount_paid) == (2400, 2400)
