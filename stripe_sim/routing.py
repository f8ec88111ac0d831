"""The request context handlers receive, and the route table they register into."""

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from stripe_sim.store import Store


@dataclass
class Ctx:
    store: Store
    params: dict[str, Any]
    base_url: str
    method: str = "GET"
    path: str = ""
    extra_headers: dict[str, str] = field(default_factory=dict)

    @property
    def expand(self) -> list[str]:
        value = self.params.get("expand")
        if isinstance(value, list):
            return [str(v) for v in value]
        if isinstance(value, str) and value:
            return [value]
        return []


Handler = Callable[..., dict[str, Any]]

# (method, werkzeug rule, handler), filled in as the resource modules are imported.
ROUTES: list[tuple[str, str, Handler]] = []


def route(method: str, rule: str) -> Callable[[Handler], Handler]:
    def register(fn: Handler) -> Handler:
        ROUTES.append((method, rule, fn))
        return fn

    return register
