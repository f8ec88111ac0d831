"""Sign-in, sign-up and password reset, throttled per account and per address with the same
limiter as the API (`teams/ratelimit.py`).

Sign-in counts failures only: an account is locked for a while after too many wrong passwords,
and while it is, even the right password is refused (otherwise guessing could go on). Sign-up and
password reset count every attempt, so neither can be used to flood an inbox or the user table.
"""

import math
from dataclasses import dataclass

from django.conf import settings

from teams.ratelimit import Bucket, limiter_hit


@dataclass(frozen=True)
class Throttle:
    action: str  # "login", "signup", "password_reset", "two_factor"
    what: str  # for the message: "failed sign-ins", ...

    def buckets(self, *, account: str, address: str | None) -> list[Bucket]:
        per_account, per_address, window = settings.AUTH_THROTTLES[self.action]
        buckets = [Bucket(f"{self.action}-account:{account.strip().lower()}", per_account, window)]
        if address:
            buckets.append(Bucket(f"{self.action}-address:{address}", per_address, window))
        return buckets


LOGIN = Throttle("login", "failed sign-ins")
SIGNUP = Throttle("signup", "sign-up attempts")
PASSWORD_RESET = Throttle("password_reset", "password reset requests")
TWO_FACTOR = Throttle("two_factor", "wrong two-factor codes")


def _minutes(seconds: int) -> str:
    minutes = max(1, math.ceil(seconds / 60))
    return "a minute" if minutes == 1 else f"{minutes} minutes"


def throttle_hit(throttle: Throttle, *, account: str, address: str | None, record: bool = True) -> str:
    """Count one attempt (or only look, `record=False`); the refusal's message, or "" if allowed."""
    decision = limiter_hit(throttle.buckets(account=account, address=address), record=record)
    if decision.allowed:
        return ""
    if decision.unavailable:
        return "This cannot be checked right now; please try again in a minute."
    source = "this account" if "-account:" in decision.bucket else "your network address"
    return f"Too many {throttle.what} for {source}. Try again in {_minutes(decision.reset)}."
