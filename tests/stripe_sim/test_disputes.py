"""Disputes as Stripe's test mode makes them: the dispute card's charge succeeds and is disputed,
and evidence (or accepting) closes the dispute, each step with Stripe's events."""

import json
from pathlib import Path

import pytest
import stripe

from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim

DISPUTE = json.loads((Path(__file__).parent / "stripe_fixtures.json").read_text())["dispute"]


def _disputed_payment(client: stripe.StripeClient, payment_method: str = "pm_card_createDispute"):
    cus = helpers.customer(client)
    pi = client.v1.payment_intents.create(
        {
            "amount": 2_000,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": payment_method,
            "confirm": True,
        }
    )
    (dispute,) = client.v1.disputes.list({"payment_intent": pi.id}).data
    return pi, dispute


@pytest.mark.parametrize("token", ["pm_card_createDispute"])
def test_the_dispute_card_succeeds_then_is_disputed_in_stripes_shape(client, sim: Sim, token) -> None:
    pi, dispute = _disputed_payment(client, token)
    assert pi.status == "succeeded"
    charge = client.v1.charges.retrieve(pi.latest_charge)
    assert charge.disputed is True
    data = dispute.to_dict()
    assert sorted(set(DISPUTE) - set(data)) == []
    assert sorted(set(DISPUTE["evidence"]) - set(data["evidence"])) == []
    assert sorted(set(DISPUTE["evidence_details"]) - set(data["evidence_details"])) == []
    assert (dispute.status, dispute.reason, dispute.amount, dispute.charge, dispute.payment_intent) == (
        "needs_response",
        "fraudulent",
        2_000,
        charge.id,
        pi.id,
    )
    assert dispute.id.startswith("dp_") and dispute.is_charge_refundable is False
    (withdrawn,) = dispute.balance_transactions
    assert (withdrawn.amount, withdrawn.reporting_category, withdrawn.source) == (
        -2_000,
        "dispute",
        dispute.id,
    )
    assert client.v1.disputes.retrieve(dispute.id).id == dispute.id
    events = sim.events()
    assert events.index("payment_intent.succeeded") < events.index("charge.dispute.created")
    assert events.index("charge.dispute.created") < events.index("charge.dispute.funds_withdrawn")
    # A charged-back payment cannot be refunded as well.
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.refunds.create({"payment_intent": pi.id})
    assert refused.value.code == "charge_disputed"


def test_the_payment_method_token_and_card_number_dispute_too(client, sim: Sim) -> None:
    pm = client.v1.payment_methods.create({"type": "card", "card": {"token": "tok_createDispute"}})
    assert pm.card.last4 == "0259"
    cus = helpers.customer(client)
    client.v1.payment_intents.create(
        {"amount": 500, "currency": "usd", "customer": cus.id, "payment_method": pm.id, "confirm": True}
    )
    assert sim.events().count("charge.dispute.created") == 1
    # An ordinary card is never disputed.
    client.v1.payment_intents.create(
        {
            "amount": 500,
            "currency": "usd",
            "customer": cus.id,
            "payment_method": "pm_card_visa",
            "confirm": True,
        }
    )
    assert sim.events().count("charge.dispute.created") == 1


def test_winning_evidence_closes_the_dispute_as_won_and_reinstates_the_funds(client, sim: Sim) -> None:
    _, dispute = _disputed_payment(client)
    staged = client.v1.disputes.update(
        dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}, "submit": False}
    )
    assert staged.status == "needs_response" and staged.evidence_details.submission_count == 0
    won = client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}})
    assert won.status == "won" and won.evidence_details.submission_count == 1
    assert [t.amount for t in won.balance_transactions] == [-2_000, 2_000]
    assert sim.events()[-3:] == [
        "charge.dispute.updated",
        "charge.dispute.closed",
        "charge.dispute.funds_reinstated",
    ]
    with pytest.raises(stripe.InvalidRequestError):
        client.v1.disputes.close(dispute.id)


@pytest.mark.parametrize("how", ["losing_evidence", "accept"])
def test_losing_evidence_or_accepting_closes_the_dispute_as_lost(client, sim: Sim, how) -> None:
    _, dispute = _disputed_payment(client)
    if how == "accept":
        lost = client.v1.disputes.close(dispute.id)
    else:
        lost = client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "losing_evidence"}})
    assert lost.status == "lost" and len(lost.balance_transactions) == 1
    assert sim.events()[-1] == "charge.dispute.closed"
    assert "charge.dispute.funds_reinstated" not in sim.events()
    with pytest.raises(stripe.InvalidRequestError) as refused:
        client.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}})
    assert refused.value.code == "charge_dispute_closed"
