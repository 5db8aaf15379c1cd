"""Alembic environment: migrations run on the engine safehold hands in, all of them
in ONE transaction together with the record of the revision in ``meta``.

Alembic treats SQLite as having no transactional DDL and, left alone, commits after
each migration; a transaction begun *before* ``configure`` is "external" to Alembic, so
it commits nothing itself and a crash leaves the schema as it was before. (SQLite and
PostgreSQL both roll DDL back.) `safehold upgrade` does not use this file: it runs its
own transaction with the invariant checks inside (safehold.upgrade.runner)."""

from alembic import context

from safehold.store import versioning
from safehold.store.schema import metadata

config = context.config
engine = config.attributes["engine"]

with engine.connect() as connection:
    with connection.begin():
        context.configure(connection=connection, target_metadata=metadata,
                          render_as_batch=connection.dialect.name == "sqlite",
                          transaction_per_migration=False)
        context.run_migrations()
        head = context.get_context().get_current_revision()
        if head is not None:
            versioning.record(connection, head)
