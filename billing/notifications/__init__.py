"""Every email billing sends, through one function and one layout.

A notice is recorded (`notice_queue`) in the transaction that learnt the fact it tells of, under
a key that names the fact (an invoice's n-th failed attempt, a trial's end, a dispute's state).
The key is unique in the database, so a duplicate delivery, a replay or a reconcile that learns
the same fact again records nothing and sends nothing. After the commit, Celery sends it
(`notice_send`): the subject and body of its kind, in the shared layout (plain text and HTML),
to the billing contacts (`Organization.billing_contacts()`, the one recipient rule) who have not
turned that kind off; critical kinds cannot be turned off.

The old task names (`billing.tasks.send_*`) still run, so messages queued under them before
the notices were recorded are sent (once, under the same keys).
"""

from billing.notifications.emails import (
    Email,
    notice_builder_register,
    notice_kinds_always,
    notice_kinds_offered,
)
from billing.notifications.facts import (
    async_payment_failed_queue,
    invoice_notices_queue,
    price_change_queue,
    refund_notice_queue,
    seat_count_changed_queue,
    subscription_notices_queue,
    trial_ending_queue,
)
from billing.notifications.legacy import (
    dispute_notice_queue,
    duplicate_refunded_queue,
    notice_send_now,
    send_dispute_notice,
    send_duplicate_subscription_refunded,
    send_payment_action_required,
    send_payment_failed,
    send_usage_alert,
    usage_alert_queue,
)
from billing.notifications.notices import (
    deliver_notice,
    notice_muted,
    notice_preferences_update,
    notice_queue,
    notice_recipients,
    notice_send,
)

__all__ = [
    "Email",
    "async_payment_failed_queue",
    "deliver_notice",
    "dispute_notice_queue",
    "duplicate_refunded_queue",
    "invoice_notices_queue",
    "notice_builder_register",
    "notice_kinds_always",
    "notice_kinds_offered",
    "notice_muted",
    "notice_preferences_update",
    "notice_queue",
    "notice_recipients",
    "notice_send",
    "notice_send_now",
    "price_change_queue",
    "refund_notice_queue",
    "seat_count_changed_queue",
    "send_dispute_notice",
    "send_duplicate_subscription_refunded",
    "send_payment_action_required",
    "send_payment_failed",
    "send_usage_alert",
    "subscription_notices_queue",
    "trial_ending_queue",
    "usage_alert_queue",
]
