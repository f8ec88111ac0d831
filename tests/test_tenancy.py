"""Ready to be distributed by organization: every table is declared distributed, reference or
local in `config/tenancy.py`, every distributed one carries its column, and the README says the
same."""

import re
from pathlib import Path

import pytest
from django.apps import apps
from django.db import connection

from config.tenancy import DISTRIBUTED, LOCAL, PREFIXES, REFERENCE, TENANCY, tenancy_of

pytestmark = pytest.mark.django_db

README = Path(__file__).resolve().parent.parent / "README.md"


def _tables() -> set[str]:
    """Every table: those in the database and those the app registry knows (many-to-many
    tables included), so a model whose migration is missing is counted too."""
    with connection.cursor() as cursor:
        found = set(connection.introspection.table_names(cursor))
    for model in apps.get_models(include_auto_created=True):
        if model._meta.managed and not model._meta.proxy:
            found.add(model._meta.db_table)
    return found


def _columns(table: str) -> dict[str, bool]:
    """Column name -> nullable."""
    with connection.cursor() as cursor:
        return {c.name: c.null_ok for c in connection.introspection.get_table_description(cursor, table)}


def test_every_table_is_declared():
    assert sorted(t for t in _tables() if tenancy_of(t) is None) == []


def test_no_declared_table_is_gone():
    assert sorted(set(TENANCY) - _tables()) == []


def test_a_table_neither_reference_nor_local_has_its_organization_not_null():
    missing = []
    for table in sorted(_tables()):
        kind, column, _ = tenancy_of(table) or (DISTRIBUTED, "organization_id", "")
        if kind in (REFERENCE, LOCAL):
            continue
        columns = _columns(table)
        if column not in columns:
            missing.append(f"{table}: no {column}")
        elif columns[column]:
            missing.append(f"{table}: {column} is nullable")
    assert missing == []


def test_a_table_whose_rows_belong_to_a_distributed_row_is_distributed():
    # A required foreign key to an organization's row makes the row the organization's: a new
    # child of a ledger line or a project cannot be declared reference or local by mistake.
    distributed = {t for t, (kind, _, _) in TENANCY.items() if kind == DISTRIBUTED}
    wrong = []
    for model in apps.get_models(include_auto_created=True):
        table = model._meta.db_table
        if table in distributed or not model._meta.managed:
            continue
        for field in model._meta.concrete_fields:
            if field.is_relation and not field.null and field.related_model._meta.db_table in distributed:
                wrong.append(f"{table}.{field.column}")
    assert wrong == []


def _readme_rows() -> set[tuple[str, str, str]]:
    text = README.read_text()
    section = text.split("### Sharding by organization", 1)[1].split("\n#", 1)[0]
    rows = set()
    for line in section.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) != 2 or cells[0].split(" ")[0] not in (DISTRIBUTED, REFERENCE, LOCAL):
            continue
        kind = cells[0].split(" ")[0]
        for item in cells[1].split(", "):
            match = re.fullmatch(r"`([a-z0-9_*]+)`(?: \(by `([a-z_]+)`\))?", item.strip())
            assert match, f"unreadable README entry: {item!r}"
            table, column = match.groups()
            rows.add((table, kind, column or ("organization_id" if kind == DISTRIBUTED else "")))
    return rows


def test_the_readme_table_says_what_the_declaration_says():
    declared = {(table, kind, column) for table, (kind, column, _) in TENANCY.items()}
    declared |= {(prefix + "*", kind, column) for prefix, (kind, column, _) in PREFIXES.items()}
    assert _readme_rows() == declared


def test_every_declaration_gives_a_kind_and_a_reason():
    for table, (kind, column, why) in {**TENANCY, **PREFIXES}.items():
        assert kind in (DISTRIBUTED, REFERENCE, LOCAL), table
        assert why, table
        assert bool(column) == (kind == DISTRIBUTED), table
