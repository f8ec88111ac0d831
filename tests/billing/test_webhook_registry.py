"""One registry of Stripe event handlers: the receiver listens to what is registered, and a
registration is all it takes to handle a new event type."""

import weakref

from djstripe.signals import WEBHOOK_SIGNALS

from billing.webhooks import registry
from billing.webhooks.receivers import queue_stripe_event


def _listening(kind: str) -> bool:
    """Whether Tally's receiver is connected to dj-stripe's signal for `kind`."""
    for entry in WEBHOOK_SIGNALS[kind].receivers:
        receiver = entry[1]
        if isinstance(receiver, weakref.ReferenceType):
            receiver = receiver()
        if receiver is queue_stripe_event:
            return True
    return False


def test_the_receiver_listens_to_exactly_the_registered_event_types():
    handled = registry.handled()
    assert "invoice.paid" in handled and "checkout.session.completed" in handled
    assert [kind for kind in WEBHOOK_SIGNALS if _listening(kind)] == sorted(
        kind for kind in WEBHOOK_SIGNALS if kind in handled
    )
    assert not _listening("customer.created")


def test_a_registered_handler_gets_the_event_and_its_result_is_the_subscription(monkeypatch):
    monkeypatch.setattr(registry, "_on", {k: list(v) for k, v in registry._on.items()})
    seen = []

    @registry.on("invoice.paid", "customer.tax_id.created")
    def handler(*, kind, object_id):
        seen.append((kind, object_id))
        return "the subscription"

    assert "customer.tax_id.created" in registry.handled()
    assert registry.dispatch("customer.tax_id.created", "txi_1") == "the subscription"
    assert registry.dispatch("customer.deleted", "cus_1") is None
    assert seen == [("customer.tax_id.created", "txi_1")]
