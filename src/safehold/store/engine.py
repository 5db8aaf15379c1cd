"""Opening the database: engine creation, durability pragmas, the startup self-test
and schema creation/migration through Alembic."""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from alembic import command
from alembic.config import Config as AlembicConfig
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Engine

from safehold.errors import SelfTestFailed, StoreUnavailable
from safehold.store import sqlite_dbapi

log = logging.getLogger(__name__)

# The first SQLite release without the WAL-reset bug (see sqlite_dbapi's docstring).
WAL_RESET_FIXED = (3, 51, 3)
MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'safehold.db').resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def create(url: str) -> Engine:
    """Create the engine for ``url`` (sqlite:///… or postgresql://…)."""
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[1] if ":///" in url else ""
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, module=sqlite_dbapi, pool_size=8, max_overflow=16,
            poolclass=sa.pool.QueuePool, connect_args={"timeout": 30.0},
        )

        @sa.event.listens_for(engine, "connect")
        def _pragmas(dbapi_conn: Any, _record: Any) -> None:
            db = dbapi_conn.apsw
            # Promise 1: WAL with synchronous=FULL fsyncs the WAL on every commit,
            # so a 2xx is never sent for a write that is not on stable storage.
            db.execute("PRAGMA journal_mode=WAL")
            db.execute("PRAGMA synchronous=FULL")
            db.execute("PRAGMA foreign_keys=ON")
            # Keep fsync failures fatal: SQLite reports SQLITE_IOERR_FSYNC and the
            # writer turns that into a process exit (fsyncgate).
            db.execute("PRAGMA cell_size_check=ON")

        return engine
    if url.startswith("postgres"):
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        return sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True)
    raise StoreUnavailable(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


def _alembic_config(engine: Engine) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    cfg.attributes["engine"] = engine
    return cfg


def schema_state(engine: Engine) -> tuple[str | None, str]:
    """Return (current revision in the database, head revision of this code)."""
    cfg = _alembic_config(engine)
    head = ScriptDirectory.from_config(cfg).get_current_head()
    assert head is not None
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def ensure_schema(engine: Engine) -> None:
    """Create the schema on first use; refuse an older or newer one."""
    current, head = schema_state(engine)
    if current == head:
        return
    if current is None:
        with engine.connect() as conn:
            has_tables = sa.inspect(conn).has_table("change")
        if has_tables:
            raise StoreUnavailable("the database has tables but no schema version; "
                                   "it was not created by safehold")
        log.info("creating the database schema (revision %s)", head)
        command.upgrade(_alembic_config(engine), "head")
        return
    script = ScriptDirectory.from_config(_alembic_config(engine))
    known = {rev.revision for rev in script.walk_revisions()}
    if current not in known:
        raise StoreUnavailable(
            f"the database schema ({current}) is newer than this safehold knows "
            f"(head {head}); run the safehold version that wrote it")
    raise StoreUnavailable(
        f"the database schema ({current}) is older than this safehold ({head}); "
        "run `safehold upgrade` first")


def self_test(engine: Engine) -> dict[str, str]:
    """Refuse a store that could lose acknowledged writes. Returns what was checked."""
    facts: dict[str, str] = {"dialect": engine.dialect.name}
    if is_sqlite(engine):
        version = sqlite_dbapi.sqlite_version_info
        facts["sqlite_version"] = sqlite_dbapi.sqlite_version
        if version < WAL_RESET_FIXED:
            raise SelfTestFailed(
                f"SQLite {sqlite_dbapi.sqlite_version} has the WAL-reset bug "
                "(fixed in 3.51.3); install an apsw wheel that bundles a fixed SQLite")
        with engine.connect() as conn:
            mode = conn.exec_driver_sql("PRAGMA journal_mode").scalar()
            sync = conn.exec_driver_sql("PRAGMA synchronous").scalar()
            check = conn.exec_driver_sql("PRAGMA quick_check").scalar()
        facts.update(journal_mode=str(mode), synchronous=str(sync), quick_check=str(check))
        if str(mode).lower() != "wal":
            raise SelfTestFailed(f"journal_mode is {mode}, expected wal")
        if int(str(sync)) < 2:
            raise SelfTestFailed(f"synchronous is {sync}, expected FULL (2) or stronger")
        if check != "ok":
            raise SelfTestFailed(f"the database failed its integrity check: {check}")
    else:
        with engine.connect() as conn:
            fsync = conn.exec_driver_sql("SHOW fsync").scalar()
            sync_commit = conn.exec_driver_sql("SHOW synchronous_commit").scalar()
        facts.update(fsync=str(fsync), synchronous_commit=str(sync_commit))
        if fsync != "on" or sync_commit not in ("on", "remote_write", "remote_apply"):
            log.warning("PostgreSQL durability is weakened: fsync=%s synchronous_commit=%s; "
                        "acknowledged writes may be lost in a crash", fsync, sync_commit)
    return facts


def integrity_check(engine: Engine) -> str:
    if not is_sqlite(engine):
        return "ok"
    with engine.connect() as conn:
        return str(conn.exec_driver_sql("PRAGMA integrity_check").scalar())


def fatal_fsync(exc: BaseException) -> None:
    """An fsync failed: a retry could report success with the data gone (fsyncgate).
    Stop now; the WAL replays committed transactions on the next start."""
    log.critical("fsync failed (%s); stopping the process to recover from the log", exc)
    logging.shutdown()
    os._exit(70)
