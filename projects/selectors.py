from dataclasses import dataclass

from billing import entitlements
from billing.entitlements.decisions import Decision
from credits import services as credit_services
from projects.models import Generation, Project
from teams.models import Organization


def projects_of(organization: Organization):
    return Project.objects.filter(organization=organization).select_related("organization")


def recent_projects_of(organization: Organization, *, limit: int = 5):
    return projects_of(organization)[:limit]


def generations_of(project: Project, *, limit: int = 20):
    return Generation.objects.filter(project=project).select_related("created_by")[:limit]


@dataclass(frozen=True)
class Allowance:
    """What an organization has left for generations: the plan's quota and the credit balance."""

    quota: Decision
    balance: int
    charged: int


def generation_allowance(*, organization: Organization, credits_charged: int = 0) -> Allowance:
    """The `ai_generations` quota left, and the credit balance once `credits_charged` (what the
    request being answered is about to be charged, if anything) is paid."""
    quota = entitlements.check_fresh(organization, "ai_generations")
    account = credit_services.credit_account_for(organization=organization)
    return Allowance(quota=quota, balance=account.balance - credits_charged, charged=credits_charged)
