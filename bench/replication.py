"""Replication benchmarks: lag under a sustained write load, the SQLite -wal file
under the shipper, replica size per change, and restore throughput from a folder and
from an S3 server (rclone serve s3, from the test extra).

    python bench/replication.py [--rate 200] [--seconds 30] [--writers 8] [--distinct 500]
                                [--s3] [--compare-tree DIR]

Starts a real server on 127.0.0.1 with a fresh data directory under
$SAFEHOLD_BENCH_WORK (or bench/.work)/replication/, writes vCards at up to --rate PUT/s
from --writers threads for --seconds (each writer cycles over --distinct paths), and
samples `safehold status --json`-equivalent facts (the replica row and the change log)
every 200 ms: the lag of a change is the time from its commit until the replica row
says it is shipped.

Then restores with `safehold restore` (a subprocess, as an operator runs it) from:
the replica the server shipped while writing ("live", in replica format 2), and two
copies of the same data shipped in one go in this process, one in format 2 and one
in format 1 (every body its own object, as safehold 0.1.0 wrote it); each from the
folder and, with --s3, from rclone serve s3 holding the same objects. Per restore:
wall time, items/s, body MB/s (bytes of the bodies restored / wall time) and replica
MB/s (bytes of the objects read / wall time), once for the command (interpreter start,
schema creation and all) and once for ``restore()`` alone in this process. With
--compare-tree DIR, the format-1 copy is also restored by the safehold of another
source tree (the command only; e.g. `git archive OLD src | tar -x -C DIR`). Prints
JSON and a markdown table. Never part of the test suite."""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
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


def load(srv: Server, rate: float, seconds: float, writers: int, distinct: int
         ) -> tuple[int, int]:
    stop = time.monotonic() + seconds
    ok = [0] * writers
    errors = [0] * writers

    def run(t: int) -> None:
        interval = writers / rate
        nxt = time.monotonic()
        with httpx.Client(base_url=srv.url, auth=("alice", PASSWORD), timeout=30) as c:
            i = 0
            while time.monotonic() < stop:
                r = c.put(f"/dav/addressbooks/alice/contacts/w{t}-{i % distinct}.vcf",
                          content=card(t, i))
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


def restore_speed(url: str, kit: Path, into: Path, env: dict[str, str]) -> dict[str, float]:
    started = time.monotonic()
    proc = subprocess.run([sys.executable, "-m", "safehold", "restore", "--from", url, "--kit",
                           str(kit), "--into", str(into)], capture_output=True, text=True,
                          env={**os.environ, **env}, timeout=3600)
    secs = time.monotonic() - started
    if proc.returncode != 0:
        raise RuntimeError(proc.stdout + proc.stderr)
    # (an older safehold, --compare-tree, does not say what it read)
    m = re.search(r"\((\d+) changes, (\d+) items, (\d+) bodies, (\d+) bytes(?:; read (\d+) "
                  r"objects, (\d+) bytes)?", proc.stdout)
    if m is None:
        raise RuntimeError(f"unexpected restore output: {proc.stdout}")
    changes, items, bodies, body_bytes, objects, read = (int(g or 0) for g in m.groups())
    return {"seconds": round(secs, 2), "changes": changes, "items": items, "bodies": bodies,
            "body_bytes": body_bytes, "objects_read": objects, "bytes_read": read,
            "items_per_s": round(items / secs, 1), "changes_per_s": round(changes / secs, 1),
            "body_mb_per_s": round(body_bytes / secs / 1e6, 3),
            "replica_mb_per_s": round(read / secs / 1e6, 3)}


def restore_inproc(url: str, kit: Path, into: Path, env: dict[str, str]) -> dict[str, float]:
    """The restore alone, in this process (no interpreter start, no schema creation):
    wall time of ``restore()`` into a new SQLite database."""
    from safehold.backup.crypto import read_kit
    from safehold.backup.replica_client import open_replica
    from safehold.backup.restore import restore
    saved = {k: os.environ.get(k) for k in env}
    os.environ.update(env)  # the S3 client reads its credentials there
    into.mkdir(parents=True)
    engine = engine_mod.create(f"sqlite:///{into / 'safehold.db'}")
    try:
        engine_mod.ensure_schema(engine)
        key, _ = read_kit(kit)
        started = time.monotonic()
        report = restore(open_replica(url), key, Store(engine, into / "tmp"))
        secs = time.monotonic() - started
    finally:
        engine.dispose()
        for k, v in saved.items():
            if v is None:
                os.environ.pop(k, None)
            else:
                os.environ[k] = v
    return {"inproc_seconds": round(secs, 2),
            "inproc_items_per_s": round(report.items / secs, 1),
            "inproc_body_mb_per_s": round(report.bytes / secs / 1e6, 3),
            "inproc_replica_mb_per_s": round(report.read_bytes / secs / 1e6, 3)}


def ship_copy(store: Store, key_file: Path, target: Path, fmt: int) -> None:
    """Ship the whole store in one go to a new folder replica, in replica format
    ``fmt`` (1: every body its own object, as safehold 0.1.0 wrote it)."""
    import base64

    from safehold.backup import manifest, segment
    from safehold.backup.crypto import Key
    from safehold.backup.replica_client import open_replica
    from safehold.backup.shipper import Shipper
    key = Key(base64.b64decode(key_file.read_text()))
    saved = segment.FORMAT, segment.INLINE_MAX, manifest.FORMAT
    if fmt == 1:
        segment.FORMAT, segment.INLINE_MAX, manifest.FORMAT = 1, -1, 1
    try:
        out = Shipper(store, key, [open_replica(f"file://{target}")], store.lineage()).ship_all()
    finally:
        segment.FORMAT, segment.INLINE_MAX, manifest.FORMAT = saved
    if any(isinstance(r, str) for r in out.values()):
        raise RuntimeError(f"shipping the format-{fmt} copy failed: {out}")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rate", type=float, default=200.0)
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--writers", type=int, default=8)
    ap.add_argument("--distinct", type=int, default=500, help="paths per writer")
    ap.add_argument("--s3", action="store_true", help="also restore from rclone serve s3")
    ap.add_argument("--compare-tree", type=Path,
                    help="also restore the format-1 copy with the safehold in this source "
                         "tree (e.g. `git archive OLD src | tar -x -C DIR`)")
    args = ap.parse_args()
    work = Path(os.environ.get("SAFEHOLD_BENCH_WORK") or ROOT / "bench" / ".work") / "replication"
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
    ok, errors = load(srv, args.rate, args.seconds, args.writers, args.distinct)
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
    results: dict[str, object] = {
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
    }
    store.engine.dispose()
    store = Store(engine_mod.create(srv.database_url), data / "tmp")
    replicas = {"live": replica_dir}
    for fmt in (2, 1):
        replicas[f"format{fmt}"] = work / f"offsite-format{fmt}"
        ship_copy(store, data / "backup.key", replicas[f"format{fmt}"], fmt)
    restores: dict[str, dict[str, float]] = {}
    s3 = None
    if args.s3:
        from tests.support.s3 import S3Server
        s3 = S3Server()
        for name, folder in replicas.items():
            # The same objects, served over S3; copied before rclone starts, which
            # caches its listings.
            shutil.copytree(folder, s3.bucket_dir / name)
        s3.start()
    try:
        for name, folder in replicas.items():
            size, count = du(folder)
            sources = [("folder", f"file://{folder}", {})]
            if s3 is not None:
                sources.append(("s3", s3.url(name), s3.env()))
            for where, src, env in sources:
                r = restore_speed(src, kit, work / f"restored-{name}-{where}", env)
                r.update(restore_inproc(src, kit, work / f"inproc-{name}-{where}", env))
                r.update(replica_bytes=size, replica_objects=count,
                         load=round(os.getloadavg()[0], 2))
                restores[f"{name} from {where}"] = r
                if args.compare_tree and name == "format1":
                    # The same replica, restored by another safehold source tree.
                    old = restore_speed(src, kit, work / f"restored-{name}-{where}-old",
                                        {**env, "PYTHONPATH": str(args.compare_tree / "src")})
                    old.update(replica_bytes=size, replica_objects=count,
                               load=round(os.getloadavg()[0], 2))
                    restores[f"{name} from {where}, {args.compare_tree}"] = old
    finally:
        if s3 is not None:
            s3.stop()
    results["restores"] = restores
    store.engine.dispose()
    (work / "results.json").write_text(json.dumps(results, indent=1))
    print(json.dumps(results, indent=1))
    print("\n| restore | replica | `safehold restore` s | items/s | body MB/s | replica MB/s "
          "| restore() s | items/s | body MB/s | replica MB/s | load |")
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for name, r in restores.items():
        print(f"| {name} | {r['replica_objects']} objects, {r['replica_bytes'] / 1e6:.2f} MB "
              f"| {r['seconds']} | {r['items_per_s']} | {r['body_mb_per_s']} "
              f"| {r['replica_mb_per_s']} | {r.get('inproc_seconds', '')} "
              f"| {r.get('inproc_items_per_s', '')} | {r.get('inproc_body_mb_per_s', '')} "
              f"| {r.get('inproc_replica_mb_per_s', '')} | {r['load']} |")


if __name__ == "__main__":
    main()
