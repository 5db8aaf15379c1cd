"""Small requests, two safehold source trees side by side in the same run.

    python bench/small_requests.py --base /tmp/old/src [--new src] [--n 300] [--rounds 5]

Starts one server per source tree (``PYTHONPATH=TREE python -m safehold serve``, each
with a fresh data directory under SAFEHOLD_BENCH_WORK or bench/.work), fills each with
N vCards and N events, then runs the small-request workloads in rounds, alternating
which server goes first, so that both see the same machine load. Prints per workload
and server the median over rounds of ops/s and p50 latency, and the load average.

Workloads (one keep-alive client, one request at a time, as bench/workloads.py):
GET of random items, PROPFIND Depth 0 of the calendar, sync-collection incremental
(after 1% of the events changed), calendar-multiget of 100 random events with their
calendar-data, calendar-query of one month (bench/workloads.py's), DELETE of single
items, PUT of a new vCard and of a new event (If-None-Match: *). The listings of the
calendar (PROPFIND Depth 1 with resourcetype, getetag, getcontenttype; an initial
sync-collection with getetag) each come twice: after one new event (its PUT, not timed,
lands at a random place among the members), and cold (before each one, untimed, a new
event lands in every thousand members, so that no rendered page can be reused).
"""

from __future__ import annotations

import argparse
import os
import random
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path


BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402
from client import Answer, Client  # noqa: E402
from servers import PASSWORD, USER, WORK, Collections, Server, _spawn, _wait_ready, free_port, fresh_dir  # noqa: E402

SYNC = (b'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">'
        b"<D:sync-token>%s</D:sync-token><D:sync-level>1</D:sync-level>"
        b"<D:prop><D:getetag/></D:prop></D:sync-collection>")
QUERY = (b'<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
         b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
         b'<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
         b'<C:time-range start="20260301T000000Z" end="20260401T000000Z"/>'
         b"</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")
PROPFIND1 = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
             b"<D:resourcetype/><D:getetag/><D:getcontenttype/></D:prop></D:propfind>")
PROPFIND0 = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
             b"<D:resourcetype/><D:displayname/><D:getctag xmlns:D='http://calendarserver.org/ns/'/>"
             b"</D:prop></D:propfind>")


@dataclass
class Target:
    label: str
    src: Path
    server: Server | None = None
    events: list[str] = field(default_factory=list)
    cards: list[str] = field(default_factory=list)
    doomed: list[str] = field(default_factory=list)
    token: bytes = b""
    created: int = 0  # items made by the PUT workloads
    spread: int = 0  # events made by the listing workloads' untimed PUTs
    latencies: dict[str, list[float]] = field(default_factory=dict)
    walls: dict[str, float] = field(default_factory=dict)
    cpu: dict[str, float] = field(default_factory=dict)


def start(target: Target, root: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(target.src.resolve())}
    data_dir = root / "data"
    subprocess.run([sys.executable, "-m", "safehold", "user", "add", USER, "--password-stdin",
                    "--data-dir", str(data_dir)], input=(PASSWORD + "\n").encode(), check=True,
                   capture_output=True, env=env)
    port = free_port()
    log_path = root / "server.log"
    proc = _spawn([sys.executable, "-m", "safehold", "serve", "--data-dir", str(data_dir),
                   "--host", "127.0.0.1", "--port", str(port)], log_path, env=env)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(f"{base}/dav/calendars/{USER}/personal/", proc, log_path, (USER, PASSWORD))
    target.server = Server(target.label, str(target.src), base, data_dir,
                           Collections(f"/dav/calendars/{USER}/personal/",
                                       f"/dav/addressbooks/{USER}/contacts/",
                                       f"/dav/calendars/{USER}/"),
                           (USER, PASSWORD), proc, log_path)


def client(target: Target) -> Client:
    assert target.server is not None
    return Client(target.server.base_url, target.server.auth, timeout=60.0)


def fill(target: Target, n: int, rng: random.Random) -> None:
    assert target.server is not None
    cal, book = target.server.collections.calendar, target.server.collections.addressbook
    with client(target) as c:
        for i in range(n):
            path = f"{book}{data.card_uid(i)}.vcf"
            c.put(path, content=data.vcard(i), headers={"Content-Type": "text/vcard"}).raise_for_status()
            target.cards.append(path)
        events = data.events(n)
        for ev in events:
            path = cal + ev.name
            c.put(path, content=data.calendar([ev]),
                  headers={"Content-Type": "text/calendar"}).raise_for_status()
            target.events.append(path)
        r = c.request("REPORT", cal, content=SYNC % b"",
                      headers={"Depth": "0", "Content-Type": "application/xml"})
        token = ET.fromstring(r.content).findtext("{DAV:}sync-token")
        assert token, r.text[:300]
        target.token = token.encode()
        for ev in rng.sample(events, max(1, n // 100)):
            c.put(cal + ev.name, content=data.calendar([ev], revision=1),
                  headers={"Content-Type": "text/calendar"}).raise_for_status()


@dataclass
class Workload:
    name: str
    make: Callable[[Target, random.Random], tuple[str, str, dict[str, str], bytes | None]]
    ok: Callable[[Answer], bool]
    per_batch: int
    # Requests made, untimed, before each timed one (their server CPU is left out too).
    prep: Callable[[Target, random.Random], list[tuple[str, str, dict[str, str], bytes | None]]] \
        | None = None


def workloads() -> list[Workload]:
    def get(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        return ("GET", rng.choice(t.events + t.cards), {}, None)

    def propfind(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        return ("PROPFIND", t.server.collections.calendar,
                {"Depth": "0", "Content-Type": "application/xml"}, PROPFIND0)

    def sync(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        return ("REPORT", t.server.collections.calendar,
                {"Depth": "0", "Content-Type": "application/xml"}, SYNC % t.token)

    def multiget(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        hrefs = "".join(f"<D:href>{h}</D:href>" for h in rng.sample(t.events, min(100, len(t.events))))
        body = ('<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
                'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/>'
                f"</D:prop>{hrefs}</C:calendar-multiget>").encode()
        return ("REPORT", t.server.collections.calendar,
                {"Depth": "1", "Content-Type": "application/xml"}, body)

    def query(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        return ("REPORT", t.server.collections.calendar,
                {"Depth": "1", "Content-Type": "application/xml"}, QUERY)

    def delete(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        return ("DELETE", t.events.pop(rng.randrange(len(t.events))), {}, None)

    def put_card(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        t.created += 1
        i = 1_000_000 + t.created
        return ("PUT", f"{t.server.collections.addressbook}{data.card_uid(i)}.vcf",
                {"Content-Type": "text/vcard; charset=utf-8", "If-None-Match": "*"}, data.vcard(i))

    def put_event(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        t.created += 1
        ev = data.Event(f"bench-new-{t.created:07d}", data.YEAR_START, t.created % 10 == 0)
        return ("PUT", t.server.collections.calendar + ev.name,
                {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
                data.calendar([ev]))

    def listing(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        return ("PROPFIND", t.server.collections.calendar,
                {"Depth": "1", "Content-Type": "application/xml"}, PROPFIND1)

    def sync_initial(t: Target, rng: random.Random) -> tuple[str, str, dict[str, str], bytes | None]:
        assert t.server is not None
        return ("REPORT", t.server.collections.calendar,
                {"Depth": "0", "Content-Type": "application/xml"}, SYNC % b"")

    def new_event(t: Target, after: int) -> tuple[str, str, dict[str, str], bytes | None]:
        # Sorts right after the fill's event number ``after`` (bench-ev-NNNNNNN.ics).
        assert t.server is not None
        t.spread += 1
        ev = data.Event(f"bench-ev-{after:07d}-{t.spread:06d}", data.YEAR_START, False)
        return ("PUT", t.server.collections.calendar + ev.name,
                {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
                data.calendar([ev]))

    def one_new(t: Target, rng: random.Random) -> list[tuple[str, str, dict[str, str], bytes | None]]:
        return [new_event(t, rng.randrange(max(1, len(t.events))))]

    def every_page(t: Target, rng: random.Random) -> list[tuple[str, str, dict[str, str], bytes | None]]:
        return [new_event(t, k) for k in range(rng.randrange(500), max(1, len(t.events)), 1000)]

    return [Workload("GET random item", get, lambda r: r.status_code == 200, 40),
            Workload("PROPFIND Depth 0 (calendar)", propfind, lambda r: r.status_code == 207, 20),
            Workload("sync-collection incremental", sync, lambda r: r.status_code == 207, 10),
            Workload("calendar-multiget of 100", multiget, lambda r: r.status_code == 207, 4),
            Workload("calendar-query one month", query, lambda r: r.status_code == 207, 4),
            Workload("DELETE one item", delete, lambda r: r.status_code in (200, 204), 2),
            Workload("PUT new vCard", put_card, lambda r: r.status_code == 201, 20),
            Workload("PUT new event", put_event, lambda r: r.status_code == 201, 20),
            Workload("PROPFIND Depth 1 after a PUT", listing, lambda r: r.status_code == 207, 2,
                     one_new),
            Workload("PROPFIND Depth 1 cold", listing, lambda r: r.status_code == 207, 2, every_page),
            Workload("sync initial after a PUT", sync_initial, lambda r: r.status_code == 207, 2,
                     one_new),
            Workload("sync initial cold", sync_initial, lambda r: r.status_code == 207, 2,
                     every_page)]


def batch(target: Target, c: Client, w: Workload, rng: random.Random) -> None:
    lat = target.latencies.setdefault(w.name, [])
    cpu0 = cpu_seconds(target)
    begin = time.perf_counter()
    untimed = 0.0
    for _ in range(w.per_batch):
        if w.prep is not None:
            t0, c0 = time.perf_counter(), cpu_seconds(target)
            for method, url, headers, body in w.prep(target, rng):
                c.request(method, url, headers=headers, content=body).raise_for_status()
            begin += time.perf_counter() - t0
            untimed += cpu_seconds(target) - c0
        method, url, headers, body = w.make(target, rng)
        t0 = time.perf_counter()
        r = c.request(method, url, headers=headers, content=body)
        lat.append(time.perf_counter() - t0)
        if not w.ok(r):
            raise SystemExit(f"{target.label}: {method} {url} -> {r.status_code} {r.text[:200]}")
    target.walls[w.name] = target.walls.get(w.name, 0.0) + time.perf_counter() - begin
    target.cpu[w.name] = target.cpu.get(w.name, 0.0) + cpu_seconds(target) - cpu0 - untimed


def cpu_seconds(target: Target) -> float:
    """User + system CPU time the server process (all its threads) has used so far: the
    cost of a request independent of how busy the machine is."""
    assert target.server is not None
    fields = Path(f"/proc/{target.server.process.pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--base", type=Path, required=True, help="the old source tree (a src/ folder)")
    ap.add_argument("--new", type=Path, default=BENCH.parent / "src", help="the new source tree")
    ap.add_argument("--also", action="append", default=[], metavar="LABEL=TREE",
                    help="a further source tree to compare (repeatable)")
    ap.add_argument("--n", type=int, default=300, help="vCards and events in each server")
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--batches", type=int, default=10, help="batches per workload and round")
    ap.add_argument("--only", action="append", default=[], metavar="TEXT",
                    help="run only workloads whose name contains TEXT (repeatable)")
    args = ap.parse_args()
    chosen = [w for w in workloads() if not args.only or any(o in w.name for o in args.only)]
    targets = [Target("base", args.base), Target("new", args.new)]
    targets += [Target(label, Path(tree)) for label, _, tree in (a.partition("=") for a in args.also)]
    loads = []
    rng = random.Random(11)
    clients: list[Client] = []
    try:
        for t in targets:
            start(t, fresh_dir(WORK / f"small-{t.label}"))
            fill(t, args.n, random.Random(7))
            clients.append(client(t))
        for r in range(args.rounds):
            loads.append(os.getloadavg()[0])
            for w in chosen:
                for b in range(args.batches):
                    # Take turns batch by batch, rotating who goes first, so that every
                    # tree meets the same machine load.
                    pairs = list(zip(targets, clients, strict=True))
                    k = (r + b) % len(pairs)
                    for t, c in pairs[k:] + pairs[:k]:
                        batch(t, c, w, rng)
    finally:
        for c in clients:
            c.close()
        for t in targets:
            if t.server is not None:
                t.server.stop()
    print(f"load average (1 min) at each round: {', '.join(f'{x:.2f}' for x in loads)}")
    print("ops/s (requests / time spent in them), p50 and p90 latency, server CPU ms per request;"
          " ratio of ops/s to base")
    print(f"{'workload':28}" + "".join(f"{t.label:>41}" for t in targets))
    for w in chosen:
        line = f"{w.name:28}"
        base_rate = len(targets[0].latencies[w.name]) / targets[0].walls[w.name]
        for t in targets:
            lat = sorted(t.latencies[w.name])
            rate = len(lat) / t.walls[w.name]
            cpu = t.cpu[w.name] / len(lat) * 1000
            line += (f"{rate:8.1f}/s {lat[len(lat) // 2] * 1000:6.2f} {lat[len(lat) * 9 // 10] * 1000:6.2f}ms"
                     f" {cpu:5.2f}cpu {rate / base_rate:5.2f}x")
        print(line)


if __name__ == "__main__":
    main()
