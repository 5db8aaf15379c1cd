"""Which schema and which safehold wrote this database, and whether an upgrade is
running on it (DESIGN promise 7; promise 8: a server unsure of its schema answers 503).

Keys of the ``meta`` table written here:
  schema.revision     the Alembic revision the schema was created or upgraded to
  safehold.version    the safehold release that did it (named when a newer schema is
                      met by an older release)
  upgrade.running     JSON marker, committed *before* the migration transaction starts and
                      removed after it committed (or was rolled back): while it exists,
                      every process sharing the database answers /readyz and DAV with 503
  upgrade.override    JSON record of the last ``--override-gate REASON``
  upgrade.last        JSON record of the last finished upgrade (or restore)
The reads use plain SQL so that they work on every schema revision since 0001."""

from __future__ import annotations

import json
import time
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from safehold import __version__

SCHEMA_REVISION = "schema.revision"
APP_VERSION = "safehold.version"
MARKER = "upgrade.running"
OVERRIDE = "upgrade.override"
LAST = "upgrade.last"


def get(conn: Connection, key: str) -> str | None:
    value = conn.execute(sa.text("SELECT value FROM meta WHERE key = :k"), {"k": key}).scalar()
    return None if value is None else str(value)


def put(conn: Connection, key: str, value: str) -> None:
    if conn.execute(sa.text("UPDATE meta SET value = :v WHERE key = :k"),
                    {"k": key, "v": value}).rowcount == 0:
        conn.execute(sa.text("INSERT INTO meta (key, value) VALUES (:k, :v)"), {"k": key, "v": value})


def delete(conn: Connection, key: str) -> None:
    conn.execute(sa.text("DELETE FROM meta WHERE key = :k"), {"k": key})


def record(conn: Connection, revision: str) -> None:
    """Note in ``meta`` the revision and the safehold release that wrote it (called in
    the transaction that created or migrated the schema)."""
    put(conn, SCHEMA_REVISION, revision)
    put(conn, APP_VERSION, __version__)


def get_json(conn: Connection, key: str) -> dict[str, Any] | None:
    raw = get(conn, key)
    if raw is None:
        return None
    try:
        value = json.loads(raw)
    except ValueError:
        return {"raw": raw}
    return value if isinstance(value, dict) else {"raw": raw}


def marker(engine: Engine) -> dict[str, Any] | None:
    with engine.connect() as conn:
        if not sa.inspect(conn).has_table("meta"):
            return None
        return get_json(conn, MARKER)


def describe_marker(found: dict[str, Any]) -> str:
    started = found.get("started_at")
    when = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(started))) if started else "?"
    return (f"a schema upgrade from {found.get('from')} to {found.get('to')} is running or was "
            f"interrupted (started {when} by safehold {found.get('by', '?')}, pid "
            f"{found.get('pid', '?')}); serving is paused so that devices keep their data. "
            "If no `safehold upgrade` is running, run it again: it finishes or restores")


def serving_problem(engine: Engine, head: str) -> str | None:
    """Why a process built for schema ``head`` must not serve right now, or None:
    an upgrade is running (or was interrupted), or another process already upgraded
    the schema past this process's code. One small query; callers cache it briefly."""
    with engine.connect() as conn:
        found = get_json(conn, MARKER)
        current = conn.execute(sa.text("SELECT version_num FROM alembic_version")).scalar()
        writer = get(conn, APP_VERSION)
    if found is not None:
        return describe_marker(found)
    if current is not None and str(current) != head:
        return (f"the database schema is now {current} (written by safehold {writer or '?'}), "
                f"this process runs schema {head}: restart it with the safehold release that "
                "upgraded the database")
    return None
