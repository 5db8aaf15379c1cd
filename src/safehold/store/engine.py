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

from safehold import __version__
from safehold.errors import SelfTestFailed, StoreUnavailable
from safehold.store import sqlite_dbapi, versioning
from safehold.store.checkpoint import Checkpointer

log = logging.getLogger(__name__)

# The first SQLite release without the WAL-reset bug (see sqlite_dbapi's docstring).
WAL_RESET_FIXED = (3, 51, 3)
MIGRATIONS = Path(__file__).parent / "migrations"


def sqlite_url(data_dir: Path) -> str:
    return f"sqlite:///{(data_dir / 'safehold.db').resolve()}"


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def connection_idle(engine: Engine) -> bool:
    """Whether a checkout now would find a pooled connection without waiting for one
    (the HTTP layer reads on its event loop only then)."""
    pool = engine.pool
    return not isinstance(pool, sa.pool.QueuePool) or pool.checkedout() < pool.size()


def sqlite_file(url: str) -> str:
    """The file of a sqlite:///PATH URL ("" for an in-memory one)."""
    return url.split(":///", 1)[1] if ":///" in url else ""


def create(url: str, *, new: bool = True) -> Engine:
    """Create the engine for ``url`` (sqlite:///… or postgresql://…). ``new=False``: a
    SQLite database that must exist already (a child process of the server), never
    created; a missing one is SQLITE_CANTOPEN (store/lost.py)."""
    if url.startswith("sqlite"):
        path = sqlite_file(url)
        if path:
            Path(path).parent.mkdir(parents=True, exist_ok=True)
        engine = sa.create_engine(
            url, module=sqlite_dbapi, pool_size=8, max_overflow=16,
            poolclass=sa.pool.QueuePool, connect_args={"timeout": 30.0, "opened": [] if new else [True]},
        )
        checkpointer = Checkpointer(engine, fatal_fsync)

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
            # The store's writer checkpoints after its commit, never on the event
            # loop (store/checkpoint.py); this replaces SQLite's automatic checkpoint.
            db.set_wal_hook(checkpointer.wal_hook)
            checkpointer.watch(db.filename)

        return engine
    if url.startswith("postgres"):
        if url.startswith("postgresql://") or url.startswith("postgres://"):
            url = "postgresql+psycopg://" + url.split("://", 1)[1]
        # READ COMMITTED whatever the server's default_transaction_isolation: a write
        # takes the writers' advisory lock as its first statement, and only at READ
        # COMMITTED do the statements after it see what the previous writer committed
        # (REPEATABLE READ would have taken its snapshot before the wait). Reads that
        # need one snapshot ask for it (Store._snapshot).
        return sa.create_engine(url, pool_size=8, max_overflow=16, pool_pre_ping=True,
                                isolation_level="READ COMMITTED")
    raise StoreUnavailable(f"unsupported database URL {url!r}: use sqlite:///PATH or postgresql://…")


# Only the test suite sets this: a directory of extra migrations (e.g. one that fails
# half-way) stacked on the real head, to prove the upgrade path (docs/testing.md).
TEST_MIGRATIONS_ENV = "SAFEHOLD_TEST_MIGRATIONS"


def alembic_config(engine: Engine | None = None) -> AlembicConfig:
    cfg = AlembicConfig()
    cfg.set_main_option("script_location", str(MIGRATIONS))
    locations = [str(MIGRATIONS / "versions")]
    extra = os.environ.get(TEST_MIGRATIONS_ENV)
    if extra:
        locations.append(extra)
    cfg.set_main_option("path_separator", "os")  # alembic >= 1.16
    cfg.set_main_option("version_path_separator", "os")  # older alembic
    cfg.set_main_option("version_locations", os.pathsep.join(locations))
    cfg.attributes["engine"] = engine
    return cfg


def script_directory() -> ScriptDirectory:
    return ScriptDirectory.from_config(alembic_config())


def schema_state(engine: Engine) -> tuple[str | None, str]:
    """Return (current revision in the database, head revision of this code)."""
    head = script_directory().get_current_head()
    assert head is not None
    with engine.connect() as conn:
        current = MigrationContext.configure(conn).get_current_revision()
    return current, head


def ensure_schema(engine: Engine) -> None:
    """Create the schema on first use; refuse an older or newer one."""
    current, head = schema_state(engine)
    if current == head:
        with engine.connect() as conn:
            if versioning.get(conn, versioning.APP_VERSION) is None:
                # Created before the release was recorded: note it once.
                versioning.record(conn, head)
                conn.commit()
        return
    if current is None:
        with engine.connect() as conn:
            has_tables = sa.inspect(conn).has_table("change")
        if has_tables:
            raise StoreUnavailable("the database has tables but no schema version; "
                                   "it was not created by safehold")
        log.info("creating the database schema (revision %s)", head)
        # env.py runs every migration and this record in one transaction.
        command.upgrade(alembic_config(engine), "head")
        return
    known = {rev.revision for rev in script_directory().walk_revisions()}
    if current not in known:
        with engine.connect() as conn:
            writer = versioning.get(conn, versioning.APP_VERSION)
        raise StoreUnavailable(
            f"the database schema ({current}) was written by safehold {writer or '(unknown)'}, "
            f"newer than this safehold {__version__} (schema {head}); run safehold "
            f"{writer or 'of the release that upgraded it'} or newer. Downgrading is not "
            "supported: restore the pre-upgrade backup instead (docs/upgrades.md)")
    raise StoreUnavailable(
        f"the database schema ({current}) is older than this safehold {__version__} ({head}); "
        "run `safehold upgrade` first (docs/upgrades.md)")


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
        facts.update(_pg_durability(engine))
        problem = durability_problem(engine, facts)
        if problem:
            log.warning("%s", problem)
    return facts


PG_DURABILITY = ("fsync", "synchronous_commit", "full_page_writes")


def _pg_durability(engine: Engine) -> dict[str, str]:
    # SHOW gives the value in effect for safehold's own sessions, including a
    # per-database or per-role override (ALTER DATABASE … SET synchronous_commit).
    with engine.connect() as conn:
        return {name: str(conn.exec_driver_sql(f"SHOW {name}").scalar()) for name in PG_DURABILITY}


def durability_problem(engine: Engine, facts: dict[str, str] | None = None) -> str | None:
    """Why an acknowledged write could be lost in a crash of the database server, or
    None. SQLite: never (the self-test refuses a weak setup). PostgreSQL: the server
    is not ours to refuse, so this is a warning at startup and amber in `status`.
    Every synchronous_commit but ``off`` flushes the local WAL before the commit
    returns (``local``, ``remote_write`` and ``remote_apply`` too)."""
    if is_sqlite(engine):
        return None
    got = facts if facts is not None and all(k in facts for k in PG_DURABILITY) \
        else _pg_durability(engine)
    weak = [f"{k}={got[k]}" for k in PG_DURABILITY if got[k] == "off"]
    if not weak:
        return None
    return (f"PostgreSQL durability is weakened ({', '.join(weak)}): acknowledged writes may be "
            "lost if the database server crashes; set " + ", ".join(f"{w.split('=')[0]} = on"
                                                                    for w in weak)
            + " (postgresql.conf, or ALTER DATABASE/ROLE … RESET)")


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
