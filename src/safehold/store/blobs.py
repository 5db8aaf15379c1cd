"""Content-addressed, compressed blobs, chunked so that a 1 GB body never sits in
memory. Identical bodies are stored once (key: sha256 of the original bytes). The
stored bytes are the client's bytes exactly (promise 3): compression is lossless
and checked against the hash when read by verify passes."""

from __future__ import annotations

import hashlib
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any
from pathlib import Path

import sqlalchemy as sa
import zstandard
from sqlalchemy.dialects import postgresql as postgresql_dialect
from sqlalchemy.dialects import sqlite as sqlite_dialect
from sqlalchemy.engine import Connection, Engine

from safehold.core.model import Body
from safehold.store import fastsql
from safehold.store.schema import blob, blob_chunk

CHUNK = 1 << 20  # 1 MiB of original bytes per row
# A body that compresses to at most this many bytes is kept in its blob row (revision
# 0009), not in blob_chunk: two B-trees fewer for a PUT's commit to write. Below
# SQLite's ~1,000-byte limit for a row stored within an index B-tree page (``blob`` is
# WITHOUT ROWID), so that it needs no overflow page of its own.
INLINE_MAX = 768
CODEC = "zstd"
_BATCH = 4  # chunks per transaction while storing a large body (bounds memory)


class Spool:
    """Accumulates a request body on disk while hashing it."""

    def __init__(self, tmp_dir: Path) -> None:
        tmp_dir.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix="body-", dir=tmp_dir)
        self._file = os.fdopen(fd, "wb")
        self.path = name
        self.size = 0
        self._hash = hashlib.sha256()

    def write(self, data: bytes) -> None:
        self._file.write(data)
        self._hash.update(data)
        self.size += len(data)

    def finish(self) -> Body:
        self._file.close()
        return Body(self.path, self.size, self._hash.hexdigest())

    def discard(self) -> None:
        if not self._file.closed:
            self._file.close()
        try:
            os.unlink(self.path)
        except FileNotFoundError:
            pass


# Built once, so that SQLAlchemy reuses their compiled form (the PUT path).
_EXISTS = sa.select(blob.c.hash).where(blob.c.hash == sa.bindparam("k_hash"))
_INSERT_CHUNK = fastsql.Statement(sa.insert(blob_chunk))
# A blob row unless its hash is stored (then no row changes), per dialect.
_NEW_BLOB = {"sqlite": fastsql.Statement(sqlite_dialect.insert(blob).on_conflict_do_nothing()),
             "postgresql": fastsql.Statement(postgresql_dialect.insert(blob).on_conflict_do_nothing())}


def exists(conn: Connection, sha256: str) -> bool:
    return conn.execute(_EXISTS, {"k_hash": sha256}).first() is not None


def store(engine: Engine, body: Body, write: Callable[[Callable[[Connection], None]], None]) -> None:
    """Store ``body`` unless its hash is already known. Chunks are written in small
    transactions before the version that references them; a crash in between leaves
    an unreferenced blob, which is harmless (the ``blob`` row is written last, so a
    half-written blob is never taken for a complete one)."""
    with engine.connect() as conn:
        if exists(conn, body.sha256):
            return
    comp = zstandard.ZstdCompressor(level=3)
    total = max(1, -(-body.size // CHUNK))  # chunks, an empty body has one (empty) chunk
    with open(body.path, "rb") as fh:
        for start in range(0, total, _BATCH):
            indexes = range(start, min(start + _BATCH, total))
            rows = [{"hash": body.sha256, "idx": idx, "data": comp.compress(fh.read(CHUNK))}
                    for idx in indexes]
            last = indexes[-1] == total - 1

            def tx(conn: Connection, rows: list[dict[str, object]] = rows, last: bool = last) -> None:
                if exists(conn, body.sha256):
                    return  # another writer finished the same body meanwhile
                # A crashed earlier attempt may have left some of these chunks.
                conn.execute(sa.delete(blob_chunk).where(
                    (blob_chunk.c.hash == body.sha256) & (blob_chunk.c.idx >= rows[0]["idx"])
                    & (blob_chunk.c.idx <= rows[-1]["idx"])))
                conn.execute(sa.insert(blob_chunk), rows)
                if last:
                    conn.execute(sa.insert(blob).values(
                        hash=body.sha256, size=body.size, chunks=total, codec=CODEC))
            write(tx)


def store_bytes_in(conn: Connection, data: bytes) -> str:
    """Store a small body inside the caller's transaction; return its hash. The
    ``blob`` row goes first, unless it exists (then nothing is written): one statement
    instead of a look-up and an insert. Its chunks follow in the same transaction, so
    no reader ever sees the row without them; a body that compresses to INLINE_MAX
    bytes or fewer is in the row itself."""
    sha = hashlib.sha256(data).hexdigest()
    if len(data) <= CHUNK:
        packed = _compressor().compress(data)
        if len(packed) <= INLINE_MAX:
            fastsql.execute(conn, _NEW_BLOB[conn.dialect.name], dict(
                hash=sha, size=len(data), chunks=1, codec=CODEC, data=packed))
            return sha
    chunks = max(1, -(-len(data) // CHUNK))
    if not fastsql.execute(conn, _NEW_BLOB[conn.dialect.name],
                           dict(hash=sha, size=len(data), chunks=chunks, codec=CODEC)):
        return sha  # stored before
    comp = _compressor()
    for idx in range(chunks):
        fastsql.execute(conn, _INSERT_CHUNK, {"hash": sha, "idx": idx,
                                              "data": comp.compress(data[idx * CHUNK:(idx + 1) * CHUNK])})
    return sha


def first_chunk(of_hash: Any) -> Any:
    """The stored first chunk of the blob whose hash is ``of_hash`` (a column or a
    bind parameter), as an SQL expression: the row's own ``data`` if the body is inline
    (revision 0009), else blob_chunk's row 0. COALESCE evaluates the subquery only for
    a body that is not inline."""
    chunk0 = (sa.select(blob_chunk.c.data)
              .where((blob_chunk.c.hash == of_hash) & (blob_chunk.c.idx == sa.literal_column("0")))
              .scalar_subquery())
    return sa.func.coalesce(blob.c.data, chunk0)


# Built once: building a select costs more than running it (a GET reads one chunk).
_FIRST_CHUNK = (sa.select(blob.c.chunks, first_chunk(blob.c.hash))
                .where(blob.c.hash == sa.bindparam("k_hash")))
_CHUNK = sa.select(blob_chunk.c.data).where(
    (blob_chunk.c.hash == sa.bindparam("k_hash")) & (blob_chunk.c.idx == sa.bindparam("k_idx")))
_F_FIRST_CHUNK = fastsql.Statement(_FIRST_CHUNK)


def stored_chunk(conn: Connection, sha256: str, idx: int) -> bytes:
    """Chunk ``idx`` of a blob as stored (compressed): what the shipper uploads. The
    first may be inline in the blob row (revision 0009)."""
    if idx == 0:
        return bytes(fastsql.rows(conn, _F_FIRST_CHUNK, {"k_hash": sha256})[0][1])
    return bytes(conn.execute(_CHUNK, {"k_hash": sha256, "k_idx": idx}).scalar_one())


def read(engine: Engine, sha256: str) -> Iterator[bytes]:
    """Yield the original bytes chunk by chunk (one short query per chunk)."""
    dec = zstandard.ZstdDecompressor()
    with engine.connect() as conn:
        found = fastsql.rows(conn, _F_FIRST_CHUNK, {"k_hash": sha256})
    if not found:
        return
    chunks, data = found[0]
    first = dec.decompress(data)
    if first:
        yield first
    for idx in range(1, chunks):
        with engine.connect() as conn:
            data = conn.execute(_CHUNK, {"k_hash": sha256, "k_idx": idx}).scalar_one()
        out = dec.decompress(data)
        if out:
            yield out


def read_all(engine: Engine, sha256: str) -> bytes:
    return b"".join(read(engine, sha256))


def read_small(engine: Engine, hashes: list[str]) -> dict[str, bytes]:
    """Bodies of single-chunk blobs in one query per 512 (multiget, calendar-query);
    larger ones are left to ``read``."""
    with engine.connect() as conn:
        return read_small_in(conn, hashes)


_LOCAL = threading.local()


def _decompressor() -> zstandard.ZstdDecompressor:
    """This thread's decompressor: making one costs more than decompressing a contact
    (7 µs against 0.5), and one must not be used by two threads at once."""
    dec: zstandard.ZstdDecompressor | None = getattr(_LOCAL, "dec", None)
    if dec is None:
        dec = _LOCAL.dec = zstandard.ZstdDecompressor()
    return dec


def _compressor() -> zstandard.ZstdCompressor:
    """This thread's compressor (level 3): making one cost half as much as compressing
    a contact with it; one must not be used by two threads at once. Each ``compress``
    is a frame of its own, so a reused one gives the same bytes."""
    comp: zstandard.ZstdCompressor | None = getattr(_LOCAL, "comp", None)
    if comp is None:
        comp = _LOCAL.comp = zstandard.ZstdCompressor(level=3)
    return comp


def decompress(data: bytes) -> bytes:
    """A stored chunk's original bytes."""
    return _decompressor().decompress(data)


def read_small_in(conn: Connection, hashes: list[str]) -> dict[str, bytes]:
    """``read_small`` in the caller's transaction (Store.read_small)."""
    dec = _decompressor()
    out: dict[str, bytes] = {}
    if len(hashes) == 1:
        # One body (a GET): the driver's cursor, without SQLAlchemy's expanding IN.
        found = fastsql.rows(conn, _F_FIRST_CHUNK, {"k_hash": hashes[0]})
        if found and found[0][0] == 1:
            out[hashes[0]] = dec.decompress(found[0][1])
        return out
    # The shipper reads the bodies it carries inline on every pass.
    for st, params in _READ_SMALL_IN.parts(hashes):
        for h, data in fastsql.rows(conn, st, params):
            out[h] = dec.decompress(data)
    return out


_READ_SMALL_BY = (sa.select(blob.c.hash, first_chunk(blob.c.hash))
                  .where(blob.c.chunks == sa.literal_column("1")))
_READ_SMALL_IN = fastsql.InList(lambda ps: _READ_SMALL_BY.where(blob.c.hash.in_(ps)),
                                fastsql.Statement)
