"""The key of one period's plan allowance, written by the grant and read back by disputes and
reconciliation: defined once here."""


def allowance_key(subscription_id: str, period_start: int) -> str:
    """The idempotency key of one period's allowance: the subscription and the period's start
    (a Unix time), so however many events report a period, it is granted once."""
    return f"allowance:{subscription_id}:{period_start}"


def allowance_key_parse(key: str) -> tuple[str, int] | None:
    """(subscription id, period start) of an allowance's key; None for any other key."""
    parts = key.split(":")
    if len(parts) != 3 or parts[0] != "allowance":
        return None
    try:
        return parts[1], int(parts[2])
    except ValueError:
        return None
