"""How each `limit` feature is counted live: the apps that own what is counted (projects, team
members, ...) register a counter here."""

from collections.abc import Callable

from teams.models import Organization

COUNTERS: dict[str, Callable[[Organization], int]] = {}


def register_counter(feature: str, count: Callable[[Organization], int]) -> None:
    """Tell the engine how to count a `limit` feature live (projects, team members, …)."""
    COUNTERS[feature] = count
