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
import subprocess
import sys
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import servers  # noqa: E402
from workloads import Bench, Result  # noqa: E402

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
    "import_ics": "import of one 5,000-event .ics (single PUT)",
}


@dataclass
class ServerRun:
    name: str
    version: str
    results: list[Result] = field(default_factory=list)
    peak_rss_kib: int = 0
    disk_kib: int = 0
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
    default_servers = [s.strip() for s in args.servers.split(",") if s.strip()]
    sizes = parse_sizes(args.n, default_servers)

    started = datetime.now(UTC)
    probe = fsync_probe()
    print(f"bench: baseline {probe:,.0f} fsync'd SQLite commits/s", file=sys.stderr)
    runs: dict[int, list[ServerRun]] = {}
    for n, names in sizes:
        runs[n] = []
        for name in names:
            runs[n].append(run_server(name, n, args.time_limit))
    command = "python " + " ".join(shlex.quote(a) for a in
                                   [os.path.relpath(__file__, ROOT), *(argv if argv is not None else sys.argv[1:])])
    text = render(runs, started, command, args.time_limit, probe)
    out: Path = args.out
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text + kept_notes(out))
    dump = servers.WORK / f"results-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    dump.parent.mkdir(parents=True, exist_ok=True)
    dump.write_text(json.dumps({str(n): [{"server": r.name, "version": r.version, "failure": r.failure,
                                          "peak_rss_kib": r.peak_rss_kib, "disk_kib": r.disk_kib,
                                          "notes": r.notes, "results": [x.as_dict() for x in r.results]}
                                         for r in rs] for n, rs in runs.items()}, indent=1))
    print(text)
    print(f"bench: wrote {out} and {dump}", file=sys.stderr)
    return 0


# -- running --------------------------------------------------------------------------

def run_server(name: str, n: int, time_limit: float) -> ServerRun:
    print(f"bench: N={n} {name}: starting", file=sys.stderr)
    try:
        server = servers.start(name, servers.WORK / f"n{n}")
    except Exception as exc:  # a server that cannot start is reported, not fatal
        print(f"bench: N={n} {name}: cannot start: {exc}", file=sys.stderr)
        return ServerRun(name, "?", failure=f"cannot start: {exc}")
    run = ServerRun(name, server.version, notes=list(server.setup_notes))
    try:
        bench = Bench(server, n, time_limit)
        for step in bench.steps():
            t0 = time.perf_counter()
            step()
            res = bench.results[-1]
            res.key = step.__name__
            print(f"bench: N={n} {name}: {res.name}: {res.rate:,.1f} ops/s, p50 "
                  f"{res.percentile(50) * 1000:.2f} ms, p99 {res.percentile(99) * 1000:.2f} ms, "
                  f"{res.errors} errors, {res.status} ({time.perf_counter() - t0:.1f} s)", file=sys.stderr)
            for sample in res.error_samples:
                print(f"bench:     error: {sample}", file=sys.stderr)
        run.results = bench.results
        run.peak_rss_kib = server.peak_rss_kib()
        run.disk_kib = server.disk_kib()
        if not server.alive():
            run.failure = f"the server exited (status {server.process.returncode}); see {server.log_path}"
    finally:
        server.stop()
    return run


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

def machine() -> list[str]:
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
    return [f"{os.cpu_count()} CPUs (`nproc`), {cpu}", f"{mem_kib / 1024 / 1024:.1f} GiB memory",
            f"{distro}, Linux {platform.release()}"]


def git_revision() -> str:
    try:
        rev = subprocess.run(["git", "-C", str(ROOT), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(ROOT), "status", "--porcelain", "--untracked-files=no",
                                "--", "src"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {rev}" + (" with uncommitted changes under src/" if dirty else "")


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
    if not usable:
        return "no peer"
    best = max(usable, key=lambda r: r.rate)
    value = mine.rate / best.rate if best.rate else float("inf")
    mark = " †" if mine.status != "ok" or best.status != "ok" or mine.errors or best.errors else ""
    return f"{value:,.2f}×{mark}"


def size_ratio(mine: int, peers: list[int]) -> str:
    usable = [p for p in peers if p > 0]
    if not mine or not usable:
        return "n/a"
    return f"{mine / min(usable):,.2f}× (of smallest)"


def render(runs: dict[int, list[ServerRun]], started: datetime, command: str, time_limit: float,
           probe: float) -> str:
    versions: dict[str, str] = {}
    for rs in runs.values():
        for r in rs:
            if r.version != "?":
                versions.setdefault(r.name, r.version)
    lines = [
        "# Benchmarks",
        "",
        "Generated by `bench/run.py` — do not edit by hand above the *Notes* section; rerun instead.",
        "",
        f"- Date: {started.strftime('%Y-%m-%d %H:%M UTC')}",
        *[f"- Machine: {m}" for m in machine()],
        f"- Python {platform.python_version()} ({sys.executable})",
        f"- safehold {versions.get('safehold', '(not run)')} ({git_revision()}), "
        f"Radicale {versions.get('radicale', '(not run)')}, Xandikos {versions.get('xandikos', '(not run)')}",
        f"- Baseline on this disk: {probe:,.0f} fsync'd SQLite commits/s (WAL, synchronous=FULL, "
        "one 600-byte row per transaction, APSW)",
        f"- Command: `{command}` (time limit {time_limit:g} s per workload and server)",
        "",
        "## How it is measured",
        "",
        "All servers run on this machine on 127.0.0.1, one after the other, each with a fresh data "
        "directory; the client is one `httpx.Client` per workload with keep-alive, sending requests "
        "one at a time. Each cell is **requests/s (p50 / p99 latency in ms)** of one request "
        "(send + full response read, `time.perf_counter`); requests/s is requests ÷ wall time of "
        "the workload, without the client's own checking of answers. The last column is safehold's "
        "rate ÷ the faster peer's (above 1 = safehold faster; † = a timeout or errors on one side). "
        "For memory and disk it is safehold ÷ the smallest peer (below 1 = safehold smaller).",
        "",
        "- Events are spread over 2026 (one hour each); 10% recur weekly (`RRULE:FREQ=WEEKLY;COUNT=10`); "
        "vCards are 3.0 with UID, FN, N, EMAIL, TEL, ORG. Every item has its own UID; PUTs of new items "
        "send `If-None-Match: *`.",
        "- PROPFIND asks for resourcetype, getetag, getcontenttype; sync-collection for getetag "
        "(initial: empty token; incremental: the token from before 1% of the events were rewritten); "
        "calendar-multiget for getetag + calendar-data of 100 random events; calendar-query for getetag "
        "of VEVENTs overlapping March 2026. Collection-wide requests are repeated (count in the details).",
        "- GET picks random events and vCards; DELETE removes 1% of the events.",
        "- Import: MKCALENDAR a new calendar, then one PUT of a 5,000-event .ics onto the collection "
        "URL (Radicale's way of uploading a whole calendar). Where the server does not allow it the cell "
        "is n/a; the details say what it answered, and what it answers to the same file PUT as one object.",
        "- Peak RSS is `VmHWM` from `/proc/PID/status` of the server process at the end of its run; "
        "disk is the allocated size of its data directory (like `du`), also at the end.",
        "- Authentication: safehold checks HTTP Basic (argon2id, then a cached SHA-256 digest); Radicale "
        "uses htpasswd with *plain* encryption (a string compare per request — no cheaper than safehold's "
        "cache); Xandikos runs **without** authentication, because it offers Basic auth only together "
        "with its self-signed TLS (`--htpasswd` needs `--autocert`).",
        "- Durability differs: safehold acknowledges a write after an fsync'd SQLite commit and keeps "
        "every version; Radicale fsyncs each item file (its default); Xandikos commits to a git "
        "repository per collection via dulwich, which fsyncs refs but not object files by default.",
        "",
    ]
    for n, rs in runs.items():
        lines += render_size(n, rs)
    return "\n".join(lines).rstrip() + "\n"


def render_size(n: int, rs: list[ServerRun]) -> list[str]:
    names = [r.name for r in rs]
    lines = [f"## N = {n:,}", ""]
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
    for label, attr in (("peak RSS (MiB)", "peak_rss_kib"), ("data on disk (MiB)", "disk_kib")):
        values = [int(getattr(r, attr)) for r in rs]
        row = [label] + [f"{v / 1024:,.1f}" if v else "—" for v in values]
        if has_safehold:
            mine_v = values[names.index("safehold")]
            row.append(size_ratio(mine_v, [v for name, v in zip(names, values, strict=True)
                                           if name != "safehold"]))
        lines.append("| " + " | ".join(row) + " |")
    lines += ["", f"Details (N = {n:,}):", ""]
    for r in rs:
        if r.failure:
            lines.append(f"- **{r.name}**: {r.failure}")
        for note in r.notes:
            lines.append(f"- {r.name}: {note}")
        for res in r.results:
            extra = list(res.notes) + [f"error: `{e}`" for e in res.error_samples]
            summary = f"{res.count} requests in {res.wall:.2f} s"
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
