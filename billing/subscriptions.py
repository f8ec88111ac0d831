"""Subscriptions through Stripe: customers, checkout, webhooks-driven sync, changes, refunds.

Stripe says what was paid; `OrgSubscription` says what the organization may do. Every function
here that calls Stripe does so outside any database transaction, then records the result in a
short one. Webhook handlers re-read the object from Stripe instead of trusting the payload, so
events arriving twice or out of order end in the same state.
"""

from djstripe.models import Customer

from billing import selectors
from billing.stripe_client import stripe_client
from teams.models import Organization


def customer_ensure(*, organization: Organization, test_clock: str | None = None) -> str:
    """The organization's Stripe customer id, creating the customer once.

    The idempotency key makes two concurrent first checkouts create one customer; the metadata
    lets dj-stripe (and a person in the dashboard) link it back to the organization.
    """
    existing = selectors.stripe_customer_id_of(organization)
    if existing:
        return existing
    params = {
        "email": organization.email,
        "name": organization.name,
        "metadata": {"djstripe_subscriber": str(organization.pk), "tally_org": organization.slug},
    }
    if test_clock:
        params["test_clock"] = test_clock
    remote = stripe_client().v1.customers.create(
        params, {"idempotency_key": f"tally-customer-{organization.pk}"}
    )
    Customer.sync_from_stripe_data(remote)
    Customer.objects.filter(id=remote.id).update(subscriber=organization)
    return remote.id
