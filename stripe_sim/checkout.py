"""Checkout sessions and billing portal sessions: the API side and what their hosted pages do."""

from typing import Any

from stripe_sim import billing, discounts, pricing, tax
from stripe_sim.core import (
    SETUP_AUTHENTICATION_FAILED,
    attach_payment_method,
    authenticate_setup_intent,
    card_payment_method,
    confirm_payment_intent,
    confirm_setup_intent,
    create_payment_intent,
    create_setup_intent,
    decline_of,
    list_response,
    new_object,
    respond,
    sepa_payment_method,
    settle_debit,
)
from stripe_sim.core import address_of as core_address
from stripe_sim.errors import card_error, invalid, invalid_param
from stripe_sim.events import changed, emit
from stripe_sim.params import as_bool, as_dict, as_int, as_list, merge_metadata, require
from stripe_sim.render import paginate, public, render, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.shapes import blank
from stripe_sim.store import Store

SESSION_LIFETIME = 24 * 3600
MODES = ("subscription", "payment", "setup")


# --- checkout sessions ---------------------------------------------------------------------------


def session_coupons(store: Store, session: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for entry in session["discounts"] or []:
        if entry.get("promotion_code"):
            promo = store.objects["promotion_code"][entry["promotion_code"]]
            out.append(discounts.coupon_of(store, promo["promotion"]["coupon"]))
        else:
            out.append(discounts.coupon_of(store, entry["coupon"]))
    return out


def amounts(store: Store, session: dict[str, Any]) -> list[dict[str, int]]:
    """Each line item's subtotal, discount and total for today (discounts before tax, per line)."""
    slots = []
    for raw in session["_line_items"]:
        price = pricing.in_currency(store.objects["price"][raw["price"]], session["currency"])
        metered = billing._is_metered(price)
        amount = 0 if metered else pricing.amount_for(price, raw["quantity"])
        slots.append({"amount": amount, "product": price["product"], "discountable": True})
    shares = discounts.allocate(slots, session_coupons(store, session), session["currency"] or "usd")
    taxes = session.get("_taxes") or [None] * len(slots)
    out = []
    for slot, taken, taxed in zip(slots, shares, taxes, strict=True):
        off = sum(taken)
        amount, inclusive = taxed or (0, False)
        total = slot["amount"] - off + (0 if inclusive else amount)
        out.append({"subtotal": slot["amount"], "discount": off, "tax": amount, "total": total})
    return out


def compute_tax(store: Store, session: dict[str, Any], customer: dict[str, Any]) -> None:
    """Tax on each line once the customer's address is known (after discounts, per line)."""
    if not session["automatic_tax"]["enabled"]:
        return
    session["_taxes"] = None
    lines = amounts(store, session)
    _, rate, _, _ = tax.treatment(store, customer)
    taxes = []
    for raw, line in zip(session["_line_items"], lines, strict=True):
        price = pricing.in_currency(store.objects["price"][raw["price"]], session["currency"])
        inclusive = price["tax_behavior"] == "inclusive"
        taxes.append((tax.line_tax(line["subtotal"] - line["discount"], rate, inclusive), inclusive))
    session["_taxes"] = taxes
    session["automatic_tax"]["status"] = "complete"
    recompute(store, session)


def recompute(store: Store, session: dict[str, Any]) -> None:
    """The session's totals from its line items and discounts (a trial charges nothing today)."""
    if session["mode"] == "setup":
        return
    lines = amounts(store, session)
    subtotal = sum(line["subtotal"] for line in lines)
    off = sum(line["discount"] for line in lines)
    taxed = sum(line["tax"] for line in lines)
    trial = session["_subscription_data"]["trial_period_days"]
    session["amount_subtotal"] = subtotal
    session["amount_total"] = 0 if trial else sum(line["total"] for line in lines)
    session["total_details"] = {
        "amount_discount": 0 if trial else off,
        "amount_shipping": 0,
        "amount_tax": 0 if trial else taxed,
    }


def apply_promotion_code(store: Store, session: dict[str, Any], code: str) -> dict[str, Any]:
    """The customer typed a promotion code on the hosted page: check it and apply it."""
    if not session["allow_promotion_codes"]:
        raise invalid("This Checkout Session does not accept promotion codes.")
    promo = discounts.find_code(store, code)
    if promo is None:
        raise invalid_param(
            "promotion_code", f"This code ({code.strip()}) is invalid.", code="coupon_invalid"
        )
    lines = amounts(store, {**session, "discounts": []})
    discounts.check_promotion_code(
        store,
        promo,
        customer_id=session["customer"],
        currency=session["currency"] or "usd",
        subtotal=sum(line["subtotal"] for line in lines),
        param="promotion_code",
    )
    session["discounts"] = [{"coupon": None, "promotion_code": promo["id"]}]
    recompute(store, session)
    return promo


def _line_items(store: Store, session: dict[str, Any]) -> list[dict[str, Any]]:
    items = []
    lines = amounts(store, session)
    for index, raw in enumerate(session["_line_items"]):
        price = pricing.in_currency(store.objects["price"][raw["price"]], session["currency"])
        line = lines[index]
        item = blank("item")
        product = store.objects["product"].get(price["product"], {})
        item.update(
            id=f"li_{session['id'][8:32]}{index:02d}",
            object="item",
            amount_discount=line["discount"],
            amount_subtotal=line["subtotal"],
            amount_tax=line["tax"],
            amount_total=line["total"],
            currency=price["currency"],
            description=product.get("name"),
            metadata={},
            price=render(store, store.objects["price"][raw["price"]]),
            quantity=raw["quantity"],
            adjustable_quantity=None,
        )
        items.append(item)
    return items


@renderer("checkout.session")
def _render_session(store: Store, session: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(session)
    if "line_items" in expand:
        items = _line_items(store, session)
        out["line_items"] = {
            "object": "list",
            "data": items,
            "has_more": False,
            "url": f"/v1/checkout/sessions/{session['id']}/line_items",
        }
    return out


@route("POST", "/v1/checkout/sessions")
def session_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    mode = params.get("mode")
    if mode not in MODES:
        raise invalid_param("mode", "Missing required param: mode.", code="parameter_missing")
    if not params.get("success_url") and params.get("ui_mode") not in ("embedded_page", "elements", "form"):
        raise invalid_param("success_url", "Missing required param: success_url.", code="parameter_missing")
    customer_id = params.get("customer") or None
    customer = store.get("customer", customer_id, "customer") if customer_id else None
    line_items = []
    for index, raw in enumerate(as_list(params, "line_items")):
        price = store.get("price", require(raw, "price"), f"line_items[{index}][price]")
        if not price["active"]:
            raise invalid_param(f"line_items[{index}][price]", "The price is not active.")
        quantity = as_int(raw, "quantity", 1) or 1
        line_items.append({"price": price["id"], "quantity": quantity})
    prices = [store.objects["price"][li["price"]] for li in line_items]
    wanted = str(params.get("currency") or "").lower() or None
    if wanted:
        for index, price in enumerate(prices):
            if pricing.in_currency(price, wanted) is None:
                raise invalid_param(
                    f"line_items[{index}][price]",
                    f"The price {price['id']} has no amount in {wanted}: add it to its currency_options.",
                )
        prices = [pricing.in_currency(p, wanted) for p in prices]
    elif len({p["currency"] for p in prices}) > 1:
        # One session is paid in one currency: prices in several need `currency` (and options).
        raise invalid_param("line_items", "All line items in a Checkout Session must have the same currency.")
    if mode == "subscription" and not any(p["type"] == "recurring" for p in prices):
        raise invalid_param(
            "line_items",
            "You must provide at least one recurring price in `subscription` mode when using prices.",
        )
    if mode == "payment" and any(p["type"] == "recurring" for p in prices):
        raise invalid_param(
            "line_items",
            "You specified `payment` mode but passed a recurring price. Either switch to "
            "`subscription` mode or use only one-time prices.",
        )
    if mode != "setup" and not line_items:
        raise invalid_param("line_items", "Missing required param: line_items.", code="parameter_missing")
    subscription_data = as_dict(params, "subscription_data")
    trial_days = as_int(subscription_data, "trial_period_days")
    subtotal = sum(
        pricing.amount_for(p, li["quantity"])
        for p, li in zip(prices, line_items, strict=True)
        if not billing._is_metered(p)
    )
    currency = prices[0]["currency"] if prices else (params.get("currency") or None)
    allow_codes = as_bool(params, "allow_promotion_codes")
    session_discounts = []
    if params.get("discounts"):
        if allow_codes:
            raise invalid(
                "You may only specify one of these parameters: allow_promotion_codes, discounts.",
                param="discounts",
            )
        if mode == "setup":
            raise invalid_param("discounts", "discounts cannot be used in setup mode.")
        for index, entry in enumerate(as_list(params, "discounts")):
            coupon, promo = discounts.resolve(
                store,
                entry,
                customer_id=customer_id,
                currency=currency or "usd",
                subtotal=subtotal,
                param=f"discounts[{index}]",
            )
            session_discounts.append(
                {"coupon": None if promo else coupon["id"], "promotion_code": promo["id"] if promo else None}
            )
        if len(session_discounts) > 1:
            raise invalid_param("discounts", "A Checkout Session takes one discount.")
    method_types = _payment_method_types(params, currency)
    automatic_tax = tax.automatic_param(params)
    customer_update = as_dict(params, "customer_update")
    if (
        automatic_tax
        and customer is not None
        and not (customer.get("address") or {}).get("country")
        and customer_update.get("address") != "auto"
    ):
        raise invalid_param(
            "customer_update[address]",
            "Automatic tax calculation in Checkout requires a valid address on the Customer. Add a "
            "valid address to the Customer or set either `customer_update[address]` to 'auto' or "
            "`customer_update[shipping]` to 'auto' to save the address entered in Checkout to the "
            "Customer.",
        )
    tax_id_collection = as_dict(params, "tax_id_collection")
    now = store.now(customer.get("test_clock") if customer else None)
    session = new_object(
        store,
        "checkout.session",
        created=now,
        amount_subtotal=subtotal if mode != "setup" else None,
        amount_total=(0 if trial_days else subtotal) if mode != "setup" else None,
        automatic_tax={"enabled": True, "liability": {"type": "self"}, "provider": "stripe", "status": None}
        if automatic_tax
        else {"enabled": False, "liability": None, "provider": None, "status": None},
        billing_address_collection=params.get("billing_address_collection") or None,
        tax_id_collection={
            "enabled": bool(as_bool(tax_id_collection, "enabled", False)),
            "required": tax_id_collection.get("required") or "never",
        },
        cancel_url=params.get("cancel_url") or None,
        client_reference_id=params.get("client_reference_id") or None,
        currency=currency,
        custom_fields=[],
        customer=customer_id,
        customer_creation=None
        if customer_id
        else ("always" if mode == "subscription" else params.get("customer_creation") or "if_required"),
        customer_email=params.get("customer_email") or (customer or {}).get("email"),
        expires_at=as_int(params, "expires_at", now + SESSION_LIFETIME),
        invoice_creation=None,
        locale=params.get("locale") or None,
        metadata=merge_metadata({}, params.get("metadata")),
        mode=mode,
        payment_method_collection="always",
        payment_method_options={},
        payment_method_types=method_types,
        payment_status="unpaid",
        shipping_options=[],
        status="open",
        success_url=params.get("success_url") or None,
        total_details={"amount_discount": 0, "amount_shipping": 0, "amount_tax": 0},
        ui_mode=params.get("ui_mode") or "hosted_page",
        allow_promotion_codes=allow_codes,
        discounts=session_discounts,
        _line_items=line_items,
        _customer_update=dict(customer_update),
        _subscription_data={
            "trial_period_days": trial_days,
            "metadata": merge_metadata({}, subscription_data.get("metadata")),
            "description": subscription_data.get("description"),
        },
        _payment_intent_data={
            "metadata": merge_metadata({}, as_dict(params, "payment_intent_data").get("metadata")),
            "setup_future_usage": as_dict(params, "payment_intent_data").get("setup_future_usage"),
            "description": as_dict(params, "payment_intent_data").get("description"),
        },
        _setup_intent_data={
            "metadata": merge_metadata({}, as_dict(params, "setup_intent_data").get("metadata"))
        },
    )
    session["url"] = f"{ctx.base_url}/checkout/{session['id']}"
    recompute(store, session)
    store.add(session)
    return respond(ctx, session)


PAYMENT_METHOD_TYPES = ("card", "sepa_debit")


def _payment_method_types(params: dict[str, Any], currency: str | None) -> list[str]:
    """What the hosted page offers. Without ``payment_method_types`` (dynamic payment methods),
    cards, and SEPA Direct Debit when the session is in euros, as if enabled in the dashboard."""
    if "payment_method_types" not in params:
        return ["card", "sepa_debit"] if currency == "eur" else ["card"]
    types = [str(t) for t in as_list(params, "payment_method_types")]
    for index, kind in enumerate(types):
        if kind not in PAYMENT_METHOD_TYPES:
            raise invalid_param(
                f"payment_method_types[{index}]",
                f"The payment method type provided: {kind} is invalid. The simulator supports: "
                + ", ".join(PAYMENT_METHOD_TYPES)
                + ".",
            )
    if "sepa_debit" in types and currency != "eur":
        raise invalid_param(
            "payment_method_types",
            f"The currency provided ({currency}) is invalid for one or more payment method types "
            "you provided. Payment method type sepa_debit supports: eur.",
        )
    return types or ["card"]


@route("GET", "/v1/checkout/sessions/<id>")
def session_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, _live_session(ctx.store, id))


@route("GET", "/v1/checkout/sessions/<id>/line_items")
def session_line_items(ctx: Ctx, id: str) -> dict[str, Any]:
    session = ctx.store.get("checkout.session", id)
    items = _line_items(ctx.store, session)
    return paginate(items, ctx.params, f"/v1/checkout/sessions/{id}/line_items")


@route("POST", "/v1/checkout/sessions/<id>/expire")
def session_expire(ctx: Ctx, id: str) -> dict[str, Any]:
    session = _live_session(ctx.store, id)
    if session["status"] != "open":
        raise invalid(
            f'Only Checkout Sessions with a status in ["open"] can be expired. This Checkout '
            f'Session has a status of "{session["status"]}".'
        )
    expire(ctx.store, session)
    return respond(ctx, session)


@route("POST", "/v1/checkout/sessions/<id>")
def session_update(ctx: Ctx, id: str) -> dict[str, Any]:
    session = _live_session(ctx.store, id)
    if "metadata" in ctx.params:
        session["metadata"] = merge_metadata(session["metadata"], ctx.params["metadata"])
    return respond(ctx, session)


@route("GET", "/v1/checkout/sessions")
def session_list(ctx: Ctx) -> dict[str, Any]:
    items = [_refresh(ctx.store, s) for s in ctx.store.all("checkout.session")]
    for name in ("customer", "payment_intent", "subscription", "status"):
        if ctx.params.get(name):
            items = [s for s in items if s[name] == ctx.params[name]]
    return list_response(ctx, items, "/v1/checkout/sessions")


def expire(store: Store, session: dict[str, Any]) -> None:
    session["status"] = "expired"
    session["url"] = None
    emit(store, "checkout.session.expired", session)


def _refresh(store: Store, session: dict[str, Any]) -> dict[str, Any]:
    """Sessions past ``expires_at`` expire when next looked at."""
    if (
        session["status"] == "open"
        and store.now(store.clock_for_customer(session["customer"])) >= session["expires_at"]
    ):
        expire(store, session)
    return session


def _live_session(store: Store, session_id: str) -> dict[str, Any]:
    return _refresh(store, store.get("checkout.session", session_id))


def complete_session(
    store: Store,
    session_id: str,
    *,
    card_number: str,
    email: str | None,
    name: str | None,
    iban: str = "",
    address: dict[str, Any] | None = None,
    business_name: str | None = None,
    tax_id: str = "",
    authenticated: bool = False,
    authentication_failed: bool = False,
) -> str:
    """Pay a checkout session as the hosted page's customer would. Returns the redirect URL.

    With automatic tax or ``billing_address_collection=required`` the page asks for the billing
    address; with ``tax_id_collection`` for a business name and tax ID (format-checked before
    anything is made). The address and tax ID are saved on the customer, and the tax is computed
    from them.

    A declined card raises a 402 ``StripeError`` before anything else is created, as Checkout
    verifies the card before it creates the customer and subscription. An IBAN (SEPA Direct
    Debit, a delayed-notification method) completes the session ``unpaid``: the payment is
    processing until the bank answers (``debit_settle``), when Stripe sends
    ``checkout.session.async_payment_succeeded`` or ``..._failed``.
    """
    session = _live_session(store, session_id)
    if session["status"] != "open":
        raise invalid(f"This Checkout Session is {session['status']}.")
    if iban.strip():
        if "sepa_debit" not in session["payment_method_types"]:
            raise invalid("This Checkout Session does not accept SEPA Direct Debit.")
        if session["mode"] == "setup":
            raise invalid("The simulator saves cards only in setup mode.")
        pm = sepa_payment_method(store, iban)
    else:
        pm = card_payment_method(store, card_number)
    address = core_address(address)
    needs_address = session["automatic_tax"]["enabled"] or session["billing_address_collection"] == "required"
    existing = store.find("customer", session["customer"]) if session["customer"] else None
    known = (existing or {}).get("address") if existing else None
    if needs_address and not (address or {}).get("country") and not (known or {}).get("country"):
        raise invalid_param("address[country]", "Enter your billing address: at least its country.")
    tax_id = (tax_id or "").strip()
    collects_tax_id = bool((session["tax_id_collection"] or {}).get("enabled"))
    tax_id_kind = ("gb_vat" if tax_id.upper().startswith("GB") else "eu_vat") if tax_id else ""
    if tax_id:
        if not collects_tax_id:
            raise invalid("This Checkout Session does not collect tax IDs.")
        tax.check_tax_id(tax_id_kind, tax_id, "tax_id")
    setup_attempt = None
    if pm.get("_authentication") and session["mode"] == "setup" and (authenticated or authentication_failed):
        # Saving a card: its SetupIntent asks for the step (requires_action) and takes the answer
        # given on this page. A failed step saves nothing and leaves the session open.
        setup_attempt = create_setup_intent(
            store, customer_id=session["customer"], metadata=session["_setup_intent_data"]["metadata"]
        )
        confirm_setup_intent(store, setup_attempt, pm)
        if authentication_failed:
            authenticate_setup_intent(store, setup_attempt, "fail")
            raise invalid(SETUP_AUTHENTICATION_FAILED, code="setup_intent_authentication_failure")
        setup_attempt["_authenticated"] = True
    if pm.get("_authentication"):
        if not authenticated:
            raise invalid("This card asks for authentication: complete it on the hosted page first.")
        # The step answered on the page covers the payment made now, and (Checkout saves the card
        # for the subscription) sets the card up for later off-session payments.
        pm["_authenticated_once"] = True
        pm["_set_up_off_session"] = session["mode"] in ("subscription", "setup")
    decline = decline_of(pm)
    if decline:
        code, decline_code, message = decline
        raise card_error(message, code=code, decline_code=decline_code)
    email = email or session["customer_email"]
    if session["customer"]:
        customer = store.get("customer", session["customer"])
    else:
        customer = new_object(
            store,
            "customer",
            balance=0,
            delinquent=False,
            email=email,
            invoice_prefix=store.new_id("x", 8)[2:].upper(),
            invoice_settings={
                "custom_fields": None,
                "default_payment_method": None,
                "footer": None,
                "rendering_options": None,
            },
            metadata={},
            name=name or None,
            next_invoice_sequence=1,
            preferred_locales=[],
            tax_exempt="none",
            test_clock=None,
        )
        store.add(customer)
        emit(store, "customer.created", customer)
        session["customer"] = customer["id"]
    pm["billing_details"]["email"] = email
    pm["billing_details"]["name"] = name or None
    _save_billing_details(
        store, session, customer, existing is None, address, business_name, tax_id_kind, tax_id
    )
    compute_tax(store, session, customer)
    attach_payment_method(store, pm, customer)
    mode = session["mode"]
    if mode == "subscription":
        data = session["_subscription_data"]
        recurring = [
            li for li in session["_line_items"] if store.objects["price"][li["price"]]["type"] == "recurring"
        ]
        # As in Stripe, one-time prices in subscription mode go on the first invoice only.
        one_time = [li for li in session["_line_items"] if li not in recurring]
        params: dict[str, Any] = {
            "customer": customer["id"],
            "items": [
                {"price": li["price"]}
                if billing._is_metered(store.objects["price"][li["price"]])
                else {"price": li["price"], "quantity": str(li["quantity"])}
                for li in recurring
            ],
            "add_invoice_items": [{"price": li["price"], "quantity": str(li["quantity"])} for li in one_time],
            "default_payment_method": pm["id"],
            "metadata": data["metadata"],
            "payment_behavior": "allow_incomplete",
            "currency": session["currency"],
        }
        if data["trial_period_days"]:
            params["trial_period_days"] = str(data["trial_period_days"])
        if session["discounts"]:
            params["discounts"] = [{k: v for k, v in d.items() if v} for d in session["discounts"]]
        if session["automatic_tax"]["enabled"]:
            params["automatic_tax"] = {"enabled": "true"}
        if data.get("description"):
            params["description"] = data["description"]
        sub = billing.create_subscription(store, params)
        for discount_id in sub["discounts"]:
            discounts.discount_of(store, discount_id)["checkout_session"] = session["id"]
        invoice = store.objects["invoice"][sub["latest_invoice"]]
        session["subscription"] = sub["id"]
        session["invoice"] = invoice["id"]
        if invoice["status"] == "open":
            session["payment_status"] = "unpaid"  # the debit is processing
        else:
            session["payment_status"] = "paid" if invoice["amount_paid"] > 0 else "no_payment_required"
    elif mode == "payment":
        data = session["_payment_intent_data"]
        pi = create_payment_intent(
            store,
            amount=session["amount_total"],
            currency=session["currency"],
            customer_id=customer["id"],
            description=data.get("description"),
            metadata=data["metadata"],
            setup_future_usage=data.get("setup_future_usage"),
        )
        confirm_payment_intent(store, pi, pm)
        for entry in session["discounts"] or []:
            # No subscription carries a discount in payment mode: the redemption is counted.
            if entry.get("promotion_code"):
                promo = store.objects["promotion_code"][entry["promotion_code"]]
                promo["times_redeemed"] += 1
            for coupon in session_coupons(store, {"discounts": [entry]}):
                coupon["times_redeemed"] += 1
        session["payment_intent"] = pi["id"]
        session["payment_status"] = "paid" if pi["status"] == "succeeded" else "unpaid"
    else:
        seti = setup_attempt or create_setup_intent(
            store, customer_id=customer["id"], metadata=session["_setup_intent_data"]["metadata"]
        )
        seti["customer"] = customer["id"]
        if seti["status"] == "requires_action":
            authenticate_setup_intent(store, seti, "complete")  # answered on this page
        else:
            confirm_setup_intent(store, seti, pm)
        session["setup_intent"] = seti["id"]
        session["payment_status"] = "no_payment_required"
    session["status"] = "complete"
    session["url"] = None
    session["customer_details"] = {
        "address": customer.get("address") if needs_address or address else None,
        "business_name": business_name or None,
        "email": email,
        "individual_name": None,
        "name": name or None,
        "phone": None,
        "tax_exempt": customer.get("tax_exempt") or "none",
        "tax_ids": [{"type": tax_id_kind, "value": tax.check_tax_id(tax_id_kind, tax_id, "tax_id")[0]}]
        if tax_id
        else [],
    }
    pm.pop("_authenticated_once", None)  # nothing was charged (a trial): the next payment asks again
    emit(store, "checkout.session.completed", session)
    return str(session["success_url"] or "").replace("{CHECKOUT_SESSION_ID}", session["id"])


def _save_billing_details(
    store: Store,
    session: dict[str, Any],
    customer: dict[str, Any],
    new: bool,
    address: dict[str, Any] | None,
    business_name: str | None,
    tax_id_kind: str,
    tax_id: str,
) -> None:
    """What the customer entered goes on the customer: always on a new one, on an existing one as
    ``customer_update`` allows (and an address where there was none)."""
    before = public(customer)
    update = session["_customer_update"]
    had_address = bool((customer.get("address") or {}).get("country"))
    if address and (new or update.get("address") == "auto" or not had_address):
        customer["address"] = address
    if business_name and (new or update.get("name") == "auto"):
        customer["name"] = business_name
    if not new and public(customer) != before:
        emit(store, "customer.updated", customer, changed(before, customer))
    if tax_id and not any(
        t["value"] == tax.check_tax_id(tax_id_kind, tax_id, "tax_id")[0]
        for t in tax.tax_ids_of(store, customer["id"])
    ):
        tax.create_tax_id(store, customer, tax_id_kind, tax_id, "tax_id")


def debit_settle(store: Store, pi: dict[str, Any]) -> None:
    """The bank answers a processing debit (its test IBAN says how): the intent settles, the
    invoice it pays is paid or not, and the Checkout Session that took it says so."""
    if pi["status"] != "processing":
        return
    settle_debit(store, pi, pi.get("_settle_outcome", "succeeded"))
    invoice = billing.invoice_of_payment_intent(store, pi["id"])
    if invoice is not None:
        billing.debit_settled(store, invoice, pi)
    for session in store.all("checkout.session"):
        paid_by = session.get("payment_intent") == pi["id"] or (
            invoice is not None and session.get("invoice") == invoice["id"]
        )
        if not paid_by or session["status"] != "complete" or session["payment_status"] != "unpaid":
            continue
        if pi["status"] == "succeeded":
            session["payment_status"] = "paid"
            emit(store, "checkout.session.async_payment_succeeded", session)
        else:
            emit(store, "checkout.session.async_payment_failed", session)


def processing_debits(store: Store) -> list[dict[str, Any]]:
    return [pi for pi in store.all("payment_intent") if pi["status"] == "processing"]


# --- billing portal ------------------------------------------------------------------------------


def _default_configuration(store: Store) -> dict[str, Any]:
    existing = next((c for c in store.all("billing_portal.configuration") if c["is_default"]), None)
    if existing is not None:
        return existing
    return _create_configuration(store, {}, is_default=True)


def _create_configuration(
    store: Store, params: dict[str, Any], *, is_default: bool = False
) -> dict[str, Any]:
    features = as_dict(params, "features")
    update = features.get("subscription_update") or {}
    cancel = features.get("subscription_cancel") or {}
    products = [
        {"prices": as_list(p, "prices"), "product": p.get("product")} for p in as_list(update, "products")
    ]
    config = new_object(
        store,
        "billing_portal.configuration",
        active=True,
        business_profile={
            "headline": as_dict(params, "business_profile").get("headline"),
            "privacy_policy_url": None,
            "terms_of_service_url": None,
        },
        default_return_url=params.get("default_return_url") or None,
        features={
            "customer_update": {"allowed_updates": ["email"], "enabled": True},
            "invoice_history": {"enabled": True},
            "payment_method_update": {"enabled": True, "payment_method_configuration": None},
            "subscription_cancel": {
                "cancellation_reason": {"enabled": False, "feedback_options": [], "options": []},
                "enabled": cancel.get("enabled", "true") != "false",
                "mode": cancel.get("mode") or "at_period_end",
                "proration_behavior": cancel.get("proration_behavior") or "none",
            },
            "subscription_update": {
                "billing_cycle_anchor": None,
                "default_allowed_updates": as_list(update, "default_allowed_updates") or ["price"],
                "enabled": update.get("enabled", "true") != "false",
                "products": products,
                "proration_behavior": update.get("proration_behavior") or "create_prorations",
                "schedule_at_period_end": {"conditions": []},
                "trial_update_behavior": "end_trial",
            },
        },
        is_default=is_default,
        login_page={"enabled": False, "url": None},
        metadata=merge_metadata({}, params.get("metadata")),
        name=params.get("name") or None,
    )
    config["updated"] = config["created"]
    store.add(config)
    return config


def portal_prices(store: Store, config: dict[str, Any]) -> list[dict[str, Any]]:
    """The recurring prices a customer may switch to (all active ones if none configured)."""
    configured = config["features"]["subscription_update"]["products"]
    prices = [p for p in store.all("price") if p["active"] and p["type"] == "recurring"]
    if configured:
        allowed = {pid for entry in configured for pid in entry["prices"]}
        prices = [p for p in prices if p["id"] in allowed]
    return sorted(prices, key=lambda p: (p["product"], p["_seq"]))


@route("POST", "/v1/billing_portal/configurations")
def configuration_create(ctx: Ctx) -> dict[str, Any]:
    return respond(ctx, _create_configuration(ctx.store, ctx.params))


@route("GET", "/v1/billing_portal/configurations/<id>")
def configuration_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("billing_portal.configuration", id))


@route("POST", "/v1/billing_portal/configurations/<id>")
def configuration_update(ctx: Ctx, id: str) -> dict[str, Any]:
    config = ctx.store.get("billing_portal.configuration", id)
    if "active" in ctx.params:
        config["active"] = as_bool(ctx.params, "active")
    if "metadata" in ctx.params:
        config["metadata"] = merge_metadata(config["metadata"] or {}, ctx.params["metadata"])
    update = as_dict(as_dict(ctx.params, "features"), "subscription_update")
    if "products" in update:
        config["features"]["subscription_update"]["products"] = [
            {"prices": as_list(p, "prices"), "product": p.get("product")} for p in as_list(update, "products")
        ]
    config["updated"] = ctx.store.now()
    return respond(ctx, config)


@route("GET", "/v1/billing_portal/configurations")
def configuration_list(ctx: Ctx) -> dict[str, Any]:
    return list_response(
        ctx, ctx.store.all("billing_portal.configuration"), "/v1/billing_portal/configurations"
    )


@route("POST", "/v1/billing_portal/sessions")
def portal_session_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    customer = store.get("customer", require(params, "customer"), "customer")
    if params.get("configuration"):
        config = store.get("billing_portal.configuration", params["configuration"], "configuration")
    else:
        config = _default_configuration(store)
    return_url = params.get("return_url") or config["default_return_url"]
    session = new_object(
        store,
        "billing_portal.session",
        configuration=config["id"],
        customer=customer["id"],
        flow=None,
        locale=params.get("locale") or None,
        on_behalf_of=None,
        return_url=return_url,
    )
    session["url"] = f"{ctx.base_url}/portal/{session['id']}"
    store.add(session)
    return respond(ctx, session)


def portal_action(store: Store, session_id: str, form: dict[str, str]) -> str:
    """Apply one action from the portal page; returns a short confirmation for the page."""
    session = store.get("billing_portal.session", session_id)
    config = store.get("billing_portal.configuration", session["configuration"])
    customer = store.get("customer", session["customer"])
    action = form.get("action")
    if action == "card":
        pm = card_payment_method(store, form.get("card_number", ""))
        attach_payment_method(store, pm, customer)
        before = public(customer)
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
        emit(store, "customer.updated", customer, changed(before, customer))
        for sub in store.all("subscription"):
            if sub["customer"] == customer["id"] and sub["status"] in billing.LIVE_STATUSES:
                billing.update_subscription(store, sub, {"default_payment_method": pm["id"]})
        return f"Card ending {pm['card']['last4']} saved."
    sub = store.get("subscription", form.get("subscription"), "subscription")
    if sub["customer"] != customer["id"]:
        raise invalid("That subscription belongs to another customer.")
    if action == "cancel":
        billing.update_subscription(store, sub, {"cancel_at_period_end": "true"})
        return "Your plan will be canceled at the end of the billing period."
    if action == "resume":
        billing.update_subscription(store, sub, {"cancel_at_period_end": "false"})
        return "Your plan will renew."
    if action == "switch":
        price_id = form.get("price")
        if price_id not in {p["id"] for p in portal_prices(store, config)}:
            raise invalid("That price is not offered in this portal.")
        items = billing.items_of(store, sub["id"])
        behavior = config["features"]["subscription_update"]["proration_behavior"]
        billing.update_subscription(
            store,
            sub,
            {"items": [{"id": items[0]["id"], "price": price_id}], "proration_behavior": behavior},
        )
        return "Your plan was updated."
    raise invalid(f"Unknown portal action: {action}")
