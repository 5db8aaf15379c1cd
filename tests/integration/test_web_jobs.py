"""Jobs started from a web page live in the database (web/jobs.py, revision 0011): every
process answers their progress page, a restart keeps a finished job and its archive,
and a job whose process stopped is shown as stopped, not as running for ever."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import sqlalchemy as sa

from safehold.store import web_jobs
from safehold.store.repo import Store
from safehold.store.schema import web_job
from safehold.web.jobs import HOST, KEEP_SECONDS, STALE_SECONDS, STOPPED, Job, Jobs
from tests.support.server import Server
from tests.support.stores import Clock, fresh_store
from tests.support.web import csrf, login


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    with fresh_store(database_url, tmp_path) as opened:
        yield opened


def _wait(jobs: Jobs, job_id: str, owner: str = "alice") -> Job:
    for _ in range(200):
        job = jobs.get(job_id, owner)
        assert job is not None
        if job.state != "running":
            return job
        time.sleep(0.05)
    raise AssertionError("the job did not finish")


def test_every_process_sees_a_job_its_progress_and_its_end(store: Store) -> None:
    clock = Clock()
    here, there = Jobs(store, clock=clock), Jobs(store, clock=clock)  # two processes
    go, reported = threading.Event(), threading.Event()

    def work(job: Job) -> str:
        clock.now += 1  # past PROGRESS_EVERY: this progress is written
        job.progress(3, 10, "writing items")
        reported.set()
        assert go.wait(10)
        job.result = {"items": 10}
        return "all written"
    job = here.start("alice", "export", "Export everything", work, back="/export")
    assert reported.wait(10)
    seen = there.get(job.id, "alice")
    assert seen is not None and (seen.state, seen.done, seen.total, seen.message) == \
        ("running", 3, 10, "writing items")
    assert there.running("export") is not None and there.running("drill") is None
    assert there.get(job.id, "bob") is None  # only for the user who started it
    assert there.get("no-such-job", "alice") is None
    go.set()
    done = _wait(there, job.id)
    assert (done.state, done.message, done.result, done.back) == ("done", "all written",
                                                                 {"items": 10}, "/export")
    assert done.finished is not None and there.running("export") is None


def test_a_failed_job_says_why(store: Store) -> None:
    from safehold.errors import SafeholdError

    def work(job: Job) -> str:
        raise SafeholdError("the replica is unreachable")
    job = Jobs(store).start("alice", "drill", "Restore drill", work)
    done = _wait(Jobs(store), job.id)
    assert (done.state, done.message) == ("failed", "the replica is unreachable")


def test_a_job_whose_process_stopped_is_shown_stopped(store: Store) -> None:
    clock = Clock()
    # A drill that a process was running when it was killed: its row says running, and
    # its process's last sign of life gets older.
    dead = Job("dead-job", "alice", "drill", "Restore drill", started=clock.now)
    web_jobs.add(store, dead.row() | {"beat": clock.now})
    jobs = Jobs(store, clock=clock)
    assert jobs.running("drill") is not None
    clock.now += STALE_SECONDS / 2
    still = jobs.get("dead-job", "alice")
    assert still is not None and still.state == "running"
    clock.now += STALE_SECONDS
    assert jobs.running("drill") is None  # another drill may start
    stopped = jobs.get("dead-job", "alice")
    assert stopped is not None and (stopped.state, stopped.message) == ("failed", STOPPED)
    assert stopped.finished == clock.now


def test_finished_jobs_and_their_archives_go_after_an_hour(store: Store, tmp_path: Path) -> None:
    clock = Clock()
    jobs = Jobs(store, clock=clock)
    archive = tmp_path / "old.zip"
    archive.write_bytes(b"PK")
    old = Job("old-job", "alice", "export", "Export everything", state="done",
              started=clock.now, finished=clock.now, file=archive)
    web_jobs.add(store, old.row() | {"beat": clock.now})
    clock.now += KEEP_SECONDS + 1
    new = jobs.start("alice", "export", "Export everything", lambda job: "nothing to do")
    _wait(jobs, new.id)
    assert jobs.get("old-job", "alice") is None and not archive.exists()
    with store.engine.connect() as c:
        assert [r.id for r in c.execute(sa.select(web_job.c.id))] == [new.id]


def test_a_job_whose_process_stopped_goes_after_an_hour_with_its_archive(store: Store,
                                                                        tmp_path: Path) -> None:
    clock = Clock()
    archive = tmp_path / "half.zip"
    archive.write_bytes(b"PK")
    dead = Job("dead-export", "alice", "export", "Export everything", started=clock.now,
               file=archive)
    web_jobs.add(store, dead.row() | {"beat": clock.now})  # never looked at again
    clock.now += KEEP_SECONDS + 1
    jobs = Jobs(store, clock=clock)
    _wait(jobs, jobs.start("alice", "export", "Export everything", lambda job: "ok").id)
    assert jobs.get("dead-export", "alice") is None and not archive.exists()


def test_an_archive_written_on_another_host_is_not_offered_as_missing(store: Store) -> None:
    job = Job("j", "alice", "export", "Export everything", host="other-host pid 7")
    assert not job.here() and Job("k", "alice", "export", "x", host=HOST).here()


def _export(web: httpx.Client) -> str:
    r = web.post("/export", data={"csrf": csrf(web, "/export")})
    assert r.status_code == 303
    job: str = r.headers["location"].rsplit("/", 1)[-1]
    for _ in range(300):
        if web.get(f"/jobs/{job}.json").json()["state"] != "running":
            break
        time.sleep(0.1)
    return job


def test_a_finished_export_and_its_download_survive_a_restart(fresh_server: Server) -> None:
    with login(fresh_server) as web:
        job = _export(web)
        assert web.get(f"/jobs/{job}.json").json()["state"] == "done"
        fresh_server.stop()
        fresh_server.start()
        page = web.get(f"/jobs/{job}.json")
        assert page.status_code == 200, page.text
        assert page.json()["state"] == "done" and page.json()["download"] is True
        got = web.get(f"/jobs/{job}/download")
        assert got.status_code == 200 and got.content[:2] == b"PK"
    with login(fresh_server, "bob") as bob:
        assert bob.get(f"/jobs/{job}.json").status_code == 404
