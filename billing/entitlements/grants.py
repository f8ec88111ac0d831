"""Entitlements given by hand or by a subscription outside Stripe: set a plan, grant or end an add-
on or a feature."""

from datetime import datetime

from django.db import transaction
from django.utils import timezone

from billing import entitlements
from billing.models import EntitlementGrant, Feature, OrgSubscription, Plan
from common.errors import ServiceError
from teams.models import Organization, User
from teams.services import audit_record


def subscription_set(
    *,
    organization: Organization,
    plan: Plan,
    status: str,
    seats: int = 1,
    billing_cycle_anchor: datetime | None = None,
    current_period_start: datetime | None = None,
    current_period_end: datetime | None = None,
    cancel_at_period_end: bool = False,
    stripe_subscription_id: str | None = None,
    actor: User | None = None,
) -> OrgSubscription:
    """Record what an organization is subscribed to (webhooks, staff, the demo)."""
    now = timezone.now()
    with transaction.atomic():
        subscription, created = OrgSubscription.objects.update_or_create(
            organization=organization,
            defaults={
                "plan": plan,
                "status": status,
                "seats": seats,
                "billing_cycle_anchor": billing_cycle_anchor or now,
                "current_period_start": current_period_start or billing_cycle_anchor or now,
                "current_period_end": current_period_end,
                "cancel_at_period_end": cancel_at_period_end,
                "stripe_subscription_id": stripe_subscription_id,
                "updated_at": now,
            },
        )
        audit_record(
            organization=organization,
            action="subscription.created" if created else "subscription.updated",
            actor=actor,
            target=plan.key,
            data={"status": status, "seats": seats},
        )
        transaction.on_commit(lambda: entitlements.invalidate(organization))
    return subscription


def grant_create(
    *,
    organizations: list[Organization],
    feature: str,
    source: str,
    amount: int = 0,
    unlimited: bool = False,
    reason: str = "",
    starts_at: datetime | None = None,
    expires_at: datetime | None = None,
    reference: str = "",
    actor: User | None = None,
) -> EntitlementGrant:
    """Give organizations more of a feature (or unlimited), outside their plan."""
    feature_obj = Feature.objects.filter(key=feature).first()
    if feature_obj is None:
        raise ServiceError("unknown_feature", f"No feature {feature!r} in the catalog.", field="feature")
    if source not in EntitlementGrant.Source.values:
        raise ServiceError("invalid_source", f"Unknown grant source {source!r}.", field="source")
    if amount < 0:
        raise ServiceError("invalid_amount", "A grant adds a positive amount.", field="amount")
    if not unlimited and amount == 0 and feature_obj.kind != Feature.Kind.BOOLEAN:
        raise ServiceError("invalid_amount", "Grant an amount, or unlimited.", field="amount")
    if expires_at and expires_at <= (starts_at or timezone.now()):
        raise ServiceError("invalid_expiry", "The grant would expire before it starts.", field="expires_at")
    with transaction.atomic():
        grant = EntitlementGrant.objects.create(
            feature=feature_obj,
            source=source,
            amount=amount,
            unlimited=unlimited,
            reason=reason,
            starts_at=starts_at or timezone.now(),
            expires_at=expires_at,
            reference=reference,
        )
        grant.organizations.set(organizations)
        for organization in organizations:
            audit_record(
                organization=organization,
                action="entitlement.granted",
                actor=actor,
                target=feature,
                data={
                    "source": source,
                    "amount": amount,
                    "unlimited": unlimited,
                    "expires_at": expires_at.isoformat() if expires_at else None,
                },
            )
        org_ids = [o.pk for o in organizations]
        transaction.on_commit(lambda: [entitlements.invalidate(pk) for pk in org_ids])
    return grant


def grant_end(*, grant: EntitlementGrant, actor: User | None = None) -> None:
    """End a grant now. Grants are history, so they are expired rather than deleted."""
    now = timezone.now()
    with transaction.atomic():
        EntitlementGrant.objects.filter(pk=grant.pk).update(expires_at=now)
        org_ids = list(grant.organizations.values_list("pk", flat=True))
        for organization in grant.organizations.all():
            audit_record(
                organization=organization,
                action="entitlement.grant_ended",
                actor=actor,
                target=grant.feature.key,
                data={"grant": grant.pk},
            )
        transaction.on_commit(lambda: [entitlements.invalidate(pk) for pk in org_ids])
