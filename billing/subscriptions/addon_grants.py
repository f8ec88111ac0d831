"""Granting what an add-on purchase bought: once, whichever webhook delivery or return from
Stripe gets here first."""

from datetime import datetime

from django.db import IntegrityError, transaction
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
