"""Set-up and audit of a Tally database that lives on a private PostgreSQL server (see
test_postgres_restarted.py), run as `python -m tests.faults.private_tally seed|audit` with
DATABASE_URL pointing there: the test process itself stays on its own test database.

`seed` prints, as JSON, an API key's secret, a logged-in session and the organization's slug and
balance; `audit` prints the consumptions in the ledger, the balance and whether every credit
account reconciles (I2, I3)."""

import json
import os
import sys

import django

GRANT = 1_000_000


def seed() -> dict:
    from django.conf import settings
    from django.test import Client

    from billing import entitlements
    from billing.models import Plan
    from credits import services as credit_services
    from credits.models import CreditAccount
    from teams import api_keys
    from teams.models import Membership, Organization, Role, User

    user = User.objects.create_user(email="alice@example.com", password="correct horse battery")
    org = Organization.objects.create(name="Acme", slug="acme")
    Membership.objects.create(organization=org, user=user, role=Role.OWNER)
    # An unlimited plan and given credits: what is tested is the database going away, not the
    # rate limit or a purchase.
    entitlements.subscription_set(organization=org, plan=Plan.objects.get(key="enterprise"), status="active")
    credit_services.credits_grant(organization=org, amount=GRANT, source="promotion", idempotency_key="seed")
    _, secret = api_keys.api_key_create(organization=org, actor=user, name="restart")
    client = Client()
    client.force_login(user)
    return {
        "secret": secret,
        "session": client.cookies[settings.SESSION_COOKIE_NAME].value,
        "slug": org.slug,
        "balance": CreditAccount.objects.get(organization=org).balance,
    }


def audit() -> dict:
    from credits.models import CreditAccount, CreditTransaction, TransactionType
    from credits.reconcile import credit_invariants_check

    account = CreditAccount.objects.get(organization__slug="acme")
    consumed = CreditTransaction.objects.filter(account=account, type=TransactionType.CONSUMPTION)
    return {
        "balance": account.balance,
        "consume_keys": sorted(consumed.values_list("idempotency_key", flat=True)),
        "breaches": [str(breach) for breach in credit_invariants_check()],
    }


if __name__ == "__main__":
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "tests.settings")
    django.setup()
    print(json.dumps({"seed": seed, "audit": audit}[sys.argv[1]]()))
