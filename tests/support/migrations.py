"""Test-only Alembic migrations, written into a directory that the test points
SAFEHOLD_TEST_MIGRATIONS at (store.engine). Each is stacked on the current head,
which is computed, never hard-coded (another migration may land any day).

kinds:
  ok      adds a table with a row, and re-creates ``resource`` through a batch
          (copy-and-rename on SQLite) with one more column: real DDL and data copy
  raises  does what ``ok`` does, then fails half-way with an exception
  breaks  does what ``ok`` does, then loses a live head: the invariants must catch it
(on an empty database, e.g. a drill's scratch database, every kind behaves as ``ok``)
"""

from __future__ import annotations

from pathlib import Path

from safehold.store import engine as engine_mod

TEMPLATE = '''"""Test migration {rev} ({kind}).

Revision ID: {rev}
Revises: {down}
"""

import sqlalchemy as sa
from alembic import op

from safehold.upgrade.runner import pause_point

revision = {rev!r}
down_revision = {down!r}
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table("probe_{rev}", sa.Column("id", sa.Integer, primary_key=True),
                    sa.Column("note", sa.Text, nullable=False))
    op.execute("INSERT INTO probe_{rev} (id, note) VALUES (1, 'half-way')")
    with op.batch_alter_table("resource", recreate="always") as batch:
        batch.add_column(sa.Column("probe_{rev}", sa.Integer, nullable=True))
    # The scratch databases of restore drills run this too, on no data: only a
    # populated database pauses, fails or loses a row.
    if op.get_bind().execute(sa.text("SELECT count(*) FROM resource")).scalar() == 0:
        return
    pause_point("during:{rev}")
    kind = {kind!r}
    if kind == "raises":
        raise RuntimeError("test migration {rev} fails half-way on purpose")
    if kind == "breaks":
        op.execute("DELETE FROM resource WHERE path = (SELECT max(path) FROM resource)")


def downgrade() -> None:
    raise RuntimeError("never")
'''


def current_head() -> str:
    head = engine_mod.script_directory().get_current_head()
    assert head is not None
    return head


def add(folder: Path, rev: str, kind: str = "ok", down: str | None = None) -> str:
    """Write migration ``rev`` into ``folder`` on top of ``down`` (default: the head
    that the real migrations and those already in ``folder`` give). Returns ``down``."""
    folder.mkdir(parents=True, exist_ok=True)
    if down is None:
        down = head_with(folder)
    (folder / f"{rev}.py").write_text(TEMPLATE.format(rev=rev, down=down, kind=kind))
    return down


def head_with(folder: Path) -> str:
    import os
    old = os.environ.get(engine_mod.TEST_MIGRATIONS_ENV)
    os.environ[engine_mod.TEST_MIGRATIONS_ENV] = str(folder)
    try:
        return current_head()
    finally:
        if old is None:
            del os.environ[engine_mod.TEST_MIGRATIONS_ENV]
        else:
            os.environ[engine_mod.TEST_MIGRATIONS_ENV] = old
