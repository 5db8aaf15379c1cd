"""The store contract, run against every target database (SQLite and PostgreSQL):
the same behaviour from both, or the seam is lying (STYLE 3)."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from safehold.core import users
from safehold.core.model import Actor, ItemIndex
from safehold.errors import (
    AlreadyExists, Conflict, NotFound, PreconditionFailed, StoreError, UserExists, WriteBusy,
)
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from safehold.store.schema import blob, change, version

A = Actor(1, "pytest", "req-1")


class Clock:
    def __init__(self) -> None:
        self.now = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(database_url: str, tmp_path: Path, clock: Clock) -> Iterator[Store]:
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    engine_mod.self_test(engine)
    s = Store(engine, tmp_path / "tmp", clock=clock)
    users.add_user(s, "alice", "password-1", Actor(None))
    yield s
    engine.dispose()


def _spool(tmp: Path, data: bytes) -> blobs.Spool:
    sp = blobs.Spool(tmp)
    for i in range(0, len(data), 65536):
        sp.write(data[i:i + 65536])
    return sp


def _count(store: Store, table: sa.Table) -> int:
    with store.engine.connect() as c:
        return int(c.execute(sa.select(sa.func.count()).select_from(table)).scalar() or 0)


def test_put_get_and_large_bodies(store: Store, tmp_path: Path) -> None:
    big = os.urandom(blobs.CHUNK * 2 + 12345)
    sp = _spool(tmp_path, big)
    body = sp.finish()
    res, created = store.put("files/alice/big.bin", 1, body, "application/octet-stream", A)
    sp.discard()
    assert created and res.size == len(big)
    got = store.get("files/alice/big.bin")
    assert got is not None and b"".join(store.read_body(got)) == big
    small, _ = store.put("files/alice/s.txt", 1, b"a\r\nb", "text/plain", A)
    assert b"".join(store.read_body(small)) == b"a\r\nb"
    empty, _ = store.put("files/alice/e.txt", 1, b"", None, A)
    assert b"".join(store.read_body(empty)) == b""


def test_identical_bodies_are_stored_once(store: Store) -> None:
    before = _count(store, blob)
    for i in range(5):
        store.put(f"files/alice/same{i}.txt", 1, b"same bytes", "text/plain", A)
    assert _count(store, blob) == before + 1


def test_missing_parent_and_conditions(store: Store) -> None:
    with pytest.raises(Conflict):
        store.put("files/alice/nope/x", 1, b"x", None, A)
    with pytest.raises(Conflict):
        store.mkcol("files/alice/a/b", 1, A)
    r1, _ = store.put("files/alice/c.txt", 1, b"1", None, A)
    with pytest.raises(PreconditionFailed):
        store.put("files/alice/c.txt", 1, b"2", None, A, if_none_match=True)
    with pytest.raises(PreconditionFailed):
        store.put("files/alice/c.txt", 1, b"2", None, A, if_match='"nope"')
    r2, created = store.put("files/alice/c.txt", 1, b"2", None, A, if_match=r1.etag)
    assert not created and r2.etag != r1.etag and r2.created_at == r1.created_at
    with pytest.raises(PreconditionFailed):
        store.delete("files/alice/c.txt", A, if_match=r1.etag)
    store.mkcol("files/alice/col", 1, A)
    with pytest.raises(AlreadyExists):
        store.mkcol("files/alice/col", 1, A)
    with pytest.raises(AlreadyExists):
        store.put("files/alice/col", 1, b"x", None, A)
    with pytest.raises(NotFound):
        store.delete("files/alice/ghost", A)


def test_subtree_is_exact(store: Store) -> None:
    # Siblings that sort right next to "d/…" must never be taken for its children.
    store.mkcol("files/alice/d", 1, A)
    for name in ("files/alice/d/x", "files/alice/d-x", "files/alice/d0", "files/alice/d.txt"):
        store.put(name, 1, b"v", None, A)
    assert [r.path for r in store.subtree("files/alice/d")] == ["files/alice/d", "files/alice/d/x"]
    store.delete("files/alice/d", A)
    assert store.get("files/alice/d-x") and store.get("files/alice/d0") and store.get("files/alice/d.txt")


def test_delete_is_a_tombstone_per_member_in_one_change(store: Store) -> None:
    store.mkcol("files/alice/t", 1, A)
    store.put("files/alice/t/1", 1, b"1", None, A)
    store.mkcol("files/alice/t/sub", 1, A)
    store.put("files/alice/t/sub/2", 1, b"2", None, A)
    seq_before = store.last_seq()
    assert store.delete("files/alice/t", A) == 4
    assert store.last_seq() == seq_before + 1
    with store.engine.connect() as c:
        rows = c.execute(sa.select(version.c.path, version.c.deleted)
                         .where(version.c.seq == seq_before + 1)).all()
    assert sorted(rows) == [("files/alice/t", True), ("files/alice/t/1", True),
                            ("files/alice/t/sub", True), ("files/alice/t/sub/2", True)]
    assert store.get("files/alice/t/sub/2") is None
    history = store.changes_for("files/alice/t/1")
    assert [h["op"] for h in history] == ["put", "delete"]


def test_move_and_copy(store: Store) -> None:
    store.mkcol("files/alice/m", 1, A)
    store.put("files/alice/m/a", 1, b"A", None, A)
    store.proppatch("files/alice/m/a", {"{urn:x}p": '<p xmlns="urn:x">1</p>'}, [], A)
    assert store.copy_or_move("copy", "files/alice/m", "files/alice/shallow", A, deep=False)
    assert store.children("files/alice/shallow") == []
    assert store.copy_or_move("copy", "files/alice/m", "files/alice/deep", A)
    copied = store.get("files/alice/deep/a")
    assert copied is not None and copied.props == {"{urn:x}p": '<p xmlns="urn:x">1</p>'}
    with pytest.raises(PreconditionFailed):
        store.copy_or_move("move", "files/alice/m", "files/alice/deep", A, overwrite=False)
    assert not store.copy_or_move("move", "files/alice/m", "files/alice/deep", A)
    assert store.get("files/alice/m") is None and store.get("files/alice/m/a") is None
    moved = store.get("files/alice/deep/a")
    assert moved is not None and b"".join(store.read_body(moved)) == b"A"


def test_every_change_has_one_row_and_increasing_seq(store: Store) -> None:
    start = store.last_seq()
    store.mkcol("files/alice/s", 1, A)
    store.put("files/alice/s/x", 1, b"x", None, A)
    store.proppatch("files/alice/s/x", {"{urn:x}a": "<a xmlns='urn:x'/>"}, [], A)
    store.copy_or_move("copy", "files/alice/s/x", "files/alice/s/y", A)
    store.copy_or_move("move", "files/alice/s/y", "files/alice/s/z", A)
    store.delete("files/alice/s", A)
    with store.engine.connect() as c:
        rows = c.execute(sa.select(change.c.seq, change.c.op, change.c.user_agent,
                                   change.c.request_id).where(change.c.seq > start)
                         .order_by(change.c.seq)).all()
    assert [r.op for r in rows] == ["mkcol", "put", "proppatch", "copy", "move", "delete"]
    assert [r.seq for r in rows] == list(range(start + 1, start + 7))
    assert all(r.user_agent == "pytest" and r.request_id == "req-1" for r in rows)


def test_concurrent_writers_get_distinct_seqs(store: Store) -> None:
    start = store.last_seq()
    errors: list[BaseException] = []

    def work(n: int) -> None:
        try:
            for i in range(20):
                store.put(f"files/alice/w{n}-{i}", 1, f"{n}-{i}".encode(), None, A)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert store.last_seq() == start + 80
    assert len([r for r in store.children("files/alice") if r.path.startswith("files/alice/w")]) == 80


def test_writes_queued_behind_the_lock_commit_together_and_fail_alone(store: Store) -> None:
    """Group commit (Store._write): writers that queue while the write lock is held run
    in one transaction; one whose precondition fails is rolled back alone and gets its
    own error, the others commit with their own change rows."""
    store.put("files/alice/taken", 1, b"first", None, A)
    start = store.last_seq()
    results: dict[str, object] = {}

    def work(name: str) -> None:
        try:
            res, created = store.put(f"files/alice/{name}", 1, name.encode(), None, A,
                                     if_none_match=True)
            results[name] = (res.seq, created)
        except BaseException as exc:  # noqa: BLE001 - checked below
            results[name] = exc

    names = [f"g{i}" for i in range(6)] + ["taken"]
    with store.write_lock:  # every writer below queues behind this
        threads = [threading.Thread(target=work, args=(n,)) for n in names]
        for t in threads:
            t.start()
        deadline = threading.Event()
        while len(store._pending) < len(names) and not deadline.wait(0.01):
            pass
        assert len(store._pending) == len(names)
    for t in threads:
        t.join()
    assert isinstance(results["taken"], PreconditionFailed)
    seqs = sorted(r[0] for n, r in results.items() if n != "taken")  # type: ignore[index]
    assert seqs == list(range(start + 1, start + 7))  # one change row each, no gap
    assert store.last_seq() == start + 6
    assert store.read_bytes(store.get("files/alice/taken")) == b"first"  # type: ignore[arg-type]
    for n in names[:-1]:
        assert store.read_bytes(store.get(f"files/alice/{n}")) == n.encode()  # type: ignore[arg-type]


def test_no_wait_writes_only_when_the_lock_is_free_and_nobody_queues(store: Store) -> None:
    """Store.no_wait (the event loop's PUT): a held lock or a queued writer makes the
    write raise WriteBusy with nothing written; a free lock commits it as usual."""
    before = store.last_seq()
    with store.write_lock, store.no_wait(), pytest.raises(WriteBusy):
        store.put("files/alice/busy", 1, b"x", None, A)
    store._pending.append(object())  # type: ignore[arg-type] # a writer queued for the lock
    try:
        with store.no_wait(), pytest.raises(WriteBusy):
            store.put("files/alice/busy", 1, b"x", None, A)
    finally:
        store._pending.clear()
    assert store.get("files/alice/busy") is None and store.last_seq() == before
    with store.no_wait():
        res, created = store.put("files/alice/busy", 1, b"x", None, A)
        with pytest.raises(PreconditionFailed):  # the write's own errors still arrive
            store.put("files/alice/busy", 1, b"y", None, A, if_none_match=True)
    assert created and res.seq == before + 1 == store.last_seq()
    assert store.read_bytes(store.get("files/alice/busy")) == b"x"  # type: ignore[arg-type]
    assert not store.write_lock.locked()
    store.put("files/alice/after", 1, b"z", None, A)  # outside the block: waits as before
    assert store.last_seq() == before + 2
    if store.engine.dialect.name == "sqlite":
        # Another process (`safehold import`) holding SQLite's write lock: WriteBusy at
        # once, not after the 30 s busy timeout.
        other = store.engine.raw_connection()
        try:
            other.driver_connection.apsw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            began = time.monotonic()
            with store.no_wait(), pytest.raises(WriteBusy):
                store.put("files/alice/locked", 1, b"x", None, A)
            assert time.monotonic() - began < 5
            other.driver_connection.apsw.execute("ROLLBACK")  # type: ignore[union-attr]
        finally:
            other.close()
        with store.no_wait():
            store.put("files/alice/locked", 1, b"x", None, A)  # the connection's timeout is back
        assert store.last_seq() == before + 3


def test_writing_now_reads_and_writes_in_one_transaction(store: Store) -> None:
    """Store.writing_now (the event loop's PUT): a held lock or a queued writer raises
    WriteBusy before anything is read; inside, reads see the block's own writes, which
    commit together when it ends, and a raising block or one that went on after a
    failed write stores nothing."""
    before = store.last_seq()
    with store.write_lock, pytest.raises(WriteBusy):
        with store.writing_now():
            raise AssertionError("the block must not run")  # pragma: no cover
    store._pending.append(object())  # type: ignore[arg-type] # a writer queued for the lock
    try:
        with pytest.raises(WriteBusy), store.writing_now():
            raise AssertionError("the block must not run")  # pragma: no cover
    finally:
        store._pending.clear()
    with store.writing_now():
        assert store.get_pair("files/alice/one")[0] is None
        store.put("files/alice/one", 1, b"1", None, A)
        # The put reused the pair read above; its write made the block forget it.
        assert store.get_pair("files/alice/one")[0] is not None
        store.put("files/alice/two", 1, b"2", None, A)
        assert store.get("files/alice/one") is not None  # its own write, before the commit
        assert store.last_seq() == before + 2
        with store.engine.connect() as other:  # another connection: not committed yet
            assert other.execute(sa.select(sa.func.count()).select_from(change)
                                 .where(change.c.seq > before)).scalar() == 0
    assert store.last_seq() == before + 2 and not store.write_lock.locked()
    assert store.read_bytes(store.get("files/alice/two")) == b"2"  # type: ignore[arg-type]
    with pytest.raises(RuntimeError), store.writing_now():
        store.put("files/alice/three", 1, b"3", None, A)
        raise RuntimeError("the request failed after its write")
    with pytest.raises(StoreError), store.writing_now():
        store.put("files/alice/four", 1, b"4", None, A)
        with pytest.raises(PreconditionFailed):
            store.put("files/alice/one", 1, b"x", None, A, if_none_match=True)
    assert store.get("files/alice/three") is None and store.get("files/alice/four") is None
    assert store.last_seq() == before + 2 and not store.write_lock.locked()
    if store.engine.dialect.name == "sqlite":
        other_raw = store.engine.raw_connection()
        try:  # another process holds SQLite's write lock: WriteBusy at once
            other_raw.driver_connection.apsw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            began = time.monotonic()
            with pytest.raises(WriteBusy), store.writing_now():
                raise AssertionError("the block must not run")  # pragma: no cover
            assert time.monotonic() - began < 5
            other_raw.driver_connection.apsw.execute("ROLLBACK")  # type: ignore[union-attr]
        finally:
            other_raw.close()
    store.put("files/alice/after", 1, b"z", None, A)  # outside any block, as before
    with store.engine.connect() as c:  # (PostgreSQL's sequence skips rolled-back values)
        assert c.execute(sa.select(sa.func.count()).select_from(change)
                         .where(change.c.seq > before)).scalar() == 3


def _orphan_version(conn: sa.Connection) -> None:
    """A write that breaks a foreign key (a version of a seq with no change row). On
    SQLite the check is deferred to the COMMIT, which fails with the transaction still
    open; PostgreSQL refuses the INSERT itself."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("PRAGMA defer_foreign_keys=ON")
    conn.execute(sa.insert(version).values(
        seq=10**9, owner_id=1, path="files/alice/orphan", parent="files/alice", kind="item",
        op="put", deleted=False, blob_hash=None, size=0, etag='"x"', content_type=None,
        props="{}", created_at=1.0))


def test_a_failed_commit_stores_nothing_and_the_next_write_works(store: Store) -> None:
    """Rollback on any error, the COMMIT's too: the caller gets the error, nothing of
    the transaction is stored (SQLite's writer connection, kept between writes, is
    dropped with it), and the next write, alone or in a writing_now block, commits."""
    before, versions = store.last_seq(), _count(store, version)
    with pytest.raises(sa.exc.IntegrityError):
        store._write(_orphan_version)
    store.put("files/alice/after-write", 1, b"1", None, A)
    with pytest.raises(sa.exc.IntegrityError), store.writing_now():
        store.put("files/alice/in-block", 1, b"2", None, A)
        store._write(_orphan_version)
    with store.writing_now():
        store.put("files/alice/after-block", 1, b"3", None, A)
    assert store.get("files/alice/in-block") is None
    assert store.read_bytes(store.get("files/alice/after-block")) == b"3"  # type: ignore[arg-type]
    assert store.last_seq() == before + 2 + (store.engine.dialect.name != "sqlite")
    with store.engine.connect() as c:  # (PostgreSQL's sequence skips rolled-back values)
        assert c.execute(sa.select(sa.func.count()).select_from(change)
                         .where(change.c.seq > before)).scalar() == 2
    assert _count(store, version) == versions + 2
    assert not store.write_lock.locked()


def test_locks_expire_with_the_clock(store: Store, clock: Clock) -> None:
    store.put("files/alice/l", 1, b"", None, A)
    lk = store.add_lock("files/alice/l", "0", "exclusive", None, 1, 100)
    assert [x.token for x in store.locks_for("files/alice/l")] == [lk.token]
    clock.now += 50
    refreshed = store.refresh_lock(lk.token, 100)
    assert refreshed is not None and refreshed.expires_at == clock.now + 100
    clock.now += 101
    assert store.locks_for("files/alice/l") == []
    assert store.refresh_lock(lk.token, 100) is None


def test_principals(store: Store) -> None:
    with pytest.raises(UserExists):
        users.add_user(store, "alice", "password-2", Actor(None))
    p = store.principal("alice")
    assert p is not None and not p.disabled
    old = store.password_hash(p.id)
    store.set_password("alice", users.hash_password("password-3"))
    new = store.password_hash(p.id)
    assert new and new != old and users.verify_password(new, "password-3")
    store.set_disabled("alice", True)
    assert store.principal("alice").disabled  # type: ignore[union-attr]
    assert store.get("files/alice") is not None


def test_retention_prunes_content_not_history(store: Store, clock: Clock) -> None:
    from safehold.core import history as core_history
    from safehold.errors import Conflict
    from safehold.store import retention
    from safehold.store.history import History

    for i in range(3):
        store.put("files/alice/r.txt", 1, f"v{i}".encode(), None, A)
        clock.now += 10
    first, _ = store.put("files/alice/gone.txt", 1, b"older", None, A)
    store.put("files/alice/gone.txt", 1, b"old", None, A)
    store.delete("files/alice/gone.txt", A)
    clock.now += 400 * 86400
    assert retention.prune(store, 365, dry_run=True).versions == 3
    result = retention.prune(store, 365)
    assert result.versions == 3 and result.blobs == 3  # v0, v1 and "older"
    head = store.get("files/alice/r.txt")
    assert head is not None and store.read_bytes(head) == b"v2"
    hist = History(store)
    assert len(hist.versions_of("files/alice/r.txt")) == 3  # rows stay
    with pytest.raises(Conflict, match="retention"):
        core_history.execute(hist, 1, core_history.plan_undelete(
            hist, "files/alice/gone.txt", first.seq), A)
    # The last version of the day kept its content: a plain undelete works.
    core_history.execute(hist, 1, core_history.plan_undelete(hist, "files/alice/gone.txt"), A)
    back = store.get("files/alice/gone.txt")
    assert back is not None and store.read_bytes(back) == b"old"
    assert retention.prune(store, 365).versions == 0


def test_index_rows_keep_the_expanded_instances_through_a_move(store: Store) -> None:
    # A recurring event's instances (revision 0006) come back as they went in, an empty
    # list stays empty (every instance excluded), and NULL (not expanded) stays None.
    store.mkcol("calendars/alice/work", 1, A, kind="calendar")
    cases = {
        "weekly.ics": ItemIndex("VEVENT", "w", 10.0, 610000.0, True, ((11, 3611), (604811, 608411))),
        "none-left.ics": ItemIndex("VEVENT", "n", 10.0, 20.0, True, ()),
        "endless.ics": ItemIndex("VEVENT", "e", 10.0, None, True, None),
        "plain.ics": ItemIndex("VEVENT", "p", 10.0, 20.0, False),
    }
    for name, ix in cases.items():
        store.put(f"calendars/alice/work/{name}", 1, b"BEGIN:VCALENDAR", "text/calendar", A, index=ix)
    got = {res.path.rsplit("/", 1)[1]: ix for res, ix in
           store.index_entries("calendars/alice/work", "VEVENT", None, None)}
    assert got == cases
    store.mkcol("calendars/alice/home", 1, A, kind="calendar")
    assert store.copy_or_move("move", "calendars/alice/work/weekly.ics",
                                  "calendars/alice/home/weekly.ics", A)
    [(_, moved)] = store.index_entries("calendars/alice/home", "VEVENT", 600000.0, 700000.0)
    assert moved.spans == ((11, 3611), (604811, 608411))


def test_put_new_many_writes_each_item_as_a_put_and_reports_the_ones_that_cannot_go_in(
        store: Store) -> None:
    """A bulk import's batch (cli/importer.py): one transaction, but each item its own
    change and version, If-None-Match semantics, and an item that cannot go in changes
    nothing while the others are committed."""
    from safehold.errors import UidConflict
    from safehold.store.repo import NewItem
    cal = "calendars/alice/personal"
    store.put(f"{cal}/taken.ics", 1, b"taken", "text/calendar", A,
              index=ItemIndex("VEVENT", "uid-taken", 0.0, 1.0))
    before = store.last_seq()

    def item(name: str, uid: str, parent: str = cal) -> NewItem:
        return NewItem(f"{parent}/{name}", f"body of {name}".encode(), "text/calendar",
                       ItemIndex("VEVENT", uid, 0.0, 1.0))
    batch = [item("a.ics", "uid-a"), item("taken.ics", "uid-new"), item("b.ics", "uid-taken"),
             item("c.ics", "uid-a"), item("d.ics", "uid-d", parent=f"{cal}-missing"),
             item("e.ics", "uid-e")]
    outcomes = store.put_new_many(1, batch, A)
    assert [type(o).__name__ if o else None for o in outcomes] == \
        [None, "PreconditionFailed", "UidConflict", "UidConflict", "Conflict", None]
    assert isinstance(outcomes[3], UidConflict) and outcomes[3].path == f"{cal}/a.ics"
    assert store.last_seq() == before + 2  # one change per written item, none for the rest
    for name in ("a.ics", "e.ics"):
        res = store.get(f"{cal}/{name}")
        assert res is not None and store.read_bytes(res) == f"body of {name}".encode()
        assert res.seq > before and res.content_type == "text/calendar"
    for name in ("b.ics", "c.ics"):
        assert store.get(f"{cal}/{name}") is None
    taken = store.get(f"{cal}/taken.ics")
    assert taken is not None and store.read_bytes(taken) == b"taken"
    assert sorted(e.path for e, _ in store.index_entries(cal, "VEVENT", None, None)) == \
        [f"{cal}/a.ics", f"{cal}/e.ics", f"{cal}/taken.ics"]
