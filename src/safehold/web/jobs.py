"""Long operations started from a page (rollback, export, restore drill) run in a
worker thread of the process that got the request; the page polls their progress. A
job's page is only ever shown to the user who started it.

The jobs are in the database (store/web_jobs.py, revision 0011), so that every process
behind a load balancer answers the progress page (DESIGN, "Scale-out": the processes
are stateless), and so that a job whose process stopped (a restart, a crash) is shown
as stopped rather than running for ever or gone. The running process writes its
progress at most every PROGRESS_EVERY seconds and a sign of life every BEAT_SECONDS; a
job with no sign of life for STALE_SECONDS is marked failed by whichever process reads
it next. An export's archive is a file on the host that wrote it: in a deployment of
several hosts only that host's processes can hand it out (the others say so).

Every call reads or writes the database: call them off the event loop."""

from __future__ import annotations

import json
import logging
import os
import secrets
import socket
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safehold.errors import SafeholdError
from safehold.store import web_jobs as rows
from safehold.store.repo import Store

log = logging.getLogger("safehold.web")
KEEP_SECONDS = 3600.0  # finished jobs (and export files) are kept this long
PROGRESS_EVERY = 0.5  # a running job writes its progress at most this often
BEAT_SECONDS = 5.0  # and a sign of life this often, even while its progress stands still
STALE_SECONDS = 60.0  # no sign of life this long: its process stopped
STOPPED = ("the server process running this job stopped before it finished (a restart or "
           "a crash): start it again")
HOST = f"{socket.gethostname()} pid {os.getpid()}"


@dataclass
class Job:
    id: str
    owner: str
    kind: str  # "rollback", "export", "drill", "undo"
    title: str
    state: str = "running"  # running, done, failed
    done: int = 0
    total: int = 0
    message: str = "starting"
    started: float = field(default_factory=time.time)
    finished: float | None = None
    result: dict[str, Any] = field(default_factory=dict)
    file: Path | None = None
    back: str = "/"  # where the finished job's page links to
    host: str = HOST  # the process that runs it (and holds its file)
    # Called by progress(): writes the progress (at most every PROGRESS_EVERY seconds).
    on_progress: Callable[[], None] | None = field(default=None, repr=False, compare=False)

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        self.done, self.total = done, total
        if message:
            self.message = message
        if self.on_progress is not None:
            self.on_progress()

    @property
    def hostname(self) -> str:
        """The host of the process that runs it (``host`` without the pid)."""
        return self.host.rsplit(" pid ", 1)[0]

    def here(self) -> bool:
        """Whether this process's host holds the job's file."""
        return self.hostname == socket.gethostname()

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                "done": self.done, "total": self.total, "message": self.message,
                "download": self.file is not None and self.state == "done"}

    def row(self) -> dict[str, Any]:
        return {"id": self.id, "owner": self.owner, "kind": self.kind, "title": self.title,
                "state": self.state, "done": self.done, "total": self.total,
                "message": self.message, "started": self.started, "finished": self.finished,
                "result": json.dumps(self.result), "file": str(self.file) if self.file else None,
                "host": self.host, "back": self.back}

    @staticmethod
    def of(row: dict[str, Any]) -> Job:
        return Job(row["id"], row["owner"], row["kind"], row["title"], row["state"],
                   int(row["done"]), int(row["total"]), row["message"], row["started"],
                   row["finished"], json.loads(row["result"]),
                   Path(row["file"]) if row["file"] else None, row["back"], row["host"])


class Jobs:
    def __init__(self, store: Store, clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.clock = clock

    def start(self, owner: str, kind: str, title: str, work: Callable[[Job], str],
              back: str = "/") -> Job:
        """Run ``work(job)`` in a thread; it returns the closing message."""
        now = self.clock()
        self._expire(now)
        job = Job(secrets.token_urlsafe(16), owner, kind, title, back=back, started=now)
        rows.add(self.store, job.row() | {"beat": now})
        written = [now]
        lock = threading.Lock()  # the worker's progress and the beat write one at a time
        ended = threading.Event()

        def save(final: bool = False) -> None:
            with lock:
                now = self.clock()
                if not final and now - written[0] < PROGRESS_EVERY:
                    return
                written[0] = now
                try:
                    rows.save(self.store, job.id, job.row() | {"beat": now})
                except Exception:  # noqa: BLE001 - a progress write must not end the job
                    if final:
                        raise
                    log.warning("job %s: its progress could not be written", job.id,
                                exc_info=True)

        def beat() -> None:
            while not ended.wait(BEAT_SECONDS):
                save()

        def run() -> None:
            try:
                job.message = work(job)
                job.state = "done"
            except SafeholdError as exc:
                job.state, job.message = "failed", str(exc)
            except Exception as exc:  # noqa: BLE001 - shown on the job's page, logged in full
                log.error("job %s (%s) failed:\n%s", job.id, kind, traceback.format_exc())
                job.state, job.message = "failed", f"internal error: {exc}"
            finally:
                ended.set()
                job.finished = self.clock()
                try:
                    save(final=True)
                except Exception:  # noqa: BLE001 - other processes will see it stop
                    log.error("job %s (%s) ended (%s) but that could not be recorded:\n%s",
                              job.id, kind, job.state, traceback.format_exc())

        job.on_progress = save
        threading.Thread(target=run, name=f"safehold-job-{kind}", daemon=True).start()
        threading.Thread(target=beat, name=f"safehold-job-beat-{kind}", daemon=True).start()
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job, only for the user who started it (None otherwise: a 404)."""
        row = rows.find(self.store, job_id)
        if row is None or row["owner"] != owner:
            return None
        now = self.clock()
        if row["state"] == "running" and row["beat"] <= now - STALE_SECONDS:
            rows.stopped(self.store, job_id, now - STALE_SECONDS, STOPPED, now)
            row = rows.find(self.store, job_id) or row
        return Job.of(row)

    def running(self, kind: str) -> Job | None:
        """A job of ``kind`` running in any process (one whose process stopped is not)."""
        row = rows.running(self.store, kind, self.clock() - STALE_SECONDS)
        return None if row is None else Job.of(row)

    def _expire(self, now: float) -> None:
        for row in rows.expire(self.store, now - KEEP_SECONDS):
            if row["file"] and Job.of(row).here():
                Path(row["file"]).unlink(missing_ok=True)
