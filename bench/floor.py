"""The floor of one client's requests on this machine: a hello-world ASGI app under the
same uvicorn + safehold.http.protocol that safehold serves with, storing each PUT's
body with one fsync'd SQLite insert (WAL, synchronous=FULL, APSW), measured with the
bench's client. What no server written this way can beat; see docs/benchmarks.md.

    python bench/floor.py [--n 2000] [--rounds 2]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402
from client import Client  # noqa: E402
from servers import free_port  # noqa: E402

APP = '''
import apsw, sys, uvicorn
from safehold.http import protocol
conn = apsw.Connection(sys.argv[1])
for s in ("pragma journal_mode=wal", "pragma synchronous=full",
          "create table t(path text primary key, body blob)"):
    list(conn.execute(s))

async def app(scope, receive, send):
    if scope["type"] != "http":
        return
    body = b""
    while True:
        m = await receive()
        body += m.get("body", b"")
        if not m.get("more_body"):
            break
    status = 200
    if scope["method"] == "PUT":
        with conn:
            conn.execute("insert or replace into t values(?, ?)", (scope["path"], body))
        status = 201
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"etag", b'"x"'), (b"content-length", b"0")]})
    await send({"type": "http.response.body", "body": b""})

uvicorn.run(app, host="127.0.0.1", port=int(sys.argv[2]), log_level="warning",
            access_log=False, http=protocol.Protocol, ws="none", lifespan="off")
'''


def cpu_seconds(pid: int) -> float:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--n", type=int, default=2000, help="requests per kind and round")
    ap.add_argument("--rounds", type=int, default=2)
    args = ap.parse_args()
    with tempfile.TemporaryDirectory(prefix="safehold-floor-") as tmp:
        port = free_port()
        proc = subprocess.Popen([sys.executable, "-c", APP, str(Path(tmp) / "floor.db"), str(port)])
        try:
            client = Client(f"http://127.0.0.1:{port}", ("bench", "bench"), timeout=30)
            for _ in range(100):
                try:
                    client.get("/")
                    break
                except Exception:
                    time.sleep(0.05)
            print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
            for r in range(args.rounds):
                for kind in ("GET", "PUT"):
                    c0, t0 = cpu_seconds(proc.pid), time.perf_counter()
                    for i in range(args.n):
                        body = data.vcard(i) if kind == "PUT" else None
                        answer = client.request(kind, f"/r{r}/{i}.vcf", {"Content-Type": "text/vcard"}, body)
                        assert answer.status_code in (200, 201), answer.status_code
                    wall = time.perf_counter() - t0
                    print(f"round {r + 1} {kind}: {args.n / wall:,.0f}/s, {wall / args.n * 1000:.2f} ms "
                          f"per request, server CPU {(cpu_seconds(proc.pid) - c0) / args.n * 1000:.2f} ms")
        finally:
            proc.terminate()
            proc.wait()


if __name__ == "__main__":
    main()
