"""Account, customers, products, prices (and their plan view), payment methods, setup intents,
payment intents, charges, refunds and balance transactions."""

import contextlib
import hashlib
import re
from typing import Any

from stripe_sim.errors import StripeError, card_error, invalid, invalid_param
from stripe_sim.events import changed, emit
from stripe_sim.params import (
    as_bool,
    as_dict,
    as_int,
    as_list,
    merge_metadata,
    require,
)
from stripe_sim.render import filter_created, paginate, public, render, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.search import matches, search_result
from stripe_sim.shapes import blank
from stripe_sim.store import Store

ACCOUNT_ID = "acct_1SimulatorTa11yXX"


def respond(ctx: Ctx, obj: dict[str, Any]) -> dict[str, Any]:
    return render(ctx.store, obj, ctx.expand)


def new_object(store: Store, kind: str, created: int | None = None, **fields: Any) -> dict:
    obj = blank(kind)
    obj.update(id=fields.pop("id", None) or store.new_id(kind), object=kind)
    if "livemode" in obj:
        obj["livemode"] = False
    if "created" in obj:
        obj["created"] = created if created is not None else store.now()
    obj.update(fields)
    return obj


def address_of(raw: Any) -> dict[str, Any] | None:
    """A full address (every field, null when not given), or None to unset."""
    if raw in (None, ""):
        return None
    if not isinstance(raw, dict):
        raise invalid_param("address", "Invalid address: must be a hash")
    out = {k: (raw.get(k) or None) for k in ("city", "country", "line1", "line2", "postal_code", "state")}
    if out["country"]:
        out["country"] = str(out["country"]).upper()
        if not re.fullmatch(r"[A-Z]{2}", out["country"]):
            raise invalid_param("address[country]", f"Country '{out['country']}' is unknown.")
    return out


def update_fields(obj: dict[str, Any], params: dict[str, Any], names: tuple[str, ...]) -> None:
    for name in names:
        if name in params:
            value = params[name]
            obj[name] = None if value == "" else value


def deleted(obj: dict[str, Any]) -> dict[str, Any]:
    return {"id": obj["id"], "object": obj["object"], "deleted": True}


def list_response(ctx: Ctx, items: list[dict[str, Any]], url: str) -> dict[str, Any]:
    return respond(ctx, paginate(filter_created(items, ctx.params), ctx.params, url))


def search_response(ctx: Ctx, kind: str, url: str) -> dict[str, Any]:
    query = str(require(ctx.params, "query"))
    found = [o for o in ctx.store.all(kind) if matches(o, query)]
    return respond(ctx, search_result(found, url, as_int(ctx.params, "limit", 10) or 10))


# --- account -------------------------------------------------------------------------------------


@route("GET", "/v1/account")
def account_retrieve(ctx: Ctx) -> dict[str, Any]:
    """The platform's own standard account, as Stripe serves it to its own secret key."""
    account = blank("account")
    for absent in ("external_accounts", "future_requirements", "requirements", "tos_acceptance"):
        del account[absent]  # for a standard account's own key Stripe leaves these out
    account.update(
        id=ACCOUNT_ID,
        object="account",
        business_profile={
            "mcc": "5734",
            "minority_owned_business_designation": None,
            "name": "Tally (simulated)",
            "support_address": None,
            "support_email": None,
            "support_phone": None,
            "support_url": None,
            "url": None,
        },
        business_type="company",
        capabilities={"card_payments": "active", "transfers": "active"},
        charges_enabled=True,
        payouts_enabled=True,
        details_submitted=True,
        country="US",
        created=1700000000,
        default_currency="usd",
        email="billing@example.com",
        settings={
            "branding": {"icon": None, "logo": None, "primary_color": None, "secondary_color": None},
            "card_payments": {
                "decline_on": {"avs_failure": False, "cvc_failure": False},
                "statement_descriptor_prefix": "TALLY",
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
            "dashboard": {"display_name": "Tally", "timezone": "Etc/UTC"},
            "payments": {
                "statement_descriptor": "TALLY",
                "statement_descriptor_kana": None,
                "statement_descriptor_kanji": None,
                "statement_descriptor_prefix_kana": None,
                "statement_descriptor_prefix_kanji": None,
            },
        },
        type="standard",
        controller={"type": "account"},
    )
    return account


# --- customers -----------------------------------------------------------------------------------

_CUSTOMER_FIELDS = ("email", "name", "description", "phone", "address", "shipping", "tax_exempt")


@route("POST", "/v1/customers")
def customer_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    clock_id = params.get("test_clock")
    if clock_id:
        store.get("test_helpers.test_clock", clock_id, "test_clock")
    customer = new_object(
        store,
        "customer",
        created=store.now(clock_id),
        balance=0,
        delinquent=False,
        invoice_prefix=store.new_id("x", 8)[2:].upper(),
        invoice_settings={
            "custom_fields": None,
            "default_payment_method": None,
            "footer": None,
            "rendering_options": None,
        },
        metadata=merge_metadata({}, params.get("metadata")),
        next_invoice_sequence=1,
        preferred_locales=as_list(params, "preferred_locales"),
        tax_exempt="none",
        test_clock=clock_id or None,
    )
    update_fields(customer, params, _CUSTOMER_FIELDS)
    if "address" in params:
        customer["address"] = address_of(params["address"])
    if params.get("tax_id_data"):
        from stripe_sim import tax

        # Checked first: a tax ID Stripe refuses leaves no customer behind.
        for index, entry in enumerate(as_list(params, "tax_id_data")):
            tax.check_tax_id(str(entry.get("type")), str(entry.get("value")), f"tax_id_data[{index}][value]")
    store.add(customer)
    emit(store, "customer.created", customer)
    if params.get("tax_id_data"):
        tax.tax_id_data(store, customer, params["tax_id_data"])
    pm_id = params.get("payment_method")
    if pm_id:
        attach_payment_method(store, resolve_payment_method(store, pm_id), customer)
    default_pm = as_dict(params, "invoice_settings").get("default_payment_method")
    if default_pm:
        set_default_payment_method(store, customer, default_pm)
    return respond(ctx, customer)


@route("GET", "/v1/customers/<id>")
def customer_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    customer = ctx.store.objects.get("customer", {}).get(id)
    if customer is not None and customer.get("_deleted"):
        return deleted(customer)  # Stripe keeps answering for deleted customers
    return respond(ctx, ctx.store.get("customer", id))


@route("POST", "/v1/customers/<id>")
def customer_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    customer = store.get("customer", id)
    before = public(customer)
    update_fields(customer, params, _CUSTOMER_FIELDS)
    if "address" in params:
        customer["address"] = address_of(params["address"])
    if "metadata" in params:
        customer["metadata"] = merge_metadata(customer["metadata"], params["metadata"])
    settings = as_dict(params, "invoice_settings")
    if "default_payment_method" in settings:
        set_default_payment_method(store, customer, settings["default_payment_method"], emit_=False)
    if public(customer) != before:
        emit(store, "customer.updated", customer, changed(before, customer))
    return respond(ctx, customer)


@route("DELETE", "/v1/customers/<id>")
def customer_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    from stripe_sim.billing import end_subscription

    store = ctx.store
    customer = store.get("customer", id)
    for sub in store.all("subscription"):
        if sub["customer"] == id and sub["status"] not in ("canceled", "incomplete_expired"):
            end_subscription(store, sub, reason="cancellation_requested")
    store.delete(customer)
    emit(store, "customer.deleted", customer)
    return deleted(customer)


@route("GET", "/v1/customers")
def customer_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("customer")
    if ctx.params.get("email"):
        items = [c for c in items if c.get("email") == ctx.params["email"]]
    if ctx.params.get("test_clock"):
        items = [c for c in items if c.get("test_clock") == ctx.params["test_clock"]]
    return list_response(ctx, items, "/v1/customers")


@route("GET", "/v1/customers/search")
def customer_search(ctx: Ctx) -> dict[str, Any]:
    return search_response(ctx, "customer", "/v1/customers/search")


@route("GET", "/v1/customers/<id>/payment_methods")
def customer_payment_methods(ctx: Ctx, id: str) -> dict[str, Any]:
    ctx.store.get("customer", id)
    items = [pm for pm in ctx.store.all("payment_method") if pm["customer"] == id]
    if ctx.params.get("type"):
        items = [pm for pm in items if pm["type"] == ctx.params["type"]]
    return list_response(ctx, items, f"/v1/customers/{id}/payment_methods")


@route("GET", "/v1/customers/<id>/payment_methods/<pm>")
def customer_payment_method(ctx: Ctx, id: str, pm: str) -> dict[str, Any]:
    method = ctx.store.get("payment_method", pm)
    if method["customer"] != id:
        raise invalid(f"No such PaymentMethod: '{pm}'", code="resource_missing")
    return respond(ctx, method)


def set_default_payment_method(
    store: Store, customer: dict[str, Any], pm_id: Any, *, emit_: bool = True
) -> None:
    before = public(customer)
    if pm_id in ("", None):
        customer["invoice_settings"]["default_payment_method"] = None
    else:
        pm = store.get("payment_method", pm_id, "invoice_settings[default_payment_method]")
        if pm["customer"] != customer["id"]:
            raise invalid_param(
                "invoice_settings[default_payment_method]",
                f"The customer does not have a payment method with the ID {pm_id}. The payment "
                "method must be attached to the customer.",
                code="resource_missing",
            )
        customer["invoice_settings"]["default_payment_method"] = pm["id"]
    if emit_ and public(customer) != before:
        emit(store, "customer.updated", customer, changed(before, customer))


# --- products ------------------------------------------------------------------------------------

_PRODUCT_FIELDS = ("name", "description", "unit_label", "url", "statement_descriptor", "tax_code")


@route("POST", "/v1/products")
def product_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    require(params, "name")
    if params.get("id") and store.find("product", params["id"]):
        raise invalid_param("id", "Product already exists.", code="resource_already_exists")
    product = new_object(
        store,
        "product",
        id=params.get("id"),
        active=as_bool(params, "active", True),
        images=as_list(params, "images"),
        marketing_features=as_list(params, "marketing_features"),
        metadata=merge_metadata({}, params.get("metadata")),
        type="service",
    )
    product["updated"] = product["created"]
    update_fields(product, params, _PRODUCT_FIELDS)
    store.add(product)
    emit(store, "product.created", product)
    price_data = as_dict(params, "default_price_data")
    if price_data:
        price = create_price(store, {**price_data, "product": product["id"]})
        product["default_price"] = price["id"]
    return respond(ctx, product)


@route("GET", "/v1/products/<id>")
def product_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("product", id))


@route("POST", "/v1/products/<id>")
def product_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    product = store.get("product", id)
    before = public(product)
    update_fields(product, params, _PRODUCT_FIELDS)
    if "active" in params:
        product["active"] = as_bool(params, "active")
    if "metadata" in params:
        product["metadata"] = merge_metadata(product["metadata"], params["metadata"])
    if "default_price" in params:
        product["default_price"] = store.get("price", params["default_price"], "default_price")["id"]
    if "images" in params:
        product["images"] = as_list(params, "images")
    if public(product) != before:
        product["updated"] = store.now()
        emit(store, "product.updated", product, changed(before, product))
    return respond(ctx, product)


@route("DELETE", "/v1/products/<id>")
def product_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    product = store.get("product", id)
    if any(p["product"] == id for p in store.all("price")):
        raise invalid("This product cannot be deleted because it has one or more user-created prices.")
    store.delete(product)
    emit(store, "product.deleted", product)
    return deleted(product)


@route("GET", "/v1/products")
def product_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("product")
    if "active" in ctx.params:
        items = [p for p in items if p["active"] == as_bool(ctx.params, "active")]
    ids = as_list(ctx.params, "ids")
    if ids:
        items = [p for p in items if p["id"] in ids]
    return list_response(ctx, items, "/v1/products")


@route("GET", "/v1/products/search")
def product_search(ctx: Ctx) -> dict[str, Any]:
    return search_response(ctx, "product", "/v1/products/search")


# --- prices --------------------------------------------------------------------------------------


def _parse_tiers(raw: list[Any]) -> list[dict[str, Any]]:
    tiers = []
    for index, tier in enumerate(raw):
        if not isinstance(tier, dict) or "up_to" not in tier:
            raise invalid_param(f"tiers[{index}][up_to]", "Missing required param: up_to.")
        up_to = None if tier["up_to"] == "inf" else int(tier["up_to"])
        unit = tier.get("unit_amount")
        flat = tier.get("flat_amount")
        tiers.append(
            {
                "flat_amount": int(flat) if flat not in (None, "") else None,
                "flat_amount_decimal": tier.get("flat_amount_decimal")
                or (str(int(flat)) if flat not in (None, "") else None),
                "unit_amount": int(unit) if unit not in (None, "") else None,
                "unit_amount_decimal": tier.get("unit_amount_decimal")
                or (str(int(unit)) if unit not in (None, "") else None),
                "up_to": up_to,
            }
        )
    bounds = [t["up_to"] for t in tiers]
    if not tiers or bounds[-1] is not None:
        raise invalid_param("tiers", "The last tier must have `up_to` set to `inf`.")
    finite = [b for b in bounds[:-1]]
    if None in finite or finite != sorted(finite) or len(set(finite)) != len(finite):
        raise invalid_param("tiers", "Tiers must be in ascending order of `up_to`.")
    return tiers


def create_price(store: Store, params: dict[str, Any]) -> dict[str, Any]:
    currency = str(require(params, "currency")).lower()
    product_data = as_dict(params, "product_data")
    if product_data:
        product = new_object(
            store,
            "product",
            active=True,
            name=require(product_data, "name"),
            metadata=merge_metadata({}, product_data.get("metadata")),
            type="service",
        )
        product["updated"] = product["created"]
        store.add(product)
        emit(store, "product.created", product)
        product_id = product["id"]
    else:
        product_id = store.get("product", require(params, "product"), "product")["id"]
    scheme = params.get("billing_scheme") or "per_unit"
    recurring = as_dict(params, "recurring")
    price = new_object(
        store,
        "price",
        active=as_bool(params, "active", True),
        billing_scheme=scheme,
        currency=currency,
        custom_unit_amount=None,
        lookup_key=params.get("lookup_key") or None,
        metadata=merge_metadata({}, params.get("metadata")),
        nickname=params.get("nickname") or None,
        product=product_id,
        tax_behavior=params.get("tax_behavior") or "unspecified",
        type="recurring" if recurring else "one_time",
    )
    if recurring:
        usage_type = recurring.get("usage_type") or "licensed"
        meter = recurring.get("meter") or None
        if usage_type == "metered":
            if not meter:
                raise invalid_param(
                    "recurring[meter]",
                    "A meter is required for metered prices.",
                    code="parameter_missing",
                )
            store.get("billing.meter", meter, "recurring[meter]")
        interval = require(recurring, "interval")
        if interval not in ("day", "week", "month", "year"):
            raise invalid_param("recurring[interval]", f"Invalid interval: {interval}")
        price["recurring"] = {
            "interval": interval,
            "interval_count": int(recurring.get("interval_count") or 1),
            "meter": meter,
            "trial_period_days": as_int(recurring, "trial_period_days"),
            "usage_type": usage_type,
        }
    if scheme == "tiered":
        mode = params.get("tiers_mode")
        if mode not in ("graduated", "volume"):
            raise invalid_param("tiers_mode", "Missing required param: tiers_mode.")
        price["tiers_mode"] = mode
        price["_tiers"] = _parse_tiers(as_list(params, "tiers"))
        price["unit_amount"] = None
        price["unit_amount_decimal"] = None
    elif scheme == "per_unit":
        if params.get("unit_amount") not in (None, ""):
            amount = as_int(params, "unit_amount")
            price["unit_amount"] = amount
            price["unit_amount_decimal"] = str(amount)
        elif params.get("unit_amount_decimal") not in (None, ""):
            price["unit_amount_decimal"] = str(params["unit_amount_decimal"])
        elif as_dict(params, "custom_unit_amount"):
            price["custom_unit_amount"] = {"maximum": None, "minimum": None, "preset": None}
        else:
            raise invalid_param(
                "unit_amount", "Missing required param: unit_amount.", code="parameter_missing"
            )
        transform = as_dict(params, "transform_quantity")
        if transform:
            divide_by = as_int(transform, "divide_by")
            if not divide_by or divide_by < 1:
                raise invalid_param("transform_quantity[divide_by]", "Invalid divide_by.")
            if transform.get("round") not in ("up", "down"):
                raise invalid_param("transform_quantity[round]", "Invalid round: up or down.")
            price["transform_quantity"] = {"divide_by": divide_by, "round": transform["round"]}
    else:
        raise invalid_param("billing_scheme", f"Invalid billing_scheme: {scheme}")
    options = params.get("currency_options")
    if options not in (None, ""):
        _currency_options(price, options)
    _claim_lookup_key(store, price, params)
    store.add(price)
    emit(store, "price.created", price)
    return price


def _currency_options(price: dict[str, Any], raw: Any) -> None:
    """``currency_options``: the same price in other currencies, each with its own amounts."""
    if not isinstance(raw, dict):
        raise invalid_param("currency_options", "Invalid currency_options: must be a hash")
    options, tiers = {}, {}
    for currency, option in raw.items():
        currency = str(currency).lower()
        where = f"currency_options[{currency}]"
        if currency == price["currency"]:
            raise invalid_param(where, "currency_options cannot repeat the price's own currency.")
        if not isinstance(option, dict):
            raise invalid_param(where, f"Invalid object: {where} must be a hash")
        entry = {
            "custom_unit_amount": None,
            "tax_behavior": option.get("tax_behavior") or price["tax_behavior"],
            "unit_amount": None,
            "unit_amount_decimal": None,
        }
        if price["billing_scheme"] == "tiered":
            if not as_list(option, "tiers"):
                raise invalid_param(f"{where}[tiers]", "A tiered price needs tiers in every currency.")
            tiers[currency] = _parse_tiers(as_list(option, "tiers"))
            if [t["up_to"] for t in tiers[currency]] != [t["up_to"] for t in price["_tiers"]]:
                raise invalid_param(f"{where}[tiers]", "Tiers in every currency have the same bounds.")
        else:
            amount = as_int(option, "unit_amount")
            if amount is None or amount < 0:
                raise invalid_param(f"{where}[unit_amount]", "Missing required param: unit_amount.")
            entry["unit_amount"], entry["unit_amount_decimal"] = amount, str(amount)
        options[currency] = entry
    price["currency_options"] = options
    if tiers:
        price["_currency_tiers"] = tiers


def _claim_lookup_key(store: Store, price: dict[str, Any], params: dict[str, Any]) -> None:
    key = price.get("lookup_key")
    if not key:
        return
    holder = next(
        (p for p in store.all("price") if p.get("lookup_key") == key and p["id"] != price["id"]),
        None,
    )
    if holder is None:
        return
    if not as_bool(params, "transfer_lookup_key", False):
        raise invalid_param(
            "lookup_key",
            f"A price (`{holder['id']}`) already uses that lookup key.",
        )
    before = public(holder)
    holder["lookup_key"] = None
    emit(store, "price.updated", holder, changed(before, holder))


@renderer("price")
def _render_price(store: Store, price: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(price)
    if "tiers" in expand and price.get("billing_scheme") == "tiered":
        out["tiers"] = [dict(t) for t in price.get("_tiers", [])]
    # Left out unless asked for, as Stripe does.
    options = out.pop("currency_options", None)
    tiered = "tiers" in expand and price.get("billing_scheme") == "tiered"
    if "currency_options" in expand:
        out["currency_options"] = {
            currency: {
                **option,
                **({"tiers": price["_currency_tiers"][currency]} if tiered else {}),
            }
            for currency, option in (options or {}).items()
        }
    return out


@route("POST", "/v1/prices")
def price_create(ctx: Ctx) -> dict[str, Any]:
    return respond(ctx, create_price(ctx.store, ctx.params))


@route("GET", "/v1/prices/<id>")
def price_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("price", id))


@route("POST", "/v1/prices/<id>")
def price_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    price = store.get("price", id)
    before = public(price)
    if "active" in params:
        price["active"] = as_bool(params, "active")
    if "nickname" in params:
        price["nickname"] = params["nickname"] or None
    if "metadata" in params:
        price["metadata"] = merge_metadata(price["metadata"], params["metadata"])
    if "lookup_key" in params:
        price["lookup_key"] = params["lookup_key"] or None
        _claim_lookup_key(store, price, params)
    if public(price) != before:
        emit(store, "price.updated", price, changed(before, price))
    return respond(ctx, price)


@route("GET", "/v1/prices")
def price_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    items = ctx.store.all("price")
    if "active" in params:
        items = [p for p in items if p["active"] == as_bool(params, "active")]
    for name in ("product", "type", "currency"):
        if params.get(name):
            items = [p for p in items if p[name] == params[name]]
    keys = as_list(params, "lookup_keys")
    if keys:
        items = [p for p in items if p.get("lookup_key") in keys]
    recurring = as_dict(params, "recurring")
    for name in ("interval", "usage_type", "meter"):
        if recurring.get(name):
            items = [p for p in items if (p["recurring"] or {}).get(name) == recurring[name]]
    return list_response(ctx, items, "/v1/prices")


@route("GET", "/v1/prices/search")
def price_search(ctx: Ctx) -> dict[str, Any]:
    return search_response(ctx, "price", "/v1/prices/search")


def plan_view(price: dict[str, Any]) -> dict[str, Any]:
    """The legacy ``plan`` shape of a recurring price (still embedded in subscription items)."""
    recurring = price["recurring"] or {}
    plan = blank("plan")
    plan.update(
        id=price["id"],
        object="plan",
        active=price["active"],
        amount=price["unit_amount"],
        amount_decimal=price["unit_amount_decimal"],
        billing_scheme=price["billing_scheme"],
        created=price["created"],
        currency=price["currency"],
        interval=recurring.get("interval"),
        interval_count=recurring.get("interval_count"),
        livemode=False,
        metadata=dict(price["metadata"]),
        meter=recurring.get("meter"),
        nickname=price["nickname"],
        product=price["product"],
        tiers_mode=price["tiers_mode"],
        transform_usage=price["transform_quantity"],
        trial_period_days=recurring.get("trial_period_days"),
        usage_type=recurring.get("usage_type"),
    )
    if price.get("_tiers"):
        plan["tiers"] = [dict(t) for t in price["_tiers"]]
    return plan


@route("GET", "/v1/plans/<id>")
def plan_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    price = ctx.store.get("price", id)
    if price["type"] != "recurring":
        raise StripeError(
            404, "invalid_request_error", f"No such plan: '{id}'", code="resource_missing", param="id"
        )
    return plan_view(price)


@route("GET", "/v1/plans")
def plan_list(ctx: Ctx) -> dict[str, Any]:
    prices = [p for p in ctx.store.all("price") if p["type"] == "recurring"]
    page = paginate(prices, ctx.params, "/v1/plans")
    page["data"] = [plan_view(p) for p in page["data"]]
    return page


# --- payment methods -----------------------------------------------------------------------------

# Stripe's documented test cards: number -> (brand, funding, decline or None, declines on attach).
_DECLINES: dict[str, tuple[str, str | None, str]] = {
    "generic": ("card_declined", "generic_decline", "Your card was declined."),
    "insufficient_funds": (
        "card_declined",
        "insufficient_funds",
        "Your card has insufficient funds.",
    ),
    "expired": ("expired_card", "expired_card", "Your card has expired."),
    "cvc": ("incorrect_cvc", "incorrect_cvc", "Your card's security code is incorrect."),
    "processing": (
        "processing_error",
        "processing_error",
        "An error occurred while processing your card. Try again in a little bit.",
    ),
    "fraudulent": ("card_declined", "fraudulent", "Your card was declined."),
}

TEST_CARDS: dict[str, tuple[str, str, str | None, bool]] = {
    "4242424242424242": ("visa", "credit", None, False),
    "4000056655665556": ("visa", "debit", None, False),
    "5555555555554444": ("mastercard", "credit", None, False),
    "378282246310005": ("amex", "credit", None, False),
    "4000000000000002": ("visa", "credit", "generic", True),
    "4000000000009995": ("visa", "credit", "insufficient_funds", True),
    "4000000000000069": ("visa", "credit", "expired", True),
    "4000000000000127": ("visa", "credit", "cvc", True),
    "4000000000000119": ("visa", "credit", "processing", True),
    "4100000000000019": ("visa", "credit", "fraudulent", True),
    # Attaches fine; every later charge is declined (the card that makes dunning testable).
    "4000000000000341": ("visa", "credit", "generic", False),
    # Succeeds, then is disputed as fraudulent (see DISPUTE_CARDS).
    "4000000000000259": ("visa", "credit", None, False),
    # Cards that ask for authentication (see AUTHENTICATION_CARDS); the last is declined for
    # insufficient funds once authenticated.
    "4000002500003155": ("visa", "credit", None, False),
    "4000002760003184": ("visa", "credit", None, False),
    "4000008260003178": ("visa", "credit", "insufficient_funds", False),
}
# Cards whose successful charges the cardholder disputes at once: number -> Stripe's reason.
DISPUTE_CARDS: dict[str, str] = {"4000000000000259": "fraudulent"}
# 3D Secure: "setup" cards ask on every payment until saved for off-session use with an
# authenticated payment or setup; "always" cards ask on every payment, off-session ones too.
AUTHENTICATION_CARDS: dict[str, str] = {
    "4000002500003155": "setup",
    "4000002760003184": "always",
    "4000008260003178": "always",
}

TEST_TOKENS: dict[str, str] = {
    "pm_card_visa": "4242424242424242",
    "pm_card_visa_debit": "4000056655665556",
    "pm_card_mastercard": "5555555555554444",
    "pm_card_amex": "378282246310005",
    "pm_card_chargeDeclined": "4000000000000002",
    "pm_card_chargeDeclinedInsufficientFunds": "4000000000009995",
    "pm_card_chargeDeclinedExpiredCard": "4000000000000069",
    "pm_card_chargeDeclinedIncorrectCvc": "4000000000000127",
    "pm_card_chargeDeclinedProcessingError": "4000000000000119",
    "pm_card_chargeDeclinedFraudulent": "4100000000000019",
    "pm_card_chargeCustomerFail": "4000000000000341",
    "pm_card_createDispute": "4000000000000259",
    "pm_card_authenticationRequiredOnSetup": "4000002500003155",
    "pm_card_authenticationRequired": "4000002760003184",
    "pm_card_authenticationRequiredChargeDeclinedInsufficientFunds": "4000008260003178",
}
CARD_TOKENS: dict[str, str] = {
    "tok_visa": "4242424242424242",
    "tok_mastercard": "5555555555554444",
    "tok_amex": "378282246310005",
    "tok_chargeDeclined": "4000000000000002",
    "tok_chargeCustomerFail": "4000000000000341",
    "tok_createDispute": "4000000000000259",
    "tok_threeDSecure2Required": "4000002760003184",
}

# Called as hook(store, charge, pm) after a charge succeeded and its events were emitted
# (disputes registers the one that opens a dispute for the dispute card).
CHARGE_SUCCEEDED_HOOKS: list = []


def _blank_billing_details() -> dict[str, Any]:
    """A new payment method's billing details, before anyone fills them in."""
    address = dict.fromkeys(("city", "country", "line1", "line2", "postal_code", "state"))
    return {"address": address, "email": None, "name": None, "phone": None, "tax_id": None}


def card_payment_method(
    store: Store, number: str, *, exp_month: int = 12, exp_year: int | None = None, **fields: Any
) -> dict[str, Any]:
    """A new, unattached card payment method for a test card number."""
    digits = "".join(ch for ch in str(number) if ch.isdigit())
    if digits not in TEST_CARDS:
        raise card_error(
            "Your card number is incorrect. Use one of Stripe's test card numbers.",
            code="incorrect_number",
        )
    brand, funding, decline, on_attach = TEST_CARDS[digits]
    fingerprint = hashlib.sha256(digits.encode()).hexdigest()[:16]
    pm = new_object(
        store,
        "payment_method",
        allow_redisplay="unspecified",
        billing_details=_blank_billing_details(),
        card={
            "brand": brand,
            "checks": {
                "address_line1_check": None,
                "address_postal_code_check": None,
                "cvc_check": "pass",
            },
            "country": "US",
            "display_brand": brand,
            "exp_month": exp_month,
            "exp_year": exp_year or 2034,
            "fingerprint": fingerprint,
            "funding": funding,
            "generated_from": None,
            "last4": digits[-4:],
            "networks": {"available": [brand], "preferred": None},
            "regulated_status": "unregulated",
            "three_d_secure_usage": {"supported": True},
            "wallet": None,
        },
        customer=None,
        metadata={},
        type="card",
        _decline=decline,
        _decline_on_attach=on_attach,
        _dispute=DISPUTE_CARDS.get(digits),
        _authentication=AUTHENTICATION_CARDS.get(digits),
        _set_up_off_session=False,
    )
    pm.update(fields)
    store.add(pm)
    return pm


# Stripe's SEPA Direct Debit test IBANs: the debit is "processing" once confirmed, and the bank
# answers later (at once, or after at least three minutes): (outcome, seconds until it settles).
TEST_IBANS: dict[str, tuple[str, int]] = {
    "DE89370400440532013000": ("succeeded", 0),
    "DE08370400440532013003": ("succeeded", 180),
    "DE62370400440532013001": ("failed", 0),
    "DE78370400440532013004": ("failed", 180),
    "AT611904300234573201": ("succeeded", 0),
    "AT861904300235473202": ("failed", 0),
}
DEBIT_FAILURE = ("insufficient_funds", "The customer's account has insufficient funds to cover this payment.")


def sepa_payment_method(store: Store, iban: str, **fields: Any) -> dict[str, Any]:
    """A new, unattached SEPA Direct Debit payment method for a test IBAN."""
    number = "".join(str(iban).split()).upper()
    if number not in TEST_IBANS:
        raise invalid_param(
            "sepa_debit[iban]",
            "The IBAN you provided is invalid. Use one of Stripe's SEPA Direct Debit test IBANs.",
            code="invalid_bank_account_iban",
        )
    outcome, delay = TEST_IBANS[number]
    pm = new_object(
        store,
        "payment_method",
        allow_redisplay="unspecified",
        billing_details=_blank_billing_details(),
        customer=None,
        metadata={},
        sepa_debit={
            "bank_code": number[4:12],
            "branch_code": "",
            "country": number[:2],
            "fingerprint": hashlib.sha256(number.encode()).hexdigest()[:16],
            "generated_from": {"charge": None, "setup_attempt": None},
            "last4": number[-4:],
        },
        type="sepa_debit",
        _decline=None,
        _decline_on_attach=False,
        _debit_outcome=outcome,
        _debit_delay=delay,
    )
    # A bank debit carries its details under its own type; Stripe leaves ``card`` out.
    pm.pop("card", None)
    pm.update(fields)
    store.add(pm)
    return pm


def resolve_payment_method(store: Store, pm_id: Any, param: str = "payment_method") -> dict:
    """A stored payment method, or a fresh one for a test token such as ``pm_card_visa``."""
    if isinstance(pm_id, str) and pm_id in TEST_TOKENS:
        return card_payment_method(store, TEST_TOKENS[pm_id])
    return store.get("payment_method", pm_id, param)


def decline_of(pm: dict[str, Any]) -> tuple[str, str | None, str] | None:
    key = pm.get("_decline")
    return _DECLINES[key] if key else None


def attach_payment_method(store: Store, pm: dict[str, Any], customer: dict[str, Any]) -> None:
    if pm["customer"] == customer["id"]:
        return
    if pm["customer"]:
        raise invalid(
            "The payment method you provided has already been attached to a customer.",
            code="payment_method_unexpected_state",
        )
    decline = decline_of(pm) if pm.get("_decline_on_attach") else None
    if decline:
        code, decline_code, message = decline
        raise card_error(message, code=code, decline_code=decline_code, extra={"param": ""})
    pm["customer"] = customer["id"]
    emit(store, "payment_method.attached", pm)


@route("POST", "/v1/payment_methods")
def payment_method_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    if params.get("type", "card") != "card":
        raise invalid_param("type", "The simulator supports card payment methods only.")
    card = as_dict(params, "card")
    number = card.get("number") or CARD_TOKENS.get(str(card.get("token")))
    if not number:
        raise invalid_param("card", "Missing required param: card[number] or card[token].")
    pm = card_payment_method(
        ctx.store,
        number,
        exp_month=as_int(card, "exp_month", 12) or 12,
        exp_year=as_int(card, "exp_year"),
        metadata=merge_metadata({}, params.get("metadata")),
    )
    billing = as_dict(params, "billing_details")
    for key in ("email", "name", "phone"):
        if key in billing:
            pm["billing_details"][key] = billing[key] or None
    return respond(ctx, pm)


@route("GET", "/v1/payment_methods/<id>")
def payment_method_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, resolve_payment_method(ctx.store, id, "id"))


@route("POST", "/v1/payment_methods/<id>")
def payment_method_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    pm = store.get("payment_method", id)
    before = public(pm)
    if "metadata" in params:
        pm["metadata"] = merge_metadata(pm["metadata"], params["metadata"])
    billing = as_dict(params, "billing_details")
    for key in ("email", "name", "phone"):
        if key in billing:
            pm["billing_details"][key] = billing[key] or None
    card = as_dict(params, "card")
    for key in ("exp_month", "exp_year"):
        if key in card:
            pm["card"][key] = as_int(card, key)
    if public(pm) != before:
        emit(store, "payment_method.updated", pm, changed(before, pm))
    return respond(ctx, pm)


@route("POST", "/v1/payment_methods/<id>/attach")
def payment_method_attach(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    customer = store.get("customer", require(ctx.params, "customer"), "customer")
    pm = resolve_payment_method(store, id, "payment_method")
    attach_payment_method(store, pm, customer)
    return respond(ctx, pm)


@route("POST", "/v1/payment_methods/<id>/detach")
def payment_method_detach(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    pm = store.get("payment_method", id)
    if not pm["customer"]:
        raise invalid(
            "The payment method you provided is not attached to a customer so detachment is impossible.",
            code="payment_method_unexpected_state",
        )
    customer = store.find("customer", pm["customer"])
    previous = {"customer": pm["customer"]}
    pm["customer"] = None
    if customer and customer["invoice_settings"]["default_payment_method"] == pm["id"]:
        before = public(customer)
        customer["invoice_settings"]["default_payment_method"] = None
        emit(store, "customer.updated", customer, changed(before, customer))
    for sub in store.all("subscription"):
        if sub.get("default_payment_method") == pm["id"]:
            sub["default_payment_method"] = None
    emit(store, "payment_method.detached", pm, previous)
    return respond(ctx, pm)


@route("GET", "/v1/payment_methods")
def payment_method_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("payment_method")
    if ctx.params.get("customer"):
        items = [pm for pm in items if pm["customer"] == ctx.params["customer"]]
    if ctx.params.get("type"):
        items = [pm for pm in items if pm["type"] == ctx.params["type"]]
    return list_response(ctx, items, "/v1/payment_methods")


# --- charges and balance transactions ------------------------------------------------------------


def charge_card(
    store: Store,
    *,
    pm: dict[str, Any],
    amount: int,
    currency: str,
    customer_id: str | None,
    payment_intent_id: str | None = None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
) -> dict[str, Any]:
    """Create a charge on a card: succeeded, or failed with the card's decline."""
    if pm["type"] == "sepa_debit":
        return _debit_charge(
            store,
            pm=pm,
            amount=amount,
            currency=currency,
            customer_id=customer_id,
            payment_intent_id=payment_intent_id,
            description=description,
            metadata=metadata,
        )
    now = store.now_for_customer(customer_id)
    decline = decline_of(pm)
    card = pm["card"]
    charge = new_object(
        store,
        "charge",
        created=now,
        amount=amount,
        amount_captured=0 if decline else amount,
        amount_refunded=0,
        billing_details=dict(pm["billing_details"]),
        calculated_statement_descriptor="TALLY",
        captured=not decline,
        currency=currency,
        customer=customer_id,
        description=description,
        disputed=False,
        fraud_details={},
        metadata=dict(metadata or {}),
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "declined_by_network" if decline else "approved_by_network",
            "reason": decline[1] if decline else None,
            "risk_level": "normal",
            "risk_score": 20,
            "seller_message": "The bank did not return any further details with this decline."
            if decline
            else "Payment complete.",
            "type": "issuer_declined" if decline else "authorized",
        },
        paid=not decline,
        payment_intent=payment_intent_id,
        payment_method=pm["id"],
        payment_method_details={
            "card": {
                "amount_authorized": None if decline else amount,
                "authorization_code": None if decline else store.new_id("x", 6)[2:].upper(),
                "brand": card["brand"],
                "checks": dict(card["checks"]),
                "country": card["country"],
                "exp_month": card["exp_month"],
                "exp_year": card["exp_year"],
                "fingerprint": card["fingerprint"],
                "funding": card["funding"],
                "installments": None,
                "last4": card["last4"],
                "mandate": None,
                "network": card["brand"],
                "network_transaction_id": None if decline else store.new_id("x", 15)[2:],
                "regulated_status": "unregulated",
                "three_d_secure": None,
                "transaction_link_id": None,
                "wallet": None,
            },
            "type": "card",
        },
        receipt_url=None,
        refunded=False,
        status="failed" if decline else "succeeded",
    )
    if decline:
        charge["failure_code"] = decline[0]
        charge["failure_message"] = decline[2]
    else:
        txn = new_object(
            store,
            "balance_transaction",
            created=now,
            amount=amount,
            available_on=now + 2 * 86400,
            currency=currency,
            description=description,
            fee=0,
            fee_details=[],
            net=amount,
            reporting_category="charge",
            source=charge["id"],
            status="pending",
            type="charge",
            balance_type="payments",
        )
        store.add(txn)
        charge["balance_transaction"] = txn["id"]
    charge["receipt_url"] = f"/receipts/{charge['id']}"
    store.add(charge)
    return charge


def _debit_charge(
    store: Store,
    *,
    pm: dict[str, Any],
    amount: int,
    currency: str,
    customer_id: str | None,
    payment_intent_id: str | None,
    description: str | None,
    metadata: dict[str, str] | None,
) -> dict[str, Any]:
    """A bank debit: the charge is ``pending`` until the bank answers (``settle_debit``)."""
    debit = pm["sepa_debit"]
    charge = new_object(
        store,
        "charge",
        created=store.now_for_customer(customer_id),
        amount=amount,
        amount_captured=amount,
        amount_refunded=0,
        billing_details=dict(pm["billing_details"]),
        calculated_statement_descriptor="TALLY",
        captured=True,
        currency=currency,
        customer=customer_id,
        description=description,
        disputed=False,
        fraud_details={},
        metadata=dict(metadata or {}),
        outcome={
            "advice_code": None,
            "network_advice_code": None,
            "network_decline_code": None,
            "network_status": "approved_by_network",
            "reason": None,
            "risk_level": "not_assessed",
            "seller_message": "Payment complete.",
            "type": "authorized",
        },
        paid=False,
        payment_intent=payment_intent_id,
        payment_method=pm["id"],
        payment_method_details={
            "sepa_debit": {
                "bank_code": debit["bank_code"],
                "branch_code": debit["branch_code"],
                "country": debit["country"],
                "fingerprint": debit["fingerprint"],
                "last4": debit["last4"],
                "mandate": "mandate_" + store.new_id("x", 24)[2:],
            },
            "type": "sepa_debit",
        },
        receipt_url=None,
        refunded=False,
        status="pending",
    )
    charge["receipt_url"] = f"/receipts/{charge['id']}"
    store.add(charge)
    return charge


def settle_debit(store: Store, pi: dict[str, Any], outcome: str) -> None:
    """The bank answered a processing debit: the intent succeeds, or goes back to
    ``requires_payment_method`` with the failure, with the events Stripe sends for each."""
    charge = store.objects["charge"][pi["latest_charge"]]
    pm = store.objects["payment_method"][pi["payment_method"]]
    now = store.now_for_customer(pi["customer"])
    pi.pop("_settle_at", None)
    if outcome == "succeeded":
        charge["status"] = "succeeded"
        charge["paid"] = True
        txn = new_object(
            store,
            "balance_transaction",
            created=now,
            amount=charge["amount"],
            available_on=now + 7 * 86400,
            currency=charge["currency"],
            description=charge["description"],
            fee=0,
            fee_details=[],
            net=charge["amount"],
            reporting_category="charge",
            source=charge["id"],
            status="pending",
            type="charge",
            balance_type="payments",
        )
        store.add(txn)
        charge["balance_transaction"] = txn["id"]
        pi["status"] = "succeeded"
        pi["amount_received"] = pi["amount"]
        pi["last_payment_error"] = None
        emit(store, "charge.succeeded", charge)
        emit(store, "payment_intent.succeeded", pi)
        return
    code, message = DEBIT_FAILURE
    charge["status"] = "failed"
    charge["captured"] = False
    charge["amount_captured"] = 0
    charge["failure_code"] = code
    charge["failure_message"] = message
    charge["outcome"] = {
        **charge["outcome"],
        "network_status": "declined_by_network",
        "reason": code,
        "seller_message": message,
        "type": "issuer_declined",
    }
    pi["status"] = "requires_payment_method"
    pi["last_payment_error"] = {
        "charge": charge["id"],
        "code": code,
        "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
        "message": message,
        "payment_method": public(pm),
        "type": "card_error",
    }
    emit(store, "charge.failed", charge)
    emit(store, "payment_intent.payment_failed", pi)


@renderer("charge")
def _render_charge(store: Store, charge: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(charge)
    refunds = [r for r in store.all("refund") if r["charge"] == charge["id"]]
    out["refunds"] = {
        "object": "list",
        "data": [public(r) for r in refunds],
        "has_more": False,
        "url": f"/v1/charges/{charge['id']}/refunds",
    }
    return out


@route("GET", "/v1/charges/<id>")
def charge_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("charge", id))


@route("POST", "/v1/charges/<id>")
def charge_update(ctx: Ctx, id: str) -> dict[str, Any]:
    charge = ctx.store.get("charge", id)
    before = public(charge)
    if "metadata" in ctx.params:
        charge["metadata"] = merge_metadata(charge["metadata"], ctx.params["metadata"])
    update_fields(charge, ctx.params, ("description", "receipt_email"))
    if public(charge) != before:
        emit(ctx.store, "charge.updated", charge, changed(before, charge))
    return respond(ctx, charge)


@route("GET", "/v1/charges")
def charge_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("charge")
    for name in ("customer", "payment_intent"):
        if ctx.params.get(name):
            items = [c for c in items if c[name] == ctx.params[name]]
    return list_response(ctx, items, "/v1/charges")


@route("GET", "/v1/balance_transactions/<id>")
def balance_transaction_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("balance_transaction", id))


@route("GET", "/v1/balance_transactions")
def balance_transaction_list(ctx: Ctx) -> dict[str, Any]:
    return list_response(ctx, ctx.store.all("balance_transaction"), "/v1/balance_transactions")


# --- payment intents -----------------------------------------------------------------------------


def create_payment_intent(
    store: Store,
    *,
    amount: int,
    currency: str,
    customer_id: str | None,
    description: str | None = None,
    metadata: dict[str, str] | None = None,
    setup_future_usage: str | None = None,
) -> dict[str, Any]:
    pi = new_object(
        store,
        "payment_intent",
        created=store.now_for_customer(customer_id),
        amount=amount,
        amount_capturable=0,
        amount_details={"tip": {}},
        amount_received=0,
        automatic_payment_methods=None,
        capture_method="automatic_async",
        confirmation_method="automatic",
        currency=currency,
        customer=customer_id,
        description=description,
        metadata=dict(metadata or {}),
        payment_method_options={},
        payment_method_types=["card"],
        allowed_payment_method_types=["card"],
        setup_future_usage=setup_future_usage,
        status="requires_payment_method",
    )
    pi["client_secret"] = f"{pi['id']}_secret_{store.new_id('x', 24)[2:]}"
    store.add(pi)
    emit(store, "payment_intent.created", pi)
    return pi


def needs_authentication(pm: dict[str, Any], pi: dict[str, Any]) -> bool:
    """Whether the card's bank asks the cardholder to authenticate this payment (3D Secure)."""
    kind = pm.get("_authentication")
    if pm["type"] != "card" or not kind or pi.get("_authenticated"):
        return False
    return kind == "always" or not pm.get("_set_up_off_session")


def _requires_action(store: Store, pi: dict[str, Any], pm: dict[str, Any], off_session: bool) -> None:
    """Stop before charging: on session the customer is sent to authenticate; off session
    (``off_session=true``) nobody is there, so Stripe fails with ``authentication_required``."""
    if off_session:
        message = "Your card was declined. This transaction requires authentication."
        pi["status"] = "requires_payment_method"
        pi["next_action"] = None
        pi["last_payment_error"] = {
            "code": "authentication_required",
            "decline_code": "authentication_required",
            "doc_url": "https://stripe.com/docs/error-codes/authentication-required",
            "message": message,
            "payment_method": public(pm),
            "type": "card_error",
        }
        emit(store, "payment_intent.payment_failed", pi)
        raise card_error(
            message,
            code="authentication_required",
            decline_code="authentication_required",
            extra={"payment_intent": render(store, pi), "payment_method": public(pm)},
        )
    pi["status"] = "requires_action"
    pi["next_action"] = next_action(store, pi, pm)
    emit(store, "payment_intent.requires_action", pi)


def next_action(store: Store, intent: dict[str, Any], pm: dict[str, Any]) -> dict[str, Any]:
    """Where the cardholder authenticates a payment or setup intent: the page Stripe.js opens
    (``use_stripe_sdk``), or, when the intent was confirmed with a ``return_url``, a redirect to
    it that comes back to that URL (``redirect_to_url``)."""
    url = f"{store.base_url}/authenticate/{intent['id']}"
    if intent.get("_return_url"):
        return {
            "type": "redirect_to_url",
            "redirect_to_url": {"url": url, "return_url": intent["_return_url"]},
        }
    return {
        "type": "use_stripe_sdk",
        "use_stripe_sdk": {"type": "three_d_secure_redirect", "stripe_js": url, "source": pm["id"]},
    }


def confirm_payment_intent(
    store: Store,
    pi: dict[str, Any],
    pm: dict[str, Any],
    *,
    raise_on_decline: bool = True,
    off_session: bool = False,
) -> dict[str, Any]:
    """Charge the intent's card. A decline leaves it ``requires_payment_method`` and raises 402
    (as Stripe does) unless the caller handles the outcome itself. A card that asks for
    authentication leaves it ``requires_action`` (see ``stripe_sim.authentication``)."""
    if pi["status"] in ("succeeded", "canceled", "processing"):
        raise invalid(
            f"This PaymentIntent's status is {pi['status']}, so it cannot be confirmed.",
            code="payment_intent_unexpected_state",
        )
    pi["payment_method"] = pm["id"]
    if pm.pop("_authenticated_once", False):
        pi["_authenticated"] = True  # answered on the page that took the card (Checkout)
    if needs_authentication(pm, pi):
        _requires_action(store, pi, pm, off_session)
        return pi
    pi["next_action"] = None
    charge = charge_card(
        store,
        pm=pm,
        amount=pi["amount"],
        currency=pi["currency"],
        customer_id=pi["customer"],
        payment_intent_id=pi["id"],
        description=pi["description"],
        metadata=pi["metadata"],
    )
    pi["latest_charge"] = charge["id"]
    if pi.get("_authenticated"):
        charge["payment_method_details"]["card"]["three_d_secure"] = {
            "authentication_flow": "challenge",
            "electronic_commerce_indicator": "05",
            "exemption_indicator": None,
            "result": "authenticated",
            "result_reason": None,
            "transaction_id": store.new_id("x", 24)[2:],
            "version": "2.2.0",
        }
    if pm["type"] == "sepa_debit":
        # A delayed-notification method: nothing is known until the bank answers.
        pi["status"] = "processing"
        pi["payment_method_types"] = sorted({*pi["payment_method_types"], "sepa_debit"})
        pi["_settle_at"] = store.now_for_customer(pi["customer"]) + pm["_debit_delay"]
        pi["_settle_outcome"] = pm["_debit_outcome"]
        if pi.get("setup_future_usage") and pi["customer"] and not pm["customer"]:
            attach_payment_method(store, pm, store.get("customer", pi["customer"]))
        emit(store, "charge.pending", charge)
        emit(store, "payment_intent.processing", pi)
        return pi
    decline = decline_of(pm)
    if decline:
        code, decline_code, message = decline
        pi["status"] = "requires_payment_method"
        pi["last_payment_error"] = {
            "charge": charge["id"],
            "code": code,
            "decline_code": decline_code,
            "doc_url": f"https://stripe.com/docs/error-codes/{code.replace('_', '-')}",
            "message": message,
            "payment_method": public(pm),
            "type": "card_error",
        }
        emit(store, "charge.failed", charge)
        emit(store, "payment_intent.payment_failed", pi)
        if raise_on_decline:
            raise card_error(
                message,
                code=code,
                decline_code=decline_code,
                extra={
                    "charge": charge["id"],
                    "payment_intent": render(store, pi),
                    "payment_method": public(pm),
                },
            )
        return pi
    pi["status"] = "succeeded"
    pi["amount_received"] = pi["amount"]
    pi["last_payment_error"] = None
    if pi.get("setup_future_usage") and pi["customer"] and not pm["customer"]:
        customer = store.get("customer", pi["customer"])
        attach_payment_method(store, pm, customer)
    if pi.get("_authenticated") and pi.get("setup_future_usage") == "off_session":
        pm["_set_up_off_session"] = True  # authenticated once for later off-session payments
    emit(store, "charge.succeeded", charge)
    emit(store, "payment_intent.succeeded", pi)
    for hook in CHARGE_SUCCEEDED_HOOKS:
        hook(store, charge, pm)
    return pi


@route("POST", "/v1/payment_intents")
def payment_intent_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    amount = as_int(params, "amount")
    if amount is None:
        raise invalid_param("amount", "Missing required param: amount.", code="parameter_missing")
    if amount < 50:
        raise invalid_param("amount", "Amount must be at least $0.50 usd", code="amount_too_small")
    customer_id = params.get("customer") or None
    if customer_id:
        store.get("customer", customer_id, "customer")
    pi = create_payment_intent(
        store,
        amount=amount,
        currency=str(require(params, "currency")).lower(),
        customer_id=customer_id,
        description=params.get("description") or None,
        metadata=merge_metadata({}, params.get("metadata")),
        setup_future_usage=params.get("setup_future_usage") or None,
    )
    pi["receipt_email"] = params.get("receipt_email") or None
    if params.get("payment_method"):
        pm = resolve_payment_method(store, params["payment_method"])
        pi["payment_method"] = pm["id"]
        pi["status"] = "requires_confirmation"
    if as_bool(params, "confirm", False):
        if not pi["payment_method"]:
            raise invalid_param(
                "payment_method",
                "You cannot confirm this PaymentIntent because it's missing a payment method.",
                code="payment_intent_unexpected_state",
            )
        if params.get("return_url"):
            pi["_return_url"] = str(params["return_url"])
        confirm_payment_intent(
            store,
            pi,
            store.get("payment_method", pi["payment_method"]),
            off_session=_off_session(params),
        )
    return respond(ctx, pi)


def _off_session(params: dict[str, Any]) -> bool:
    """``off_session``: a boolean, or ``one_off`` / ``recurring`` (both mean true)."""
    value = params.get("off_session")
    if value in (None, "", "false", False):
        return False
    if value in ("true", True, "one_off", "recurring"):
        return True
    raise invalid_param("off_session", f"Invalid off_session: {value}")


@route("GET", "/v1/payment_intents/<id>")
def payment_intent_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("payment_intent", id))


@route("POST", "/v1/payment_intents/<id>")
def payment_intent_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    pi = store.get("payment_intent", id)
    if "metadata" in params:
        pi["metadata"] = merge_metadata(pi["metadata"], params["metadata"])
    update_fields(pi, params, ("description", "receipt_email", "setup_future_usage"))
    if "amount" in params:
        pi["amount"] = as_int(params, "amount")
    if params.get("payment_method"):
        pi["payment_method"] = resolve_payment_method(store, params["payment_method"])["id"]
        pi["status"] = "requires_confirmation"
    # Stripe has no ``payment_intent.updated`` event: an update is seen on the next event.
    return respond(ctx, pi)


@route("POST", "/v1/payment_intents/<id>/confirm")
def payment_intent_confirm(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    pi = store.get("payment_intent", id)
    pm_id = ctx.params.get("payment_method") or pi["payment_method"]
    if not pm_id:
        raise invalid_param(
            "payment_method",
            "You cannot confirm this PaymentIntent because it's missing a payment method.",
            code="payment_intent_unexpected_state",
        )
    if ctx.params.get("return_url"):
        pi["_return_url"] = str(ctx.params["return_url"])
    confirm_payment_intent(
        store, pi, resolve_payment_method(store, pm_id), off_session=_off_session(ctx.params)
    )
    return respond(ctx, pi)


@route("POST", "/v1/payment_intents/<id>/cancel")
def payment_intent_cancel(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    pi = store.get("payment_intent", id)
    if pi["status"] in ("succeeded", "canceled", "processing"):
        raise invalid(
            f"You cannot cancel this PaymentIntent because it has a status of {pi['status']}.",
            code="payment_intent_unexpected_state",
        )
    pi["status"] = "canceled"
    pi["canceled_at"] = store.now_for_customer(pi["customer"])
    pi["cancellation_reason"] = ctx.params.get("cancellation_reason") or "requested_by_customer"
    emit(store, "payment_intent.canceled", pi)
    return respond(ctx, pi)


@route("GET", "/v1/payment_intents")
def payment_intent_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("payment_intent")
    if ctx.params.get("customer"):
        items = [p for p in items if p["customer"] == ctx.params["customer"]]
    return list_response(ctx, items, "/v1/payment_intents")


# --- setup intents -------------------------------------------------------------------------------


def create_setup_intent(
    store: Store, *, customer_id: str | None, metadata: dict[str, str] | None = None
) -> dict[str, Any]:
    seti = new_object(
        store,
        "setup_intent",
        created=store.now_for_customer(customer_id),
        automatic_payment_methods=None,
        customer=customer_id,
        metadata=dict(metadata or {}),
        payment_method_options={},
        payment_method_types=["card"],
        allowed_payment_method_types=["card"],
        status="requires_payment_method",
        usage="off_session",
    )
    seti["client_secret"] = f"{seti['id']}_secret_{store.new_id('x', 24)[2:]}"
    store.add(seti)
    emit(store, "setup_intent.created", seti)
    return seti


SETUP_AUTHENTICATION_FAILED = (
    "The provided PaymentMethod has failed authentication. Provide a new PaymentMethod to attempt "
    "to fulfill this SetupIntent again."
)


def confirm_setup_intent(store: Store, seti: dict[str, Any], pm: dict[str, Any]) -> None:
    """Save ``pm`` for later payments. An authentication card asks its cardholder first: the
    intent is left ``requires_action`` (``setup_intent.requires_action``) until the step on the
    page ``next_action`` names is answered (``authenticate_setup_intent``)."""
    seti["payment_method"] = pm["id"]
    if pm["type"] == "card" and pm.get("_authentication") and not seti.get("_authenticated"):
        seti["status"] = "requires_action"
        seti["next_action"] = next_action(store, seti, pm)
        seti["last_setup_error"] = None
        emit(store, "setup_intent.requires_action", seti)
        return
    seti["next_action"] = None
    customer = store.find("customer", seti["customer"]) if seti["customer"] else None
    try:
        if customer is not None:
            attach_payment_method(store, pm, customer)
        elif pm.get("_decline_on_attach"):
            code, decline_code, message = decline_of(pm) or _DECLINES["generic"]
            raise card_error(message, code=code, decline_code=decline_code)
    except StripeError as exc:
        seti["status"] = "requires_payment_method"
        seti["last_setup_error"] = {
            "code": exc.code,
            "decline_code": exc.extra.get("decline_code"),
            "message": exc.message,
            "payment_method": public(pm),
            "type": exc.type,
        }
        emit(store, "setup_intent.setup_failed", seti)
        exc.extra["setup_intent"] = render(store, seti)
        raise
    seti["status"] = "succeeded"
    seti["last_setup_error"] = None
    if seti.get("_authenticated") and seti["usage"] == "off_session":
        pm["_set_up_off_session"] = True  # authenticated once for later off-session payments
    emit(store, "setup_intent.succeeded", seti)


def authenticate_setup_intent(store: Store, seti: dict[str, Any], outcome: str) -> None:
    """The cardholder's answer for a setup intent waiting on them: completed, the card is saved
    (``setup_intent.succeeded``); failed, nothing is saved and the intent asks for another
    payment method, with ``setup_intent_authentication_failure`` (``setup_intent.setup_failed``)."""
    if seti["status"] != "requires_action":
        raise invalid(
            f"This SetupIntent's status is {seti['status']}, so it does not need authentication.",
            code="setup_intent_unexpected_state",
        )
    pm = store.get("payment_method", seti["payment_method"])
    if outcome == "complete":
        seti["_authenticated"] = True
        with contextlib.suppress(StripeError):  # recorded on the intent as its last_setup_error
            confirm_setup_intent(store, seti, pm)
        return
    seti["status"] = "requires_payment_method"
    seti["next_action"] = None
    seti["last_setup_error"] = {
        "code": "setup_intent_authentication_failure",
        "doc_url": "https://stripe.com/docs/error-codes/setup-intent-authentication-failure",
        "message": SETUP_AUTHENTICATION_FAILED,
        "payment_method": public(pm),
        "type": "invalid_request_error",
    }
    emit(store, "setup_intent.setup_failed", seti)


@route("POST", "/v1/setup_intents")
def setup_intent_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    customer_id = params.get("customer") or None
    if customer_id:
        store.get("customer", customer_id, "customer")
    seti = create_setup_intent(
        store, customer_id=customer_id, metadata=merge_metadata({}, params.get("metadata"))
    )
    seti["usage"] = params.get("usage") or "off_session"
    if params.get("payment_method"):
        pm = resolve_payment_method(store, params["payment_method"])
        seti["payment_method"] = pm["id"]
        seti["status"] = "requires_confirmation"
        if as_bool(params, "confirm", False):
            if params.get("return_url"):
                seti["_return_url"] = str(params["return_url"])
            confirm_setup_intent(store, seti, pm)
    return respond(ctx, seti)


@route("GET", "/v1/setup_intents/<id>")
def setup_intent_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("setup_intent", id))


@route("POST", "/v1/setup_intents/<id>")
def setup_intent_update(ctx: Ctx, id: str) -> dict[str, Any]:
    """Stripe takes updates while the intent is not yet succeeded or canceled; no event follows
    (there is no ``setup_intent.updated``)."""
    store, params = ctx.store, ctx.params
    seti = store.get("setup_intent", id)
    if seti["status"] in ("succeeded", "canceled"):
        raise invalid(
            f"You cannot update this SetupIntent because it has a status of {seti['status']}.",
            code="setup_intent_unexpected_state",
        )
    if "metadata" in params:
        seti["metadata"] = merge_metadata(seti["metadata"], params["metadata"])
    update_fields(seti, params, ("description",))
    if params.get("customer"):
        seti["customer"] = store.get("customer", params["customer"], "customer")["id"]
    if params.get("payment_method"):
        seti["payment_method"] = resolve_payment_method(store, params["payment_method"])["id"]
        seti["status"] = "requires_confirmation"
    return respond(ctx, seti)


@route("POST", "/v1/setup_intents/<id>/confirm")
def setup_intent_confirm(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    seti = store.get("setup_intent", id)
    pm_id = ctx.params.get("payment_method") or seti["payment_method"]
    if not pm_id:
        raise invalid_param(
            "payment_method",
            "You cannot confirm this SetupIntent because it's missing a payment method.",
            code="setup_intent_unexpected_state",
        )
    if ctx.params.get("return_url"):
        seti["_return_url"] = str(ctx.params["return_url"])
    confirm_setup_intent(store, seti, resolve_payment_method(store, pm_id))
    return respond(ctx, seti)


@route("POST", "/v1/setup_intents/<id>/cancel")
def setup_intent_cancel(ctx: Ctx, id: str) -> dict[str, Any]:
    seti = ctx.store.get("setup_intent", id)
    seti["status"] = "canceled"
    seti["cancellation_reason"] = ctx.params.get("cancellation_reason") or "requested_by_customer"
    emit(ctx.store, "setup_intent.canceled", seti)
    return respond(ctx, seti)


@route("GET", "/v1/setup_intents")
def setup_intent_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("setup_intent")
    if ctx.params.get("customer"):
        items = [s for s in items if s["customer"] == ctx.params["customer"]]
    return list_response(ctx, items, "/v1/setup_intents")


# --- refunds -------------------------------------------------------------------------------------


@route("POST", "/v1/refunds")
def refund_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    if params.get("charge"):
        charge = store.get("charge", params["charge"], "charge")
    elif params.get("payment_intent"):
        pi = store.get("payment_intent", params["payment_intent"], "payment_intent")
        if not pi["latest_charge"] or pi["status"] != "succeeded":
            raise invalid(
                "This PaymentIntent does not have a successful charge to refund.",
                code="charge_not_refundable",
            )
        charge = store.get("charge", pi["latest_charge"])
    else:
        raise invalid("One of `charge` or `payment_intent` is required.", code="parameter_missing")
    if charge["status"] != "succeeded":
        raise invalid("This charge cannot be refunded.", code="charge_not_refundable")
    if charge.get("disputed") and any(
        d["charge"] == charge["id"] and not d["is_charge_refundable"] for d in store.all("dispute")
    ):
        raise invalid(
            f"Charge {charge['id']} has been charged back; cannot issue a refund.", code="charge_disputed"
        )
    refundable = charge["amount"] - charge["amount_refunded"]
    amount = as_int(params, "amount", refundable) or 0
    if amount <= 0 or amount > refundable:
        raise invalid_param(
            "amount",
            f"Refund amount ({amount}) is greater than unrefunded amount on charge ({refundable})",
            code="charge_already_refunded" if refundable == 0 else None,
        )
    refund = new_object(
        store,
        "refund",
        created=store.now_for_customer(charge["customer"]),
        amount=amount,
        charge=charge["id"],
        currency=charge["currency"],
        destination_details={"card": {"type": "refund"}, "type": "card"},
        metadata=merge_metadata({}, params.get("metadata")),
        payment_intent=charge["payment_intent"],
        reason=params.get("reason") or None,
        status="succeeded",
    )
    store.add(refund)
    before = public(charge)
    charge["amount_refunded"] += amount
    charge["refunded"] = charge["amount_refunded"] == charge["amount"]
    emit(store, "refund.created", refund)
    emit(store, "charge.refunded", charge, changed(before, charge))
    return respond(ctx, refund)


@route("GET", "/v1/refunds/<id>")
def refund_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("refund", id))


@route("POST", "/v1/refunds/<id>")
def refund_update(ctx: Ctx, id: str) -> dict[str, Any]:
    refund = ctx.store.get("refund", id)
    if "metadata" in ctx.params:
        refund["metadata"] = merge_metadata(refund["metadata"], ctx.params["metadata"])
        emit(ctx.store, "refund.updated", refund)
    return respond(ctx, refund)


@route("GET", "/v1/refunds")
def refund_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("refund")
    for name in ("charge", "payment_intent"):
        if ctx.params.get(name):
            items = [r for r in items if r[name] == ctx.params[name]]
    return list_response(ctx, items, "/v1/refunds")


@route("GET", "/v1/charges/<id>/refunds")
def charge_refunds(ctx: Ctx, id: str) -> dict[str, Any]:
    ctx.store.get("charge", id)
    items = [r for r in ctx.store.all("refund") if r["charge"] == id]
    return list_response(ctx, items, f"/v1/charges/{id}/refunds")


@route("GET", "/v1/products/<id>/features")
def product_features(ctx: Ctx, id: str) -> dict[str, Any]:
    """Entitlement features attached to a product: the simulator keeps none."""
    ctx.store.get("product", id)
    return list_response(ctx, [], f"/v1/products/{id}/features")
