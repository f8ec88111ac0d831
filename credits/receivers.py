"""Credits' handlers for what billing tells it. billing knows nothing of credits; these register
with billing's hooks from `CreditsConfig.ready()`."""

from billing import allowances as billing_allowances
from credits import allowances

billing_allowances.allowance_handlers_register(
    grant=allowances.credits_allowance_grant, end=allowances.credits_allowance_end
)
