"""Deterministic test data: vCards and events spread over 2026, 10 % of them recurring."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

YEAR_START = datetime(2026, 1, 1, tzinfo=UTC)
EVENT_LENGTH = timedelta(hours=1)
RECURRENCE_COUNT = 10  # weekly, COUNT=10
QUERY_START = datetime(2026, 3, 1, tzinfo=UTC)  # the one-month calendar-query
QUERY_END = datetime(2026, 4, 1, tzinfo=UTC)
STAMP = "20251201T120000Z"


@dataclass(frozen=True)
class Event:
    uid: str
    start: datetime
    recurring: bool

    @property
    def name(self) -> str:
        return f"{self.uid}.ics"

    def overlaps(self, start: datetime, end: datetime) -> bool:
        count = RECURRENCE_COUNT if self.recurring else 1
        for k in range(count):
            s = self.start + timedelta(weeks=k)
            if s < end and s + EVENT_LENGTH > start:
                return True
        return False


def events(n: int, prefix: str = "ev", seed: int = 2026) -> list[Event]:
    rng = random.Random(f"{seed}-{prefix}-{n}")
    out = []
    for i in range(n):
        day = rng.randrange(365)
        minute = rng.randrange(8 * 60, 18 * 60, 15)
        start = YEAR_START + timedelta(days=day, minutes=minute)
        out.append(Event(f"bench-{prefix}-{i:07d}", start, i % 10 == 0))
    return out


def _fmt(t: datetime) -> str:
    return t.strftime("%Y%m%dT%H%M%SZ")


def vevent(ev: Event, revision: int = 0) -> str:
    lines = [
        "BEGIN:VEVENT",
        f"UID:{ev.uid}",
        f"DTSTAMP:{STAMP}",
        f"DTSTART:{_fmt(ev.start)}",
        f"DTEND:{_fmt(ev.start + EVENT_LENGTH)}",
        f"SUMMARY:Meeting {ev.uid[-7:]}" + (f" (rev {revision})" if revision else ""),
        "LOCATION:Room 4",
        "DESCRIPTION:Agenda: plans\\, numbers and a short discussion of what comes next.",
    ]
    if revision:
        lines.append(f"SEQUENCE:{revision}")
    if ev.recurring:
        lines.append(f"RRULE:FREQ=WEEKLY;COUNT={RECURRENCE_COUNT}")
    lines.append("END:VEVENT")
    return "\r\n".join(lines) + "\r\n"


def calendar(events_: list[Event], revision: int = 0) -> bytes:
    body = "".join(vevent(ev, revision) for ev in events_)
    return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold//bench//EN\r\n" + body
            + "END:VCALENDAR\r\n").encode()


def card_uid(i: int) -> str:
    return f"bench-card-{i:07d}"


def vcard(i: int) -> bytes:
    uid = card_uid(i)
    return ("BEGIN:VCARD\r\nVERSION:3.0\r\n"
            f"UID:{uid}\r\n"
            f"FN:Person {i}\r\n"
            f"N:{i};Person;;;\r\n"
            f"EMAIL;TYPE=INTERNET:person{i}@example.com\r\n"
            f"TEL;TYPE=CELL:+1555{i:07d}\r\n"
            "ORG:Example Ltd.\r\n"
            "END:VCARD\r\n").encode()
