"""Which points a replica whose first segments lack pruned bodies can rebuild
(backup/restore.py): a point is whole when no item live at it has a missing body as
its content; from the earliest point after which every point is whole on, restores
are accepted."""

from __future__ import annotations

from safehold.backup.restore import _lost, _restores_from, _Row


def test_a_point_is_lost_while_an_items_content_then_is_missing() -> None:
    rows = {1: _Row(1, "a", False, True), 2: _Row(2, "a", False, True),
            3: _Row(3, "b", False, False), 4: _Row(4, "a", False, False),
            5: _Row(5, "c", False, True), 6: _Row(6, "c", True, False)}
    assert _lost(rows, 1) == ["a"]
    assert _lost(rows, 3) == ["a"]
    assert _lost(rows, 4) == []
    assert _lost(rows, 5) == ["c"]
    assert _lost(rows, 6) == []  # c deleted: nothing live lacks its content
    assert _restores_from(rows, 6, snapshot=True) == 6
    assert _restores_from({k: v for k, v in rows.items() if k <= 4}, 4, snapshot=True) == 4


def test_nothing_missing_restores_from_the_start_and_a_snapshot_always_restores() -> None:
    assert _restores_from({1: _Row(1, "a", False, False)}, 1, snapshot=False) == 0
    still = {1: _Row(1, "a", False, True)}
    assert _restores_from(still, 9, snapshot=True) == 9
    assert _restores_from(still, 9, snapshot=False) is None
