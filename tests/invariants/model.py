"""A small pure-Python model of entitlements (I6): the plan in force, its limits and the usage
the machine itself recorded. It knows the catalog only as the table below (copied from
config/catalog.toml by hand, so that a change to either shows up as a disagreement)."""

import math
from dataclasses import dataclass, field
from datetime import datetime

UNLIMITED = None

# plan key -> (interval, monthly price for one seat holder or a flat fee, limits)
# limits: feature -> (limit or UNLIMITED, overage)
PLANS: dict[str, dict] = {
    "free": {
        "interval": "month",
        "limits": {"ai_generations": (10, "credits"), "team_members": (3, "block")},
    },
    "pro_monthly": {
        "interval": "month",
        "flat": 4_900,
        "limits": {"ai_generations": (100, "credits"), "team_members": (10, "block")},
    },
    "pro_yearly": {
        "interval": "year",
        "flat": 49_000,
        "limits": {"ai_generations": (100, "credits"), "team_members": (10, "block")},
    },
    "ai_monthly": {
        "interval": "month",
        "flat": 500,
        "limits": {"ai_generations": (250, "credits"), "team_members": (3, "block")},
    },
    "team_monthly": {
        "interval": "month",
        "seat_tiers": [(3, 0), (10, 1_500), (None, 1_200)],
        "limits": {"ai_generations": (500, "bill"), "team_members": (UNLIMITED, "block")},
    },
}

# What a plan grants in credits each period (a hybrid plan), and its trial.
ALLOWANCE = {"pro_monthly": 1_000}
TRIAL_DAYS = {"pro_monthly": 14, "pro_yearly": 14}


def price(plan: str, seats: int) -> int:
    spec = PLANS[plan]
    if "flat" in spec:
        return spec["flat"]
    total, below = 0, 0
    for up_to, unit in spec.get("seat_tiers", []):
        top = seats if up_to is None else min(seats, up_to)
        if top > below:
            total += (top - below) * unit
        below = top if up_to is not None else below
    return total


def monthly(plan: str, seats: int) -> int:
    total = price(plan, seats)
    return math.ceil(total / 12) if PLANS[plan]["interval"] == "year" else total


def is_upgrade(current: str, new: str, seats: int) -> bool:
    """Upgrades (and interval switches) apply at once; downgrades at the period's end."""
    if PLANS[current]["interval"] != PLANS[new]["interval"]:
        return True
    return monthly(new, seats) >= monthly(current, seats)


@dataclass
class Pending:
    previous: str
    plan: str
    at: datetime  # the end of the period paid for when it was chosen


@dataclass
class EntitlementModel:
    pending: dict[str, Pending] = field(default_factory=dict)  # by Stripe subscription id
    # ai_generations recorded, by the usage period they fell in: (subscription, period start)
    # or ("free", year, month). A use recorded while Tally may not have caught up with Stripe
    # makes the count uncertain, and the model stops judging it.
    usage: list[tuple[tuple, int]] = field(default_factory=list)
    uncertain: bool = False

    def plan_in_force(self, *, stripe_plan: str | None, subscription: str | None, period_start) -> str:
        """Stripe's plan, except while a downgrade waits for the end of the period paid for."""
        if stripe_plan is None:
            return "free"
        pending = self.pending.get(subscription or "")
        if pending is not None and pending.plan == stripe_plan:
            if period_start < pending.at:
                return pending.previous
            del self.pending[subscription]
        return stripe_plan

    def record(self, regime: tuple | None, amount: int) -> None:
        if regime is None:
            self.uncertain = True
        else:
            self.usage.append((regime, amount))

    def used(self, regime: tuple) -> int | None:
        if self.uncertain:
            return None
        return sum(n for at, n in self.usage if at == regime)

    @staticmethod
    def limit(plan: str, feature: str) -> tuple[int | None, str]:
        return PLANS[plan]["limits"][feature]

    def allows(self, plan: str, feature: str, used: int, requested: int) -> bool:
        limit, overage = self.limit(plan, feature)
        return requested == 0 or limit is UNLIMITED or overage == "bill" or used + requested <= limit
