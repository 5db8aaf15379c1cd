"""segment.Reader reads a segment or snapshot as it is decompressed: the same rows,
header and bodies as ``segment.parse`` of the whole plaintext, in either format, and
the same refusals (CorruptObject) for an object that is not one."""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest

from safehold.backup import segment
from safehold.backup.crypto import CorruptObject, Key

KEY = Key(b"k" * 32)
NAME = "snapshots/00000000000000000042.snap"
BODIES = [b"BEGIN:VCARD\r\nFN:\xc3\xa9t\xc3\xa9\r\nEND:VCARD\r\n", b"", b"x" * 5000]


def _body() -> dict[str, Any]:
    rows = [{"seq": i, "path": f"calendars/alice/\u00e9t\u00e9-{i}.ics", "at": i / 3,
             "props": json.dumps({"n": "\u2603" * (i % 5)}), "deleted": i % 2 == 0,
             "blob_hash": None if i % 3 else "ab" * 32} for i in range(1, 60)]
    return {"format": 2, "lineage": "l1", "seq": 59,
            "tables": {"change": rows, "version": [dict(r, id=r["seq"]) for r in rows],
                       "principal": [{"id": 1, "name": "alice"}], "credential": [], "pruned": []},
            "blobs": [{"hash": "cd" * 32, "size": 70000, "chunks": 1, "codec": "zstd"}]}


def _inline() -> list[tuple[str, bytes]]:
    return [(hashlib.sha256(b).hexdigest(), b) for b in BODIES]


def _read(data: bytes, rows: int = 7) -> dict[str, Any]:
    """Everything a Reader gives, in ``parse``'s shape; batches of at most ``rows``."""
    reader = segment.stream(KEY, NAME, data)
    tables: dict[str, list[dict[str, Any]]] = {}
    for table, batch, _last in reader.tables(rows):
        assert len(batch) <= rows
        tables.setdefault(table, []).extend(batch)
    inline = list(reader.bodies())
    return {**reader.head, "tables": tables, "inline": inline}


@pytest.mark.parametrize("text_read", [segment._TEXT_READ, 5])  # 5: every value straddles reads
def test_the_stream_reads_what_parse_reads(text_read: int, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment, "_TEXT_READ", text_read)
    data = segment.encode(KEY, NAME, _body(), _inline())
    whole = segment.decode(KEY, NAME, data)
    assert _read(data) == whole
    assert segment.scan(KEY, NAME, data) == {k: v for k, v in whole.items()
                                             if k not in ("tables", "inline")}


def test_format_1_and_white_space(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(segment, "_TEXT_READ", 3)
    body = {**_body(), "format": 1}
    for text in (json.dumps(body, separators=(",", ":")), json.dumps(body, indent=2),
                 json.dumps({"tables": {}, "last": 12345678901234}), ' {"tables" : { } } '):
        data = KEY.seal(text.encode(), NAME)
        assert _read(data) == segment.decode(KEY, NAME, data)


@pytest.mark.parametrize("text_read", range(1, 14))
def test_a_number_cut_by_a_read_is_read_whole(text_read: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Each read size cuts the header somewhere else: after a float's '.', in its
    exponent, between digits."""
    monkeypatch.setattr(segment, "_TEXT_READ", text_read)
    text = '{"seq":100009,"at":1795874270.1866443,"e":-2.5e-07,"tables":{},"last":7}'
    data = KEY.seal(text.encode(), NAME)
    assert _read(data) == segment.decode(KEY, NAME, data)


def test_the_stream_refuses_what_parse_refuses() -> None:
    good = segment.encode(KEY, NAME, _body(), _inline())
    plain = KEY.open(good, NAME)
    size = len(plain) - sum(len(b) for b in BODIES)
    broken = {
        "trailing bytes": plain + b"!",
        "bodies cut short": plain[:-1],
        "header cut short": plain[:size - 10],
        "not JSON": KEY.seal(b"\x00\x01garbage", NAME),
        "a row that is not an object": KEY.seal(b'{"tables":{"change":[1]}}', NAME),
        "an inline entry that is not a pair": segment.MAGIC2 + segment._LEN.pack(15)
        + b'{"inline":[[]]}',
        "a negative length": segment.MAGIC2 + segment._LEN.pack(22) + b'{"inline":[["ab",-1]]}',
        "newer format": KEY.seal(json.dumps({"format": 3, "tables": {}}).encode(), NAME),
    }
    for why, data in broken.items():
        if not data.startswith(b"SHB1"):
            data = KEY.seal(data, NAME)
        with pytest.raises(CorruptObject):
            _read(data)
        if why != "a row that is not an object":  # parse takes any JSON value as a row
            with pytest.raises(CorruptObject):
                segment.decode(KEY, NAME, data)


def test_a_body_that_does_not_match_its_hash_fails_as_it_is_read() -> None:
    inline = _inline()
    inline[1] = (inline[1][0], b"tampered")
    data = segment.encode(KEY, NAME, _body(), inline)
    assert segment.bad_inline(NAME, segment.decode(KEY, NAME, data))  # what restore checked
    with pytest.raises(CorruptObject, match="does not match its hash"):
        _read(data)
    assert segment.scan(KEY, NAME, data)["seq"] == 59  # decode's checks only


def test_key_check_reads_a_plaintext_without_holding_it() -> None:
    KEY.check(segment.encode(KEY, NAME, _body(), _inline()), NAME)
    with pytest.raises(CorruptObject, match="authentication failed"):
        KEY.check(KEY.seal(b"abc", NAME), "snapshots/another.snap")
