"""Granting what an add-on purchase bought: once, whichever webhook delivery or return from
Stripe gets here first."""

from datetime import datetime

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from billing.models import AddonPurchase, EntitlementGrant
from billing.subscriptions.remote import _invalidate_on_commit
from teams.services import audit_record


def addon_purchase_grant(*, purchase: AddonPurchase, **changes) -> bool:
    """Move a pending purchase to granted and add its entitlements, in one transaction.

    Only the call whose conditional update moves the row grants; a replay finds it granted and
    does nothing. The grants are also unique per (purchase, feature) in the database. Returns
    whether this call granted. `changes` are recorded with the move (e.g. the Stripe item id).
    """
    now = timezone.now()
    with transaction.atomic():
        moved = AddonPurchase.objects.filter(pk=purchase.pk, status=AddonPurchase.Status.PENDING).update(
            status=AddonPurchase.Status.GRANTED, granted_at=now, **changes
        )
        if not moved:
            return False
        purchase.refresh_from_db()
        addon = purchase.addon
        for ent in addon.entitlements.select_related("feature"):
            try:
                with transaction.atomic():
                    grant = EntitlementGrant.objects.create(
                        feature=ent.feature,
                        source=EntitlementGrant.Source.ADDON,
                        amount=ent.amount * purchase.quantity,
                        unlimited=ent.unlimited,
                        reason=f"{purchase.quantity} × {addon.name}",
                        reference=f"addon:{purchase.code}",
                        purchase=purchase,
                        starts_at=now,
                    )
            except IntegrityError:
                continue  # granted already
            grant.organizations.add(purchase.organization)
        audit_record(
            organization=purchase.organization,
            action="billing.addon_granted",
            actor=purchase.actor,
            target=addon.key,
            data={"quantity": purchase.quantity, "purchase": str(purchase.code)},
        )
        _invalidate_on_commit(purchase.organization)
    return True


def addon_purchase_end(*, purchase: AddonPurchase, status: str, failure_message: str = "") -> bool:
    """A pending purchase that will not be paid (checkout expired, payment refused)."""
    return bool(
        AddonPurchase.objects.filter(pk=purchase.pk, status=AddonPurchase.Status.PENDING).update(
            status=status, failure_message=failure_message[:500]
        )
    )


def addon_grants_end(*, purchase: AddonPurchase, at: datetime) -> None:
    """What a recurring add-on granted lasts until `at` (the end of the period paid for)."""
    with transaction.atomic():
        EntitlementGrant.objects.filter(purchase=purchase).update(expires_at=at)
        _invalidate_on_commit(purchase.organization)


# What the payment of a one-time add-on became. Nothing is granted that was not paid for: a
# refund of the whole charge ends the grants, an open dispute holds them (they count for nothing
# until it closes), a won dispute gives them back and a lost one ends them for good. A partial
# refund keeps them: a pack cannot be split, so giving part of the money back is a gesture on the
# price, not a return of the pack. Ended purchases never come back.
_MOVES = {
    # wanted state: (the states it moves from, the audit action)
    AddonPurchase.Status.REFUNDED: (
        [AddonPurchase.Status.GRANTED, AddonPurchase.Status.DISPUTED],
        "billing.addon_refunded",
    ),
    AddonPurchase.Status.CHARGED_BACK: (
        [AddonPurchase.Status.GRANTED, AddonPurchase.Status.DISPUTED],
        "billing.addon_dispute_lost",
    ),
    AddonPurchase.Status.DISPUTED: ([AddonPurchase.Status.GRANTED], "billing.addon_dispute_opened"),
    AddonPurchase.Status.GRANTED: ([AddonPurchase.Status.DISPUTED], "billing.addon_dispute_won"),
}

DISPUTE_OPEN = {"warning_needs_response", "warning_under_review", "needs_response", "under_review"}
DISPUTE_WON = {"won", "warning_closed"}


def addon_payment_state(*, amount: int, amount_refunded: int, dispute_status: str | None) -> str | None:
    """What a one-time add-on's purchase should be, from its charge and its latest dispute as
    Stripe says them now (None: nothing to change)."""
    if amount > 0 and amount_refunded >= amount:
        return AddonPurchase.Status.REFUNDED
    if dispute_status == "lost":
        return AddonPurchase.Status.CHARGED_BACK
    if dispute_status in DISPUTE_OPEN:
        return AddonPurchase.Status.DISPUTED
    if dispute_status in DISPUTE_WON:
        return AddonPurchase.Status.GRANTED
    return None


def addon_purchase_payment_apply(*, purchase: AddonPurchase, wanted: str | None, context: dict) -> bool:
    """Move a granted one-time purchase to `wanted`, and its grants with it: held or ended at
    once (`expires_at` now), or given back (no end: a one-time add-on lasts). Only the call whose
    conditional update moves the row acts and audits, so a replayed event changes nothing."""
    if wanted is None:
        return False
    sources, action = _MOVES[wanted]
    now = timezone.now()
    with transaction.atomic():
        moved = AddonPurchase.objects.filter(pk=purchase.pk, status__in=sources).update(
            status=wanted, ends_at=None if wanted == AddonPurchase.Status.GRANTED else now
        )
        if not moved:
            return False
        grants = EntitlementGrant.objects.filter(purchase=purchase)
        if wanted == AddonPurchase.Status.GRANTED:
            grants.update(expires_at=None)
        else:
            grants.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now)).update(expires_at=now)
        audit_record(
            organization=purchase.organization,
            action=action,
            target=purchase.addon.key,
            data={"purchase": str(purchase.code), **context},
        )
        _invalidate_on_commit(purchase.organization)
    return True
