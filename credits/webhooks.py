"""How a credit package's checkout ended, as billing heard it from Stripe: grant once paid,
wait while a bank debit is processing, record an expired or refused checkout.

Billing owns every Stripe event and re-reads the session before calling here; credits
registers this handler with billing on import (from `CreditsConfig.ready()`).
"""

from billing.services_payments import CheckoutResult, PaymentCheckoutOutcome, payment_checkout_register
from credits import services
from credits.models import PurchaseStatus


def purchase_checkout_settled(outcome: PaymentCheckoutOutcome) -> None:
    code = outcome.metadata.get("tally_credit_purchase")
    if not code:
        return  # another app's payment checkout
    if outcome.result == CheckoutResult.PAID:
        services.credit_purchase_complete(
            purchase_code=code, session_id=outcome.session_id, payment_intent_id=outcome.payment_intent_id
        )
    elif outcome.result == CheckoutResult.PROCESSING:
        services.credit_purchase_processing(purchase_code=code, session_id=outcome.session_id)
    elif outcome.result == CheckoutResult.ABANDONED:
        services.credit_purchase_end(
            purchase_code=code, session_id=outcome.session_id, status=PurchaseStatus.ABANDONED
        )
    elif outcome.result == CheckoutResult.FAILED:
        services.credit_purchase_end(
            purchase_code=code,
            session_id=outcome.session_id,
            status=PurchaseStatus.FAILED,
            failure_message=outcome.failure_message,
        )


payment_checkout_register(purchase_checkout_settled)
