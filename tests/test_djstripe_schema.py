"""The test databases and the demo build dj-stripe's tables from one migration
(config/djstripe_schema); this proves it describes dj-stripe's models exactly. `make test` checks
that dj-stripe's own migrations, which production runs, describe them too: so both build the
same tables."""

import pytest
from django.core.management import call_command


@pytest.mark.django_db  # makemigrations checks the recorded history
def test_the_one_migration_of_the_test_databases_matches_dj_stripes_models(capsys):
    try:
        call_command("makemigrations", "djstripe", "--check", "--dry-run", verbosity=1)
    except SystemExit as exit:  # --check exits 1 when the models have changes to migrate
        pytest.fail(f"regenerate config/djstripe_schema/migrations: {capsys.readouterr().out}")
        raise AssertionError from exit
