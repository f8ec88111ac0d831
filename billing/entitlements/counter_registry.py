"""How each `limit` feature is counted live: the apps that own what is counted (projects, team
members, ...) register a counter here."""

from collections.abc import Callable

from teams.models import Organization

COUNTERS: dict[str, Callable[[Organization], int]] = {}


def register_counter(feature: str, count: Callable[[Organization], int]) -> None:
    """Tell the engine how to count a `limit` feature live (projects, team members, …)."""
    COUNTERS[feature] = count


# Called with the organization's id (None: every organization) when its entitlements are
# forgotten, so that what a module keeps in this process from them goes too.
FORGET: list[Callable[[int | None], None]] = []


def register_forget(forget: Callable[[int | None], None]) -> None:
    FORGET.append(forget)
