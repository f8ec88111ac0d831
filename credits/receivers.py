"""Credits' handlers for what billing tells it. billing knows nothing of credits; these register
with billing's hooks from `CreditsConfig.ready()`."""

from billing.subscriptions import periods
from credits import allowances

periods.period_hooks_register(
    started=allowances.subscription_allowance_grant, ended=allowances.subscription_allowance_end
)
