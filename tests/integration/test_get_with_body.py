"""Store.get_with_body, the one-statement read of a GET (a head and its small body),
on every target database: the same head as ``get`` and the same bytes as
``read_body``, and no body where a GET must stream or there is none."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from safehold.core import users
from safehold.core.model import Actor
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store.repo import SMALL_BODY, Store

A = Actor(1, "pytest", "req-1")


@pytest.fixture
def store(database_url: str, tmp_path: Path) -> Iterator[Store]:
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    s = Store(engine, tmp_path / "tmp")
    users.add_user(s, "alice", "password-1", Actor(None))
    yield s
    engine.dispose()


def _spooled(tmp: Path, data: bytes) -> blobs.Spool:
    sp = blobs.Spool(tmp)
    sp.write(data)
    return sp


def test_small_body_comes_with_its_head(store: Store) -> None:
    data = b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:A\r\nEND:VCARD\r\n"
    store.put("files/alice/a.vcf", 1, data, "text/vcard", A)
    head, body = store.get_with_body("files/alice/a.vcf")
    assert head is not None and head == store.get("files/alice/a.vcf")
    assert body == data == store.read_bytes(head)


def test_no_body_for_collections_missing_paths_and_large_or_empty_bodies(
        store: Store, tmp_path: Path) -> None:
    home, body = store.get_with_body("files/alice")
    assert home is not None and home.is_collection and body is None
    assert store.get_with_body("files/alice/nothing.txt") == (None, None)
    store.put("files/alice/e.txt", 1, b"", None, A)
    empty, body = store.get_with_body("files/alice/e.txt")
    assert empty is not None and empty.size == 0 and body in (None, b"")
    at_limit = os.urandom(SMALL_BODY)  # one chunk, the largest one sent with its head
    store.put("files/alice/limit.bin", 1, at_limit, None, A)
    assert store.get_with_body("files/alice/limit.bin")[1] == at_limit
    over = os.urandom(SMALL_BODY + 1)  # one chunk too, but a GET streams it
    store.put("files/alice/over.bin", 1, _spooled(tmp_path, over).finish(), None, A)
    head, body = store.get_with_body("files/alice/over.bin")
    assert head is not None and head.size == SMALL_BODY + 1 and body is None
    assert store.read_bytes(head) == over


def test_in_a_read_block_on_a_kept_connection(store: Store) -> None:
    """Store.reading(kept): the HTTP layer's reads on its event loop; a write between
    two blocks is seen by the second."""
    store.put("files/alice/k.txt", 1, b"one", "text/plain", A)
    kept = store.engine.connect()
    try:
        with store.reading(kept):
            assert store.get_with_body("files/alice/k.txt")[1] == b"one"
        store.put("files/alice/k.txt", 1, b"two", "text/plain", A)
        with store.reading(kept):
            assert store.get_with_body("files/alice/k.txt")[1] == b"two"
            assert store.get("files/alice/k.txt") is not None  # through SQLAlchemy too
        with pytest.raises(KeyError):
            with store.reading(kept):
                raise KeyError("a failed request")
        with store.reading(kept):
            assert store.get_with_body("files/alice/k.txt")[1] == b"two"
        assert not kept.in_transaction()
    finally:
        kept.close()
