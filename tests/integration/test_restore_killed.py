"""A whole-server restore killed outright (SIGKILL: it cannot undo itself) leaves its
target marked unfinished (store/unfinished.py): the server will not start on it and
no command opens it, because a partial listing would make devices delete what it lacks
(DESIGN promise 8); the same restore command then starts over and finishes."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import DATABASES
from tests.integration.test_restore_undo import _replica
from tests.support.server import Server, cli, free_port

# Loaded by the restore's interpreter (PYTHONPATH): SIGKILL as soon as the first segment
# is loaded, i.e. with some of the replica in the target and the rest not.
KILLER = '''
import os, signal
from safehold.backup import restore as _restore
_original = _restore.restore
def restore(*args, progress=None, **kwargs):
    def say(stage, done, total):
        if progress is not None:
            progress(stage, done, total)
        if stage == "segments" and done >= 1:
            os.kill(os.getpid(), signal.SIGKILL)
    return _original(*args, progress=say, **kwargs)
_restore.restore = restore
'''


def _safehold(args: list[str], env: dict[str, str], timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "safehold", *args], capture_output=True, text=True,
                          timeout=timeout, stdin=subprocess.DEVNULL, env={**os.environ, **env})


# The same, killed after its last step but one: the backup key and kit are written, the
# mark not yet cleared.
KILLER_LATE = '''
import os, signal
from safehold.backup import setup as _setup
_original = _setup.init
def init(*args, **kwargs):
    key = _original(*args, **kwargs)
    os.kill(os.getpid(), signal.SIGKILL)
    return key
_setup.init = init
'''


@pytest.mark.parametrize("target", DATABASES)
@pytest.mark.parametrize("killer", [KILLER, KILLER_LATE], ids=["first segment", "after the key"])
def test_a_killed_restore_is_never_served_and_the_same_command_starts_over(
        target: str, killer: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    replica, kit, last = _replica(tmp_path)
    new_dir = tmp_path / "rebuilt"
    command = ["restore", "--from", f"file://{replica}", "--kit", str(kit), "--into", str(new_dir)]
    env: dict[str, str] = {}
    if target == "postgresql":
        url = request.getfixturevalue("postgres").new_database()
        command += ["--database-url", url]
        env = {"SAFEHOLD_DATABASE_URL": url}
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(killer)
    killed = _safehold(command, {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    assert killed.returncode == -9, killed.stderr
    assert "segments: 1/" in killed.stderr
    assert (new_dir / "backup.key").exists() == (killer is KILLER_LATE)

    serve = _safehold(["serve", "--data-dir", str(new_dir), "--port", str(free_port())], env, 60)
    assert serve.returncode != 0
    assert "a restore that did not finish" in serve.stderr and "Traceback" not in serve.stderr
    listed = cli(new_dir, "user", "list", env=env, check=False)
    assert listed.returncode == 1 and "a restore that did not finish" in listed.stderr

    again = _safehold(command, {})
    assert again.returncode == 0, again.stderr
    assert "removed an unfinished restore" in again.stderr
    assert f"restored seq {last}" in again.stdout
    srv = Server(new_dir, env=env).start()
    try:
        st = json.loads(cli(new_dir, "status", "--json", env=env).stdout)
        assert st["last_seq"] == last
        with srv.client("alice") as c:
            r = c.request("PROPFIND", "/dav/addressbooks/alice/contacts/", headers={"Depth": "1"})
            assert r.status_code == 207
            assert all(f"contacts/{i}.vcf<" in r.text for i in range(3)), r.text
    finally:
        srv.stop()
