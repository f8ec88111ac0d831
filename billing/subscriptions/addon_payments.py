"""One-time add-ons: what becomes of a grant when its payment is refunded or disputed (the
rules are in `addon_grants`)."""

from billing.gateway.client import stripe_client
from billing.models import Addon, AddonPurchase
from billing.subscriptions.addon_grants import (
    addon_payment_state,
    addon_purchase_payment_apply,
)
from billing.webhooks.registry import on

METADATA_KEY = "tally_addon_purchase"


def _id(value) -> str:
    return value if isinstance(value, str) else getattr(value, "id", "") or ""


def _paid_by(payment_intent_id: str) -> AddonPurchase | None:
    if not payment_intent_id:
        return None
    return (
        AddonPurchase.objects.select_related("addon", "organization")
        .filter(
            stripe_payment_intent_id=payment_intent_id,
            addon__kind=Addon.Kind.ONE_TIME,
            status__in=[AddonPurchase.Status.GRANTED, AddonPurchase.Status.DISPUTED],
        )
        .first()
    )


def _payment_review(purchase: AddonPurchase) -> None:
    """Just granted: a refund or a dispute heard before the grant found nothing to take back,
    so read what became of the payment from Stripe now."""
    purchase.refresh_from_db()
    intent = purchase.stripe_payment_intent_id
    if not intent:
        return
    client = stripe_client()
    charges = [c for c in client.v1.charges.list({"payment_intent": intent}).data if c.paid]
    disputes = sorted(client.v1.disputes.list({"payment_intent": intent}).data, key=lambda d: d.created)
    wanted = addon_payment_state(
        amount=sum(c.amount for c in charges),
        amount_refunded=sum(c.amount_refunded for c in charges),
        dispute_status=disputes[-1].status if disputes else None,
    )
    # A dispute already lost is held first, so that every end passes through one move.
    if wanted == AddonPurchase.Status.CHARGED_BACK:
        addon_purchase_payment_apply(purchase=purchase, wanted=AddonPurchase.Status.DISPUTED, context={})
    context = {"dispute": disputes[-1].id} if disputes else {}
    addon_purchase_payment_apply(purchase=purchase, wanted=wanted, context=context)


@on("charge.refunded", reread=True)
def _charge_refunded(*, kind: str, obj) -> None:
    """Refunded in full (by Tally or from Stripe's dashboard): the add-on it paid for ends."""
    purchase = _paid_by(_id(obj.payment_intent))
    if purchase is None:
        return
    wanted = addon_payment_state(amount=obj.amount, amount_refunded=obj.amount_refunded, dispute_status=None)
    addon_purchase_payment_apply(
        purchase=purchase, wanted=wanted, context={"charge": obj.id, "amount_refunded": obj.amount_refunded}
    )


@on("charge.dispute", reread=True)
def _charge_disputed(*, kind: str, obj) -> None:
    """Held while the dispute is open, given back if won, ended if lost (re-read from Stripe, so
    any order of `charge.dispute.*` events ends the same)."""
    charge = obj.charge
    purchase = _paid_by(_id(obj.payment_intent) or _id(getattr(charge, "payment_intent", None)))
    if purchase is None:
        return
    expanded = not isinstance(charge, str)  # billing re-reads the dispute with its charge
    wanted = addon_payment_state(
        amount=charge.amount if expanded else 0,
        amount_refunded=charge.amount_refunded if expanded else 0,
        dispute_status=obj.status,
    )
    if wanted == AddonPurchase.Status.CHARGED_BACK:
        addon_purchase_payment_apply(purchase=purchase, wanted=AddonPurchase.Status.DISPUTED, context={})
    addon_purchase_payment_apply(purchase=purchase, wanted=wanted, context={"dispute": obj.id})
