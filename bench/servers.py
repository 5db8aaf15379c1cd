"""Start, describe and stop the servers under test (safehold, Radicale, Xandikos).

Every server listens on 127.0.0.1 only and gets a fresh data directory. Radicale and
Xandikos are installed from PyPI into their own virtual environments under
bench/.venvs/; safehold is the one importable by the interpreter running the bench.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import venv
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import httpx

from client import Client

BENCH = Path(__file__).resolve().parent
VENVS = BENCH / ".venvs"
# SAFEHOLD_BENCH_WORK: another scratch folder, so that two runs at once do not share one.
WORK = Path(os.environ.get("SAFEHOLD_BENCH_WORK") or BENCH / ".work")
USER = "bench"
PASSWORD = "bench-password-1234"
SERVERS = ("safehold", "radicale", "xandikos")


@dataclass
class Collections:
    """URL paths (ending in /) of what the workloads use on one server."""

    calendar: str
    addressbook: str
    calendar_home: str  # where an extra calendar for the .ics import can be created


@dataclass
class Server:
    name: str
    version: str
    base_url: str
    data_dir: Path
    collections: Collections
    auth: tuple[str, str] | None
    process: subprocess.Popen[bytes]
    log_path: Path
    setup_notes: list[str] = field(default_factory=list)
    # The server's own import command, if it has one: (.ics file, collection URL path) -> argv.
    import_command: Callable[[Path, str], list[str]] | None = None

    # -- measurements -------------------------------------------------------------
    def server_pids(self) -> list[int]:
        """The launched process and its descendants (the actual server may be a child)."""
        return [self.process.pid, *_descendants(self.process.pid)]

    def peak_rss_kib(self, field: str = "VmHWM") -> int:
        """VmHWM (peak resident set; or another /proc status field such as VmRSS) of the
        process that serves. Not of its children: safehold's snapshot, drill and
        retention children are separate processes that come and go (summing them made
        one reading 316 MiB between two of 143)."""
        total = 0
        for pid in self.server_pids()[:1]:
            try:
                for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                    if line.startswith(field + ":"):
                        total += int(line.split()[1])
            except OSError:
                continue
        return total

    def disk_kib(self) -> int:
        """Like `du -sk`: allocated blocks of everything under the data directory."""
        total = 0
        for root, _dirs, files in os.walk(self.data_dir):
            for name in files:
                try:
                    total += os.lstat(os.path.join(root, name)).st_blocks * 512
                except OSError:
                    continue
        return total // 1024

    def alive(self) -> bool:
        return self.process.poll() is None

    def stop(self) -> None:
        """SIGTERM the launched process (and any children it made), then SIGKILL what remains."""
        pids = self.server_pids()
        for pid in pids:
            _signal(pid, signal.SIGTERM)
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            _signal(self.process.pid, signal.SIGKILL)
            self.process.wait(timeout=15)
        for pid in pids[1:]:
            _signal(pid, signal.SIGKILL)


def _signal(pid: int, sig: int) -> None:
    try:
        os.kill(pid, sig)
    except ProcessLookupError:
        pass


def _descendants(pid: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            stat = Path(f"/proc/{entry}/stat").read_text()
        except OSError:
            continue
        ppid = int(stat.rsplit(")", 1)[1].split()[1])
        children.setdefault(ppid, []).append(int(entry))
    out: list[int] = []
    todo = [pid]
    while todo:
        for child in children.get(todo.pop(), []):
            out.append(child)
            todo.append(child)
    return out


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


def fresh_dir(path: Path) -> Path:
    if path.exists():
        shutil.rmtree(path)
    path.mkdir(parents=True)
    return path


# -- virtual environments ---------------------------------------------------------

def ensure_venv(package: str, log: list[str]) -> Path:
    """bench/.venvs/PACKAGE with `pip install PACKAGE`; returns its python."""
    env = VENVS / package
    python = env / "bin" / "python"
    stamp = env / ".installed"
    if not stamp.exists():
        if env.exists():
            shutil.rmtree(env)
        print(f"bench: creating {env} and installing {package} from PyPI", file=sys.stderr)
        venv.EnvBuilder(with_pip=True).create(env)
        subprocess.run([str(python), "-m", "pip", "install", "-q", "--disable-pip-version-check",
                        package], check=True, stdout=subprocess.DEVNULL)
        stamp.touch()
    log.append(f"{package} from {env}")
    return python


def package_version(python: Path | str, dist: str) -> str:
    out = subprocess.run([str(python), "-c",
                          f"import importlib.metadata as m; print(m.version({dist!r}))"],
                         check=True, capture_output=True, text=True)
    return out.stdout.strip()


def git_revision() -> str:
    """The commit of the safehold source tree this bench lives in, as the server starts."""
    root = BENCH.parent
    try:
        rev = subprocess.run(["git", "-C", str(root), "rev-parse", "--short", "HEAD"], capture_output=True,
                             text=True, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(root), "status", "--porcelain", "--untracked-files=no",
                                "--", "src"], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return "unknown revision"
    return f"commit {rev}" + (" + uncommitted changes under src/" if dirty else "")


# -- starting ---------------------------------------------------------------------

def _wait_ready(url: str, proc: subprocess.Popen[bytes], log_path: Path,
                auth: tuple[str, str] | None, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode}; see {log_path}:\n"
                               + log_path.read_text()[-3000:])
        try:
            r = httpx.request("PROPFIND", url, auth=auth, headers={"Depth": "0"}, timeout=5.0)
            if r.status_code < 500:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"server at {url} not ready after {timeout} s; see {log_path}")


def _spawn(cmd: list[str], log_path: Path, env: dict[str, str] | None = None,
           stdin: bytes | None = None) -> subprocess.Popen[bytes]:
    log = log_path.open("ab")
    proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL,
                            env=env, start_new_session=True)
    log.close()
    return proc


MKCALENDAR = b"""<?xml version="1.0" encoding="utf-8"?>
<C:mkcalendar xmlns:D="DAV:" xmlns:C="urn:ietf:params:xml:ns:caldav"><D:set><D:prop>
<D:displayname>%s</D:displayname>
<C:supported-calendar-component-set><C:comp name="VEVENT"/><C:comp name="VTODO"/>
</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>"""

MKADDRESSBOOK = b"""<?xml version="1.0" encoding="utf-8"?>
<D:mkcol xmlns:D="DAV:" xmlns:A="urn:ietf:params:xml:ns:carddav"><D:set><D:prop>
<D:resourcetype><D:collection/><A:addressbook/></D:resourcetype>
<D:displayname>Contacts</D:displayname></D:prop></D:set></D:mkcol>"""


def mkcalendar(client: httpx.Client | Client, path: str, name: str) -> int:
    return client.request("MKCALENDAR", path, content=MKCALENDAR % name.encode(),
                          headers={"Content-Type": "application/xml"}).status_code


def start(name: str, data_root: Path) -> Server:
    starters = {"safehold": _start_safehold, "radicale": _start_radicale, "xandikos": _start_xandikos}
    return starters[name](fresh_dir(data_root / name))


def _start_safehold(root: Path) -> Server:
    data = root / "data"
    log_path = root / "server.log"
    notes = [f"`{sys.executable} -m safehold` (the interpreter running the bench)"]
    subprocess.run([sys.executable, "-m", "safehold", "user", "add", USER, "--password-stdin",
                    "--data-dir", str(data)], input=(PASSWORD + "\n").encode(), check=True,
                   capture_output=True)
    port = free_port()
    proc = _spawn([sys.executable, "-m", "safehold", "serve", "--data-dir", str(data),
                   "--host", "127.0.0.1", "--port", str(port)], log_path)
    base = f"http://127.0.0.1:{port}"
    auth = (USER, PASSWORD)
    _wait_ready(f"{base}/dav/calendars/{USER}/personal/", proc, log_path, auth)
    version = f"{package_version(sys.executable, 'safehold')} ({git_revision()})"

    def import_command(ics: Path, into: str) -> list[str]:
        return [sys.executable, "-m", "safehold", "import", USER, str(ics), "--into", into, "--json",
                "--data-dir", str(data)]
    return Server("safehold", version, base, data,
                  Collections(f"/dav/calendars/{USER}/personal/", f"/dav/addressbooks/{USER}/contacts/",
                              f"/dav/calendars/{USER}/"), auth, proc, log_path, notes,
                  import_command=import_command)


def _start_radicale(root: Path) -> Server:
    notes: list[str] = []
    python = ensure_venv("radicale", notes)
    data = root / "collections"
    log_path = root / "server.log"
    port = free_port()
    htpasswd = root / "users"
    htpasswd.write_text(f"{USER}:{PASSWORD}\n")
    config = root / "config"
    config.write_text(f"""[server]
hosts = 127.0.0.1:{port}

[auth]
type = htpasswd
htpasswd_filename = {htpasswd}
htpasswd_encryption = plain

[rights]
type = owner_only

[storage]
filesystem_folder = {data}

[web]
type = none

[logging]
level = warning
""")
    proc = _spawn([str(python), "-m", "radicale", "--config", str(config)], log_path)
    base = f"http://127.0.0.1:{port}"
    auth = (USER, PASSWORD)
    _wait_ready(f"{base}/{USER}/", proc, log_path, auth)
    cal, book = f"/{USER}/calendar/", f"/{USER}/contacts/"
    with httpx.Client(base_url=base, auth=auth, timeout=60.0) as client:
        client.request("PROPFIND", f"/{USER}/", headers={"Depth": "0"})  # creates the principal
        status = mkcalendar(client, cal, "Calendar")
        if status != 201:
            raise RuntimeError(f"radicale: MKCALENDAR {cal} -> {status}")
        status = client.request("MKCOL", book, content=MKADDRESSBOOK,
                                headers={"Content-Type": "application/xml"}).status_code
        if status != 201:
            raise RuntimeError(f"radicale: MKCOL {book} -> {status}")
    notes.append("auth: htpasswd, plain encryption (one string compare per request)")
    return Server("radicale", package_version(python, "radicale"), base, data,
                  Collections(cal, book, f"/{USER}/"), auth, proc, log_path, notes)


def _start_xandikos(root: Path) -> Server:
    notes: list[str] = []
    python = ensure_venv("xandikos", notes)
    data = root / "data"
    log_path = root / "server.log"
    port = free_port()
    exe = python.parent / "xandikos"
    proc = _spawn([str(exe), "serve", "-d", str(data), "--state-dir", str(root / "state"),
                   "-l", "127.0.0.1", "-p", str(port), "--defaults"], log_path)
    base = f"http://127.0.0.1:{port}"
    _wait_ready(f"{base}/user/calendars/calendar/", proc, log_path, None)
    notes.append("no authentication (xandikos serves Basic auth only together with --autocert TLS)")
    return Server("xandikos", package_version(python, "xandikos"), base, data,
                  Collections("/user/calendars/calendar/", "/user/contacts/addressbook/",
                              "/user/calendars/"), None, proc, log_path, notes)
