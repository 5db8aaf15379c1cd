"""The workloads, run in order against one server over one keep-alive HTTP client each.

Every request is timed alone (time.perf_counter around send + full body read). A
workload's rate is requests / wall time, where wall time leaves out the client's own
checking of the answers (XML parsing of a sample of responses). A workload that runs
longer than its time limit stops after the request in flight and is marked "timeout";
its rate is then the partial one.
"""

from __future__ import annotations

import json
import os
import random
import subprocess
import threading
import time
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import dataclass, field

import data
from client import Answer, Client, Timeout, TransportError
from servers import Server, mkcalendar

DAV = "{DAV:}"
CAL = "{urn:ietf:params:xml:ns:caldav}"
IMPORT_EVENTS = 5000
FILL_IMPORTS = 2  # concurrent import processes that store the rest of N (servers with an import command)
INCREMENTAL_REPS = 100  # incremental sync-collection requests per server, at every N
FILL_CLIENTS = 4  # concurrent PUT clients that store the rest of N after a PUT workload's time limit


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
    slowest_at: float = 0.0  # wall clock (time.time) when the slowest request was sent
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
Check = Callable[[int, Answer], str | None]


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
    def client(self, timeout: float | None = None) -> Client:
        return Client(self.server.base_url, self.server.auth,
                      timeout=timeout or max(60.0, self.time_limit * 2))

    def measure(self, name: str, count: int, make: Callable[[int], Request], check: Check,
                timeout: float | None = None) -> Result:
        res = Result(name, events=len(self.events_ok))
        with self.client(timeout) as client:
            begin = time.perf_counter()
            deadline = begin + self.time_limit
            checking = worst = 0.0
            for i in range(count):
                if time.perf_counter() > deadline:
                    res.status = "timeout"
                    res.notes.append(f"stopped after {res.count} of {count} requests")
                    break
                method, url, headers, body = make(i)
                t0 = time.perf_counter()
                try:
                    resp = client.request(method, url, headers=headers, content=body)
                except Timeout as exc:
                    res.latencies.append(time.perf_counter() - t0)
                    res.count += 1
                    res.error(f"{method} {url}: client timeout ({type(exc).__name__})")
                    res.status = "timeout"
                    break
                except TransportError as exc:
                    res.latencies.append(time.perf_counter() - t0)
                    res.count += 1
                    res.error(f"{method} {url}: {type(exc).__name__}: {exc}")
                    if not self.server.alive():
                        res.status = "failed"
                        res.notes.append("the server process died")
                        break
                    continue
                t1 = time.perf_counter()
                if t1 - t0 > worst:
                    # To place an outlier against the server's log (time.time, not t0).
                    worst, res.slowest_at = t1 - t0, time.time() - (t1 - t0)
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

        def check(i: int, r: Answer) -> str | None:
            if r.status_code in (200, 201, 204):
                self.cards_ok.append(hrefs[i])
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        res = self.measure(f"PUT vCard (N={self.n})", self.n, make, check)
        if res.status == "timeout":
            self.fill(res, make, check, lambda i: self.cards_ok.append(hrefs[i]), book,
                      lambda rest: b"".join(data.vcard(i) for i in rest), ".vcf")
        if len(self.cards_ok) < self.n:
            res.notes.append(f"{len(self.cards_ok)} of {self.n} vCards stored; later workloads use those")

    def put_events(self) -> None:
        cal = self.server.collections.calendar
        hrefs = [cal + ev.name for ev in self.events]

        def make(i: int) -> Request:
            return ("PUT", hrefs[i], {"Content-Type": "text/calendar; charset=utf-8", "If-None-Match": "*"},
                    data.calendar([self.events[i]]))

        def check(i: int, r: Answer) -> str | None:
            if r.status_code in (200, 201, 204):
                self.events_ok.append(hrefs[i])
                self.by_href[hrefs[i]] = self.events[i]
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        def stored(i: int) -> None:
            self.events_ok.append(hrefs[i])
            self.by_href[hrefs[i]] = self.events[i]

        res = self.measure(f"PUT event, 10% recurring (N={self.n})", self.n, make, check)
        if res.status == "timeout":
            self.fill(res, make, check, stored, cal,
                      lambda rest: data.calendar([self.events[i] for i in rest]), ".ics")
        if len(self.events_ok) < self.n:
            res.notes.append(f"{len(self.events_ok)} of {self.n} events stored; later workloads use those")

    def fill(self, res: Result, make: Callable[[int], Request], check: Check,
             stored: Callable[[int], None], collection: str,
             file_of: Callable[[range], bytes], suffix: str) -> None:
        """After a timeout, store the rest of the N items unmeasured, so that the later
        workloads see the same collections on every server: through the server's own
        import command where it has one (safehold: `safehold import` of one .vcf/.ics with
        the same bytes under the same names, while the server runs), else with FILL_CLIENTS
        concurrent PUT clients for at most another time limit."""
        rest = range(res.count, self.n)
        begin = time.perf_counter()
        if self.server.import_command is not None:
            # FILL_IMPORTS processes at once, each on a contiguous share of the rest: parsing
            # is most of an import's time, and it runs outside the write transactions.
            shares = [rest[k::FILL_IMPORTS] for k in range(FILL_IMPORTS)]
            results = run_imports(self.server, collection, [
                (f"fill-{k}{suffix}", file_of(share)) for k, share in enumerate(shares)])
            created = 0
            for share, got in zip(shares, results, strict=True):
                if isinstance(got, str):
                    res.error(f"fill import: {got}")
                    continue
                created += got
                if got != len(share):
                    res.error(f"fill import: created {got} of {len(share)} items")
            if created != len(rest):
                return
            for i in rest:
                stored(i)
            seconds = time.perf_counter() - begin
            res.notes.append(f"then imported items {rest.start + 1}..{rest.stop} unmeasured with "
                             f"{FILL_IMPORTS} `safehold import` processes at once in {seconds:.0f} s "
                             f"({len(rest) / seconds:,.0f} items/s) for the later workloads")
            return
        todo = iter(rest)
        lock = threading.Lock()
        done = [0]

        def worker() -> None:
            with self.client() as client:
                while time.perf_counter() - begin <= self.time_limit:
                    with lock:
                        i = next(todo, None)
                    if i is None:
                        return
                    method, url, headers, body = make(i)
                    try:
                        r = client.request(method, url, headers=headers, content=body)
                    except TransportError:
                        return
                    with lock:
                        check(i, r)
                        done[0] += 1
        threads = [threading.Thread(target=worker) for _ in range(FILL_CLIENTS)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        res.notes.append(f"then sent {done[0]} of the remaining {len(rest)} items unmeasured with "
                         f"{FILL_CLIENTS} concurrent clients in {time.perf_counter() - begin:.0f} s "
                         "for the later workloads")

    def propfind(self) -> None:
        body = (b'<?xml version="1.0" encoding="utf-8"?><D:propfind xmlns:D="DAV:"><D:prop>'
                b"<D:resourcetype/><D:getetag/><D:getcontenttype/></D:prop></D:propfind>")
        expected = len(self.events_ok) + 1
        reps = self.reps

        def make(i: int) -> Request:
            return ("PROPFIND", self.server.collections.calendar,
                    {"Depth": "1", "Content-Type": "application/xml"}, body)

        def check(i: int, r: Answer) -> str | None:
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

        def check(i: int, r: Answer) -> str | None:
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

        def check(i: int, r: Answer) -> str | None:
            if r.status_code in (200, 201, 204):
                self.changed += 1
                return None
            return f"status {r.status_code} {r.text[:200]!r}"

        self.measure(f"PUT update of 1% ({len(chosen)})", len(chosen), make, check)

    def sync_incremental(self) -> None:
        # Cheap for every server, so more of them than the listings get: with 20, one slow
        # request (7.7 ms against 0.8 ms) decided the 08:47 run's ratio (9.0x; 15.5x rerun).
        reps = max(self.reps, INCREMENTAL_REPS)
        res_name = f"sync-collection incremental after 1% changes ({self.changed} changed, x{reps})"
        if not self.token:
            self.results.append(Result(res_name, status="n/a", notes=["no sync-token from the initial sync"]))
            return
        body = self._sync_body(self.token)
        expected = self.changed

        def make(i: int) -> Request:
            return ("REPORT", self.server.collections.calendar,
                    {"Depth": "0", "Content-Type": "application/xml"}, body)

        def check(i: int, r: Answer) -> str | None:
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

        def check(i: int, r: Answer) -> str | None:
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

        def check(i: int, r: Answer) -> str | None:
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

        def check(i: int, r: Answer) -> str | None:
            if r.status_code != 200 or not r.content.startswith(b"BEGIN:"):
                return f"status {r.status_code} {r.text[:100]!r}"
            return None

        self.measure(f"GET random item ({count})", count, make, check)

    def delete(self) -> None:
        m = max(1, self.n // 100)
        chosen = self.rng.sample(self.events_ok, min(m, len(self.events_ok)))

        def make(i: int) -> Request:
            return ("DELETE", chosen[i], {}, None)

        def check(i: int, r: Answer) -> str | None:
            return None if r.status_code in (200, 204) else f"status {r.status_code} {r.text[:200]!r}"

        self.measure(f"DELETE 1% ({len(chosen)})", len(chosen), make, check)

    def import_ics(self) -> None:
        """Import a 5,000-event .ics into a new calendar: with the server's own import
        command where it has one (safehold: `safehold import`, a separate process on the
        same database while the server runs), else one PUT onto the collection
        (Radicale's import). Meanwhile another client GETs one item and another PUTs one
        vCard again and again, each on a connection of its own: how long the import makes
        others wait (a PUT also waits for the database's one writer)."""
        home = self.server.collections.calendar_home
        path = f"{home}bench-import/"
        body = data.calendar(data.events(IMPORT_EVENTS, prefix="imp"))
        with self.client() as client:
            made = mkcalendar(client, path, "Import")
        load = os.getloadavg()[0]
        probes = [Result("GET by another client during the import", key="import_probe",
                         events=len(self.events_ok), load=load),
                  Result("PUT by another client during the import", key="import_probe_put",
                         events=len(self.events_ok), load=load)]
        stop = threading.Event()
        threads = [threading.Thread(target=self._probe, args=(probes[0], stop, False), daemon=True),
                   threading.Thread(target=self._probe, args=(probes[1], stop, True), daemon=True)]
        for t in threads:
            t.start()
        try:
            if self.server.import_command is not None:
                self._import_cli(path, body, made)
            else:
                self._import_put(path, body, made)
        finally:
            stop.set()
            for t in threads:
                t.join()
            # Before the import's own result: run_step labels the last result with the step.
            for probe in probes:
                self.results.insert(len(self.results) - 1, probe)

    def _import_cli(self, path: str, body: bytes, made: int) -> None:
        res = Result(f"import .ics of {IMPORT_EVENTS} events, CLI", events=len(self.events_ok))
        assert self.server.import_command is not None
        ics = self.server.data_dir.parent / "import.ics"
        ics.write_bytes(body)
        cmd = self.server.import_command(ics, path)
        t0 = time.perf_counter()
        try:
            proc = subprocess.run(cmd, capture_output=True, timeout=max(self.time_limit, 600.0))
        except subprocess.TimeoutExpired:
            res.wall = time.perf_counter() - t0
            res.status = "timeout"
            res.notes.append(f"`{' '.join(cmd[2:4])}` still running after {res.wall:.0f} s")
            self.results.append(res)
            return
        res.wall = time.perf_counter() - t0
        res.latencies.append(res.wall)
        res.count = 1
        progress = [line for line in proc.stderr.decode(errors="replace").splitlines() if line.strip()]
        res.notes.append(f"{len(body) // 1024} KiB; MKCALENDAR -> {made}; `safehold import USER FILE "
                         f"--into {path}` exited {proc.returncode} after {res.wall:.1f} s (process "
                         f"start included); progress lines: {len(progress)}, last {progress[-1:]}")
        if proc.returncode != 0:
            res.status = "failed"
            res.error(proc.stderr.decode(errors="replace")[-300:])
        else:
            report = json.loads(proc.stdout)
            if report["items"]["created"] != IMPORT_EVENTS:
                res.error(f"import report: {report['items']}")
            self._check_imported(res, path)
        self.results.append(res)

    def _import_put(self, path: str, body: bytes, made: int) -> None:
        outcome: dict[str, int] = {}

        def make(i: int) -> Request:
            return ("PUT", path, {"Content-Type": "text/calendar; charset=utf-8"}, body)

        def check(i: int, r: Answer) -> str | None:
            outcome["status"] = r.status_code
            return None

        # One request cannot be cut short: the time limit is its client timeout.
        res = self.measure(f"import .ics of {IMPORT_EVENTS} events, one PUT", 1, make, check,
                           timeout=self.time_limit)
        status = outcome.get("status")
        res.notes.append(f"{len(body) // 1024} KiB; MKCALENDAR -> {made}; PUT on the collection -> "
                         + (str(status) if status else f"no answer within {self.time_limit:g} s"))
        if res.status != "ok":
            return
        if status is not None and 200 <= status < 300:
            self._check_imported(res, path)
            return
        res.status = "n/a"
        res.errors = 0
        res.error_samples.clear()
        # Not an import, but worth knowing: what the server does with the same file as one object.
        with self.client() as client:
            r = client.put(f"{path}all.ics", content=body,
                           headers={"Content-Type": "text/calendar; charset=utf-8"})
        res.notes.append(f"PUT as one object -> {r.status_code}")

    def _check_imported(self, res: Result, path: str) -> None:
        with self.client() as client:
            r = client.request("PROPFIND", path, headers={"Depth": "1"})
        got = len(_responses(r.content)) if r.status_code == 207 else -1
        if got != IMPORT_EVENTS + 1:
            res.error(f"after import PROPFIND lists {got} responses, expected {IMPORT_EVENTS + 1}")

    def _probe(self, res: Result, stop: threading.Event, write: bool) -> None:
        """GET one stored item (``write``: PUT one vCard) over a connection of its own until
        ``stop``. Any answer counts for the latency; a failed PUT is an error."""
        book = self.server.collections.addressbook
        target = (self.cards_ok or self.events_ok or [self.server.collections.calendar])[0]
        if write:
            target = f"{book}{data.card_uid(10_000_000)}.vcf"  # a card of its own, never listed
        begin = time.perf_counter()
        with self.client(timeout=self.time_limit) as client:
            while not stop.is_set():
                t0 = time.perf_counter()
                try:
                    if write:
                        card = data.vcard(10_000_000).replace(b"FN:Person", b"FN:Probe %d" % res.count)
                        r = client.put(target, content=card,
                                       headers={"Content-Type": "text/vcard; charset=utf-8"})
                        if r.status_code not in (200, 201, 204):
                            res.error(f"PUT {target}: status {r.status_code}")
                    else:
                        client.get(target)
                except TransportError as exc:
                    res.error(f"{'PUT' if write else 'GET'} {target}: {type(exc).__name__}")
                res.latencies.append(time.perf_counter() - t0)
                res.count += 1
                time.sleep(0.01)
        res.wall = time.perf_counter() - begin
        res.notes.append(f"{res.count} {'PUTs' if write else 'GETs'} of {target}, one every 10 ms "
                         "after the previous answer")


def run_imports(server: Server, collection: str, files: list[tuple[str, bytes]]
                ) -> list[int | str]:
    """Run the server's import command on each (file name, bytes) at once, the files
    written beside its data directory (and removed after); per file the number of items
    it created, or the end of its error output."""
    procs = []
    for name, body in files:
        path = server.data_dir.parent / name
        path.write_bytes(body)
        assert server.import_command is not None
        procs.append((path, subprocess.Popen(server.import_command(path, collection),
                                             stdout=subprocess.PIPE, stderr=subprocess.PIPE)))
    results: list[int | str] = []
    for path, proc in procs:
        out, err = proc.communicate()
        path.unlink()
        results.append(err.decode(errors="replace")[-500:] if proc.returncode != 0
                       else int(json.loads(out)["items"]["created"]))
    return results


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
