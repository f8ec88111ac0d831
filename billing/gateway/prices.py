"""Stripe products and prices found by their stable keys, or created; a changed price is a new
price that takes over the key."""

import hashlib
import json

import stripe


def price_matches(remote, params: dict) -> bool:
    recurring = params.get("recurring")
    remote_recurring = remote.get("recurring")
    if bool(recurring) != bool(remote_recurring) or remote.get("currency") != params["currency"]:
        return False
    # A price made without a tax behaviour (a credit package's) has Stripe's "unspecified".
    wanted_tax = params.get("tax_behavior", "unspecified")
    if (remote.get("tax_behavior") or "unspecified") != wanted_tax or not _same_options(remote, params):
        return False
    if recurring and (
        remote_recurring.get("interval") != recurring["interval"]
        # Stripe's default: a price sent without one (a recurring add-on's) is licensed.
        or remote_recurring.get("usage_type") != recurring.get("usage_type", "licensed")
        or (recurring.get("meter") and remote_recurring.get("meter") != recurring["meter"])
    ):
        return False
    if "tiers" in params:
        remote_tiers = [
            {
                "up_to": t.get("up_to") if t.get("up_to") is not None else "inf",
                "unit_amount": t.get("unit_amount") or 0,
                "flat_amount": t.get("flat_amount") or 0,
            }
            for t in (remote.get("tiers") or [])
        ]
        return (
            remote.get("billing_scheme") == "tiered"
            and remote.get("tiers_mode") == params["tiers_mode"]
            and remote_tiers == params["tiers"]
        )
    return remote.get("billing_scheme") == "per_unit" and remote.get("unit_amount") == params["unit_amount"]


def _same_options(remote, params: dict) -> bool:
    remote_options = {
        currency: (
            {
                "tiers": [
                    {
                        "up_to": t.get("up_to") if t.get("up_to") is not None else "inf",
                        "unit_amount": t.get("unit_amount") or 0,
                        "flat_amount": t.get("flat_amount") or 0,
                    }
                    for t in option.get("tiers")
                ]
            }
            if option.get("tiers")
            else {"unit_amount": option.get("unit_amount")}
        )
        | {"tax_behavior": option.get("tax_behavior")}
        for currency, option in (remote.get("currency_options") or {}).items()
        if currency != remote.get("currency")
    }
    return remote_options == params.get("currency_options", {})


def stripe_idempotency_key(*parts) -> str:
    digest = hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()
    return f"tally-catalog-{digest[:40]}"


def product_ensure(
    client, product_id: str, name: str, description: str, key: str, dry_run: bool, lines: list[str]
) -> str:
    try:
        remote = client.v1.products.retrieve(product_id)
    except stripe.InvalidRequestError as error:
        if error.code != "resource_missing":
            raise
        lines.append(f"+ stripe product {product_id}")
        if not dry_run:
            params = {"id": product_id, "name": name, "metadata": {"tally_key": key}}
            if description:
                params["description"] = description
            client.v1.products.create(params, {"idempotency_key": stripe_idempotency_key(params)})
        return product_id
    if remote.name != name or (remote.description or "") != description or not remote.active:
        lines.append(f"~ stripe product {product_id}")
        if not dry_run:
            client.v1.products.update(product_id, {"name": name, "description": description, "active": True})
    return product_id


def price_ensure(
    client,
    lookup_key: str,
    product_id: str,
    params: dict,
    label: str,
    dry_run: bool,
    lines: list[str],
    *,
    archive_previous: bool = True,
) -> str:
    found = client.v1.prices.list(
        {"lookup_keys": [lookup_key], "limit": 1, "expand": ["data.tiers", "data.currency_options"]}
    ).data
    current = found[0] if found else None
    if current is not None and current.get("product") == product_id and price_matches(current, params):
        return current.id
    lines.append(f"{'~' if current else '+'} stripe price {lookup_key}: {label}")
    if dry_run:
        return current.id if current else ""
    # Prices are immutable: a new amount is a new price that takes over the lookup key, and
    # the old one is archived (subscriptions already on it keep working).
    create = {**params, "product": product_id, "lookup_key": lookup_key, "transfer_lookup_key": True}
    price = client.v1.prices.create(create, {"idempotency_key": stripe_idempotency_key(create)})
    if current is not None and archive_previous:
        client.v1.prices.update(current.id, {"active": False})
        lines.append(f"- stripe price {current.id} archived")
    return price.id


def price_archive(client, price_id: str) -> None:
    """Stop selling a price (Stripe never deletes one; its subscriptions keep working)."""
    client.v1.prices.update(price_id, {"active": False})


def price_restore(client, price_id: str) -> bool:
    """Sell an archived price again (its plan was reactivated); False if it was already selling."""
    if client.v1.prices.retrieve(price_id).active:
        return False
    client.v1.prices.update(price_id, {"active": True})
    return True


def meter_rename(client, meter_id: str, display_name: str) -> None:
    client.v1.billing.meters.update(meter_id, {"display_name": display_name})


def subscription_price_move(client, subscription_id: str, from_price: str, to_price: str) -> bool:
    """Put a subscription's item on another price without proration: the period already paid
    stays as it was, and the next renewal invoice bills the new price. False if no item of the
    subscription is on `from_price` (already moved)."""
    remote = client.v1.subscriptions.retrieve(subscription_id)
    item = next((i for i in remote["items"].data if i.price.id == from_price), None)
    if item is None:
        return False
    client.v1.subscriptions.update(
        subscription_id,
        {"items": [{"id": item.id, "price": to_price}], "proration_behavior": "none"},
        {"idempotency_key": stripe_idempotency_key("price-move", subscription_id, from_price, to_price)},
    )
    return True
