"""Wire protocol: parameters, auth, errors, idempotency, request ids, pagination, expand."""

import json
import urllib.error
import urllib.request

import pytest
import stripe

from stripe_sim.params import decode
from tests.stripe_sim.conftest import Sim


def test_it_decodes_nested_form_parameters_as_the_sdk_sends_them() -> None:
    pairs = [
        ("items[0][price]", "price_a"),
        ("items[0][quantity]", "2"),
        ("items[1][price]", "price_b"),
        ("metadata[org]", "acme"),
        ("expand[0]", "latest_invoice"),
        ("expand[]", "customer"),
    ]
    assert decode(pairs) == {
        "items": [{"price": "price_a", "quantity": "2"}, {"price": "price_b"}],
        "metadata": {"org": "acme"},
        "expand": ["latest_invoice", "customer"],
    }


def test_it_rejects_requests_without_a_key(sim: Sim) -> None:
    request = urllib.request.Request(f"{sim.url}/v1/customers")  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)  # noqa: S310
    assert caught.value.code == 401
    body = json.loads(caught.value.read())
    assert body["error"]["type"] == "invalid_request_error"
    assert "API key" in body["error"]["message"]


@pytest.mark.parametrize("key", ["sk_live_abc", "pk_test_abc", "sk_test_", "nonsense"])
def test_it_rejects_keys_that_are_not_secret_test_keys(sim: Sim, key: str) -> None:
    client = stripe.StripeClient(key, base_addresses={"api": sim.url}, max_network_retries=0)
    with pytest.raises(stripe.AuthenticationError):
        client.v1.customers.list()


def test_it_answers_404_resource_missing_for_unknown_ids(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.customers.retrieve("cus_doesnotexist")
    assert caught.value.http_status == 404
    assert caught.value.code == "resource_missing"
    assert caught.value.param == "id"
    assert "No such customer: 'cus_doesnotexist'" in str(caught.value.user_message)


def test_it_answers_400_with_param_for_invalid_requests(client: stripe.StripeClient) -> None:
    with pytest.raises(stripe.InvalidRequestError) as caught:
        client.v1.prices.create({"currency": "usd", "product_data": {"name": "x"}})
    assert caught.value.http_status == 400
    assert caught.value.param == "unit_amount"


def test_it_answers_404_for_unknown_urls(sim: Sim) -> None:
    headers = {"Authorization": "Bearer sk_test_x"}
    request = urllib.request.Request(f"{sim.url}/v1/nope", headers=headers)  # noqa: S310
    with pytest.raises(urllib.error.HTTPError) as caught:
        urllib.request.urlopen(request)  # noqa: S310
    assert caught.value.code == 404
    assert "Unrecognized request URL" in json.loads(caught.value.read())["error"]["message"]


def test_it_sends_a_request_id_header(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "a@example.com"})
    assert customer.last_response.request_id.startswith("req_")


def test_it_replays_the_same_response_for_a_repeated_idempotency_key(
    client: stripe.StripeClient, sim: Sim
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "create-alice"}
    first = client.v1.customers.create({"email": "alice@example.com"}, options)
    second = client.v1.customers.create({"email": "alice@example.com"}, options)
    assert first.id == second.id
    assert second.last_response.headers.get("Idempotent-Replayed") == "true"
    assert len(sim.store.all("customer")) == 1


def test_it_rejects_a_reused_idempotency_key_with_other_parameters(
    client: stripe.StripeClient,
) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "create-bob"}
    client.v1.customers.create({"email": "bob@example.com"}, options)
    with pytest.raises(stripe.IdempotencyError):
        client.v1.customers.create({"email": "charlie@example.com"}, options)


def test_it_replays_errors_for_a_repeated_idempotency_key(client: stripe.StripeClient) -> None:
    options: stripe.RequestOptions = {"idempotency_key": "bad-price"}
    for _ in range(2):
        with pytest.raises(stripe.InvalidRequestError):
            client.v1.prices.create({"currency": "usd", "product": "prod_missing"}, options)


def test_it_paginates_lists_newest_first(client: stripe.StripeClient) -> None:
    ids = [client.v1.customers.create({"email": f"u{i}@example.com"}).id for i in range(5)]
    newest_first = list(reversed(ids))
    page = client.v1.customers.list({"limit": 2})
    assert [c.id for c in page.data] == newest_first[:2]
    assert page.has_more is True
    after = client.v1.customers.list({"limit": 2, "starting_after": page.data[-1].id})
    assert [c.id for c in after.data] == newest_first[2:4]
    last = client.v1.customers.list({"limit": 2, "starting_after": after.data[-1].id})
    assert [c.id for c in last.data] == newest_first[4:]
    assert last.has_more is False
    before = client.v1.customers.list({"limit": 2, "ending_before": newest_first[4]})
    assert [c.id for c in before.data] == newest_first[2:4]
    assert [c.id for c in page.auto_paging_iter()] == newest_first


def test_it_expands_nested_paths(client: stripe.StripeClient) -> None:
    customer = client.v1.customers.create({"email": "a@example.com", "payment_method": "pm_card_visa"})
    product = client.v1.products.create({"name": "Pro"})
    price = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 1000,
            "product": product.id,
            "recurring": {"interval": "month"},
        }
    )
    pm = client.v1.payment_methods.list({"customer": customer.id}).data[0]
    sub = client.v1.subscriptions.create(
        {
            "customer": customer.id,
            "items": [{"price": price.id}],
            "default_payment_method": pm.id,
            "expand": ["latest_invoice", "customer", "items.data.price.product"],
        }
    )
    assert sub.customer.email == "a@example.com"
    assert sub.latest_invoice.status == "paid"
    assert sub["items"].data[0].price.product.name == "Pro"
    listed = client.v1.subscriptions.list({"expand": ["data.customer"]})
    assert listed.data[0].customer.id == customer.id


def test_it_reads_the_account(client: stripe.StripeClient) -> None:
    account = client.v1.accounts.retrieve_current()
    assert account.id.startswith("acct_")
    assert account.charges_enabled is True
