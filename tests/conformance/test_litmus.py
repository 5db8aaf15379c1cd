"""litmus (Debian package `litmus`) against the live server: every test of the
basic, copymove, props, locks and http groups must pass."""

from __future__ import annotations

import os
import re
import shutil
import subprocess

import pytest

from tests.support.server import PASSWORD, Server

GROUPS = ["basic", "copymove", "props", "locks", "http"]
SUMMARY = re.compile(r"summary for `(\w+)': of (\d+) tests run: (\d+) passed, (\d+) failed")


@pytest.mark.parametrize("group", GROUPS)
def test_litmus_group(server: Server, group: str) -> None:
    litmus = shutil.which("litmus")
    assert litmus, "litmus is not installed: run ./dev test, which installs it"
    with server.client() as c:
        c.request("MKCOL", f"/dav/files/alice/litmus-{group}/")
    proc = subprocess.run(
        [litmus, f"{server.url}/dav/files/alice/litmus-{group}/", "alice", PASSWORD],
        capture_output=True, text=True, timeout=300, env={**os.environ, "TESTS": group},
        cwd=server.data_dir.parent)
    found = SUMMARY.findall(proc.stdout)
    assert found, f"no litmus summary:\n{proc.stdout}\n{proc.stderr}"
    name, run, passed, failed = found[0]
    assert name == group
    assert int(failed) == 0 and int(passed) == int(run), proc.stdout
    assert "FAIL" not in proc.stdout, proc.stdout
