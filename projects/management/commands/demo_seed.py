from django.core.management.base import BaseCommand
from django.db import transaction

from billing import services as billing_services
from billing.catalog import catalog_apply, load_catalog
from billing.models import Plan, SubscriptionStatus
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

PROJECTS = [
    ("Quarterly forecast", "Revenue model for the board pack.", "Summarise churn drivers for Q3"),
    (
        "Support copilot",
        "Draft replies for the help desk.",
        "Reply to a customer asking about prorated seats",
    ),
    ("Brand refresh", "Moodboards for the new site.", "A calm logo for a billing company"),
]


class Command(BaseCommand):
    help = "Create the demo users, organization and projects (safe to run again)."

    def _user(self, email: str, name: str) -> User:
        user = User.objects.filter(email=email).first()
        if user is None:
            user = team_services.user_create(email=email, password=DEMO_PASSWORD, name=name)
        else:
            # Running the demo again restores the printed password.
            user.set_password(DEMO_PASSWORD)
            user.save(update_fields=["password"])
        return user

    @transaction.atomic
    def handle(self, *args, **options) -> None:
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
        if not hasattr(org, "subscription"):
            # A contract customer on Pro, so the demo shows limits with room to spare.
            billing_services.subscription_set(
                organization=org,
                plan=Plan.objects.get(key="pro_monthly"),
                status=SubscriptionStatus.ACTIVE,
                seats=2,
                actor=owner,
            )
        for name, description, prompt in PROJECTS:
            if Project.objects.filter(organization=org, name=name).exists():
                continue
            project = project_services.project_create(
                organization=org, name=name, description=description, actor=owner
            )
            model = AiModel.IMAGE if "logo" in prompt else AiModel.GPT_4
            project_services.generation_create(project=project, prompt=prompt, model=model, actor=owner)
        self.stdout.write(self.style.SUCCESS(f"Demo organization: {org.name} (/o/{org.slug}/)"))
