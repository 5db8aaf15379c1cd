"""A store on a fresh database for store-level tests, and a clock the test moves."""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from safehold.store import engine as engine_mod
from safehold.store.repo import Store


class Clock:
    """Wall-clock time that moves only when the test sets ``now``."""

    def __init__(self, now: float = 1_800_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now


@contextmanager
def fresh_store(database_url: str, tmp_path: Path,
                clock: Callable[[], float] | None = None) -> Iterator[Store]:
    """A Store on ``database_url`` with safehold's schema; the engine disposed after."""
    engine = engine_mod.create(database_url)
    engine_mod.ensure_schema(engine)
    try:
        yield Store(engine, tmp_path / "tmp", clock or time.time)
    finally:
        engine.dispose()
