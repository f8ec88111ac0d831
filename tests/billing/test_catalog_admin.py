"""Staff edit the catalog in the admin: the file's rules validate it, and it reaches Stripe."""

from html.parser import HTMLParser

import pytest
import requests
from django.conf import settings
from django.urls import reverse

from billing.gateway.client import stripe_client
from billing.models import CatalogStripeState, Plan, PlanLineItem, PriceVersion
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db


class _Form(HTMLParser):
    """The values a browser would post from the admin's change form."""

    def __init__(self):
        super().__init__()
        self.data: dict[str, str] = {}
        self._select = None
        self._textarea = None

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        name = attrs.get("name")
        if tag == "input" and name and attrs.get("type") not in ("submit", "button", "file"):
            if attrs.get("type") == "checkbox":
                if "checked" in attrs:
                    self.data[name] = attrs.get("value", "on")
            else:
                self.data[name] = attrs.get("value", "")
        elif tag == "select" and name:
            self._select = name
            self.data.setdefault(name, "")
        elif tag == "option" and self._select and "selected" in attrs:
            self.data[self._select] = attrs.get("value", "")
        elif tag == "textarea" and name:
            self._textarea = name
            self.data[name] = ""

    def handle_endtag(self, tag):
        if tag == "select":
            self._select = None
        elif tag == "textarea":
            self._textarea = None

    def handle_data(self, data):
        if self._textarea:
            self.data[self._textarea] += data


def form_of(client, url) -> dict:
    parser = _Form()
    parser.feed(client.get(url).content.decode())
    parser.data.pop("action", None)
    return parser.data


def line_item_prefix(data: dict, key: str) -> str:
    return next(
        k[: -len("-key")] for k, v in data.items() if k.endswith("-key") and v == key and "line_items" in k
    )


@pytest.fixture
def staff(client):
    user = UserFactory(is_staff=True, is_superuser=True)
    client.force_login(user)
    return client


@pytest.fixture
def pushed(stripe_sim):
    from billing import catalog

    catalog.catalog_push()
    return stripe_client()


def pro_url() -> str:
    return reverse("admin:billing_plan_change", args=[Plan.objects.get(key="pro_monthly").pk])


def change_pro_amount(client, amount: int, **extra):
    data = form_of(client, pro_url())
    prefix = line_item_prefix(data, "base")
    data[f"{prefix}-unit_amount"] = str(amount)
    data.update({f"{prefix}-{k}": v for k, v in extra.items()})
    data["_save"] = "Save"
    return client.post(pro_url(), data)


def arm(**fault) -> None:
    response = requests.post(f"{settings.STRIPE_API_HOST}/_sim/faults", json=fault, timeout=10)
    assert response.status_code == 200, response.text


def pro_state() -> CatalogStripeState:
    return CatalogStripeState.objects.get(kind="plan", object_id=Plan.objects.get(key="pro_monthly").pk)


def test_it_pushes_a_changed_amount_as_a_new_price_and_archives_the_old(
    staff, pushed, django_capture_on_commit_callbacks
):
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    with django_capture_on_commit_callbacks(execute=True):
        response = change_pro_amount(staff, 5900)
    assert response.status_code == 302, response.content.decode()[:3000]
    new = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    assert new != old
    current = pushed.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data
    assert [p.id for p in current] == [new] and current[0].unit_amount == 5900
    assert pushed.v1.prices.retrieve(old).active is False
    assert pro_state().status == "in_sync"
    assert set(
        PriceVersion.objects.filter(line_item__plan__key="pro_monthly").values_list(
            "stripe_price_id", flat=True
        )
    ) == {old, new}
    listing = staff.get(reverse("admin:billing_plan_changelist")).content.decode()
    assert "In sync" in listing


def test_a_failed_push_keeps_the_old_price_selling_shows_stripes_error_and_is_retried(
    staff, pushed, django_capture_on_commit_callbacks
):
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    arm(path="/v1/prices", method="POST", status=400, count=1, message="Amount refused by Stripe (test)")
    with django_capture_on_commit_callbacks(execute=True):
        assert change_pro_amount(staff, 5900).status_code == 302
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="base")
    assert item.unit_amount == 5900 and item.stripe_price_id == old  # the old price still sells
    assert pushed.v1.prices.retrieve(old).active is True
    [current] = pushed.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data
    assert current.id == old
    state = pro_state()
    assert state.status == "failed" and "Amount refused by Stripe (test)" in state.error
    listing = staff.get(reverse("admin:billing_plan_changelist")).content.decode()
    assert "Failed: Amount refused by Stripe (test)" in listing

    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(
            reverse("admin:billing_plan_changelist"),
            {"action": "push_to_stripe", "_selected_action": [item.plan_id]},
            follow=True,
        )
    # Queued in the request's transaction, pushed once it commits (here: when the block ends).
    assert "1 queued for Stripe" in response.content.decode()
    assert pro_state().status == "in_sync"
    new = PlanLineItem.objects.get(pk=item.pk).stripe_price_id
    assert new != old and pushed.v1.prices.retrieve(old).active is False


def test_an_archive_that_fails_is_finished_by_the_retry(staff, pushed, django_capture_on_commit_callbacks):
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    arm(path=f"/v1/prices/{old}", method="POST", status=500, count=3)
    with django_capture_on_commit_callbacks(execute=True):
        change_pro_amount(staff, 5900)
    assert pro_state().status == "failed"
    new = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    assert new != old  # the new price sells; the old one waits to be archived
    from billing.catalog.push import catalog_object_push

    assert (
        catalog_object_push(kind="plan", object_id=Plan.objects.get(key="pro_monthly").pk).status == "in_sync"
    )
    assert pushed.v1.prices.retrieve(old).active is False


def test_it_refuses_an_edit_the_file_would_refuse_naming_the_field(staff, pushed):
    old = PlanLineItem.objects.get(plan__key="pro_monthly", key="base").stripe_price_id
    response = change_pro_amount(staff, 5900, **{"currency_options-0-currency": "usd"})
    assert response.status_code == 200
    body = response.content.decode()
    assert "currency_options.usd: another currency than the catalog" in body
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="base")
    assert item.unit_amount == 4900 and item.stripe_price_id == old
    assert item.currency_options == {"eur": {"unit_amount": 4500}}
    assert not CatalogStripeState.objects.exists()


def test_it_refuses_seat_settings_without_a_per_seat_item(staff):
    data = form_of(staff, pro_url())
    data["seat_minimum"] = "3"
    data["_save"] = "Save"
    response = staff.post(pro_url(), data)
    assert response.status_code == 200
    assert "seat_policy, seat_minimum and seat_mode need a per_seat line item" in response.content.decode()
    assert Plan.objects.get(key="pro_monthly").seat_minimum == 1


def test_two_pushes_of_one_plan_do_not_race(pushed):
    from billing.catalog.push import catalog_object_push, catalog_object_touch

    plan = Plan.objects.get(key="pro_monthly")
    catalog_object_touch(kind="plan", object_id=plan.pk)
    state = CatalogStripeState.objects.get(kind="plan", object_id=plan.pk)
    # Another push holds the lease: this one leaves the plan to it.
    from datetime import timedelta

    from django.utils import timezone

    CatalogStripeState.objects.filter(pk=state.pk).update(
        lease_token="x", lease_until=timezone.now() + timedelta(minutes=1)
    )
    PlanLineItem.objects.filter(plan=plan).update(unit_amount=5900)
    assert catalog_object_push(kind="plan", object_id=plan.pk).status == "pending"
    assert pushed.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data[0].unit_amount == 4900
    CatalogStripeState.objects.filter(pk=state.pk).update(lease_token="", lease_until=None)
    assert catalog_object_push(kind="plan", object_id=plan.pk).status == "in_sync"
    assert pushed.v1.prices.list({"lookup_keys": ["tally:pro_monthly:base"]}).data[0].unit_amount == 5900


def test_products_and_meters_are_updated_in_place(pushed):
    from billing.catalog.push import catalog_object_push
    from billing.models import Feature, Product

    product = Product.objects.get(key="team")
    product.name = "Teams"
    product.save()
    assert catalog_object_push(kind="product", object_id=product.pk).status == "in_sync"
    assert pushed.v1.products.retrieve("tally_team").name == "Teams"
    feature = Feature.objects.get(key="ai_generations")
    feature.name = "AI runs"
    feature.save()
    assert catalog_object_push(kind="feature", object_id=feature.pk).status == "in_sync"
    meters = [
        m for m in pushed.v1.billing.meters.list({"limit": 100}).data if m.event_name == "ai_generations"
    ]
    assert [m.display_name for m in meters] == ["AI runs"]


def test_a_coupon_whose_terms_changed_fails_to_push_and_says_why(pushed):
    from billing.catalog.push import catalog_object_push
    from billing.models import Coupon

    coupon = Coupon.objects.get(key="launch")
    coupon.percent_off = 30
    coupon.save()
    state = catalog_object_push(kind="coupon", object_id=coupon.pk)
    assert state.status == "failed" and "give the new terms a new key" in state.error


def team_url() -> str:
    return reverse("admin:billing_plan_change", args=[Plan.objects.get(key="team_monthly").pk])


def seat_rows(client) -> tuple[dict, str]:
    data = form_of(client, team_url())
    return data, f"{line_item_prefix(data, 'seats')}-tiers"


def test_it_shows_tiers_as_rows_and_saves_an_edited_row(staff, pushed, django_capture_on_commit_callbacks):
    data, tiers = seat_rows(staff)
    assert [data[f"{tiers}-{row}-up_to"] for row in range(4)] == ["3", "10", "", ""]
    assert data[f"{tiers}-1-unit_amount"] == "1500"
    data[f"{tiers}-1-unit_amount"] = "1400"
    data[f"{tiers}-2-flat_amount"] = "100"
    data["_save"] = "Save"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(team_url(), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    assert item.tiers == [
        {"up_to": 3, "unit_amount": 0, "flat_amount": 0},
        {"up_to": 10, "unit_amount": 1400, "flat_amount": 0},
        {"up_to": None, "unit_amount": 1200, "flat_amount": 100},
    ]
    [price] = pushed.v1.prices.list(
        {"lookup_keys": ["tally:team_monthly:seats"], "expand": ["data.tiers"]}
    ).data
    assert [t.unit_amount for t in price.tiers] == [0, 1400, 1200]
    assert price.id == item.stripe_price_id


def test_it_adds_a_tiered_line_item_from_rows(staff, pushed, django_capture_on_commit_callbacks):
    data = form_of(staff, pro_url())
    total = int(data["line_items-TOTAL_FORMS"])
    new = f"line_items-{total}"
    data["line_items-TOTAL_FORMS"] = str(total + 1)
    data.update(
        {
            f"{new}-key": "extra_seats",
            f"{new}-kind": "per_seat",
            f"{new}-tiers_mode": "volume",
            f"{new}-on_price_change": "keep",
            f"{new}-tiers-rows": "3",
            f"{new}-tiers-0-up_to": "5",
            f"{new}-tiers-0-unit_amount": "1000",
            f"{new}-tiers-1-unit_amount": "800",
            f"{new}-tiers-1-flat_amount": "0",
        }
    )
    data["_save"] = "Save"
    with django_capture_on_commit_callbacks(execute=True):
        response = staff.post(pro_url(), data)
    assert response.status_code == 302, response.content.decode()[:3000]
    item = PlanLineItem.objects.get(plan__key="pro_monthly", key="extra_seats")
    assert item.tiers == [
        {"up_to": 5, "unit_amount": 1000, "flat_amount": 0},
        {"up_to": None, "unit_amount": 800, "flat_amount": 0},
    ]
    assert item.stripe_price_id and pro_state().status == "in_sync"


@pytest.mark.parametrize(
    ("cells", "message"),
    [
        ({"1-up_to": "2"}, "Row 2, up_to: 2 must be above row 1&#x27;s 3"),
        ({"0-up_to": ""}, "Row 1, up_to: only the last row is open-ended"),
        ({"2-up_to": "20"}, "Row 3, up_to: the last row is open-ended"),
        ({"1-unit_amount": "-5"}, "Row 2, unit_amount: must not be negative"),
        ({"2-flat_amount": "1.5"}, "Row 3, flat_amount: &#x27;1.5&#x27; is not a whole number"),
    ],
)
def test_a_bad_tier_row_is_refused_naming_row_and_field(
    staff, pushed, django_capture_on_commit_callbacks, cells, message
):
    item = PlanLineItem.objects.get(plan__key="team_monthly", key="seats")
    before = item.tiers
    data, tiers = seat_rows(staff)
    data.update({f"{tiers}-{cell}": value for cell, value in cells.items()})
    data["_save"] = "Save"
    with django_capture_on_commit_callbacks(execute=True) as callbacks:
        response = staff.post(team_url(), data)
    assert response.status_code == 200
    body = response.content.decode()
    assert message in body
    assert 'class="errorlist' in body
    assert PlanLineItem.objects.get(pk=item.pk).tiers == before
    assert not callbacks and not CatalogStripeState.objects.exists()


def toggle(client, url: str, active: bool):
    data = form_of(client, url)
    if active:
        data["is_active"] = "on"
    else:
        data.pop("is_active", None)
    data["_save"] = "Save"
    return client.post(url, data)


def test_deactivating_a_plan_archives_its_prices_and_reactivating_sells_them_again(
    staff, pushed, django_capture_on_commit_callbacks
):
    prices = list(
        PlanLineItem.objects.filter(plan__key="team_monthly").values_list("stripe_price_id", flat=True)
    )
    assert len(prices) == 2 and all(prices)
    with django_capture_on_commit_callbacks(execute=True):
        assert toggle(staff, team_url(), active=False).status_code == 302
    assert not Plan.objects.get(key="team_monthly").is_active
    assert [pushed.v1.prices.retrieve(p).active for p in prices] == [False, False]
    state = CatalogStripeState.objects.get(kind="plan", object_id=Plan.objects.get(key="team_monthly").pk)
    assert state.status == "in_sync"

    with django_capture_on_commit_callbacks(execute=True):
        assert toggle(staff, team_url(), active=True).status_code == 302
    assert [pushed.v1.prices.retrieve(p).active for p in prices] == [True, True]
    assert (
        list(PlanLineItem.objects.filter(plan__key="team_monthly").values_list("stripe_price_id", flat=True))
        == prices
    )


def test_deactivating_an_addon_archives_its_price_and_reactivating_sells_it_again(
    staff, pushed, django_capture_on_commit_callbacks
):
    from billing.models import Addon

    addon = Addon.objects.exclude(stripe_price_id="").first()
    url = reverse("admin:billing_addon_change", args=[addon.pk])
    with django_capture_on_commit_callbacks(execute=True):
        assert toggle(staff, url, active=False).status_code == 302
    assert pushed.v1.prices.retrieve(addon.stripe_price_id).active is False
    with django_capture_on_commit_callbacks(execute=True):
        assert toggle(staff, url, active=True).status_code == 302
    assert Addon.objects.get(pk=addon.pk).stripe_price_id == addon.stripe_price_id
    assert pushed.v1.prices.retrieve(addon.stripe_price_id).active is True


def test_a_plan_deactivated_from_its_product_page_has_its_prices_archived(
    staff, pushed, django_capture_on_commit_callbacks
):
    from billing.models import Product

    prices = list(
        PlanLineItem.objects.filter(plan__key="team_monthly").values_list("stripe_price_id", flat=True)
    )
    url = reverse("admin:billing_product_change", args=[Product.objects.get(key="team").pk])
    data = form_of(staff, url)
    prefix = next(k[: -len("-key")] for k, v in data.items() if k.endswith("-key") and v == "team_monthly")
    data.pop(f"{prefix}-is_active", None)
    data["_save"] = "Save"
    with django_capture_on_commit_callbacks(execute=True):
        assert staff.post(url, data).status_code == 302
    assert not Plan.objects.get(key="team_monthly").is_active
    assert [pushed.v1.prices.retrieve(p).active for p in prices] == [False, False]
