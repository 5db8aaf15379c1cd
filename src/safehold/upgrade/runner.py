"""`safehold upgrade`, step by step (docs/upgrades.md):

1. gate: a verified backup taken moments before (``--backup-now`` takes one), or an
   explicit, recorded ``--override-gate REASON``;
2. the marker ``upgrade.running`` is committed in ``meta``: from now on every process
   sharing the database answers /readyz and DAV with 503 (store.versioning);
3. the pre-upgrade state is kept: a snapshot pinned on every replica, and with SQLite a
   local copy (upgrade.preserve);
4. every pending migration, the invariant check and the record of the new revision
   run in ONE transaction, committed only when the invariants hold: a crash at any
   instant leaves the old schema with the old data or the new schema with the
   migrated data (SQLite and PostgreSQL both roll DDL back);
5. the marker is removed. On failure the transaction is rolled back, the database is
   compared with the invariants recorded in the marker, and restored from the local
   copy if it differs; the command says what failed and exits non-zero.
A later run that finds the marker (the process was killed) finishes or rolls back.

``SAFEHOLD_UPGRADE_PAUSE_AT=STEP`` (test suite only) stops at STEP so that a test can
SIGKILL the process there: marked, migrating, after:REV, verified, committed; a test
migration may call :func:`pause_point` itself ("during:REV")."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

import sqlalchemy as sa
from alembic.runtime.environment import EnvironmentContext
from alembic.script import Script

from safehold import __version__
from safehold.backup import setup
from safehold.config import Settings
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import faults, sqlite_dbapi, versioning
from safehold.store.repo import WRITE_LOCK_KEY, Store
from safehold.store.schema import metadata
from safehold.upgrade import checks, gate, preserve

log = logging.getLogger("safehold.upgrade")
PAUSE_ENV = "SAFEHOLD_UPGRADE_PAUSE_AT"
Say = Callable[[str], None]


class UpgradeError(SafeholdError):
    """The upgrade did not happen; the message says why and what the data is now."""


class GateClosed(UpgradeError):
    pass


class InvariantsBroken(UpgradeError):
    pass


def pause_point(step: str) -> None:
    if os.environ.get(PAUSE_ENV) == step:
        sys.stderr.write(f"upgrade paused at {step}\n")
        sys.stderr.flush()
        time.sleep(600)


@dataclass
class Plan:
    current: str | None
    head: str
    pending: list[Script] = field(default_factory=list)  # oldest first

    def describe(self) -> list[str]:
        return [f"  {s.revision}: {(s.doc or '').strip().splitlines()[0] if s.doc else ''}"
                for s in self.pending]


def plan(engine: sa.engine.Engine) -> Plan:
    current, head = engine_mod.schema_state(engine)
    script = engine_mod.script_directory()
    known = {s.revision for s in script.walk_revisions()}
    if current is not None and current not in known:
        engine_mod.ensure_schema(engine)  # raises: names the release that wrote it
    pending = list(reversed(list(script.iterate_revisions(head, current or "base"))))
    return Plan(current, head, [s for s in pending if s.revision != current])


@dataclass
class Options:
    dry_run: bool = False
    backup_now: bool = False
    override: str | None = None


def _operator() -> str:
    return os.environ.get("USER") or os.environ.get("LOGNAME") or f"uid {os.getuid()}"


def _write_meta(engine: sa.engine.Engine, **values: dict[str, Any] | None) -> None:
    with engine.begin() as conn:
        for key, value in values.items():
            name = {"marker": versioning.MARKER, "last": versioning.LAST,
                    "override": versioning.OVERRIDE}[key]
            if value is None:
                versioning.delete(conn, name)
            else:
                versioning.put(conn, name, json.dumps(value, sort_keys=True))


def _capture(engine: sa.engine.Engine) -> checks.Invariants:
    with engine.connect() as conn:
        with conn.begin():
            return checks.capture(conn)


def _transforms(pending: list[Script], say: Say) -> list[tuple[str, checks.Check]]:
    out = []
    for s in pending:
        declared = getattr(s.module, "TRANSFORMS", None)
        if declared is None:
            continue
        check = getattr(s.module, "check_invariants", None)
        if check is None:
            raise UpgradeError(f"migration {s.revision} declares a data transformation "
                               f"({declared}) but has no check_invariants(); refusing to run it")
        say(f"migration {s.revision} transforms data ({declared}); its own check replaces "
            "the equality of per-collection digests")
        out.append((s.revision, check))
    return out


def migrate(engine: sa.engine.Engine, p: Plan, say: Say) -> tuple[checks.Invariants, checks.Invariants]:
    """Every pending migration, the invariant check and the revision record in one
    transaction; raises (after rollback) on any failure."""
    script = engine_mod.script_directory()
    transforms = _transforms(p.pending, say)
    cfg = engine_mod.alembic_config(engine)
    with engine.connect() as conn:
        dbapi = conn.connection.dbapi_connection
        lite = dbapi if isinstance(dbapi, sqlite_dbapi.Connection) else None
        sqlite = lite is not None
        if lite is not None:
            lite.immediate = True  # the write lock from the first statement on
        try:
            with conn.begin():
                if not sqlite:
                    # Writers of every process take this lock: none commits meanwhile.
                    conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": WRITE_LOCK_KEY})
                before = checks.capture(conn)
                if sqlite:
                    # Foreign keys are checked at COMMIT, not per statement, so that a
                    # batch (copy-and-rename) migration can stay inside the transaction.
                    conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
                pause_point("migrating")

                def applied(ctx: Any, step: Any, heads: Any, run_args: Any) -> None:
                    say(f"  migrated to {step.up_revision_id} (not committed yet)")
                    pause_point(f"after:{step.up_revision_id}")

                def revisions(rev: Any, context: Any) -> Any:
                    return script._upgrade_revs(p.head, rev)

                with EnvironmentContext(cfg, script, fn=revisions, destination_rev=p.head) as env:
                    env.configure(connection=conn, target_metadata=metadata,
                                  render_as_batch=sqlite, transaction_per_migration=False,
                                  on_version_apply=applied)
                    env.run_migrations()
                after = checks.capture(conn)
                problems = checks.verify(conn, before, after, transforms)
                if problems:
                    raise InvariantsBroken("the invariants do not hold after migrating: "
                                           + "; ".join(problems[:10]))
                say(f"invariants hold: {len(after.collections)} collections with {after.items} "
                    f"live entries, {after.changes} changes, {after.versions} versions: equal")
                versioning.record(conn, p.head)
                pause_point("verified")
        finally:
            if lite is not None:
                lite.immediate = False
    return before, after


UPGRADE_LOCK_KEY = 0x5AFE0003  # PostgreSQL: held by the one `safehold upgrade` running


@contextlib.contextmanager
def _only_one(store: Store, data_dir: Path) -> Iterator[None]:
    """One `safehold upgrade` at a time per database: a PostgreSQL session advisory
    lock, or an exclusive lock on a file beside the SQLite database. Whoever holds it
    knows that a marker it finds was left by a process that is gone."""
    engine = store.engine
    if engine_mod.is_sqlite(engine):
        import fcntl
        db = engine.url.database
        folder = Path(db).resolve().parent if db else data_dir
        with open(folder / "upgrade.lock", "a+") as fh:
            try:
                fcntl.flock(fh.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError as exc:
                raise UpgradeError("another `safehold upgrade` is running on this database") from exc
            try:
                yield
            finally:
                fcntl.flock(fh.fileno(), fcntl.LOCK_UN)
        return
    with engine.connect() as conn:
        got = conn.execute(sa.text("SELECT pg_try_advisory_lock(:k)"), {"k": UPGRADE_LOCK_KEY}).scalar()
        conn.commit()
        if not got:
            raise UpgradeError("another `safehold upgrade` is running on this database")
        try:
            yield
        finally:
            conn.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": UPGRADE_LOCK_KEY})
            conn.commit()


def upgrade(store: Store, settings: Settings, opts: Options, say: Say) -> None:
    """Run (or with ``dry_run`` describe) the upgrade. Raises UpgradeError when it does
    not happen; returns when the schema is at the head of this code."""
    with _only_one(store, settings.data_dir):
        try:
            _upgrade(store, settings, opts, say)
        except Exception as exc:
            if faults.fsync_failed(exc):
                # fsyncgate: no rollback, restore or marker write may follow (a retried
                # fsync can report success with the data gone). The marker, if written,
                # stays: the next run replays the log and finishes or rolls back.
                say("the disk failed to fsync the database: stopped at once. Check the disk, "
                    "then run `safehold upgrade` again: it finishes or rolls back")
                engine_mod.fatal_fsync(exc)
            raise


def _upgrade(store: Store, settings: Settings, opts: Options, say: Say) -> None:
    engine = store.engine
    p = plan(engine)
    if p.current is None:
        if opts.dry_run:
            say(f"no schema yet: it would be created at {p.head}; nothing to upgrade")
            return
        engine_mod.ensure_schema(engine)
        say(f"no schema yet: created schema {p.head} (safehold {__version__})")
        return
    found = versioning.marker(engine)
    if found is not None:
        say("found an interrupted upgrade: " + versioning.describe_marker(found))
        if opts.dry_run:
            say("dry run: `safehold upgrade` would finish it or roll it back")
            return
        if _resume(store, settings, p, found, say):
            return
    if not p.pending:
        say(f"the schema is current ({p.head}, safehold {__version__}); nothing to upgrade")
        return
    say(f"schema {p.current} -> {p.head} (safehold {__version__}), "
        f"{len(p.pending)} migration(s):")
    for line in p.describe():
        say(line)
    config = setup.resolve(settings, store)
    if opts.backup_now and not opts.dry_run:
        problems = gate.backup_now(store, config, settings.snapshot_every, say)
        if problems:
            raise GateClosed("refusing to upgrade: the backup failed: " + "; ".join(problems))
    report = gate.evaluate(store, config, settings.upgrade_max_lag_seconds,
                           settings.upgrade_max_drill_age_seconds)
    for fact in report.facts:
        say(f"gate: {fact}")
    if opts.dry_run:
        say("gate: OPEN" if report.open else "gate: CLOSED: " + report.refusal())
        say("dry run: nothing was changed")
        return
    override = None
    if not report.open:
        if opts.override is None:
            raise GateClosed(report.refusal())
        override = {"reason": opts.override, "by": _operator(), "at": time.time(),
                    "refused": report.reasons, "from": p.current, "to": p.head}
        log.warning("THE UPGRADE GATE IS OVERRIDDEN by %s: %r. Without the override it would "
                    "refuse: %s", override["by"], opts.override, "; ".join(report.reasons))
        _write_meta(engine, override=override)
    else:
        say("gate: open")
    before = _capture(engine)
    marker: dict[str, Any] = {
        "from": p.current, "to": p.head, "by": __version__, "pid": os.getpid(),
        "operator": _operator(), "started_at": time.time(), "before": before.to_json(),
        "override": override is not None}
    _write_meta(engine, marker=marker)
    pause_point("marked")
    _preserve(store, settings, p, marker, say)
    _migrate_and_finish(store, p, marker, say)


def _preserve(store: Store, settings: Settings, p: Plan, marker: dict[str, Any], say: Say) -> None:
    """Pin the pre-upgrade snapshots and take the local copy (unless a run killed
    later already did), noting both in the marker."""
    engine = store.engine
    if "pinned" not in marker:
        try:
            marker["pinned"] = preserve.pin_snapshots(
                store, setup.resolve(settings, store), settings.snapshot_every, say)
        except Exception as exc:  # noqa: BLE001 - any replica failure: decide below, loudly
            if not marker.get("override"):
                _write_meta(engine, marker=None)
                raise UpgradeError(f"could not pin the pre-upgrade snapshot ({exc}); nothing "
                                   "was changed") from exc
            marker["pinned"] = {}
            log.warning("no pre-upgrade snapshot could be pinned (%s); continuing because the "
                        "gate is overridden", exc)
    if "local_copy" not in marker:
        copy = preserve.local_copy(store, settings.data_dir, str(p.current))
        marker["local_copy"] = None if copy is None else str(copy)
        if copy is not None:
            say(f"local pre-upgrade copy: {copy}")
    _write_meta(engine, marker=marker)


def _migrate_and_finish(store: Store, p: Plan, marker: dict[str, Any], say: Say) -> None:
    engine = store.engine
    started = time.monotonic()
    say(f"migrating {p.current} -> {p.head} in one transaction")
    try:
        migrate(engine, p, say)
    except Exception as exc:  # noqa: BLE001 - any failure of a migration: restore, then say it
        if faults.fsync_failed(exc):
            raise  # stops the process (upgrade), not a failure to recover from here
        _recover(store, marker, exc, say)
    pause_point("committed")
    _write_meta(engine, marker=None, last={
        "result": "upgraded", "from": marker["from"], "to": p.head, "by": __version__,
        "at": time.time(), "seconds": round(time.monotonic() - started, 3),
        "pinned": marker.get("pinned"), "local_copy": marker.get("local_copy"),
        "override": marker.get("override")})
    say(f"upgraded the schema to {p.head} in {time.monotonic() - started:.1f} s")


def _recover(store: Store, marker: dict[str, Any], exc: BaseException, say: Say) -> NoReturn:
    """The migration transaction failed and was rolled back: prove the database is the
    pre-upgrade state (restore the local copy if not), then raise UpgradeError."""
    engine = store.engine
    what = f"{type(exc).__name__}: {exc}" if not isinstance(exc, UpgradeError) else str(exc)
    log.error("the upgrade failed: %s", what)
    expected = checks.Invariants.from_json(marker["before"])
    current, _ = engine_mod.schema_state(engine)
    problems = checks.compare(expected, _capture(engine)) if current == marker["from"] else \
        [f"the schema is {current}, expected {marker['from']}"]
    restored = "rolled back"
    copy = marker.get("local_copy")
    if problems and copy and Path(copy).exists():
        say(f"the database does not match its pre-upgrade state ({'; '.join(problems[:3])}); "
            f"restoring the local copy {copy}")
        preserve.restore_local_copy(store, Path(copy))
        current, _ = engine_mod.schema_state(engine)
        problems = checks.compare(expected, _capture(engine)) if current == marker["from"] else \
            [f"the schema is {current}, expected {marker['from']}"]
        restored = f"restored from {copy}"
    if problems:
        pinned = marker.get("pinned") or {}
        pg = " --database-url postgresql://USER@HOST/NEW_DB" \
            if engine.dialect.name == "postgresql" else ""  # a new, empty database
        hint = "; ".join(f"`safehold restore --from {u} --kit KIT --into NEW_DIR --seq {s}{pg}`"
                         for u, s in pinned.items()) or "the operator's own database backup"
        raise UpgradeError(
            f"the upgrade failed ({what}) and the database does NOT match its pre-upgrade state "
            f"({'; '.join(problems[:5])}). Serving stays paused. Restore the pinned pre-upgrade "
            f"snapshot: {hint}") from exc
    _write_meta(engine, marker=None, last={
        "result": "failed, " + restored, "from": marker["from"], "to": marker["to"],
        "error": what, "at": time.time()})
    raise UpgradeError(
        f"the upgrade failed: {what}. Nothing was lost: the database was {restored} to "
        f"schema {marker['from']} and its {len(expected.collections)} collections "
        f"({expected.items} live entries) match their pre-upgrade digests. The server starts on it "
        "as before; report the error with this output") from exc


def _resume(store: Store, settings: Settings, p: Plan, found: dict[str, Any], say: Say) -> bool:
    """Finish or roll back what a killed run left. False: start over (through the gate)."""
    engine = store.engine
    expected = checks.Invariants.from_json(found.get("before") or {})
    if p.current == found.get("to"):
        # The migration committed (its invariants were checked in its transaction);
        # only the marker was left behind.
        transforms = any(getattr(s.module, "TRANSFORMS", None) for s in
                         engine_mod.script_directory().iterate_revisions(p.current, found["from"])
                         if s.revision != found["from"])
        problems = [] if transforms else checks.compare(expected, _capture(engine))
        if problems:
            raise UpgradeError("the interrupted upgrade committed, but the data does not match "
                               f"its pre-upgrade invariants: {'; '.join(problems[:5])}; serving "
                               "stays paused (see docs/upgrades.md, rolling back)")
        _write_meta(engine, marker=None, last={
            "result": "upgraded (finished after an interruption)", "from": found.get("from"),
            "to": p.current, "by": __version__, "at": time.time(), "pinned": found.get("pinned"),
            "local_copy": found.get("local_copy"), "override": found.get("override")})
        say(f"the interrupted upgrade had committed: schema {p.current}, invariants hold; done")
        if p.pending:
            say(f"this release goes further ({p.head}): starting over, through the gate")
            return False
        return True
    if p.current == found.get("from"):
        # The migration transaction never committed: the database is the old schema.
        problems = checks.compare(expected, _capture(engine))
        if not problems and p.pending:
            say(f"the database is still the pre-upgrade state (schema {p.current}, digests "
                "equal): migrating again")
            found["to"] = p.head
            _preserve(store, settings, p, found, say)
            _migrate_and_finish(store, p, found, say)
            return True
        _write_meta(engine, marker=None)
        if not p.pending:
            say(f"the schema {p.current} is current; the marker is removed")
            return True
        say(f"the data changed since the interrupted upgrade began ({'; '.join(problems[:3])}); "
            "starting over, through the gate")
        return False
    raise UpgradeError(f"an interrupted upgrade from {found.get('from')} to {found.get('to')} "
                       f"left the schema at {p.current}, which this safehold ({p.head}) cannot "
                       "finish; see docs/upgrades.md (rolling back)")
