"""The compiled serializers of the hot endpoints agree with DRF on every input: the same
validated data, or the same error."""

import uuid

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from rest_framework import serializers

from billing.api import EntitlementCheckApi
from billing.metering.api import UsageEventsApi
from credits.api import ConsumeApi, ReservationListApi, TransactionOutput
from teams.fastio import parser, renderer

INPUTS = [ConsumeApi.Input, ReservationListApi.Input, EntitlementCheckApi.Input, UsageEventsApi.Input]
NAMES = [
    "amount",
    "action",
    "quantity",
    "tokens",
    "description",
    "reference_type",
    "reference_id",
    "metadata",
    "feature",
    "requested",
    "events",
    "ttl_seconds",
    "ammount",
]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(10**20), max_value=10**20),
    st.sampled_from([0, 1, 5, 10**9, 10**9 + 1, 10**15, 24 * 3600]),
    st.floats(allow_nan=False),
    st.text(max_size=70),
    st.sampled_from(["", "  ", " x ", "gen-ai", "bad slug", "a\x00b", "\ud800", "priority_support", "é"]),
)
values = st.recursive(
    scalars,
    lambda inner: st.one_of(
        st.lists(inner, max_size=4), st.dictionaries(st.text(max_size=5), inner, max_size=3)
    ),
    max_leaves=8,
)
bodies = st.one_of(
    st.dictionaries(st.sampled_from(NAMES), values, max_size=5),
    values,
)


def outcome(parse, data):
    try:
        return "ok", dict(parse(data))
    except serializers.ValidationError as error:
        return "error", error.detail


def drf(serializer_class):
    def parse(data):
        serializer = serializer_class(data=data)
        serializer.is_valid(raise_exception=True)
        return serializer.validated_data

    return parse


@pytest.mark.parametrize("input_class", INPUTS, ids=lambda c: c.__qualname__)
@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(data=bodies)
def test_it_agrees_with_drf_on_any_body(input_class, data):
    assert outcome(parser(input_class), data) == outcome(drf(input_class), data)


@pytest.mark.parametrize(
    ("input_class", "data"),
    [
        (ConsumeApi.Input, {"amount": 1}),
        (ConsumeApi.Input, {"action": "gen", "tokens": 30, "description": " hi ", "metadata": {"a": 1}}),
        (ConsumeApi.Input, {"action": "gen", "quantity": 3}),
        (EntitlementCheckApi.Input, {"feature": "api_calls"}),
        (EntitlementCheckApi.Input, {"feature": "api_calls", "requested": 0}),
        (UsageEventsApi.Input, {"events": [{"id": "a", "meter": "m"}, None, 3]}),
    ],
)
def test_it_takes_the_common_bodies_without_drf(input_class, data, monkeypatch):
    expected = drf(input_class)(data)
    compiled = parser(input_class)
    monkeypatch.setattr(input_class, "is_valid", lambda *a, **k: pytest.fail("deferred to DRF"))
    assert compiled(data) == expected


@pytest.mark.django_db
def test_the_transaction_output_renders_as_drf_does(org):
    from credits import services

    services.credits_grant(organization=org, amount=100, source="purchase", idempotency_key="g")
    entry = services.credits_consume(
        organization=org, amount=3, idempotency_key=str(uuid.uuid4()), metadata={"k": [1, "x"]}
    )
    render = renderer(TransactionOutput)
    assert render.__name__ == "render"  # compiled, not handed to DRF
    assert render(entry) == TransactionOutput(entry).data


@pytest.mark.django_db
@pytest.mark.parametrize("feature", ["priority_support", "api_calls", "sso", "projects"])
def test_a_decision_renders_as_drf_does(org, rf, feature):
    from billing import entitlements
    from billing.api import DecisionOutput

    request = rf.get("/")
    decision = entitlements.check(org, feature, 10**6 if feature == "api_calls" else 1)
    render = renderer(DecisionOutput)
    assert render.__name__ == "render"
    expected = DecisionOutput(decision, context={"request": request}).data
    assert render(decision, {"request": request}) == expected
