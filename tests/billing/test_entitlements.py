from datetime import UTC, datetime, timedelta

import pytest
from django.core.cache import cache
from django.utils import timezone

import billing.entitlements.engine
from billing import entitlements
from billing.entitlements import Reason
from billing.models import EntitlementGrant, Overage, Plan, SubscriptionStatus, UsageAlert, UsageCounter
from common.errors import ServiceError
from tests.conftest import subscribed
from tests.factories import MembershipFactory, OrganizationFactory, ProjectFactory

pytestmark = pytest.mark.django_db


def grant(org, **kwargs):
    created = entitlements.grant_create(organizations=[org], **kwargs)
    entitlements.invalidate(org)
    return created


def use(org, feature, amount, key):
    return entitlements.consume(org, feature, amount, idempotency_key=key)


# --- Deciding -----------------------------------------------------------------------------


def test_an_organization_without_a_subscription_gets_the_free_plan(org):
    decision = entitlements.check(org, "projects")
    assert (decision.allowed, decision.limit, decision.used) == (True, 2, 0)
    assert not entitlements.check(org, "sso").allowed


def test_a_boolean_feature_follows_the_plan(org):
    assert entitlements.check(org, "priority_support").reason == Reason.NOT_INCLUDED
    subscribed(org, "pro_monthly")
    assert entitlements.check(org, "priority_support").allowed


def test_a_limit_is_counted_live(org):
    ProjectFactory.create_batch(2, organization=org)
    decision = entitlements.check(org, "projects")
    assert (decision.allowed, decision.reason, decision.used, decision.remaining) == (
        False,
        Reason.LIMIT_REACHED,
        2,
        0,
    )
    subscribed(org, "pro_monthly")
    assert entitlements.check(org, "projects").remaining == 5 - 2


def test_unlimited_is_reported_as_such(org):
    subscribed(org, "enterprise")
    decision = entitlements.check(org, "projects", 10_000)
    assert decision.allowed and decision.unlimited and decision.remaining is None


def test_an_unknown_feature_is_refused(org):
    assert entitlements.check(org, "teleport").reason == Reason.UNKNOWN_FEATURE


def test_a_canceled_subscription_falls_back_to_free(org):
    subscribed(org, "pro_monthly")
    assert entitlements.check(org, "projects").limit == 5
    subscribed(org, "pro_monthly", status=SubscriptionStatus.CANCELED)
    assert entitlements.check(org, "projects").limit == 2


def test_past_due_keeps_the_plan(org):
    subscribed(org, "pro_monthly", status=SubscriptionStatus.PAST_DUE)
    assert entitlements.check(org, "projects").limit == 5


def test_the_refusal_names_the_cheapest_plan_that_allows_it(org, owner):
    MembershipFactory.create_batch(4, organization=org)
    ProjectFactory.create_batch(2, organization=org)
    upgrade = entitlements.check(org, "projects").upgrade
    # At five seats: AI Access keeps 2 projects; Team costs 2 x $15 = $30, Pro $49.
    assert (upgrade.kind, upgrade.key, upgrade.amount) == ("plan", "team_monthly", 3000)
    assert upgrade.url == "/pricing/#team"


def test_the_suggestion_is_priced_at_the_seats_the_organization_has(org, owner):
    subscribed(org, "team_monthly")
    MembershipFactory.create_batch(12, organization=org)
    upgrade = entitlements.check(org, "sso").upgrade
    # Platform at 13 seats: $49 + 8 x $10 = $129 a month; the only plan with SSO to buy.
    assert (upgrade.key, upgrade.amount) == ("platform_monthly", 12900)


def test_the_suggestion_keeps_the_current_billing_interval(org, owner):
    subscribed(org, "pro_yearly")
    ProjectFactory.create_batch(5, organization=org)
    upgrade = entitlements.check(org, "projects").upgrade
    assert (upgrade.key, upgrade.amount) == ("team_yearly", 0)  # three seats are free


def test_the_refusal_offers_a_seat_pack_when_it_is_cheaper(org, owner):
    subscribed(org, "pro_monthly")
    MembershipFactory.create_batch(9, organization=org)
    upgrade = entitlements.check(org, "team_members").upgrade
    # Eleven seats: Team $117, Platform $109 a month; one 5-pack is $99 once.
    assert (upgrade.kind, upgrade.key, upgrade.quantity, upgrade.amount) == (
        "addon",
        "extra_seats",
        1,
        9900,
    )


def test_contract_only_features_point_to_sales(org):
    upgrade = entitlements.check(org, "sso").upgrade
    assert upgrade.kind in ("plan", "contact")
    subscribed(org, "platform_monthly")
    assert entitlements.check(org, "sso").allowed


# --- Grants -------------------------------------------------------------------------------


def test_a_grant_adds_to_the_plan(org):
    grant(org, feature="projects", source="comp", amount=3)
    assert entitlements.check(org, "projects").limit == 2 + 3


def test_a_grandfathered_group_is_unlimited_whatever_the_plan(org):
    others = OrganizationFactory.create_batch(2)
    entitlements.grant_create(
        organizations=[org, *others],
        feature="projects",
        source="grandfathered",
        unlimited=True,
        reason="Early customers keep unlimited projects",
    )
    for organization in (org, *others):
        assert entitlements.check(organization, "projects", 500).unlimited
    subscribed(org, "pro_monthly", status=SubscriptionStatus.CANCELED)
    assert entitlements.check(org, "projects", 500).allowed


def test_a_grant_stops_counting_when_it_expires(org):
    grant(org, feature="projects", source="comp", amount=10, expires_at=timezone.now() + timedelta(hours=1))
    now = timezone.now()
    assert entitlements.check(org, "projects", now=now).limit == 12
    # The cached entitlements know when to expire: no invalidation needed.
    assert entitlements.check(org, "projects", now=now + timedelta(hours=2)).limit == 2


def test_a_grant_may_start_later(org):
    now = timezone.now()
    grant(org, feature="sso", source="comp", starts_at=now + timedelta(days=1))
    assert not entitlements.check(org, "sso", now=now).allowed
    assert entitlements.check(org, "sso", now=now + timedelta(days=2)).allowed


def test_ending_a_grant_takes_effect_at_once(org, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        grant = entitlements.grant_create(organizations=[org], feature="sso", source="comp")
    assert entitlements.check(org, "sso").allowed
    with django_capture_on_commit_callbacks(execute=True):
        entitlements.grant_end(grant=grant)
    assert not entitlements.check(org, "sso").allowed
    assert EntitlementGrant.objects.filter(pk=grant.pk).exists()


def test_a_grant_for_an_unknown_feature_is_refused(org):
    with pytest.raises(ServiceError) as error:
        entitlements.grant_create(organizations=[org], feature="nope", source="comp", amount=1)
    assert error.value.code == "unknown_feature"


# --- Caching ------------------------------------------------------------------------------


def test_a_cached_check_runs_no_query(org, django_assert_num_queries):
    subscribed(org, "pro_monthly")
    entitlements.check(org, "priority_support")
    entitlements.check(org, "api_calls")
    with django_assert_num_queries(0):
        assert entitlements.check(org, "priority_support").allowed
        assert entitlements.check(org, "api_calls").allowed


@pytest.mark.parametrize("feature", ["priority_support", "projects", "api_calls"])
def test_an_uncached_check_takes_at_most_three_queries(org, feature, django_assert_max_num_queries):
    subscribed(org, "pro_monthly")
    ProjectFactory(organization=org)
    use(org, "api_calls", 3, "warm")
    cache.clear()
    with django_assert_max_num_queries(3):
        decision = entitlements.check(org, feature)
    assert decision.allowed


def test_a_subscription_change_invalidates_the_cache(org, django_capture_on_commit_callbacks):
    assert entitlements.check(org, "projects").limit == 2
    with django_capture_on_commit_callbacks(execute=True):
        subscribed(org, "pro_monthly")
    assert entitlements.check(org, "projects").limit == 5


@pytest.mark.parametrize("entry", ["check", "effective_for"])
def test_it_never_stores_as_fresh_what_it_read_before_an_invalidation(
    org, entry, monkeypatch, django_capture_on_commit_callbacks
):
    """A reader computes from the database, a subscription change commits and invalidates, and
    only then does the reader store what it computed: the next check must not use it."""
    compute = billing.entitlements.engine._compute

    def compute_then_a_change_commits(*args, **kwargs):
        effective = compute(*args, **kwargs)  # read before the change
        monkeypatch.setattr(billing.entitlements.engine, "_compute", compute)
        with django_capture_on_commit_callbacks(execute=True):
            subscribed(org, "pro_monthly")  # commits; its on-commit invalidation runs now
        return effective

    monkeypatch.setattr(billing.entitlements.engine, "_compute", compute_then_a_change_commits)
    if entry == "check":
        assert entitlements.check(org, "projects").limit == 2  # this reader's answer, read before
    else:
        assert entitlements.effective_for(org).plan_key == "free"
    assert entitlements.check(org, "projects").limit == 5  # the next one sees the upgrade


def test_a_catalog_change_invalidates_every_organization(org):
    assert entitlements.check(org, "projects").limit == 2
    Plan.objects.get(key="free").entitlements.filter(feature__key="projects").update(limit=4)
    entitlements.invalidate_catalog()
    assert entitlements.check(org, "projects").limit == 4


# --- Consuming ----------------------------------------------------------------------------


def test_consuming_counts_and_refuses_past_the_quota(org):
    assert use(org, "api_calls", 999, "a").allowed
    assert use(org, "api_calls", 1, "b").remaining == 0
    refused = use(org, "api_calls", 1, "c")
    assert (refused.allowed, refused.reason, refused.used) == (False, Reason.QUOTA_EXCEEDED, 1000)
    assert refused.upgrade.key == "ai_monthly" or refused.upgrade.kind == "plan"
    assert UsageCounter.objects.get(organization=org, feature__key="api_calls").used == 1000


def test_replaying_a_key_counts_once(org):
    first = use(org, "api_calls", 5, "same")
    again = use(org, "api_calls", 5, "same")
    assert first.allowed and again.allowed and again.replayed
    assert entitlements.check(org, "api_calls").used == 5


def test_a_refused_consumption_leaves_no_trace_and_may_be_retried(org):
    use(org, "ai_generations", 10, "fill")
    assert not use(org, "ai_generations", 1, "retry-me").allowed
    entitlements.release(org, "ai_generations", 1, idempotency_key="give-back")
    assert use(org, "ai_generations", 1, "retry-me").allowed


def test_release_gives_units_back_once(org):
    use(org, "api_calls", 10, "a")
    assert entitlements.release(org, "api_calls", 4, idempotency_key="r") == 6
    assert entitlements.release(org, "api_calls", 4, idempotency_key="r") == 6
    assert entitlements.check(org, "api_calls").used == 6


def test_billed_overage_goes_past_the_limit(org):
    subscribed(org, "team_monthly", seats=4)
    use(org, "ai_generations", 500, "fill")
    over = use(org, "ai_generations", 20, "more")
    assert over.allowed and over.used == 520 and over.overage == "bill"


def test_credit_overage_stops_the_counter_at_the_limit(org):
    use(org, "ai_generations", 10, "fill")
    refused = use(org, "ai_generations", 1, "more")
    assert not refused.allowed and refused.overage == "credits"


def test_usage_resets_with_the_period(org):
    now = timezone.now()
    use(org, "api_calls", 1000, "fill")
    next_month = now + timedelta(days=32)
    assert entitlements.check(org, "api_calls", now=next_month).used == 0
    assert entitlements.consume(org, "api_calls", 1, idempotency_key="new", now=next_month).allowed


def test_a_yearly_plan_resets_monthly_on_its_anchor_day(org):
    anchor = datetime(2026, 1, 15, 8, tzinfo=UTC)
    subscribed(org, "ai_yearly", billing_cycle_anchor=anchor)
    in_march = datetime(2026, 3, 20, tzinfo=UTC)
    decision = entitlements.consume(org, "ai_generations", 250, idempotency_key="x", now=in_march)
    assert decision.limit == 250
    assert (decision.period_start, decision.period_end) == (
        datetime(2026, 3, 15, 8, tzinfo=UTC),
        datetime(2026, 4, 15, 8, tzinfo=UTC),
    )
    assert entitlements.check(org, "ai_generations", now=datetime(2026, 4, 15, 8, tzinfo=UTC)).used == 0


def test_consuming_a_limit_feature_is_a_programming_error(org):
    with pytest.raises(ValueError):
        use(org, "projects", 1, "x")


def test_it_warns_at_80_and_100_percent_once_each(org, owner, mailoutbox, django_capture_on_commit_callbacks):
    with django_capture_on_commit_callbacks(execute=True):
        assert use(org, "ai_generations", 7, "a").warning is None
        assert use(org, "ai_generations", 1, "b").warning == 80
        use(org, "ai_generations", 1, "c")
        assert use(org, "ai_generations", 1, "d").warning == 100
    assert list(UsageAlert.objects.order_by("threshold").values_list("threshold", flat=True)) == [
        80,
        100,
    ]
    assert [m.subject for m in mailoutbox] == [
        "Acme has used 80% of its ai generations",
        "Acme has used 100% of its ai generations",
    ]
    assert mailoutbox[0].to == ["alice@example.com"]


@pytest.mark.parametrize(
    ("reason", "overage", "payable"),
    [
        (Reason.QUOTA_EXCEEDED, Overage.CREDITS, True),
        (Reason.QUOTA_EXCEEDED, Overage.BLOCK, False),
        (Reason.QUOTA_EXCEEDED, Overage.BILL, False),
        (Reason.LIMIT_REACHED, Overage.CREDITS, False),
        (Reason.OK, Overage.CREDITS, False),
    ],
)
def test_it_says_an_overage_may_be_paid_with_credits_only_past_a_quota_of_a_credits_plan(
    reason, overage, payable
):
    decision = entitlements.Decision("ai_generations", False, reason, requested=1, overage=overage)
    assert decision.payable_with_credits is payable
