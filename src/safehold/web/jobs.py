"""Long operations started from a page (rollback, export, restore drill) run in a
worker thread; the page polls their progress. The table is in memory and belongs to
one process: a job's page is only ever shown to the user who started it."""

from __future__ import annotations

import logging
import secrets
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from safehold.errors import SafeholdError

log = logging.getLogger("safehold.web")
KEEP_SECONDS = 3600.0  # finished jobs (and export files) are kept this long


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

    def progress(self, done: int, total: int, message: str | None = None) -> None:
        self.done, self.total = done, total
        if message:
            self.message = message

    def as_json(self) -> dict[str, Any]:
        return {"id": self.id, "kind": self.kind, "title": self.title, "state": self.state,
                "done": self.done, "total": self.total, "message": self.message,
                "download": self.file is not None and self.state == "done"}


class Jobs:
    def __init__(self, clock: Callable[[], float] = time.time) -> None:
        self.clock = clock
        self._jobs: dict[str, Job] = {}
        self._lock = threading.Lock()

    def start(self, owner: str, kind: str, title: str, work: Callable[[Job], str],
              back: str = "/") -> Job:
        """Run ``work(job)`` in a thread; it returns the closing message."""
        job = Job(secrets.token_urlsafe(16), owner, kind, title, back=back, started=self.clock())
        with self._lock:
            self._expire()
            self._jobs[job.id] = job

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
                job.finished = self.clock()
        threading.Thread(target=run, name=f"safehold-job-{kind}", daemon=True).start()
        return job

    def get(self, job_id: str, owner: str) -> Job | None:
        """The job, only for the user who started it (None otherwise: a 404)."""
        with self._lock:
            job = self._jobs.get(job_id)
        return job if job is not None and job.owner == owner else None

    def running(self, kind: str) -> Job | None:
        with self._lock:
            return next((j for j in self._jobs.values() if j.kind == kind and j.state == "running"),
                        None)

    def _expire(self) -> None:
        now = self.clock()
        for job_id, job in list(self._jobs.items()):
            if job.finished is not None and now - job.finished > KEEP_SECONDS:
                if job.file is not None:
                    job.file.unlink(missing_ok=True)
                del self._jobs[job_id]
