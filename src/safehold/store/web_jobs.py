"""The store side of web/jobs.py: one row per long operation started from a page."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.store.repo import Store
from safehold.store.schema import web_job


def add(store: Store, row: dict[str, Any]) -> None:
    store._write(lambda c: c.execute(sa.insert(web_job).values(**row)))


def save(store: Store, job_id: str, values: dict[str, Any]) -> None:
    store._write(lambda c: c.execute(sa.update(web_job).where(web_job.c.id == job_id)
                                     .values(**values)))


def find(store: Store, job_id: str) -> dict[str, Any] | None:
    def q(c: Connection) -> dict[str, Any] | None:
        row = c.execute(sa.select(web_job).where(web_job.c.id == job_id)).first()
        return None if row is None else dict(row._mapping)
    return store._read(q)


def running(store: Store, kind: str, alive_after: float) -> dict[str, Any] | None:
    """A job of ``kind`` still running in a process that showed life after ``alive_after``."""
    def q(c: Connection) -> dict[str, Any] | None:
        row = c.execute(sa.select(web_job).where(
            (web_job.c.kind == kind) & (web_job.c.state == "running")
            & (web_job.c.beat > alive_after)).limit(1)).first()
        return None if row is None else dict(row._mapping)
    return store._read(q)


def stopped(store: Store, job_id: str, alive_before: float, message: str, now: float) -> bool:
    """Mark a running job whose process showed no life since ``alive_before`` as failed;
    True if this call did (another process may have first)."""
    return bool(store._write(lambda c: c.execute(
        sa.update(web_job).where((web_job.c.id == job_id) & (web_job.c.state == "running")
                                 & (web_job.c.beat <= alive_before))
        .values(state="failed", message=message, finished=now)).rowcount))


def expire(store: Store, finished_before: float) -> list[dict[str, Any]]:
    """Remove the jobs finished before ``finished_before``, and those whose process
    showed no life since (it stopped with them running); return their rows (for their
    files)."""
    def tx(c: Connection) -> list[dict[str, Any]]:
        gone = [dict(r._mapping) for r in c.execute(
            sa.select(web_job).where((web_job.c.finished < finished_before)
                                     | ((web_job.c.state == "running")
                                        & (web_job.c.beat < finished_before))))]
        if gone:
            c.execute(sa.delete(web_job).where(web_job.c.id.in_([r["id"] for r in gone])))
        return gone
    return store._write(tx)
