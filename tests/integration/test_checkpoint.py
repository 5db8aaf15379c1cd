"""The WAL checkpoint (store/checkpoint.py): no commit checkpoints by itself; the store's
writer checkpoints after its commit on a worker thread, never in a write that may not
wait (the HTTP event loop's), which is refused while a checkpoint is due. Real SQLite."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safehold.core.model import Actor
from safehold.errors import WriteBusy
from safehold.store import engine as engine_mod
from safehold.store.checkpoint import PAGES, Checkpointer
from safehold.store.repo import Store

PAGE = 4096
ACTOR = Actor(None, "test", "r1")
OWNER = 1  # the first principal


@pytest.fixture
def store(tmp_path: Path) -> Iterator[Store]:
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'db.sqlite'}")
    engine_mod.ensure_schema(engine)
    store = Store(engine, tmp_path / "tmp")
    owner = store.add_principal("alice", "x", ACTOR, homes=("files",))
    assert owner.id == OWNER
    store.mkcol("files/alice/f", owner.id, ACTOR)
    yield store
    engine.dispose()


def _put(store: Store, i: int) -> None:
    """A one-page file of its own: a new item, about a dozen WAL pages per commit."""
    store.put(f"files/alice/f/{i}.bin", OWNER, os.urandom(3500), "application/octet-stream", ACTOR)


def _wal_pages(store: Store) -> int:
    path = Path(store.engine.url.database or "")
    return (path.parent / (path.name + "-wal")).stat().st_size // PAGE


def _checkpointer(store: Store) -> Checkpointer:
    found = Checkpointer.of(store.engine)
    assert found is not None
    return found


def test_no_commit_checkpoints_by_itself(tmp_path: Path) -> None:
    """SQLite's automatic checkpoint is off: outside the store's writer the log grows past
    SQLite's 1,000 pages instead of being copied back inside a commit."""
    engine = engine_mod.create(f"sqlite:///{tmp_path / 'db.sqlite'}")
    try:
        with engine.begin() as conn:
            conn.exec_driver_sql("CREATE TABLE filler (id INTEGER PRIMARY KEY, b BLOB)")
        for _ in range(150):
            with engine.begin() as conn:
                for _ in range(10):
                    conn.exec_driver_sql("INSERT INTO filler (b) VALUES (?)", (os.urandom(3500),))
        assert (tmp_path / "db.sqlite-wal").stat().st_size // PAGE >= 1400
        checkpointer = Checkpointer.of(engine)
        assert checkpointer is not None and checkpointer.runs == 0 and checkpointer.due
    finally:
        engine.dispose()


def test_the_writer_checkpoints_after_its_commit_so_the_log_starts_over(store: Store) -> None:
    checkpointer = _checkpointer(store)
    for i in range(600):  # several thousand pages in all
        _put(store, i)
    assert checkpointer.runs >= 2
    assert _wal_pages(store) < PAGES + 50  # as with SQLite's own checkpoint


def test_a_write_that_may_not_wait_is_refused_while_a_checkpoint_is_due(store: Store) -> None:
    checkpointer = _checkpointer(store)
    i = 0
    while not checkpointer.due:  # a commit of its own leaves the log at PAGES or more
        with store.no_wait():
            _put(store, i)  # the event loop's way: it never checkpoints
        i += 1
    assert checkpointer.runs == 0
    with store.no_wait(), pytest.raises(WriteBusy):
        _put(store, 10_000)
    with pytest.raises(WriteBusy), store.writing_now():
        pass
    assert store.get("files/alice/f/10000.bin") is None  # nothing of it was written
    _put(store, 10_000)  # a write that may wait: it commits, then checkpoints
    assert store.get("files/alice/f/10000.bin") is not None
    assert checkpointer.runs == 1 and not checkpointer.due
    with store.engine.connect() as conn:  # everything the log held is in the database now
        busy, log, done = conn.exec_driver_sql("PRAGMA wal_checkpoint(PASSIVE)").one()
        assert (busy, log - done) == (0, 0)
