"""The backup jobs' child processes (backup/child_process.py)."""

from __future__ import annotations

import os

from safehold.backup import child_process


def test_a_backup_child_runs_at_a_lower_cpu_priority_than_the_server() -> None:
    """A snapshot, drill or retention child must not compete with the requests for the
    cores on equal terms: its niceness is the server's plus CHILD_NICENESS (capped at 19)."""
    in_child = child_process._in_child(os.nice, 0)
    assert in_child == min(19, os.nice(0) + child_process.CHILD_NICENESS)
    assert in_child > os.nice(0)
