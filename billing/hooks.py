"""Where the apps above billing hook into the Stripe events it receives.

billing imports nothing from them: credits registers its handlers from its AppConfig.ready()
(a credit purchase paid, a charge refunded or disputed), the way billing registers its seat
guard with teams.
"""

from collections.abc import Callable, Iterable
from typing import Any

StripeEventHandler = Callable[..., None]
_handlers: dict[str, list[StripeEventHandler]] = {}


def stripe_event_register(kinds: Iterable[str], handler: StripeEventHandler) -> None:
    """Have `handler(kind=..., obj=...)` called for each of `kinds`, with the object billing
    re-read from Stripe (a Checkout Session, a Charge, a Dispute), after billing's own handling
    and outside any transaction. Events come duplicated and out of order: it must be safe to
    call again, in any order."""
    for kind in kinds:
        registered = _handlers.setdefault(kind, [])
        if handler not in registered:
            registered.append(handler)


def stripe_event_notify(kind: str, obj: Any) -> None:
    for handler in _handlers.get(kind, []):
        handler(kind=kind, obj=obj)
