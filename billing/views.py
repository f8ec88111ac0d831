import re

import stripe
from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import billing_details, discounts, entitlements, notifications, seats, selectors, subscriptions
from billing.catalog.versions import price_moves_of
from billing.models import Access, BillingProfile, Interval, Plan, PlanLineItem, SeatMode
from common.checkout import checkout_redirect
from common.errors import ServiceError
from teams.access import get_org_for_user
from teams.models import Role

MAX_SEATS = 1000
# Stripe's Checkout Session ids: "cs_test_…" or "cs_live_…", letters, digits and underscores.
CHECKOUT_SESSION_ID = re.compile(r"cs_[A-Za-z0-9_]{1,250}")


def _seats(request, default: int) -> int:
    try:
        seats = int(request.GET.get("seats", default))
    except ValueError:
        return default
    return min(max(seats, 1), MAX_SEATS)


PROMO_SESSION_KEY = "billing_promo"
CURRENCY_SESSION_KEY = "billing_currency"
# Languages whose speakers mostly pay in euros (the default currency when one is offered).
EURO_LANGUAGES = {"de", "fr", "es", "it", "nl", "pt", "fi", "el", "sk", "sl", "et", "lv", "lt", "ga", "mt"}


def _offered_currencies() -> list[str]:
    plans = Plan.objects.public().filter(is_free=False).prefetch_related("line_items")
    found = {currency for plan in plans for currency in plan.currencies}
    base = Plan.objects.filter(is_free=True).values_list("currency", flat=True).first() or "usd"
    return [base, *sorted(found - {base})]


def _currency(request, offered: list[str], organization=None) -> str:
    """The currency prices are shown and sold in: the one the organization already pays in,
    else the visitor's choice (remembered), else one their language suggests."""
    held = subscriptions.billing_currency(organization) if organization is not None else None
    if held:
        return held
    chosen = request.GET.get("currency", "").lower()
    if chosen in offered:
        request.session[CURRENCY_SESSION_KEY] = chosen
        return chosen
    remembered = request.session.get(CURRENCY_SESSION_KEY)
    if remembered in offered:
        return remembered
    language = (request.headers.get("Accept-Language") or "").split(",")[0].strip().lower()
    if language[:2] in EURO_LANGUAGES and "eur" in offered:
        return "eur"
    return offered[0]


def _promotion_code(request):
    """`/pricing/?promo=CODE` remembers a code for this visitor until checkout uses it; the
    code is shown (or said to be invalid) wherever it is carried."""
    if "promo" in request.GET:
        code = request.GET["promo"].strip()[:64]
        found = discounts.promotion_code_find(code)
        if found is None:
            request.session.pop(PROMO_SESSION_KEY, None)
            return None, code
        request.session[PROMO_SESSION_KEY] = found.code
        return found, ""
    remembered = request.session.get(PROMO_SESSION_KEY)
    return (discounts.promotion_code_find(remembered) if remembered else None), ""


@require_GET
def pricing(request):
    promo, promo_invalid = _promotion_code(request)
    interval = request.GET.get("interval", Interval.MONTH)
    if interval not in Interval.values:
        interval = Interval.MONTH
    seats = _seats(request, 5)
    offers = selectors.pricing_offers(interval, seats=seats)
    checkout_org = selectors.organization_to_bill(request.user)
    currencies = _offered_currencies()
    currency = _currency(request, currencies, checkout_org)
    for offer in offers:
        offer.currency = currency
    subscription = selectors.subscription_of(checkout_org) if checkout_org else None
    features = list(selectors.features_for_comparison())
    # The comparison table: one row per feature, one cell per offer.
    rows = []
    for feature in features:
        cells = []
        for offer in offers:
            ent = next((e for e in offer.plan.entitlements.all() if e.feature_id == feature.pk), None)
            cells.append(ent)
        rows.append((feature, cells))
    context = {
        "interval": interval,
        "offers": offers,
        "checkout_org": checkout_org,
        "subscription": subscription
        if subscription and subscription.stripe_subscription_id and subscription.applies
        else None,
        # The checkout's own rule: one trial ever per organization and customer, none once paid.
        "trial_eligible": checkout_org is None
        or subscriptions.trial_available(
            organization=checkout_org, customer_id=selectors.stripe_customer_id_of(checkout_org)
        ),
        "rows": rows,
        "addons": selectors.active_addons(currency),
        "seats": seats,
        "max_seats": MAX_SEATS,
        "promo": promo,
        "promo_invalid": promo_invalid,
        "use_tax": settings.USE_STRIPE_TAX,
        "currency": currency,
        "currencies": currencies,
        "currency_locked": bool(checkout_org and subscriptions.billing_currency(checkout_org)),
    }
    if request.htmx and request.htmx.target == "plans":
        return render(request, "billing/pricing.html#plans", context)
    return render(request, "billing/pricing.html", context)


@require_GET
def pricing_seats(request):
    """The per-seat total and its tier breakdown for a seat count (htmx, as you type)."""
    plan = (
        Plan.objects.public().filter(key=request.GET.get("plan", "")).prefetch_related("line_items").first()
    )
    if plan is None or plan.seat_item() is None:
        raise Http404("No per-seat plan by that name.")
    seats = _seats(request, 1)
    item: PlanLineItem = plan.seat_item()
    currency = request.GET.get("currency", "").lower()
    if currency not in plan.currencies:
        currency = plan.currency
    return render(
        request,
        "billing/partials/seat_total.html",
        {
            "plan": plan,
            "seats": seats,
            "breakdown": item.breakdown(seats, currency),
            "total": plan.total(seats=seats, currency=currency),
            "seat_currency": currency,
        },
    )


# --- The organization's billing page and its actions ----------------------------------------


def _addons_from(request) -> dict:
    """`addon_<key>=<quantity>` fields from the plan picker."""
    chosen = {}
    for addon in selectors.active_addons():
        raw = request.POST.get(f"addon_{addon.key}", "").strip()
        if raw and raw != "0":
            try:
                chosen[addon] = int(raw)
            except ValueError:
                raise ServiceError(
                    "invalid_quantity", f"{addon.name}: a whole number, please.", field="addons"
                ) from None
    return chosen


def _billing_context(organization, membership) -> dict:
    subscription = selectors.subscription_of(organization)
    subscribed = bool(subscription and subscription.applies and subscription.stripe_subscription_id)
    currency = subscriptions.billing_currency(organization)  # add-ons are shown and sold in it
    return {
        "organization": organization,
        "membership": membership,
        "subscription": subscription,
        "discounts": discounts.live_discounts(organization),
        "price_moves": price_moves_of(subscription),
        "use_tax": settings.USE_STRIPE_TAX,
        "profile": BillingProfile.objects.filter(organization=organization).first(),
        "countries": billing_details.COUNTRIES,
        "access": subscription.access if subscription else Access.FREE,
        "plan": subscription.plan
        if subscription and subscription.applies
        else Plan.objects.filter(is_free=True).first(),
        "usage": entitlements.entitlements_for(organization),
        "seats_used": seats.billable_seats(organization),
        "payments": selectors.payments_of(organization)[:24],
        "money_back_until": subscriptions.money_back_deadline(subscription),
        "plans": Plan.objects.public()
        .filter(is_free=False)
        .select_related("product")
        .prefetch_related("line_items"),
        "addons": selectors.active_addons(currency),
        "addons_offered": subscriptions.addons_for(
            organization=organization, subscription=subscription, currency=currency
        ),
        "addon_purchases": subscriptions.addon_purchases_active(organization=organization)
        if subscribed
        else [],
        "prepaid_seats": subscription.seats
        if subscribed and subscription.plan.seat_mode == SeatMode.PREPAID and subscription.plan.seats_prepaid
        else None,
        "money_back_days": settings.BILLING_MONEY_BACK_DAYS,
        "last_checkout": selectors.plan_checkout_unfinished(organization, subscription=subscription),
    }


@login_required
@require_GET
def billing(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    context = _billing_context(organization, membership)
    # A refusal's offer links here with the quantity it needs, beside the add-on's buy button.
    quantity = request.GET.get("quantity", "")
    context["offered_quantity"] = int(quantity) if quantity.isdigit() and len(quantity) < 5 else 1
    if request.GET.get("checkout") == "cancelled":
        messages.info(request, "Checkout cancelled: nothing was charged.")
    return render(request, "billing/billing.html", context)


@login_required
@require_GET
def invoices(request, org_slug: str):
    """Every invoice with its lines and documents (the hosted page, the PDF)."""
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    context = {"organization": organization, "invoices": selectors.invoices_of(organization)}
    return render(request, "billing/invoices.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def notices(request, org_slug: str):
    """Which billing emails the requester receives from this organization; the critical ones
    (a failed payment, an authentication request, a dispute) are always sent."""
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    optional = notifications.notice_kinds_offered()
    if request.method == "POST":
        wanted = set(request.POST.getlist("notice"))
        notifications.notice_preferences_update(
            organization=organization,
            user=request.user,
            muted=[kind.value for kind in optional if kind.value not in wanted],
        )
        messages.success(request, "Email settings saved.")
        return redirect("billing_notices", organization.slug)
    muted = notifications.notice_muted(organization=organization, user=request.user)
    context = {
        "organization": organization,
        "optional": [(kind.value, kind.label, kind.value not in muted) for kind in optional],
        "critical": [kind.label for kind in notifications.notice_kinds_always()],
    }
    return render(request, "billing/notices.html", context)


@login_required
@require_GET
def billing_upcoming(request, org_slug: str):
    """The upcoming invoice, loaded after the page (it asks Stripe)."""
    organization, _ = get_org_for_user(request, org_slug)
    subscription = selectors.subscription_of(organization)
    try:
        upcoming = subscriptions.upcoming_invoice(organization=organization)
    except stripe.StripeError:
        upcoming, failed = None, True
    else:
        failed = False
    return render(
        request,
        "billing/billing.html#upcoming",
        {
            "organization": organization,
            "subscription": subscription,
            "upcoming": upcoming,
            "failed": failed,
            "loaded": True,
        },
    )


@login_required
@require_POST
def checkout(request, org_slug: str):
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    plan = Plan.objects.public().filter(key=request.POST.get("plan", "")).first()

    def start() -> str:
        if plan is None:
            raise ServiceError("unknown_plan", "Choose one of the listed plans.", field="plan")
        promo, _ = _promotion_code(request)
        url = subscriptions.checkout_start(
            organization=organization,
            plan=plan,
            actor=request.user,
            addons=_addons_from(request),
            promotion_code=promo,
            currency=request.POST.get("currency") or None,
        )
        request.session.pop(PROMO_SESSION_KEY, None)  # used once
        return url

    return checkout_redirect(request, start, back=reverse("billing", args=[organization.slug]))


@login_required
@require_GET
def checkout_success(request, org_slug: str):
    """Stripe sends the person here, possibly before its webhook reaches us: until the
    subscription is active, the page says "activating" and polls."""
    organization, membership = get_org_for_user(request, org_slug)
    session_id = request.GET.get("session_id", "")
    if not CHECKOUT_SESSION_ID.fullmatch(session_id):
        # Opened by hand or from a mangled link: there is no checkout to look up at Stripe.
        context = {"organization": organization, "membership": membership, "missing": True}
        return render(request, "billing/success.html", context, status=400)
    try:
        state = subscriptions.checkout_session_state(organization=organization, session_id=session_id)
    except (ServiceError, stripe.InvalidRequestError):
        raise Http404("No such checkout.") from None
    context = {
        "organization": organization,
        "membership": membership,
        "state": state,
        "session_id": session_id,
        "usage": entitlements.entitlements_for(organization) if state["active"] else [],
    }
    if request.htmx:
        return render(request, "billing/success.html#status", context)
    return render(request, "billing/success.html", context)


@login_required
@require_http_methods(["GET", "POST"])
def change_plan(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    plan = (
        Plan.objects.public()
        .filter(key=request.GET.get("plan") or request.POST.get("plan", ""))
        .select_related("product")
        .first()
    )
    if plan is None:
        raise Http404("No such plan.")
    data = request.POST if request.method == "POST" else request.GET
    seats, seat_error = data.get("seats"), None
    try:
        current = selectors.subscription_of(organization)
        withdraw = bool(current and current.plan_id == plan.pk and current.pending_plan_id)
        try:
            subscriptions.change_seats(organization, plan, seats)
        except ServiceError as error:
            # Shown beside the stepper; the preview stays at the seats the change would bill.
            seats, seat_error = None, error.message
        if request.method == "POST" and seat_error is None:
            subscriptions.subscription_change(
                organization=organization, plan=plan, actor=request.user, seats=seats
            )
            if withdraw:
                message = (
                    f"{organization.name} stays on {plan.name}; the change at the period's end is withdrawn."
                )
            elif selectors.subscription_of(organization).plan_id == plan.pk:
                message = f"Your plan is now {plan.name}."
            else:
                message = f"You will move to {plan.name} when this period ends."
            messages.success(request, message)
            return redirect("billing", organization.slug)
        preview = subscriptions.subscription_change_preview(organization=organization, plan=plan, seats=seats)
    except ServiceError as error:
        messages.error(request, error.message)
        return redirect("billing", organization.slug)
    except stripe.StripeError:
        # After the SDK's own retries; a change Stripe made after all arrives by its webhook.
        messages.error(request, "Stripe did not answer, so the plan was not changed; please try again.")
        return redirect("billing", organization.slug)
    chosen = subscriptions.change_seats(organization, plan, seats)
    currency = preview.currency if preview.currency in plan.currencies else plan.currency
    context = {
        "organization": organization,
        "membership": membership,
        "plan": plan,
        "preview": preview,
        "subscription": selectors.subscription_of(organization),
        "withdraw": withdraw,
        "stepper": plan.seats_prepaid and not withdraw,
        "seats": data.get("seats") if seat_error else chosen,
        "seat_error": seat_error,
        "billed_seats": chosen,
        "seat_currency": currency,
        "seat_total": plan.total(seats=chosen, currency=currency),
        "seat_breakdown": plan.seat_item().breakdown(chosen, currency) if plan.seat_item() else None,
        "min_seats": subscriptions.change_seats(organization, plan, None),
        "max_seats": MAX_SEATS,
    }
    if request.htmx:
        # htmx swaps only a 2xx answer; the error is in the fragment.
        return render(request, "billing/change.html#price", context)
    return render(request, "billing/change.html", context, status=400 if seat_error else 200)


def _simple_action(request, org_slug: str, action, success: str, *, min_role=Role.BILLING):
    organization, _ = get_org_for_user(request, org_slug, min_role=min_role)
    try:
        done = action(organization=organization, actor=request.user)
    except ServiceError as error:
        messages.error(request, error.message)
    except stripe.StripeError:
        # Each step is idempotent at Stripe, so trying again finishes what this attempt began.
        messages.error(request, "Stripe did not answer, so this is not done yet; please try again.")
    else:
        messages.success(request, success(done) if callable(success) else success)
    return redirect("billing", organization.slug)


@login_required
@require_POST
def cancel(request, org_slug: str):
    return _simple_action(
        request,
        org_slug,
        subscriptions.subscription_cancel,
        "Your subscription will end with the current period.",
    )


@login_required
@require_POST
def resume(request, org_slug: str):
    return _simple_action(
        request, org_slug, subscriptions.subscription_resume, "Your subscription continues as before."
    )


@login_required
@require_POST
def refund(request, org_slug: str):
    return _simple_action(
        request,
        org_slug,
        subscriptions.subscription_refund_and_cancel,
        lambda refunded: (
            "Subscription cancelled and its first payment refunded in full."
            if refunded is not None
            else "Subscription cancelled; it had no payment left to refund."
        ),
        min_role=Role.OWNER,
    )


@login_required
@require_POST
def details(request, org_slug: str):
    """The billing address and VAT number, saved on the Stripe customer (tax follows them)."""
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    fields = ("country", "business_name", "line1", "postal_code", "city", "state", "vat_number")
    try:
        billing_details.billing_details_update(
            organization=organization,
            actor=request.user,
            **{name: request.POST.get(name, "")[:200] for name in fields},
        )
    except ServiceError as error:
        messages.error(request, error.message)
    except stripe.StripeError:
        messages.error(request, "Stripe did not answer; nothing changed. Try again.")
    else:
        messages.success(request, "Billing details saved.")
    return redirect("billing", organization.slug)


@login_required
@require_POST
def portal(request, org_slug: str):
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    try:
        url = subscriptions.portal_url(organization=organization)
    except stripe.StripeError:
        messages.error(request, "Stripe's customer portal is unavailable; please try again.")
        return redirect("billing", organization.slug)
    return redirect(url)
