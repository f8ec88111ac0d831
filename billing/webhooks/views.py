"""The Stripe webhook endpoint: dj-stripe's view, behind checks that run before it stores.

dj-stripe writes a `WebhookEventTrigger` row with the whole body before it verifies the
signature, so anyone who knows the URL could fill the table with megabytes of garbage. Here the
size, the signature and its timestamp are checked first; only a delivery Stripe signed, within
the tolerance on either side of now, reaches dj-stripe (which verifies again and stores it).
"""

import logging
import time

import stripe
from django.conf import settings
from django.http import HttpResponse, HttpResponseBadRequest
from django.shortcuts import get_object_or_404
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST
from djstripe.models import WebhookEndpoint
from djstripe.views import ProcessWebhookView

logger = logging.getLogger(__name__)
_djstripe_view = ProcessWebhookView.as_view()


def _signed_at(header: str) -> int | None:
    for part in header.split(","):
        name, _, value = part.strip().partition("=")
        if name == "t" and value.isdigit():
            return int(value)
    return None


@csrf_exempt
@require_POST
def stripe_webhook(request, uuid):
    try:
        length = int(request.META.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return HttpResponseBadRequest("Bad Content-Length.")
    if length > settings.STRIPE_WEBHOOK_MAX_BYTES:
        return HttpResponse("Payload too large.", status=413)
    header = request.headers.get("Stripe-Signature", "")
    if not header:
        return HttpResponseBadRequest("Stripe-Signature is missing.")
    endpoint = get_object_or_404(WebhookEndpoint, djstripe_uuid=uuid)
    tolerance = endpoint.djstripe_tolerance or stripe.Webhook.DEFAULT_TOLERANCE
    try:
        payload = request.body.decode("utf-8")
        stripe.WebhookSignature.verify_header(payload, header, endpoint.secret, tolerance)
    except (stripe.SignatureVerificationError, UnicodeDecodeError):
        logger.warning("Refused a Stripe webhook delivery with a bad signature")
        return HttpResponseBadRequest("Bad signature.")
    # The SDK refuses only timestamps too old; a signature from the future is refused too.
    signed_at = _signed_at(header)
    if signed_at is None or signed_at > time.time() + tolerance:
        logger.warning("Refused a Stripe webhook delivery signed in the future")
        return HttpResponseBadRequest("Signature timestamp outside the tolerance.")
    return _djstripe_view(request, uuid=uuid)
