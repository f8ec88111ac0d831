"""The simulator refuses what Stripe refuses, in Stripe's words, and checks what it serves against
Stripe's shapes (both from the pinned SDK, through ``stripe_sim/data/stripe_api.json``)."""

import json
from typing import Any

import pytest
import stripe

from stripe_sim import strict
from stripe_sim.sdk_schema import DATA_FILE
from tests.stripe_sim import helpers
from tests.stripe_sim.conftest import Sim


def _refused(call: Any) -> stripe.InvalidRequestError:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        call()
    assert caught.value.http_status == 400
    assert caught.value.error.type == "invalid_request_error"
    return caught.value


def test_it_refuses_an_unknown_top_level_parameter(client: stripe.StripeClient) -> None:
    error = _refused(lambda: client.v1.customers.create({"bogus_param": "1"}))  # type: ignore[typeddict-unknown-key]
    assert error.code == "parameter_unknown"
    assert error.param == "bogus_param"
    assert error.error.message == "Received unknown parameter: bogus_param"


def test_it_refuses_an_unknown_nested_parameter_naming_it_in_bracket_form(
    client: stripe.StripeClient,
) -> None:
    price = helpers.price(client)
    cus = helpers.customer(client)
    error = _refused(
        lambda: client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": price.id, "bogus": "1"}]}  # type: ignore[typeddict-unknown-key]
        )
    )
    assert (error.code, error.param) == ("parameter_unknown", "items[0][bogus]")
    assert error.error.message == "Received unknown parameter: items[0][bogus]"
    assert client.v1.subscriptions.list().data == []  # nothing was made


def test_it_refuses_a_value_of_the_wrong_type(client: stripe.StripeClient) -> None:
    error = _refused(lambda: client.v1.customers.create({"balance": "lots"}))  # type: ignore[typeddict-item]
    assert (error.code, error.param) == ("parameter_invalid_integer", "balance")
    assert error.error.message == "Invalid integer: lots"
    cus = helpers.customer(client)
    nested = _refused(
        lambda: client.v1.subscriptions.create(
            {"customer": cus.id, "items": [{"price": "price_x", "quantity": "two"}]}  # type: ignore[typeddict-item]
        )
    )
    assert (nested.code, nested.param) == ("parameter_invalid_integer", "items[0][quantity]")


def test_it_refuses_an_empty_string_where_a_value_cannot_be_unset(client: stripe.StripeClient) -> None:
    error = _refused(lambda: client.v1.customers.create({"email": ""}))
    assert (error.code, error.param) == ("parameter_invalid_empty", "email")
    assert error.error.message.startswith("You passed an empty string for 'email'.")
    # Where the SDK's types allow ``''`` it unsets the field, as Stripe does.
    cus = client.v1.customers.create({"email": "a@example.com", "metadata": {"k": "v"}})
    assert client.v1.customers.update(cus.id, {"metadata": ""}).metadata.to_dict() == {}


def test_it_refuses_a_value_outside_an_enum(client: stripe.StripeClient) -> None:
    error = _refused(lambda: client.v1.customers.create({"tax_exempt": "sometimes"}))  # type: ignore[typeddict-item]
    assert error.param == "tax_exempt"
    assert error.error.message == "Invalid tax_exempt: must be one of exempt, none, or reverse"


def test_it_refuses_to_expand_a_field_that_is_not_expandable(client: stripe.StripeClient) -> None:
    cus = helpers.customer(client)
    error = _refused(lambda: client.v1.customers.retrieve(cus.id, {"expand": ["email"]}))
    assert error.param == "expand"
    assert error.error.message == "This property cannot be expanded (email)."
    nested = _refused(lambda: client.v1.customers.list({"expand": ["data.invoice_settings.footer"]}))
    assert nested.error.message == "This property cannot be expanded (footer)."
    # Ids, nested paths through them, list items and fields left out unless asked for all expand.
    price = helpers.price(client)
    sub = client.v1.subscriptions.create(
        {
            "customer": cus.id,
            "items": [{"price": price.id}],
            "expand": ["latest_invoice.payments", "customer.invoice_settings.default_payment_method"],
        }
    )
    assert sub.latest_invoice.payments.data[0].invoice == sub.latest_invoice.id
    assert sub.customer.invoice_settings.default_payment_method.object == "payment_method"
    deep = "data.customer.invoice_settings.default_payment_method"
    listed = client.v1.subscriptions.list({"expand": [deep]})
    assert listed.data[0].customer.invoice_settings.default_payment_method.object == "payment_method"


def test_it_saves_no_result_for_a_refused_request_under_its_idempotency_key(
    client: stripe.StripeClient,
) -> None:
    key = "idem-refused-then-fixed"
    _refused(
        lambda: client.v1.customers.create(
            {"email": "a@example.com", "bogus": "1"},  # type: ignore[typeddict-unknown-key]
            {"idempotency_key": key},
        )
    )
    # The same key with the mistake fixed is a first request, not a replay nor a mismatch.
    cus = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": key})
    assert cus.email == "a@example.com"
    again = client.v1.customers.create({"email": "a@example.com"}, {"idempotency_key": key})
    assert again.id == cus.id


def test_it_covers_every_route_the_simulator_serves_from_the_sdk(sim: Sim) -> None:
    """A route another part of the simulator adds is validated with no further work, as long
    as Stripe has it; one Stripe does not have would have no parameters to check against."""
    from stripe_sim.routing import ROUTES

    # The charge's refunds list (``charge.refunds.url``) is in Stripe's API but not in the SDK.
    beyond_sdk = {"GET /v1/charges/<id>/refunds"}
    unknown = []
    for method, rule, _ in ROUTES:
        if f"{method} {rule}" in beyond_sdk:
            continue
        path = rule.replace("<id>", "x_1").replace("<", "").replace(">", "")
        if strict.schema().operation(method, path) is None:
            unknown.append(f"{method} {rule}")
    assert unknown == []


def test_the_schema_was_made_from_the_installed_sdk() -> None:
    """Bumping ``stripe`` without running ``scripts/stripe-sim-schema`` fails here."""
    data = json.loads(DATA_FILE.read_text())
    assert (data["sdk_version"], data["api_version"]) == (stripe.VERSION, stripe.api_version)
    assert data["node_types_version"]


def test_it_reports_a_shape_violation_naming_object_field_expected_and_actual() -> None:
    # A checker of its own: these made-up violations are not the simulator's.
    checker = strict.Strict()
    body = {"id": "cus_1", "object": "customer", "balance": "12"}
    found = strict.check_response("GET", "/v1/customers/cus_1", body, into=checker)
    assert checker.take() == found
    assert checker.violations_total == len(found)
    balance = next(v for v in found if v.field == "balance")
    assert (balance.object, balance.expected, balance.actual) == ("customer", "int or null", "12")
    assert 'customer.balance expected int or null, got "12"' in str(balance)
    assert any(v.field == "created" and v.actual is strict._MISSING for v in found)


def test_it_reports_an_event_type_stripe_does_not_have() -> None:
    event = {
        "id": "evt_1",
        "object": "event",
        "api_version": "2026-08-26.dahlia",
        "created": 1,
        "data": {"object": {"id": "x", "object": "payment_intent"}},
        "livemode": False,
        "pending_webhooks": 0,
        "request": {"id": None, "idempotency_key": None},
        "type": "payment_intent.updated",
    }
    found = strict.check_event(event, into=strict.Strict())
    assert any(v.field == "type" and v.actual == "payment_intent.updated" for v in found)


def test_it_updates_a_setup_intent(client: stripe.StripeClient) -> None:
    cus = helpers.customer(client)
    seti = client.v1.setup_intents.create({"customer": cus.id})
    change = {"description": "card for Acme", "metadata": {"a": "1"}}
    updated = client.v1.setup_intents.update(seti.id, change)  # type: ignore[arg-type]
    assert (updated.description, updated.metadata.to_dict()) == ("card for Acme", {"a": "1"})


def test_it_serves_and_logs_a_wrong_shape_rather_than_failing_the_request(
    client: stripe.StripeClient, sim: Sim, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The demo runs the same checks: a violation is logged, the caller still gets its answer.
    (The test suite fails the test instead, from what ``STRICT`` recorded.)"""
    cus = helpers.customer(client)
    # A checker of its own, so the suite's count of violations stays the simulator's.
    monkeypatch.setattr(strict, "STRICT", strict.Strict())
    with sim.store.lock:
        sim.store.objects["customer"][cus.id]["balance"] = "12"  # a simulator bug, made here
    with caplog.at_level("WARNING", logger="stripe_sim.strict"):
        served = client.v1.customers.retrieve(cus.id)
    assert served.balance == "12"
    recorded = strict.STRICT.take()  # taken here, so this test does not fail for it
    # The response, and the customer.updated that the change brought.
    assert {(v.object, v.field) for v in recorded} == {("customer", "balance")}
    assert {v.where for v in recorded} == {f"GET /v1/customers/{cus.id}", "event customer.updated"}
    assert "customer.balance expected int or null" in caplog.text
