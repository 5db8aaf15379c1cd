"""http/memory.freeze: what is alive when the server starts serving is exempt from
garbage collection; what is made later is collected as before."""

from __future__ import annotations

import gc

from safehold.http import memory


def _tracked(obj: object) -> bool:
    return any(o is obj for o in gc.get_objects())


def test_freeze_exempts_what_is_alive_and_nothing_made_later() -> None:
    built = [object()]  # a tracked container, alive before the freeze
    assert _tracked(built)
    try:
        frozen = memory.freeze()
        assert frozen > 0 and frozen == gc.get_freeze_count()
        assert not _tracked(built)  # no collection walks it any more
        later = [object()]
        assert _tracked(later)
        cycle: list[object] = []
        cycle.append(cycle)
        del cycle
        assert gc.collect() >= 1  # garbage made after the freeze is still collected
    finally:
        gc.unfreeze()  # the rest of the test session collects as usual
    assert _tracked(built)
