"""The migrations, run from nothing to head, build exactly the schema that queries are
written against (store/schema.py): no column, index or table missing or extra, on
SQLite and on PostgreSQL. Migrations spell out their tables instead of importing
schema.py, so this is what keeps the two in step."""

from __future__ import annotations

from alembic.autogenerate import compare_metadata
from alembic.runtime.migration import MigrationContext

from safehold.store import engine as engine_mod
from safehold.store.schema import metadata


def test_migrations_build_the_declared_schema(database_url: str) -> None:
    eng = engine_mod.create(database_url)
    try:
        engine_mod.ensure_schema(eng)
        with eng.connect() as conn:
            ctx = MigrationContext.configure(conn, opts={"compare_type": True})
            diff = compare_metadata(ctx, metadata)
        assert diff == [], diff
    finally:
        eng.dispose()
