from __future__ import annotations

from safehold.core.retention import Candidate, to_prune

DAY = 86400.0
NOW = 1_800_000_000.0


def test_recent_versions_are_all_kept() -> None:
    c = [Candidate(i, "p", NOW - 10 * DAY + i, False) for i in range(5)]
    assert to_prune(c, 365, NOW) == []


def test_old_versions_keep_the_last_of_each_day_and_the_head() -> None:
    old = NOW - 400 * DAY
    day_start = old - old % DAY  # midnight UTC
    c = [Candidate(1, "p", day_start + 10, False), Candidate(2, "p", day_start + 20, False),
         Candidate(3, "p", day_start + 30, False),  # last of its day: kept
         Candidate(4, "p", day_start + DAY + 5, False),  # alone on its day: kept
         Candidate(5, "q", day_start + 10, True),  # a head is never pruned
         Candidate(6, "q", day_start + 20, False)]
    assert to_prune(c, 365, NOW) == [1, 2]
