"""Promise 1 when the disk refuses: a real server on a real SQLite whose WAL file, on a
switch, fails its fsync (xSync) or its write (xWrite) with an I/O error or as a full
disk, or whose reads fail (tests/support/faulty_vfs.py: the "unix" VFS with a fault
below it, not a mock).

- A failed fsync stops the process at once (fsyncgate: a retried fsync may report
  success with the data gone): the PUT gets no response at all, so it is never
  acknowledged. SQLite had already written the transaction's frames to the log before
  its fsync; on the restart it replays what the log holds, so the change may be there
  after all (with this VFS it is: the kernel still has the bytes). Either way the
  item, the change log, sync-collection and the replica agree.
- A failed write rolls the transaction back: the PUT gets a 503 with Retry-After (an
  I/O error) or a 507 (a full disk, RFC 4918 §11.5), never a 500 that reads as a bug;
  nothing of it is stored, logged or shipped, and the server goes on serving. A read
  that fails is a 503 too, and so is a read-only database (SQLITE_READONLY).
- A damaged database (SQLITE_CORRUPT, or SQLITE_IOERR_CORRUPTFS: the file system
  refused a read) is a 503 too, and pauses DAV and /readyz until the server is
  restarted (after a restore). The web pages answer like DAV.
- A CLI command whose fsync fails exits 70 with a message, no traceback.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import httpx
import pytest

from safehold.backup import segment
from safehold.backup.crypto import read_kit
from safehold.backup.replica_client import open_replica
from safehold.store import engine as engine_mod
from safehold.store import replication as rep
from safehold.store.repo import Store
from safehold.store.sqlite_dbapi import TEST_VFS_ENV
from tests.support import faulty_vfs
from tests.support.clients import sync_token
from tests.support.server import Server, add_user, cli
from tests.support.web import csrf, login

BOOK = "/dav/addressbooks/alice/contacts/"


def _card(name: str, pad: int = 0) -> bytes:
    # NOTE lines pad the body past LOOP_PUT_BYTES (http/app.py): such a PUT is stored on
    # a worker thread through the group commit instead of on the event loop.
    note = "".join(f"NOTE:{'x' * 60}\r\n" for _ in range(pad))
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{name}\r\nFN:{name}\r\n{note}END:VCARD\r\n".encode()


class Faulty:
    """A server whose store runs on the fault-injecting VFS, with a folder replica."""

    def __init__(self, tmp_path: Path) -> None:
        data = tmp_path / "data"
        self.faults = tmp_path / "faults"
        self.faults.mkdir()
        self.kit = tmp_path / "kit.json"
        self.replica_url = f"file://{tmp_path / 'offsite'}"
        add_user(data, "alice")
        cli(data, "backup", "init", "--replica", self.replica_url, "--kit", str(self.kit))
        self.srv = Server(data, env={TEST_VFS_ENV: faulty_vfs.NAME,
                                     faulty_vfs.FAULTS_ENV: str(self.faults)})
        self.srv.command = [sys.executable, faulty_vfs.__file__]

    def fail(self, switch: str, on: bool = True) -> None:
        path = self.faults / switch
        if on:
            path.touch()
        else:
            path.unlink(missing_ok=True)

    def store(self) -> Store:
        return Store(engine_mod.create(self.srv.database_url), self.srv.data_dir / "tmp")

    def wait_shipped(self, timeout: float = 30.0) -> int:
        store = self.store()
        try:
            deadline = time.monotonic() + timeout
            while True:
                rows = rep.replica_rows(store)
                last = store.last_seq()
                if rows and all(int(r["shipped_seq"]) == last for r in rows):
                    return last
                assert time.monotonic() < deadline, f"the replica did not catch up: {rows}"
                time.sleep(0.2)
        finally:
            store.engine.dispose()

    def shipped_changes(self) -> list[tuple[int, str, str]]:
        """The change log as the replica's segments hold it: (seq, op, path)."""
        key, _ = read_kit(self.kit)
        replica = open_replica(self.replica_url)
        refs = sorted((r for r in (segment.parse_segment(o.path) for o in replica.list("segments/"))
                       if r), key=lambda r: r.first)
        out: list[tuple[int, str, str]] = []
        for ref in refs:
            body = segment.decode(key, ref.name, replica.get(ref.name))
            out += [(int(c["seq"]), str(c["op"]), str(c["path"])) for c in body["tables"]["change"]]
        return out


@pytest.fixture
def faulty(tmp_path: Path) -> Faulty:
    return Faulty(tmp_path)


def _assert_consistent(f: Faulty, c: httpx.Client, name: str, body: bytes, token: str) -> bool:
    """The item ``name`` is either stored with exactly ``body``, in the change log and
    reported by sync-collection since ``token``, or none of these. Returns which."""
    got = c.get(BOOK + name)
    logged = [p for _, _, p in f.srv.changes() if p.endswith("/" + name)]
    r = c.request("REPORT", BOOK, headers={"Depth": "1"}, content=(
        '<?xml version="1.0"?><sync-collection xmlns="DAV:">'
        f"<sync-token>{token}</sync-token><sync-level>1</sync-level><prop><getetag/></prop>"
        "</sync-collection>").encode())
    assert r.status_code == 207, r.text
    reported = name in r.text
    if got.status_code == 200:
        assert got.content == body and logged and reported, (logged, r.text)
        return True
    assert got.status_code == 404 and not logged and not reported, (got.status_code, logged, r.text)
    return False


def _stored_a(srv: Server, c: httpx.Client) -> tuple[str, list[tuple[int, str, str]]]:
    """Store a.vcf before the fault; the sync token and change log then."""
    assert c.put(BOOK + "a.vcf", content=_card("a")).status_code == 201
    return sync_token(c, BOOK), srv.changes()


def _nothing_changed(faulty: Faulty, c: httpx.Client, token: str,
                     before: list[tuple[int, str, str]]) -> None:
    """a.vcf as stored before the fault, no b.vcf anywhere, the token and log unmoved."""
    assert c.get(BOOK + "a.vcf").content == _card("a")
    assert not _assert_consistent(faulty, c, "b.vcf", _card("b"), token)
    assert sync_token(c, BOOK) == token
    assert faulty.srv.changes() == before


def _refused_puts(srv: Server, c: httpx.Client,
                  answer: Callable[[str], tuple[int, str, str | None]],
                  logged: Callable[[str, str], str]) -> None:
    """While a fault is on: PUTs on the event loop, on a worker thread and over an
    existing item each get ``answer(request id)`` (status, body, Retry-After) and leave
    ``logged(request id, name)`` in the server's log."""
    for name, body in (("b.vcf", _card("b")), ("b.vcf", _card("b", 300)),
                       ("a.vcf", _card("a2"))):
        r = c.put(BOOK + name, content=body)
        request_id = r.headers["x-request-id"]
        assert (r.status_code, r.text, r.headers.get("retry-after")) == answer(request_id)
        assert logged(request_id, name) in srv.log()


@pytest.mark.parametrize("pad", [0, 300], ids=["event-loop", "worker-thread"])
def test_failed_fsync_stops_the_server_before_any_answer(faulty: Faulty, pad: int) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            assert c.put(BOOK + "a.vcf", content=_card("a")).status_code == 201
            token = sync_token(c, BOOK)
            # The shipper idle, so that the PUT's commit is the one that meets the fault.
            faulty.wait_shipped()
            faulty.fail(faulty_vfs.FAIL_SYNC)
            with pytest.raises(httpx.TransportError):  # no status line: not acknowledged
                r = c.put(BOOK + "b.vcf", content=_card("b", pad))
                pytest.fail(f"a PUT whose fsync failed was answered {r.status_code}: {r.text}")
        assert srv.proc is not None
        assert srv.proc.wait(timeout=15) == 70, srv.log()
        assert "fsync failed" in srv.log()
    finally:
        srv.stop()
    faulty.fail(faulty_vfs.FAIL_SYNC, on=False)

    srv.start()
    try:
        with srv.client() as c:
            assert c.get(BOOK + "a.vcf").content == _card("a")
            # With this VFS the log's bytes were still in the kernel, so the restart
            # replays the transaction: the unacknowledged PUT is there, everywhere.
            assert _assert_consistent(faulty, c, "b.vcf", _card("b", pad), token)
            assert c.put(BOOK + "c.vcf", content=_card("c")).status_code == 201
        faulty.wait_shipped()
    finally:
        srv.stop()
    engine = engine_mod.create(srv.database_url)
    assert engine_mod.integrity_check(engine) == "ok"
    engine.dispose()
    srv.start()
    try:
        with srv.client() as c:
            assert c.get(BOOK + "c.vcf").content == _card("c")
    finally:
        srv.stop()
    assert faulty.shipped_changes() == srv.changes()


def test_failed_wal_write_is_refused_and_changes_nothing(faulty: Faulty) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            token, before = _stored_a(srv, c)
            faulty.fail(faulty_vfs.FAIL_WRITE)
            # No traceback, no database message: the id finds them in the log. Clients
            # keep their data and retry after the Retry-After.
            _refused_puts(srv, c, lambda rid: (
                503, f"storage error, nothing was stored; try again (request id {rid})\n", "30"),
                lambda rid, name: f"request {rid} PUT {BOOK}{name} failed")
            _nothing_changed(faulty, c, token, before)
            faulty.fail(faulty_vfs.FAIL_WRITE, on=False)
            assert srv.proc is not None and srv.proc.poll() is None  # still serving
            assert c.put(BOOK + "c.vcf", content=_card("c")).status_code == 201
        faulty.wait_shipped()
    finally:
        srv.stop()
    srv.start()
    try:
        with srv.client() as c:
            assert c.get(BOOK + "a.vcf").content == _card("a")
            assert c.get(BOOK + "b.vcf").status_code == 404
            assert c.get(BOOK + "c.vcf").content == _card("c")
    finally:
        srv.stop()
    changes = srv.changes()
    assert not [p for _, _, p in changes if p.endswith("/b.vcf")]
    assert faulty.shipped_changes() == changes


def test_a_write_on_a_full_disk_is_507_and_changes_nothing(faulty: Faulty) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            token, before = _stored_a(srv, c)
            faulty.fail(faulty_vfs.DISK_FULL)
            _refused_puts(srv, c, lambda rid: (
                507, "insufficient storage: the server's disk is full and nothing was "
                f"stored; try again later (request id {rid})\n", None),
                lambda rid, name: f"request {rid} PUT {BOOK}{name}: the disk is full")
            assert c.request("PROPPATCH", BOOK, content=(
                b'<?xml version="1.0"?><propertyupdate xmlns="DAV:"><set><prop>'
                b"<displayname>Full</displayname></prop></set></propertyupdate>"),
            ).status_code == 507
            assert c.delete(BOOK + "a.vcf").status_code == 507
            _nothing_changed(faulty, c, token, before)  # a.vcf not deleted either
            faulty.fail(faulty_vfs.DISK_FULL, on=False)  # space was freed
            assert srv.proc is not None and srv.proc.poll() is None  # still serving
            assert c.put(BOOK + "b.vcf", content=_card("b")).status_code == 201
            assert c.put(BOOK + "a.vcf", content=_card("a2")).status_code == 204
            assert _assert_consistent(faulty, c, "b.vcf", _card("b"), token)
        faulty.wait_shipped()
    finally:
        srv.stop()
    srv.start()
    try:
        with srv.client() as c:
            assert c.get(BOOK + "a.vcf").content == _card("a2")
            assert c.get(BOOK + "b.vcf").content == _card("b")
    finally:
        srv.stop()
    changes = srv.changes()
    assert [p.rsplit("/", 1)[1] for _, _, p in changes[len(before):]] == ["b.vcf", "a.vcf"]
    assert faulty.shipped_changes() == changes


def test_a_read_that_fails_is_503_and_the_next_one_succeeds(faulty: Faulty) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            assert c.put(BOOK + "a.vcf", content=_card("a")).status_code == 201
            # A change since the last read: the pages are read from the disk again.
            assert c.put(BOOK + "b.vcf", content=_card("b")).status_code == 201
            faulty.fail(faulty_vfs.FAIL_READ)
            r = c.get(BOOK + "b.vcf")
            request_id = r.headers["x-request-id"]
            assert (r.status_code, r.headers.get("retry-after")) == (503, "30"), r.text
            assert request_id in r.text and "Traceback" not in r.text
            faulty.fail(faulty_vfs.FAIL_READ, on=False)
            assert c.get(BOOK + "b.vcf").content == _card("b")
            assert c.put(BOOK + "c.vcf", content=_card("c")).status_code == 201
            assert srv.proc is not None and srv.proc.poll() is None
    finally:
        srv.stop()


@pytest.mark.parametrize("switch", [faulty_vfs.CORRUPT, faulty_vfs.CORRUPT_FS])
def test_a_damaged_database_is_503_and_serving_pauses_until_restarted(
        faulty: Faulty, switch: str) -> None:
    """SQLITE_CORRUPT, or SQLITE_IOERR_CORRUPTFS (the file system refused the read), is
    not a bug of a request (no 500) and does not heal: DAV and /readyz answer 503 from
    then on (promise 8: never a listing from a damaged store), until the operator
    restores the database and restarts the server."""
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            token, _ = _stored_a(srv, c)
            assert c.put(BOOK + "b.vcf", content=_card("b")).status_code == 201
            before = srv.changes()
            faulty.fail(switch)
            r = c.get(BOOK + "b.vcf")  # the PUT's change: read from the disk again
            rid = r.headers["x-request-id"]
            assert (r.status_code, r.text, r.headers.get("retry-after")) == (503, (
                "the server's database is damaged; nothing was stored. The operator must check "
                f"and restore it (safehold check, safehold restore) (request id {rid})\n"), "3600")
            assert srv.log().count(f"request {rid} GET {BOOK}b.vcf: the database is damaged") == 1
            assert "Traceback" not in srv.log()
            faulty.fail(switch, on=False)
            ready = httpx.get(srv.url + "/readyz")
            assert ready.status_code == 503 and "the database is damaged" in ready.text
            for r in (c.get(BOOK + "a.vcf"), c.request("PROPFIND", BOOK, headers={"Depth": "1"}),
                      c.put(BOOK + "c.vcf", content=_card("c"))):
                assert r.status_code == 503 and "safehold restore" in r.text, r.text
            assert srv.proc is not None and srv.proc.poll() is None
    finally:
        srv.stop()
    assert srv.changes() == before
    srv.start()  # as after a restore: serving again
    try:
        with srv.client() as c:
            assert c.get(BOOK + "b.vcf").content == _card("b")
            assert sync_token(c, BOOK) != token  # b.vcf's change, as before the fault
    finally:
        srv.stop()


def test_a_read_only_database_is_503_and_changes_nothing(faulty: Faulty) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            token, before = _stored_a(srv, c)
            faulty.fail(faulty_vfs.READ_ONLY)
            _refused_puts(srv, c, lambda rid: (
                503, "the server's database is read-only; nothing was stored. Try again later "
                f"(request id {rid})\n", "300"),
                lambda rid, name: f"request {rid} PUT {BOOK}{name}: the database is read-only")
            assert "Traceback" not in srv.log()
            _nothing_changed(faulty, c, token, before)
            faulty.fail(faulty_vfs.READ_ONLY, on=False)  # the operator fixed it
            assert srv.proc is not None and srv.proc.poll() is None
            assert c.put(BOOK + "c.vcf", content=_card("c")).status_code == 201
            assert httpx.get(srv.url + "/readyz").status_code == 200
    finally:
        srv.stop()


def test_web_pages_answer_a_full_disk_507_and_an_io_error_503(faulty: Faulty) -> None:
    srv = faulty.srv
    srv.start()
    try:
        with srv.client() as c:
            assert c.put(BOOK + "a.vcf", content=_card("a")).status_code == 201
            assert c.delete(BOOK + "a.vcf").status_code == 204
        before = srv.changes()
        with login(srv) as web:
            form = {"csrf": csrf(web, "/"), "path": BOOK + "a.vcf"}
            faulty.fail(faulty_vfs.DISK_FULL)
            r = web.post("/undelete", data=form)
            assert (r.status_code, r.headers.get("retry-after")) == (507, None), r.text
            assert "the server&#39;s disk is full and nothing was stored" in r.text
            faulty.fail(faulty_vfs.DISK_FULL, on=False)
            faulty.fail(faulty_vfs.FAIL_WRITE)
            r = web.post("/undelete", data=form)
            assert (r.status_code, r.headers.get("retry-after")) == (503, "30"), r.text
            assert "storage error, nothing was stored; try again" in r.text
            assert r.headers["content-type"].startswith("text/html")
            faulty.fail(faulty_vfs.FAIL_WRITE, on=False)
            assert srv.changes() == before
            assert web.post("/undelete", data=form).status_code == 303
        with srv.client() as c:
            assert c.get(BOOK + "a.vcf").content == _card("a")
    finally:
        srv.stop()


def test_a_cli_command_whose_fsync_fails_exits_70_without_a_traceback(tmp_path: Path) -> None:
    # `user add` on a new data folder creates the schema (Alembic, through the engine,
    # not the store's writer): its commit's fsync fails.
    faults_dir = tmp_path / "faults"
    faults_dir.mkdir()
    (faults_dir / faulty_vfs.FAIL_SYNC).touch()
    proc = subprocess.run(
        [sys.executable, faulty_vfs.__file__, "user", "add", "alice", "--password-stdin",
         "--data-dir", str(tmp_path / "data")], input="a long password\n", capture_output=True,
        text=True, timeout=120, env={**os.environ, TEST_VFS_ENV: faulty_vfs.NAME,
                                     faulty_vfs.FAULTS_ENV: str(faults_dir)})
    assert proc.returncode == 70, proc.stdout + proc.stderr
    assert "error: the disk failed to fsync the database" in proc.stderr
    assert "Traceback" not in proc.stderr
