from django.conf import settings
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.http import Http404
from django.shortcuts import redirect, render
from django.urls import reverse
from django.views.decorators.http import require_GET, require_http_methods, require_POST

from billing import subscriptions
from common import formatting
from common.checkout import checkout_redirect
from common.csv_export import csv_response, safe_cell
from common.errors import ServiceError
from credits import selectors, services
from credits.forms import CreditSettingsForm, HistoryFilterForm, recharge_currency
from credits.models import PurchaseStatus
from teams.access import client_ip, get_org_for_user
from teams.models import Role

HISTORY_PAGE = 25


def _settings_form(account) -> CreditSettingsForm:
    return CreditSettingsForm(
        initial={
            "low_balance_threshold": account.low_balance_percent or account.low_balance_threshold,
            "low_balance_unit": "percent" if account.low_balance_percent else "credits",
            "auto_recharge_enabled": account.auto_recharge_enabled,
            "auto_recharge_threshold": account.auto_recharge_threshold,
            "auto_recharge_package": account.auto_recharge_package_id,
            "auto_recharge_monthly_limit": formatting.to_major(
                account.auto_recharge_monthly_limit, recharge_currency(account.auto_recharge_package)
            ),
        }
    )


def _page_context(request, organization, membership, account, *, settings_form=None) -> dict:
    filters = HistoryFilterForm(request.GET or None)
    rows = selectors.transactions_of(account, **filters.filters())
    page, next_cursor = selectors.page_after(rows, cursor=request.GET.get("cursor", ""), limit=HISTORY_PAGE)
    usage = selectors.usage_overview(account)
    return {
        "organization": organization,
        "membership": membership,
        "account": account,
        "runway": usage.runway,
        "packages": selectors.active_packages(),
        "prices": selectors.current_prices(),
        "by_day": usage.by_day,
        "by_action": usage.by_action,
        "holds": selectors.open_reservations_of(account).count(),
        "filters": filters,
        "transactions": page,
        "next_cursor": next_cursor,
        "settings_form": settings_form or _settings_form(account),
        "recharge_waiting": selectors.recharge_awaiting_authentication(account),
    }


@login_required
@require_GET
def credits_page(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug)
    account = services.credit_account_for(organization=organization)
    context = _page_context(request, organization, membership, account)
    # Stripe sends the buyer back, possibly before its webhook has granted the credits: the
    # balance then polls until the purchase is granted, and tells the navigation when it is.
    context["purchase"] = request.GET.get("purchase", "")
    context["bought"] = selectors.purchase_to_show(account, code=request.GET.get("code", ""))
    bought = context["bought"]
    context["awaited"] = bought if bought and bought.status == PurchaseStatus.PENDING else None
    if request.htmx and request.htmx.target == "history":
        return render(request, "credits/credits.html#history", context)
    if request.htmx and request.htmx.target == "balance":
        response = render(request, "credits/credits.html#balance", context)
        if context["awaited"] is None:
            response["HX-Trigger"] = "credits-changed"
        return response
    return render(request, "credits/credits.html", context)


@login_required
@require_GET
def credits_purchase(request, org_slug: str, code: str):
    """One purchase's outcome, polled by the credits page until it is settled."""
    organization, membership = get_org_for_user(request, org_slug)
    account = services.credit_account_for(organization=organization)
    bought = selectors.purchase_to_show(account, code=str(code))
    if bought is None:
        raise Http404("No such purchase.")
    return render(
        request,
        "credits/partials/purchase_outcome.html",
        {"organization": organization, "membership": membership, "bought": bought},
    )


@login_required
@require_http_methods(["GET", "POST"])
def credits_recharge(request, org_slug: str, code: str):
    """One auto-recharge, where its payment is confirmed when the bank asked for the cardholder:
    POST sends them to the bank's step, which returns here (GET with `payment_intent`)."""
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    account = services.credit_account_for(organization=organization)
    recharge = selectors.recharge_of(account, code=str(code))
    if recharge is None:
        raise Http404("No such recharge.")
    here = reverse("credits_recharge", args=[organization.slug, recharge.code])
    if request.method == "POST":
        return_url = settings.SITE_URL + here

        def start() -> str:
            return services.credit_recharge_confirm_start(recharge=recharge, return_url=return_url) or here

        return checkout_redirect(request, start, back=here)
    outcome = ""
    if request.GET.get("payment_intent"):  # back from the bank: Stripe says how it went
        recharge = services.credit_recharge_confirm_check(recharge=recharge)
        outcome = "confirmed" if recharge.transaction_id else "failed"
    return render(
        request,
        "credits/recharge.html",
        {
            "organization": organization,
            "membership": membership,
            "recharge": recharge,
            "outcome": outcome,
        },
    )


@login_required
@require_http_methods(["GET", "POST"])
def credits_card(request, org_slug: str):
    """Save a card for auto-recharge: POST goes to Stripe Checkout (setup mode), where the bank
    may ask to authenticate the card; Stripe comes back here, and the card is saved only if
    Stripe says its setup succeeded."""
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    here = reverse("credits_card", args=[organization.slug])
    if request.method == "POST":
        account = services.credit_account_for(organization=organization)

        def start() -> str:
            return subscriptions.card_setup_start(
                organization=organization,
                currency=recharge_currency(account.auto_recharge_package),
                success_url=settings.SITE_URL + here + "?session_id={CHECKOUT_SESSION_ID}",
                cancel_url=settings.SITE_URL + here + "?canceled=1",
            )

        return checkout_redirect(request, start, back=reverse("credits", args=[organization.slug]))
    if request.GET.get("session_id"):
        outcome = subscriptions.card_setup_settle(
            session_id=request.GET["session_id"], organization=organization
        )
    else:  # came back without saving: say why, if the bank refused the card
        outcome = subscriptions.CardSetup(
            saved=False, failure_message=subscriptions.card_setup_last_failure(organization=organization)
        )
    return render(
        request,
        "credits/card.html",
        {"organization": organization, "membership": membership, "outcome": outcome},
    )


@login_required
@require_GET
def credits_widget(request, org_slug: str):
    """The balance in the navigation bar, refreshed by htmx (with the low-balance banner)."""
    organization, _ = get_org_for_user(request, org_slug)
    account = services.credit_account_for(organization=organization)
    return render(request, "credits/widget.html", {"organization": organization, "account": account})


@login_required
@require_POST
def credits_settings(request, org_slug: str):
    organization, membership = get_org_for_user(request, org_slug, min_role=Role.BILLING)
    form = CreditSettingsForm(request.POST)
    if form.is_valid():
        try:
            services.credit_account_update(
                organization=organization,
                actor=request.user,
                ip_address=client_ip(request),
                **form.cleaned_data,
            )
        except ServiceError as error:
            form.add_error(error.field, error.message)
        else:
            messages.success(request, "Credit settings saved.")
            return redirect("credits", organization.slug)
    account = services.credit_account_for(organization=organization)
    context = _page_context(request, organization, membership, account, settings_form=form)
    return render(request, "credits/credits.html", context, status=400)


@login_required
@require_POST
def credits_buy(request, org_slug: str):
    """Buy a package: off to Stripe Checkout; the webhook grants the credits once it is paid."""
    organization, _ = get_org_for_user(request, org_slug, min_role=Role.BILLING)

    def start() -> str:
        package = services.credit_package_get(code=request.POST.get("package", ""))
        _, url = services.credit_purchase_start(
            organization=organization, package=package, actor=request.user
        )
        return url

    return checkout_redirect(request, start, back=reverse("credits", args=[organization.slug]))


@login_required
@require_GET
def credits_export(request, org_slug: str):
    """The history as CSV, with the page's filters, streamed so that long ledgers fit."""
    organization, _ = get_org_for_user(request, org_slug)
    account = services.credit_account_for(organization=organization)
    rows = selectors.transactions_of(account, **HistoryFilterForm(request.GET or None).filters())
    header = [
        "date",
        "type",
        "amount",
        "balance_after",
        "action",
        "quantity",
        "price_version",
        "description",
        "reference_type",
        "reference_id",
        "id",
    ]

    lines = (
        [
            t.created_at.isoformat(),
            t.type,
            t.amount,
            t.balance_after,
            safe_cell(t.action),
            t.quantity if t.quantity is not None else "",
            t.price.version if t.price else "",
            safe_cell(t.description),
            safe_cell(t.reference_type),
            safe_cell(t.reference_id),
            t.code,
        ]
        for t in rows.iterator(chunk_size=500)
    )
    return csv_response(f"{organization.slug}-credits.csv", header, lines)
