"""Disputes end to end: a payment made with Stripe's dispute test card is disputed on the
simulator, whose webhooks travel the real path to dj-stripe's endpoint on a live server. Credits
bought with it are held back, then released if the dispute is won and taken back if lost."""

from datetime import timedelta

import pytest
from django.core import mail
from django.urls import reverse
from django.utils import timezone
from djstripe.models import Event

from billing.models import PaymentDispute
from billing.webhooks import dispatch
from credits import reconcile as credit_reconcile
from credits import services
from credits.models import CreditAccount, CreditDispute, CreditGrant, CreditTransaction
from teams.models import AuditEvent
from tests.credits.helpers import assert_reconciles, balance_of
from tests.credits.test_purchases import pay
from tests.factories import UserFactory

pytestmark = pytest.mark.django_db(transaction=True)

DISPUTE_CARD = "4000000000000259"


def buy_disputed(org, owner):
    purchase, url = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-10"), actor=owner
    )
    assert pay(url, DISPUTE_CARD).status_code == 303
    purchase.refresh_from_db()
    return purchase


def dispute_of(shop, purchase):
    (dispute,) = shop.v1.disputes.list({"payment_intent": purchase.payment_intent_id}).data
    return dispute


def replay_dispute_events():
    for event in Event.objects.filter(type__startswith="charge.dispute.").order_by("created", "id"):
        dispatch.handle(event.id)


@pytest.fixture
def staff(db):
    return UserFactory(email="staff@example.com", is_staff=True)


def test_credits_bought_with_a_disputed_payment_are_held_back_then_released_when_won(
    shop, org, owner, staff, client_for
):
    mail.outbox.clear()
    purchase = buy_disputed(org, owner)
    # The dispute came before the purchase was completed: it was applied once the grant existed.
    assert purchase.status == "completed"
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.frozen) == (10_000, 10_000)
    with pytest.raises(services.InsufficientCredits):
        services.credits_consume(organization=org, amount=1, idempotency_key="spend")
    with pytest.raises(services.InsufficientCredits):
        services.credit_reservation_create(organization=org, amount=1, idempotency_key="hold")
    record = CreditDispute.objects.get()
    assert (record.status, record.credits, record.grant.disputed) == ("open", 10_000, 10_000)
    (opened,) = [m for m in mail.outbox if "disputed" in m.subject]
    assert sorted(opened.to) == ["alice@example.com", "staff@example.com"]
    assert "held back" in opened.body
    page = client_for(owner).get(reverse("credits", args=[org.slug]))
    assert b'data-testid="frozen">10,000 held back' in page.content

    # Evidence wins the dispute: the credits are released, nothing enters the ledger.
    dispute = dispute_of(shop, purchase)
    shop.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}})
    account.refresh_from_db()
    assert (account.balance, account.frozen) == (10_000, 0)
    assert CreditDispute.objects.get().status == "won"
    assert PaymentDispute.objects.get().status == "won"
    assert any("dispute won" in m.subject for m in mail.outbox)
    services.credits_consume(organization=org, amount=2_500, idempotency_key="spend")

    # Every dispute event handled again changes nothing, and mails nobody again.
    sent = len(mail.outbox)
    replay_dispute_events()
    account.refresh_from_db()
    assert (account.balance, account.frozen) == (7_500, 0)
    assert len(mail.outbox) == sent
    assert not CreditTransaction.objects.filter(type="clawback").exists()
    assert AuditEvent.objects.filter(action="credits.dispute_won").count() == 1
    assert_reconciles()


@pytest.mark.parametrize("how", ["losing_evidence", "accept"])
def test_credits_bought_with_a_disputed_payment_are_taken_back_when_lost(shop, org, owner, staff, how):
    purchase = buy_disputed(org, owner)
    services.credits_grant(organization=org, amount=500, source="promotion", idempotency_key="gift")
    # Given credits stay spendable beside the frozen ones.
    services.credits_consume(organization=org, amount=200, idempotency_key="spend")
    dispute = dispute_of(shop, purchase)
    if how == "accept":
        shop.v1.disputes.close(dispute.id)
    else:
        shop.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "losing_evidence"}})

    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.frozen) == (300, 0)
    (clawback,) = CreditTransaction.objects.filter(type="clawback")
    assert (clawback.amount, clawback.refund_of, clawback.metadata["dispute"]) == (
        -10_000,
        purchase.transaction,
        dispute.id,
    )
    assert CreditDispute.objects.get().status == "lost"
    assert any("dispute lost" in m.subject for m in mail.outbox)

    replay_dispute_events()
    assert balance_of(org) == 300
    assert CreditTransaction.objects.filter(type="clawback").count() == 1
    assert_reconciles()


def test_a_dispute_lost_while_credits_are_held_owes_them_until_the_hold_settles(shop, org, owner):
    # Paid with an ordinary card; the dispute comes later, after a job reserved credits.
    purchase, url = services.credit_purchase_start(
        organization=org, package=services.credit_package_get(code="pack-10"), actor=owner
    )
    assert pay(url).status_code == 303
    purchase.refresh_from_db()
    hold = services.credit_reservation_create(organization=org, amount=4_000, idempotency_key="job")

    def dispute(status):
        # What billing passes on for charge.dispute.created / .closed, re-read from Stripe.
        return services.credit_dispute_record(
            dispute_id="dp_late",
            payment_intent_id=purchase.payment_intent_id,
            amount=1_000,
            currency="usd",
            stripe_status=status,
            reason="fraudulent",
        )

    dispute("needs_response")
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.held, account.frozen) == (10_000, 4_000, 10_000)
    dispute("lost")
    dispute("needs_response")  # a late, older event does not reopen it
    account.refresh_from_db()
    # 6,000 taken now; the 4,000 the job holds are owed.
    assert (account.balance, account.held, account.frozen) == (4_000, 4_000, 4_000)
    services.credit_reservation_cancel(reservation=hold)
    assert balance_of(org) == 0
    dispute("lost")
    assert CreditTransaction.objects.filter(type="clawback").count() == 2
    assert_reconciles()


def test_credits_a_dispute_kept_in_a_grant_past_its_date_expire_when_it_is_won(shop, org, owner):
    # The grant's date passed while the dispute held its credits (a plan allowance whose
    # subscription ended early): the expiry could take nothing frozen. Won, the dispute frees
    # them; they must go at once, not stay in the balance until the expiry job comes round.
    purchase = buy_disputed(org, owner)
    grant = CreditDispute.objects.get().grant
    CreditGrant.objects.filter(pk=grant.pk).update(expires_at=timezone.now() - timedelta(seconds=1))
    assert services.credit_grants_expire() == 0  # frozen: not the expiry's to take
    dispute = dispute_of(shop, purchase)
    shop.v1.disputes.update(dispute.id, {"evidence": {"uncategorized_text": "winning_evidence"}})
    account = CreditAccount.objects.get(organization=org)
    assert (account.balance, account.frozen, account.available) == (0, 0, 0)
    (expiry,) = CreditTransaction.objects.filter(type="expiry")
    assert (expiry.amount, expiry.draws()) == (-10_000, [(grant.pk, -10_000)])
    assert credit_reconcile.spendable_check(organizations=[org]) == []
    assert_reconciles()
