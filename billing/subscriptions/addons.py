"""Add-ons bought after subscribing, from the billing page.

A one-time add-on is paid through Checkout in payment mode and granted once the session is
paid (by its webhook or by the person's return, whichever comes first). A recurring add-on is
added to the Stripe subscription as an item, prorated for the rest of the period; the person
sees Stripe's own proration before confirming. Removing it takes effect at the period's end: it
leaves the subscription at once without a credit, so the next invoice no longer carries it, and
what it granted lasts until the end of the period already paid for.

Every purchase is written (pending) before Stripe is called, and the call carries its key.

Nothing is granted that was not paid for: a one-time add-on whose charge is refunded in full, or
whose dispute is lost, ends at once; while a dispute is open it is held, and a won dispute gives
it back. A partial refund keeps it (a pack is not split; part of the money back is a gesture on
the price).
"""

import uuid
from dataclasses import dataclass
from datetime import datetime

import stripe
from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Q
from django.urls import reverse
from django.utils import timezone

from billing import entitlements, selectors
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.gateway.payments import CheckoutResult, PaymentCheckoutOutcome, payment_checkout_register
from billing.models import Addon, AddonPurchase, Feature, OrgSubscription
from billing.subscriptions import periods
from billing.subscriptions.addon_grants import (
    addon_grants_end,
    addon_purchase_end,
    addon_purchase_grant,
)
from billing.subscriptions.addon_payments import _id, _payment_review
from billing.subscriptions.changes import Preview, _is_proration, preview_lines
from billing.subscriptions.checkout import billing_currency
from billing.subscriptions.sync import subscription_sync
from billing.webhooks.registry import on
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record

METADATA_KEY = "tally_addon_purchase"


def _current(organization: Organization) -> tuple[OrgSubscription | None, bool]:
    subscription = selectors.subscription_of(organization)
    subscribed = bool(subscription and subscription.applies and subscription.stripe_subscription_id)
    return subscription, subscribed


_UNREAD = object()


def addons_for(
    *, organization: Organization, subscription: OrgSubscription | None = None, currency=_UNREAD
) -> list[Addon]:
    """The add-ons the organization's current plan allows (`subscription`, `currency`: when the
    caller has read them already)."""
    if subscription is None:
        subscription, subscribed = _current(organization)
    else:
        subscribed = bool(subscription.applies and subscription.stripe_subscription_id)
    effective = entitlements.effective_for(organization)
    return selectors.addons_offered(
        unlimited={f.feature_id for f in effective.features.values() if _unlimited(f)},
        interval=effective.plan_interval,
        subscribed=subscribed,
        currency=billing_currency(organization) if currency is _UNREAD else currency,
    )


def _unlimited(feature) -> bool:
    return feature.enabled and (feature.kind == Feature.Kind.BOOLEAN or feature.unlimited)


def addon_find(*, organization: Organization, key: str) -> Addon:
    """An add-on the organization may buy, by key; a clear refusal otherwise."""
    addon = next((a for a in addons_for(organization=organization) if a.key == key), None)
    if addon is None:
        raise ServiceError("unknown_addon", "That add-on is not offered on your plan.", field="addon")
    return addon


def _priced(addon: Addon) -> None:
    if not addon.stripe_price_id:
        raise ServiceError(
            "catalog_not_synced",
            "This add-on is not in Stripe yet: run `manage.py catalog_sync`.",
            status=503,
        )


def addon_quantity(addon: Addon, raw) -> int:
    """A quantity typed by a person: a whole number from 1 to the add-on's `max_quantity`."""
    text = str(raw if raw is not None else "1").strip() or "1"
    if not text.isdigit() or len(text) > 6:
        raise ServiceError("invalid_quantity", "The quantity is a whole number.", field="quantity")
    quantity = int(text)
    if not 1 <= quantity <= addon.max_quantity:
        raise ServiceError(
            "invalid_quantity",
            f"Choose between 1 and {addon.max_quantity} of {addon.name}.",
            field="quantity",
        )
    return quantity


def addon_price_for(organization: Organization, addon: Addon) -> tuple[str, int]:
    """The currency the organization pays in (the add-on's own before its first payment) and the
    add-on's price in it. Stripe bills a customer, and every item of a subscription, in one
    currency, so an add-on not priced in it is refused here rather than by Stripe."""
    currency = billing_currency(organization) or addon.currency
    amount = addon.unit_amount_in(currency)
    if amount is None:
        raise ServiceError(
            "currency_unavailable", f"{addon.name} is not sold in {currency.upper()}.", field="addon"
        )
    return currency, amount


def _purchase_pending(organization: Organization, addon: Addon, quantity: int, actor: User | None):
    currency, amount = addon_price_for(organization, addon)
    return AddonPurchase.objects.create(
        organization=organization,
        addon=addon,
        quantity=quantity,
        unit_amount=amount,
        currency=currency,
        actor=actor,
    )


# --- One-time add-ons: Checkout in payment mode ---------------------------------------------


def addon_checkout_start(*, organization: Organization, addon: Addon, quantity: int, actor: User) -> str:
    """A Checkout Session in payment mode for `quantity` of a one-time add-on; returns its URL."""
    if addon.kind != Addon.Kind.ONE_TIME:
        raise ServiceError("addon_recurring", f"{addon.name} is added to the subscription.", field="addon")
    quantity = addon_quantity(addon, quantity)
    _priced(addon)
    purchase = _purchase_pending(organization, addon, quantity, actor)
    customer_id = customer_ensure(organization=organization)
    base = settings.SITE_URL + reverse("billing", args=[organization.slug])
    metadata = {
        METADATA_KEY: str(purchase.code),
        "tally_org_id": str(organization.pk),
        "tally_addon": addon.key,
    }
    params = {
        "mode": "payment",
        "customer": customer_id,
        "line_items": [{"price": addon.stripe_price_id, "quantity": quantity}],
        "client_reference_id": str(organization.pk),
        "success_url": base + f"addons/bought/{purchase.code}/",
        "cancel_url": base + "?checkout=cancelled",
        "metadata": metadata,
        "payment_intent_data": {"metadata": metadata, "description": addon.name},
    }
    if purchase.currency != addon.currency:
        params["currency"] = purchase.currency  # the price's currency_options in that currency
    session = stripe_client().v1.checkout.sessions.create(
        params, {"idempotency_key": purchase.idempotency_key}
    )
    AddonPurchase.objects.filter(pk=purchase.pk).update(stripe_checkout_session_id=session.id)
    audit_record(
        organization=organization,
        action="billing.addon_checkout_started",
        actor=actor,
        target=addon.key,
        data={"quantity": quantity, "session": session.id, "purchase": str(purchase.code)},
    )
    return session.url


def addon_checkout_settled(outcome: PaymentCheckoutOutcome) -> None:
    """How an add-on's payment checkout ended, as billing re-read it from Stripe."""
    code = outcome.metadata.get(METADATA_KEY)
    if not code:
        return  # another app's payment checkout
    try:
        code = uuid.UUID(code)
    except ValueError:
        return  # not one Tally wrote
    purchase = (
        AddonPurchase.objects.select_related("addon", "organization")
        .filter(code=code)
        .filter(Q(stripe_checkout_session_id=outcome.session_id) | Q(stripe_checkout_session_id__isnull=True))
        .first()
    )
    if purchase is None:
        return
    if outcome.result == CheckoutResult.PAID:
        if addon_purchase_grant(
            purchase=purchase,
            stripe_checkout_session_id=outcome.session_id,
            stripe_payment_intent_id=outcome.payment_intent_id or None,
        ):
            _payment_review(purchase)
    elif outcome.result == CheckoutResult.ABANDONED:
        addon_purchase_end(purchase=purchase, status=AddonPurchase.Status.ABANDONED)
    elif outcome.result == CheckoutResult.FAILED:
        addon_purchase_end(
            purchase=purchase, status=AddonPurchase.Status.FAILED, failure_message=outcome.failure_message
        )


def addon_checkout_return(*, organization: Organization, code: str) -> AddonPurchase:
    """The person is back from Checkout, perhaps before its webhook: read the session from
    Stripe and grant if it is paid (once, whoever is first)."""
    purchase = (
        AddonPurchase.objects.select_related("addon")
        .filter(organization=organization, code=code, stripe_checkout_session_id__isnull=False)
        .first()
    )
    if purchase is None:
        raise ServiceError("not_found", "No such purchase for this organization.", status=404)
    if purchase.status == AddonPurchase.Status.PENDING:
        session = stripe_client().v1.checkout.sessions.retrieve(purchase.stripe_checkout_session_id)
        paid = (session.metadata or {}).get(METADATA_KEY) == str(purchase.code) and (
            session.status == "complete" and session.payment_status == "paid"
        )
        if paid and addon_purchase_grant(
            purchase=purchase, stripe_payment_intent_id=_id(session.payment_intent) or None
        ):
            _payment_review(purchase)
        purchase.refresh_from_db()
    return purchase


payment_checkout_register(addon_checkout_settled)


# --- Recurring add-ons: an item of the subscription ------------------------------------------


@dataclass(frozen=True)
class AddonPreview:
    addon: Addon
    quantity: int
    prorated: int  # charged on the next invoice for the rest of this period
    recurring: int  # then, every period
    currency: str
    proration_date: int | None  # the moment Stripe prorated from; the change uses the same
    upcoming: Preview


def _subscription_for_addon(organization: Organization) -> OrgSubscription:
    subscription, subscribed = _current(organization)
    if not subscribed:
        raise ServiceError("no_subscription", "A recurring add-on needs an active subscription.", status=409)
    return subscription


def _recurring(addon: Addon) -> None:
    if addon.kind != Addon.Kind.RECURRING:
        raise ServiceError("addon_one_time", f"{addon.name} is bought once, through Checkout.", field="addon")


def addon_subscription_preview(*, organization: Organization, addon: Addon, quantity: int) -> AddonPreview:
    """Stripe's own invoice preview with the add-on on the subscription: the prorated amount
    for the rest of the period, and the next invoice."""
    _recurring(addon)
    quantity = addon_quantity(addon, quantity)
    _priced(addon)
    _, unit_amount = addon_price_for(organization, addon)
    subscription = _subscription_for_addon(organization)
    client = stripe_client()
    remote = client.v1.subscriptions.retrieve(subscription.stripe_subscription_id)
    invoice = client.v1.invoices.create_preview(
        {
            "customer": remote.customer,
            "subscription": remote.id,
            "subscription_details": {
                "items": [{"price": addon.stripe_price_id, "quantity": quantity}],
                "proration_behavior": "create_prorations",
            },
        }
    )
    lines = invoice.lines.data
    prorations = [li for li in lines if _is_proration(li)]
    proration_date = prorations[0].period.start if prorations else None
    return AddonPreview(
        addon=addon,
        quantity=quantity,
        prorated=sum(li.amount for li in prorations),
        recurring=unit_amount * quantity,
        currency=invoice.currency,
        proration_date=proration_date,
        upcoming=Preview(
            amount_due=invoice.amount_due,
            currency=invoice.currency,
            lines=preview_lines(lines),
            next_payment_at=subscription.current_period_end,
            immediate=False,
        ),
    )


def _proration_date(raw, subscription: OrgSubscription) -> int | None:
    """The proration moment the preview showed, when it is a time inside the current period."""
    text = str(raw or "").strip()
    if not text.isdigit() or len(text) > 12:
        return None
    moment = int(text)
    start, end = subscription.current_period_start, subscription.current_period_end
    if (start and moment < int(start.timestamp())) or (end and moment > int(end.timestamp())):
        return None
    return moment


def addon_subscription_add(
    *,
    organization: Organization,
    addon: Addon,
    quantity: int,
    actor: User,
    code: uuid.UUID,
    proration_date=None,
) -> AddonPurchase:
    """Add a recurring add-on to the subscription, prorated from the moment the preview showed
    (so the amount confirmed is the amount invoiced), and grant it while it stays.

    `code` comes with the confirmation form: the same form sent twice (a double click, a retry
    after Stripe did not answer) is one purchase and one Stripe call under one key.
    """
    _recurring(addon)
    quantity = addon_quantity(addon, quantity)
    _priced(addon)
    currency, unit_amount = addon_price_for(organization, addon)
    subscription = _subscription_for_addon(organization)
    try:
        with transaction.atomic():
            purchase, _ = AddonPurchase.objects.get_or_create(
                code=code,
                defaults={
                    "organization": organization,
                    "addon": addon,
                    "quantity": quantity,
                    "unit_amount": unit_amount,
                    "currency": currency,
                    "actor": actor,
                },
            )
    except IntegrityError:
        purchase = AddonPurchase.objects.get(code=code)
    if (purchase.organization_id, purchase.addon_id, purchase.quantity) != (
        organization.pk,
        addon.pk,
        quantity,
    ):
        raise ServiceError("invalid_request", "This confirmation belongs to another purchase.", field="code")
    if purchase.status != AddonPurchase.Status.PENDING:
        return purchase  # sent again: done already (or refused)
    params = {
        "subscription": subscription.stripe_subscription_id,
        "price": addon.stripe_price_id,
        "quantity": quantity,
        "proration_behavior": "create_prorations",
        "metadata": {METADATA_KEY: str(purchase.code), "tally_addon": addon.key},
    }
    moment = _proration_date(proration_date, subscription)
    if moment is not None:
        params["proration_date"] = moment
    try:
        item = stripe_client().v1.subscription_items.create(
            params, {"idempotency_key": purchase.idempotency_key}
        )
    except stripe.InvalidRequestError as error:
        addon_purchase_end(purchase=purchase, status=AddonPurchase.Status.FAILED, failure_message=str(error))
        raise ServiceError(
            "addon_refused", f"Stripe refused the add-on: {error.user_message or error}", field="addon"
        ) from None
    addon_purchase_grant(purchase=purchase, stripe_subscription_item_id=item.id)
    subscription_sync(subscription_id=subscription.stripe_subscription_id)
    purchase.refresh_from_db()
    return purchase


def addon_subscription_remove(*, organization: Organization, code: str, actor: User) -> AddonPurchase:
    """Take a recurring add-on off the subscription from the next invoice on: no credit for the
    period already paid, and its grants last until that period ends."""
    purchase = (
        AddonPurchase.objects.select_related("addon")
        .filter(
            organization=organization,
            code=code,
            addon__kind=Addon.Kind.RECURRING,
            status__in=[AddonPurchase.Status.GRANTED, AddonPurchase.Status.ENDING],
        )
        .first()
    )
    if purchase is None:
        raise ServiceError("not_found", "No such add-on on this subscription.", field="addon", status=404)
    subscription = _subscription_for_addon(organization)
    # Marked first, so that the webhook of the deletion finds it ending at the period's end
    # (not ended at once, as an item removed outside Tally would be).
    ends_at = subscription.current_period_end or timezone.now()
    with transaction.atomic():
        moved = AddonPurchase.objects.filter(pk=purchase.pk, status=AddonPurchase.Status.GRANTED).update(
            status=AddonPurchase.Status.ENDING, ends_at=ends_at
        )
        if moved:
            addon_grants_end(purchase=purchase, at=ends_at)
            audit_record(
                organization=organization,
                action="billing.addon_removed",
                actor=actor,
                target=purchase.addon.key,
                data={"purchase": str(purchase.code), "ends_at": ends_at.isoformat()},
            )
    try:
        # Sent again when a first attempt's answer was lost: Stripe says it is gone already.
        stripe_client().v1.subscription_items.delete(
            purchase.stripe_subscription_item_id,
            {"proration_behavior": "none"},
            {"idempotency_key": f"{purchase.idempotency_key}-remove"},
        )
    except stripe.InvalidRequestError as error:
        if error.code != "resource_missing":
            raise
    subscription_sync(subscription_id=subscription.stripe_subscription_id)
    purchase.refresh_from_db()
    return purchase


def addon_purchases_active(*, organization: Organization, at: datetime | None = None) -> list[AddonPurchase]:
    """The recurring add-ons on the subscription, and those ending with the period."""
    return list(
        AddonPurchase.objects.select_related("addon")
        .filter(
            organization=organization,
            addon__kind=Addon.Kind.RECURRING,
            status__in=[AddonPurchase.Status.GRANTED, AddonPurchase.Status.ENDING],
        )
        .exclude(ends_at__lte=at or timezone.now())
    )


@on("customer.subscription.updated")
def _subscription_updated(*, kind: str, object_id: str) -> None:
    """An add-on item removed outside Tally (staff in Stripe's dashboard): its grants end now."""
    granted = list(
        AddonPurchase.objects.filter(
            addon__kind=Addon.Kind.RECURRING,
            status=AddonPurchase.Status.GRANTED,
            organization__subscription__stripe_subscription_id=object_id,
        )
    )
    if not granted:
        return None
    remote = stripe_client().v1.subscriptions.retrieve(object_id)
    present = {item.id for item in remote["items"].data}
    now = timezone.now()
    for purchase in granted:
        if purchase.stripe_subscription_item_id in present:
            continue
        with transaction.atomic():
            if AddonPurchase.objects.filter(pk=purchase.pk, status=AddonPurchase.Status.GRANTED).update(
                status=AddonPurchase.Status.ENDING, ends_at=now
            ):
                addon_grants_end(purchase=purchase, at=now)
    return None


def _period_started(*, subscription: OrgSubscription) -> None:
    return None


def _subscription_ended(*, organization: Organization, subscription_id: str, reason: str) -> None:
    """The subscription ended at once: its items, the recurring add-ons, went with it."""
    now = timezone.now()
    ending = AddonPurchase.objects.filter(
        organization=organization, addon__kind=Addon.Kind.RECURRING, status=AddonPurchase.Status.GRANTED
    )
    for purchase in ending:
        with transaction.atomic():
            if AddonPurchase.objects.filter(pk=purchase.pk, status=AddonPurchase.Status.GRANTED).update(
                status=AddonPurchase.Status.ENDING, ends_at=now
            ):
                addon_grants_end(purchase=purchase, at=now)


periods.period_hooks_register(started=_period_started, ended=_subscription_ended)
