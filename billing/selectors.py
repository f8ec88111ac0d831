"""Reads of the catalog and billing state (and, later, of dj-stripe's mirror)."""

from dataclasses import dataclass
from datetime import timedelta

from django.db.models import Prefetch
from django.utils import timezone

from billing.models import (
    Addon,
    AddonEntitlement,
    Feature,
    Interval,
    OrgSubscription,
    Payment,
    Plan,
    PlanCheckout,
    PlanEntitlement,
    Product,
)
from teams.models import Membership, Role


@dataclass
class Offer:
    """One product on the pricing page, at the interval the visitor chose."""

    product: Product
    plan: Plan
    monthly_equivalent: Plan | None  # the same product's monthly plan, to show a yearly saving
    seats: int = 1
    currency: str = ""  # the visitor's currency: the plan's own when it is not sold in it

    @property
    def seat_currency(self) -> str:
        return self.currency if self.currency in self.plan.currencies else self.plan.currency

    @property
    def seat_breakdown(self):
        item = self.plan.seat_item()
        return item.breakdown(self.seats, self.seat_currency) if item else None

    @property
    def seat_total(self) -> int:
        return self.plan.total(seats=self.seats, currency=self.seat_currency)

    @property
    def yearly_saving_percent(self) -> int:
        if not (self.plan and self.monthly_equivalent) or self.plan.interval != Interval.YEAR:
            return 0
        monthly = self.monthly_equivalent.total() * 12
        if monthly <= 0:
            return 0
        return round(100 - self.plan.total() * 100 / monthly)


def pricing_offers(interval: str, *, seats: int = 1) -> list[Offer]:
    plans = Plan.objects.public().prefetch_related(
        "line_items",
        Prefetch("entitlements", queryset=PlanEntitlement.objects.select_related("feature")),
    )
    products = Product.objects.filter(is_public=True).prefetch_related(
        Prefetch("plans", queryset=plans, to_attr="active_plans")
    )
    offers = []
    for product in products:
        if not product.active_plans:
            continue
        by_interval = {p.interval: p for p in product.active_plans}
        chosen = by_interval.get(interval) or product.active_plans[0]
        offers.append(Offer(product, chosen, by_interval.get(Interval.MONTH), seats))
    return offers


def features_for_comparison():
    return Feature.objects.all()


def active_addons(currency: str | None = None) -> list[Addon]:
    """The add-ons on sale; with `currency`, those sold in it, each showing its price in it
    (`shown_amount`, `shown_currency`)."""
    addons = Addon.objects.filter(is_active=True).prefetch_related("entitlements__feature")
    return [_shown(addon, currency or addon.currency) for addon in addons if _sold(addon, currency)]


def _sold(addon: Addon, currency: str | None) -> bool:
    return currency is None or addon.unit_amount_in(currency) is not None


def _shown(addon: Addon, currency: str) -> Addon:
    addon.shown_currency, addon.shown_amount = currency, addon.unit_amount_in(currency)
    return addon


def addons_offered(
    *, unlimited: set[int], interval: str, subscribed: bool, currency: str | None = None
) -> list[Addon]:
    """The add-ons an organization's plan allows: in its currency, adding to a feature it does
    not have unlimited already (`unlimited`: those features' ids; a pack of seats means nothing
    on unlimited seats), and, for a recurring add-on, on a subscription billed at its interval."""
    addons = list(Addon.objects.filter(is_active=True))
    adds: dict[int, set[int]] = {}
    for addon_id, feature_id in AddonEntitlement.objects.filter(addon__in=addons).values_list(
        "addon_id", "feature_id"
    ):
        adds.setdefault(addon_id, set()).add(feature_id)
    offered = []
    for addon in addons:
        if not _sold(addon, currency):
            continue
        if addon.kind == Addon.Kind.RECURRING and not (subscribed and addon.interval == interval):
            continue
        features = adds.get(addon.pk, set())
        if features and features <= unlimited:
            continue
        offered.append(_shown(addon, currency or addon.currency))
    return offered


def subscription_of(organization) -> OrgSubscription | None:
    return OrgSubscription.objects.select_related("plan").filter(organization=organization).first()


def stripe_customer_id_of(organization) -> str | None:
    """The organization's Stripe customer, from dj-stripe's mirror."""
    from djstripe.models import Customer

    return (
        Customer.objects.filter(subscriber=organization, date_purged__isnull=True)
        .order_by("-created")
        .values_list("id", flat=True)
        .first()
    )


def customers_of_organizations():
    """(Stripe customer id, organization) for every customer linked to an organization."""
    from djstripe.models import Customer

    customers = Customer.objects.filter(subscriber__isnull=False, date_purged__isnull=True)
    return [(c.id, c.subscriber) for c in customers.select_related("subscriber").order_by("id")]


def organization_for_customer(customer_id: str):
    from djstripe.models import Customer

    customer = Customer.objects.select_related("subscriber").filter(id=customer_id).first()
    return customer.subscriber if customer else None


def payments_of(organization):
    return Payment.objects.filter(organization=organization)


def free_plan() -> Plan | None:
    return Plan.objects.filter(is_free=True).first()


def organization_to_bill(user):
    """The organization a signed-in visitor of the pricing page would subscribe: their first
    one where they may manage billing (personal workspace first)."""
    if not user.is_authenticated:
        return None
    membership = (
        Membership.objects.filter(user=user, role__in=[Role.OWNER, Role.ADMIN, Role.BILLING])
        .select_related("organization")
        .order_by("-organization__is_personal", "organization__name")
        .first()
    )
    return membership.organization if membership else None


UNFINISHED_CHECKOUT_SHOWN = timedelta(days=7)


def plan_checkout_unfinished(organization, *, subscription: OrgSubscription | None) -> PlanCheckout | None:
    """The organization's latest subscription checkout, when it expired or its payment failed
    in the last week and no plan has started since: the billing page says why nothing happened."""
    latest = PlanCheckout.objects.select_related("plan").filter(organization=organization).first()
    if latest is None or not latest.unfinished:
        return None
    if latest.created_at < timezone.now() - UNFINISHED_CHECKOUT_SHOWN:
        return None
    if subscription is not None and subscription.applies:
        return None
    return latest


def payment_awaiting_authentication(organization) -> Payment | None:
    """The latest open invoice whose payment waits for the cardholder to authenticate it."""
    return (
        Payment.objects.filter(organization=organization, needs_authentication=True)
        .exclude(hosted_invoice_url="")
        .order_by("-created_at", "-pk")
        .first()
    )


def invoices_of(organization) -> list[Payment]:
    """The organization's invoices, newest first: everything the invoices page shows is on the row."""
    return list(Payment.objects.filter(organization=organization).order_by("-created_at", "-pk"))
