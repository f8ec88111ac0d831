"""`make demo` needs no services: SQLite, in-process Celery, no Redis. This runs the demo's own
set-up steps in a clean process and checks that the landing page and a demo login work."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]

CHECK = """
from django.test import Client
client = Client(HTTP_HOST="127.0.0.1")
landing = client.get("/")
login = client.post("/login/", {"username": "owner@example.com", "password": "tally-demo-2026"})
home = client.get(login.url, follow=True)
print(landing.status_code, login.status_code, home.redirect_chain[-1][0], home.status_code)
"""


def test_the_demo_runs_on_sqlite_without_redis_and_its_login_works(tmp_path):
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith(("DJANGO_", "STRIPE_", "DATABASE_", "REDIS_", "CELERY_"))
    }
    env.update(
        DATABASE_URL=f"sqlite:///{tmp_path / 'demo.sqlite3'}",
        DJANGO_DEBUG="true",
        DJANGO_SETTINGS_MODULE="config.settings",
    )

    def manage(*args):
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert result.returncode == 0, result.stderr[-2000:]
        return result.stdout

    manage("migrate", "--no-input", "-v0")
    assert "Demo organization: Acme Analytics" in manage("demo_seed")
    landing, login, home_url, home = manage("shell", "-c", CHECK).split()[-4:]
    assert (landing, login, home) == ("200", "302", "200")
    assert home_url.startswith("/o/")
