"""Incremental sync-collection at N = 1,000 and N = 100,000: is its cost independent of
the collection's size (issue 8: within 1.5x for the same number of changes)?

    python bench/sync_scale.py [--sizes 1000,100000] [--changes 10] [--reps 200]

For each size: a fresh data directory under $SAFEHOLD_BENCH_WORK (or bench/.work)/sync-scale/,
the bench user, and N events (10% recurring, bench/data.py) written straight through
``Store.put`` in this process — one change-log row, version, head and index row each,
as a PUT makes them, but with SQLite's synchronous=OFF for the seeding only (the server
that is measured runs with the usual fsync'd commits). Then a real ``safehold serve`` on
127.0.0.1 per size, all running at once; over HTTP: an initial sync for a token, the same
--changes PUTs of existing events on every server, and --reps incremental
sync-collection REPORTs with that token, alternating between the servers request by
request so that the machine's load hits both alike. Prints p50/mean per size and the
ratio of the largest to the smallest. Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import re
import statistics
import sys
import time
from dataclasses import replace
from datetime import timedelta
from pathlib import Path
from typing import Any

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
import servers  # noqa: E402
from client import Client  # noqa: E402

from safehold.core import users  # noqa: E402
from safehold.core.items import index_for  # noqa: E402
from safehold.core.model import CALENDAR, Actor, ItemIndex  # noqa: E402
from safehold.store import engine as engine_mod  # noqa: E402
from safehold.store.repo import Store  # noqa: E402

CAL = f"/dav/calendars/{servers.USER}/personal/"


def index_of(ev: data.Event) -> ItemIndex:
    """The index row inspect_calendar gives for a bench event, without parsing it (the
    envelope has a second to spare on each side); checked against the parser below."""
    weeks = data.RECURRENCE_COUNT - 1 if ev.recurring else 0
    start = ev.start - timedelta(seconds=1)
    end = ev.start + timedelta(weeks=weeks) + data.EVENT_LENGTH + timedelta(seconds=1)
    return ItemIndex("VEVENT", ev.uid, start.timestamp(), end.timestamp(), ev.recurring)


def seed(root: Path, n: int) -> None:
    engine = engine_mod.create(engine_mod.sqlite_url(root))

    @sa.event.listens_for(engine, "connect")
    def _fast(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.apsw.execute("PRAGMA synchronous=OFF")  # seeding only; see the docstring

    engine_mod.ensure_schema(engine)
    store = Store(engine, root / "tmp")
    actor = Actor(None, "bench/sync_scale.py", None)
    principal = users.add_user(store, servers.USER, servers.PASSWORD, actor)
    events = data.events(n)
    for ev in events[:20]:
        parsed = index_for(CALENDAR, data.calendar([ev]))
        assert parsed is not None and index_of(ev) == replace(parsed, spans=None), ev
    begin = time.perf_counter()
    path = CAL.removeprefix("/dav/")
    for i, ev in enumerate(events):
        body = data.calendar([ev])
        # A recurring event's index also lists its instances: parse those (10 %).
        index = index_for(CALENDAR, body) if ev.recurring else index_of(ev)
        store.put(path + ev.name, principal.id, body, "text/calendar; charset=utf-8",
                  actor, if_none_match=True, index=index)
        if (i + 1) % 10_000 == 0:
            print(f"  {i + 1:,} events in {time.perf_counter() - begin:.0f} s", file=sys.stderr)
    with engine.connect() as conn:
        conn.exec_driver_sql("PRAGMA wal_checkpoint(TRUNCATE)")
    engine.dispose()
    print(f"seeded {n:,} events in {time.perf_counter() - begin:.0f} s", file=sys.stderr)


def start(root: Path) -> tuple[Any, str]:
    port = servers.free_port()
    log = root.parent / "server.log"
    proc = servers._spawn([sys.executable, "-m", "safehold", "serve", "--data-dir", str(root),
                           "--host", "127.0.0.1", "--port", str(port)], log)
    base = f"http://127.0.0.1:{port}"
    servers._wait_ready(f"{base}{CAL}", proc, log, (servers.USER, servers.PASSWORD))
    return proc, base


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def wait_idle(procs: list[Any], limit: float = 900.0) -> None:
    """Until every server uses under 5% of a CPU over 2 s: a fresh server ships its whole
    change log to its new replica and takes a snapshot, which would be measured too."""
    deadline = time.monotonic() + limit
    while time.monotonic() < deadline:
        before = [cpu_seconds(p.pid) for p in procs]
        time.sleep(2.0)
        if all(cpu_seconds(p.pid) - b < 0.1 for p, b in zip(procs, before, strict=True)):
            return
    print(f"warning: the servers were still busy after {limit:.0f} s", file=sys.stderr)


def sync_body(token: str | None) -> bytes:
    tok = f"<D:sync-token>{token}</D:sync-token>" if token else "<D:sync-token/>"
    return (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">{tok}'
            "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>").encode()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,100000")
    parser.add_argument("--changes", type=int, default=10)
    parser.add_argument("--reps", type=int, default=200)
    args = parser.parse_args()
    sizes = [int(s) for s in args.sizes.split(",")]
    work = servers.WORK / "sync-scale"
    procs: list[Any] = []
    clients: list[Client] = []
    try:
        for n in sizes:
            root = work / str(n) / "data"
            if not (root / "safehold.db").exists():
                servers.fresh_dir(root.parent)
                seed(root, n)
            proc, base = start(root)
            procs.append(proc)
            # The bench's own client: httpx's ~1.5 ms per request would be in both sizes'
            # times and pull their ratio toward 1.
            clients.append(Client(base, (servers.USER, servers.PASSWORD), timeout=600))
        tokens = []
        changed = data.events(min(sizes))[:args.changes]
        for client in clients:
            r = client.request("REPORT", CAL, {"Depth": "0"}, sync_body(None))
            assert r.status_code == 207, r.status_code
            match = re.search(rb"<D:sync-token>([^<]+)</D:sync-token>", r.content)
            assert match
            tokens.append(match.group(1).decode())
            for ev in changed:
                r = client.put(CAL + ev.name, data.calendar([ev], revision=int(time.time())),
                               {"Content-Type": "text/calendar; charset=utf-8"})
                assert r.status_code in (201, 204), r.status_code
        wait_idle(procs)
        times: list[list[float]] = [[] for _ in sizes]
        load = os.getloadavg()[0]
        for _ in range(args.reps):
            for i, client in enumerate(clients):
                t0 = time.perf_counter()
                r = client.request("REPORT", CAL, {"Depth": "0"}, sync_body(tokens[i]))
                times[i].append(time.perf_counter() - t0)
                assert r.status_code == 207 and r.content.count(b"<D:response>") == args.changes
        print(f"incremental sync-collection, {args.changes} changes, {args.reps} requests per size, "
              f"alternating (1-minute load {load:.1f} at the start, {os.getloadavg()[0]:.1f} at the end)")
        for n, ts in zip(sizes, times, strict=True):
            print(f"  N = {n:>7,}: p50 {statistics.median(ts) * 1000:6.2f} ms, "
                  f"mean {statistics.fmean(ts) * 1000:6.2f} ms, {len(ts) / sum(ts):6.1f}/s")
        ratio = statistics.median(times[-1]) / statistics.median(times[0])
        print(f"  p50 at N = {sizes[-1]:,} / p50 at N = {sizes[0]:,}: {ratio:.2f}x")
    finally:
        for client in clients:
            client.close()
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=30)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
