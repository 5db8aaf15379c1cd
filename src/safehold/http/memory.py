"""The serving process's heaps: freed C memory goes back to the OS, and the garbage
collector leaves alone what lives as long as the process.

A server that answers a PROPFIND of 100,000 members, ships segments of thousands of
changes and parses imports allocates large buffers for a moment. glibc raises its
mmap threshold dynamically (up to 32 MiB) after the first large free, so from then on
such buffers come from the heaps of the threads' arenas, and a heap rarely shrinks:
the resident size keeps every peak, in every arena (measured: 160 MiB after 3,000
PUTs, 100 MiB with this module). So, for the ``serve`` process only:

- a fixed mmap threshold of 256 KiB: larger blocks are mmap'd and unmapped on free;
- a periodic ``malloc_trim(0)``, which also returns the free pages inside the heaps.

Neither changes what Python frees, only whether glibc keeps it. Without glibc (musl,
macOS) this does nothing.

And the Python heap: ``freeze`` moves what the server built before serving (modules,
SQLAlchemy tables, Alembic and lxml state: ~95,000 tracked objects that live as long as
the process) out of the garbage collector's sight. A full collection walks every
tracked object (~80 ms for these alone on the 2-core test machine), and one became due
in the middle of the first PROPFIND Depth 1 of a 10,000-member calendar after a start in
every server we logged with ``gc.callbacks``: the members of its pages are young objects
that live long enough to be promoted, and enough promotions make a full collection due.
It cost 131-387 ms of wall time; with the freeze that request's server CPU went from a
median of 216 ms to 105 ms (docs/benchmarks.md, Notes). Frozen objects are still
reference counted and freed when unused; only garbage cycles among them would stay, and
a full collection runs right before the freeze.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import logging
import threading

log = logging.getLogger(__name__)

M_TRIM_THRESHOLD = -1  # <malloc.h>
M_MMAP_THRESHOLD = -3
MMAP_THRESHOLD = 256 * 1024
TRIM_THRESHOLD = 1024 * 1024
TRIM_EVERY = 10.0  # seconds


def _libc() -> ctypes.CDLL | None:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    try:
        libc = ctypes.CDLL(name)
    except OSError:
        return None
    return libc if hasattr(libc, "mallopt") and hasattr(libc, "malloc_trim") else None


def tune() -> bool:
    """Fix the thresholds (call once, early); start trimming in a daemon thread.
    Returns whether glibc took them."""
    libc = _libc()
    if libc is None:
        return False
    ok = bool(libc.mallopt(M_MMAP_THRESHOLD, MMAP_THRESHOLD)) and \
        bool(libc.mallopt(M_TRIM_THRESHOLD, TRIM_THRESHOLD))
    stop = threading.Event()

    def trim() -> None:
        while not stop.wait(TRIM_EVERY):
            libc.malloc_trim(0)
    threading.Thread(target=trim, name="safehold-malloc-trim", daemon=True).start()
    log.debug("malloc thresholds set: %s", ok)
    return ok


def freeze() -> int:
    """Collect, then exempt every object alive now from later collections (call once
    the app is built, before serving). Returns how many objects were frozen."""
    gc.collect()
    gc.freeze()
    return gc.get_freeze_count()
