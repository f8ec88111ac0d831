"""What every credit service checks first: amounts, idempotency keys, text; and the refusal for too
few credits."""

from dataclasses import dataclass

from common.errors import ServiceError
from credits.models import (
    CreditPrice,
)

# Large enough for any real use, small enough that sums never leave a 64-bit integer.
MAX_AMOUNT = 10**12


WELCOME_BONUS_KEY = "welcome-bonus"


class InsufficientCredits(ServiceError):
    """HTTP 402: the account cannot cover `required` credits."""

    def __init__(self, *, required: int, balance: int, available: int):
        super().__init__(
            "insufficient_credits",
            f"This needs {required:,} credits; {max(available, 0):,} are available.",
            status=402,
        )
        self.required = required
        self.balance = balance
        self.available = available

    def as_dict(self) -> dict:
        return {
            "code": self.code,
            "message": self.message,
            "required": self.required,
            "balance": self.balance,
            "available": self.available,
        }


@dataclass(frozen=True)
class Quote:
    """What an action costs now: the price version that applies and the credits it comes to."""

    action: str
    quantity: int
    credits: int
    price: CreditPrice | None


def _check_amount(amount, *, field: str = "amount", allow_zero: bool = False) -> int:
    # bool is an int in Python; True credits is a bug, not one credit.
    if not isinstance(amount, int) or isinstance(amount, bool):
        raise ServiceError("invalid_amount", "Give a whole number of credits.", field=field)
    if amount < 0 or (amount == 0 and not allow_zero):
        raise ServiceError("invalid_amount", "The amount must be a positive number of credits.", field=field)
    if amount > MAX_AMOUNT:
        raise ServiceError("invalid_amount", f"The amount must be at most {MAX_AMOUNT:,}.", field=field)
    return amount


def _check_key(key: str | None) -> str:
    key = (key or "").strip()
    if not key:
        raise ServiceError(
            "idempotency_key_required",
            "Send an idempotency key, so that a retried request is not charged twice.",
            field="idempotency_key",
        )
    if len(key) > 255:
        raise ServiceError(
            "invalid_idempotency_key", "Keep the key under 256 characters.", field="idempotency_key"
        )
    return key


def _text(value: str, limit: int) -> str:
    return (value or "").strip()[:limit]
