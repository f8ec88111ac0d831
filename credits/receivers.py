"""Credits' handlers for what billing tells it. billing knows nothing of credits; these register
with billing's hooks from `CreditsConfig.ready()`."""

from billing.catalog.push import catalog_pusher_register
from billing.models import CatalogStripeState
from billing.subscriptions import periods
from credits import allowances
from credits.services import purchases

periods.period_hooks_register(
    started=allowances.subscription_allowance_grant, ended=allowances.subscription_allowance_end
)

# Staff's edits of a credit package reach Stripe through billing's catalog push.
catalog_pusher_register(CatalogStripeState.Kind.CREDIT_PACKAGE, purchases.credit_package_push)
