from django.utils import timezone

from billing import entitlements, selectors
from billing.models import Access, SubscriptionStatus
from teams.models import Membership


def billing_alert(request):
    """On every page of an organization, for its members only: a failed payment (or one the bank
    asks the cardholder to authenticate, with the link to do it), and metered quotas running low."""
    user = getattr(request, "user", None)
    match = getattr(request, "resolver_match", None)
    slug = match.kwargs.get("org_slug") if match else None
    if not slug or user is None or not user.is_authenticated:
        return {}
    membership = (
        Membership.objects.filter(organization__slug=slug, user=user)
        .select_related("organization", "organization__subscription")
        .first()
    )
    if membership is None:
        return {}
    organization = membership.organization
    context = {"low_quotas": entitlements.low_quotas(organization)}
    subscription = getattr(organization, "subscription", None)
    if subscription and subscription.applies and subscription.dispute_grace_until:
        context["billing_alert"] = {
            "organization": organization,
            "restricted": subscription.access_at(timezone.now()) == Access.RESTRICTED,
            "grace_until": subscription.dispute_grace_until,
            "disputed": True,
        }
    elif subscription and subscription.status == SubscriptionStatus.PAST_DUE:
        waiting = selectors.payment_awaiting_authentication(organization)
        context["billing_alert"] = {
            "organization": organization,
            "restricted": subscription.access_at(timezone.now()) == Access.RESTRICTED,
            "grace_until": subscription.grace_until,
            "authenticate_url": waiting.hosted_invoice_url if waiting else "",
        }
    return context
