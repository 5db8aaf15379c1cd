"""Change-log segments, snapshots and blob objects: names and (de)serialization.

Layout of a replica (format 2; a replica may mix format-1 objects, written by older
releases, with format-2 ones, and every reader reads both):
  manifest.json                                    authenticated, rewritten
  segments/<first:020d>-<last:020d>.seg            encrypted change-log range, write-once
  snapshots/<seq:020d>.snap                        encrypted full log up to seq, write-once
  blobs/<kk>/<keyed hash>/<chunk:06d>              encrypted body chunk, write-once
Each segment names the last seq of the one before it, so a missing segment is a
detected gap, never a silent hole.

Format 2 packs small bodies (at most ``INLINE_MAX`` bytes) into the segment or
snapshot that first needs them, so that a restore reads a few large objects instead
of one object per contact or event; larger bodies stay blob objects. The plaintext of
a format-2 object (sealed like every object: compressed, then encrypted and
authenticated as one) is ``MAGIC2``, the length of a JSON header (8 bytes, big
endian), the header, then the bodies back to back; the header's ``inline`` lists
``[sha256, length]`` in that order, and its ``blobs`` the rows of the bodies stored as
blob objects. A format-1 plaintext is the JSON header alone (no inline bodies).

Which bodies a segment carries (the dedupe rule, backup/shipper.py): a small body is
left out only when a restore from the newest snapshot onwards finds it anyway — the
newest snapshot carries it (a snapshot carries every small body its unpruned versions
reference), or a segment after that snapshot carried it; and while a newer snapshot
is being built, nothing is left out (it may lack bodies of versions pruned before it,
and once named it is the newest). So deleting a segment whose
bodies a kept version still needs is safe once a newer snapshot exists, and replica
retention proves that by restoring the kept chain before it deletes anything."""

from __future__ import annotations

import codecs
import hashlib
import json
import re
import struct
from array import array
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import Any, BinaryIO

from safehold.backup.crypto import CorruptObject, Key, Plaintext

FORMAT = 2  # of segment and snapshot bodies; newer releases read every older one
MAGIC2 = b"SHP2"
# Bodies up to this size travel inside segments and snapshots. Nearly every vCard,
# event and task is far smaller (the benchmark's are ~200-700 bytes; a contact photo
# makes tens of KiB); above it one GET per body costs little next to its transfer, and
# big file bodies stay out of the packed objects that a restore holds in memory.
INLINE_MAX = 64 << 10
# Raw bytes of inline bodies per segment at most (more go as blob objects), so that
# a segment of 2,000 changes stays a bounded object in memory, and large enough that
# a restore from S3 reads few objects.
INLINE_BUDGET = 16 << 20
SEGMENT = re.compile(r"^segments/(\d{20})-(\d{20})\.seg$")
SNAPSHOT = re.compile(r"^snapshots/(\d{20})\.snap$")
_LEN = struct.Struct(">Q")


def segment_name(first: int, last: int) -> str:
    return f"segments/{first:020d}-{last:020d}.seg"


def snapshot_name(seq: int) -> str:
    return f"snapshots/{seq:020d}.snap"


def blob_prefix(key: Key, sha256: str) -> str:
    name = key.blob_name(sha256)
    return f"blobs/{name[:2]}/{name}/"


def blob_chunk_name(key: Key, sha256: str, idx: int) -> str:
    return f"{blob_prefix(key, sha256)}{idx:06d}"


@dataclass(frozen=True)
class SegmentRef:
    name: str
    first: int
    last: int


def parse_segment(name: str) -> SegmentRef | None:
    m = SEGMENT.match(name)
    return SegmentRef(name, int(m.group(1)), int(m.group(2))) if m else None


def encode(key: Key, name: str, body: dict[str, Any],
           inline: list[tuple[str, bytes]] | None = None) -> bytes:
    """Seal a segment or snapshot: format 2 with its ``inline`` bodies, or format 1
    (a JSON body, for a body whose "format" is 1: tests writing old replicas)."""
    if int(body.get("format", FORMAT)) < 2:
        return key.seal(json.dumps(body, separators=(",", ":")).encode(), name)
    header = json.dumps({**body, "format": FORMAT,
                         "inline": [[h, len(data)] for h, data in inline or []]},
                        separators=(",", ":")).encode()
    return key.seal(b"".join([MAGIC2, _LEN.pack(len(header)), header,
                              *(data for _, data in inline or [])]), name)


def encode_snapshot(key: Key, name: str, head: dict[str, Any], tables: BinaryIO, tables_size: int,
                    blobs: list[dict[str, Any]], inline: list[tuple[str, int]],
                    bodies: Iterable[bytes]) -> bytes:
    """``encode(key, name, {**head, "tables": T, "blobs": blobs}, inline bodies)`` for a
    snapshot whose tables ``T`` are already JSON in ``tables`` (``tables_size`` bytes,
    replication.snapshot_json) and whose inline bodies come one by one from ``bodies``
    (``inline`` lists each one's hash and length): the same plaintext, sealed without
    holding it (Key.seal_pieces). A body of another length than listed fails."""
    start = (json.dumps({**head, "format": FORMAT}, separators=(",", ":"))[:-1]
             + ',"tables":').encode()
    end = (',"blobs":' + json.dumps(blobs, separators=(",", ":")) + ',"inline":'
           + json.dumps([[h, n] for h, n in inline], separators=(",", ":")) + "}").encode()
    header_size = len(start) + tables_size + len(end)

    def pieces() -> Iterator[bytes]:
        yield MAGIC2 + _LEN.pack(header_size) + start
        tables.seek(0)
        while chunk := tables.read(1 << 20):
            yield chunk
        yield end
        for (sha, length), data in zip(inline, bodies, strict=True):
            if len(data) != length:
                raise ValueError(f"{name}: inline body {sha[:16]}… is {len(data)} bytes, "
                                 f"not the {length} its row says")
            yield data
    size = len(MAGIC2) + _LEN.size + header_size + sum(n for _, n in inline)
    return key.seal_pieces(pieces(), size, name)


def parse(name: str, plain: bytes) -> dict[str, Any]:
    """The body of an opened segment or snapshot, in either format; ``inline`` becomes
    a list of (sha256, bytes). Raises CorruptObject for anything else."""
    try:
        if plain.startswith(MAGIC2):
            (size,) = _LEN.unpack_from(plain, len(MAGIC2))
            start = len(MAGIC2) + _LEN.size
            body: dict[str, Any] = json.loads(plain[start:start + size])
            pos = start + size
            inline = []
            for sha, length in body.get("inline", []):
                inline.append((str(sha), plain[pos:pos + int(length)]))
                pos += int(length)
            if pos != len(plain):
                raise CorruptObject(f"{name}: its inline bodies do not add up to the object")
            body["inline"] = inline
        else:
            body = json.loads(plain)
            body["inline"] = []
    except (ValueError, TypeError, struct.error) as exc:
        raise CorruptObject(f"{name}: authenticates but is not a segment or snapshot") from exc
    if not isinstance(body, dict):
        raise CorruptObject(f"{name}: authenticates but is not a segment or snapshot")
    if int(body.get("format", 1)) > FORMAT:
        raise CorruptObject(f"{name} is in replica format {body.get('format')}, newer than this "
                            f"safehold reads ({FORMAT}); restore it with a newer safehold")
    return body


def decode(key: Key, name: str, data: bytes) -> dict[str, Any]:
    return parse(name, key.open(data, name))


def bad_inline(name: str, body: dict[str, Any]) -> list[str]:
    """Inline bodies whose bytes do not hash to the name they are stored under
    (``body["inline"]``: pairs of sha256 and bytes, a list or ``Reader.bodies``)."""
    return [f"{name}: inline body {sha[:16]}… does not match its hash"
            for sha, data in body.get("inline", []) if hashlib.sha256(data).hexdigest() != sha]


# -- reading an object as a stream -------------------------------------------------

ROWS = 2000  # rows per batch from Reader.tables: a few MiB of dicts at most
_TEXT_READ = 1 << 20
_WS = re.compile(r"[ \t\n\r]*")
_JSON = json.JSONDecoder()
_AFTER_VALUE = frozenset(",:]} \t\n\r")


class _Text:
    """The JSON header of an object, decoded from its plaintext a piece at a time:
    ``value`` gives the next JSON value; ``limit`` is the header's length in bytes
    (None: to the end of the plaintext, format 1)."""

    def __init__(self, name: str, plain: Plaintext, start: bytes, limit: int | None) -> None:
        self._name, self._plain, self._left = name, plain, limit
        self._utf8 = codecs.getincrementaldecoder("utf-8")()
        self.buf, self.pos, self.eof = "", 0, False
        self._feed(start, len(start))

    def _feed(self, data: bytes, asked: int) -> None:
        if self._left is not None:
            self._left -= len(data)
            if len(data) < asked:
                raise self.corrupt("its header is cut short")
        final = len(data) < asked or self._left == 0
        try:
            text = self._utf8.decode(data, final=final)
        except UnicodeDecodeError as exc:
            raise self.corrupt("its header is not UTF-8") from exc
        self.buf = self.buf[self.pos:] + text
        self.pos, self.eof = 0, final

    def more(self) -> bool:
        """Read more of the header (as much again as is buffered, so that a long value
        is re-scanned a few times, not once per MiB)."""
        if self.eof:
            return False
        n = max(_TEXT_READ, len(self.buf) - self.pos)
        n = n if self._left is None else min(n, self._left)
        self._feed(self._plain.read(n), n)
        return True

    def corrupt(self, why: str) -> CorruptObject:
        return CorruptObject(f"{self._name}: authenticates but is not a segment or snapshot "
                             f"({why})")

    def peek(self) -> str:
        """The next character that is not white space ('' at the end)."""
        while True:
            self.pos = _WS.match(self.buf, self.pos).end()  # type: ignore[union-attr]
            if self.pos < len(self.buf):
                return self.buf[self.pos]
            if not self.more():
                return ""

    def take(self, char: str) -> None:
        if self.peek() != char:
            raise self.corrupt(f"expected {char!r} at {self.buf[self.pos:self.pos + 20]!r}")
        self.pos += 1

    def value(self) -> Any:
        self.peek()
        while True:
            try:
                val, end = _JSON.raw_decode(self.buf, self.pos)
                # A number may go on in text not read yet ("12" of "12.5e3"): a value
                # is whole only where what follows it may follow a value, or at the end.
                if self.eof or (end < len(self.buf) and self.buf[end] in _AFTER_VALUE):
                    self.pos = end
                    return val
            except json.JSONDecodeError as exc:
                if self.eof:
                    raise self.corrupt(str(exc)) from exc
            self.more()

    def after(self, closing: str) -> bool:
        """Past the ',' between members (True) or the ``closing`` bracket (False)."""
        char = self.peek()
        if char not in (",", closing):
            raise self.corrupt(f"expected ',' or {closing!r}")
        self.pos += 1
        return char == ","


class Reader:
    """A segment or snapshot read as it is decompressed, in either format, without
    holding its plaintext or its tables: ``tables`` gives the rows a batch at a time;
    then ``head`` holds the other members of the header (all but ``inline``) and
    ``bodies`` gives the inline bodies, checked against their
    hashes. Reads what ``parse`` reads, and fails where it fails (CorruptObject)."""

    def __init__(self, name: str, plain: Plaintext) -> None:
        self.name, self._plain = name, plain
        self.head: dict[str, Any] = {}
        # The inline list, [[sha256, length], ...] in the header: read an entry at a
        # time into these, not held as a list of lists (at 100,000 bodies ~20 MiB).
        self._shas: list[str] = []
        self._lengths = array("q")
        start = plain.read(len(MAGIC2) + _LEN.size)
        if start.startswith(MAGIC2) and len(start) == len(MAGIC2) + _LEN.size:
            (size,) = _LEN.unpack_from(start, len(MAGIC2))
            self._text = _Text(name, plain, b"", size)
        else:
            self._text = _Text(name, plain, start, None)

    def tables(self, rows: int | None = None) -> Iterator[tuple[str, list[dict[str, Any]], bool]]:
        """(table, up to ``rows`` (``ROWS``) of its rows, whether they are its last), in
        the object's order; the other members of the header go to ``head``."""
        text = self._text
        text.take("{")
        if text.peek() == "}":
            text.pos += 1
        else:
            while True:
                member = text.value()
                text.take(":")
                if member == "tables":
                    yield from self._tables(rows or ROWS)
                elif member == "inline":
                    self._inline()
                else:
                    self.head[str(member)] = text.value()
                if not text.after("}"):
                    break
        if text.peek() != "":
            raise text.corrupt("text after its header")
        text.buf, text.pos = "", 0  # the header's last MiBs, read already
        try:
            newer = int(self.head.get("format", 1)) > FORMAT
        except (ValueError, TypeError) as exc:
            raise text.corrupt("its format is not a number") from exc
        if newer:
            raise CorruptObject(f"{self.name} is in replica format {self.head.get('format')}, "
                                f"newer than this safehold reads ({FORMAT}); restore it with "
                                "a newer safehold")

    def _tables(self, rows: int) -> Iterator[tuple[str, list[dict[str, Any]], bool]]:
        text = self._text
        text.take("{")
        if text.peek() == "}":
            text.pos += 1
            return
        while True:
            table = text.value()
            text.take(":")
            text.take("[")
            batch: list[dict[str, Any]] = []
            if text.peek() == "]":
                text.pos += 1
            else:
                while True:
                    row = text.value()
                    if not isinstance(row, dict):
                        raise text.corrupt(f"a row of {table} is not an object")
                    batch.append(row)
                    more = text.after("]")
                    if not more:
                        break
                    if len(batch) >= rows:
                        yield str(table), batch, False
                        batch = []
            yield str(table), batch, True
            if not text.after("}"):
                return

    def _inline(self) -> None:
        text = self._text
        self._shas, self._lengths = [], array("q")  # as json.loads: the last one counts
        text.take("[")
        if text.peek() == "]":
            text.pos += 1
            return
        while True:
            try:
                sha, length = text.value()
                if int(length) < 0:
                    raise ValueError(length)
                self._lengths.append(int(length))
            except (ValueError, TypeError, OverflowError) as exc:
                raise text.corrupt("an entry of its inline list is not [sha256, length]") from exc
            self._shas.append(str(sha))
            if not text.after("]"):
                return

    def bodies(self, hashed: bool = True) -> Iterator[tuple[str, bytes]]:
        """The inline bodies (after ``tables``), each checked against its hash unless
        not ``hashed`` (``parse`` does not check them; ``bad_inline`` does)."""
        for sha, length in zip(self._shas, self._lengths, strict=True):
            data = self._plain.read(length)
            if len(data) < length:
                raise CorruptObject(f"{self.name}: its inline bodies do not add up to the object")
            if hashed and hashlib.sha256(data).hexdigest() != sha:
                raise CorruptObject(f"{self.name}: inline body {sha[:16]}… does not match its hash")
            yield sha, data
        if self._plain.read(1):
            raise CorruptObject(f"{self.name}: its inline bodies do not add up to the object")


def stream(key: Key, name: str, data: bytes) -> Reader:
    """``decode`` as a Reader: only the compressed plaintext is held."""
    return Reader(name, Plaintext(key.authenticate(data, name), name))


def scan(key: Key, name: str, data: bytes) -> dict[str, Any]:
    """Read a whole object as ``decode`` would (and fail where it fails), holding a
    batch of rows at a time, and return its header without the tables and the inline
    list: for the blob rows it names, or to prove that it reads."""
    reader = stream(key, name, data)
    for _ in reader.tables():
        pass
    for _ in reader.bodies(hashed=False):
        pass
    return reader.head
