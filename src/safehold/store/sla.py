"""The store side of service levels: probe samples, SLA events, the internal canary
account the built-in prober writes to, and keeping what the prober leaves behind small.

The canary's own changes are not user data: nobody holds a sync token on its
collection, no export or listing shows it, and its item rows older than a day (and
already on every replica) are deleted by ``compact`` so that a prober writing every
few seconds does not grow the change log forever (docs/sla.md)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection, Engine

from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from safehold.store.schema import (
    change, meta, principal, probe_sample, replica_state, resource, sla_event, version,
)

# A name `safehold user add` refuses (names start with a letter or digit), so no user
# can take it or log in as it by accident.
CANARY_USER = "_sla-canary"
CANARY_COLLECTION = f"files/{CANARY_USER}/probe"
CANARY_PREFIX = f"files/{CANARY_USER}/"
SAMPLE_DAYS = 100  # probe samples kept; events (the figures reports use) are kept forever
_PASSWORD_KEY = "sla_canary_password"
_SINCE_KEY = "sla_measured_since"


def is_internal(name: str) -> bool:
    return name == CANARY_USER


def _rows(c: Connection, stmt: Any) -> list[dict[str, Any]]:
    return [dict(r._mapping) for r in c.execute(stmt)]


def _get_meta(c: Connection, key: str) -> str | None:
    value = c.execute(sa.select(meta.c.value).where(meta.c.key == key)).scalar()
    return None if value is None else str(value)


def _set_meta(c: Connection, key: str, value: str) -> None:
    if c.execute(sa.update(meta).where(meta.c.key == key).values(value=value)).rowcount == 0:
        c.execute(sa.insert(meta).values(key=key, value=value))


# -- the canary account --------------------------------------------------------

def canary_password(store: Store) -> str | None:
    """The canary's password lives in ``meta``, which is never shipped to replicas; it
    opens nothing but the canary's own collection."""
    return store._read(lambda c: _get_meta(c, _PASSWORD_KEY))


def save_canary_password(store: Store, password: str) -> None:
    store._write(lambda c: _set_meta(c, _PASSWORD_KEY, password))


# -- samples -------------------------------------------------------------------

def record_sample(store: Store, at: float, ok: bool, latency: float, step: str, detail: str) -> None:
    store._write(lambda c: c.execute(sa.insert(probe_sample).values(
        at=at, ok=ok, latency=latency, step=step, detail=detail[:1000])))


def samples(store: Store, start: float, end: float) -> list[dict[str, Any]]:
    return store._read(lambda c: _rows(c, sa.select(probe_sample).where(
        probe_sample.c.at >= start, probe_sample.c.at < end).order_by(probe_sample.c.at)))


def last_sample_at(store: Store) -> float | None:
    value = store._read(lambda c: c.execute(sa.select(sa.func.max(probe_sample.c.at))).scalar())
    return None if value is None else float(value)


def measured_since(store: Store) -> float | None:
    value = store._read(lambda c: _get_meta(c, _SINCE_KEY))
    return None if value is None else float(value)


def start_measuring(store: Store, now: float) -> float:
    """The first time a prober ever ran here: before it, nothing was measured."""
    def tx(c: Connection) -> float:
        have = _get_meta(c, _SINCE_KEY)
        if have is not None:
            return float(have)
        _set_meta(c, _SINCE_KEY, repr(now))
        return now
    return store._write(tx)


# -- events --------------------------------------------------------------------

def open_events(store: Store) -> list[dict[str, Any]]:
    return store._read(lambda c: _rows(c, sa.select(sla_event).where(sla_event.c.ended_at.is_(None))
                                       .order_by(sla_event.c.id)))


def events_between(store: Store, start: float, end: float) -> list[dict[str, Any]]:
    """Every event that overlaps [start, end)."""
    return store._read(lambda c: _rows(c, sa.select(sla_event).where(
        sla_event.c.started_at < end,
        sa.or_(sla_event.c.ended_at.is_(None), sla_event.c.ended_at > start))
        .order_by(sla_event.c.started_at)))


def apply_events(store: Store, close: list[int], close_at: float, opened: list[dict[str, Any]],
                 values: list[tuple[int, float]]) -> None:
    if not (close or opened or values):
        return

    def tx(c: Connection) -> None:
        if close:
            c.execute(sa.update(sla_event).where(sla_event.c.id.in_(close))
                      .where(sla_event.c.ended_at.is_(None)).values(ended_at=close_at))
        for row in opened:
            c.execute(sa.insert(sla_event).values(**row))
        for event_id, value in values:
            c.execute(sa.update(sla_event).where(sla_event.c.id == event_id).values(value=value))
    store._write(tx)


# -- keeping it small ------------------------------------------------------------

def compact(store: Store, now: float, canary_keep_seconds: float = 86400.0) -> tuple[int, int]:
    """Delete probe samples older than SAMPLE_DAYS, and the canary's item versions and
    change rows older than ``canary_keep_seconds`` that every replica already holds
    (replicas keep them; drills leave the canary out of their digests). The canary's
    collections and any item that is still a head stay. Returns (samples, changes)."""
    def tx(c: Connection) -> tuple[int, int]:
        gone = c.execute(sa.delete(probe_sample).where(
            probe_sample.c.at < now - SAMPLE_DAYS * 86400)).rowcount
        owner = c.execute(sa.select(principal.c.id).where(principal.c.name == CANARY_USER)).scalar()
        if owner is None:
            return gone, 0
        shipped = c.execute(sa.select(sa.func.min(replica_state.c.shipped_seq))).scalar()
        seqs = (sa.select(change.c.seq).where(change.c.owner_id == owner)
                .where(change.c.path.startswith(CANARY_COLLECTION + "/"))
                .where(change.c.at < now - canary_keep_seconds)
                .where(change.c.seq.not_in(sa.select(resource.c.seq)))
                .where(change.c.seq.not_in(sa.select(version.c.seq).where(
                    version.c.id.in_(sa.select(resource.c.version_id))))))
        if shipped is not None:
            seqs = seqs.where(change.c.seq <= int(shipped))
        doomed = list(c.execute(seqs.limit(50000)).scalars())
        for i in range(0, len(doomed), 500):
            part = doomed[i:i + 500]
            c.execute(sa.delete(version).where(version.c.seq.in_(part)))
            c.execute(sa.delete(change).where(change.c.seq.in_(part)))
        return gone, len(doomed)
    return store._write(tx)


# -- the external prober's own file ----------------------------------------------

def open_sample_file(path: Path) -> Engine:
    """A SQLite file holding only ``probe_sample`` rows (safehold sla probe --samples)."""
    engine = engine_mod.create(f"sqlite:///{path.resolve()}")
    probe_sample.create(engine, checkfirst=True)
    return engine


def write_sample_file(engine: Engine, row: dict[str, Any]) -> None:
    with engine.begin() as c:
        c.execute(sa.insert(probe_sample).values(**row))


def read_sample_file(engine: Engine, start: float, end: float) -> list[dict[str, Any]]:
    with engine.connect() as c:
        return _rows(c, sa.select(probe_sample).where(probe_sample.c.at >= start,
                                                     probe_sample.c.at < end)
                     .order_by(probe_sample.c.at))
