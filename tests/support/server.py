"""A real safehold server process on loopback, for integration and fault tests."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx

PASSWORD = "correct horse battery"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def cli(data_dir: Path, *args: str, stdin: str | None = None,
        env: dict[str, str] | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `safehold` CLI as a user would, in a subprocess."""
    full_env = {**os.environ, **(env or {})}
    proc = subprocess.run([sys.executable, "-m", "safehold", *args, "--data-dir", str(data_dir)],
                          input=stdin, capture_output=True, text=True, env=full_env, timeout=120)
    if check and proc.returncode != 0:
        raise AssertionError(f"safehold {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def run(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    """Run the `safehold` CLI with exactly these arguments (no --data-dir added)."""
    proc = subprocess.run([sys.executable, "-m", "safehold", *args], capture_output=True,
                          text=True, timeout=300, stdin=subprocess.DEVNULL)
    if check and proc.returncode != 0:
        raise AssertionError(f"safehold {' '.join(args)} failed ({proc.returncode}):\n"
                             f"{proc.stdout}\n{proc.stderr}")
    return proc


def add_user(data_dir: Path, name: str, password: str = PASSWORD,
             env: dict[str, str] | None = None) -> None:
    cli(data_dir, "user", "add", name, "--password-stdin", stdin=password + "\n", env=env)


class Server:
    def __init__(self, data_dir: Path, port: int | None = None,
                 env: dict[str, str] | None = None) -> None:
        self.data_dir = data_dir
        self.port = port or free_port()
        # The built-in SLA prober writes to the change log every few seconds; tests that
        # count changes would see its writes, so it is on only where a test asks.
        self.env = {"SAFEHOLD_SLA_PROBE_SECONDS": "0", **(env or {})}
        self.proc: subprocess.Popen[bytes] | None = None
        # How `safehold` is run; a test may run it through a wrapper (faulty_vfs.py).
        self.command = [sys.executable, "-m", "safehold"]
        self.log_path = data_dir.parent / f"server-{self.port}.log"

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> Server:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:  # the child keeps its own copy of the fd
            self.proc = subprocess.Popen(
                [*self.command, "serve", "--data-dir", str(self.data_dir), "--port", str(self.port)],
                stdout=log, stderr=subprocess.STDOUT, env={**os.environ, **self.env})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"server exited with {self.proc.returncode}:\n{self.log()}")
            try:
                if httpx.get(self.url + "/healthz", timeout=1.0).status_code == 200:
                    return self
            except httpx.TransportError:
                pass
            time.sleep(0.05)
        raise RuntimeError(f"server did not start within {timeout}s:\n{self.log()}")

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def kill(self) -> None:
        """SIGKILL: no cleanup, no graceful shutdown."""
        if self.proc and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(timeout=30)

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()

    def client(self, user: str = "alice", password: str = PASSWORD, **kw: object) -> httpx.Client:
        return httpx.Client(base_url=self.url, auth=(user, password), timeout=60.0, **kw)  # type: ignore[arg-type]

    @property
    def database_url(self) -> str:
        return self.env.get("SAFEHOLD_DATABASE_URL") or f"sqlite:///{self.data_dir / 'safehold.db'}"

    def changes(self) -> list[tuple[int, str, str]]:
        """The change log (seq, op, path), read through safehold's own engine."""
        import sqlalchemy as sa

        from safehold.store import engine as engine_mod
        engine = engine_mod.create(self.database_url)
        try:
            with engine.connect() as conn:
                rows = conn.execute(sa.text("SELECT seq, op, path FROM change ORDER BY seq")).all()
            return [(int(r[0]), str(r[1]), str(r[2])) for r in rows]
        finally:
            engine.dispose()

    def rss_kb(self) -> int:
        assert self.proc is not None
        with open(f"/proc/{self.proc.pid}/status") as fh:
            for line in fh:
                if line.startswith("VmHWM:"):
                    return int(line.split()[1])
        return 0
