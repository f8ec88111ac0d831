"""Price arithmetic exactly as Stripe does it: integer minor units, tiers graduated or volume.

Tiers are ascending by `up_to` and the last one is open-ended (`up_to` None). A tier charges
`unit_amount` per unit plus a one-off `flat_amount`.
- graduated: each unit is charged at the tier it falls into; every tier reached adds its flat amount.
- volume: every unit is charged at the single tier that contains the total quantity.
"""

from dataclasses import dataclass


@dataclass(frozen=True)
class Tier:
    up_to: int | None
    unit_amount: int = 0
    flat_amount: int = 0

    @classmethod
    def from_dict(cls, data: dict) -> "Tier":
        return cls(
            up_to=data.get("up_to"),
            unit_amount=int(data.get("unit_amount") or 0),
            flat_amount=int(data.get("flat_amount") or 0),
        )

    def as_dict(self) -> dict:
        return {"up_to": self.up_to, "unit_amount": self.unit_amount, "flat_amount": self.flat_amount}


@dataclass(frozen=True)
class TierLine:
    """One tier's share of a price: units `first`..`last` (1-based, inclusive)."""

    tier: int
    first: int
    last: int
    quantity: int
    unit_amount: int
    flat_amount: int
    amount: int


@dataclass(frozen=True)
class Breakdown:
    quantity: int
    total: int
    lines: tuple[TierLine, ...]


def _tiers(tiers) -> list[Tier]:
    return [t if isinstance(t, Tier) else Tier.from_dict(t) for t in tiers]


def graduated(tiers, quantity: int) -> Breakdown:
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    lines, floor = [], 0
    for index, tier in enumerate(_tiers(tiers)):
        if quantity <= floor:
            break
        ceiling = quantity if tier.up_to is None else min(quantity, tier.up_to)
        units = ceiling - floor
        amount = units * tier.unit_amount + tier.flat_amount
        lines.append(TierLine(index, floor + 1, ceiling, units, tier.unit_amount, tier.flat_amount, amount))
        floor = ceiling
        if tier.up_to is None:
            break
    return Breakdown(quantity, sum(line.amount for line in lines), tuple(lines))


def volume(tiers, quantity: int) -> Breakdown:
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    tiers = _tiers(tiers)
    if quantity == 0:
        return Breakdown(0, 0, ())
    index = next(i for i, t in enumerate(tiers) if t.up_to is None or quantity <= t.up_to)
    tier = tiers[index]
    amount = quantity * tier.unit_amount + tier.flat_amount
    line = TierLine(index, 1, quantity, quantity, tier.unit_amount, tier.flat_amount, amount)
    return Breakdown(quantity, amount, (line,))


def per_unit(unit_amount: int, quantity: int) -> Breakdown:
    if quantity < 0:
        raise ValueError("quantity must not be negative")
    amount = unit_amount * quantity
    line = TierLine(0, 1, quantity, quantity, unit_amount, 0, amount)
    return Breakdown(quantity, amount, (line,) if quantity else ())


def price(
    *, quantity: int, unit_amount: int | None = None, tiers=None, tiers_mode: str | None = None
) -> Breakdown:
    if tiers:
        return graduated(tiers, quantity) if tiers_mode == "graduated" else volume(tiers, quantity)
    return per_unit(unit_amount or 0, quantity)


def marginal(
    *, quantity: int, unit_amount: int | None = None, tiers=None, tiers_mode: str | None = None
) -> int:
    """What one more unit adds to the total (e.g. the price of the next seat)."""
    before = price(quantity=quantity, unit_amount=unit_amount, tiers=tiers, tiers_mode=tiers_mode)
    after = price(quantity=quantity + 1, unit_amount=unit_amount, tiers=tiers, tiers_mode=tiers_mode)
    return after.total - before.total


# --- Validation, shared by the catalog file loader and the admin forms ----------------------
# Each function returns a list of problems in plain words (empty when valid) so that a caller can
# prefix them with where they were found: the plan, the field.


def validate_tiers(*, unit_amount, tiers, tiers_mode) -> list[str]:
    problems = []
    if tiers:
        if unit_amount is not None:
            problems.append("give either unit_amount or tiers, not both")
        if tiers_mode not in ("graduated", "volume"):
            problems.append("tiers_mode must be 'graduated' or 'volume'")
        previous = 0
        for index, tier in enumerate(tiers):
            where = f"tier {index + 1}"
            if not isinstance(tier, dict):
                problems.append(f"{where} must be a table with up_to, unit_amount, flat_amount")
                continue
            unknown = set(tier) - {"up_to", "unit_amount", "flat_amount"}
            if unknown:
                problems.append(f"{where} has unknown fields: {', '.join(sorted(unknown))}")
            for field in ("unit_amount", "flat_amount"):
                value = tier.get(field, 0)
                if not isinstance(value, int) or isinstance(value, bool):
                    problems.append(f"{where} {field} must be a whole number of cents")
                elif value < 0:
                    problems.append(f"{where} {field} is negative")
            up_to = tier.get("up_to")
            last = index == len(tiers) - 1
            if up_to is None:
                if not last:
                    problems.append(f"{where} is open-ended but is not the last tier")
            elif not isinstance(up_to, int) or isinstance(up_to, bool) or up_to < 1:
                problems.append(f"{where} up_to must be a positive whole number")
            else:
                if up_to <= previous:
                    problems.append(f"tiers are not ascending: {where} up_to {up_to} <= {previous}")
                previous = up_to
                if last:
                    problems.append("the last tier must be open-ended (no up_to)")
    else:
        if tiers_mode:
            problems.append("tiers_mode given without tiers")
        if unit_amount is None:
            problems.append("give unit_amount or tiers")
        elif not isinstance(unit_amount, int) or isinstance(unit_amount, bool):
            problems.append("unit_amount must be a whole number of cents")
        elif unit_amount < 0:
            problems.append("unit_amount is negative")
    return problems
