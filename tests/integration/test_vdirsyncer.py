"""vdirsyncer (PyPI) syncs a calendar and an address book two ways with a local
filesystem storage: creations, edits and deletions on each side, and a conflict."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from tests.support.server import PASSWORD, Server

VDIRSYNCER = Path(sys.executable).parent / "vdirsyncer"


def event(uid: str, summary: str) -> bytes:
    return (f"BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//t//EN\r\nBEGIN:VEVENT\r\nUID:{uid}\r\n"
            f"DTSTAMP:20261101T000000Z\r\nDTSTART:20261201T100000Z\r\nDTEND:20261201T110000Z\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n").encode()


def vcard(uid: str, fn: str) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{fn}\r\nN:{fn};;;;\r\nEND:VCARD\r\n".encode()


KINDS = {
    "calendar": ("caldav", "/dav/calendars/alice/personal/", ".ics", event),
    "addressbook": ("carddav", "/dav/addressbooks/alice/contacts/", ".vcf", vcard),
}


class Vdir:
    def __init__(self, tmp: Path, server: Server, kind: str, resolution: str | None) -> None:
        storage, self.url, self.ext, self.make = KINDS[kind]
        self.local = tmp / "local"
        self.local.mkdir()
        self.config = tmp / "config"
        self.config.write_text(f"""
[general]
status_path = "{tmp / 'status'}"

[pair p]
a = "local"
b = "remote"
collections = null
{f'conflict_resolution = "{resolution}"' if resolution else ''}

[storage local]
type = "filesystem"
path = "{self.local}"
fileext = "{self.ext}"

[storage remote]
type = "{storage}"
url = "{server.url}{self.url}"
username = "alice"
password = "{PASSWORD}"
""")

    def run(self, *args: str, ok: bool = True) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(VDIRSYNCER), "-c", str(self.config), *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=120)
        if ok:
            assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def local_items(self) -> dict[str, bytes]:
        return {p.name: p.read_bytes() for p in self.local.iterdir() if p.suffix == self.ext}


@pytest.mark.parametrize("kind", list(KINDS))
def test_two_way_sync(fresh_server: Server, tmp_path: Path, kind: str) -> None:
    v = Vdir(tmp_path, fresh_server, kind, "a wins")
    with fresh_server.client() as c:
        for uid in ("s1", "s2", "s3"):
            assert c.put(f"{v.url}{uid}{v.ext}", content=v.make(uid, f"server {uid}")).status_code == 201
        v.run("discover")
        v.run("sync")
        local = v.local_items()
        assert len(local) == 3 and any(b"server s1" in b for b in local.values())

        # Local side: create one, edit one, delete one.
        (v.local / f"l1{v.ext}").write_bytes(v.make("l1", "local l1"))
        by_uid = {b.split(b"UID:")[1].split(b"\r\n")[0].decode(): name for name, b in local.items()}
        (v.local / by_uid["s1"]).write_bytes(v.make("s1", "edited locally"))
        (v.local / by_uid["s2"]).unlink()
        v.run("sync")
        r = c.request("PROPFIND", v.url, headers={"Depth": "1"})
        hrefs = [h for h in r.text.split("<D:href>")[2:]]
        assert len(hrefs) == 3  # s1, s3, l1
        bodies = [c.get(h.split("</D:href>")[0]).content for h in hrefs]
        assert any(b"edited locally" in b for b in bodies) and any(b"local l1" in b for b in bodies)
        assert not any(b"UID:s2" in b for b in bodies)

        # Server side: edit one, delete one.
        assert c.put(f"{v.url}s3{v.ext}", content=v.make("s3", "edited on server")).status_code == 204
        s1_href = next(h.split("</D:href>")[0] for h, b in zip(hrefs, bodies, strict=True)
                       if b"UID:s1" in b)
        assert c.delete(s1_href).status_code == 204
        v.run("sync")
        local = v.local_items()
        assert len(local) == 2
        assert any(b"edited on server" in b for b in local.values())
        assert not any(b"UID:s1" in b for b in local.values())

        # Conflict: both sides change s3; "a wins" keeps the local edit on both sides.
        s3_local = next(n for n, b in local.items() if b"UID:s3" in b)
        (v.local / s3_local).write_bytes(v.make("s3", "local side of the conflict"))
        assert c.put(f"{v.url}s3{v.ext}", content=v.make("s3", "server side of the conflict")
                     ).status_code == 204
        v.run("sync")
        assert b"local side of the conflict" in c.get(f"{v.url}s3{v.ext}").content
        assert b"local side of the conflict" in (v.local / s3_local).read_bytes()


def test_conflict_without_policy_changes_nothing(fresh_server: Server, tmp_path: Path) -> None:
    v = Vdir(tmp_path, fresh_server, "addressbook", None)
    with fresh_server.client() as c:
        c.put(f"{v.url}x{v.ext}", content=v.make("x", "original"))
        v.run("discover")
        v.run("sync")
        name = next(iter(v.local_items()))
        (v.local / name).write_bytes(v.make("x", "local edit"))
        c.put(f"{v.url}x{v.ext}", content=v.make("x", "server edit"))
        proc = v.run("sync", ok=False)
        assert proc.returncode != 0 and "conflict" in (proc.stdout + proc.stderr).lower()
        assert b"server edit" in c.get(f"{v.url}x{v.ext}").content
        assert b"local edit" in (v.local / name).read_bytes()
