"""Peak memory of the serving process as the calendar grows (issue 8: peak RSS under
200 MB at N = 100,000), with the times of the listings that grow with it.

    python bench/rss_scale.py [--sizes 1000,10000,100000] [--keep]

For each size, one after the other: a fresh `safehold serve` on 127.0.0.1 (data under
$SAFEHOLD_BENCH_WORK, or bench/.work, /rss-scale/nN), the bench user, and N events
(bench/data.py, 10% recurring) stored by two `safehold import` processes at once while
the server runs, as bench/run.py fills a calendar. Then over HTTP, with the bench's
own workloads (bench/workloads.py): PROPFIND Depth 1, sync-collection initial,
calendar-multiget of 100 and calendar-query over one month. Prints, per size, the
server's VmHWM (peak resident set of the serve process, from /proc) after the import
and after each workload, each workload's rate and p50, and the highest VmHWM seen of
any child process (the snapshot child of the shipper: a separate process, so not
part of the server's peak). --keep starts the server on the data directory an earlier
run seeded (seeding 100,000 events takes 10-20 minutes). Never part of the test suite.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

import data  # noqa: E402
import servers  # noqa: E402
from sync_scale import wait_idle  # noqa: E402
from workloads import Bench, run_imports  # noqa: E402

IMPORTS = 2  # `safehold import` processes at once


def vm_kib(pid: int, field: str = "VmHWM") -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


class ChildWatch(threading.Thread):
    """The highest VmHWM of any descendant of the server seen, polled every 0.2 s."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid = pid
        self.peak = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.2):
            for child in servers._descendants(self.pid):
                self.peak = max(self.peak, vm_kib(child))


def seed(server: servers.Server, bench: Bench) -> float:
    assert server.import_command is not None
    began = time.perf_counter()
    results = run_imports(server, server.collections.calendar, [
        (f"seed-{k}.ics", data.calendar(bench.events[k::IMPORTS])) for k in range(IMPORTS)])
    created = 0
    for got in results:
        if isinstance(got, str):
            raise SystemExit(f"import failed: {got}")
        created += got
    if created != bench.n:
        raise SystemExit(f"imported {created} events, expected {bench.n}")
    for ev in bench.events:
        href = server.collections.calendar + ev.name
        bench.events_ok.append(href)
        bench.by_href[href] = ev
    return time.perf_counter() - began


def start_again(root: Path) -> servers.Server:
    """A server on the data directory a previous run seeded (--keep)."""
    data = root / "data"
    port = servers.free_port()
    log_path = root / "server.log"
    proc = servers._spawn([sys.executable, "-m", "safehold", "serve", "--data-dir", str(data),
                           "--host", "127.0.0.1", "--port", str(port)], log_path)
    base = f"http://127.0.0.1:{port}"
    auth = (servers.USER, servers.PASSWORD)
    servers._wait_ready(f"{base}/dav/calendars/{servers.USER}/personal/", proc, log_path, auth)
    return servers.Server("safehold", "", base, data, servers.Collections(
        f"/dav/calendars/{servers.USER}/personal/", f"/dav/addressbooks/{servers.USER}/contacts/",
        f"/dav/calendars/{servers.USER}/"), auth, proc, log_path, [])


def run(n: int, keep: bool) -> None:
    root = servers.WORK / "rss-scale" / f"n{n}" / "safehold"
    seeded = root / "seeded"
    again = keep and seeded.exists()
    server = start_again(root) if again else servers.start("safehold", root.parent)
    pid = server.process.pid  # `safehold serve` itself (bench/servers.py spawns it directly)
    watch = ChildWatch(server.process.pid)
    watch.start()
    try:
        bench = Bench(server, n, time_limit=600.0)
        if again:
            for ev in bench.events:
                bench.events_ok.append(server.collections.calendar + ev.name)
                bench.by_href[bench.events_ok[-1]] = ev
            what = "the data directory of an earlier run (--keep)"
        else:
            seconds = seed(server, bench)
            seeded.write_text(str(n))
            what = f"imported in {seconds:.0f} s ({n / seconds:,.0f} events/s)"
        wait_idle([server.process])
        print(f"N = {n:,}: {what}; "
              f"server VmHWM {vm_kib(pid) / 1024:,.1f} MiB, VmRSS {vm_kib(pid, 'VmRSS') / 1024:,.1f} MiB "
              f"(1-minute load {os.getloadavg()[0]:.1f})", flush=True)
        for step in (bench.propfind, bench.sync_initial, bench.multiget, bench.calendar_query):
            step()
            res = bench.results[-1]
            print(f"  {res.name}: {res.rate:,.1f}/s, p50 {res.percentile(50) * 1000:,.1f} ms, "
                  f"{res.errors} errors{' ' + res.error_samples[0] if res.error_samples else ''}; "
                  f"VmHWM {vm_kib(pid) / 1024:,.1f} MiB (load {os.getloadavg()[0]:.1f})", flush=True)
        print(f"  peak of any child process (snapshot, drill): {watch.peak / 1024:,.1f} MiB", flush=True)
    finally:
        watch.stop.set()
        server.stop()


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", default="1000,10000,100000")
    parser.add_argument("--keep", action="store_true",
                        help="reuse the data directory a previous run seeded for a size")
    args = parser.parse_args()
    for n in (int(s) for s in args.sizes.split(",")):
        run(n, args.keep)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
