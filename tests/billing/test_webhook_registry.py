"""One registry of Stripe event handlers: the receiver listens to what is registered, and a
registration is all it takes to handle a new event type."""

import weakref

import pytest
from djstripe.signals import WEBHOOK_SIGNALS

from billing.webhooks import registry
from billing.webhooks.receivers import queue_stripe_event
from credits import webhooks


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


def test_it_hands_the_reread_object_to_handlers_registered_through_the_same_decorator(monkeypatch):
    monkeypatch.setattr(registry, "_reread", {})
    seen = []

    @registry.on("charge.refunded", reread=True)
    def follower(*, kind, obj):
        seen.append((kind, obj))

    registry.stripe_event_notify("charge.refunded", "the charge")
    assert seen == [("charge.refunded", "the charge")]
    # A follower of re-read objects is not a webhook event type the receiver listens to.
    assert "charge.dispute" not in registry.handled()


def test_it_refuses_a_reread_registration_for_an_object_billing_never_hands_on():
    with pytest.raises(ValueError, match="REREAD_KINDS"):
        registry.on("invoice.paid", reread=True)


def test_it_registers_the_credits_followers_of_refunds_and_disputes():
    assert webhooks.charge_refunded in registry._reread["charge.refunded"]
    assert webhooks.charge_disputed in registry._reread["charge.dispute"]


@pytest.mark.django_db
@pytest.mark.parametrize(
    "kind, obj",
    [
        ("customer.discount.deleted", {"id": "di_1", "object": "discount", "subscription": None}),
        ("customer.updated", {"id": "cus_1", "object": "customer"}),
    ],
)
def test_a_handler_reads_the_payload_of_its_own_event_by_its_id(settings, kind, obj):
    # The payload was found by its type and object id, a scan of every stored event's JSON: a
    # webhook cost grew with the events table, and a late event read a newer one's payload.
    from django.db import connection
    from django.test.utils import CaptureQueriesContext
    from djstripe.models import Event

    from billing.webhooks import dispatch

    settings.USE_STRIPE_TAX = True
    # Its own event changed the email only (nothing to sync); a newer one changed the name.
    for event_id, changed in (("evt_own", {"email": "a@b"}), ("evt_newer", {"name": "x"})):
        Event.objects.create(id=event_id, type=kind, data={"object": obj, "previous_attributes": changed})
    with CaptureQueriesContext(connection) as queries:
        dispatch.handle("evt_own", kind, obj["id"])
    reads = [q["sql"] for q in queries if 'FROM "djstripe_event"' in q["sql"]]
    assert len(reads) == 1
    assert "'evt_own'" in reads[0] and "->" not in reads[0]
