import time
import urllib.error
import urllib.parse
import urllib.request

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError
from django.db import transaction

from billing import catalog, subscriptions
from billing.catalog import catalog_apply, load_catalog
from billing.gateway.client import stripe_client
from billing.gateway.customers import customer_ensure
from billing.models import OrgSubscription, Plan
from credits import services as credit_services
from projects import services as project_services
from projects.models import AiModel, Project
from teams import services as team_services
from teams.models import Membership, Organization, Role, User

DEMO_PASSWORD = "tally-demo-2026"  # noqa: S105 (printed by `make demo`; demo data only)
OWNER_EMAIL = "owner@example.com"
MEMBER_EMAIL = "member@example.com"
STAFF_EMAIL = "staff@example.com"
ORG_NAME = "Acme Analytics"
DEMO_PLAN = "pro_monthly"
DAY = 86400

PROJECTS = [
    ("Quarterly forecast", "Revenue model for the board pack.", "Summarise churn drivers for Q3"),
    (
        "Support copilot",
        "Draft replies for the help desk.",
        "Reply to a customer asking about prorated seats",
    ),
    ("Brand refresh", "Moodboards for the new site.", "A calm logo for a billing company"),
]


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    """The hosted checkout answers with a redirect to this site, which is not serving yet."""

    def redirect_request(self, *args, **kwargs):
        return None


class Command(BaseCommand):
    help = (
        "Create the demo users, organization and projects, and subscribe the organization "
        "through the Stripe simulator (safe to run again)."
    )

    def _user(self, email: str, name: str) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = team_services.user_create(email=email, password=DEMO_PASSWORD, name=name)
        else:
            # Running the demo again restores the printed password.
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        return user

    def handle(self, *args, **options) -> None:
        org, owner = self._local_data()
        self._subscribe(org, owner)
        self._projects(org, owner)
        self.stdout.write(self.style.SUCCESS(f"Demo organization: {org.name} (/o/{org.slug}/)"))

    @transaction.atomic
    def _local_data(self) -> tuple[Organization, User]:
        for line in catalog_apply(load_catalog()):
            self.stdout.write(line)
        credit_services.credits_seed_packages()
        credit_services.credit_prices_seed()
        owner = self._user(OWNER_EMAIL, "Olivia Owner")
        member = self._user(MEMBER_EMAIL, "Max Member")
        staff = self._user(STAFF_EMAIL, "Sam Staff")
        if not staff.is_superuser:
            staff.is_staff = staff.is_superuser = True
            staff.save(update_fields=["is_staff", "is_superuser"])
        org = Organization.objects.filter(memberships__user=owner, name=ORG_NAME).first()
        if org is None:
            org = team_services.organization_create(owner=owner, name=ORG_NAME)
            org.billing_email = "billing@example.com"
            org.save(update_fields=["billing_email"])
        Membership.objects.get_or_create(organization=org, user=member, defaults={"role": Role.MEMBER})
        return org, owner

    def _subscribe(self, org: Organization, owner: User) -> None:
        """A real subscription, bought the way a customer buys one: a Checkout Session paid on
        the simulator's hosted page, for a customer on a test clock. The clock starts just over
        a trial ago and is moved to now, so the trial has ended and the first month is paid:
        the billing page then shows what a paying customer sees (period, upcoming invoice,
        cancel, refund, portal)."""
        current = OrgSubscription.objects.filter(organization=org).first()
        if current and current.stripe_subscription_id and current.applies:
            return
        if not getattr(settings, "STRIPE_API_HOST", ""):
            raise CommandError("demo_seed subscribes through the Stripe simulator: set STRIPE_API_HOST.")
        plan = Plan.objects.get(key=DEMO_PLAN)
        for line in catalog.catalog_push():
            self.stdout.write(line)
        client = stripe_client()
        now = int(time.time())
        start = now - (plan.trial_days + 1) * DAY
        clock = client.v1.test_helpers.test_clocks.create({"frozen_time": start, "name": f"{org.name} demo"})
        customer_ensure(organization=org, test_clock=clock.id)
        url = subscriptions.checkout_start(organization=org, plan=plan, actor=owner)
        form = urllib.parse.urlencode({"card_number": "4242424242424242", "email": owner.email}).encode()
        try:
            urllib.request.build_opener(_NoRedirect).open(url, data=form, timeout=30)
        except urllib.error.HTTPError as answer:
            if answer.code != 303:
                raise CommandError(f"The simulator's checkout refused the demo card: {answer.code}") from None
        session_id = urllib.parse.urlsplit(url).path.rstrip("/").rsplit("/", 1)[-1]
        subscription = subscriptions.checkout_complete(session_id=session_id)
        client.v1.test_helpers.test_clocks.advance(clock.id, {"frozen_time": now})
        # The webhooks for the trial's end reach this site once it serves; record them now so
        # the first page already shows the paid month.
        for invoice in client.v1.invoices.list(
            {"subscription": subscription.stripe_subscription_id, "limit": 10}
        ).auto_paging_iter():
            subscriptions.invoice_record(invoice_id=invoice.id)
        subscriptions.subscription_sync(subscription_id=subscription.stripe_subscription_id)
        self.stdout.write(f"Subscribed {org.name} to {plan.name} (test clock {clock.id})")

    def _projects(self, org: Organization, owner: User) -> None:
        for name, description, prompt in PROJECTS:
            if Project.objects.filter(organization=org, name=name).exists():
                continue
            project = project_services.project_create(
                organization=org, name=name, description=description, actor=owner
            )
            model = AiModel.IMAGE if "logo" in prompt else AiModel.GPT_4
            project_services.generation_create(project=project, prompt=prompt, model=model, actor=owner)
