"""Schemathesis against a live server: requests generated from the published schema, every
answer checked against it (status, headers, body, no 5xx, negative data refused, ...)."""

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command

from billing import entitlements
from billing.models import Plan
from credits import services as credit_services
from teams import api_keys
from tests.factories import ProjectFactory

CONFIG = Path(__file__).with_name("schemathesis.toml")
# Bounded and reproducible: a fixed seed, deterministic generation, a few examples an operation.
MAX_EXAMPLES = os.environ.get("SCHEMATHESIS_MAX_EXAMPLES", "10")


@pytest.fixture
def scenario(org, owner, settings, stripe_sim):
    """An organization as an integrator has one: unlimited requests and quotas, credits to
    spend, the default prices and packages, a project and a held reservation to act on."""
    settings.CREDITS_WELCOME_BONUS = 0
    plan = Plan.objects.get(key="enterprise")
    entitlements.subscription_set(organization=org, plan=plan, status="active")
    entitlements.invalidate(org)
    call_command("catalog_sync", stdout=io.StringIO())
    call_command("credits_seed", stdout=io.StringIO())
    credit_services.credits_grant(
        organization=org, amount=10_000_000, source="purchase", idempotency_key="schemathesis"
    )
    reservation = credit_services.credit_reservation_create(
        organization=org, idempotency_key="schemathesis-hold", amount=10
    )
    project = ProjectFactory(organization=org, name="Existing")
    _, secret = api_keys.api_key_create(organization=org, actor=owner, name="schemathesis")
    return {
        "key": secret,
        "env": {"TALLY_PROJECT": str(project.code), "TALLY_RESERVATION": str(reservation.code)},
    }


def test_it_finds_nothing_against_a_live_server(live_server, scenario, tmp_path):
    command = [
        sys.executable,
        "-m",
        "schemathesis.cli",
        "--config-file",
        str(CONFIG),
        "run",
        f"{live_server.url}/api/v1/schema/?format=json",
        "--url",
        live_server.url,
        "--header",
        f"Authorization: Bearer {scenario['key']}",
        "--checks",
        "all",
        "--phases",
        "examples,coverage,fuzzing,stateful",
        "--seed",
        "20261201",
        "--generation-deterministic",
        "--max-examples",
        MAX_EXAMPLES,
        "--workers",
        "1",
        "--no-color",
        "--report",
        "junit",
        "--report-dir",
        str(tmp_path),
        # e.g. "--include-operation-id project_list_post" while investigating a failure
        *os.environ.get("SCHEMATHESIS_ARGS", "").split(),
    ]
    env = {**os.environ, **scenario["env"]}
    # In tmp_path: schemathesis keeps a cache of its runs in its working directory.
    run = subprocess.run(
        command, capture_output=True, text=True, timeout=300, check=False, env=env, cwd=tmp_path
    )
    print(run.stdout, run.stderr[-3000:])  # the report and its totals, shown on failure or with -s
    assert run.returncode == 0, "schemathesis found failures: see the captured output"
