"""Validation rules shared by the catalog file loader and the admin forms.

Each function returns a list of problems in plain words (empty when valid) so that a caller can
prefix them with where they were found: the plan, the field.
"""


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
