"""What the measuring client costs: per server (safehold, Radicale, Xandikos), GETs and
new-vCard PUTs sent alternately with an httpx.Client, with one keep-alive connection of
the standard library's http.client (the bench's client until 2026-11-28), and with
bench/client.py's (a socket and httptools); prints the median round's rate of each.
See docs/benchmarks.md.

    python bench/client_cost.py [--gets 300] [--puts 30] [--rounds 3]
"""

from __future__ import annotations

import argparse
import base64
import http.client
import os
import random
import statistics
import sys
import time
from pathlib import Path
from typing import Any

import httpx

BENCH = Path(__file__).resolve().parent
sys.path.insert(0, str(BENCH))

import data  # noqa: E402
from client import Client  # noqa: E402
from servers import WORK, fresh_dir, start  # noqa: E402


class StdlibClient:
    """One keep-alive http.client connection with a precomputed Basic header: what
    bench/client.py was before it wrote to a socket itself."""

    def __init__(self, base_url: str, auth: tuple[str, str] | None, timeout: float) -> None:
        host, _, port = base_url.removeprefix("http://").rstrip("/").partition(":")
        self.conn = http.client.HTTPConnection(host, int(port or 80), timeout=timeout)
        self.headers = {"User-Agent": "safehold-bench"}
        if auth is not None:
            token = base64.b64encode(f"{auth[0]}:{auth[1]}".encode()).decode("ascii")
            self.headers["Authorization"] = f"Basic {token}"

    def request(self, method: str, url: str, headers: dict[str, str] | None = None,
                content: bytes | None = None) -> httpx.Response:
        self.conn.request(method, url, body=content, headers={**self.headers, **(headers or {})})
        resp = self.conn.getresponse()
        body = resp.read()
        if resp.will_close:
            self.conn.close()
        return httpx.Response(resp.status, content=body)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--gets", type=int, default=300)
    ap.add_argument("--puts", type=int, default=30)
    ap.add_argument("--rounds", type=int, default=3)
    args = ap.parse_args()
    print(f"load average (1 min): {os.getloadavg()[0]:.2f}")
    for name in ("safehold", "radicale", "xandikos"):
        srv = start(name, fresh_dir(WORK / f"client-cost-{name}"))
        try:
            book = srv.collections.addressbook
            clients: dict[str, Any] = {
                "httpx": httpx.Client(base_url=srv.base_url, auth=srv.auth, timeout=60),
                "http.client": StdlibClient(srv.base_url, srv.auth, timeout=60),
                "bench client": Client(srv.base_url, srv.auth, timeout=60)}
            hrefs = [f"{book}{data.card_uid(i)}.vcf" for i in range(100)]
            for i, href in enumerate(hrefs):
                clients["bench client"].put(href, data.vcard(i), {"Content-Type": "text/vcard"}).raise_for_status()
            rng, k = random.Random(1), 1000
            rates: dict[str, list[float]] = {}
            for _ in range(args.rounds):
                for label, c in clients.items():
                    t = time.perf_counter()
                    for _ in range(args.gets):
                        assert c.request("GET", rng.choice(hrefs)).status_code == 200
                    rates.setdefault(f"GET {label}", []).append(args.gets / (time.perf_counter() - t))
                    t = time.perf_counter()
                    for _ in range(args.puts):
                        k += 1
                        r = c.request("PUT", f"{book}{data.card_uid(k)}.vcf", content=data.vcard(k),
                                      headers={"Content-Type": "text/vcard", "If-None-Match": "*"})
                        assert r.status_code in (201, 204), r.status_code
                    rates.setdefault(f"PUT {label}", []).append(args.puts / (time.perf_counter() - t))
            print(name, ", ".join(f"{key} {statistics.median(v):,.1f}/s" for key, v in rates.items()),
                  flush=True)
        finally:
            srv.stop()


if __name__ == "__main__":
    main()
