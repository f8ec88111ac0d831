"""Rules for single fields of the catalog file, shared by its sections: whole numbers, tiers, tax
behaviour, moments in time, selling points. A refused value appends a problem naming where it was found."""

from datetime import UTC, datetime

from billing.models import TaxBehavior
from common.validators import bullets_problem


def is_int(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def bullets(value, where: str, problems: list[str]) -> list[str]:
    """A product's selling points for the pricing page: a short list of short texts."""
    problem = bullets_problem(value)
    if problem:
        problems.append(f"{where}: {problem}")
        return []
    return [bullet.strip() for bullet in value]


def tier(tier: dict) -> dict:
    return {
        "up_to": tier.get("up_to"),
        "unit_amount": tier.get("unit_amount", 0),
        "flat_amount": tier.get("flat_amount", 0),
    }


def tax_behavior(value, where: str, problems: list[str]) -> str:
    if value not in TaxBehavior.values:
        problems.append(f"{where}: must be one of {', '.join(TaxBehavior.values)}")
        return TaxBehavior.EXCLUSIVE
    return value


def moment(value, where: str, problems: list[str]) -> datetime | None:
    if value is None:
        return None
    if not isinstance(value, datetime) or value.tzinfo is None:
        problems.append(f"{where}: a date and time with its offset, e.g. 2027-01-01T00:00:00Z")
        return None
    return value.astimezone(UTC)
