"""`safehold backup init|now|verify`, `safehold restore`, `safehold drill`."""

from __future__ import annotations

import shutil
import signal
import sys
import time
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import urlsplit
from types import FrameType, TracebackType
from typing import Any

import click
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from safehold import config as config_mod
from safehold.backup import drill as drill_mod
from safehold.backup import manifest as manifest_mod
from safehold.backup import retention
from safehold.backup import verify as verify_mod
from safehold.backup import setup
from safehold.backup.crypto import Key
from safehold.backup.crypto import read_kit
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.restore import check_point
from safehold.backup.restore import restore as run_restore
from safehold.backup.restore import seq_for_time
from safehold.backup.shipper import Shipper, ShipResult
from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store import unfinished, wipe


def _progress(stage: str, done: int, total: int) -> None:
    end = "\n" if done >= total or not sys.stderr.isatty() else ""
    click.echo(f"\r{stage}: {done}/{total}", err=True, nl=False)
    if end:
        click.echo("", err=True)


@click.group()
def backup() -> None:
    """Replicas, the recovery kit, shipping and verification."""


@backup.command("init")
@click.option("--replica", "replicas", multiple=True, required=True,
              help="file:///ABS/PATH or s3://bucket/prefix?endpoint=http://host:port (repeatable).")
@click.option("--kit", type=click.Path(dir_okay=False), required=True,
              help="Where to write the recovery kit (key + replica locations). Keep it elsewhere.")
@common_options
def init(replicas: tuple[str, ...], kit: str, settings: Settings) -> None:
    """Choose replicas and write the recovery kit; shipping starts once it exists."""
    store = open_store(settings)
    try:
        for url in replicas:
            open_replica(url)
        key = setup.init(settings, store, list(replicas), Path(kit))
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"recovery kit written to {kit} (key fingerprint {key.fingerprint}).\n"
               "Copy it somewhere that is not this machine: without it the replicas cannot "
               "be read.")


def _shipper(settings: Settings) -> tuple[Shipper, list[str]]:
    store = open_store(settings)
    config = setup.resolve(settings, store)
    if config.problem or config.key is None:
        raise click.ClickException(config.problem or "no backup key")
    replicas = [open_replica(u) for u in config.replicas]
    return Shipper(store, config.key, replicas, store.lineage(), settings.snapshot_every), config.replicas


@backup.command("now")
@common_options
def now(settings: Settings) -> None:
    """Ship everything not yet shipped and take a snapshot, now."""
    shipper, _ = _shipper(settings)
    deadline = time.monotonic() + 60
    while True:
        with shipper.store.shipping_turn() as mine:
            if mine:
                results = shipper.ship_all(snapshot=True)
                break
        if time.monotonic() > deadline:
            raise click.ClickException("another process kept the shipping turn for 60 s; "
                                       "try again")
        time.sleep(0.2)
    failed = False
    for url, result in results.items():
        if isinstance(result, ShipResult):
            click.echo(f"{url}: holds seq {result.shipped_seq} ({result.segments} new segment(s), "
                       f"{result.blobs} new blob(s)) and a snapshot")
        else:
            failed = True
            click.echo(f"{url}: FAILED: {result}", err=True)
    if failed:
        raise SystemExit(1)


@backup.command("verify")
@common_options
def verify(settings: Settings) -> None:
    """Re-read and authenticate every object of every replica (a full verify pass; the
    server also does it in hourly slices)."""
    shipper, _ = _shipper(settings)
    bad = False
    for replica in shipper.replicas:
        problems = drill_mod.verify(replica, shipper.key)
        try:
            # Restart the rotating pass and run it to the end, so that status shows
            # this result (and a repaired replica turns green again).
            verify_mod.save_state(shipper.store, replica.url, verify_mod.VerifyState())
            state = verify_mod.run_slice(shipper.store, replica, shipper.key, None,
                                         float(settings.replica_verify_days), progress=_progress)
            problems = sorted(set(problems) | set(state.last_pass_problems))
        except SafeholdError as exc:
            problems.append(str(exc))
        for p in problems:
            click.echo(f"{replica.url}: {p}", err=True)
        bad = bad or bool(problems)
        if not problems:
            click.echo(f"{replica.url}: every object reads back and authenticates")
    if bad:
        raise SystemExit(1)


@backup.command("prune")
@click.option("--dry-run", is_flag=True, help="Show what would be deleted; delete nothing.")
@click.option("--keep-snapshots", type=int, help="Override replica_keep_snapshots.")
@click.option("--keep-days", type=float, help="Override replica_keep_days.")
@common_options
def prune(dry_run: bool, keep_snapshots: int | None, keep_days: float | None,
          settings: Settings) -> None:
    """Replica retention: delete old segments, snapshots and bodies from each replica,
    only after restoring the kept chain into a scratch database and comparing digests."""
    shipper, _ = _shipper(settings)
    snaps = settings.replica_keep_snapshots if keep_snapshots is None else keep_snapshots
    days = float(settings.replica_keep_days) if keep_days is None else keep_days
    failed = False
    for replica in shipper.replicas:
        try:
            p = retention.run(shipper.store, replica, shipper.key, snaps, days, dry_run=dry_run,
                              progress=_progress)
        except SafeholdError as exc:
            click.echo(f"{replica.url}: FAILED: {exc}", err=True)
            failed = True
            continue
        if dry_run:
            click.echo(f"{replica.url}: dry run: would keep {len(p.kept_snapshots)} snapshot(s) "
                       f"(restores reach back to seq {p.keep_from_seq}) and {p.kept_objects} "
                       f"object(s), {p.kept_bytes} bytes; would delete {len(p.delete)} "
                       f"object(s), {p.delete_bytes} bytes")
            for name in p.delete[:20]:
                click.echo(f"  would delete {name}")
            if len(p.delete) > 20:
                click.echo(f"  ... and {len(p.delete) - 20} more")
        else:
            click.echo(f"{replica.url}: {p.detail}; kept {p.kept_objects} object(s), "
                       f"{p.kept_bytes} bytes" + (" (the kept chain restored and matched the "
                                                  "live data first)" if p.deleted else ""))
    if failed:
        raise SystemExit(1)


@click.command()
@click.option("--from", "source", required=True, help="The replica URL.")
@click.option("--kit", type=click.Path(dir_okay=False, exists=True), required=True,
              help="The recovery kit written by `safehold backup init`.")
@click.option("--into", "into", type=click.Path(file_okay=False), required=True,
              help="A new, empty data directory.")
@click.option("--to", "point", help="ISO 8601 time to restore to (default: the newest).")
@click.option("--seq", type=int, help="Change number to restore to.")
@click.option("--user", help="Restore only this user's data.")
@click.option("--database-url", "database_url", metavar="postgresql://…",
              help="Restore into this new, empty PostgreSQL database instead of a new "
                   "SQLite database in --into (which still gets the backup key and recovery "
                   "kit); serve it with the same --database-url. Not read from "
                   "SAFEHOLD_DATABASE_URL, which may still name the lost database.")
def restore(source: str, kit: str, into: str, point: str | None, seq: int | None,
            user: str | None, database_url: str | None) -> None:
    """Rebuild a server from a replica and the recovery kit alone, into a new data
    directory: a new SQLite database in it, or with --database-url an empty PostgreSQL
    database. Nothing is written if the target already holds data; a restore that
    fails half-way removes what it wrote, so that the same command can run again."""
    target = Path(into)
    _remove_unfinished(target, database_url)
    if (target / "safehold.db").exists():
        raise click.ClickException(f"{into} already holds a database; restore into a new directory")
    if database_url is not None:
        _check_restore_target(database_url, target)
    _check_keys_kept(target, Path(kit))
    settings = config_mod.load(None, {"data_dir": target, "database_url": database_url},
                               environ={})
    when = None
    if point is not None:
        try:
            when = datetime.fromisoformat(point.replace("Z", "+00:00"))
        except ValueError as exc:
            raise click.BadParameter(f"{point!r} is not an ISO 8601 time") from exc
    with _Undo(target, database_url) as undo:
        key, _ = read_kit(Path(kit))
        replica = open_replica(source)
        to_seq = seq if when is None else seq_for_time(replica, key, when.timestamp())
        unshipped = check_point(replica, key, to_seq, user)  # refuses before writing
        undo.database_opened = True  # from here on the database may hold restored rows
        store = open_store(settings, restoring=True)
        # Until its last step, a database no process serves (store/unfinished.py): a
        # restore killed outright cannot undo itself, and a partial one must never serve.
        unfinished.mark(store, f"from {_without_secrets(source)}, started "
                               f"{datetime.now(UTC).isoformat(timespec='seconds')}")
        report = run_restore(replica, key, store, to_seq=to_seq, user=user, progress=_progress,
                             unshipped=unshipped)
        # The restored server goes on shipping to the same replica with the same key
        # (same lineage) — or, restored to an earlier point, needs a new replica.
        replicas = [source] if report.lineage == _lineage_of(replica, key) else []
        if replicas:
            setup.init(settings, store, replicas, target / "recovery-kit.json", key=key)
        unfinished.clear(store)
    if report.lineage != _lineage_of(replica, key):
        click.echo("restored to an earlier point: this is a new lineage; configure a new, empty "
                   "replica with `safehold backup init` before serving", err=True)
    click.echo(f"restored seq {report.seq} ({report.changes} changes, {report.items} items, "
               f"{report.blobs} bodies, {report.bytes} bytes; read {report.objects} objects, "
               f"{report.read_bytes} bytes from the replica) into {into}; lineage "
               f"{report.lineage}. Start it with: safehold serve --data-dir {into}"
               + (f" --database-url {_shown(database_url)}" if database_url else ""))


def _shown(url: str) -> str:
    return make_url(url).render_as_string(hide_password=True)


def _without_secrets(url: str) -> str:
    parts = urlsplit(url)
    return parts._replace(netloc=parts.hostname or "").geturl() if parts.password else url


def _remove_unfinished(target: Path, database_url: str | None) -> None:
    """A restore killed outright left its target marked unfinished (store/unfinished.py):
    start over by removing that partial restore, and only that."""
    url = database_url or f"sqlite:///{target / 'safehold.db'}"
    if database_url is None and not (target / "safehold.db").exists():
        return
    engine = engine_mod.create(url)
    try:
        detail = unfinished.found(engine)
        if detail is not None and database_url is not None:
            wipe.drop_schema(engine)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    except sa.exc.DBAPIError:
        return  # unreachable or not a database: the checks below say so
    finally:
        engine.dispose()
    if detail is None:
        return
    if database_url is None:
        for name in ("safehold.db", "safehold.db-wal", "safehold.db-shm"):
            (target / name).unlink(missing_ok=True)
    else:
        # Killed after its last step but one (setup.init): the key and kit it wrote from
        # the kit given. A restore into PostgreSQL refuses a directory holding a key (it
        # checked there was none before it started), so they are that restore's own.
        for name in (setup.key_path(config_mod.Settings(data_dir=target)).name,
                     "recovery-kit.json"):
            (target / name).unlink(missing_ok=True)
    click.echo(f"removed an unfinished restore ({detail}) from "
               f"{_shown(database_url) if database_url else target}; starting over", err=True)


def _check_restore_target(url: str, into: Path) -> None:
    """Refuse, before anything is written, a PostgreSQL target that holds data or
    cannot be reached, and a data directory whose key a restore would overwrite."""
    if not url.startswith(("postgresql://", "postgres://", "postgresql+psycopg://")):
        raise click.BadParameter("restore into SQLite needs no URL (leave --database-url out: "
                                 "the database goes into --into); otherwise give postgresql://…",
                                 param_hint="--database-url")
    if setup.key_path(config_mod.Settings(data_dir=into)).exists():
        raise click.ClickException(f"{into} already holds a backup key; restore into a new "
                                   "directory")
    engine = engine_mod.create(url)
    try:
        problem = rep.restore_target_problem(engine)
    except SafeholdError as exc:
        raise click.ClickException(f"{exc}. Check the URL and that the server runs; create the "
                                   "database first (createdb NAME). Nothing was written") from exc
    finally:
        engine.dispose()
    if problem:
        raise click.ClickException(
            f"refusing to restore into {_shown(url)}: {problem}. Restore into a new, empty "
            "database (createdb NAME), or drop this one if it is a failed restore's leftover. "
            "Nothing was written")


def _check_keys_kept(into: Path, kit: Path) -> None:
    """Refuse, before anything is written, a data directory holding a backup key that
    is not the recovery kit's: the restore writes the kit's key to backup.key and
    recovery-kit.json, and the key there may be the only way to read its replicas.
    The kit's own key stays (the lost server's directory; a retry after a restore
    killed once it had written the key): writing it again loses nothing."""
    found = [p for p in (setup.key_path(config_mod.Settings(data_dir=into)),
                         into / "recovery-kit.json") if p.exists()]
    if not found:
        return
    try:
        key, _ = read_kit(kit)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    for path in found:
        theirs = setup.read_key(path)
        if theirs is None or theirs.fingerprint != key.fingerprint:
            what = (f"a backup key with fingerprint {theirs.fingerprint}" if theirs
                    else "something that is not a readable backup key")
            raise click.ClickException(
                f"refusing to restore into {into}: its {path.name} holds {what}, not the "
                f"recovery kit's key ({key.fingerprint}), and the restore would write over it: "
                "it may be the only way to read that server's replicas. Restore into a new "
                "directory, or move that file somewhere safe first. Nothing was written")


def _interrupted(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt  # SIGTERM: undo like Ctrl-C, then exit


class _Undo:
    """A restore that does not finish removes what it wrote: the data directory it
    created (or the entries it added to an existing one) and, with --database-url,
    safehold's tables — the target was checked to hold no safehold data before, so
    they are the restore's own. The target is then as the restore found it, and the
    same command runs again (a partly filled target would be refused as not new).
    Ctrl-C and SIGTERM end a restore the same way; one killed outright (SIGKILL, power
    loss) cannot undo itself."""

    def __init__(self, target: Path, database_url: str | None) -> None:
        self.target, self.database_url = target, database_url
        self.made_dir = not target.exists()
        while self.made_dir and not self.target.parent.exists():
            self.target = self.target.parent  # open_store creates the parents too
        self.before = set() if self.made_dir else {p.name for p in target.iterdir()}
        self.database_opened = False
        self._handlers: tuple[Any, Any] = (None, None)

    def __enter__(self) -> _Undo:
        self._handlers = (signal.getsignal(signal.SIGINT),
                          signal.signal(signal.SIGTERM, _interrupted))
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc is None:
            signal.signal(signal.SIGTERM, self._handlers[1])
            return
        # A second Ctrl-C must not stop the undo half-way and leave a target the next
        # attempt refuses; the undo is short (a rmtree, one DROP transaction).
        signal.signal(signal.SIGINT, signal.SIG_IGN)
        signal.signal(signal.SIGTERM, signal.SIG_IGN)
        try:
            done, problem = self._undo()
        finally:
            signal.signal(signal.SIGINT, self._handlers[0])
            signal.signal(signal.SIGTERM, self._handlers[1])
        what = ("interrupted" if isinstance(exc, KeyboardInterrupt)
                else exc.format_message() if isinstance(exc, click.ClickException)
                else str(exc) if isinstance(exc, SafeholdError)
                else f"{type(exc).__name__}: {exc}")
        if problem:
            raise click.ClickException(
                f"restore failed: {what}. Removing the partial restore failed too "
                f"({problem}): {self._by_hand()}, then run the same command again") from exc
        if not done:
            raise click.ClickException(what) from exc  # nothing had been written
        raise click.ClickException(
            f"restore failed: {what}. Removed what it had written ({'; '.join(done)}): "
            "the target is as before: run the same command again once the cause is "
            "fixed") from exc

    def _undo(self) -> tuple[list[str], str | None]:
        done: list[str] = []
        try:
            if self.database_url is not None and self.database_opened:
                engine = engine_mod.create(self.database_url)
                try:
                    dropped = wipe.drop_schema(engine)
                finally:
                    engine.dispose()
                if dropped:
                    done.append(f"dropped safehold's {len(dropped)} tables from "
                                f"{_shown(self.database_url)}")
            if self.made_dir:
                if self.target.exists():
                    shutil.rmtree(self.target)
                    done.append(f"deleted {self.target}")
            else:
                added = sorted(p for p in self.target.iterdir() if p.name not in self.before)
                for path in added:
                    if path.is_dir() and not path.is_symlink():
                        shutil.rmtree(path)
                    else:
                        path.unlink()
                if added:
                    done.append(f"deleted {', '.join(p.name for p in added)} from {self.target}")
        except (SafeholdError, OSError) as exc:
            return done, str(exc)
        return done, None

    def _by_hand(self) -> str:
        steps = []
        if self.database_url is not None and self.database_opened:
            steps.append(f"drop the database {_shown(self.database_url)} and create it again, "
                         "empty (dropdb NAME; createdb NAME)")
        steps.append(f"delete {self.target}" if self.made_dir
                     else f"delete what the restore added to {self.target}")
        return " and ".join(steps)


@click.command()
@common_options
def drill(settings: Settings) -> None:
    """Restore each replica into a scratch database and compare it with the live data."""
    shipper, _ = _shipper(settings)
    failed = False
    for replica in shipper.replicas:
        for r in drill_mod.drill(shipper.store, replica, shipper.key):
            click.echo(f"{r.replica}: {'PASS' if r.ok else 'FAIL'} at seq {r.seq} in "
                       f"{r.seconds:.1f}s: {r.detail}")
            failed = failed or not r.ok
    if failed:
        raise SystemExit(1)


def _lineage_of(replica: ReplicaClient, key: Key) -> str | None:
    man = manifest_mod.read(replica, key)
    return man.lineage if man else None
