"""Tax as Stripe Tax computes it, from a small rate table; customers' tax IDs; tax rates.

The simulated account is a US seller registered to collect tax in the countries of ``RATES``
(standard VAT/GST rates, in percent). For a customer whose address is in:

- a country of ``RATES`` with no tax ID, or outside the EU: that country's rate
  (``standard_rated``);
- an EU country, with an EU VAT ID (``eu_vat``) that did not fail verification: no tax, reverse
  charge (``reverse_charge``): the business accounts for the VAT itself;
- the United States: the state's sales tax (below);
- any other country: no tax (``not_collecting``).

US sales tax, as Stripe Tax computes it from the postal address: the seller is registered in the
states of ``US_STATE_RATES`` (their state-wide base rates, percent; county and city rates are not
simulated), which give ``standard_rated``; a state without a sales tax (``US_NO_SALES_TAX``)
gives none (``not_subject_to_tax``); every other state ``not_collecting``. The state is the
address's ``state``; an address without one is located by its ZIP code (``US_ZIP3``, the first
three digits, for the states of the two tables), and one with neither a state nor a ZIP code
Stripe can place is refused (``customer_tax_location_invalid``), as Stripe Tax refuses a US
address it cannot locate. A state's tax rate object names it: ``jurisdiction`` (its name),
``jurisdiction_level = "state"``, ``state`` (its code), ``tax_type = "sales_tax"``.

Tax comes after discounts, per line, on what is left of the line, rounded half to even. A price's
``tax_behavior`` says whether its amount excludes the tax (``exclusive``: the tax is added) or
includes it (``inclusive``: the tax is the part ``rate / (100 + rate)`` of it); ``unspecified``
is treated as ``exclusive``, the simulated account's default. Each (country, rate, behaviour)
gets one ``tax_rate`` object (``txr_...``) that lines point at.

Tax IDs are format-checked per type (``FORMATS``; EU VAT numbers per member state), and verified
in test mode as Stripe does: a number ending in ``111111111`` is ``unverified``, one ending in
``222222222`` stays ``pending``, any other is ``verified``.
"""

import re
from fractions import Fraction
from typing import Any

from stripe_sim import pricing
from stripe_sim.core import deleted, list_response, new_object, respond
from stripe_sim.errors import StripeError, invalid, invalid_param
from stripe_sim.events import emit
from stripe_sim.params import as_bool, as_list, merge_metadata, require
from stripe_sim.render import public, renderer
from stripe_sim.routing import Ctx, route
from stripe_sim.store import Store

# Standard rates, percent. EU member states first, then the others the seller is registered in.
RATES: dict[str, Fraction] = {
    "AT": Fraction(20),
    "BE": Fraction(21),
    "DE": Fraction(19),
    "ES": Fraction(21),
    "FR": Fraction(20),
    "IE": Fraction(23),
    "IT": Fraction(22),
    "NL": Fraction(21),
    "PL": Fraction(23),
    "SE": Fraction(25),
    "GB": Fraction(20),
    "NO": Fraction(25),
    "AU": Fraction(10),
}
EU = {"AT", "BE", "DE", "ES", "FR", "IE", "IT", "NL", "PL", "SE"}
TAX_TYPE = {"AU": "gst"}

# US states the seller collects sales tax in: state base rates, percent.
US_STATE_RATES: dict[str, Fraction] = {
    "NY": Fraction(4),
    "PA": Fraction(6),
    "TX": Fraction(25, 4),  # 6.25
    "WA": Fraction(13, 2),  # 6.5
}
US_NO_SALES_TAX = {"AK", "DE", "MT", "NH", "OR"}
US_STATE_NAMES = {
    "NY": "New York",
    "PA": "Pennsylvania",
    "TX": "Texas",
    "WA": "Washington",
    "AK": "Alaska",
    "DE": "Delaware",
    "MT": "Montana",
    "NH": "New Hampshire",
    "OR": "Oregon",
}
# ZIP code prefixes (first three digits, inclusive ranges) of the states above.
US_ZIP3: dict[str, list[tuple[int, int]]] = {
    "NY": [(5, 5), (100, 149)],
    "PA": [(150, 196)],
    "TX": [(733, 733), (750, 799), (885, 885)],
    "WA": [(980, 994)],
    "AK": [(995, 999)],
    "DE": [(197, 199)],
    "MT": [(590, 599)],
    "NH": [(30, 38)],
    "OR": [(970, 979)],
}

# EU VAT numbers by their country prefix (Greece's is EL); other types by themselves.
_EU_VAT = {
    "AT": r"U\d{8}",
    "BE": r"[01]\d{9}",
    "DE": r"\d{9}",
    "EL": r"\d{9}",
    "ES": r"[A-Z0-9]\d{7}[A-Z0-9]",
    "FR": r"[A-HJ-NP-Z0-9]{2}\d{9}",
    "IE": r"\d{7}[A-W][A-IW]?|\d[A-Z+*]\d{5}[A-W]",
    "IT": r"\d{11}",
    "NL": r"\d{9}B\d{2}",
    "PL": r"\d{10}",
    "SE": r"\d{12}",
}
FORMATS: dict[str, re.Pattern[str]] = {
    "eu_vat": re.compile("^(" + "|".join(f"{cc}(?:{body})" for cc, body in _EU_VAT.items()) + ")$"),
    "gb_vat": re.compile(r"^GB(\d{9}|\d{12})$"),
    "no_vat": re.compile(r"^\d{9}MVA$"),
    "au_abn": re.compile(r"^\d{11}$"),
    "us_ein": re.compile(r"^\d{2}-\d{7}$"),
    "ch_vat": re.compile(r"^CHE-\d{3}\.\d{3}\.\d{3} (MWST|TVA|IVA)$"),
}
_COUNTRY_OF_TYPE = {"gb_vat": "GB", "no_vat": "NO", "au_abn": "AU", "us_ein": "US", "ch_vat": "CH"}


# --- tax IDs ---------------------------------------------------------------------------------------


def _normalized(kind: str, value: str) -> str:
    if kind in ("eu_vat", "gb_vat", "no_vat", "au_abn"):
        return re.sub(r"[\s.\-]", "", value).upper()
    return value.strip()


def check_tax_id(kind: str, value: str, param: str) -> tuple[str, str | None]:
    """(normalized value, country) for a tax ID, or Stripe's refusal of its format."""
    value = _normalized(kind, str(value or ""))
    pattern = FORMATS.get(kind)
    if not value or (pattern is not None and not pattern.match(value)):
        raise invalid_param(param, f"Invalid value for {kind}.", code="tax_id_invalid")
    if kind == "eu_vat":
        country = value[:2]
        return value, "GR" if country == "EL" else country
    return value, _COUNTRY_OF_TYPE.get(kind)


def create_tax_id(
    store: Store, customer: dict[str, Any], kind: str, value: str, param: str
) -> dict[str, Any]:
    value, country = check_tax_id(kind, value, param)
    status = "verified"
    if value.endswith("111111111"):
        status = "unverified"
    elif value.endswith("222222222"):
        status = "pending"
    tax_id = new_object(
        store,
        "tax_id",
        created=store.now(customer.get("test_clock")),
        country=country,
        customer=customer["id"],
        customer_account=None,
        owner={"customer": customer["id"], "customer_account": None, "type": "customer"},
        type=kind,
        value=value,
        verification={"status": status, "verified_address": None, "verified_name": None},
    )
    store.add(tax_id)
    emit(store, "customer.tax_id.created", tax_id)
    return tax_id


def tax_ids_of(store: Store, customer_id: str) -> list[dict[str, Any]]:
    return [t for t in store.all("tax_id") if t["customer"] == customer_id]


@route("POST", "/v1/customers/<id>/tax_ids")
def customer_tax_id_create(ctx: Ctx, id: str) -> dict[str, Any]:
    customer = ctx.store.get("customer", id)
    kind = str(require(ctx.params, "type"))
    return respond(ctx, create_tax_id(ctx.store, customer, kind, str(require(ctx.params, "value")), "value"))


@route("GET", "/v1/customers/<id>/tax_ids")
def customer_tax_id_list(ctx: Ctx, id: str) -> dict[str, Any]:
    ctx.store.get("customer", id)
    return list_response(ctx, tax_ids_of(ctx.store, id), f"/v1/customers/{id}/tax_ids")


@route("GET", "/v1/customers/<id>/tax_ids/<tax_id>")
def customer_tax_id_retrieve(ctx: Ctx, id: str, tax_id: str) -> dict[str, Any]:
    found = ctx.store.get("tax_id", tax_id)
    if found["customer"] != id:
        raise StripeError(
            404, "invalid_request_error", f"No such tax_id: '{tax_id}'", code="resource_missing"
        )
    return respond(ctx, found)


@route("DELETE", "/v1/customers/<id>/tax_ids/<tax_id>")
def customer_tax_id_delete(ctx: Ctx, id: str, tax_id: str) -> dict[str, Any]:
    found = ctx.store.get("tax_id", tax_id)
    if found["customer"] != id:
        raise StripeError(
            404, "invalid_request_error", f"No such tax_id: '{tax_id}'", code="resource_missing"
        )
    ctx.store.delete(found)
    emit(ctx.store, "customer.tax_id.deleted", found)
    return deleted(found)


# --- tax rates -------------------------------------------------------------------------------------


def rate_object(
    store: Store, country: str, percentage: Fraction, inclusive: bool, state: str | None = None
) -> dict[str, Any]:
    """The one tax rate object for this country (and US state), rate and behaviour (made when
    first needed)."""
    for rate in store.all("tax_rate"):
        if (rate["country"], rate.get("state"), rate["inclusive"], Fraction(str(rate["percentage"]))) == (
            country,
            state,
            inclusive,
            percentage,
        ):
            return rate
    if state is not None:
        name = US_STATE_NAMES.get(state, state)
        kind, display, description, jurisdiction, level = (
            "sales_tax",
            "Sales Tax",
            f"Sales Tax {name}",
            name,
            "state",
        )
    else:
        kind = TAX_TYPE.get(country, "vat")
        display, description, jurisdiction, level = (
            kind.upper(),
            f"{kind.upper()} {country}",
            country,
            "country",
        )
    rate = new_object(
        store,
        "tax_rate",
        active=True,
        country=country,
        description=description,
        display_name=display,
        effective_percentage=float(percentage),
        inclusive=inclusive,
        jurisdiction=jurisdiction,
        jurisdiction_level=level,
        metadata={},
        percentage=float(percentage),
        rate_type="percentage",
        state=state,
        tax_type=kind,
    )
    store.add(rate)
    emit(store, "tax_rate.created", rate)
    return rate


@route("POST", "/v1/tax_rates")
def tax_rate_create(ctx: Ctx) -> dict[str, Any]:
    params = ctx.params
    percentage = Fraction(str(require(params, "percentage")))
    if not 0 <= percentage <= 100:
        raise invalid_param("percentage", "Invalid percentage: between 0 and 100.")
    rate = new_object(
        ctx.store,
        "tax_rate",
        active=as_bool(params, "active", True),
        country=params.get("country") or None,
        description=params.get("description") or None,
        display_name=str(require(params, "display_name")),
        effective_percentage=float(percentage),
        inclusive=bool(as_bool(params, "inclusive")),
        jurisdiction=params.get("jurisdiction") or None,
        metadata=merge_metadata({}, params.get("metadata")),
        percentage=float(percentage),
        rate_type="percentage",
        state=params.get("state") or None,
        tax_type=params.get("tax_type") or None,
    )
    ctx.store.add(rate)
    emit(ctx.store, "tax_rate.created", rate)
    return respond(ctx, rate)


@route("GET", "/v1/tax_rates/<id>")
def tax_rate_retrieve(ctx: Ctx, id: str) -> dict[str, Any]:
    return respond(ctx, ctx.store.get("tax_rate", id))


@route("GET", "/v1/tax_rates")
def tax_rate_list(ctx: Ctx) -> dict[str, Any]:
    items = ctx.store.all("tax_rate")
    if "active" in ctx.params:
        items = [r for r in items if r["active"] == as_bool(ctx.params, "active")]
    return list_response(ctx, items, "/v1/tax_rates")


# --- the maths -------------------------------------------------------------------------------------


def _unlocated(message: str) -> StripeError:
    return invalid(message, code="customer_tax_location_invalid", param="customer")


def location_of(store: Store, customer: dict[str, Any]) -> str:
    """The country tax is computed for, or Stripe's refusal when there is none (or, in the US,
    no state it can place)."""
    address = customer.get("address") or {}
    country = address.get("country")
    if not country:
        raise _unlocated(
            "The customer's location isn't recognized: automatic tax needs the customer's address "
            "(at least its country)."
        )
    if country == "US":
        us_state_of(address)
    return str(country)


def us_state_of(address: dict[str, Any]) -> str:
    """The US state of an address: its ``state``, else the one its ZIP code is in."""
    state = str(address.get("state") or "").strip().upper()
    if state:
        return state
    zip_code = str(address.get("postal_code") or "").strip()
    if re.fullmatch(r"\d{5}(-\d{4})?", zip_code):
        prefix = int(zip_code[:3])
        for code, ranges in US_ZIP3.items():
            if any(low <= prefix <= high for low, high in ranges):
                return code
    raise _unlocated(
        "The customer's location isn't recognized: a US address needs its state, or a ZIP code "
        "that places it."
    )


def treatment(store: Store, customer: dict[str, Any]) -> tuple[str, Fraction, str, str | None]:
    """(country, rate, taxability reason, US state or None) for this customer."""
    country = location_of(store, customer)
    if country == "US":
        state = us_state_of(customer.get("address") or {})
        if state in US_STATE_RATES:
            return country, US_STATE_RATES[state], "standard_rated", state
        return (
            country,
            Fraction(0),
            "not_subject_to_tax" if state in US_NO_SALES_TAX else "not_collecting",
            state,
        )
    if country not in RATES:
        return country, Fraction(0), "not_collecting", None
    if country in EU and any(
        t["type"] == "eu_vat" and t["verification"]["status"] != "unverified"
        for t in tax_ids_of(store, customer["id"])
    ):
        return country, Fraction(0), "reverse_charge", None
    return country, RATES[country], "standard_rated", None


def line_tax(taxable: int, rate: Fraction, inclusive: bool) -> int:
    if taxable <= 0 or rate == 0:
        return 0
    share = rate / (100 + rate) if inclusive else rate / 100
    return round(taxable * share)


def apply_to_invoice(store: Store, invoice: dict[str, Any], discount_of_line) -> None:
    """Put each line's ``taxes`` and the invoice's ``total_taxes`` on an invoice with automatic
    tax, after its discounts (``discount_of_line(line)``)."""
    if not invoice["automatic_tax"]["enabled"]:
        invoice["total_taxes"] = []
        return
    customer = store.get("customer", invoice["customer"])
    country, rate, reason, state = treatment(store, customer)
    totals: dict[tuple[str, str, str], dict[str, Any]] = {}
    for line in invoice["_lines"]:
        price = store.find("price", ((line.get("pricing") or {}).get("price_details") or {}).get("price"))
        if price is not None:
            price = pricing.in_currency(price, invoice["currency"]) or price
        behavior = "inclusive" if price is not None and price["tax_behavior"] == "inclusive" else "exclusive"
        taxable = line["amount"] - discount_of_line(line)
        amount = line_tax(taxable, rate, behavior == "inclusive")
        tax_rate = rate_object(store, country, rate, behavior == "inclusive", state)
        if behavior == "inclusive":
            taxable -= amount  # the taxable amount of an inclusive price excludes its tax
        entry = {
            "amount": amount,
            "tax_behavior": behavior,
            "tax_rate_details": {"tax_rate": tax_rate["id"]},
            "taxability_reason": reason,
            "taxable_amount": taxable,
            "type": "tax_rate_details",
        }
        line["taxes"] = [entry]
        key = (tax_rate["id"], behavior, reason)
        total = totals.setdefault(key, {**entry, "amount": 0, "taxable_amount": 0})
        total["amount"] += amount
        total["taxable_amount"] += taxable
    invoice["total_taxes"] = list(totals.values())
    invoice["automatic_tax"]["status"] = "complete"
    invoice["customer_address"] = customer.get("address")
    invoice["customer_tax_ids"] = [
        {"type": t["type"], "value": t["value"]} for t in tax_ids_of(store, customer["id"])
    ]


def exclusive_total(invoice: dict[str, Any]) -> int:
    return sum(t["amount"] for t in invoice["total_taxes"] or [] if t["tax_behavior"] == "exclusive")


def inclusive_total(invoice: dict[str, Any]) -> int:
    return sum(t["amount"] for t in invoice["total_taxes"] or [] if t["tax_behavior"] == "inclusive")


AUTOMATIC_ON = {"enabled": True, "liability": {"type": "self"}}


def automatic_param(params: dict[str, Any]) -> bool:
    raw = params.get("automatic_tax")
    if not isinstance(raw, dict):
        return False
    return bool(as_bool(raw, "enabled", False))


@renderer("customer")
def _render_customer(store: Store, customer: dict[str, Any], expand: set[str]) -> dict[str, Any]:
    out = public(customer)
    if "tax_ids" in expand:
        out["tax_ids"] = {
            "object": "list",
            "data": [public(t) for t in tax_ids_of(store, customer["id"])],
            "has_more": False,
            "url": f"/v1/customers/{customer['id']}/tax_ids",
        }
    return out


def tax_id_data(store: Store, customer: dict[str, Any], raw: Any) -> None:
    """``tax_id_data`` of a new customer: each checked before the customer is kept."""
    for index, entry in enumerate(as_list({"d": raw}, "d")):
        create_tax_id(
            store,
            customer,
            str(require(entry, "type")),
            str(require(entry, "value")),
            f"tax_id_data[{index}][value]",
        )
