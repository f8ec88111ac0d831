"""A storage quota in bytes fed by the `storage_gb` gauge: its usage is the latest reading, shown
in human units, and it limits like any other limit."""

import tomllib

import pytest

from billing import entitlements, metering
from billing.catalog import DEFAULT_PATH, CatalogError, parse_catalog
from billing.entitlements import Reason
from billing.templatetags.billing import in_units
from tests.conftest import subscribed

pytestmark = pytest.mark.django_db

GB = 1_000_000_000


def read(org, *readings):
    result = metering.usage_ingest(
        organization=org,
        events=[{"id": f"storage-{i}", "meter": "storage_gb", "value": gb} for i, gb in enumerate(readings)],
    )
    assert result.accepted == len(readings), result.results
    entitlements.invalidate(org)


def test_it_counts_storage_as_the_latest_reading_in_bytes(org):
    assert entitlements.check(org, "storage", 0).used == 0
    read(org, 3, 1)  # the second reading is the latest: usage went down

    decision = entitlements.check(org, "storage", 0)

    assert (decision.used, decision.limit, decision.unit) == (1 * GB, 1 * GB, "byte")  # the free plan
    assert not entitlements.check(org, "storage", 1).allowed


def test_it_refuses_storage_past_the_plan_and_offers_a_bigger_one(org):
    read(org, 2)
    decision = entitlements.check(org, "storage", 1)
    assert not decision.allowed and decision.reason == Reason.LIMIT_REACHED
    assert decision.upgrade is not None
    subscribed(org, "pro_monthly")
    assert entitlements.check(org, "storage", 50 * GB).allowed


def test_a_storage_reading_never_moves_a_quota_counter(org):
    read(org, 7)
    assert not org.usage_counters.exists()
    assert org.usage_events.get(event_id="storage-0").source == "ingest"


def test_the_usage_page_shows_storage_in_human_units(client_for, member, org):
    read(org, 2)
    body = client_for(member).get(f"/o/{org.slug}/usage/").content.decode()
    card = body[body.index('data-testid="meter-storage_gb"') :]
    card = card[: card.index("</div>\n    </div>") if "</div>\n    </div>" in card else 800]
    assert "2 GB" in card and "of 1 GB included" in card


@pytest.mark.parametrize(
    ("value", "shown"),
    [
        (0, "0 B"),
        (999, "999 B"),
        (1_500, "1.5 kB"),
        (1_000_000_000, "1 GB"),
        (1_999_999_999, "1.9 GB"),
        (12_000_000_000_000, "12 TB"),
        (1_234_000_000_000_000, "1,234 TB"),
    ],
)
def test_it_shows_bytes_in_decimal_units(value, shown):
    assert in_units(value, "byte") == shown


def test_other_units_keep_their_separators():
    assert in_units(50_000, "call") == "50,000"


@pytest.fixture
def raw():
    with open(DEFAULT_PATH, "rb") as handle:
        return tomllib.load(handle)


def _problems(data) -> list[str]:
    with pytest.raises(CatalogError) as error:
        parse_catalog(data)
    return error.value.problems


def test_a_limit_is_fed_by_a_gauge_only(raw):
    raw["meters"]["storage_gb"]["aggregation"] = "sum"
    assert any("fed by a gauge" in p for p in _problems(raw))


def test_only_a_meter_feeding_a_limit_is_scaled(raw):
    raw["meters"]["api_calls"]["scale"] = 10
    assert any("only a meter feeding a limit feature is scaled" in p for p in _problems(raw))
    raw["meters"]["api_calls"]["scale"] = 1
    raw["meters"]["storage_gb"]["scale"] = 0
    assert any("storage_gb' scale" in p for p in _problems(raw))
