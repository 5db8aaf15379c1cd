"""Where one vCard PUT's time goes, layer by layer, on this machine: what bounds the
N = 1,000 PUT ratio (docs/benchmarks.md, Notes). Per round, N new vCards each:

- storage: the SQL statements a safehold PUT runs (recorded from one real PUT with
  APSW's exec trace), replayed for new items straight through APSW on a copy of that
  database: the same pragmas, one fsync'd commit per item, a checkpoint every 1,000
  WAL pages, the body hashed and compressed as the store does. No Python of safehold's.
- app in process: the same PUT through safehold's ASGI app called directly (auth,
  routing, DAV checks, validation, store), no sockets;
- server: ``safehold serve`` over loopback with the bench's client (bench/client.py).

The three run one after the other in each round (rounds alternate nothing else), so
compare within a round. bench/floor.py gives the HTTP floor (uvicorn with a trivial app).

    python bench/put_budget.py [--n 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import functools
import hashlib
import os
import re
import shutil
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import apsw
import zstandard

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402
from client import Client  # noqa: E402
from servers import WORK, fresh_dir, start  # noqa: E402

from safehold.config import Settings  # noqa: E402
from safehold.core import users  # noqa: E402
from safehold.core.model import Actor  # noqa: E402
from safehold.http import app as app_mod  # noqa: E402
from safehold.store import checkpoint  # noqa: E402

PASSWORD = "bench-password-1"
BOOK = "/dav/addressbooks/alice/contacts/"


class InProcess:
    """safehold's app in this process; PUTs go through ``App.__call__``."""

    def __init__(self, root: Path) -> None:
        self.app = app_mod.build(Settings(data_dir=root, log_level="warning"))
        users.add_user(self.app.store, "alice", PASSWORD, Actor(None))
        self.auth = b"Basic " + base64.b64encode(f"alice:{PASSWORD}".encode())
        self.statuses: list[int] = []

    async def put(self, name: str, body: bytes) -> None:
        path = BOOK + name
        scope = {"type": "http", "asgi": {"version": "3.0"}, "http_version": "1.1",
                 "method": "PUT", "scheme": "http", "path": path, "raw_path": path.encode(),
                 "query_string": b"", "root_path": "", "client": ("127.0.0.1", 5000),
                 "server": ("127.0.0.1", 8232),
                 "headers": [(b"host", b"127.0.0.1"), (b"user-agent", b"safehold-bench"),
                             (b"authorization", self.auth), (b"content-type", b"text/vcard"),
                             (b"if-none-match", b"*"),
                             (b"content-length", str(len(body)).encode())]}
        sent = False

        async def receive() -> dict[str, Any]:
            nonlocal sent
            if sent:
                return {"type": "http.disconnect"}
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}

        async def send(message: dict[str, Any]) -> None:
            if message["type"] == "http.response.start":
                self.statuses.append(message["status"])
        await self.app(scope, receive, send)
        if self.statuses[-1] != 201:
            raise SystemExit(f"in-process PUT of {name} answered {self.statuses[-1]}")


# A bound value's role, by the column it goes into (INSERTs) or by the value itself.
ROLES = {"path": "path", "blob_hash": "hash", "hash": "hash", "uid": "uid", "data": "data",
         "size": "size", "seq": "seq", "version_id": "version_id", "etag": "etag"}
_COLUMNS = re.compile(r"^INSERT INTO \S+ \(([^)]*)\) VALUES")


class Recorded:
    """One PUT's statements, replayed for other items: every bound value that was the
    recorded item's (its path, UID, body, hash, seq, version id, ETag) is swapped for
    the new item's; the rest (owner, parent, times, kinds) is bound as recorded."""

    def __init__(self, db: Path, statements: list[tuple[str, tuple[Any, ...]]],
                 item: dict[str, Any]) -> None:
        self.conn = apsw.Connection(str(db))
        for pragma in ("journal_mode=WAL", "synchronous=FULL", "foreign_keys=ON",
                       "cell_size_check=ON"):
            self.conn.execute(f"PRAGMA {pragma}")
        self.pages = 0
        self.conn.set_wal_hook(self._wal)
        self.zstd = zstandard.ZstdCompressor(level=3)  # the store's (store/blobs.py)
        by_value = {v: k for k, v in item.items() if isinstance(v, (str, bytes))}
        self.plan: list[tuple[str, tuple[Any, ...], tuple[str | None, ...]]] = []
        for sql, bindings in statements:
            found = _COLUMNS.match(sql)
            if found:
                names = [c.strip().strip('"') for c in found.group(1).split(",")]
                roles = tuple(ROLES.get(name) for name in names)
            else:
                roles = tuple(by_value.get(v) if isinstance(v, (str, bytes)) else None
                              for v in bindings)
            self.plan.append((sql, bindings, roles))

    def _wal(self, _db: Any, _name: str, pages: int) -> int:
        self.pages = pages
        return 0

    def put(self, path: str, uid: str, body: bytes) -> None:
        sha = hashlib.sha256(body).hexdigest()
        new: dict[str, Any] = {"path": path, "uid": uid, "hash": sha, "size": len(body),
                               "data": self.zstd.compress(body)}
        for sql, bindings, roles in self.plan:
            values = tuple(v if role is None else new[role] for v, role in zip(bindings, roles, strict=True))
            rows = list(self.conn.execute(sql, values) if values else self.conn.execute(sql))
            if sql.startswith("INSERT INTO change"):
                new["seq"] = rows[0][0]
                new["etag"] = f'"{rows[0][0]}-{sha[:16]}"'
            elif sql.startswith("INSERT INTO version"):
                new["version_id"] = rows[0][0]
        if self.pages >= checkpoint.PAGES:
            self.conn.wal_checkpoint(mode=apsw.SQLITE_CHECKPOINT_PASSIVE)
            self.pages = 0


def record(inproc: InProcess, db: Path, loop: asyncio.AbstractEventLoop) -> Recorded:
    """PUT one vCard through the app with an exec trace on every open connection, and
    keep what its write transaction ran."""
    seen: list[tuple[str, tuple[Any, ...]]] = []

    def tracer(_cursor: Any, sql: str, bindings: Any) -> bool:
        seen.append((sql, tuple(bindings or ())))
        return True
    for conn in apsw.connections():
        conn.exec_trace = tracer
    loop.run_until_complete(inproc.put("recorded.vcf", data.vcard(9_000_000)))
    for conn in apsw.connections():
        conn.exec_trace = None
    begin = max(i for i, (sql, _) in enumerate(seen) if sql.startswith("BEGIN"))
    end = next(i for i, (sql, _) in enumerate(seen) if sql == "COMMIT" and i > begin)
    head = inproc.app.store.get("addressbooks/alice/contacts/recorded.vcf")
    assert head is not None and head.blob_hash is not None
    source = apsw.Connection(str(db))
    stored = source.execute("SELECT data FROM blob WHERE hash = ?", (head.blob_hash,)).fetchall()
    item = {"path": head.path, "uid": data.card_uid(9_000_000), "hash": head.blob_hash,
            "data": stored[0][0], "etag": head.etag}
    source.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    source.close()
    copy = db.with_name("replay.db")
    shutil.copy(db, copy)
    return Recorded(copy, seen[begin:end + 1], item)


def timed(label: str, n: int, run: Callable[[], None]) -> None:
    c0, t0 = time.process_time(), time.perf_counter()
    run()
    wall, cpu = time.perf_counter() - t0, time.process_time() - c0
    print(f"  {label:16s} {n / wall:7,.0f}/s  {wall / n * 1e6:6.0f} µs per PUT  "
          f"(this process's CPU {cpu / n * 1e6:4.0f} µs)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="PUTs per layer and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="safehold-budget-") as tmp:
        root = Path(tmp) / "app"
        inproc = InProcess(root)
        loop = asyncio.new_event_loop()
        for i in range(100):  # warm the app (and its login cache)
            loop.run_until_complete(inproc.put(f"warm-{i}.vcf", data.vcard(8_000_000 + i)))
        replay = record(inproc, root / "safehold.db", loop)
        server = start("safehold", fresh_dir(WORK / "put-budget"))
        try:
            client = Client(server.base_url, server.auth, 30)
            book = server.collections.addressbook
            for i in range(100):
                client.put(f"{book}warm-{i}.vcf", data.vcard(8_000_000 + i),
                           {"Content-Type": "text/vcard", "If-None-Match": "*"}).raise_for_status()
            print(f"load average (1 min): {os.getloadavg()[0]:.2f}; {args.n} new vCards per layer")
            stored_book = BOOK.removeprefix("/dav/")

            def storage(cards: list[tuple[int, bytes]]) -> None:
                for i, body in cards:
                    replay.put(f"{stored_book}s{i}.vcf", data.card_uid(i), body)

            async def in_process(cards: list[tuple[int, bytes]]) -> None:
                for i, body in cards:
                    await inproc.put(f"a{i}.vcf", body)

            def over_http(cards: list[tuple[int, bytes]]) -> None:
                for i, body in cards:
                    client.put(f"{book}v{i}.vcf", body, {
                        "Content-Type": "text/vcard", "If-None-Match": "*"}).raise_for_status()

            for r in range(args.rounds):
                base = (r + 1) * 1_000_000  # the bodies are made before the clock starts
                cards = [(i, data.vcard(i)) for i in range(base, base + args.n)]
                print(f"round {r + 1}:")
                timed("storage", args.n, functools.partial(storage, cards))
                timed("app in process", args.n,
                      lambda c=cards: loop.run_until_complete(in_process(c)))
                timed("server", args.n, functools.partial(over_http, cards))
            stored = replay.conn.execute("SELECT count(*) FROM resource WHERE path LIKE ?",
                                         (stored_book + "s%",)).fetchall()[0][0]
            if stored != args.n * args.rounds:  # the replay wrote what a PUT writes
                raise SystemExit(f"the storage replay stored {stored} items, not "
                                 f"{args.n * args.rounds}")
        finally:
            server.stop()
            loop.close()


if __name__ == "__main__":
    main()
