"""Subscriptions, subscription items, invoices, invoice items, previews and invoice payment.

API version 2026-08-26.dahlia: billing periods live on subscription items, an invoice names its
subscription under ``parent.subscription_details``, and invoice lines carry ``pricing`` and
``parent`` instead of ``price`` and ``proration``.
"""

import calendar
import datetime as dt
from fractions import Fraction
from typing import Any

from stripe_sim import discounts, pricing, tax
from stripe_sim.core import (
    attach_payment_method,
    card_payment_method,
    confirm_payment_intent,
    create_payment_intent,
    decline_of,
    deleted,
    list_response,
    new_object,
    plan_view,
    resolve_payment_method,
    respond,
    search_response,
)
from stripe_sim.errors import StripeError, card_error, invalid, invalid_param
from stripe_sim.events import changed, emit
from stripe_sim.meters import usage_for
from stripe_sim.params import as_bool, as_dict, as_int, as_list, merge_metadata, require
from stripe_sim.render import public, render, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.shapes import blank
from stripe_sim.store import Store

INCOMPLETE_EXPIRY = 23 * 3600
TIMES = "\u00d7"  # Stripe's line descriptions read "3 \u00d7 Pro"
PRORATION_BEHAVIORS = ("create_prorations", "none", "always_invoice")
LIVE_STATUSES = ("active", "trialing", "past_due", "unpaid", "incomplete", "paused")


def _money(amount: int, currency: str) -> str:
    return f"${amount / 100:,.2f}" if currency == "usd" else f"{amount} {currency}"


def _date(ts: int) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d %b %Y")


def _product_name(store: Store, price: dict[str, Any]) -> str:
    product = store.objects.get("product", {}).get(price["product"])
    return product["name"] if product else price["product"]


# --- subscription items and rendering ------------------------------------------------------------


def items_of(store: Store, sub_id: str) -> list[dict[str, Any]]:
    items = [i for i in store.all("subscription_item") if i["subscription"] == sub_id]
    return sorted(items, key=lambda i: i["_seq"])


def _is_metered(price: dict[str, Any]) -> bool:
    return (price.get("recurring") or {}).get("usage_type") == "metered"


@renderer("subscription_item")
def _render_item(store: Store, item: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(item)
    price = store.objects["price"][item["price"]]
    out["price"] = render(store, price)
    out["plan"] = plan_view(price)
    sub = store.objects["subscription"].get(item["subscription"])
    if sub is not None:
        out["current_period_start"] = sub["_period_start"]
        out["current_period_end"] = sub["_period_end"]
    if out.get("quantity") is None:
        del out["quantity"]  # metered items have no quantity: Stripe leaves the field out
    return out


@renderer("subscription")
def _render_subscription(store: Store, sub: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(sub)
    # Ended subscriptions keep listing their items, as Stripe's do.
    items = [i for i in store.objects.get("subscription_item", {}).values()]
    items = sorted((i for i in items if i["subscription"] == sub["id"]), key=lambda i: i["_seq"])
    if sub["status"] not in ("canceled", "incomplete_expired"):
        items = [i for i in items if not i.get("_deleted")]
    else:
        items = [i for i in items if not i.get("_removed")]
    out["items"] = {
        "object": "list",
        "data": [render(store, i) for i in items],
        "has_more": False,
        "url": f"/v1/subscription_items?subscription={sub['id']}",
    }
    return out


def _sub_now(store: Store, sub: dict[str, Any]) -> int:
    return store.now_for_customer(sub["customer"])


def _recurring_price(store: Store, price_id: Any, param: str) -> dict[str, Any]:
    price = store.get("price", price_id, param)
    if price["type"] != "recurring":
        raise invalid_param(
            param,
            "The price specified is set to `type=one_time` but this field only accepts prices "
            "with `type=recurring`.",
        )
    if not price["active"]:
        raise invalid_param(param, f"The price specified is inactive: {price['id']}")
    return price


def _quantity_for(price: dict[str, Any], raw: dict[str, Any], param: str) -> int | None:
    if _is_metered(price):
        if raw.get("quantity") not in (None, ""):
            raise invalid_param(param, "Quantity should not be specified for metered prices.")
        return None
    quantity = as_int(raw, "quantity", 1)
    if quantity is None or quantity < 0:
        raise invalid_param(param, "Invalid quantity: must be a non-negative integer.")
    return quantity


def _new_item(
    store: Store, sub: dict[str, Any], price: dict[str, Any], quantity: int | None, raw: dict
) -> dict[str, Any]:
    item = new_object(
        store,
        "subscription_item",
        id=None,
        created=_sub_now(store, sub),
        discounts=[],
        metadata=merge_metadata({}, raw.get("metadata")),
        price=price["id"],
        quantity=quantity,
        subscription=sub["id"],
        tax_rates=[],
        billing_thresholds=None,
    )
    store.add(item)
    return item


def _priced(store: Store, sub: dict[str, Any], item: dict[str, Any]) -> dict[str, Any]:
    """The item's price in the subscription's currency (its ``currency_options`` if need be)."""
    return pricing.in_currency(store.objects["price"][item["price"]], sub["currency"])


def _check_compatible(store: Store, prices: list[dict[str, Any]], currency: str | None = None) -> None:
    if currency is not None:
        for price in prices:
            if pricing.in_currency(price, currency) is None:
                raise invalid_param(
                    "currency",
                    f"The price {price['id']} has no amount in {currency}: add it to its currency_options.",
                )
        return _check_intervals(prices)
    currencies = {p["currency"] for p in prices}
    if len(currencies) > 1:
        raise invalid_param("items", "All prices on a subscription must have the same currency.")
    _check_intervals(prices)


def _check_currency(price: dict[str, Any], currency: str, param: str) -> None:
    """Refused before anything changes: Stripe leaves the subscription as it was."""
    if pricing.in_currency(price, currency) is None:
        supported = ", ".join(f"`{c}`" for c in [price["currency"], *(price.get("currency_options") or {})])
        raise invalid_param(
            param,
            f"The price specified supports currencies of {supported} which doesn't include the "
            f"expected currency of `{currency}`.",
        )


def _check_intervals(prices: list[dict[str, Any]]) -> None:
    intervals = {(p["recurring"]["interval"], p["recurring"]["interval_count"]) for p in prices}
    if len(intervals) > 1:
        raise invalid_param(
            "items",
            "The price specified has a different billing interval than the subscription's other "
            "prices. All prices on a subscription must have the same recurring interval.",
        )


def default_payment_method_for(store: Store, sub: dict[str, Any] | None, customer_id: str):
    if sub and sub.get("default_payment_method"):
        return store.find("payment_method", sub["default_payment_method"])
    customer = store.find("customer", customer_id)
    if customer and customer["invoice_settings"]["default_payment_method"]:
        return store.find("payment_method", customer["invoice_settings"]["default_payment_method"])
    return None


# --- invoices ------------------------------------------------------------------------------------


def new_invoice(
    store: Store,
    *,
    customer_id: str,
    billing_reason: str,
    subscription: dict[str, Any] | None = None,
    currency: str = "usd",
    period_start: int | None = None,
    period_end: int | None = None,
    collection_method: str = "charge_automatically",
    days_until_due: int | None = None,
    metadata: dict[str, str] | None = None,
    description: str | None = None,
    invoice_id: str | None = None,
) -> dict[str, Any]:
    customer = store.get("customer", customer_id, "customer")
    now = store.now(customer.get("test_clock"))
    if customer.get("currency") is None:
        customer["currency"] = currency  # a customer's first invoice sets its currency for good
    invoice = new_object(
        store,
        "invoice",
        id=invoice_id,
        created=now,
        account_country="US",
        account_name="Tally",
        amount_due=0,
        amount_overpaid=0,
        amount_paid=0,
        amount_remaining=0,
        amount_shipping=0,
        attempt_count=0,
        attempted=False,
        auto_advance=True,
        automatic_tax={
            "disabled_reason": None,
            "enabled": False,
            "liability": None,
            "provider": None,
            "status": None,
        },
        billing_reason=billing_reason,
        collection_method=collection_method,
        currency=currency,
        customer=customer_id,
        customer_address=customer.get("address"),
        customer_email=customer.get("email"),
        customer_name=customer.get("name"),
        customer_phone=customer.get("phone"),
        customer_shipping=customer.get("shipping"),
        customer_tax_exempt=customer.get("tax_exempt") or "none",
        customer_tax_ids=[],
        description=description,
        discounts=[],
        due_date=now + days_until_due * 86400 if days_until_due is not None else None,
        issuer={"type": "self"},
        metadata=dict(metadata or {}),
        payment_settings={
            "default_mandate": None,
            "payment_method_options": None,
            "payment_method_types": None,
        },
        period_end=period_end if period_end is not None else now,
        period_start=period_start if period_start is not None else now,
        post_payment_credit_notes_amount=0,
        pre_payment_credit_notes_amount=0,
        rendering=None,
        starting_balance=0,
        status="draft",
        status_transitions={
            "finalized_at": None,
            "marked_uncollectible_at": None,
            "paid_at": None,
            "voided_at": None,
        },
        subtotal=0,
        subtotal_excluding_tax=0,
        test_clock=customer.get("test_clock"),
        total=0,
        total_discount_amounts=[],
        total_excluding_tax=0,
        total_pretax_credit_amounts=[],
        total_taxes=[],
        _lines=[],
    )
    if subscription is not None:
        invoice["parent"] = {
            "quote_details": None,
            "subscription_details": {
                "metadata": dict(subscription["metadata"]),
                "subscription": subscription["id"],
            },
            "type": "subscription_details",
        }
        invoice["default_payment_method"] = subscription.get("default_payment_method")
        invoice["discounts"] = [d["id"] for d in discounts.live_discounts(store, subscription, now)]
        if subscription["automatic_tax"]["enabled"]:
            invoice["automatic_tax"].update(
                enabled=True, liability={"type": "self"}, provider="stripe", status="requires_location_inputs"
            )
    store.add(invoice)
    return invoice


def _line(
    store: Store,
    invoice: dict[str, Any],
    *,
    amount: int,
    description: str,
    period: tuple[int, int],
    price: dict[str, Any] | None = None,
    quantity: int | None = 1,
    subscription_id: str | None = None,
    sub_item_id: str | None = None,
    invoice_item: dict[str, Any] | None = None,
    proration: bool = False,
    metadata: dict[str, str] | None = None,
    discountable: bool = True,
    line_discounts: list[str] | None = None,
) -> dict[str, Any]:
    if sub_item_id is not None:
        parent = {
            "invoice_item_details": None,
            "subscription_item_details": {
                "invoice_item": invoice_item["id"] if invoice_item else None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
                "subscription_item": sub_item_id,
            },
            "type": "subscription_item_details",
        }
    else:
        parent = {
            "invoice_item_details": {
                "invoice_item": invoice_item["id"] if invoice_item else None,
                "proration": proration,
                "proration_details": {"credited_items": None},
                "subscription": subscription_id,
            },
            "subscription_item_details": None,
            "type": "invoice_item_details",
        }
    line = blank("line_item")
    line.update(
        id=store.new_id("il"),
        object="line_item",
        amount=amount,
        currency=invoice["currency"],
        description=description,
        discount_amounts=[],
        discountable=discountable,
        discounts=list(line_discounts or []),
        invoice=invoice["id"],
        livemode=False,
        metadata=dict(metadata or {}),
        parent=parent,
        period={"start": period[0], "end": period[1]},
        pretax_credit_amounts=[],
        pricing={
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price.get("unit_amount_decimal"),
        }
        if price
        else None,
        quantity=quantity,
        quantity_decimal=str(quantity) if quantity is not None else None,
        subscription=subscription_id,
        subtotal=amount,
        taxes=[],
    )
    invoice["_lines"].append(line)
    totals(store, invoice)
    return line


def totals(store: Store, invoice: dict[str, Any]) -> None:
    """Subtotal, discounts, then the total: recomputed whole whenever a line is added."""
    discounts.apply_to_invoice(store, invoice)
    tax.apply_to_invoice(store, invoice, discounts.line_discount)
    subtotal = sum(line["amount"] for line in invoice["_lines"])
    off = sum(entry["amount"] for entry in invoice["total_discount_amounts"])
    exclusive, inclusive = tax.exclusive_total(invoice), tax.inclusive_total(invoice)
    # Discounts come off first; exclusive tax is added to what is left, inclusive tax is in it.
    total = subtotal - off + exclusive
    invoice.update(subtotal=subtotal, subtotal_excluding_tax=subtotal - inclusive, total=total)
    invoice["total_excluding_tax"] = total - exclusive - inclusive
    # A negative total (more credit than charge) is due as zero, as on Stripe.
    due = max(total, 0)
    invoice["amount_due"] = due
    invoice["amount_remaining"] = max(due - invoice["amount_paid"], 0)


def _item_line(store: Store, invoice: dict[str, Any], ii: dict[str, Any]) -> dict[str, Any]:
    details = (ii.get("pricing") or {}).get("price_details") or {}
    price = store.find("price", details.get("price"))
    sub_details = (ii.get("parent") or {}).get("subscription_details") or {}
    ii["invoice"] = invoice["id"]
    return _line(
        store,
        invoice,
        amount=ii["amount"],
        description=ii["description"] or "",
        period=(ii["period"]["start"], ii["period"]["end"]),
        price=price,
        quantity=ii["quantity"],
        subscription_id=sub_details.get("subscription"),
        sub_item_id=sub_details.get("subscription_item"),
        invoice_item=ii,
        proration=ii["proration"],
        metadata=ii["metadata"],
        discountable=ii["discountable"],
        line_discounts=ii["discounts"] or [],
    )


def pending_items(
    store: Store, customer_id: str, subscription_id: str | None, *, include_one_offs: bool
) -> list[dict[str, Any]]:
    found = []
    for ii in reversed(store.all("invoiceitem")):  # oldest first
        if ii["customer"] != customer_id or ii["invoice"]:
            continue
        owner = ((ii.get("parent") or {}).get("subscription_details") or {}).get("subscription")
        if owner == subscription_id or (owner is None and include_one_offs):
            found.append(ii)
    return found


def _number(store: Store, invoice: dict[str, Any]) -> str:
    customer = store.objects["customer"][invoice["customer"]]
    number = f"{customer['invoice_prefix']}-{customer['next_invoice_sequence']:04d}"
    customer["next_invoice_sequence"] += 1
    previous = {"next_invoice_sequence": customer["next_invoice_sequence"] - 1}
    emit(store, "customer.updated", customer, previous)
    return number


def finalize(store: Store, invoice: dict[str, Any]) -> None:
    """Draft -> open; a zero-amount invoice is paid on the spot, as Stripe does."""
    if invoice["status"] != "draft":
        raise invalid(
            "This invoice is already finalized, you can't re-finalize a non-draft invoice.",
            code="invoice_not_editable",
        )
    now = store.now(invoice["test_clock"])
    invoice["status"] = "open"
    invoice["number"] = _number(store, invoice)
    invoice["effective_at"] = now
    invoice["status_transitions"]["finalized_at"] = now
    invoice["hosted_invoice_url"] = f"{store.base_url}/i/{invoice['id']}"
    invoice["invoice_pdf"] = f"{store.base_url}/i/{invoice['id']}/pdf"  # stripe_sim.pdf
    invoice["next_payment_attempt"] = now if invoice["collection_method"] == "charge_automatically" else None
    emit(store, "invoice.finalized", invoice)
    if any(line["discountable"] and line["amount"] > 0 for line in invoice["_lines"]):
        for discount_id in invoice["discounts"]:
            discount = discounts.discount_of(store, discount_id)
            if discounts.coupon_for(store, discount)["duration"] == "once":
                discounts.end_discount(store, discount)  # used on its one invoice
    if invoice["amount_due"] == 0:
        _mark_paid(store, invoice, now)


def pay_from_hosted_page(store: Store, invoice: dict[str, Any], card_number: str) -> None:
    """The customer pays on the hosted invoice page with a card typed there (kept on file). A card
    that asks for authentication leaves the invoice open, for the page's authentication step."""
    pm = card_payment_method(store, card_number)
    attach_payment_method(store, pm, store.get("customer", invoice["customer"]))
    attempt_payment(store, invoice, pm=pm, raise_on_failure=True, on_session=True)


def _mark_paid(store: Store, invoice: dict[str, Any], now: int) -> None:
    invoice["status"] = "paid"
    invoice["amount_paid"] = invoice["amount_due"]
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["paid_at"] = now
    invoice["ending_balance"] = 0
    emit(store, "invoice.paid", invoice)
    emit(store, "invoice.payment_succeeded", invoice)
    _after_paid(store, invoice)


def _invoice_payment(store: Store, invoice: dict, pi: dict, now: int) -> dict[str, Any]:
    record = new_object(
        store,
        "invoice_payment",
        created=now,
        amount_paid=pi["amount_received"] or None,
        amount_requested=pi["amount"],
        currency=pi["currency"],
        invoice=invoice["id"],
        is_default=True,
        payment={"payment_intent": pi["id"], "type": "payment_intent"},
        status="paid" if pi["status"] == "succeeded" else "open",
        status_transitions={"canceled_at": None, "paid_at": now if pi["amount_received"] else None},
    )
    for other in store.all("invoice_payment"):
        if other["invoice"] == invoice["id"]:
            other["is_default"] = False
            if other["status"] == "open":
                other["status"] = "canceled"
    store.add(record)
    return record


def attempt_payment(
    store: Store,
    invoice: dict[str, Any],
    *,
    pm: dict[str, Any] | None = None,
    raise_on_failure: bool = False,
    on_session: bool = False,
) -> bool:
    """Charge the invoice's amount due to its card. Returns whether it is now paid. An
    uncollectible invoice can still be paid, as on Stripe. A card that asks for authentication
    leaves the invoice open with ``invoice.payment_action_required``; off session (renewals, the
    API's ``invoices.pay``) that is also a failed attempt."""
    if invoice["status"] not in ("open", "uncollectible"):
        paid = invoice["status"] == "paid"
        raise invalid(
            f"Invoice is already {invoice['status']}.",
            code="invoice_already_paid" if paid else "invoice_not_open",
        )
    now = store.now(invoice["test_clock"])
    sub = _invoice_subscription(store, invoice)
    if pm is None:
        if invoice.get("default_payment_method"):
            pm = store.find("payment_method", invoice["default_payment_method"])
        pm = pm or default_payment_method_for(store, sub, invoice["customer"])
    invoice["attempted"] = True
    invoice["attempt_count"] += 1
    if pm is None:
        invoice["next_payment_attempt"] = None
        emit(store, "invoice.payment_failed", invoice)
        if raise_on_failure:
            raise invalid(
                "This customer has no attached payment source or default payment method.",
                code="resource_missing",
            )
        return False
    pi = create_payment_intent(
        store,
        amount=invoice["amount_remaining"],
        currency=invoice["currency"],
        customer_id=invoice["customer"],
        description=f"Invoice {invoice['number']}",
    )
    confirm_payment_intent(store, pi, pm, raise_on_decline=False)
    _invoice_payment(store, invoice, pi, now)
    if pi["status"] == "succeeded":
        _mark_paid(store, invoice, now)
        return True
    if pi["status"] == "processing":
        # A bank debit: the invoice stays open until the bank answers (``debit_settled``).
        invoice["next_payment_attempt"] = None
        return False
    invoice["next_payment_attempt"] = None
    if pi["status"] == "requires_action":
        if not on_session:
            emit(store, "invoice.payment_failed", invoice)
        emit(store, "invoice.payment_action_required", invoice)
        if raise_on_failure and not on_session:
            raise card_error(
                "This payment requires additional user action before it can be completed "
                "successfully. Payment can be completed using the PaymentIntent associated with "
                "the invoice.",
                code="invoice_payment_intent_requires_action",
                extra={"payment_intent": render(store, pi)},
            )
        return False
    emit(store, "invoice.payment_failed", invoice)
    if raise_on_failure:
        code, decline_code, message = decline_of(pm) or ("card_declined", None, "declined")
        raise card_error(message, code=code, decline_code=decline_code)
    return False


def _invoice_subscription(store: Store, invoice: dict[str, Any]) -> dict[str, Any] | None:
    details = (invoice.get("parent") or {}).get("subscription_details") or {}
    sub_id = details.get("subscription")
    return store.objects.get("subscription", {}).get(sub_id) if sub_id else None


def _after_paid(store: Store, invoice: dict[str, Any]) -> None:
    """A paid invoice brings an incomplete or delinquent subscription back to active."""
    sub = _invoice_subscription(store, invoice)
    if sub is None or (sub["latest_invoice"] != invoice["id"] and sub["status"] != "past_due"):
        return
    if sub["status"] in ("incomplete", "past_due", "unpaid"):
        set_status(store, sub, "active")


def set_status(store: Store, sub: dict[str, Any], status: str) -> None:
    before = render(store, sub)
    sub["status"] = status
    emit(store, "customer.subscription.updated", sub, changed(before, render(store, sub)))


def _schedule_retry(store: Store, invoice: dict[str, Any]) -> None:
    """After a failed automatic attempt: the next retry, or ``None`` when retries are spent."""
    days = store.config.retry_days
    if invoice["attempt_count"] <= len(days):
        now = store.now(invoice["test_clock"])
        invoice["next_payment_attempt"] = now + days[invoice["attempt_count"] - 1] * 86400
    else:
        invoice["next_payment_attempt"] = None


EMBEDDED_LINES = 10


@renderer("invoice")
def _render_invoice(store: Store, invoice: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(invoice)
    # As Stripe embeds them: the first ten lines; the rest are paged from the ``url``.
    out["lines"] = {
        "object": "list",
        "data": [dict(line) for line in invoice["_lines"][:EMBEDDED_LINES]],
        "has_more": len(invoice["_lines"]) > EMBEDDED_LINES,
        "url": f"/v1/invoices/{invoice['id']}/lines",
    }
    if "payments" in expand:
        payments = [p for p in store.all("invoice_payment") if p["invoice"] == invoice["id"]]
        out["payments"] = {
            "object": "list",
            "data": [public(p) for p in payments],
            "has_more": False,
            "url": "/v1/invoice_payments",
        }
    return out


# --- subscriptions: creation ---------------------------------------------------------------------


def _parse_trial_end(params: dict[str, Any], now: int) -> int | None:
    trial_end = params.get("trial_end")
    if trial_end == "now":
        return None
    if trial_end not in (None, ""):
        value = int(trial_end)
        if value <= now:
            raise invalid_param("trial_end", "Invalid timestamp: must be in the future.")
        return value
    days = as_int(params, "trial_period_days")
    if days:
        return now + days * 86400
    return None


def _billing_cycle_anchor(
    params: dict[str, Any],
    now: int,
    natural_end: int,
    recurring: dict[str, Any],
    trial_end: int | None,
) -> tuple[int | None, dict[str, Any] | None]:
    """The first period's end when ``billing_cycle_anchor`` (a timestamp) or
    ``billing_cycle_anchor_config`` (day of month and time) moves it off the natural date."""
    raw = params.get("billing_cycle_anchor")
    config = params.get("billing_cycle_anchor_config")
    if raw not in (None, "") and config not in (None, ""):
        raise invalid(
            "You may only specify one of these parameters: billing_cycle_anchor, billing_cycle_anchor_config."
        )
    if raw in (None, "") and config in (None, ""):
        return None, None
    if trial_end is not None:
        raise invalid(
            "The simulator does not combine a trial with billing_cycle_anchor; end the trial on "
            "the anchor instead (trial_end).",
            param="billing_cycle_anchor",
        )
    if raw not in (None, ""):
        anchor = as_int(params, "billing_cycle_anchor")
        assert anchor is not None
        if anchor <= now:
            raise invalid_param("billing_cycle_anchor", "billing_cycle_anchor cannot be in the past.")
        if anchor > natural_end:
            raise invalid_param(
                "billing_cycle_anchor",
                f"billing_cycle_anchor cannot be later than next natural billing date ({natural_end}) "
                "for plan",
            )
        return (None, None) if anchor == natural_end else (anchor, None)
    assert isinstance(config, dict)
    parts = {key: as_int(config, key) for key in ("day_of_month", "month", "hour", "minute", "second")}
    if recurring["interval"] not in ("month", "year"):
        raise invalid_param(
            "billing_cycle_anchor_config",
            "billing_cycle_anchor_config is only supported for monthly and yearly prices.",
        )
    start = dt.datetime.fromtimestamp(now, dt.UTC)
    day = parts["day_of_month"] or 1
    if not 1 <= day <= 31:
        raise invalid_param("billing_cycle_anchor_config[day_of_month]", "Invalid day_of_month.")
    # Hour, minute and second default to the subscription's start time of day.
    clock = (
        parts["hour"] if parts["hour"] is not None else start.hour,
        parts["minute"] if parts["minute"] is not None else start.minute,
        parts["second"] if parts["second"] is not None else start.second,
    )

    def at(year: int, month: int) -> int:
        last = calendar.monthrange(year, month)[1]
        moment = dt.datetime(year, month, min(day, last), *clock, tzinfo=dt.UTC)
        return int(moment.timestamp())

    yearly = recurring["interval"] == "year"
    year, month = start.year, (parts["month"] or start.month) if yearly else start.month
    candidate = at(year, month)
    while candidate <= now:  # the next such moment after the start
        if yearly:
            year += 1
        else:
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
        candidate = at(year, month)
    stored = {
        "day_of_month": day,
        "hour": parts["hour"],
        "minute": parts["minute"],
        "month": parts["month"],
        "second": parts["second"],
    }
    return (None if candidate >= natural_end else candidate), stored


def create_subscription(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    customer = store.get("customer", require(params, "customer"), "customer")
    raw_items = as_list(params, "items")
    if not raw_items:
        raise invalid_param("items", "Missing required param: items.", code="parameter_missing")
    prices = []
    for index, raw in enumerate(raw_items):
        price = _recurring_price(store, require(raw, "price"), f"items[{index}][price]")
        prices.append((price, _quantity_for(price, raw, f"items[{index}][quantity]"), raw))
    currency = str(params.get("currency") or "").lower() or None
    held = customer.get("currency")
    if held and (currency or prices[0][0]["currency"]) != held:
        # Stripe bills a customer in one currency: the one of its first invoice.
        raise invalid_param(
            "currency",
            f"You cannot combine currencies on a single customer. This customer has had a subscription "
            f"or payment in {held}, but you are trying to pay in {currency or prices[0][0]['currency']}.",
        )
    _check_compatible(store, [p for p, _, _ in prices], currency)
    if currency:
        prices = [(pricing.in_currency(p, currency), q, raw) for p, q, raw in prices]
    now = store.now(customer.get("test_clock"))
    behavior = params.get("payment_behavior") or "allow_incomplete"
    collection = params.get("collection_method") or "charge_automatically"
    trial_end = _parse_trial_end(params, now)
    pm = None
    if params.get("default_payment_method"):
        pm = store.get("payment_method", params["default_payment_method"], "default_payment_method")
        if pm["customer"] != customer["id"]:
            raise invalid_param(
                "default_payment_method",
                "The payment method must be attached to the customer.",
            )
    pm = pm or default_payment_method_for(store, None, customer["id"])
    first_amount = sum(pricing.amount_for(p, q) for p, q, _ in prices if q is not None)
    needs_payment = collection == "charge_automatically" and trial_end is None and first_amount > 0
    if needs_payment and behavior != "default_incomplete":
        if pm is None:
            raise invalid(
                "This customer has no attached payment source or default payment method. Please "
                "consider adding a default payment method.",
                code="resource_missing",
            )
        decline = decline_of(pm)
        if decline and behavior == "error_if_incomplete":
            code, decline_code, message = decline
            raise card_error(message, code=code, decline_code=decline_code)

    automatic_tax = tax.automatic_param(params)
    if automatic_tax:
        tax.location_of(store, customer)  # Stripe refuses before creating anything
    recurring = prices[0][0]["recurring"]
    natural_end = pricing.add_interval(now, recurring["interval"], recurring["interval_count"])
    anchor, anchor_config = _billing_cycle_anchor(params, now, natural_end, recurring, trial_end)
    period_end = trial_end or anchor or natural_end
    # Anchored to a date before the natural period end, the first period runs only to the
    # anchor and is charged pro rata (or not at all with proration_behavior=none).
    first_behavior = params.get("proration_behavior") or "create_prorations"
    if first_behavior not in PRORATION_BEHAVIORS:
        raise invalid_param("proration_behavior", f"Invalid proration_behavior: {first_behavior}")
    sub = new_object(
        store,
        "subscription",
        created=now,
        automatic_tax={"disabled_reason": None, **tax.AUTOMATIC_ON}
        if automatic_tax
        else {"disabled_reason": None, "enabled": False, "liability": None},
        billing_cycle_anchor=anchor or (period_end if trial_end else now),
        billing_cycle_anchor_config=anchor_config,
        billing_mode={"flexible": None, "type": "classic"},
        cancel_at=None,
        cancel_at_period_end=False,
        cancellation_details={"comment": None, "feedback": None, "feedback_option": None, "reason": None},
        collection_method=collection,
        currency=prices[0][0]["currency"],
        customer=customer["id"],
        days_until_due=as_int(params, "days_until_due"),
        default_payment_method=params.get("default_payment_method") or None,
        default_tax_rates=[],
        description=params.get("description") or None,
        discounts=[],
        invoice_settings={
            "account_tax_ids": None,
            "custom_fields": None,
            "description": None,
            "footer": None,
            "issuer": {"type": "self"},
        },
        metadata=merge_metadata({}, params.get("metadata")),
        payment_settings={
            "payment_method_options": None,
            "payment_method_types": None,
            "save_default_payment_method": (
                as_dict(params, "payment_settings").get("save_default_payment_method") or "off"
            ),
        },
        start_date=now,
        status="incomplete",
        test_clock=customer.get("test_clock"),
        trial_end=trial_end,
        trial_settings={"end_behavior": {"missing_payment_method": "create_invoice"}},
        trial_start=now if trial_end else None,
        _period_start=now,
        _period_end=period_end,
    )
    if trial_end:
        sub["status"] = "trialing"
    store.add(sub)
    items = [_new_item(store, sub, price, quantity, raw) for price, quantity, raw in prices]
    if params.get("discounts") not in (None, ""):
        discounts.discounts_param(
            store,
            params["discounts"],
            customer_id=customer["id"],
            currency=sub["currency"],
            subtotal=first_amount,
            subscription=sub,
        )
    if as_bool(params, "cancel_at_period_end", False):
        sub["cancel_at_period_end"] = True
        sub["cancel_at"] = period_end
        sub["canceled_at"] = now
    # The first invoice is made with the subscription: its created event names it already.
    sub["latest_invoice"] = store.new_id("invoice")
    emit(store, "customer.subscription.created", sub)

    invoice = new_invoice(
        store,
        invoice_id=sub["latest_invoice"],
        customer_id=customer["id"],
        billing_reason="subscription_create",
        subscription=sub,
        currency=sub["currency"],
        period_start=now,
        period_end=now,
        collection_method=collection,
        days_until_due=sub["days_until_due"],
    )
    for item in items:
        price = _priced(store, sub, item)
        if _is_metered(price):
            continue
        prorated = False
        if trial_end:
            amount, text = 0, f"Trial period for {_product_name(store, price)}"
        elif anchor:
            prorated = True
            full = anchor - pricing.sub_interval(anchor, recurring["interval"], recurring["interval_count"])
            amount = (
                pricing.prorate(price, item["quantity"], anchor - now, full)
                if first_behavior != "none"
                else 0
            )
            text = (
                f"Remaining time on {item['quantity']} {TIMES} {_product_name(store, price)} "
                f"after {_date(now)}"
            )
        else:
            amount = pricing.amount_for(price, item["quantity"])
            text = f"{item['quantity']} {TIMES} {_product_name(store, price)}"
        _line(
            store,
            invoice,
            amount=amount,
            description=text,
            period=(now, period_end),
            price=price,
            quantity=item["quantity"],
            subscription_id=sub["id"],
            sub_item_id=item["id"],
            proration=prorated,
        )
    for raw in as_list(params, "add_invoice_items"):
        ii = create_invoice_item(
            store,
            {**raw, "customer": customer["id"], "subscription": sub["id"], "currency": sub["currency"]},
        )
        _item_line(store, invoice, ii)
    for ii in pending_items(store, customer["id"], None, include_one_offs=True):
        _item_line(store, invoice, ii)
    sub["latest_invoice"] = invoice["id"]
    emit(store, "invoice.created", invoice)
    finalize(store, invoice)
    if invoice["status"] == "open" and collection == "charge_automatically":
        if behavior == "default_incomplete":
            invoice["next_payment_attempt"] = None
        else:
            invoice_pm = store.find("payment_method", sub["default_payment_method"]) or pm
            attempt_payment(store, invoice, pm=invoice_pm)
    elif invoice["status"] == "paid" and sub["status"] == "incomplete":
        set_status(store, sub, "active")
    if collection == "send_invoice" and sub["status"] == "incomplete":
        set_status(store, sub, "active")
    return sub


# --- subscriptions: changes ----------------------------------------------------------------------


def _proration_lines(
    store: Store,
    sub: dict[str, Any],
    item: dict[str, Any],
    old: tuple[dict[str, Any], int] | None,
    new: tuple[dict[str, Any], int] | None,
    at: int,
) -> list[dict[str, Any]]:
    """Invoice items crediting the unused time of ``old`` and charging the rest for ``new``."""
    start, end = sub["_period_start"], sub["_period_end"]
    remaining, period = max(end - at, 0), end - start
    created = []
    for config, sign, label in ((old, -1, "Unused time on"), (new, 1, "Remaining time on")):
        if config is None:
            continue
        price, quantity = config
        price = pricing.in_currency(price, sub["currency"])
        if _is_metered(price):
            continue
        # A discounted item's proration is a share of its discounted amount (classic billing
        # mode): the item names the discounts and is not discounted again on its invoice.
        applied = [
            d
            for d in sub["discounts"]
            if discounts.applies_to_product(
                discounts.coupon_for(store, discounts.discount_of(store, d)), price["product"]
            )
        ]
        full = discounts.net_full_amount(store, sub, price, quantity)
        amount = sign * (round(full * Fraction(remaining, period)) if period > 0 else 0)
        description = f"{label} {quantity} {TIMES} {_product_name(store, price)} after {_date(at)}"
        created.append(
            create_invoice_item(
                store,
                {
                    "customer": sub["customer"],
                    "amount": amount,
                    "currency": sub["currency"],
                    "description": description,
                    "subscription": sub["id"],
                    "period": {"start": at, "end": end},
                },
                price=price,
                quantity=quantity,
                sub_item_id=item["id"],
                proration=True,
                line_discounts=applied,
            )
        )
    return created


def update_subscription(store: Store, sub: dict[str, Any], params: dict[str, Any]) -> None:
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid(
            "A canceled subscription can only update its cancellation_details and metadata.",
        )
    behavior = params.get("proration_behavior") or "create_prorations"
    if behavior not in PRORATION_BEHAVIORS:
        raise invalid_param("proration_behavior", f"Invalid proration_behavior: {behavior}")
    now = _sub_now(store, sub)
    at = as_int(params, "proration_date", now) or now
    before = render(store, sub)
    prorate = behavior != "none" and sub["status"] != "trialing"
    old_interval = _interval(store, sub)

    changes: list[tuple[dict, tuple | None, tuple | None]] = []
    for index, raw in enumerate(as_list(params, "items")):
        param = f"items[{index}]"
        if raw.get("id"):
            item = store.get("subscription_item", raw["id"], f"{param}[id]")
            if item["subscription"] != sub["id"]:
                raise invalid_param(f"{param}[id]", "That item is not on this subscription.")
            old_price = store.objects["price"][item["price"]]
            old = (old_price, item["quantity"])
            if as_bool(raw, "deleted", False):
                store.delete(item)
                item["_removed"] = True
                changes.append((item, old, None))
                continue
            price = (
                _recurring_price(store, raw["price"], f"{param}[price]") if raw.get("price") else old_price
            )
            _check_currency(price, sub["currency"], f"{param}[price]")
            if "quantity" in raw or price is not old_price:
                quantity = (
                    _quantity_for(price, raw, f"{param}[quantity]")
                    if "quantity" in raw
                    else (None if _is_metered(price) else item["quantity"] or 1)
                )
                item["price"], item["quantity"] = price["id"], quantity
                if (price, quantity) != old:
                    changes.append((item, old, (price, quantity)))
            if "metadata" in raw:
                item["metadata"] = merge_metadata(item["metadata"], raw["metadata"])
        else:
            price = _recurring_price(store, require(raw, "price"), f"{param}[price]")
            _check_currency(price, sub["currency"], f"{param}[price]")
            quantity = _quantity_for(price, raw, f"{param}[quantity]")
            item = _new_item(store, sub, price, quantity, raw)
            changes.append((item, None, (price, quantity)))
    live = items_of(store, sub["id"])
    if not live:
        raise invalid_param("items", "A subscription must have at least one item.")
    _check_compatible(store, [store.objects["price"][i["price"]] for i in live], sub["currency"])
    if "discounts" in params:
        discounts.discounts_param(
            store,
            params["discounts"],
            customer_id=sub["customer"],
            currency=sub["currency"],
            subtotal=sum(
                pricing.amount_for(_priced(store, sub, i), i["quantity"])
                for i in live
                if i["quantity"] is not None
            ),
            subscription=sub,
        )

    if "metadata" in params:
        sub["metadata"] = merge_metadata(sub["metadata"], params["metadata"])
    if "automatic_tax" in params:
        enabled = tax.automatic_param(params)
        if enabled:
            tax.location_of(store, store.get("customer", sub["customer"]))
        sub["automatic_tax"] = (
            {"disabled_reason": None, **tax.AUTOMATIC_ON}
            if enabled
            else {"disabled_reason": None, "enabled": False, "liability": None}
        )
    for name in ("description",):
        if name in params:
            sub[name] = params[name] or None
    if "default_payment_method" in params:
        pm_id = params["default_payment_method"] or None
        if pm_id:
            pm = resolve_payment_method(store, pm_id, "default_payment_method")
            if pm["customer"] != sub["customer"]:
                raise invalid_param(
                    "default_payment_method",
                    "The payment method must be attached to the customer.",
                )
            pm_id = pm["id"]
        sub["default_payment_method"] = pm_id
    if "cancel_at_period_end" in params:
        flag = as_bool(params, "cancel_at_period_end")
        sub["cancel_at_period_end"] = bool(flag)
        sub["cancel_at"] = sub["_period_end"] if flag else None
        sub["canceled_at"] = now if flag else None
        sub["cancellation_details"]["reason"] = "cancellation_requested" if flag else None
    if "cancel_at" in params:
        sub["cancel_at"] = as_int(params, "cancel_at")
        sub["cancel_at_period_end"] = False
    end_trial = params.get("trial_end") == "now" and sub["status"] == "trialing"

    immediate_invoice = False
    if end_trial or _interval(store, sub) != old_interval:
        # A new billing cycle starts now: credit what is left of the old one and bill in full.
        if prorate and not end_trial:
            for item, old, _new in changes:
                if old is not None:
                    _proration_lines(store, sub, item, old, None, at)
            for item in live:
                if not any(c[0] is item for c in changes):
                    price = store.objects["price"][item["price"]]
                    _proration_lines(store, sub, item, (price, item["quantity"]), None, at)
        if end_trial:
            sub["trial_end"] = now
        _start_period(store, sub, now, anchor=now)
        immediate_invoice = True
        billing_reason = "subscription_update"
    elif prorate:
        for item, old, new in changes:
            _proration_lines(store, sub, item, old, new, at)
        if behavior == "always_invoice" and changes:
            immediate_invoice = True
            billing_reason = "subscription_update"

    after = render(store, sub)
    if after != before:
        emit(store, "customer.subscription.updated", sub, changed(before, after))
    if immediate_invoice:
        invoice_subscription_now(
            store, sub, billing_reason, full_period=end_trial or (_interval(store, sub) != old_interval)
        )


def _interval(store: Store, sub: dict[str, Any]) -> tuple[str, int] | None:
    live = items_of(store, sub["id"])
    if not live:
        return None
    recurring = store.objects["price"][live[0]["price"]]["recurring"]
    return recurring["interval"], recurring["interval_count"]


def _start_period(store: Store, sub: dict[str, Any], start: int, anchor: int) -> None:
    interval, count = _interval(store, sub) or ("month", 1)
    sub["billing_cycle_anchor"] = anchor
    sub["_period_start"] = start
    sub["_period_end"] = pricing.add_interval(start, interval, count, anchor)
    if sub["status"] == "trialing":
        sub["status"] = "active"
    if sub["cancel_at_period_end"]:
        sub["cancel_at"] = sub["_period_end"]


def invoice_subscription_now(
    store: Store, sub: dict[str, Any], billing_reason: str, *, full_period: bool
) -> dict[str, Any]:
    """Invoice the subscription's pending items (and, for a new cycle, the period in advance)."""
    invoice = new_invoice(
        store,
        customer_id=sub["customer"],
        billing_reason=billing_reason,
        subscription=sub,
        currency=sub["currency"],
        period_start=sub["_period_start"],
        period_end=sub["_period_start"],
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
    )
    for ii in pending_items(store, sub["customer"], sub["id"], include_one_offs=False):
        _item_line(store, invoice, ii)
    if full_period:
        _advance_lines(store, sub, invoice)
    sub["latest_invoice"] = invoice["id"]
    emit(store, "invoice.created", invoice)
    _collect(store, sub, invoice)
    return invoice


def _advance_lines(store: Store, sub: dict[str, Any], invoice: dict[str, Any]) -> None:
    for item in items_of(store, sub["id"]):
        price = _priced(store, sub, item)
        if _is_metered(price):
            continue
        _line(
            store,
            invoice,
            amount=pricing.amount_for(price, item["quantity"]),
            description=f"{item['quantity']} {TIMES} {_product_name(store, price)}",
            period=(sub["_period_start"], sub["_period_end"]),
            price=price,
            quantity=item["quantity"],
            subscription_id=sub["id"],
            sub_item_id=item["id"],
        )


def _collect(store: Store, sub: dict[str, Any], invoice: dict[str, Any]) -> None:
    """Finalize and, for automatic collection, charge; a failure makes the subscription
    ``past_due`` and schedules a retry."""
    finalize(store, invoice)
    if invoice["status"] != "open" or invoice["collection_method"] != "charge_automatically":
        return
    if sub["status"] == "unpaid":
        invoice["next_payment_attempt"] = None
        return
    if not attempt_payment(store, invoice):
        # The retry schedule is a change of its own: an invoice.updated follows.
        _schedule_retry(store, invoice)
        if sub["status"] in ("active", "trialing"):
            set_status(store, sub, "past_due")


def end_subscription(store: Store, sub: dict[str, Any], *, reason: str) -> None:
    now = _sub_now(store, sub)
    sub["status"] = "canceled"
    sub["ended_at"] = now
    sub["canceled_at"] = sub["canceled_at"] or now
    sub["cancellation_details"] = {
        "comment": None,
        "feedback": None,
        "feedback_option": None,
        "reason": reason,
    }
    emit(store, "customer.subscription.deleted", sub)


def cycle_subscription(store: Store, sub: dict[str, Any], *, collect: bool = True) -> None:
    """The period (or trial) ended: start the next one and invoice it, or end the
    subscription if it was set to cancel."""
    end = sub["_period_end"]
    if sub["cancel_at_period_end"] or (sub["cancel_at"] and sub["cancel_at"] <= end):
        end_subscription(store, sub, reason="cancellation_requested")
        return
    before = render(store, sub)
    old_start = sub["_period_start"]
    trial_ending = sub["status"] == "trialing"
    anchor = end if trial_ending else sub["billing_cycle_anchor"]
    _start_period(store, sub, end, anchor)
    # The renewal invoice is part of the same change: the update names it.
    sub["latest_invoice"] = store.new_id("invoice")
    emit(store, "customer.subscription.updated", sub, changed(before, render(store, sub)))
    invoice = new_invoice(
        store,
        invoice_id=sub["latest_invoice"],
        customer_id=sub["customer"],
        billing_reason="subscription_cycle",
        subscription=sub,
        currency=sub["currency"],
        period_start=old_start,
        period_end=end,
        collection_method=sub["collection_method"],
        days_until_due=sub["days_until_due"],
    )
    for item in items_of(store, sub["id"]):
        price = _priced(store, sub, item)
        if not _is_metered(price) or trial_ending:
            continue
        usage = usage_for(store, price["recurring"]["meter"], sub["customer"], old_start, end)
        _line(
            store,
            invoice,
            amount=pricing.amount_for(price, usage),
            description=f"{usage} {TIMES} {_product_name(store, price)}",
            period=(old_start, end),
            price=price,
            quantity=usage,
            subscription_id=sub["id"],
            sub_item_id=item["id"],
        )
    _advance_lines(store, sub, invoice)
    for ii in pending_items(store, sub["customer"], sub["id"], include_one_offs=True):
        _item_line(store, invoice, ii)
    sub["latest_invoice"] = invoice["id"]
    emit(store, "invoice.created", invoice)
    if collect:
        _collect(store, sub, invoice)


def retry_invoice(store: Store, invoice: dict[str, Any]) -> None:
    """A scheduled retry of a failed automatic payment (smart retries)."""
    sub = _invoice_subscription(store, invoice)
    if attempt_payment(store, invoice):
        return
    _schedule_retry(store, invoice)
    if invoice["next_payment_attempt"] is None and sub is not None:
        if sub["status"] not in ("past_due", "active"):
            return
        if store.config.after_retries == "unpaid":
            set_status(store, sub, "unpaid")
        else:
            end_subscription(store, sub, reason="payment_failed")


def expire_incomplete(store: Store, sub: dict[str, Any]) -> None:
    sub["status"] = "incomplete_expired"
    sub["ended_at"] = _sub_now(store, sub)
    invoice = store.find("invoice", sub["latest_invoice"])
    if invoice is not None and invoice["status"] == "open":
        void_invoice(store, invoice)
    emit(store, "customer.subscription.deleted", sub)


def void_invoice(store: Store, invoice: dict[str, Any]) -> None:
    if invoice["status"] not in ("open", "uncollectible"):
        raise invalid(
            f"You can only void open or uncollectible invoices; this one is {invoice['status']}.",
            code="invoice_not_open",
        )
    invoice["status"] = "void"
    invoice["amount_remaining"] = 0
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["voided_at"] = store.now(invoice["test_clock"])
    emit(store, "invoice.voided", invoice)


# --- subscription endpoints ----------------------------------------------------------------------


@route("POST", "/v1/subscriptions")
def subscription_create(ctx: Ctx) -> dict[str, Any]:
    return respond(ctx, create_subscription(ctx.store, ctx.params))


@route("GET", "/v1/subscriptions/<id>")
def subscription_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("subscription", id))


@route("POST", "/v1/subscriptions/<id>")
def subscription_update(ctx: Ctx, id: str) -> dict[str, Any]:
    sub = ctx.store.get("subscription", id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        before = public(sub)
        if "metadata" in ctx.params:
            sub["metadata"] = merge_metadata(sub["metadata"], ctx.params["metadata"])
        if set(ctx.params) - {"metadata", "expand", "cancellation_details"}:
            raise invalid("A canceled subscription can only update its cancellation_details and metadata.")
        if public(sub) != before:
            emit(ctx.store, "customer.subscription.updated", sub, changed(before, sub))
        return respond(ctx, sub)
    update_subscription(ctx.store, sub, ctx.params)
    return respond(ctx, sub)


@route("DELETE", "/v1/subscriptions/<id>")
def subscription_cancel(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    sub = store.get("subscription", id)
    if sub["status"] in ("canceled", "incomplete_expired"):
        raise invalid(
            f"A canceled subscription cannot be canceled again: {id}",
            code="resource_missing",
        )
    if as_bool(params, "prorate", False) and sub["status"] != "trialing":
        at = _sub_now(store, sub)
        for item in items_of(store, sub["id"]):
            price = store.objects["price"][item["price"]]
            _proration_lines(store, sub, item, (price, item["quantity"]), None, at)
    end_subscription(store, sub, reason="cancellation_requested")
    if as_bool(params, "invoice_now", False):
        pending = pending_items(store, sub["customer"], sub["id"], include_one_offs=False)
        if pending:
            invoice_subscription_now(store, sub, "subscription_update", full_period=False)
    return respond(ctx, sub)


@route("POST", "/v1/subscriptions/<id>/resume")
def subscription_resume(ctx: Ctx, id: str) -> dict[str, Any]:
    sub = ctx.store.get("subscription", id)
    if sub["status"] != "paused":
        raise invalid("Only paused subscriptions can be resumed.")
    set_status(ctx.store, sub, "active")
    return respond(ctx, sub)


@route("GET", "/v1/subscriptions")
def subscription_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    items = ctx.store.all("subscription")
    status = params.get("status")
    if status == "all":
        pass
    elif status:
        items = [s for s in items if s["status"] == status]
    else:
        items = [s for s in items if s["status"] not in ("canceled", "incomplete_expired")]
    for name in ("customer", "test_clock", "collection_method"):
        if params.get(name):
            items = [s for s in items if s[name] == params[name]]
    if params.get("price"):
        items = [s for s in items if any(i["price"] == params["price"] for i in items_of(ctx.store, s["id"]))]
    return list_response(ctx, items, "/v1/subscriptions")


@route("GET", "/v1/subscriptions/search")
def subscription_search(ctx: Ctx) -> dict[str, Any]:
    return search_response(ctx, "subscription", "/v1/subscriptions/search")


@route("POST", "/v1/subscription_items")
def subscription_item_create(ctx: Ctx) -> dict[str, Any]:
    sub = ctx.store.get("subscription", require(ctx.params, "subscription"), "subscription")
    known = {i["id"] for i in items_of(ctx.store, sub["id"])}
    item_params = {k: v for k, v in ctx.params.items() if k in ("price", "quantity", "metadata")}
    try:
        update_subscription(ctx.store, sub, {**_sub_params(ctx.params), "items": [item_params]})
    except StripeError as error:
        if error.param and error.param.startswith("items[0]["):
            error.param = error.param[len("items[0][") : -1]  # this endpoint's own parameter
        raise
    new = [i for i in items_of(ctx.store, sub["id"]) if i["id"] not in known]
    return respond(ctx, new[-1])


def _sub_params(params: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in params.items() if k in ("proration_behavior", "proration_date")}


@route("GET", "/v1/subscription_items/<id>")
def subscription_item_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("subscription_item", id))


@route("POST", "/v1/subscription_items/<id>")
def subscription_item_update(ctx: Ctx, id: str) -> dict[str, Any]:
    item = ctx.store.get("subscription_item", id)
    sub = ctx.store.get("subscription", item["subscription"])
    change = {k: v for k, v in ctx.params.items() if k in ("price", "quantity", "metadata")}
    update_subscription(ctx.store, sub, {**_sub_params(ctx.params), "items": [{"id": id, **change}]})
    return respond(ctx, item)


@route("DELETE", "/v1/subscription_items/<id>")
def subscription_item_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    item = ctx.store.get("subscription_item", id)
    sub = ctx.store.get("subscription", item["subscription"])
    update_subscription(ctx.store, sub, {**_sub_params(ctx.params), "items": [{"id": id, "deleted": "true"}]})
    return deleted(item)


@route("GET", "/v1/subscription_items")
def subscription_item_list(ctx: Ctx) -> dict[str, Any]:
    sub_id = require(ctx.params, "subscription")
    ctx.store.get("subscription", sub_id, "subscription")
    items = list(reversed(items_of(ctx.store, sub_id)))
    return list_response(ctx, items, "/v1/subscription_items")


# --- invoice items -------------------------------------------------------------------------------


def create_invoice_item(
    store: Store,
    params: dict[str, Any],
    *,
    price: dict[str, Any] | None = None,
    quantity: int | None = None,
    sub_item_id: str | None = None,
    proration: bool = False,
    line_discounts: list[str] | None = None,
) -> dict[str, Any]:
    customer = store.get("customer", require(params, "customer"), "customer")
    now = store.now(customer.get("test_clock"))
    pricing_params = as_dict(params, "pricing")
    price_id = pricing_params.get("price") or params.get("price")
    if price is None and price_id:
        price = store.get("price", price_id, "pricing[price]")
        if params.get("currency"):
            converted = pricing.in_currency(price, str(params["currency"]).lower())
            if converted is None:
                raise invalid_param(
                    "currency", f"The price {price['id']} has no amount in {params['currency']}."
                )
            price = converted
    if quantity is None:
        quantity = as_int(params, "quantity", 1) or 1
    if "amount" in params and params["amount"] not in (None, ""):
        amount = int(params["amount"])
    elif price is not None:
        amount = pricing.amount_for(price, quantity)
    elif params.get("unit_amount_decimal") not in (None, ""):
        unit = {"unit_amount_decimal": params["unit_amount_decimal"]}
        amount = pricing.amount_for(unit, quantity)
    else:
        raise invalid_param("amount", "Missing required param: amount.", code="parameter_missing")
    currency = str(params.get("currency") or (price or {}).get("currency") or "").lower()
    if not currency:
        raise invalid_param("currency", "Missing required param: currency.")
    sub_id = params.get("subscription") or None
    if sub_id:
        store.get("subscription", sub_id, "subscription")
    period = as_dict(params, "period")
    ii = new_object(
        store,
        "invoiceitem",
        created=now,
        amount=amount,
        currency=currency,
        customer=customer["id"],
        date=now,
        description=params.get("description") or (_product_name(store, price) if price else None),
        discountable=as_bool(params, "discountable", not proration),
        discounts=list(line_discounts or []),
        invoice=None,
        metadata=merge_metadata({}, params.get("metadata")),
        net_amount=amount,
        parent={
            # A one-off item of the subscription has no subscription_item: Stripe leaves it out.
            "subscription_details": {"subscription": sub_id}
            | ({"subscription_item": sub_item_id} if sub_item_id else {}),
            "type": "subscription_details",
        }
        if sub_id
        else None,
        period={
            "start": as_int(period, "start", now),
            "end": as_int(period, "end", now),
        },
        pricing={
            "price_details": {"price": price["id"], "product": price["product"]},
            "type": "price_details",
            "unit_amount_decimal": price.get("unit_amount_decimal"),
        }
        if price
        else {"type": "price_details", "unit_amount_decimal": str(amount)},
        proration=proration,
        quantity=quantity,
        quantity_decimal=str(quantity),
        tax_rates=[],
        test_clock=customer.get("test_clock"),
    )
    store.add(ii)
    emit(store, "invoiceitem.created", ii)
    if params.get("invoice"):
        invoice = store.get("invoice", params["invoice"], "invoice")
        if invoice["status"] != "draft":
            raise invalid_param("invoice", "You can only add invoice items to draft invoices.")
        _item_line(store, invoice, ii)
    return ii


@route("POST", "/v1/invoiceitems")
def invoice_item_create(ctx: Ctx) -> dict[str, Any]:
    return respond(ctx, create_invoice_item(ctx.store, ctx.params))


@route("GET", "/v1/invoiceitems/<id>")
def invoice_item_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("invoiceitem", id))


@route("POST", "/v1/invoiceitems/<id>")
def invoice_item_update(ctx: Ctx, id: str) -> dict[str, Any]:
    ii = ctx.store.get("invoiceitem", id)
    if ii["invoice"]:
        raise invalid("This invoice item is already on an invoice and cannot be modified.")
    before = public(ii)
    if "metadata" in ctx.params:
        ii["metadata"] = merge_metadata(ii["metadata"], ctx.params["metadata"])
    if "description" in ctx.params:
        ii["description"] = ctx.params["description"] or None
    if "amount" in ctx.params:
        ii["amount"] = ii["net_amount"] = as_int(ctx.params, "amount")
    if public(ii) != before:
        emit(ctx.store, "invoiceitem.updated", ii, changed(before, ii))
    return respond(ctx, ii)


@route("DELETE", "/v1/invoiceitems/<id>")
def invoice_item_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    ii = ctx.store.get("invoiceitem", id)
    if ii["invoice"]:
        raise invalid("This invoice item is already on an invoice and cannot be deleted.")
    ctx.store.delete(ii)
    emit(ctx.store, "invoiceitem.deleted", ii)
    return deleted(ii)


@route("GET", "/v1/invoiceitems")
def invoice_item_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("invoiceitem")
    for name in ("customer", "invoice"):
        if ctx.params.get(name):
            items = [i for i in items if i[name] == ctx.params[name]]
    if as_bool(ctx.params, "pending", False):
        items = [i for i in items if not i["invoice"]]
    return list_response(ctx, items, "/v1/invoiceitems")


# --- invoice endpoints ---------------------------------------------------------------------------


@route("POST", "/v1/invoices")
def invoice_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    customer_id = require(params, "customer")
    sub = (
        store.get("subscription", params["subscription"], "subscription")
        if params.get("subscription")
        else None
    )
    invoice = new_invoice(
        store,
        customer_id=customer_id,
        billing_reason="manual",
        subscription=sub,
        currency=str(params.get("currency") or "usd").lower(),
        collection_method=params.get("collection_method") or "charge_automatically",
        days_until_due=as_int(params, "days_until_due"),
        metadata=merge_metadata({}, params.get("metadata")),
        description=params.get("description") or None,
    )
    invoice["auto_advance"] = as_bool(params, "auto_advance", False)
    if params.get("default_payment_method"):
        invoice["default_payment_method"] = params["default_payment_method"]
    if params.get("pending_invoice_items_behavior") == "include":
        owner = sub["id"] if sub else None
        for ii in pending_items(store, customer_id, owner, include_one_offs=True):
            _item_line(store, invoice, ii)
    emit(store, "invoice.created", invoice)
    return respond(ctx, invoice)


@route("GET", "/v1/invoices/<id>")
def invoice_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("invoice", id))


@route("POST", "/v1/invoices/<id>")
def invoice_update(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    before = public(invoice)
    if "metadata" in ctx.params:
        invoice["metadata"] = merge_metadata(invoice["metadata"], ctx.params["metadata"])
    if invoice["status"] == "draft":
        for name in ("description", "default_payment_method"):
            if name in ctx.params:
                invoice[name] = ctx.params[name] or None
        if "auto_advance" in ctx.params:
            invoice["auto_advance"] = as_bool(ctx.params, "auto_advance")
    if public(invoice) != before:
        emit(ctx.store, "invoice.updated", invoice, changed(before, invoice))
    return respond(ctx, invoice)


@route("DELETE", "/v1/invoices/<id>")
def invoice_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    if invoice["status"] != "draft":
        raise invalid("You can only delete draft invoices.", code="invoice_not_editable")
    for ii in ctx.store.all("invoiceitem"):
        if ii["invoice"] == id:
            ii["invoice"] = None
    ctx.store.delete(invoice)
    emit(ctx.store, "invoice.deleted", invoice)
    return deleted(invoice)


@route("POST", "/v1/invoices/<id>/finalize")
def invoice_finalize(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    finalize(ctx.store, invoice)
    if as_bool(ctx.params, "auto_advance", invoice["auto_advance"]) is False:
        invoice["next_payment_attempt"] = None
    return respond(ctx, invoice)


@route("POST", "/v1/invoices/<id>/pay")
def invoice_pay(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    invoice = store.get("invoice", id)
    if invoice["status"] == "draft":
        finalize(store, invoice)
        if invoice["status"] == "paid":
            return respond(ctx, invoice)
    if invoice["status"] == "paid":
        raise invalid("Invoice is already paid", code="invoice_already_paid")
    if as_bool(params, "paid_out_of_band", False):
        if invoice["status"] not in ("open", "uncollectible"):
            raise invalid(f"Invoice is {invoice['status']}.", code="invoice_not_open")
        _mark_paid(store, invoice, store.now(invoice["test_clock"]))
        return respond(ctx, invoice)
    pm = resolve_payment_method(store, params["payment_method"]) if params.get("payment_method") else None
    try:
        attempt_payment(store, invoice, pm=pm, raise_on_failure=True)
    except StripeError:
        if invoice["collection_method"] == "charge_automatically":
            _schedule_retry(store, invoice)
        raise
    return respond(ctx, invoice)


@route("POST", "/v1/invoices/<id>/void")
def invoice_void(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    void_invoice(ctx.store, invoice)
    return respond(ctx, invoice)


@route("POST", "/v1/invoices/<id>/mark_uncollectible")
def invoice_mark_uncollectible(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    if invoice["status"] != "open":
        raise invalid("You can only mark open invoices uncollectible.", code="invoice_not_open")
    invoice["status"] = "uncollectible"
    invoice["next_payment_attempt"] = None
    invoice["status_transitions"]["marked_uncollectible_at"] = ctx.store.now(invoice["test_clock"])
    emit(ctx.store, "invoice.marked_uncollectible", invoice)
    return respond(ctx, invoice)


@route("POST", "/v1/invoices/<id>/send")
def invoice_send(ctx: Ctx, id: str) -> dict[str, Any]:
    invoice = ctx.store.get("invoice", id)
    emit(ctx.store, "invoice.sent", invoice)
    return respond(ctx, invoice)


@route("GET", "/v1/invoices/<id>/lines")
def invoice_lines(ctx: Ctx, id: str) -> dict[str, Any]:
    from stripe_sim.render import paginate

    invoice = ctx.store.get("invoice", id)
    return paginate([dict(line) for line in invoice["_lines"]], ctx.params, f"/v1/invoices/{id}/lines")


@route("GET", "/v1/invoices")
def invoice_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    items = ctx.store.all("invoice")
    for name in ("customer", "status", "collection_method"):
        if params.get(name):
            items = [i for i in items if i[name] == params[name]]
    if params.get("subscription"):
        items = [
            i
            for i in items
            if _invoice_subscription(ctx.store, i) is not None
            and _invoice_subscription(ctx.store, i)["id"] == params["subscription"]
        ]
    return list_response(ctx, items, "/v1/invoices")


@route("GET", "/v1/invoices/search")
def invoice_search(ctx: Ctx) -> dict[str, Any]:
    return search_response(ctx, "invoice", "/v1/invoices/search")


@route("GET", "/v1/invoice_payments")
def invoice_payment_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("invoice_payment")
    if ctx.params.get("invoice"):
        items = [p for p in items if p["invoice"] == ctx.params["invoice"]]
    payment = ctx.params.get("payment")
    if isinstance(payment, dict) and payment.get("payment_intent"):
        # Stripe's `payment[type]=payment_intent&payment[payment_intent]=pi_...`
        wanted = payment["payment_intent"]
        items = [p for p in items if (p.get("payment") or {}).get("payment_intent") == wanted]
    return list_response(ctx, items, "/v1/invoice_payments")


@route("GET", "/v1/invoice_payments/<id>")
def invoice_payment_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("invoice_payment", id))


@route("POST", "/v1/invoices/create_preview")
def invoice_create_preview(ctx: Ctx) -> dict[str, Any]:
    """Run the change for real on a scratch copy of the state, keep the invoice it produces."""
    store, params = ctx.store, ctx.params
    details = as_dict(params, "subscription_details")
    for name in ("discounts", "automatic_tax"):
        if name in params:
            details = {**details, name: params[name]}
    with store.scratch():
        if params.get("subscription"):
            sub = store.get("subscription", params["subscription"], "subscription")
            if sub["status"] in ("canceled", "incomplete_expired"):
                raise invalid(
                    "No upcoming invoices for a canceled subscription.", code="invoice_upcoming_none"
                )
            known = {i["id"] for i in store.all("invoice")}
            if details:
                update_subscription(store, sub, details)
            produced = [i for i in store.all("invoice") if i["id"] not in known]
            invoice = produced[0] if produced else _preview_cycle(store, sub)
        else:
            customer_id = require(params, "customer")
            if not as_list(details, "items"):
                raise invalid("No upcoming invoices for customer.", code="invoice_upcoming_none")
            sub_params = {
                **details,
                "customer": customer_id,
                "payment_behavior": "default_incomplete",
            }
            sub = create_subscription(store, sub_params)
            invoice = store.objects["invoice"][sub["latest_invoice"]]
        out = render(store, invoice, ctx.expand)
    out["id"] = f"upcoming_{out['id']}"
    return out


def _preview_cycle(store: Store, sub: dict[str, Any]) -> dict[str, Any]:
    """What the next renewal invoice will hold, without charging anything."""
    if sub["cancel_at_period_end"]:
        raise invalid("No upcoming invoices for this subscription.", code="invoice_upcoming_none")
    cycle_subscription(store, sub, collect=False)
    return store.objects["invoice"][sub["latest_invoice"]]


def invoice_of_payment_intent(store: Store, pi_id: str) -> dict[str, Any] | None:
    for record in store.all("invoice_payment"):
        if record["payment"].get("payment_intent") == pi_id:
            return store.objects["invoice"].get(record["invoice"])
    return None


def debit_settled(store: Store, invoice: dict[str, Any], pi: dict[str, Any]) -> None:
    """The bank answered the debit paying ``invoice``: paid (the subscription becomes active), or
    failed (``invoice.payment_failed``; an incomplete subscription expires as it would)."""
    now = store.now(invoice["test_clock"])
    for record in store.all("invoice_payment"):
        if record["invoice"] == invoice["id"] and record["payment"].get("payment_intent") == pi["id"]:
            record["status"] = "paid" if pi["status"] == "succeeded" else "canceled"
            record["amount_paid"] = pi["amount_received"] or None
            record["status_transitions"]["paid_at"] = now if pi["status"] == "succeeded" else None
    if invoice["status"] != "open":
        return
    if pi["status"] == "succeeded":
        _mark_paid(store, invoice, now)
        return
    emit(store, "invoice.payment_failed", invoice)
