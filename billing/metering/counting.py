"""The usage counter of a batch's events: sums, distinct counts and latest values, each under the
period's ceiling; and the sample product's API calls."""

from dataclasses import dataclass
from datetime import datetime

from billing import entitlements
from billing.entitlements.counter import CounterMove, usage_counter_add
from billing.entitlements.decisions import FeatureEntitlement
from billing.models import (
    Aggregation,
    Overage,
    UsageDay,
    UsageEvent,
)
from billing.periods import Period
from teams.models import Organization


@dataclass(frozen=True)
class MeterSpec:
    """A meter as the hot path needs it, cached by catalog version."""

    id: int
    key: str
    name: str
    aggregation: str
    property: str
    feature: str | None
    # The feature is a limit fed by this gauge: its usage is read from the events, not counted.
    gauge: bool = False

    @property
    def counted(self) -> bool:
        """Whether the meter's events move a quota counter."""
        return self.feature is not None and not self.gauge


@dataclass
class _Valid:
    index: int
    id: str
    meter: MeterSpec
    value: int
    timestamp: datetime
    period: Period
    properties: dict
    dimension: str
    pk: int = 0  # once stored


def _ceiling(ent: FeatureEntitlement) -> int | None:
    return None if ent.unlimited or ent.overage == Overage.BILL else ent.limit


def _count(organization: Organization, ent: FeatureEntitlement, group: list[_Valid]) -> list[_Valid]:
    """Move the feature's counter for one period by a group of new events; the refused ones."""
    period = group[0].period
    aggregation = group[0].meter.aggregation
    ceiling = _ceiling(ent)
    if aggregation in (Aggregation.SUM, Aggregation.COUNT):
        amounts = [e.value if aggregation == Aggregation.SUM else 1 for e in group]
        move = _add(organization, ent, period, amounts, ceiling)
        before, after, refused = move.before, move.after, group[move.taken :]
    elif aggregation == Aggregation.MAX:
        refused = [e for e in group if ceiling is not None and e.value > ceiling]
        kept = [e.value for e in group if ceiling is None or e.value <= ceiling]
        before, after = _raise_to(organization, ent, period, max(kept) if kept else None)
    elif aggregation == Aggregation.UNIQUE_COUNT:
        before, after, refused = _add_distinct(organization, ent, period, group, ceiling)
    else:
        refused = [e for e in group if ceiling is not None and e.value > ceiling]
        before, after = _set_latest(organization, ent, period, group, refused)
    if after != before or refused:
        entitlements.usage_recorded(organization, ent, period, before, after)
    return refused


def _add(organization, ent, period, amounts: list[int], ceiling: int | None = None) -> CounterMove:
    return usage_counter_add(
        organization_id=organization.pk,
        feature_id=ent.feature_id,
        period=period,
        amounts=amounts,
        ceiling=ceiling,
    )


def _lock(organization, ent, period) -> int:
    """The counter's value, its row locked until the transaction ends (a move by nothing takes the
    lock, creating the period's counter if need be): what the batch adds next is computed from
    events that no concurrent batch can change meanwhile."""
    return _add(organization, ent, period, []).before


def _move_to(organization, ent, period, before: int, after: int) -> None:
    # The row is locked (`_lock`): moving by the difference lands exactly on `after`.
    if after != before:
        _add(organization, ent, period, [after - before])


def _raise_to(organization, ent, period, value: int | None) -> tuple[int, int]:
    before = _lock(organization, ent, period)
    after = max(before, value) if value is not None else before
    _move_to(organization, ent, period, before, after)
    return before, after


def _add_distinct(organization, ent, period, group: list[_Valid], ceiling) -> tuple[int, int, list[_Valid]]:
    """Count values of the property not seen before in the period. The counter row is locked
    first, so the values another batch committed meanwhile are seen and never counted twice."""
    before = _lock(organization, ent, period)
    dims = list(dict.fromkeys(e.dimension for e in group))
    known = set(
        UsageEvent.objects.filter(
            organization=organization,
            meter_id=group[0].meter.id,
            period_start=period.start,
            dimension__in=dims,
        )
        .exclude(dimension="")  # lets the partial index of values serve it
        .exclude(event_id__in=[e.id for e in group])
        .values_list("dimension", flat=True)
    )
    new = [d for d in dims if d not in known]
    room = len(new) if ceiling is None else max(ceiling - before, 0)
    admitted = set(new[:room])
    refused = [e for e in group if e.dimension not in known and e.dimension not in admitted]
    after = before + len(admitted)
    _move_to(organization, ent, period, before, after)
    return before, after, refused


def _set_latest(organization, ent, period, group, refused) -> tuple[int, int]:
    before = _lock(organization, ent, period)
    # The latest of what is stored (its days, the batch not yet among them) and the batch's kept.
    refused_ids = {e.id for e in refused}
    candidates = [(e.timestamp, e.pk, e.value) for e in group if e.id not in refused_ids]
    stored = (
        UsageDay.objects.filter(
            organization=organization, meter_id=group[0].meter.id, period_start=period.start
        )
        .order_by("-last_at", "-last_event")
        .values_list("last_at", "last_event", "last_value")
        .first()
    )
    candidates += [stored] if stored else []
    after = max(candidates)[2] if candidates else before
    _move_to(organization, ent, period, before, after)
    return before, after
