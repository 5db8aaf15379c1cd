"""HTTP dates (RFC 9110 §5.6.7, IMF-fixdate): "Sun, 06 Nov 1994 08:49:37 GMT".

email.utils.formatdate makes the same string through a datetime, a timetuple and a
second formatting pass: a twentieth of the CPU of a GET of a contact, which sends one
(Last-Modified). Names are fixed English, never the locale's (as formatdate)."""

from __future__ import annotations

import time

_DAYS = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")  # tm_wday: Monday is 0
_MONTHS = ("Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec")


def http_date(ts: float) -> str:
    """The IMF-fixdate of a POSIX timestamp (seconds, fractions dropped)."""
    t = time.gmtime(ts)
    return (f"{_DAYS[t.tm_wday]}, {t.tm_mday:02d} {_MONTHS[t.tm_mon - 1]} {t.tm_year:04d} "
            f"{t.tm_hour:02d}:{t.tm_min:02d}:{t.tm_sec:02d} GMT")
