"""Connect dj-stripe to Stripe (or the simulator): the account behind the API key, and the webhook
endpoint that Stripe delivers Tally's events to.

dj-stripe 2.11 only receives webhooks at `/stripe/webhook/<djstripe_uuid>/`, verified with the
secret of a `WebhookEndpoint` row; the secret is shown once, by the API call that creates the
endpoint. So the endpoint is created here, through the API, and recorded with its secret in the
same step. Stripe's endpoint carries the uuid in its metadata, which is how it is found again.
"""

import uuid

import stripe
from django.conf import settings
from django.urls import reverse
from djstripe.models import Account, WebhookEndpoint
from djstripe.settings import djstripe_settings

from billing.gateway.client import stripe_client

# Every event: dj-stripe mirrors them all, and Tally's receivers pick what they need.
WEBHOOK_EVENTS = ["*"]


def _api_key() -> str:
    return djstripe_settings.get_default_api_key(livemode=settings.STRIPE_LIVE_MODE)


def webhook_url(*, site_url: str, djstripe_uuid: uuid.UUID | str) -> str:
    path = reverse("djstripe:djstripe_webhook_by_uuid", kwargs={"uuid": djstripe_uuid})
    return site_url.rstrip("/") + path


def _is_ours(endpoint: stripe.WebhookEndpoint, site_url: str) -> bool:
    djstripe_uuid = (endpoint.get("metadata") or {}).get("djstripe_uuid")
    if not djstripe_uuid:
        return False
    try:
        return endpoint.url == webhook_url(site_url=site_url, djstripe_uuid=uuid.UUID(djstripe_uuid))
    except ValueError:
        return False


def stripe_account_ensure() -> Account | None:
    """Record the API key and the account it belongs to (dj-stripe files every synced object under
    it). None for a restricted key, which may not read its own account."""
    return Account.get_or_retrieve_for_api_key(_api_key())


def stripe_webhook_endpoint_ensure(*, site_url: str) -> WebhookEndpoint:
    """Make sure Stripe delivers every event to this site's dj-stripe endpoint, and that dj-stripe
    holds the endpoint's signing secret. Safe to run on every deploy.

    An endpoint for this site that dj-stripe has no secret for can never be verified; it is
    deleted and replaced, as are duplicates. Local rows whose endpoint is gone from Stripe (a
    simulator started afresh) are removed.
    """
    api_key = _api_key()
    stripe_account_ensure()
    client = stripe_client()
    ours = [
        e
        for e in client.v1.webhook_endpoints.list({"limit": 100}).auto_paging_iter()
        if _is_ours(e, site_url)
    ]
    with_secret = WebhookEndpoint.objects.filter(id__in=[e.id for e in ours]).exclude(secret="")
    known = set(with_secret.values_list("id", flat=True))
    keep = next((e for e in ours if e.id in known), None)  # Stripe lists newest first
    for endpoint in ours:
        if endpoint is not keep:
            client.v1.webhook_endpoints.delete(endpoint.id)
    stale = [
        w.pk
        for w in WebhookEndpoint.objects.all()
        if (keep is None or w.id != keep.id)
        and w.url == webhook_url(site_url=site_url, djstripe_uuid=w.djstripe_uuid)
    ]
    WebhookEndpoint.objects.filter(pk__in=stale).delete()

    if keep is not None:
        # Stripe disables an endpoint that has failed for days; the site is back, so turn it on.
        if keep.status != "enabled" or keep.enabled_events != WEBHOOK_EVENTS:
            keep = client.v1.webhook_endpoints.update(
                keep.id, {"disabled": False, "enabled_events": WEBHOOK_EVENTS}
            )
        # The secret is absent from everything but the create response; sync keeps the stored one.
        return WebhookEndpoint.sync_from_stripe_data(keep, api_key=api_key)

    djstripe_uuid = uuid.uuid4()
    created = client.v1.webhook_endpoints.create(
        {
            "url": webhook_url(site_url=site_url, djstripe_uuid=djstripe_uuid),
            "enabled_events": WEBHOOK_EVENTS,
            "api_version": djstripe_settings.STRIPE_API_VERSION,
            "metadata": {"djstripe_uuid": str(djstripe_uuid)},
            "description": "Tally (dj-stripe)",
        }
    )
    return WebhookEndpoint.sync_from_stripe_data(created, api_key=api_key)
