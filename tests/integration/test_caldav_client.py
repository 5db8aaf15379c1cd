"""The `caldav` client library (PyPI) drives the live server: discovery from the
server URL alone, calendars, events (recurring with overrides, all-day), todos,
journals, time-range searches with expansion, free-busy, edits, deletes, sync."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import datetime, UTC

import caldav
import httpx
import pytest

from tests.support.server import PASSWORD, Server

UTC = UTC

WEEKLY = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
TZNAME:CEST\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
TZNAME:CET\r
DTSTART:19701025T030000\r
RRULE:FREQ=YEARLY;BYMONTH=10;BYDAY=-1SU\r
END:STANDARD\r
END:VTIMEZONE\r
BEGIN:VEVENT\r
UID:weekly-standup@safehold\r
DTSTAMP:20261101T000000Z\r
DTSTART;TZID=Europe/Berlin:20261102T090000\r
DTEND;TZID=Europe/Berlin:20261102T093000\r
SUMMARY:Standup\r
RRULE:FREQ=WEEKLY;COUNT=6\r
EXDATE;TZID=Europe/Berlin:20261116T090000\r
END:VEVENT\r
BEGIN:VEVENT\r
UID:weekly-standup@safehold\r
DTSTAMP:20261101T000000Z\r
RECURRENCE-ID;TZID=Europe/Berlin:20261123T090000\r
DTSTART;TZID=Europe/Berlin:20261123T140000\r
DTEND;TZID=Europe/Berlin:20261123T143000\r
SUMMARY:Standup (moved)\r
END:VEVENT\r
END:VCALENDAR\r
"""

ALLDAY = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VEVENT\r
UID:holiday@safehold\r
DTSTAMP:20261101T000000Z\r
DTSTART;VALUE=DATE:20261225\r
DTEND;VALUE=DATE:20261226\r
SUMMARY:Holiday\r
END:VEVENT\r
END:VCALENDAR\r
"""

SINGLE = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VEVENT\r
UID:dentist@safehold\r
DTSTAMP:20261101T000000Z\r
DTSTART:20261105T100000Z\r
DTEND:20261105T110000Z\r
SUMMARY:Dentist\r
END:VEVENT\r
END:VCALENDAR\r
"""

TODO = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VTODO\r
UID:todo-1@safehold\r
DTSTAMP:20261101T000000Z\r
DUE:20261110T170000Z\r
SUMMARY:File taxes\r
END:VTODO\r
END:VCALENDAR\r
"""

JOURNAL = """BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VJOURNAL\r
UID:journal-1@safehold\r
DTSTAMP:20261101T000000Z\r
DTSTART;VALUE=DATE:20261101\r
SUMMARY:Notes\r
DESCRIPTION:Started using safehold.\r
END:VJOURNAL\r
END:VCALENDAR\r
"""


@pytest.fixture(scope="module")
def client(server: Server) -> Iterator[caldav.DAVClient]:
    with caldav.DAVClient(url=server.url + "/", username="alice", password=PASSWORD) as c:
        yield c


def test_discovery_from_server_url(client: caldav.DAVClient) -> None:
    principal = client.principal()
    names = [cal.get_display_name() for cal in principal.calendars()]
    assert "Personal" in names


def test_calendar_lifecycle(client: caldav.DAVClient) -> None:
    principal = client.principal()
    cal = principal.make_calendar(name="Work", cal_id="work")
    assert "Work" in [c.get_display_name() for c in principal.calendars()]
    cal.save_event(WEEKLY)
    cal.save_event(ALLDAY)
    cal.save_event(SINGLE)
    cal.save_todo(TODO)
    cal.save_journal(JOURNAL)

    november = cal.search(start=datetime(2026, 11, 1, tzinfo=UTC),
                          end=datetime(2026, 12, 1, tzinfo=UTC), event=True, expand=True)
    summaries = sorted(str(e.icalendar_component["SUMMARY"]) for e in november)
    # 6 weekly occurrences from Nov 2: one EXDATE'd (Nov 16), one moved (Nov 23),
    # Dec 7 is outside the range -> Nov 2, 9, 23 (moved), 30 + dentist.
    assert summaries == ["Dentist", "Standup", "Standup", "Standup", "Standup (moved)"]

    december = cal.search(start=datetime(2026, 12, 1, tzinfo=UTC),
                          end=datetime(2027, 1, 1, tzinfo=UTC), event=True, expand=True)
    assert sorted(str(e.icalendar_component["SUMMARY"]) for e in december) == ["Holiday", "Standup"]

    todos = cal.search(todo=True, include_completed=True)
    assert [str(t.icalendar_component["SUMMARY"]) for t in todos] == ["File taxes"]
    journals = cal.search(journal=True)
    assert [str(j.icalendar_component["SUMMARY"]) for j in journals] == ["Notes"]

    fb = cal.freebusy_request(datetime(2026, 11, 5, tzinfo=UTC), datetime(2026, 11, 6, tzinfo=UTC))
    assert "20261105T100000Z" in fb.data

    dentist = cal.event_by_uid("dentist@safehold")
    dentist.icalendar_component["SUMMARY"] = "Dentist (rescheduled)"
    dentist.save()
    assert "rescheduled" in str(cal.event_by_uid("dentist@safehold").icalendar_component["SUMMARY"])
    dentist.delete()
    with pytest.raises(caldav.lib.error.NotFoundError):
        cal.event_by_uid("dentist@safehold")


def test_sync_tokens(client: caldav.DAVClient) -> None:
    cal = client.principal().make_calendar(name="Sync", cal_id="sync")
    cal.save_event(SINGLE)
    objects = cal.objects_by_sync_token(load_objects=True)
    assert len(list(objects)) == 1
    token = objects.sync_token
    cal.save_event(ALLDAY)
    cal.event_by_uid("dentist@safehold").delete()
    changed = cal.objects_by_sync_token(sync_token=token, load_objects=False)
    assert len(list(changed)) == 2  # one new, one deleted
    assert changed.sync_token != token


def test_preconditions(server: Server) -> None:
    base = "/dav/calendars/alice/personal"
    with server.client() as c:
        r = c.put(f"{base}/bad.ics", content=b"this is not iCalendar",
                  headers={"Content-Type": "text/calendar"})
        assert r.status_code == 403 and "valid-calendar-data" in r.text
        two = SINGLE.replace("END:VCALENDAR", "BEGIN:VTODO\r\nUID:x\r\nDTSTAMP:20261101T000000Z\r\n"
                             "END:VTODO\r\nEND:VCALENDAR")
        r = c.put(f"{base}/two.ics", content=two.encode())
        assert r.status_code == 403 and "valid-calendar-object-resource" in r.text
        r = c.put(f"{base}/journal.ics", content=JOURNAL.encode())  # Personal: events and tasks
        assert r.status_code == 403 and "supported-calendar-component" in r.text
        assert c.put(f"{base}/one.ics", content=SINGLE.encode()).status_code == 201
        r = c.put(f"{base}/again.ics", content=SINGLE.encode())
        assert r.status_code == 409 and "no-uid-conflict" in r.text
        assert f"{base}/one.ics" in r.text
        # The same UID may be replaced at its own URL.
        assert c.put(f"{base}/one.ics", content=SINGLE.encode()).status_code == 204
        assert c.get(f"{base}/one.ics").content == SINGLE.encode()
        for name in ("bad.ics", "two.ics", "journal.ics", "again.ics"):
            assert c.get(f"{base}/{name}").status_code == 404
        r = c.request("MKCALENDAR", "/dav/files/alice/cal/")
        assert r.status_code == 403 and "calendar-collection-location-ok" in r.text


def test_principal_properties(server: Server) -> None:
    body = (b'<?xml version="1.0"?><D:propfind xmlns:D="DAV:" '
            b'xmlns:C="urn:ietf:params:xml:ns:caldav" xmlns:CR="urn:ietf:params:xml:ns:carddav">'
            b"<D:prop><D:current-user-principal/><C:calendar-home-set/>"
            b"<CR:addressbook-home-set/><D:displayname/><D:resourcetype/></D:prop></D:propfind>")
    with server.client() as c:
        r = c.request("PROPFIND", "/dav/", headers={"Depth": "0"}, content=body)
        assert r.status_code == 207 and "/dav/principals/alice/" in r.text
        r = c.request("PROPFIND", "/dav/principals/alice/", headers={"Depth": "0"}, content=body)
        assert "/dav/calendars/alice/" in r.text and "/dav/addressbooks/alice/" in r.text
        assert "principal" in r.text
    with httpx.Client(base_url=server.url, follow_redirects=False) as anon:
        assert anon.request("PROPFIND", "/.well-known/caldav").headers["location"] == "/dav/"
