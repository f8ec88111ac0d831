"""Coupons, promotion codes and discounts, and the discount maths of an invoice.

Stripe's order of operations, as the simulator follows it:

1. Each line's amount is its price times quantity (``pricing``), rounded per line.
2. Discounts come off before tax, line by line. A ``percent_off`` discount takes that share of
   what is left of each eligible line, rounded per line (half to even, as every amount here).
   An ``amount_off`` discount is spread over the eligible lines in proportion to what is left of
   them (largest remainder, so the shares add up exactly) and never takes more than they hold.
   Several discounts are applied in the order they were given, each to what the earlier ones
   left. Negative lines (credits) and lines that are not ``discountable`` are never discounted.
3. Proration items of a discounted subscription item carry the discount in their amount
   (classic billing mode, ``proration_discounts=included``): the discounted full-period amount
   is prorated, the item names the discounts, is not discountable again, and its line's
   ``discount_amounts`` are zero.
4. Tax is computed on what is left of each line (``stripe_sim.tax``).

Durations: ``once`` applies to the first invoice made after the discount starts and then ends;
``repeating`` applies to invoices made before ``end`` (``start`` plus ``duration_in_months``
months) and ends at ``end``; ``forever`` never ends.
"""

from fractions import Fraction
from typing import Any

from stripe_sim import pricing
from stripe_sim.core import deleted, list_response, new_object, respond
from stripe_sim.errors import StripeError, invalid, invalid_param
from stripe_sim.events import changed, emit
from stripe_sim.params import as_bool, as_dict, as_int, as_list, merge_metadata
from stripe_sim.render import public, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store

_CODE_CHARS = "ABCDEFGHJKLMNPQRSTUVWXYZ23456789"


def _resource_missing(message: str, param: str) -> StripeError:
    return StripeError(404, "invalid_request_error", message, code="resource_missing", param=param)


# --- coupons -------------------------------------------------------------------------------------


def _percent(params: dict[str, Any]) -> float | None:
    raw = params.get("percent_off")
    if raw in (None, ""):
        return None
    value = Fraction(str(raw))
    if not 0 < value <= 100:
        raise invalid_param("percent_off", "Invalid percent_off: must be greater than 0 and at most 100.")
    return float(raw)


def _currency_options(raw: Any, param: str) -> dict[str, dict[str, int]]:
    options = {}
    for currency, option in (raw or {}).items():
        amount = as_int(option, "amount_off")
        if amount is None or amount <= 0:
            raise invalid_param(f"{param}[{currency}][amount_off]", "Invalid amount_off: must be positive.")
        options[str(currency).lower()] = {"amount_off": amount}
    return options


@route("POST", "/v1/coupons")
def coupon_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    percent = _percent(params)
    amount_off = as_int(params, "amount_off")
    if (percent is None) == (amount_off is None):
        raise invalid("You must pass exactly one of amount_off or percent_off.", param="percent_off")
    currency = str(params.get("currency") or "").lower() or None
    if amount_off is not None:
        if amount_off <= 0:
            raise invalid_param("amount_off", "Invalid amount_off: must be positive.")
        if currency is None:
            raise invalid_param(
                "currency", "You must pass currency when passing amount_off.", code="parameter_missing"
            )
    elif params.get("currency_options"):
        raise invalid_param("currency_options", "currency_options can only be used with amount_off.")
    duration = params.get("duration") or "once"
    months = as_int(params, "duration_in_months")
    if duration == "repeating":
        if not months or months < 1:
            raise invalid_param(
                "duration_in_months",
                "You must pass duration_in_months when duration is repeating.",
                code="parameter_missing",
            )
    elif months is not None:
        raise invalid_param(
            "duration_in_months", "duration_in_months can only be used with duration=repeating."
        )
    redeem_by = as_int(params, "redeem_by")
    if redeem_by is not None and redeem_by <= store.now():
        raise invalid_param("redeem_by", "Invalid redeem_by: must be in the future.")
    max_redemptions = as_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid_param("max_redemptions", "Invalid max_redemptions: must be at least 1.")
    coupon_id = params.get("id") or store.new_id("x", 8)[2:].upper()
    if store.objects.get("coupon", {}).get(coupon_id) is not None:
        raise invalid_param("id", "Coupon already exists.", code="resource_already_exists")
    coupon = new_object(
        store,
        "coupon",
        id=coupon_id,
        amount_off=amount_off,
        currency=currency if amount_off is not None else None,
        duration=duration,
        duration_in_months=months,
        max_redemptions=max_redemptions,
        metadata=merge_metadata({}, params.get("metadata")),
        name=params.get("name") or None,
        percent_off=percent,
        redeem_by=redeem_by,
        times_redeemed=0,
        valid=True,
    )
    applies_to = as_dict(params, "applies_to")
    if applies_to:
        products = [str(p) for p in as_list(applies_to, "products")]
        for index, product in enumerate(products):
            store.get("product", product, f"applies_to[products][{index}]")
        coupon["applies_to"] = {"products": products}
    options = _currency_options(params.get("currency_options"), "currency_options")
    if options:
        coupon["currency_options"] = options
    store.add(coupon)
    emit(store, "coupon.created", coupon)
    return respond(ctx, coupon)


def coupon_valid(store: Store, coupon: dict[str, Any], at: int | None = None) -> bool:
    """Whether the coupon can still be redeemed (discounts already made from it live on)."""
    if coupon.get("_deleted"):
        return False
    now = store.now() if at is None else at
    if coupon["redeem_by"] is not None and now >= coupon["redeem_by"]:
        return False
    return coupon["max_redemptions"] is None or coupon["times_redeemed"] < coupon["max_redemptions"]


@renderer("coupon")
def _render_coupon(store: Store, coupon: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(coupon)
    out["valid"] = coupon_valid(store, coupon)
    return out


@route("GET", "/v1/coupons/<id>")
def coupon_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("coupon", id))


@route("POST", "/v1/coupons/<id>")
def coupon_update(ctx: Ctx, id: str) -> dict[str, Any]:
    """Only the name, metadata and amounts in further currencies change; the terms never do."""
    store, params = ctx.store, ctx.params
    coupon = store.get("coupon", id)
    before = public(coupon)
    if "name" in params:
        coupon["name"] = params["name"] or None
    if "metadata" in params:
        coupon["metadata"] = merge_metadata(coupon["metadata"], params["metadata"])
    if params.get("currency_options"):
        if coupon["amount_off"] is None:
            raise invalid_param("currency_options", "currency_options can only be used with amount_off.")
        options = dict(coupon.get("currency_options") or {})
        options.update(_currency_options(params["currency_options"], "currency_options"))
        coupon["currency_options"] = options
    if public(coupon) != before:
        emit(store, "coupon.updated", coupon, changed(before, coupon))
    return respond(ctx, coupon)


@route("DELETE", "/v1/coupons/<id>")
def coupon_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    """No new redemptions; the discounts already made from it keep applying, as on Stripe."""
    store = ctx.store
    coupon = store.get("coupon", id)
    store.delete(coupon)
    emit(store, "coupon.deleted", coupon)
    return deleted(coupon)


@route("GET", "/v1/coupons")
def coupon_list(ctx: Ctx) -> dict[str, Any]:
    return list_response(ctx, ctx.store.all("coupon"), "/v1/coupons")


def coupon_of(store: Store, coupon_id: str) -> dict[str, Any]:
    """A coupon by id, deleted or not (a discount outlives its coupon)."""
    return store.objects["coupon"][coupon_id]


def amount_off_in(coupon: dict[str, Any], currency: str) -> int | None:
    """An ``amount_off`` coupon's amount in ``currency``, or None when it has none there."""
    if coupon["currency"] == currency:
        return coupon["amount_off"]
    option = (coupon.get("currency_options") or {}).get(currency)
    return option["amount_off"] if option else None


def applies_to_product(coupon: dict[str, Any], product: str | None) -> bool:
    products = (coupon.get("applies_to") or {}).get("products")
    return not products or product in products


# --- promotion codes -----------------------------------------------------------------------------


def _restrictions(raw: dict[str, Any]) -> dict[str, Any]:
    minimum = as_int(raw, "minimum_amount")
    currency = str(raw.get("minimum_amount_currency") or "").lower() or None
    if (minimum is None) != (currency is None):
        raise invalid_param(
            "restrictions[minimum_amount_currency]",
            "minimum_amount and minimum_amount_currency must be passed together.",
        )
    if minimum is not None and minimum < 0:
        raise invalid_param("restrictions[minimum_amount]", "Invalid minimum_amount: must not be negative.")
    out: dict[str, Any] = {
        "first_time_transaction": bool(as_bool(raw, "first_time_transaction", False)),
        "minimum_amount": minimum,
        "minimum_amount_currency": currency,
    }
    options = {}
    for cur, option in (as_dict(raw, "currency_options") or {}).items():
        value = as_int(option, "minimum_amount")
        if value is None or value < 0:
            raise invalid_param(
                f"restrictions[currency_options][{cur}][minimum_amount]", "Invalid minimum_amount."
            )
        options[str(cur).lower()] = {"minimum_amount": value}
    if options:
        out["currency_options"] = options
    return out


def find_code(store: Store, code: str) -> dict[str, Any] | None:
    """The active promotion code a customer typed (codes are case-insensitive)."""
    wanted = code.strip().upper()
    for promo in store.all("promotion_code"):
        if promo["active"] and promo["code"].upper() == wanted:
            return promo
    return None


@route("POST", "/v1/promotion_codes")
def promotion_code_create(ctx: Ctx) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    promotion = as_dict(params, "promotion")
    if promotion.get("type") != "coupon" or not promotion.get("coupon"):
        raise invalid_param(
            "promotion[coupon]", "Missing required param: promotion[coupon].", code="parameter_missing"
        )
    coupon = store.get("coupon", promotion["coupon"], "promotion[coupon]")
    code = str(params.get("code") or "").strip()
    if not code:
        code = "".join(_CODE_CHARS[b % len(_CODE_CHARS)] for b in store.new_id("x", 8)[2:].encode())
    if not code.isalnum() or len(code) > 500:
        raise invalid_param("code", "Invalid code: only letters and digits.")
    if find_code(store, code) is not None:
        raise invalid_param(
            "code",
            f"An active promotion code with `code: {code}` already exists.",
            code="resource_already_exists",
        )
    max_redemptions = as_int(params, "max_redemptions")
    if max_redemptions is not None and max_redemptions < 1:
        raise invalid_param("max_redemptions", "Invalid max_redemptions: must be at least 1.")
    expires_at = as_int(params, "expires_at")
    if expires_at is not None and expires_at <= store.now():
        raise invalid_param("expires_at", "Invalid expires_at: must be in the future.")
    if coupon["redeem_by"] is not None and expires_at is not None and expires_at > coupon["redeem_by"]:
        raise invalid_param("expires_at", "The promotion code cannot expire after its coupon's redeem_by.")
    customer_id = params.get("customer") or None
    if customer_id:
        store.get("customer", customer_id, "customer")
    restrictions = _restrictions(as_dict(params, "restrictions"))
    if restrictions.get("currency_options") and coupon["amount_off"] is None:
        raise invalid_param(
            "restrictions[currency_options]", "currency_options can only be used with amount_off coupons."
        )
    promo = new_object(
        store,
        "promotion_code",
        active=as_bool(params, "active", True),
        code=code,
        customer=customer_id,
        customer_account=None,
        expires_at=expires_at,
        max_redemptions=max_redemptions,
        metadata=merge_metadata({}, params.get("metadata")),
        promotion={"coupon": coupon["id"], "type": "coupon"},
        restrictions=restrictions,
        times_redeemed=0,
    )
    store.add(promo)
    emit(store, "promotion_code.created", promo)
    return respond(ctx, promo)


@route("GET", "/v1/promotion_codes/<id>")
def promotion_code_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("promotion_code", id))


@route("POST", "/v1/promotion_codes/<id>")
def promotion_code_update(ctx: Ctx, id: str) -> dict[str, Any]:
    store, params = ctx.store, ctx.params
    promo = store.get("promotion_code", id)
    before = public(promo)
    if "active" in params:
        active = as_bool(params, "active")
        if active and not promo["active"] and find_code(store, promo["code"]) is not None:
            raise invalid_param(
                "active", f"An active promotion code with `code: {promo['code']}` already exists."
            )
        promo["active"] = bool(active)
    if "metadata" in params:
        promo["metadata"] = merge_metadata(promo["metadata"], params["metadata"])
    options = as_dict(as_dict(params, "restrictions"), "currency_options")
    if options:
        merged = dict(promo["restrictions"].get("currency_options") or {})
        merged.update(_restrictions({"currency_options": options}).get("currency_options", {}))
        promo["restrictions"]["currency_options"] = merged
    if public(promo) != before:
        emit(store, "promotion_code.updated", promo, changed(before, promo))
    return respond(ctx, promo)


@route("GET", "/v1/promotion_codes")
def promotion_code_list(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    items = ctx.store.all("promotion_code")
    if "active" in params:
        items = [p for p in items if p["active"] == as_bool(params, "active")]
    if params.get("code"):
        items = [p for p in items if p["code"].upper() == str(params["code"]).upper()]
    if params.get("coupon"):
        items = [p for p in items if p["promotion"]["coupon"] == params["coupon"]]
    if params.get("customer"):
        items = [p for p in items if p["customer"] == params["customer"]]
    return list_response(ctx, items, "/v1/promotion_codes")


# --- redemption ----------------------------------------------------------------------------------


def _has_paid_before(store: Store, customer_id: str) -> bool:
    if any(c["customer"] == customer_id and c["status"] == "succeeded" for c in store.all("charge")):
        return True
    return any(i["customer"] == customer_id and i["amount_paid"] > 0 for i in store.all("invoice"))


def check_promotion_code(
    store: Store,
    promo: dict[str, Any],
    *,
    customer_id: str | None,
    currency: str,
    subtotal: int,
    param: str,
) -> dict[str, Any]:
    """The coupon behind a promotion code the customer may redeem now, or Stripe's refusal."""
    now = store.now(store.clock_for_customer(customer_id))
    code = promo["code"]
    if not promo["active"]:
        raise invalid_param(
            param, f"This promotion code ({code}) is inactive.", code="promotion_code_inactive"
        )
    if promo["expires_at"] is not None and now >= promo["expires_at"]:
        raise invalid_param(
            param, f"This promotion code ({code}) has expired.", code="promotion_code_expired"
        )
    if promo["max_redemptions"] is not None and promo["times_redeemed"] >= promo["max_redemptions"]:
        raise invalid_param(
            param, f"This promotion code ({code}) has been fully redeemed.", code="promotion_code_expired"
        )
    if promo["customer"] and promo["customer"] != customer_id:
        raise invalid_param(
            param, f"This promotion code ({code}) cannot be redeemed by this customer.", code="coupon_invalid"
        )
    restrictions = promo["restrictions"]
    if restrictions["first_time_transaction"] and customer_id and _has_paid_before(store, customer_id):
        raise invalid_param(
            param,
            f"This promotion code ({code}) is only for customers who have never paid before.",
            code="coupon_invalid",
        )
    minimum = None
    if restrictions["minimum_amount_currency"] == currency:
        minimum = restrictions["minimum_amount"]
    elif (restrictions.get("currency_options") or {}).get(currency):
        minimum = restrictions["currency_options"][currency]["minimum_amount"]
    elif restrictions["minimum_amount"] is not None:
        raise invalid_param(
            param,
            f"This promotion code ({code}) cannot be used in {currency.upper()}.",
            code="coupon_invalid",
        )
    if minimum is not None and subtotal < minimum:
        raise invalid_param(
            param,
            f"This promotion code ({code}) requires an order of at least {minimum} "
            f"({currency}); this one is {subtotal}.",
            code="coupon_invalid",
        )
    return check_coupon(
        store, coupon_of(store, promo["promotion"]["coupon"]), currency=currency, param=param, at=now
    )


def check_coupon(
    store: Store, coupon: dict[str, Any], *, currency: str, param: str, at: int | None = None
) -> dict[str, Any]:
    if not coupon_valid(store, coupon, at):
        raise invalid_param(param, f"Coupon {coupon['id']} is no longer valid.", code="coupon_expired")
    if coupon["amount_off"] is not None and amount_off_in(coupon, currency) is None:
        raise invalid_param(
            param,
            f"Coupon {coupon['id']} has no amount in {currency.upper()}: its currency must match the "
            "subscription's, or it needs currency_options for it.",
            code="coupon_invalid",
        )
    return coupon


def resolve(
    store: Store,
    raw: dict[str, Any],
    *,
    customer_id: str | None,
    currency: str,
    subtotal: int,
    param: str,
) -> tuple[dict[str, Any], dict[str, Any] | None]:
    """(coupon, promotion code) named by one ``discounts[n]`` entry, checked for redemption."""
    given = [key for key in ("coupon", "promotion_code") if raw.get(key)]
    if len(given) != 1:
        raise invalid_param(param, "Each discount needs exactly one of coupon or promotion_code.")
    if given[0] == "coupon":
        coupon = store.find("coupon", raw["coupon"])
        if coupon is None:
            raise _resource_missing(f"No such coupon: '{raw['coupon']}'", f"{param}[coupon]")
        return check_coupon(store, coupon, currency=currency, param=f"{param}[coupon]"), None
    promo = store.find("promotion_code", raw["promotion_code"])
    if promo is None:
        raise _resource_missing(
            f"No such promotion code: '{raw['promotion_code']}'", f"{param}[promotion_code]"
        )
    coupon = check_promotion_code(
        store,
        promo,
        customer_id=customer_id,
        currency=currency,
        subtotal=subtotal,
        param=f"{param}[promotion_code]",
    )
    return coupon, promo


def redeem(
    store: Store,
    coupon: dict[str, Any],
    promo: dict[str, Any] | None,
    *,
    customer_id: str,
    subscription_id: str | None = None,
    invoice_id: str | None = None,
    checkout_session: str | None = None,
) -> dict[str, Any]:
    """A discount: the coupon (through the promotion code, if any) applied from now on."""
    start = store.now(store.clock_for_customer(customer_id))
    end = None
    if coupon["duration"] == "repeating":
        end = pricing.add_interval(start, "month", coupon["duration_in_months"])
    discount = new_object(
        store,
        "discount",
        id=store.new_id("di"),
        checkout_session=checkout_session,
        customer=customer_id,
        customer_account=None,
        end=end,
        invoice=invoice_id,
        invoice_item=None,
        promotion_code=promo["id"] if promo else None,
        source={"coupon": coupon["id"], "type": "coupon"},
        start=start,
        subscription=subscription_id,
        subscription_item=None,
    )
    store.add(discount)
    coupon["times_redeemed"] += 1
    if promo is not None:
        promo["times_redeemed"] += 1
    emit(store, "customer.discount.created", discount)
    return discount


def end_discount(store: Store, discount: dict[str, Any]) -> None:
    """The discount stops applying (its months are over, a ``once`` was used, or it was removed)."""
    if discount.get("_deleted"):
        return
    store.delete(discount)
    sub = store.find("subscription", discount["subscription"]) if discount["subscription"] else None
    if sub is not None and discount["id"] in sub["discounts"]:
        sub["discounts"] = [d for d in sub["discounts"] if d != discount["id"]]
    emit(store, "customer.discount.deleted", discount)


def discount_of(store: Store, discount_id: str) -> dict[str, Any]:
    return store.objects["discount"][discount_id]


def coupon_for(store: Store, discount: dict[str, Any]) -> dict[str, Any]:
    return coupon_of(store, discount["source"]["coupon"])


def live_discounts(store: Store, sub: dict[str, Any], at: int) -> list[dict[str, Any]]:
    """The subscription's discounts that apply to an invoice made at ``at``; the ones whose
    months are over end here."""
    out = []
    for discount_id in list(sub["discounts"]):
        discount = discount_of(store, discount_id)
        if discount["end"] is not None and at >= discount["end"]:
            end_discount(store, discount)
            continue
        out.append(discount)
    return out


def due_ends(store: Store, customers: set[str | None], target: int) -> list[dict[str, Any]]:
    """Discounts of these customers whose ``end`` falls at or before ``target`` (clock timers)."""
    return [
        d
        for d in store.all("discount")
        if d["customer"] in customers and d["end"] is not None and d["end"] <= target
    ]


def discounts_param(
    store: Store,
    raw: Any,
    *,
    customer_id: str,
    currency: str,
    subtotal: int,
    subscription: dict[str, Any],
) -> list[str]:
    """Apply a subscription's ``discounts`` parameter: the discounts it names stay, new coupons and
    promotion codes become discounts, and the discounts left out end. Returns the new list."""
    entries = [] if raw == "" else as_list({"d": raw}, "d")
    kept: list[str] = []
    pending: list[tuple[dict[str, Any], dict[str, Any] | None]] = []
    for index, entry in enumerate(entries):
        param = f"discounts[{index}]"
        if not isinstance(entry, dict):
            raise invalid_param(param, f"Invalid object: {param} must be a hash")
        if entry.get("discount"):
            if entry["discount"] not in subscription["discounts"]:
                raise invalid_param(
                    f"{param}[discount]", f"No such discount on this subscription: {entry['discount']}"
                )
            kept.append(entry["discount"])
            continue
        pending.append(
            resolve(store, entry, customer_id=customer_id, currency=currency, subtotal=subtotal, param=param)
        )
    if len(kept) + len(pending) > 20:
        raise invalid_param("discounts", "A subscription can have at most 20 discounts.")
    coupons = [coupon_for(store, discount_of(store, d))["id"] for d in kept] + [c["id"] for c, _ in pending]
    if len(set(coupons)) != len(coupons):
        raise invalid_param("discounts", "The same coupon cannot be applied twice.")
    for discount_id in list(subscription["discounts"]):
        if discount_id not in kept:
            end_discount(store, discount_of(store, discount_id))
    made = [
        redeem(store, coupon, promo, customer_id=customer_id, subscription_id=subscription["id"])["id"]
        for coupon, promo in pending
    ]
    subscription["discounts"] = kept + made
    return subscription["discounts"]


@route("DELETE", "/v1/subscriptions/<id>/discount")
def subscription_discount_delete(ctx: Ctx, id: str) -> dict[str, Any]:
    store = ctx.store
    sub = store.get("subscription", id)
    if not sub["discounts"]:
        raise _resource_missing(f"No active discount for subscription: '{id}'", "subscription")
    last = discount_of(store, sub["discounts"][0])
    for discount_id in list(sub["discounts"]):
        end_discount(store, discount_of(store, discount_id))
    return deleted(last)


# --- the maths -----------------------------------------------------------------------------------


def _spread(total: int, weights: list[tuple[int, int]]) -> dict[int, int]:
    """``total`` split over (key, weight) in proportion, shares rounded down and the remainder
    given one unit at a time to the largest fractional parts (earlier lines first on a tie)."""
    whole = sum(w for _, w in weights)
    if whole <= 0 or total <= 0:
        return {}
    shares = {key: Fraction(total * w, whole) for key, w in weights}
    out = {key: int(share) for key, share in shares.items()}
    left = total - sum(out.values())
    by_fraction = sorted(weights, key=lambda kw: -(shares[kw[0]] - out[kw[0]]))
    for key, _ in by_fraction[:left]:
        out[key] += 1
    return out


def allocate(slots: list[dict[str, Any]], coupons: list[dict[str, Any]], currency: str) -> list[list[int]]:
    """Each slot's discount per coupon, in order. A slot is ``{"amount", "product",
    "discountable"}``: a line of an invoice or of a Checkout Session."""
    remaining = [s["amount"] if s["discountable"] and s["amount"] > 0 else 0 for s in slots]
    out: list[list[int]] = [[] for _ in slots]
    for coupon in coupons:
        eligible = [
            i for i, s in enumerate(slots) if remaining[i] > 0 and applies_to_product(coupon, s["product"])
        ]
        if coupon["percent_off"] is not None:
            share = Fraction(str(coupon["percent_off"])) / 100
            amounts = {i: min(round(remaining[i] * share), remaining[i]) for i in eligible}
        else:
            off = min(amount_off_in(coupon, currency) or 0, sum(remaining[i] for i in eligible))
            amounts = _spread(off, [(i, remaining[i]) for i in eligible])
        for i in range(len(slots)):
            taken = amounts.get(i, 0)
            out[i].append(taken)
            remaining[i] -= taken
    return out


def net_full_amount(store: Store, sub: dict[str, Any], price: dict[str, Any], quantity: int) -> Fraction:
    """One full period of ``quantity`` x ``price`` after the subscription's live discounts: what
    a proration of a discounted item is a share of."""
    amount = pricing.exact_amount(price, quantity)
    for discount_id in sub["discounts"]:
        coupon = coupon_for(store, discount_of(store, discount_id))
        if not applies_to_product(coupon, price["product"]):
            continue
        if coupon["percent_off"] is not None:
            amount *= 1 - Fraction(str(coupon["percent_off"])) / 100
        else:
            amount = max(amount - (amount_off_in(coupon, sub["currency"]) or 0), Fraction(0))
    return amount


def line_product(line: dict[str, Any]) -> str | None:
    details = (line.get("pricing") or {}).get("price_details") or {}
    return details.get("product")


def apply_to_invoice(store: Store, invoice: dict[str, Any]) -> None:
    """Fill in each line's ``discount_amounts`` and the invoice's ``total_discount_amounts``."""
    lines = invoice["_lines"]
    ids = list(invoice["discounts"])
    coupons = [coupon_for(store, discount_of(store, d)) for d in ids]
    slots = [
        {"amount": line["amount"], "product": line_product(line), "discountable": line["discountable"]}
        for line in lines
    ]
    shares = allocate(slots, coupons, invoice["currency"])
    totals: dict[str, int] = {d: 0 for d in ids}
    for line, line_shares in zip(lines, shares, strict=True):
        amounts = []
        # Line-level discounts (a proration's, already in its amount) come first, as zero.
        for discount_id in line["discounts"]:
            amounts.append({"amount": 0, "discount": discount_id})
            totals.setdefault(discount_id, 0)
        if line["discountable"] and line["amount"] > 0:
            for discount_id, taken in zip(ids, line_shares, strict=True):
                amounts.append({"amount": taken, "discount": discount_id})
                totals[discount_id] += taken
        line["discount_amounts"] = amounts
    invoice["total_discount_amounts"] = [{"amount": amount, "discount": d} for d, amount in totals.items()]


def line_discount(line: dict[str, Any]) -> int:
    return sum(entry["amount"] for entry in line["discount_amounts"] or [])
