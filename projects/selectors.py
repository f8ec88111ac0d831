from dataclasses import dataclass

from billing import entitlements
from billing.entitlements.decisions import Decision
from billing.models import Overage
from credits import selectors as credit_selectors
from credits import services as credit_services
from credits.models import CreditPrice
from projects.models import AiModel, Generation, Project
from projects.services import MAX_OUTPUT_TOKENS
from teams.models import Organization


def projects_of(organization: Organization):
    return Project.objects.filter(organization=organization).select_related("organization")


def recent_projects_of(organization: Organization, *, limit: int = 5):
    return projects_of(organization)[:limit]


def generations_of(project: Project, *, limit: int = 20):
    return Generation.objects.filter(organization_id=project.organization_id, project=project).select_related(
        "created_by"
    )[:limit]


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


@dataclass(frozen=True)
class ModelCost:
    model: str
    name: str
    price: CreditPrice
    most: int  # the most one generation can cost: a picture, or the longest answer


@dataclass(frozen=True)
class GenerationCosts:
    """What the next generation costs, shown before it runs."""

    next_one: Decision  # the quota's answer for one more generation
    costs: list[ModelCost]
    available: int | None  # spendable credits; None when credits do not pay for generations

    @property
    def paid_with_credits(self) -> bool:
        return self.next_one.payable_with_credits


def generation_costs(organization: Organization) -> GenerationCosts:
    """Each model's credit price (the current version) and whether the next generation is free
    (within the quota) or paid with credits (the quota used up on a plan whose overage is credits)."""
    next_one = entitlements.check(organization, "ai_generations", 1)
    prices = {p.action: p for p in credit_selectors.current_prices(actions=AiModel.values)}
    costs = [
        ModelCost(
            model=model,
            name=label,
            price=prices[model],
            most=prices[model].cost(1 if model == AiModel.IMAGE else MAX_OUTPUT_TOKENS),
        )
        for model, label in AiModel.choices
        if model in prices
    ]
    available = None
    if next_one.overage == Overage.CREDITS:
        account = credit_services.credit_account_for(organization=organization)
        available = credit_services.credits_spendable(account=account)
    return GenerationCosts(next_one=next_one, costs=costs, available=available)
