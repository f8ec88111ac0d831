from dataclasses import dataclass, field
from pathlib import Path

from django.utils import timezone

from billing import discounts
from billing.catalog.apply import catalog_apply, catalog_compare
from billing.catalog.spec import DEFAULT_PATH, CatalogError, load_catalog
from billing.gateway.client import stripe_client
from billing.gateway.prices import price_ensure, product_ensure, stripe_idempotency_key
from billing.models import Addon, Feature, Plan, PlanLineItem, PriceVersion, Product


@dataclass
class SyncReport:
    """The three-way difference: the file against the database, the database against Stripe."""

    loaded: bool = False  # the file was applied to the database (first load, or --from-file)
    file_vs_database: list[str] = field(default_factory=list)
    database_to_stripe: list[str] = field(default_factory=list)
    file_problems: list[str] = field(default_factory=list)  # the file is invalid; the database was kept

    @property
    def changes(self) -> list[str]:
        """What this run changed (or, dry, would change): the file's lines count only when applied."""
        return (self.file_vs_database if self.loaded else []) + self.database_to_stripe


def catalog_sync(
    *, path: Path = DEFAULT_PATH, dry_run: bool = False, push: bool = True, from_file: bool = False
) -> SyncReport:
    """Compare the catalog file, the database and Stripe, and push the database to Stripe.

    The database is the catalog once it is loaded: staff edit it in the admin, and the file is its
    import and export. So the file is applied only to an empty catalog (the first load) or when
    asked (`from_file`); otherwise its differences are reported and the database is kept.

    An invalid file raises `CatalogError` only when it was to be applied; otherwise its problems
    are reported and the database is still pushed (a typo in the file must not stop the push)."""
    report = SyncReport(loaded=from_file or not Plan.objects.exists())
    try:
        spec = load_catalog(path)
    except CatalogError as error:
        if report.loaded:
            raise
        report.file_problems = error.problems
    else:
        if report.loaded:
            report.file_vs_database = catalog_apply(spec, dry_run=dry_run)
        else:
            report.file_vs_database = catalog_compare(spec)
    if push:
        report.database_to_stripe = catalog_push(dry_run=dry_run)
    return report


def _money(amount: int | None, currency: str) -> str:
    return f"{(amount or 0) / 100:,.2f} {currency.upper()}"  # display only


def _price_params(item: PlanLineItem, meter_id: str | None) -> dict:
    plan = item.plan
    params: dict = {
        "currency": plan.currency,
        "recurring": {
            "interval": plan.interval,
            "usage_type": "metered" if item.kind == PlanLineItem.Kind.METERED else "licensed",
        },
        "nickname": f"{plan.name}: {item.key}",
        "metadata": {"tally_plan": plan.key, "tally_item": item.key},
        "tax_behavior": plan.tax_behavior,
    }
    if meter_id:
        params["recurring"]["meter"] = meter_id
    if item.tiers:
        params["billing_scheme"] = "tiered"
        params["tiers_mode"] = item.tiers_mode
        params["tiers"] = [
            {
                "up_to": t["up_to"] if t.get("up_to") is not None else "inf",
                "unit_amount": t.get("unit_amount", 0),
                "flat_amount": t.get("flat_amount", 0),
            }
            for t in item.tiers
        ]
    else:
        params["unit_amount"] = item.unit_amount
    options = {}
    for currency, option in sorted((item.currency_options or {}).items()):
        if option.get("tiers"):
            options[currency] = {
                "tiers": [
                    {
                        "up_to": t["up_to"] if t.get("up_to") is not None else "inf",
                        "unit_amount": t.get("unit_amount", 0),
                        "flat_amount": t.get("flat_amount", 0),
                    }
                    for t in option["tiers"]
                ]
            }
        else:
            options[currency] = {"unit_amount": option["unit_amount"]}
        options[currency]["tax_behavior"] = plan.tax_behavior
    if options:
        params["currency_options"] = options
    return params


def _addon_params(addon: Addon) -> dict:
    params: dict = {
        "currency": addon.currency,
        "unit_amount": addon.unit_amount,
        "nickname": addon.name,
        "metadata": {"tally_addon": addon.key},
        "tax_behavior": addon.tax_behavior,
    }
    if addon.kind == Addon.Kind.RECURRING:
        params["recurring"] = {"interval": addon.interval}
    # The add-on in the plans' other currencies: a subscription in euros takes it in euros.
    options = {
        currency: {"unit_amount": option["unit_amount"], "tax_behavior": addon.tax_behavior}
        for currency, option in sorted((addon.currency_options or {}).items())
    }
    if options:
        params["currency_options"] = options
    return params


def _ensure_meter(client, feature: Feature, dry_run: bool, lines: list[str]) -> str | None:
    for meter in client.v1.billing.meters.list({"limit": 100}).auto_paging_iter():
        if meter.event_name == feature.key and meter.status == "active":
            return meter.id
    lines.append(f"+ stripe meter {feature.key}")
    if dry_run:
        return None
    params = {
        "display_name": feature.name,
        "event_name": feature.key,
        "default_aggregation": {"formula": "sum"},
        "customer_mapping": {"type": "by_id", "event_payload_key": "stripe_customer_id"},
        "value_settings": {"event_payload_key": "value"},
    }
    return client.v1.billing.meters.create(params, {"idempotency_key": stripe_idempotency_key(params)}).id


def catalog_push(*, dry_run: bool = False) -> list[str]:
    """Create or find again every product, price and meter in Stripe. Safe to run repeatedly:
    products have fixed ids, prices are found by lookup key, meters by event name."""
    client = stripe_client()
    lines: list[str] = []
    items = list(PlanLineItem.objects.filter(plan__is_active=True).select_related("plan__product", "feature"))
    priced_products = {item.plan.product_id for item in items}
    meters: dict[int, str | None] = {}
    for product in Product.objects.filter(pk__in=priced_products):
        product_id = product_ensure(
            client, f"tally_{product.key}", product.name, product.description, product.key, dry_run, lines
        )
        if not dry_run and product.stripe_product_id != product_id:
            Product.objects.filter(pk=product.pk).update(stripe_product_id=product_id)
    for item in items:
        meter_id = None
        if item.kind == PlanLineItem.Kind.METERED:
            if item.feature_id not in meters:
                meters[item.feature_id] = _ensure_meter(client, item.feature, dry_run, lines)
            meter_id = meters[item.feature_id]
        params = _price_params(item, meter_id)
        label = (
            f"{_money(item.unit_amount, item.plan.currency)}"
            if not item.tiers
            else f"{item.tiers_mode} tiers"
        ) + f" per {item.plan.interval}"
        price_id = price_ensure(
            client, item.lookup_key, f"tally_{item.plan.product.key}", params, label, dry_run, lines
        )
        if not dry_run and item.stripe_price_id != price_id:
            PlanLineItem.objects.filter(pk=item.pk).update(stripe_price_id=price_id)
            # Plan versions: the price sold until now (archived by price_ensure) and the new one.
            if item.stripe_price_id:
                PriceVersion.objects.filter(stripe_price_id=item.stripe_price_id).update(
                    archived_at=timezone.now()
                )
            PriceVersion.objects.get_or_create(
                stripe_price_id=price_id,
                defaults={"line_item": item, "unit_amount": item.unit_amount, "tiers": item.tiers},
            )
    for addon in Addon.objects.filter(is_active=True):
        product_id = product_ensure(
            client, f"tally_addon_{addon.key}", addon.name, addon.description, addon.key, dry_run, lines
        )
        price_id = price_ensure(
            client,
            addon.lookup_key,
            product_id,
            _addon_params(addon),
            _money(addon.unit_amount, addon.currency),
            dry_run,
            lines,
        )
        if not dry_run:
            Addon.objects.filter(pk=addon.pk).update(stripe_product_id=product_id, stripe_price_id=price_id)
    lines += discounts.coupons_push(dry_run=dry_run)
    return lines
