"""Hosted pages: Checkout, the customer portal, and the ``/_sim/`` debug page (plain HTML)."""

import datetime as dt
import json
from html import escape
from typing import Any

from stripe_sim import authentication, billing, checkout, discounts
from stripe_sim.errors import StripeError, invalid_param
from stripe_sim.render import render
from stripe_sim.store import Store

_STYLE = """
body{font-family:system-ui,sans-serif;max-width:46rem;margin:2rem auto;padding:0 1rem;color:#222}
table{border-collapse:collapse;width:100%;margin:1rem 0}td,th{border-bottom:1px solid #ddd;
padding:.35rem .5rem;text-align:left;vertical-align:top}.error{color:#b00020;font-weight:600}
.note{color:#0a6b2d;font-weight:600}input,select,button{font-size:1rem;padding:.3rem .5rem}
.sim{background:#fff3cd;padding:.4rem .6rem;border-radius:4px;font-size:.9rem}pre{font-size:.8rem;
white-space:pre-wrap;background:#f6f6f6;padding:.5rem}
"""


def page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html lang=en><head><meta charset=utf-8><title>{escape(title)}</title>"
        f"<meta name=viewport content='width=device-width,initial-scale=1'>"
        f"<style>{_STYLE}</style></head><body>"
        f"<p class=sim>Stripe simulator (test mode): no real money moves.</p>{body}</body></html>"
    )


# The countries the hosted page offers for a billing address (those of the tax table and a few).
COUNTRIES = ("US", "GB", "DE", "FR", "NL", "IE", "IT", "ES", "AT", "BE", "PL", "SE", "NO", "CH", "AU", "JP")


# Stripe's zero-decimal currencies: amounts are whole units, not hundredths.
ZERO_DECIMAL = {
    "bif",
    "clp",
    "djf",
    "gnf",
    "jpy",
    "kmf",
    "krw",
    "mga",
    "pyg",
    "rwf",
    "ugx",
    "vnd",
    "vuv",
    "xaf",
    "xof",
    "xpf",
}


def money(amount: int | None, currency: str | None) -> str:
    if amount is None:
        return "-"
    if amount < 0:
        return "-" + money(-amount, currency)
    if (currency or "usd") == "usd":
        return f"${amount / 100:,.2f}"
    if (currency or "").lower() in ZERO_DECIMAL:
        return f"{amount:,} {(currency or '').upper()}"
    return f"{amount / 100:,.2f} {(currency or '').upper()}"


def _date(ts: int | None) -> str:
    if not ts:
        return "-"
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%d %b %Y")


# --- checkout ------------------------------------------------------------------------------------


def checkout_page(store: Store, session_id: str, error: str | None = None) -> tuple[int, str]:
    session = store.find("checkout.session", session_id)
    if session is None:
        return 404, page("Not found", "<h1>This checkout session does not exist.</h1>")
    session = checkout._refresh(store, session)
    if session["status"] != "open":
        return 410, page(
            "Checkout",
            f"<h1>This checkout session is {escape(session['status'])}.</h1>",
        )
    rows = []
    for item in checkout._line_items(store, session):
        price = item["price"]
        interval = (price.get("recurring") or {}).get("interval")
        per = f" / {interval}" if interval else ""
        if (price.get("recurring") or {}).get("usage_type") == "metered":
            amount = "billed by usage"
        else:
            amount = money(item["amount_total"], item["currency"]) + per
        rows.append(
            f"<tr><td>{escape(item['description'] or '')}</td><td>{item['quantity']}</td>"
            f"<td>{escape(amount)}</td></tr>"
        )
    trial = session["_subscription_data"]["trial_period_days"]
    trial_note = f"<p>{trial}-day free trial: nothing is charged today.</p>" if trial else ""
    discount_html = ""
    for entry, coupon in zip(
        session["discounts"] or [], checkout.session_coupons(store, session), strict=True
    ):
        promo = store.objects.get("promotion_code", {}).get(entry.get("promotion_code") or "")
        label = promo["code"] if promo else (coupon["name"] or coupon["id"])
        saved = money(session["total_details"]["amount_discount"], session["currency"])
        terms = _coupon_terms(coupon, session["currency"])
        discount_html += (
            f"<p data-discount>Discount <strong>{escape(label)}</strong> ({escape(terms)}):"
            f" &minus;{escape(saved)}</p>"
        )
    promo_html = (
        """<form method=post><input type=hidden name=action value=apply_promotion_code>
<p><label>Promotion code <input name=promotion_code autocomplete=off></label>
<button type=submit>Apply</button></p></form>"""
        if session["allow_promotion_codes"] and not session["discounts"]
        else ""
    )
    total = (
        ""
        if session["mode"] == "setup"
        else (
            f"<p><strong>Total due today: {money(session['amount_total'], session['currency'])}</strong></p>"
        )
    )
    error_html = f"<p class=error role=alert>{escape(error)}</p>" if error else ""
    email = escape(session["customer_email"] or "")
    sepa = "sepa_debit" in session["payment_method_types"] and session["mode"] != "setup"
    sepa_html = (
        """<p><label>Or IBAN (SEPA Direct Debit) <input name=iban placeholder="DE89 3704 0044 0532 0130 00">
</label></p><p><small>DE89 3704 0044 0532 0130 00 is debited; DE62 3704 0044 0532 0130 01 fails.
The bank answers when time moves on (or <code>POST /_sim/settle</code>).</small></p>"""
        if sepa
        else ""
    )
    needs_address = session["automatic_tax"]["enabled"] or session["billing_address_collection"] == "required"
    address_html = ""
    if needs_address:
        options = "".join(f"<option value={c}>{c}</option>" for c in COUNTRIES)
        address_html = f"""<fieldset><legend>Billing address</legend>
<p><label>Country <select name=country required><option value="">Choose…</option>{options}</select>
</label></p>
<p><label>Address <input name=line1></label> <label>Postal code <input name=postal_code></label>
<label>City <input name=city></label> <label>State <input name=state></label></p></fieldset>"""
    if (session["tax_id_collection"] or {}).get("enabled"):
        address_html += """<fieldset><legend>Buying as a business?</legend>
<p><label>Business name <input name=business_name></label></p>
<p><label>VAT number <input name=tax_id placeholder="DE123456789"></label></p></fieldset>"""
    tax_note = (
        "<p><small>Tax is calculated from your billing address"
        f"{' and VAT number' if (session['tax_id_collection'] or {}).get('enabled') else ''}.</small></p>"
        if session["automatic_tax"]["enabled"]
        else ""
    )
    body = f"""
<h1>Checkout</h1>
<table><tr><th>Item</th><th>Qty</th><th>Price</th></tr>{"".join(rows)}</table>
{trial_note}{discount_html}{total}{tax_note}{error_html}
<form method=post>
<p><label>Email <input name=email type=email value="{email}" required></label></p>
<p><label>Name on card <input name=name></label></p>
{address_html}
<p><label>Card number <input name=card_number inputmode=numeric autocomplete=cc-number
 placeholder="4242 4242 4242 4242"{"" if sepa else " required"}></label></p>
<p><small>4242 4242 4242 4242 pays; 4000 0000 0000 0002 is declined.</small></p>
{sepa_html}
<button type=submit>{"Save card" if session["mode"] == "setup" else "Pay"}</button>
</form>
{promo_html}
{f'<p><a href="{escape(session["cancel_url"])}">Cancel and go back</a></p>' if session["cancel_url"] else ""}
"""
    return 200, page("Checkout", body)


def _coupon_terms(coupon: dict[str, Any], currency: str | None) -> str:
    if coupon["percent_off"] is not None:
        off = f"{coupon['percent_off']:g}% off"
    else:
        off = f"{money(discounts.amount_off_in(coupon, currency or 'usd'), currency)} off"
    if coupon["duration"] == "repeating":
        return f"{off} for {coupon['duration_in_months']} months"
    return off + (" forever" if coupon["duration"] == "forever" else " once")


def checkout_submit(store: Store, session_id: str, form: dict[str, str]) -> tuple[int, str, str]:
    """(status, html, redirect): a redirect to ``success_url`` or the page with the error. A
    promotion code typed in is applied first (``Apply``, or along with paying)."""
    session = store.find("checkout.session", session_id)
    code = (form.get("promotion_code") or "").strip()
    if session is not None and (code or form.get("action") == "apply_promotion_code"):
        try:
            if not code:
                raise invalid_param("promotion_code", "Enter a promotion code.")
            checkout.apply_promotion_code(store, session, code)
        except StripeError as exc:
            status, html = checkout_page(store, session_id, exc.message)
            return (400 if status == 200 else status), html, ""
        if form.get("action") == "apply_promotion_code":
            status, html = checkout_page(store, session_id)
            return status, html, ""
    """(status, html, redirect): a redirect to ``success_url``, the page with the error, or the
    authentication step a card asks for before Checkout pays."""
    answer = form.get("authentication")
    card_number = form.get("card_number", "")
    if not form.get("iban", "").strip() and authentication.card_asks_on_session(card_number):
        session = store.find("checkout.session", session_id)
        if answer not in authentication.OUTCOMES and session is not None and session["status"] == "open":
            # What the page asked for comes back with the answer to the authentication step.
            asked = (
                "card_number",
                "email",
                "name",
                "country",
                "line1",
                "postal_code",
                "city",
                "state",
                "business_name",
            )
            hidden = {name: form.get(name, "") for name in (*asked, "tax_id")}
            if session["mode"] == "setup":
                step = authentication.step_html({}, "", hidden, saving=True)
            else:
                amount = money(session["amount_total"], session["currency"])
                step = authentication.step_html({}, amount, hidden)
            return 200, page("Checkout", f"<h1>Checkout</h1>{step}"), ""
        if answer == "fail" and (session is None or session["mode"] != "setup"):
            status, html = checkout_page(store, session_id, authentication.FAILED_MESSAGE)
            return (402 if status == 200 else status), html, ""
    try:
        target = checkout.complete_session(
            store,
            session_id,
            card_number=card_number,
            email=form.get("email") or None,
            name=form.get("name") or None,
            iban=form.get("iban", ""),
            address={k: form.get(k) for k in ("country", "line1", "postal_code", "city", "state")}
            if form.get("country")
            else None,
            business_name=form.get("business_name") or None,
            tax_id=form.get("tax_id", ""),
            authenticated=answer == "complete",
            authentication_failed=answer == "fail",
        )
    except StripeError as exc:
        status, html = checkout_page(store, session_id, exc.message)
        return (402 if status == 200 else status), html, ""
    return 303, "", target


# --- hosted invoice page ---------------------------------------------------------------------------


def invoice_page(store: Store, invoice_id: str, note: str = "", error: str = "") -> tuple[int, str]:
    """What ``hosted_invoice_url`` shows: the invoice, and a way to pay it while it is due."""
    invoice = store.find("invoice", invoice_id)
    if invoice is None or invoice["status"] == "draft":
        return 404, page("Not found", "<h1>This invoice does not exist.</h1>")
    lines = "".join(
        f"<tr><td>{escape(line['description'] or '')}</td>"
        f"<td>{money(line['amount'], invoice['currency'])}</td></tr>"
        for line in invoice["_lines"]
    )
    parts = [
        f"<h1>Invoice {escape(invoice['number'] or '')}</h1>",
        f"<p class=note>{escape(note)}</p>" if note else "",
        f"<p class=error>{escape(error)}</p>" if error else "",
        f"<p>Status: <strong data-status>{escape(invoice['status'])}</strong>"
        f" · Due {_date(invoice['due_date'] or invoice['effective_at'])}</p>",
        f"<table><tr><th>Description</th><th>Amount</th></tr>{lines}{_adjustments(store, invoice)}"
        f"<tr><th>Amount due</th><th>{money(invoice['amount_due'], invoice['currency'])}</th></tr>"
        f"<tr><th>Amount paid</th><th>{money(invoice['amount_paid'], invoice['currency'])}</th></tr>"
        "</table>",
    ]
    pending = authentication.pending_intent(store, invoice)
    if pending is not None:
        parts.append(authentication.step_html(pending, money(pending["amount"], pending["currency"])))
    if invoice["status"] in ("open", "uncollectible") and invoice["amount_remaining"] > 0:
        parts.append(
            "<form method=post><label>Card number <input name=card_number "
            "value=4242424242424242 autocomplete=off></label> "
            f"<button>Pay {money(invoice['amount_remaining'], invoice['currency'])}</button></form>"
        )
    return 200, page(f"Invoice {invoice['number'] or ''}", "".join(parts))


def _adjustments(store: Store, invoice: dict[str, Any]) -> str:
    """The invoice's discounts and taxes, as rows under its lines."""
    rows = []
    for entry in invoice["total_discount_amounts"] or []:
        if entry["amount"]:
            coupon = discounts.coupon_for(store, discounts.discount_of(store, entry["discount"]))
            name = coupon["name"] or coupon["id"]
            amount = money(-entry["amount"], invoice["currency"])
            rows.append(f"<tr data-discount><td>Discount: {escape(name)}</td><td>{amount}</td></tr>")
    for entry in invoice["total_taxes"] or []:
        rate = store.find("tax_rate", entry["tax_rate_details"]["tax_rate"])
        label = f"{rate['display_name']} {rate['percentage']:g}%" if rate else "Tax"
        if entry["taxability_reason"] == "reverse_charge":
            label = "Reverse charge: VAT to be accounted for by the customer"
        elif entry["tax_behavior"] == "inclusive":
            label = f"incl. {label}"
        amount = money(entry["amount"], invoice["currency"])
        rows.append(f"<tr data-tax><td>{escape(label)}</td><td>{amount}</td></tr>")
    return "".join(rows)


def invoice_submit(store: Store, invoice_id: str, form: dict[str, str]) -> tuple[int, str]:
    invoice = store.find("invoice", invoice_id)
    if invoice is None or invoice["status"] == "draft":
        return invoice_page(store, invoice_id)
    try:
        if form.get("authentication"):
            pending = authentication.pending_intent(store, invoice)
            if pending is None:
                return invoice_page(store, invoice_id, error="Nothing on this invoice awaits authentication.")
            authentication.authenticate(store, pending, form["authentication"])
        else:
            billing.pay_from_hosted_page(store, invoice, form.get("card_number", ""))
    except StripeError as exc:
        status, html = invoice_page(store, invoice_id, error=exc.message)
        return (402 if status == 200 else status), html
    if invoice["status"] == "paid":
        return invoice_page(store, invoice_id, note="Paid. Thank you.")
    if authentication.pending_intent(store, invoice) is not None:
        return invoice_page(store, invoice_id)
    error = (store.find("payment_intent", _latest_intent(store, invoice)) or {}).get("last_payment_error")
    status, html = invoice_page(store, invoice_id, error=(error or {}).get("message", "Not paid."))
    return (402 if status == 200 else status), html


def _latest_intent(store: Store, invoice: dict[str, Any]) -> str | None:
    for record in store.all("invoice_payment"):
        if record["invoice"] == invoice["id"] and record["is_default"]:
            return record["payment"].get("payment_intent")
    return None


# --- portal --------------------------------------------------------------------------------------


def portal_page(store: Store, session_id: str, note: str = "", error: str = "") -> tuple[int, str]:
    session = store.find("billing_portal.session", session_id)
    if session is None:
        return 404, page("Not found", "<h1>This portal session does not exist.</h1>")
    config = store.get("billing_portal.configuration", session["configuration"])
    customer = store.get("customer", session["customer"])
    prices = checkout.portal_prices(store, config)
    parts = [f"<h1>Billing for {escape(customer.get('email') or customer['id'])}</h1>"]
    if note:
        parts.append(f"<p class=note role=status>{escape(note)}</p>")
    if error:
        parts.append(f"<p class=error role=alert>{escape(error)}</p>")
    subs = [
        s
        for s in store.all("subscription")
        if s["customer"] == customer["id"] and s["status"] in billing.LIVE_STATUSES
    ]
    if not subs:
        parts.append("<p>No active subscription.</p>")
    for sub in subs:
        items = billing.items_of(store, sub["id"])
        price = store.objects["price"][items[0]["price"]]
        product = store.objects["product"].get(price["product"], {})
        renews = (
            f"Cancels on {_date(sub['_period_end'])}"
            if sub["cancel_at_period_end"]
            else f"Renews on {_date(sub['_period_end'])}"
        )
        parts.append(
            f"<h2>{escape(product.get('name', price['product']))}</h2>"
            f"<p>Status: {escape(sub['status'])}. {renews}.</p>"
        )
        hidden = f"<input type=hidden name=subscription value={escape(sub['id'])}>"
        if sub["cancel_at_period_end"]:
            parts.append(
                f"<form method=post>{hidden}<input type=hidden name=action value=resume>"
                "<button>Renew plan</button></form>"
            )
        else:
            parts.append(
                f"<form method=post>{hidden}<input type=hidden name=action value=cancel>"
                "<button>Cancel plan</button></form>"
            )
        options = "".join(
            f"<option value={escape(p['id'])}{' selected' if p['id'] == price['id'] else ''}>"
            f"{escape(store.objects['product'].get(p['product'], {}).get('name', ''))} "
            f"{escape(p.get('nickname') or '')} "
            f"{money(p['unit_amount'], p['currency']) if p['unit_amount'] is not None else ''}"
            f" / {escape(p['recurring']['interval'])}</option>"
            for p in prices
        )
        parts.append(
            f"<form method=post>{hidden}<input type=hidden name=action value=switch>"
            f"<label>Switch plan <select name=price>{options}</select></label> "
            "<button>Update plan</button></form>"
        )
    default_pm = store.find("payment_method", customer["invoice_settings"]["default_payment_method"])
    card = f"Card ending {default_pm['card']['last4']}" if default_pm else "No card on file"
    parts.append(
        f"<h2>Payment method</h2><p>{escape(card)}</p><form method=post>"
        "<input type=hidden name=action value=card><label>New card number "
        "<input name=card_number inputmode=numeric required></label> <button>Save card</button>"
        "</form>"
    )
    if session["return_url"]:
        parts.append(f'<p><a href="{escape(session["return_url"])}">Return to the app</a></p>')
    return 200, page("Billing portal", "".join(parts))


def portal_submit(store: Store, session_id: str, form: dict[str, str]) -> tuple[int, str]:
    if store.find("billing_portal.session", session_id) is None:
        return portal_page(store, session_id)
    try:
        note = checkout.portal_action(store, session_id, form)
    except StripeError as exc:
        status, html = portal_page(store, session_id, error=exc.message)
        return 400, html
    return portal_page(store, session_id, note=note)


# --- debug page ----------------------------------------------------------------------------------


def debug_page(store: Store) -> str:
    kinds = sorted(store.objects)
    counts = "".join(
        f"<tr><td><a href='/_sim/objects/{escape(kind)}'>{escape(kind)}</a></td>"
        f"<td>{len(store.all(kind))}</td></tr>"
        for kind in kinds
    )
    events = "".join(
        f"<tr><td><a href='/_sim/object/{e['id']}'>{e['id']}</a></td><td>{escape(e['type'])}</td>"
        f"<td>{e['data']['object'].get('id', '')}</td><td>{e['pending_webhooks']}</td></tr>"
        for e in store.all("event")[:100]
    )
    deliveries = "".join(
        f"<tr><td>{escape(d['event'])}</td><td>{escape(d['type'])}</td><td>{escape(d['url'])}</td>"
        f"<td>{escape(d['status'])}</td><td>{len(d['attempts'])}</td>"
        f"<td>{_last_response(d)}</td>"
        f"<td><form method=post action='/_sim/deliveries/{escape(d['id'])}/resend'>"
        "<input type=hidden name=back value=1><button>Resend</button></form></td></tr>"
        for d in reversed(store.deliveries[-100:])
    )
    clocks = "".join(
        f"<tr><td>{c['id']}</td><td>{escape(c['name'] or '')}</td><td>{_date(c['frozen_time'])}</td></tr>"
        for c in store.all("test_helpers.test_clock")
    )
    processing = checkout.processing_debits(store)
    debits = (
        f"<form method=post action=/_sim/settle><input type=hidden name=back value=1>{len(processing)} "
        "bank debit(s) processing <button>Let the bank answer now</button></form>"
        if processing
        else ""
    )
    armed = "".join(
        f"<li>{escape(f['method'] or 'any')} {escape(f['path'])}: {f['status']} for "
        f"{f['count'] - f['used']} more call(s)</li>"
        for f in store.faults
    )
    faults = f"<h2>Faults armed</h2><ul>{armed}</ul>" if armed else ""
    body = f"""
<h1>Stripe simulator</h1>
<p>Now, for objects on no test clock: {_date(store.now())}{_offset(store.offset)}</p>
<form method=post action=/_sim/advance>Advance time by
<input name=days type=number min=1 value=30 style="width:5em"> days (renewals, retries and expiries
run on the way) <button>Advance</button></form>
{debits}{faults}
<h2>Objects</h2><table><tr><th>Type</th><th>Count</th></tr>{counts}</table>
<h2>Test clocks</h2><table><tr><th>Id</th><th>Name</th><th>Frozen time</th></tr>{clocks}</table>
<h2>Events (newest first)</h2>
<table><tr><th>Id</th><th>Type</th><th>Object</th><th>Pending webhooks</th></tr>{events}</table>
<h2>Webhook deliveries</h2>
<table><tr><th>Event</th><th>Type</th><th>URL</th><th>Status</th><th>Attempts</th>
<th>Last response</th><th></th></tr>{deliveries}</table>
<form method=post action=/_sim/reset><button>Reset all state</button></form>
"""
    return page("Stripe simulator", body)


def _offset(seconds: int) -> str:
    return f" ({seconds / 86400:+.1f} days from the real time)" if seconds else ""


def _last_response(delivery: dict[str, Any]) -> str:
    if not delivery["attempts"]:
        return "-"
    last = delivery["attempts"][-1]
    if last["error"]:
        return escape(last["error"])
    return f"{last['status_code']} {escape(last['body'][:120])}"


def objects_page(store: Store, kind: str) -> str:
    rows = "".join(
        f"<tr><td><a href='/_sim/object/{escape(o['id'])}'>{escape(o['id'])}</a></td>"
        f"<td>{_date(o.get('created'))}</td></tr>"
        for o in store.all(kind)[:500]
    )
    return page(kind, f"<h1>{escape(kind)}</h1><table>{rows}</table><a href=/_sim/>Back</a>")


def object_page(store: Store, object_id: str) -> tuple[int, str]:
    obj = store.find_any(object_id)
    if obj is None:
        return 404, page("Not found", "<h1>No such object.</h1>")
    text = json.dumps(render(store, obj), indent=2)
    return 200, page(object_id, f"<h1>{escape(object_id)}</h1><pre>{escape(text)}</pre>")
