"""Serialized DAV:response elements of members, cached by (href, ETag, properties).

An ETag names one version of a resource (its change-log seq), and a version's fields
never change (promise 2), so the response listing a fixed set of properties that are
computed from those fields alone (getetag, getcontenttype, resourcetype, dead
properties, ...) is the same text every time it is asked for. Clients repeat the same
PROPFIND Depth 1 and sync-collection at every sync; from the second one on, a member
costs a dictionary lookup instead of a dozen string operations.

Bounded by the characters held (``budget``): when full, the oldest quarter goes.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from itertools import islice

Key = tuple[str, str, tuple[str, ...]]  # href, ETag, requested property names

# Measured with tracemalloc: an entry of ~250 characters (a sync-collection member with
# getetag) costs ~500 bytes with its key and dictionary slot, so a full cache holds
# about 8 MiB: the 10,000 members of one collection for PROPFIND (resourcetype, getetag,
# getcontenttype: ~290 characters each) or for sync-collection, not both at once.
BUDGET = 4_000_000


class FragmentCache:
    def __init__(self, budget: int = BUDGET) -> None:
        self.budget = budget
        self.chars = 0
        self._items: dict[Key, str] = {}
        self._lock = threading.Lock()
        # The dictionary's own get, not a method around it (one dict lookup: atomic
        # under the GIL): a multiget of 100 cached members spent a tenth of its time in
        # that method's frames. ``_items`` is never replaced, only emptied.
        self.get: Callable[[Key], str | None] = self._items.get

    def put(self, key: Key, text: str) -> None:
        if len(text) * 8 > self.budget:
            return  # never let one entry push out an eighth of the cache
        with self._lock:
            old = self._items.get(key)
            if old is not None:
                return
            if self.chars + len(text) > self.budget:
                self._evict()
            self._items[key] = text
            self.chars += len(text)

    def _evict(self) -> None:
        """Drop the oldest quarter (insertion order), under the lock."""
        for key in list(islice(self._items, max(1, len(self._items) // 4))):
            self.chars -= len(self._items.pop(key))

    def clear(self) -> None:
        with self._lock:
            self._items.clear()
            self.chars = 0

    def __len__(self) -> int:
        return len(self._items)


members = FragmentCache()
