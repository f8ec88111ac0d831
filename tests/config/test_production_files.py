"""The production files say what the settings read: every variable in `.env.example` and the
README, and a compose file whose services and variables the settings understand."""

import ast
import re
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[2]
READERS = {"env_str", "env_bool", "env_int", "env_list", "env_url"}
COMPOSE_ONLY = {"POSTGRES_PASSWORD"}


def _settings_variables() -> set[str]:
    tree = ast.parse((ROOT / "config" / "settings.py").read_text())
    return {
        node.args[0].value
        for node in ast.walk(tree)
        if isinstance(node, ast.Call)
        and isinstance(node.func, ast.Name)
        and node.func.id in READERS
        and node.args
        and isinstance(node.args[0], ast.Constant)
    }


def _env_example() -> dict[str, str]:
    found = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        match = re.fullmatch(r"#? ?([A-Z][A-Z0-9_]*)=(.*)", line)
        if match:
            found[match[1]] = match[2]
    return found


def test_it_reads_a_good_number_of_variables():
    # The scan itself must see the settings, or every test below passes on nothing.
    assert {"DATABASE_URL", "REDIS_URL", "STRIPE_SECRET_KEY", "DJANGO_DEBUG"} <= _settings_variables()
    assert len(_settings_variables()) >= 30


def test_it_lists_every_variable_in_env_example():
    assert set(_env_example()) - COMPOSE_ONLY == _settings_variables()


def test_it_documents_every_variable_in_the_readme():
    readme = (ROOT / "README.md").read_text()
    table = readme[readme.index("## Configuration") : readme.index("## Going to production")]
    missing = sorted(v for v in _settings_variables() if f"`{v}`" not in table)
    assert not missing, f"not in the README's configuration table: {missing}"


def _compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.prod.yml").read_text())


def test_the_compose_file_runs_every_process_against_one_database_and_redis():
    services = _compose()["services"]
    assert set(services) == {"migrate", "web", "worker", "beat", "postgres", "redis"}
    assert services["web"]["command"][0] == "gunicorn"
    assert services["worker"]["command"][:4] == ["celery", "-A", "config", "worker"]
    assert services["beat"]["command"][:4] == ["celery", "-A", "config", "beat"]
    assert services["beat"]["deploy"]["replicas"] == 1  # exactly one scheduler
    assert services["migrate"]["command"][-2:] == ["migrate", "--no-input"]
    for name in ("web", "worker", "beat"):
        assert services[name]["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    assert "readyz" in " ".join(services["web"]["healthcheck"]["test"])


def test_the_compose_file_sets_only_variables_the_settings_read():
    known = _settings_variables()
    for name, service in _compose()["services"].items():
        if name in {"postgres", "redis"}:
            continue
        environment = service["environment"]
        assert set(environment) <= known, name
        database = environment["DATABASE_URL"]
        assert database.startswith("postgres://") and "@postgres:5432/" in database
        assert environment["REDIS_URL"].startswith("redis://redis:6379/")
        assert service["env_file"] == ".env"


def test_env_example_is_a_production_configuration():
    example = _env_example()
    assert example["DJANGO_DEBUG"] == "false"
    assert example["SECURE_SSL_REDIRECT"] == "true"
    assert example["STRIPE_SECRET_KEY"].startswith("sk_live_")
    assert example["DJANGO_SECRET_KEY"] == ""  # never a shipped secret


def test_the_production_guide_names_every_event_tally_handles(db):
    from billing.webhooks import registry

    guide = (ROOT / "docs" / "PRODUCTION.md").read_text()
    missing = sorted(kind for kind in registry.handled() if f"`{kind}`" not in guide)
    assert not missing, f"docs/PRODUCTION.md does not list {missing}"
