import stripe
from django.conf import settings
from django.core.management.base import BaseCommand, CommandError

from billing.gateway.setup import stripe_webhook_endpoint_ensure


class Command(BaseCommand):
    help = (
        "Register this site's dj-stripe webhook endpoint with Stripe (or the simulator) and "
        "store its signing secret. Safe to run on every deploy."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--site-url",
            default=settings.SITE_URL,
            help="the public address Stripe delivers to (default: SITE_URL); "
            "dj-stripe's path /stripe/webhook/<uuid>/ is appended",
        )

    def handle(self, *args, site_url: str, **options) -> None:
        try:
            endpoint = stripe_webhook_endpoint_ensure(site_url=site_url)
        except stripe.StripeError as error:
            raise CommandError(
                f"Stripe refused the webhook endpoint: {error.user_message or error}"
            ) from None
        self.stdout.write(f"Webhook endpoint {endpoint.id}: {endpoint.url}")
