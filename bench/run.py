"""Benchmark safehold against Radicale and Xandikos on the same machine, in the same run.

    python bench/run.py [--n 1000] [--n 10000:safehold,xandikos] [--servers safehold,radicale,xandikos]
                        [--time-limit SECONDS] [--out docs/benchmarks.md]

Radicale and Xandikos are installed from PyPI into bench/.venvs/ on first use; safehold is
the one the running interpreter imports. Each server gets a fresh data directory under
bench/.work/ and listens on 127.0.0.1 only. The results are written to --out as markdown
(regenerated; a "## Notes" section at its end is kept) and as JSON under bench/.work/.
Never part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import signal
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from workloads import IMPORT_EVENTS, Bench, Result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent

LABELS = {
    "put_cards": "PUT vCard",
    "put_events": "PUT event (10% recurring)",
    "propfind": "PROPFIND Depth 1 (calendar)",
    "sync_initial": "sync-collection, initial",
    "update": "PUT update of 1% of events",
    "sync_incremental": "sync-collection, incremental after 1% changes",
    "multiget": "calendar-multiget of 100",
    "calendar_query": "calendar-query, one month",
    "get_random": "GET random item",
    "delete": "DELETE 1% of events",
    "import_ics": "import of one 5,000-event .ics (safehold: CLI; peers: one PUT)",
    "import_probe": "another client's GET during that import: slowest (p99, GETs)",
    "import_probe_put": "another client's PUT during that import: slowest (p99, PUTs)",
}


PROBES = ("import_probe", "import_probe_put")

# Workloads whose cost grows with the calendar: not comparable when the calendars differ in size.
COLLECTION_WIDE = {"propfind", "sync_initial", "calendar_query"}


@dataclass
class ServerRun:
    name: str
    version: str
    results: list[Result] = field(default_factory=list)
    peak_rss_kib: int = 0        # before the .ics import
    peak_rss_all_kib: int = 0    # at the end
    disk_kib: int = 0            # before the .ics import
    load: str = ""
    notes: list[str] = field(default_factory=list)
    failure: str | None = None


# -- arguments ----------------------------------------------------------------------

def parse_sizes(values: list[str] | None, default_servers: list[str]) -> list[tuple[int, list[str]]]:
    out = []
    for value in values or ["1000"]:
        n_text, _, names = value.partition(":")
        chosen = [s.strip() for s in names.split(",") if s.strip()] if names else default_servers
        for name in chosen:
            if name not in servers.SERVERS:
                raise SystemExit(f"unknown server {name!r}; choose from {', '.join(servers.SERVERS)}")
        out.append((int(n_text.replace("_", "")), chosen))
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--n", action="append", metavar="N[:SERVERS]",
                        help="items per workload, repeatable (default 1000); N:safehold,xandikos "
                             "runs that size on those servers only")
    parser.add_argument("--servers", default=",".join(servers.SERVERS),
                        help="comma-separated servers (default: all three)")
    parser.add_argument("--time-limit", type=float, default=120.0, metavar="SECONDS",
                        help="per workload and server (default 120)")
    parser.add_argument("--out", type=Path, default=ROOT / "docs" / "benchmarks.md",
                        help="markdown file to (re)write (default docs/benchmarks.md)")
    args = parser.parse_args(argv)
    # Stopped with SIGTERM: unwind, so that the servers this run started are stopped too.
    signal.signal(signal.SIGTERM, lambda _sig, _frame: sys.exit(143))
    default_servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    sizes = parse_sizes(args.n, default_servers)

    started = datetime.now(UTC)
    load_start = os.getloadavg()[0]
    probe = fsync_probe()
    print(f"bench: baseline {probe:,.0f} fsync'd SQLite commits/s", file=sys.stderr)
    runs: dict[int, list[ServerRun]] = {}
    for n, names in sizes:
        runs[n] = run_size(n, names, args.time_limit)
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])])
    text = render(runs, started, command, args.time_limit, probe, load_start)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + kept_notes(out))
    dump = servers.WORK / f"results-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text(json.dumps({str(n): [{"server": r.name, "version": r.version, "failure": r.failure,
                                          "peak_rss_kib": r.peak_rss_kib,
                                          "peak_rss_all_kib": r.peak_rss_all_kib, "disk_kib": r.disk_kib,
                                          "load": r.load,
                                          "notes": r.notes, "results": [x.as_dict() for x in r.results]}
                                         for r in rs] for n, rs in runs.items()}, indent=1))
    print(text)
    print(f"bench: wrote {out} and {dump}", file=sys.stderr)
    return 0


# -- running --------------------------------------------------------------------------

def run_size(n: int, names: list[str], time_limit: float) -> list[ServerRun]:
    """Start every server for this N, then run workload by workload across them.

    Interleaving (workload 1 on each server, then workload 2 on each, ..., with the order
    rotated per workload) keeps the comparison of one workload within a few minutes, so
    that a change in what else the machine is doing hurts no server more than another.
    """
    runs: list[ServerRun] = []
    active: list[tuple[ServerRun, servers.Server, Bench]] = []
    try:
        for name in names:
            print(f"bench: N={n} {name}: starting", file=sys.stderr)
            try:
                server = servers.start(name, servers.WORK / f"n{n}")
            except Exception as exc:  # a server that cannot start is reported, not fatal
                print(f"bench: N={n} {name}: cannot start: {exc}", file=sys.stderr)
                runs.append(ServerRun(name, "?", failure=f"cannot start: {exc}"))
                continue
            run = ServerRun(name, server.version, notes=list(server.setup_notes))
            runs.append(run)
            active.append((run, server, Bench(server, n, time_limit)))
        load_before = os.getloadavg()[0]
        steps = len(active[0][2].steps()) if active else 0
        for index in range(steps):
            shift = index % len(active)
            for run, server, bench in active[shift:] + active[:shift]:
                run_step(n, run, server, bench, index)
        load = f"1-minute load average {load_before:.1f} at the start, {os.getloadavg()[0]:.1f} at the end"
        for run, server, bench in active:
            run.results = bench.results
            run.peak_rss_all_kib = server.peak_rss_kib()
            run.load = load
            if not server.alive():
                run.failure = f"the server exited (status {server.process.returncode}); see {server.log_path}"
    finally:
        for _run, server, _bench in active:
            server.stop()
    return runs


def run_step(n: int, run: ServerRun, server: servers.Server, bench: Bench, index: int) -> None:
    step = bench.steps()[index]
    if step.__name__ == "import_ics":
        run.peak_rss_kib = server.peak_rss_kib()
        run.disk_kib = server.disk_kib()
    load = os.getloadavg()[0]
    t0 = time.perf_counter()
    began = datetime.now(UTC)
    step()
    ended = datetime.now(UTC)
    res = bench.results[-1]
    res.key = step.__name__
    res.load = load
    # Wall-clock times, to place an outlier against the server's log (server.log).
    res.notes.append(f"ran {began:%H:%M:%S.%f}"[:-3] + f" to {ended:%H:%M:%S.%f}"[:-3] + " UTC")
    if res.slowest_at and res.count > 1:
        res.notes.append(f"slowest request ({max(res.latencies) * 1000:.1f} ms) sent at "
                         f"{datetime.fromtimestamp(res.slowest_at, UTC):%H:%M:%S.%f}"[:-3])
    res.notes.append(f"server RSS after it {server.peak_rss_kib('VmRSS') / 1024:,.0f} MiB "
                     f"(peak so far {server.peak_rss_kib() / 1024:,.0f} MiB)")
    print(f"bench: N={n} {run.name}: {res.name}: {res.rate:,.1f} ops/s, p50 "
          f"{res.percentile(50) * 1000:.2f} ms, p99 {res.percentile(99) * 1000:.2f} ms, "
          f"{res.errors} errors, {res.status} ({time.perf_counter() - t0:.1f} s, load {load:.1f})",
          file=sys.stderr)
    for sample in res.error_samples:
        print(f"bench:     error: {sample}", file=sys.stderr)


def fsync_probe(seconds: float = 2.0) -> float:
    """Single-row commits/s of SQLite in WAL mode with synchronous=FULL on this disk (APSW)."""
    import apsw  # safehold's SQLite binding

    path = servers.fresh_dir(servers.WORK / "fsync-probe") / "probe.db"
    db = apsw.Connection(str(path))
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    db.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, body BLOB)")
    payload = os.urandom(600)
    count = 0
    begin = time.perf_counter()
    while time.perf_counter() - begin < seconds:
        db.execute("BEGIN IMMEDIATE")
        db.execute("INSERT INTO t (body) VALUES (?)", (payload,))
        db.execute("COMMIT")
        count += 1
    rate = count / (time.perf_counter() - begin)
    db.close()
    return rate


# -- reporting --------------------------------------------------------------------------

def machine() -> str:
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kib = 0
    for line in Path("/proc/meminfo").read_text().splitlines():
        if line.startswith("MemTotal:"):
            mem_kib = int(line.split()[1])
    debian = Path("/etc/debian_version")
    distro = f"Debian {debian.read_text().strip()}" if debian.exists() else platform.platform()
    return f"{os.cpu_count()} CPUs (`nproc`), {cpu}, {mem_kib / 1024 / 1024:.1f} GiB memory, " \
        f"{distro}, Linux {platform.release()}"


def fmt_rate(rate: float) -> str:
    return f"{rate:,.0f}" if rate >= 100 else f"{rate:,.1f}" if rate >= 1 else f"{rate:.3f}"


def fmt_ms(seconds: float) -> str:
    ms = seconds * 1000
    return f"{ms:,.0f}" if ms >= 100 else f"{ms:.1f}" if ms >= 1 else f"{ms:.2f}"


def cell(res: Result | None) -> str:
    if res is None:
        return "—"
    if res.status == "n/a":
        return "n/a"
    if res.key in PROBES:  # how long the import kept another client waiting
        if not res.latencies:
            return "—"
        return f"{fmt_ms(max(res.latencies))} ms ({fmt_ms(res.percentile(99))} ms, {res.count})"
    if res.key == "import_ics":  # one request: its time says more than 0.04 requests/s
        seconds = res.percentile(50)
        text = f"{seconds:,.1f} s ({IMPORT_EVENTS / seconds:,.0f} events/s)" if seconds else "—"
    else:
        text = f"{fmt_rate(res.rate)} ({fmt_ms(res.percentile(50))} / {fmt_ms(res.percentile(99))})"
    if res.status != "ok":
        text += f" **{res.status}**"
    if res.errors:
        text += f" **{res.errors} err**"
    return text


def ratio(mine: Result | None, peers: list[Result]) -> str:
    usable = [p for p in peers if p.status not in ("n/a",) and p.count]
    if mine is None or mine.status == "n/a" or not mine.count:
        return "n/a"
    if mine.key in PROBES:  # latency: the better peer's worst ÷ safehold's worst
        worst = [max(p.latencies) for p in usable if p.latencies]
        return f"{min(worst) / max(mine.latencies):,.2f}×" if worst and mine.latencies else "n/a"
    if not usable:
        return "no peer"
    best = max(usable, key=lambda r: r.rate)
    value = mine.rate / best.rate if best.rate else float("inf")
    mark = " †" if mine.status != "ok" or best.status != "ok" or mine.errors or best.errors else ""
    if mine.key in COLLECTION_WIDE and any(abs(p.events - mine.events) > 0.05 * max(mine.events, 1)
                                           for p in usable):
        mark += " ‡"
    return f"{value:,.2f}×{mark}"


def size_ratio(mine: int, peers: list[int]) -> str:
    usable = [p for p in peers if p > 0]
    if not mine or not usable:
        return "n/a"
    return f"{mine / min(usable):,.2f}× (of smallest)"


def render(runs: dict[int, list[ServerRun]], started: datetime, command: str, time_limit: float,
           probe: float, load_start: float) -> str:
    versions: dict[str, list[str]] = {}
    for rs in runs.values():
        for r in rs:
            if r.version != "?" and r.version not in versions.setdefault(r.name, []):
                versions[r.name].append(r.version)

    def version(name: str) -> str:
        return " / ".join(versions.get(name, [])) or "(not run)"
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py` — do not edit by hand above the *Notes* section; rerun instead.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        f"- Machine: {machine()}",
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- safehold {version('safehold')}, Radicale {version('radicale')}, Xandikos {version('xandikos')}"
        + (" (safehold changed between the sizes; each size's table names its own)"
           if len(versions.get("safehold", [])) > 1 else ""),
        f"- Baseline on this disk: {probe:,.0f} fsync'd SQLite commits/s (WAL, synchronous=FULL, "
        "one 600-byte row per transaction, APSW)",
        f"- 1-minute load average when the run began: {load_start:.1f} on {os.cpu_count()} CPUs "
        "(anything else running on the machine competes with the servers; per-server values in the details)",
        f"- Command: `{command}` (time limit {time_limit:g} s per workload and server)",
        "",
        "## How it is measured",
        "",
        "All servers run on this machine on 127.0.0.1 at the same time, each with a fresh data "
        "directory, and the workloads are interleaved: the first workload on each server, then the "
        "second on each, and so on (the order rotated per workload), so a change in the machine's "
        "load does not favour one server; the client is one keep-alive HTTP/1.1 connection per workload "
        "(bench/client.py: a socket with TCP_NODELAY, each request written with one send, the answer "
        "parsed by httptools; it spends ~0.05-0.1 ms of the client's CPU per request where the standard "
        "library's `http.client` spent 0.15-0.6 ms and httpx 1.4-2.0 ms, time that is in every server's "
        "round trip; see the Notes), sending requests one at a time, the same "
        "headers to every server. Each cell is **requests/s (p50 / p99 latency in ms)** of one request "
        "(send + full response read, `time.perf_counter`); requests/s is requests ÷ wall time of "
        "the workload, without the client's own checking of answers. The last column is safehold's "
        "rate ÷ the faster peer's (above 1 = safehold faster; † = a timeout or errors on one side; ‡ = the "
        "calendars held different numbers of events because a peer's PUTs hit the time limit, so "
        "a collection-wide request had less to do there — see the details). For memory and disk it is safehold ÷ the smallest peer (below 1 = safehold smaller).",
        "",
        "- Events are spread over 2026 (one hour each); 10% recur weekly (`RRULE:FREQ=WEEKLY;COUNT=10`); "
        "vCards are 3.0 with UID, FN, N, EMAIL, TEL, ORG. Every item has its own UID; PUTs of new items "
        "send `If-None-Match: *`.",
        "- PROPFIND asks for resourcetype, getetag, getcontenttype; sync-collection for getetag "
        "(initial: empty token; incremental: the token from before 1% of the events were rewritten); "
        "calendar-multiget for getetag + calendar-data of 100 random events; calendar-query for getetag "
        "of VEVENTs overlapping March 2026. Collection-wide requests are repeated (count in the details).",
        "- GET picks random events and vCards; DELETE removes 1% of the events.",
        "- When a PUT workload reaches the time limit (N = 100,000), the rest of the N items is "
        "stored unmeasured, so that the later workloads see the whole collections: for safehold by "
        "2 `safehold import` processes at once (a .vcf / .ics of the same bytes, stored under the "
        "same names), for a peer by 4 concurrent PUT clients for at most another time limit. The "
        "details give the time and rate, and how many items a peer got.",
        "- Import: MKCALENDAR a new calendar, then import a 5,000-event .ics into it. safehold: "
        "`safehold import USER FILE --into CALENDAR` (a second process on the same database while "
        "the server runs; it writes in batches of 20 items per transaction); the cell is the "
        "command's wall time including its process start, and events/s. The peers have no import "
        "command: one PUT of the file onto the collection URL (Radicale's way of uploading a whole "
        "calendar); where the server does not allow it the cell is n/a and the details say what it "
        "answered, and what it answers to the same file PUT as one object. While the import runs, "
        "two more clients, each on a connection of its own, send one request every 10 ms after the "
        "previous answer: one GETs a vCard, the other PUTs (rewrites) a vCard of its own — a PUT "
        "waits for the database's single writer. The next two rows give their slowest answer, p99 "
        "and count (same account: Xandikos has no other), and in the last column the better peer's "
        "slowest ÷ safehold's.",
        "- Peak RSS is `VmHWM` from `/proc/PID/status` of the server process, read just before the "
        "import workload and again at the end; disk is the allocated size of its data directory (like "
        "`du`) just before the import, i.e. N vCards + N events after the updates and deletes.",
        "- Authentication: safehold checks HTTP Basic (argon2id, then a cached SHA-256 digest); Radicale "
        "uses htpasswd with *plain* encryption (a string compare per request — no cheaper than safehold's "
        "cache); Xandikos runs **without** authentication, because it offers Basic auth only together "
        "with its self-signed TLS (`--htpasswd` needs `--autocert`).",
        "- Durability differs: safehold acknowledges a write after an fsync'd SQLite commit and keeps "
        "every version; Radicale fsyncs each item file (its default); Xandikos commits to a git "
        "repository per collection via dulwich, which fsyncs refs but not object files by default.",
        "- Otherwise every server runs with its defaults. For safehold that includes background work in "
        "the same process while the workloads run: shipping every change to the default replica folder "
        "`DATA_DIR/replica` (counted in its disk size), a snapshot every 5,000 changes, and a restore "
        "drill ten minutes after start.",
        "",
    ]
    for n, rs in runs.items():
        lines += render_size(n, rs)
    return "\n".join(lines).rstrip() + "\n"


def render_size(n: int, rs: list[ServerRun]) -> list[str]:
    names = [r.name for r in rs]
    lines = [f"## N = {n:,}", ""]
    lines += [f"safehold {r.version}" for r in rs if r.name == "safehold" and r.version != "?"]
    lines += [""] if lines[-1] else []
    head = ["workload", *names]
    has_safehold = "safehold" in names and len(names) > 1
    if has_safehold:
        head.append("safehold ÷ faster peer")
    lines.append("| " + " | ".join(head) + " |")
    lines.append("|" + "---|" * len(head))
    by_key: list[dict[str, Result]] = [{x.key: x for x in r.results} for r in rs]
    for key, label in LABELS.items():
        row = [label] + [cell(m.get(key)) for m in by_key]
        if has_safehold:
            mine = by_key[names.index("safehold")].get(key)
            peers = [m[key] for name, m in zip(names, by_key, strict=True) if name != "safehold" and key in m]
            row.append(ratio(mine, peers))
        lines.append("| " + " | ".join(row) + " |")
    for label, attr in (("peak RSS before the import (MiB)", "peak_rss_kib"),
                        ("peak RSS at the end (MiB)", "peak_rss_all_kib"),
                        ("data on disk before the import (MiB)", "disk_kib")):
        values = [int(getattr(r, attr)) for r in rs]
        row = [label] + [f"{v / 1024:,.1f}" if v else "—" for v in values]
        if has_safehold:
            mine_v = values[names.index("safehold")]
            row.append(size_ratio(mine_v, [v for name, v in zip(names, values, strict=True)
                                           if name != "safehold"]))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Details (N = {n:,}):", ""]
    loads = {r.load for r in rs if r.load}
    if loads:
        lines.append(f"- machine: {loads.pop()} of this size's run")
    for r in rs:
        if r.failure:
            lines.append(f"- **{r.name}**: {r.failure}")
        for note in r.notes:
            lines.append(f"- {r.name}: {note}")
        for res in r.results:
            extra = list(res.notes) + [f"error: `{e}`" for e in res.error_samples]
            summary = (f"{res.count} request{'' if res.count == 1 else 's'} in {res.wall:.2f} s "
                       f"(load {res.load:.1f})")
            lines.append(f"- {r.name} — {res.name}: {summary}" + ("; " + "; ".join(extra) if extra else ""))
    lines.append("")
    return lines


def kept_notes(out: Path) -> str:
    """The hand-written '## Notes' section at the end of the old file, if there is one."""
    if not out.exists():
        return ""
    old = out.read_text().splitlines(keepends=True)
    for i, line in enumerate(old):
        if line.strip().lower() == "## notes":
            return "\n" + "".join(old[i:])
    return ""


if __name__ == "__main__":
    raise SystemExit(main())
