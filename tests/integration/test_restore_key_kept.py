"""A whole-server restore writes the recovery kit's key to the data directory
(backup.key and recovery-kit.json, setup.init). Into a directory that already held
another key -- another server's, the only way to read its replicas -- it used to write
over it: the first attempt, killed outright (SIGKILL), left the key in place, and the
retry that "starts over" replaced it. Now a key that is not the kit's is refused
before anything is written, and stays as it was; the kit's own key (a retry after a
killed restore wrote it, tests/integration/test_restore_killed.py) is accepted."""

from __future__ import annotations

import base64
import os
from pathlib import Path

import pytest

from safehold.backup.crypto import new_key, write_kit
from tests.integration.test_restore_killed import KILLER, _safehold
from tests.integration.test_restore_undo import _replica


@pytest.mark.parametrize("holder", ["backup.key", "recovery-kit.json"])
def test_a_restore_never_writes_over_another_key(holder: str, tmp_path: Path) -> None:
    replica, kit, _ = _replica(tmp_path)
    target = tmp_path / "old-server"
    target.mkdir()
    other = new_key()
    if holder == "backup.key":
        (target / holder).write_text(base64.b64encode(other.secret).decode() + "\n")
    else:
        write_kit(target / holder, other, ["file:///elsewhere"], "l1")
    before = (target / holder).read_bytes()
    command = ["restore", "--from", f"file://{replica}", "--kit", str(kit), "--into", str(target)]
    hook = tmp_path / "hook"
    hook.mkdir()
    (hook / "sitecustomize.py").write_text(KILLER)
    first = _safehold(command, {"PYTHONPATH": f"{hook}{os.pathsep}{os.environ.get('PYTHONPATH', '')}"})
    again = _safehold(command, {})  # what a user does after a killed restore

    assert (target / holder).read_bytes() == before
    for attempt in (first, again):
        assert attempt.returncode == 1, attempt.stderr
        assert f"its {holder} holds" in attempt.stderr and other.fingerprint in attempt.stderr
        assert "Nothing was written" in attempt.stderr and "Traceback" not in attempt.stderr
    assert sorted(p.name for p in target.iterdir()) == [holder]
