"""Large bodies stream end to end: neither the client nor the server ever holds one
in memory, the bytes come back exactly, identical bodies are stored once.

The body (1 GiB by default; SAFEHOLD_LARGE_FILE_MB=N for N MiB) is generated on
the fly, one MiB at a time, by SHAKE-128 in counter mode: deterministic (a second
upload regenerates the same bytes without keeping the first), incompressible (so
zstd cannot shrink it and the database really has to hold it) and hashed while it
is sent. Run with -s to see the throughput and memory figures.

The module runs its own server so that its peak RSS (VmHWM) reflects only the
work done here; test_peak_rss runs last and covers every test before it. It runs once
per test database; on PostgreSQL the large body is 128 MiB by default
(SAFEHOLD_LARGE_FILE_MB_PG=N), which exercises the same streaming and batching
paths at an eighth of the runtime.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
import sqlalchemy as sa

from tests.conftest import DATABASES
from tests.conftest import _env_for as env_for
from tests.support.server import PASSWORD, Server, add_user

SIZE_MB_FOR = {"sqlite": int(os.environ.get("SAFEHOLD_LARGE_FILE_MB") or 1024),
               "postgresql": int(os.environ.get("SAFEHOLD_LARGE_FILE_MB_PG") or 128)}
MiB = 1 << 20
RSS_LIMIT_KB = 150 * 1024  # 150 MiB
HOME = "/dav/files/alice"
TIMEOUT = httpx.Timeout(900.0, connect=10.0)  # the PUT answers after the store has the body
# The store writes bodies in batches of 16 chunks of 1 MiB: sizes around a batch edge.
BATCH_EDGE_SIZES = {"16MiB-1": 16 * MiB - 1, "16MiB": 16 * MiB, "16MiB+1": 16 * MiB + 1,
                    "32MiB": 32 * MiB}


def _body(tag: bytes, size: int, digest: hashlib._Hash) -> Iterator[bytes]:
    """``size`` incompressible bytes, one MiB per block, hashed into ``digest``."""
    for i, offset in enumerate(range(0, size, MiB)):
        block = hashlib.shake_128(tag + i.to_bytes(8, "big")).digest(min(MiB, size - offset))
        digest.update(block)
        yield block


def _client(server: Server) -> httpx.Client:
    return httpx.Client(base_url=server.url, auth=("alice", PASSWORD), timeout=TIMEOUT)


def _db_bytes(server: Server) -> int:
    """What the database occupies: safehold.db + -wal, or the PostgreSQL database's
    files (pg_database_size counts the TOAST tables the chunks live in)."""
    url = server.env.get("SAFEHOLD_DATABASE_URL")
    if url is None:
        data_dir = server.data_dir
        return sum(p.stat().st_size for p in (data_dir / "safehold.db",
                                              data_dir / "safehold.db-wal") if p.exists())
    engine = sa.create_engine("postgresql+psycopg://" + url.split("://", 1)[1],
                              poolclass=sa.pool.NullPool)
    try:
        with engine.connect() as conn:
            return int(conn.execute(sa.text("SELECT pg_database_size(current_database())")).scalar_one())
    finally:
        engine.dispose()


def _rate(nbytes: int, seconds: float) -> str:
    return f"{nbytes / MiB:.0f} MiB in {seconds:.1f} s = {nbytes / MiB / max(seconds, 1e-9):.1f} MiB/s"


def _download(server: Server, path: str) -> tuple[int, str, float]:
    """GET ``path`` streaming; return (status, sha256, seconds), asserting the length."""
    digest = hashlib.sha256()
    received = 0
    started = time.monotonic()
    with _client(server) as client, client.stream("GET", path) as resp:
        if resp.status_code != 200:
            resp.read()
            raise AssertionError(f"GET {path} answered {resp.status_code}: {resp.text[:300]}")
        for chunk in resp.iter_bytes():
            digest.update(chunk)
            received += len(chunk)
        assert resp.headers.get("content-length") == str(received), \
            f"Content-Length {resp.headers.get('content-length')} but {received} bytes received"
    return received, digest.hexdigest(), time.monotonic() - started


def _vm_kb(pid: int, field: str) -> int:
    with open(f"/proc/{pid}/status") as fh:
        for line in fh:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    return 0


class _Memory(threading.Thread):
    """Samples the server's VmRSS every 20 ms, so that the report can tell the peak
    while streaming from what else sets VmHWM (each argon2 password verification
    briefly takes 64 MiB; the server does one at startup and one per cache miss)."""

    def __init__(self, server: Server) -> None:
        super().__init__(name="rss-sampler")
        assert server.proc is not None
        self.pid = server.proc.pid
        self.hwm_at_start = server.rss_kb()
        with _client(server) as client:  # the first authenticated request: argon2
            client.request("PROPFIND", HOME + "/", headers={"Depth": "0"})
        self.rss_idle = _vm_kb(self.pid, "VmRSS")
        self.rss_peak = self.rss_idle
        self._done = threading.Event()

    def run(self) -> None:
        while not self._done.wait(0.02):
            try:
                self.rss_peak = max(self.rss_peak, _vm_kb(self.pid, "VmRSS"))
            except FileNotFoundError:
                return

    def finish(self) -> None:
        self._done.set()
        self.join()


_MEMORY: dict[int, _Memory] = {}  # server port -> its sampler


@dataclass
class Upload:
    path: str
    sha256: str
    size: int
    seconds: float
    db_before: int  # safehold.db + -wal before the upload
    db_after: int


_SIZE_MB: dict[int, int] = {}  # server port -> the large body's size in MiB


@pytest.fixture(scope="module", params=DATABASES)
def big_server(request: pytest.FixtureRequest,
               tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("large") / "data"
    env = env_for(request.param, request)
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    _SIZE_MB[srv.port] = SIZE_MB_FOR[request.param]
    try:
        memory = _MEMORY[srv.port] = _Memory(srv)
        memory.start()
        try:
            yield srv
        finally:
            memory.finish()
    finally:
        srv.stop()
        shutil.rmtree(data, ignore_errors=True)  # gigabytes; the server log stays next to it


@pytest.fixture(scope="module")
def uploaded(big_server: Server) -> Upload:
    size_mb = _SIZE_MB[big_server.port]
    size = size_mb * MiB
    path = f"{HOME}/big-{size_mb}MiB.bin"
    digest = hashlib.sha256()
    db_before = _db_bytes(big_server)
    started = time.monotonic()
    with _client(big_server) as client:
        # An explicit Content-Length: httpx streams the generator as is (no chunking).
        resp = client.put(path, content=_body(b"large-1", size, digest),
                          headers={"Content-Length": str(size),
                                   "Content-Type": "application/octet-stream"})
    seconds = time.monotonic() - started
    assert resp.status_code == 201, (
        f"PUT of {size} bytes ({size_mb} MiB) answered {resp.status_code}: {resp.text[:300]}\n"
        f"server log:\n{big_server.log()[-3000:]}")
    print(f"\nupload (Content-Length, until the 201): {_rate(size, seconds)}")
    return Upload(path, digest.hexdigest(), size, seconds, db_before, _db_bytes(big_server))


@pytest.mark.parametrize("size", BATCH_EDGE_SIZES.values(), ids=BATCH_EDGE_SIZES.keys())
def test_body_at_a_storage_batch_edge_round_trips(big_server: Server, size: int) -> None:
    path = f"{HOME}/edge-{size}.bin"
    digest = hashlib.sha256()
    with _client(big_server) as client:
        resp = client.put(path, content=_body(b"edge-%d" % size, size, digest),
                          headers={"Content-Length": str(size)})
    assert resp.status_code == 201, (
        f"PUT of {size} bytes ({size / MiB:g} MiB) answered {resp.status_code}: {resp.text[:200]}\n"
        f"server log:\n{big_server.log()[-2500:]}")
    received, sha, _ = _download(big_server, path)
    assert (received, sha) == (size, digest.hexdigest())


def test_large_body_round_trips_streaming(big_server: Server, uploaded: Upload) -> None:
    received, sha, seconds = _download(big_server, uploaded.path)
    print(f"\ndownload (streaming, sha256 on the fly): {_rate(received, seconds)}")
    assert received == uploaded.size
    assert sha == uploaded.sha256, "the downloaded bytes differ from the uploaded ones"


def test_identical_large_body_is_stored_once(big_server: Server, uploaded: Upload) -> None:
    size, size_mb = uploaded.size, uploaded.size // MiB
    grown = uploaded.db_after - uploaded.db_before
    # Otherwise the size comparison below would prove nothing.
    assert grown >= 0.9 * size, (
        f"the first {size_mb} MiB upload grew the database by only {grown / MiB:.1f} MiB: "
        "the body is not stored in the database, or was compressed (it must be incompressible)")

    copy = f"{HOME}/big-{size_mb}MiB-copy.bin"
    digest = hashlib.sha256()
    before = _db_bytes(big_server)
    started = time.monotonic()
    with _client(big_server) as client:
        # No Content-Length this time: the same bytes, sent with chunked transfer coding.
        resp = client.put(copy, content=_body(b"large-1", size, digest))
    seconds = time.monotonic() - started
    assert resp.status_code == 201, f"second PUT answered {resp.status_code}: {resp.text[:300]}"
    assert digest.hexdigest() == uploaded.sha256
    after = _db_bytes(big_server)
    print(f"\nsecond upload of identical bytes (chunked): {_rate(size, seconds)}; "
          f"the database {before / MiB:.1f} -> {after / MiB:.1f} MiB")
    slack = max(8 * MiB, size // 20)
    assert after - before <= slack, (
        f"storing an identical {size_mb} MiB body again grew the database by "
        f"{(after - before) / MiB:.1f} MiB (allowed {slack / MiB:.1f} MiB): it was not deduplicated")

    received, sha, seconds = _download(big_server, copy)
    print(f"download of the copy: {_rate(received, seconds)}")
    assert (received, sha) == (uploaded.size, uploaded.sha256)


def test_peak_rss(big_server: Server, uploaded: Upload) -> None:
    """Runs last: VmHWM is the peak over the server's whole life, so it covers the
    uploads and downloads of every test above."""
    size_mb = uploaded.size // MiB
    peak_kb = big_server.rss_kb()
    m = _MEMORY[big_server.port]
    detail = (f"VmHWM {m.hwm_at_start / 1024:.1f} MiB right after start; VmRSS "
              f"{m.rss_idle / 1024:.1f} MiB idle, at most {m.rss_peak / 1024:.1f} MiB while streaming "
              f"(sampled every 20 ms)")
    print(f"\nserver peak RSS (VmHWM) after streaming {size_mb} MiB bodies: {peak_kb / 1024:.1f} MiB; "
          + detail)
    assert peak_kb < RSS_LIMIT_KB, (
        f"the server's peak RSS is {peak_kb / 1024:.1f} MiB (limit {RSS_LIMIT_KB / 1024:.0f} MiB) "
        f"after streaming {size_mb} MiB bodies; {detail}. A streaming peak well below VmHWM "
        "means the peak came from elsewhere (each argon2 password verification takes 64 MiB)")
