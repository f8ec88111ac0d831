"""The organization's Stripe customer."""

from djstripe.models import Customer

from billing import selectors
from billing.gateway.client import stripe_client
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
        "name": organization.name,
        "metadata": {"djstripe_subscriber": str(organization.pk), "tally_org": organization.slug},
    }
    # Stripe refuses an empty email (nothing to unset on a new customer): leave it out.
    if organization.email:
        params["email"] = organization.email
    if test_clock:
        params["test_clock"] = test_clock
    remote = stripe_client().v1.customers.create(
        params, {"idempotency_key": f"tally-customer-{organization.pk}"}
    )
    Customer.sync_from_stripe_data(remote)
    Customer.objects.filter(id=remote.id).update(subscriber=organization)
    return remote.id
