"""The workloads, run in order against one server over one keep-alive HTTP client each.

Every request is timed alone (time.perf_counter around send + full body read). A
workload's rate is requests / wall time, where wall time leaves out the client's own
checking of the answers (XML parsing of a sample of responses). A workload that runs
longer than its time limit stops after the request in flight and is marked "timeout";
its rate is then the partial one.
"""

from __future__ import annotations

import os
import random
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

import data
from servers import Server, mkcalendar

DAV = "{DAV:}"
CAL = "{urn:ietf:params:xml:ns:caldav}"
IMPORT_EVENTS = 5000


@dataclass
class Result:
    name: str
    key: str = ""  # the Bench method that produced it
    count: int = 0
    wall: float = 0.0
    latencies: list[float] = field(default_factory=list)
    errors: int = 0
    error_samples: list[str] = field(default_factory=list)
    status: str = "ok"  # ok | timeout | n/a | failed
    load: float = 0.0   # 1-minute load average of the machine when the workload began
    events: int = 0     # events in the calendar when the workload began
    notes: list[str] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.count / self.wall if self.wall > 0 else 0.0

    def percentile(self, p: float) -> float:
        """Nearest-rank percentile of the latencies, in seconds."""
        if not self.latencies:
            return 0.0
        ordered = sorted(self.latencies)
        rank = max(1, min(len(ordered), int(-(-p * len(ordered) // 100))))
        return ordered[rank - 1]

    def error(self, text: str) -> None:
        self.errors += 1
        if len(self.error_samples) < 3:
            self.error_samples.append(text)

    def as_dict(self) -> dict[str, object]:
        return {"name": self.name, "count": self.count, "wall_s": round(self.wall, 4),
                "ops_per_s": round(self.rate, 2), "p50_ms": round(self.percentile(50) * 1000, 3),
                "p99_ms": round(self.percentile(99) * 1000, 3), "errors": self.errors,
                "error_samples": self.error_samples, "status": self.status, "notes": self.notes,
                "load": self.load, "events": self.events}


Request = tuple[str, str, dict[str, str], bytes | None]
Check = Callable[[int, httpx.Response], str | None]


class Bench:
    """All workloads for one server at one N."""

    def __init__(self, server: Server, n: int, time_limit: float, seed: int = 7) -> None:
        self.server = server
        self.n = n
        self.time_limit = time_limit
        self.rng = random.Random(seed)
        self.events = data.events(n)
        self.cards_ok: list[str] = []      # hrefs of vCards that were stored
        self.events_ok: list[str] = []     # hrefs of events that were stored
        self.by_href: dict[str, data.Event] = {}
        self.token: str | None = None
        self.changed = 0
        self.reps = max(5, min(20, 20_000 // n))
        self.results: list[Result] = []

    # -- machinery ---------------------------------------------------------------
    def client(self, timeout: float | None = None) -> httpx.Client:
        return httpx.Client(base_url=self.server.base_url, auth=self.server.auth,
                            timeout=timeout or max(60.0, self.time_limit * 2),
                            limits=httpx.Limits(max_connections=1, max_keepalive_connections=1))

    def measure(self, name: str, count: int, make: Callable[[int], Request], check: Check,
                timeout: float | None = None) -> Result:
        res = Result(name, events=len(self.events_ok))
        with self.client(timeout) as client:
            begin = time.perf_counter()
            deadline = begin + self.time_limit
            checking = 0.0
            for i in range(count):
                if time.perf_counter() > deadline:
                    res.status = "timeout"
                    res.notes.append(f"stopped after {res.count} of {count} requests")
                    break
                method, url, headers, body = make(i)
                t0 = time.perf_counter()
                try:
                    resp = client.request(method, url, headers=headers, content=body)
                except httpx.TimeoutException as exc:
                    res.latencies.append(time.perf_counter() - t0)
                    res.count += 1
                    res.error(f"{method} {url}: client timeout ({type(exc).__name__})")
                    res.status = "timeout"
                    break
                except httpx.TransportError as exc:
                    res.latencies.append(time.perf_counter() - t0)
                    res.count += 1
                    res.error(f"{method} {url}: {type(exc).__name__}: {exc}")
                    if not self.server.alive():
                        res.status = "failed"
                        res.notes.append("the server process died")
                        break
                    continue
                t1 = time.perf_counter()
                res.latencies.append(t1 - t0)
                res.count += 1
                problem = check(i, resp)
                if problem:
                    res.error(f"{method} {url}: {problem}")
                checking += time.perf_counter() - t1
            res.wall = time.perf_counter() - begin - checking
        self.results.append(res)
        return res

    def sample(self, i: int, count: int) -> bool:
        """Whether answer i of count gets the expensive check (the first and the last)."""
        return i == 0 or i == count - 1

    # -- the workloads -------------------------------------------------------------
    def steps(self) -> list[Callable[[], None]]:
        """The workloads in the order they run (each appends one Result)."""
        return [self.put_cards, self.put_events, self.propfind, self.sync_initial, self.update,
                self.sync_incremental, self.multiget, self.calendar_query, self.get_random,
                self.delete, self.import_ics]

    def put_cards(self) -> None:
        book = self.server.collections.addressbook
        hrefs = [f"{book}{data.card_uid(i)}.vcf" for i in range(self.n)]

        def make(i: int) -> Request:
            return ("PUT", hrefs[i], {"Content-Type": "text/vcard; charset=utf-8", "If-None-Match": "*"},
                    data.vcard(i))

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code in (200, 201, 204):
                self.cards_ok.append(hrefs[i])
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        self.measure(f"PUT vCard (N={self.n})", self.n, make, check)

    def put_events(self) -> None:
        cal = self.server.collections.calendar
        hrefs = [cal + ev.name for ev in self.events]

        def make(i: int) -> Request:
            return ("PUT", hrefs[i], {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
                    data.calendar([self.events[i]]))

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code in (200, 201, 204):
                self.events_ok.append(hrefs[i])
                self.by_href[hrefs[i]] = self.events[i]
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        res = self.measure(f"PUT event, 10% recurring (N={self.n})", self.n, make, check)
        if res.status == "timeout":
            self.fill(res, make, check)
        if len(self.events_ok) < self.n:
            res.notes.append(f"{len(self.events_ok)} of {self.n} events stored; later workloads use those")

    def fill(self, res: Result, make: Callable[[int], Request], check: Check) -> None:
        """After a timeout, store the rest of the events unmeasured (for at most another time
        limit), so that the later workloads see the same calendar on every server."""
        start = done = res.count
        begin = time.perf_counter()
        with self.client() as client:
            while done < self.n and time.perf_counter() - begin <= self.time_limit:
                method, url, headers, body = make(done)
                try:
                    check(done, client.request(method, url, headers=headers, content=body))
                except httpx.TransportError:
                    break
                done += 1
        res.notes.append(f"then sent events {start + 1}..{done} unmeasured in "
                         f"{time.perf_counter() - begin:.0f} s for the later workloads")

    def propfind(self) -> None:
        body = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
                b"<D:resourcetype/><D:getetag/><D:getcontenttype/></D:prop></D:propfind>")
        expected = len(self.events_ok) + 1
        reps = self.reps

        def make(i: int) -> Request:
            return ("PROPFIND", self.server.collections.calendar,
                    {"Depth": "1", "Content-Type": "application/xml"}, body)

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 207:
                return f"status {r.status_code}"
            if self.sample(i, reps):
                got = len(_responses(r.content))
                if got != expected:
                    return f"{got} responses, expected {expected}"
            return None

        self.measure(f"PROPFIND Depth 1 calendar ({expected} members, x{reps})", reps, make, check)

    def _sync_body(self, token: str | None) -> bytes:
        tok = f"<D:sync-token>{token}</D:sync-token>" if token else "<D:sync-token/>"
        return (f'<?xml version="1.0" encoding="utf-8"?><D:sync-collection xmlns:D="DAV:">{tok}'
                "<D:sync-level>1</D:sync-level><D:prop><D:getetag/></D:prop></D:sync-collection>").encode()

    def sync_initial(self) -> None:
        expected = len(self.events_ok)
        reps = self.reps

        def make(i: int) -> Request:
            return ("REPORT", self.server.collections.calendar,
                    {"Depth": "0", "Content-Type": "application/xml"}, self._sync_body(None))

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 207:
                return f"status {r.status_code} {r.text[:200]!r}"
            if self.sample(i, reps):
                root = ET.fromstring(r.content)
                self.token = root.findtext(f"{DAV}sync-token")
                got = len(_member_responses(root, self.server.collections.calendar))
                if got != expected:
                    return f"{got} members, expected {expected}"
            return None

        self.measure(f"sync-collection initial ({expected} items, x{reps})", reps, make, check)

    def update(self) -> None:
        m = max(1, self.n // 100)
        chosen = self.rng.sample(self.events_ok, min(m, len(self.events_ok)))

        def make(i: int) -> Request:
            return ("PUT", chosen[i], {"Content-Type": "text/calendar; charset=utf-8"},
                    data.calendar([self.by_href[chosen[i]]], revision=1))

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code in (200, 201, 204):
                self.changed += 1
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        self.measure(f"PUT update of 1% ({len(chosen)})", len(chosen), make, check)

    def sync_incremental(self) -> None:
        reps = self.reps
        res_name = f"sync-collection incremental after 1% changes ({self.changed} changed, x{reps})"
        if not self.token:
            self.results.append(Result(res_name, status="n/a", notes=["no sync-token from the initial sync"]))
            return
        body = self._sync_body(self.token)
        expected = self.changed

        def make(i: int) -> Request:
            return ("REPORT", self.server.collections.calendar,
                    {"Depth": "0", "Content-Type": "application/xml"}, body)

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 207:
                return f"status {r.status_code} {r.text[:200]!r}"
            got = len(_member_responses(ET.fromstring(r.content), self.server.collections.calendar))
            if got != expected:
                return f"{got} members, expected {expected}"
            return None

        self.measure(res_name, reps, make, check)

    def multiget(self) -> None:
        size = min(100, len(self.events_ok))
        reps = 50
        picks = [self.rng.sample(self.events_ok, size) for _ in range(reps)]

        def make(i: int) -> Request:
            hrefs = "".join(f"<D:href>{h}</D:href>" for h in picks[i])
            body = ('<?xml version="1.0" encoding="utf-8"?><C:calendar-multiget xmlns:D="DAV:" '
                    'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/><C:calendar-data/>'
                    f"</D:prop>{hrefs}</C:calendar-multiget>").encode()
            return ("REPORT", self.server.collections.calendar,
                    {"Depth": "1", "Content-Type": "application/xml"}, body)

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 207:
                return f"status {r.status_code} {r.text[:200]!r}"
            root = ET.fromstring(r.content)
            with_data = sum(1 for resp in root.iter(f"{DAV}response")
                            if (resp.findtext(f".//{CAL}calendar-data") or "").strip())
            if with_data != size:
                return f"{with_data} items with calendar-data, expected {size}"
            return None

        self.measure(f"calendar-multiget of {size} (x{reps})", reps, make, check)

    def calendar_query(self) -> None:
        expected = sum(1 for h in self.events_ok
                       if self.by_href[h].overlaps(data.QUERY_START, data.QUERY_END))
        reps = self.reps
        body = (b'<?xml version="1.0" encoding="utf-8"?><C:calendar-query xmlns:D="DAV:" '
                b'xmlns:C="urn:ietf:params:xml:ns:caldav"><D:prop><D:getetag/></D:prop>'
                b'<C:filter><C:comp-filter name="VCALENDAR"><C:comp-filter name="VEVENT">'
                b'<C:time-range start="20260301T000000Z" end="20260401T000000Z"/>'
                b"</C:comp-filter></C:comp-filter></C:filter></C:calendar-query>")

        def make(i: int) -> Request:
            return ("REPORT", self.server.collections.calendar,
                    {"Depth": "1", "Content-Type": "application/xml"}, body)

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 207:
                return f"status {r.status_code} {r.text[:200]!r}"
            if self.sample(i, reps):
                got = len(_member_responses(ET.fromstring(r.content), self.server.collections.calendar))
                if got != expected:
                    return f"{got} matches, expected {expected}"
            return None

        self.measure(f"calendar-query, one month ({expected} of {len(self.events_ok)} match, x{reps})",
                     reps, make, check)

    def get_random(self) -> None:
        pool = self.events_ok + self.cards_ok
        count = min(1000, len(pool))
        picks = [self.rng.choice(pool) for _ in range(count)]

        def make(i: int) -> Request:
            return ("GET", picks[i], {}, None)

        def check(i: int, r: httpx.Response) -> str | None:
            if r.status_code != 200 or not r.content.startswith(b"BEGIN:"):
                return f"status {r.status_code} {r.text[:100]!r}"
            return None

        self.measure(f"GET random item ({count})", count, make, check)

    def delete(self) -> None:
        m = max(1, self.n // 100)
        chosen = self.rng.sample(self.events_ok, min(m, len(self.events_ok)))

        def make(i: int) -> Request:
            return ("DELETE", chosen[i], {}, None)

        def check(i: int, r: httpx.Response) -> str | None:
            return None if r.status_code in (200, 204) else f"status {r.status_code} {r.text[:200]!r}"

        self.measure(f"DELETE 1% ({len(chosen)})", len(chosen), make, check)

    def import_ics(self) -> None:
        """One PUT of a 5,000-event .ics onto a new calendar collection (Radicale's import)."""
        name = f"import .ics of {IMPORT_EVENTS} events, one PUT"
        home = self.server.collections.calendar_home
        path = f"{home}bench-import/"
        body = data.calendar(data.events(IMPORT_EVENTS, prefix="imp"))
        with self.client() as client:
            made = mkcalendar(client, path, "Import")
        outcome: dict[str, int] = {}

        def make(i: int) -> Request:
            return ("PUT", path, {"Content-Type": "text/calendar; charset=utf-8"}, body)

        def check(i: int, r: httpx.Response) -> str | None:
            outcome["status"] = r.status_code
            return None

        # One request cannot be cut short: the time limit is its client timeout. Meanwhile
        # another client GETs one item again and again: how long the import blocks others.
        probe = Result("GET by another client during the import", key="import_probe",
                       events=len(self.events_ok), load=os.getloadavg()[0])
        stop = threading.Event()
        prober = threading.Thread(target=self._probe, args=(probe, stop), daemon=True)
        prober.start()
        try:
            res = self.measure(name, 1, make, check, timeout=self.time_limit)
            self._after_import(res, path, body, made, outcome.get("status"))
        finally:
            stop.set()
            prober.join()
            # Before the import's own result: run_step labels the last result with the step.
            self.results.insert(len(self.results) - 1, probe)

    def _after_import(self, res: Result, path: str, body: bytes, made: int,
                      status: int | None) -> None:
        res.notes.append(f"{len(body) // 1024} KiB; MKCALENDAR -> {made}; PUT on the collection -> "
                         + (str(status) if status else f"no answer within {self.time_limit:g} s"))
        if res.status != "ok":
            return
        if status is not None and 200 <= status < 300:
            with self.client() as client:
                r = client.request("PROPFIND", path, headers={"Depth": "1"})
            got = len(_responses(r.content)) if r.status_code == 207 else -1
            if got != IMPORT_EVENTS + 1:
                res.error(f"after import PROPFIND lists {got} responses, expected {IMPORT_EVENTS + 1}")
            return
        res.status = "n/a"
        res.errors = 0
        res.error_samples.clear()
        # Not an import, but worth knowing: what the server does with the same file as one object.
        with self.client() as client:
            r = client.put(f"{path}all.ics", content=body,
                           headers={"Content-Type": "text/calendar; charset=utf-8"})
        res.notes.append(f"PUT as one object -> {r.status_code}")

    def _probe(self, res: Result, stop: threading.Event) -> None:
        """GET one stored item over a connection of its own until ``stop`` (any answer
        counts; only its latency is recorded)."""
        target = (self.cards_ok or self.events_ok or [self.server.collections.calendar])[0]
        begin = time.perf_counter()
        with self.client(timeout=self.time_limit) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    client.get(target)
                except httpx.TransportError as exc:
                    res.error(f"GET {target}: {type(exc).__name__}")
                res.latencies.append(time.perf_counter() - t0)
                res.count += 1
                time.sleep(0.01)
        res.wall = time.perf_counter() - begin
        res.notes.append(f"{res.count} GETs of {target}, one every 10 ms after the previous answer")


def _responses(body: bytes) -> list[ET.Element]:
    return ET.fromstring(body).findall(f"{DAV}response")


def _member_responses(root: ET.Element, collection: str) -> list[ET.Element]:
    """Responses for members (not the collection itself)."""
    out = []
    for resp in root.findall(f"{DAV}response"):
        href = (resp.findtext(f"{DAV}href") or "").strip()
        if href.rstrip("/").endswith(collection.rstrip("/")):
            continue
        out.append(resp)
    return out
