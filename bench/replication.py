"""Replication benchmarks: lag under a sustained write load, the SQLite -wal file
under the shipper, replica size per change, and restore throughput from a folder and
from an S3 server (rclone serve s3, from the test extra).

    python bench/replication.py [--rate 200] [--seconds 30] [--writers 8] [--s3]

Starts a real server on 127.0.0.1 with a fresh data directory under bench/.work/,
writes vCards at up to --rate PUT/s from --writers threads for --seconds, and samples
`safehold status --json`-equivalent facts (the replica row and the change log) every
200 ms: the lag of a change is the time from its commit until the replica row says it
is shipped. Prints a markdown summary. Never part of the test suite."""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from safehold.store import engine as engine_mod  # noqa: E402
from safehold.store import replication as rep  # noqa: E402
from safehold.store.repo import Store  # noqa: E402
from tests.support.server import PASSWORD, Server, add_user, cli  # noqa: E402


def card(t: int, i: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:w{t}-{i}\r\nFN:Writer {t} card {i}\r\n"
            f"EMAIL:w{t}.{i}@example.org\r\nTEL:+1 555 {i:07d}\r\nEND:VCARD\r\n").encode()


def load(srv: Server, rate: float, seconds: float, writers: int) -> tuple[int, int]:
    stop = time.monotonic() + seconds
    ok = [0] * writers
    errors = [0] * writers

    def run(t: int) -> None:
        interval = writers / rate
        nxt = time.monotonic()
        with httpx.Client(base_url=srv.url, auth=("alice", PASSWORD), timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                r = c.put(f"/dav/addressbooks/alice/contacts/w{t}-{i % 500}.vcf", content=card(t, i))
                if r.status_code in (201, 204):
                    ok[t] += 1
                else:
                    errors[t] += 1
                i += 1
                nxt += interval
                time.sleep(max(0.0, nxt - time.monotonic()))

    threads = [threading.Thread(target=run, args=(t,)) for t in range(writers)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    return sum(ok), sum(errors)


def sample(store: Store, url: str, wal: Path, stop: threading.Event,
           out: list[tuple[float, int, int, int]]) -> None:
    """(time, last committed seq, shipped seq, -wal bytes) every 200 ms."""
    while not stop.is_set():
        rows = {r["url"]: r for r in rep.replica_rows(store)}
        shipped = int(rows[url]["shipped_seq"]) if url in rows else 0
        out.append((time.time(), store.last_seq(), shipped,
                    wal.stat().st_size if wal.exists() else 0))
        stop.wait(0.2)


def lags(store: Store, samples: list[tuple[float, int, int, int]]) -> list[float]:
    """Per change: first sample time at which shipped >= seq, minus its commit time."""
    commits = dict(store._read(lambda c: [(int(r[0]), float(r[1])) for r in c.exec_driver_sql(
        "SELECT seq, at FROM change ORDER BY seq")]))
    out = []
    j = 0
    for seq in sorted(commits):
        while j < len(samples) and samples[j][2] < seq:
            j += 1
        if j == len(samples):
            break
        out.append(max(0.0, samples[j][0] - commits[seq]))
    return out


def pct(values: list[float], p: float) -> float:
    if not values:
        return float("nan")
    s = sorted(values)
    return s[min(len(s) - 1, int(round(p / 100 * (len(s) - 1))))]


def du(path: Path) -> tuple[int, int]:
    files = [f for f in path.rglob("*") if f.is_file()]
    return sum(f.stat().st_size for f in files), len(files)


def restore_speed(url: str, kit: Path, into: Path, env: dict[str, str]) -> tuple[float, str]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "safehold", "restore", "--from", url, "--kit",
                           str(kit), "--into", str(into)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=3600)
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    return time.monotonic() - started, proc.stdout.strip()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--s3", action="store_true", help="also restore from rclone serve s3")
    args = ap.parse_args()
    work = ROOT / "bench" / ".work" / "replication"
    shutil.rmtree(work, ignore_errors=True)
    data = work / "data"
    add_user(data, "alice")
    replica_dir = work / "offsite"
    url = f"file://{replica_dir}"
    kit = work / "kit.json"
    cli(data, "backup", "init", "--replica", url, "--kit", str(kit))
    srv = Server(data).start()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    samples: list[tuple[float, int, int, int]] = []
    stop = threading.Event()
    sampler = threading.Thread(target=sample, args=(store, url, data / "safehold.db-wal", stop,
                                                    samples))
    load_avg = os.getloadavg()[0]
    first_seq = store.last_seq()
    sampler.start()
    started = time.monotonic()
    ok, errors = load(srv, args.rate, args.seconds, args.writers)
    elapsed = time.monotonic() - started
    deadline = time.monotonic() + 120
    while rep.replica_rows(store)[0]["shipped_seq"] < store.last_seq() and time.monotonic() < deadline:
        time.sleep(0.2)
    time.sleep(0.5)
    stop.set()
    sampler.join()
    srv.stop()
    all_lags = [x for x in lags(store, samples)[first_seq:]]
    changes = store.last_seq() - first_seq
    wal_peak = max(s[3] for s in samples)
    wal_end = samples[-1][3]
    rep_bytes, rep_objects = du(replica_dir)
    seg_bytes, seg_count = du(replica_dir / "segments")

    restored = work / "restored-file"
    secs, out = restore_speed(url, kit, restored, {})
    db_bytes = (restored / "safehold.db").stat().st_size
    results = {
        "machine": f"{os.cpu_count()} CPUs, {platform.platform()}, load {load_avg:.1f} at start",
        "rate_target": args.rate, "writers": args.writers, "seconds": round(elapsed, 1),
        "writes_ok": ok, "errors": errors, "writes_per_s": round(ok / elapsed, 1),
        "lag_p50_s": round(pct(all_lags, 50), 3), "lag_p99_s": round(pct(all_lags, 99), 3),
        "lag_max_s": round(max(all_lags, default=float("nan")), 3),
        "wal_peak_mib": round(wal_peak / 2**20, 2), "wal_end_mib": round(wal_end / 2**20, 2),
        "replica_bytes": rep_bytes, "replica_objects": rep_objects,
        "segments": seg_count, "segment_bytes": seg_bytes,
        "replica_bytes_per_change": round(rep_bytes / max(changes, 1)),
        "segment_bytes_per_change": round(seg_bytes / max(changes, 1)),
        "restore_file_s": round(secs, 2),
        "restore_file_mb_s": round(rep_bytes / secs / 1e6, 2),
        "restore_file_changes_s": round(store.last_seq() / secs),
        "restored_db_bytes": db_bytes, "restore_output": out,
    }
    if args.s3:
        from tests.support.s3 import S3Server
        s3 = S3Server().start()
        try:
            s3url = s3.url("bench")
            target = s3.bucket_dir / "bench"
            shutil.copytree(replica_dir, target)  # the same objects, served over S3
            secs, _ = restore_speed(s3url, kit, work / "restored-s3", s3.env())
            results.update(restore_s3_s=round(secs, 2),
                           restore_s3_mb_s=round(rep_bytes / secs / 1e6, 2),
                           restore_s3_changes_s=round(store.last_seq() / secs))
        finally:
            s3.stop()
    store.engine.dispose()
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))


if __name__ == "__main__":
    main()
