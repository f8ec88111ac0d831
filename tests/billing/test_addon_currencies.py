"""Add-ons priced in the catalog's currencies, as plans are: the file, the model, the admin, the
push to Stripe as `currency_options` on the add-on's price, and an organization billed in euros
buying its add-ons in euros against the simulator (which, as Stripe, refuses mixed currencies)."""

import copy
import json
import tomllib

import pytest
import stripe
from django.urls import reverse

from billing import subscriptions
from billing.catalog import DEFAULT_PATH, CatalogError, catalog_push, parse_catalog
from billing.catalog.export import catalog_export_data
from billing.gateway.client import stripe_client
from billing.models import Addon, AddonPurchase, Plan
from billing.subscriptions import addons
from common.errors import ServiceError
from tests.billing.conftest import pay_hosted_checkout
from tests.billing.test_catalog_admin import form_of
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


def test_the_catalog_prices_add_ons_in_euros_too():
    assert Addon.objects.get(key="extra_seats").currencies == ["usd", "eur"]
    assert Addon.objects.get(key="extra_seats").unit_amount_in("eur") == 8_900
    assert Addon.objects.get(key="extra_projects").unit_amount_in("eur") == 900
    assert Addon.objects.get(key="training_package").currencies == ["usd"]
    assert Addon.objects.get(key="training_package").unit_amount_in("eur") is None
    # The export carries them, so that the file and the database stay one catalog.
    exported = catalog_export_data()["addons"]
    assert exported["extra_seats"]["currency_options"] == {"eur": {"unit_amount": 8_900}}
    assert "currency_options" not in exported["training_package"]
    parse_catalog(catalog_export_data())


@pytest.mark.parametrize(
    "option, problem",
    [
        ({"usd": {"unit_amount": 1}}, "another currency than the catalog's"),
        ({"EUR": {"unit_amount": 1}}, "another currency than the catalog's"),
        ({"eur": {"unit_amount": -5}}, "a whole number of cents >= 0"),
        ({"eur": {"unit_amount": 1.5}}, "a whole number of cents >= 0"),
        ({"eur": {"tiers": [{"unit_amount": 5}]}}, "{ unit_amount = ... }"),
        ({"eur": 900}, "{ unit_amount = ... }"),
    ],
    ids=["own-currency", "uppercase", "negative", "float", "tiers", "bare-number"],
)
def test_bad_add_on_currency_options_are_refused(option, problem):
    with open(DEFAULT_PATH, "rb") as handle:
        data = copy.deepcopy(tomllib.load(handle))
    data["addons"]["extra_seats"]["currency_options"] = option
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    assert any(
        p.startswith("addon 'extra_seats' currency_options") and problem in p for p in error.value.problems
    ), error.value.problems


def test_add_on_prices_go_to_stripe_with_their_currency_options(stripe_sim):
    catalog_push()
    addon = Addon.objects.get(key="extra_seats")
    price = stripe_client().v1.prices.retrieve(addon.stripe_price_id, {"expand": ["currency_options"]})
    assert (price.currency, price.unit_amount) == ("usd", 9_900)
    assert (price.currency_options["eur"].unit_amount, price.currency_options["eur"].tax_behavior) == (
        8_900,
        "exclusive",
    )
    assert catalog_push() == []  # found again, not pushed twice
    # A new amount in euros is a new price that takes over the lookup key.
    Addon.objects.filter(pk=addon.pk).update(currency_options={"eur": {"unit_amount": 7_900}})
    assert any("stripe price tally:addon:extra_seats" in line for line in catalog_push())
    addon.refresh_from_db()
    price = stripe_client().v1.prices.retrieve(addon.stripe_price_id, {"expand": ["currency_options"]})
    assert price.currency_options["eur"].unit_amount == 7_900


def test_staff_edit_an_add_ons_euro_price_in_the_admin(
    client, stripe_sim, django_capture_on_commit_callbacks
):
    catalog_push()
    client.force_login(UserFactory(is_staff=True, is_superuser=True))
    addon = Addon.objects.get(key="extra_projects")
    url = reverse("admin:billing_addon_change", args=[addon.pk])
    data = form_of(client, url)
    assert json.loads(data["currency_options"]) == {"eur": {"unit_amount": 900}}
    data.update({"currency_options": '{"eur": {"unit_amount": -1}}', "_save": "Save"})
    refused = client.post(url, data)
    assert refused.status_code == 200 and "a unit_amount in cents, 0 or more" in refused.content.decode()
    data["currency_options"] = '{"eur": {"unit_amount": 950}}'
    with django_capture_on_commit_callbacks(execute=True):
        assert client.post(url, data).status_code == 302
    addon.refresh_from_db()
    price = stripe_client().v1.prices.retrieve(addon.stripe_price_id, {"expand": ["currency_options"]})
    assert price.currency_options["eur"].unit_amount == 950


def subscribe_in_euros(browser, org, plan="pro_monthly", **extra):
    response = browser.post(
        reverse("billing_checkout", args=[org.slug]), {"plan": plan, "currency": "eur", **extra}
    )
    assert response.status_code == 302, response.content.decode()
    assert pay_hosted_checkout(response["Location"]).status_code == 303
    assert subscriptions.billing_currency(org) == "eur"
    return response


@pytest.mark.django_db(transaction=True)
def test_a_customer_billed_in_euros_buys_add_ons_in_euros(stripe_world, client_for, org, owner):
    browser = client_for(owner)
    subscribe_in_euros(browser, org)
    page = browser.get(reverse("billing", args=[org.slug])).content.decode()
    assert "€89" in page and "$99" not in page  # the five-seat pack, in euros
    assert 'id="addon-training_package"' not in page  # not sold in euros: not offered

    # A one-time pack: Checkout in payment mode, in euros.
    to_stripe = browser.post(reverse("billing_addon_buy", args=[org.slug, "extra_seats"]), {"quantity": "2"})
    purchase = AddonPurchase.objects.get(organization=org, addon__key="extra_seats")
    assert (purchase.currency, purchase.unit_amount, purchase.amount) == ("eur", 8_900, 17_800)
    session = stripe_client().v1.checkout.sessions.retrieve(purchase.stripe_checkout_session_id)
    assert (session.mode, session.currency, session.amount_total) == ("payment", "eur", 17_800)
    assert pay_hosted_checkout(to_stripe["Location"]).status_code == 303
    purchase.refresh_from_db()
    assert purchase.status == "granted"

    # A recurring add-on: an item of the euro subscription, prorated and then billed in euros.
    preview = addons.addon_subscription_preview(
        organization=org, addon=Addon.objects.get(key="extra_projects"), quantity=1
    )
    assert (preview.currency, preview.recurring) == ("eur", 900)
    assert preview.prorated == 0  # Pro starts with a trial: nothing to prorate until it ends
    added = addons.addon_subscription_add(
        organization=org,
        addon=Addon.objects.get(key="extra_projects"),
        quantity=1,
        actor=owner,
        code=AddonPurchase._meta.get_field("code").default(),
        proration_date=preview.proration_date,
    )
    assert (added.status, added.currency, added.unit_amount) == ("granted", "eur", 900)
    remote = stripe_client().v1.subscriptions.retrieve(org.subscription.stripe_subscription_id)
    assert remote.currency == "eur"
    upcoming = stripe_client().v1.invoices.create_preview(
        {"customer": remote.customer, "subscription": remote.id}
    )
    assert upcoming.currency == "eur"
    assert sorted(
        li.amount for li in upcoming.lines.data if not li.parent.subscription_item_details.proration
    ) == [
        900,
        4_500,
    ]


@pytest.mark.django_db(transaction=True)
def test_an_add_on_not_sold_in_the_customers_currency_is_refused(stripe_world, client_for, org, owner):
    subscribe_in_euros(client_for(owner), org)
    training = Addon.objects.get(key="training_package")
    with pytest.raises(ServiceError) as error:
        addons.addon_find(organization=org, key="training_package")
    assert error.value.code == "unknown_addon"  # not offered in euros
    with pytest.raises(ServiceError) as error:
        addons.addon_checkout_start(organization=org, addon=training, quantity=1, actor=owner)
    assert (error.value.code, error.value.field) == ("currency_unavailable", "addon")
    assert not AddonPurchase.objects.filter(addon=training).exists()


def test_checkout_sells_a_plan_and_its_add_ons_in_one_currency(stripe_sim, org, owner, settings):
    settings.SITE_URL = "http://testserver"
    catalog_push()
    pro = Plan.objects.get(key="ai_monthly")  # no trial: the first invoice is paid at checkout
    url = subscriptions.checkout_start(
        organization=org,
        plan=pro,
        actor=owner,
        currency="eur",
        addons={Addon.objects.get(key="extra_seats"): 1},
    )
    session = stripe_client().v1.checkout.sessions.retrieve(url.rsplit("/", 1)[-1])
    assert (session.currency, session.amount_total) == ("eur", 450 + 8_900)
    with pytest.raises(ServiceError) as error:
        subscriptions.checkout_start(
            organization=org,
            plan=pro,
            actor=owner,
            currency="eur",
            addons={Addon.objects.get(key="training_package"): 1},
        )
    assert (error.value.code, error.value.field) == ("currency_unavailable", "addons")


def test_the_simulator_refuses_a_dollar_only_add_on_on_a_euro_subscription(stripe_sim):
    catalog_push()
    client = stripe_client()
    customer = client.v1.customers.create({"email": "eur@example.com"})
    pm = client.v1.payment_methods.attach("pm_card_visa", {"customer": customer.id})
    client.v1.customers.update(customer.id, {"invoice_settings": {"default_payment_method": pm.id}})
    pro = Plan.objects.get(key="pro_monthly").line_items.get()
    sub = client.v1.subscriptions.create(
        {"customer": customer.id, "currency": "eur", "items": [{"price": pro.stripe_price_id, "quantity": 1}]}
    )
    dollars_only = client.v1.prices.create(
        {
            "currency": "usd",
            "unit_amount": 500,
            "recurring": {"interval": "month"},
            "product": "tally_addon_extra_projects",
        }
    )
    with pytest.raises(stripe.InvalidRequestError) as error:
        client.v1.subscription_items.create({"subscription": sub.id, "price": dollars_only.id, "quantity": 1})
    assert error.value.param == "price" and "expected currency of `eur`" in str(error.value)
    assert len(client.v1.subscriptions.retrieve(sub.id)["items"].data) == 1
    euros = Addon.objects.get(key="extra_projects")
    item = client.v1.subscription_items.create(
        {"subscription": sub.id, "price": euros.stripe_price_id, "quantity": 1}
    )
    assert item.price.id == euros.stripe_price_id
    # Nor one subscription in two currencies, nor a Checkout Session.
    euro_only = client.v1.prices.create(
        {
            "currency": "eur",
            "unit_amount": 500,
            "recurring": {"interval": "month"},
            "product": "tally_addon_extra_projects",
        }
    )
    with pytest.raises(stripe.InvalidRequestError, match="same currency"):
        client.v1.subscriptions.create(
            {
                "customer": client.v1.customers.create({"email": "new@example.com"}).id,
                "items": [{"price": dollars_only.id}, {"price": euro_only.id}],
            }
        )
    training = Addon.objects.get(key="training_package").stripe_price_id
    for params in ({"currency": "eur"}, {}):
        with pytest.raises(stripe.InvalidRequestError) as error:
            client.v1.checkout.sessions.create(
                {
                    "mode": "subscription",
                    "line_items": [
                        {"price": training, "quantity": 1},
                        {"price": euro_only.id, "quantity": 1},
                    ],
                    "success_url": "http://testserver/ok",
                    **params,
                }
            )
        assert error.value.param.startswith("line_items")
