import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.exceptions import ImproperlyConfigured

from config import checks
from config.env import env_bool, env_int, env_url

ROOT = Path(__file__).resolve().parents[2]


def manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {
        k: v for k, v in os.environ.items() if not k.startswith(("DJANGO_", "STRIPE_", "DATABASE_", "REDIS_"))
    }
    clean.update(env)
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env=clean,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_it_names_the_variable_of_a_bad_boolean(monkeypatch):
    monkeypatch.setenv("DJANGO_DEBUG", "maybe")
    with pytest.raises(ImproperlyConfigured, match="DJANGO_DEBUG"):
        env_bool("DJANGO_DEBUG", True)


def test_it_names_the_variable_of_a_bad_number(monkeypatch):
    monkeypatch.setenv("INVITATION_TTL_DAYS", "seven")
    with pytest.raises(ImproperlyConfigured, match="INVITATION_TTL_DAYS"):
        env_int("INVITATION_TTL_DAYS", 7)
    monkeypatch.setenv("INVITATION_TTL_DAYS", "0")
    with pytest.raises(ImproperlyConfigured, match="minimum"):
        env_int("INVITATION_TTL_DAYS", 7, minimum=1)


def test_it_refuses_an_unknown_database_scheme(monkeypatch):
    monkeypatch.setenv("DATABASE_URL", "mysql://root@127.0.0.1/tally")
    with pytest.raises(ImproperlyConfigured, match="DATABASE_URL"):
        env_url("DATABASE_URL", schemes=("sqlite", "postgres"))


def test_the_process_stops_at_start_on_a_bad_value():
    result = manage("check", DJANGO_DEBUG="perhaps")
    assert result.returncode != 0
    assert "DJANGO_DEBUG='perhaps' is not a boolean" in result.stderr


def test_the_process_refuses_a_key_that_is_not_stripes():
    result = manage("check", STRIPE_SECRET_KEY="pk_live_123")
    assert result.returncode != 0
    assert "STRIPE_SECRET_KEY" in result.stderr


def test_the_demo_starts_with_nothing_configured():
    result = manage("check")
    assert result.returncode == 0, result.stderr


def test_a_live_key_with_sqlite_and_debug_is_refused_at_start():
    result = manage("check", STRIPE_SECRET_KEY="sk_live_abc", DJANGO_DEBUG="true")
    assert result.returncode != 0
    assert "tally.E001" in result.stderr and "tally.E002" in result.stderr


def test_production_without_a_secret_key_is_refused():
    result = manage("check", DJANGO_DEBUG="false", DATABASE_URL="postgres://postgres@127.0.0.1:5432/x")
    assert result.returncode != 0
    assert "tally.E003" in result.stderr


def _ids(**overrides) -> set[str]:
    from django.test import override_settings

    with override_settings(**overrides):
        return {e.id for e in checks.dangerous_combinations(None)}


def test_the_checks_accept_a_sound_production_setup():
    assert (
        _ids(
            STRIPE_LIVE_MODE=True,
            DEBUG=False,
            USING_SQLITE=False,
            SECRET_KEY_GENERATED=False,
            STRIPE_API_HOST="",
        )
        == set()
    )


_SOUND = dict(STRIPE_LIVE_MODE=True, DEBUG=False, USING_SQLITE=False, SECRET_KEY_GENERATED=False)


@pytest.mark.parametrize(
    "host",
    [
        "http://127.0.0.1:12111",
        "http://127.0.0.1:40123",  # the simulator on any port, as the tests start it
        "http://stripe-sim.internal",
        "https://stripe-mock:12111",
        "http://api.stripe.com",  # not TLS
        "https://api.stripe.com.evil.example",
        "https://api.stripe.com:8443",
    ],
)
def test_the_checks_refuse_a_live_key_pointed_anywhere_but_stripe(host):
    assert "tally.E004" in _ids(**_SOUND, STRIPE_API_HOST=host)


@pytest.mark.parametrize("host", ["", "https://api.stripe.com", "https://api.stripe.com/"])
def test_the_checks_accept_a_live_key_pointed_at_stripe(host):
    assert "tally.E004" not in _ids(**_SOUND, STRIPE_API_HOST=host)


def test_a_live_key_with_the_simulator_on_another_port_is_refused_at_start():
    result = manage(
        "check",
        STRIPE_SECRET_KEY="sk_live_abc",
        STRIPE_API_HOST="http://127.0.0.1:40123",
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY="x" * 40,
        DATABASE_URL="postgres://postgres@127.0.0.1:5432/x",
    )
    assert result.returncode != 0
    assert "tally.E004" in result.stderr


@pytest.mark.django_db
def test_the_beat_schedule_is_one_setting_naming_only_tasks_the_worker_loads():
    from django.conf import settings

    from config.celery import app

    app.loader.import_default_modules()
    scheduled = {entry["task"] for entry in settings.CELERY_BEAT_SCHEDULE.values()}
    assert "billing.tasks_usage.report_usage" in scheduled
    assert scheduled <= set(app.tasks)
    # Nothing adds to the schedule while the task modules load.
    assert app.conf.beat_schedule == settings.CELERY_BEAT_SCHEDULE


def test_it_reads_the_welcome_bonus_from_the_environment():
    shown = (
        "from django.conf import settings; "
        "print(settings.CREDITS_WELCOME_BONUS, settings.CREDITS_WELCOME_BONUS_DAYS)"
    )
    assert manage("shell", "-v", "0", "-c", shown).stdout.split() == ["500", "None"]
    configured = manage(
        "shell", "-v", "0", "-c", shown, CREDITS_WELCOME_BONUS="0", CREDITS_WELCOME_BONUS_DAYS="30"
    )
    assert configured.stdout.split() == ["0", "30"]
    refused = manage("check", CREDITS_WELCOME_BONUS="-5")
    assert refused.returncode != 0 and "CREDITS_WELCOME_BONUS" in refused.stderr
