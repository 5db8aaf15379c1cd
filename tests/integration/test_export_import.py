"""`safehold export` and `safehold import` against running servers (DESIGN promise 10).

alice's account is loaded over HTTP with files (binary, CRLF, empty, large, nested
folders, non-ASCII names, dead properties), calendars (recurring events with overrides,
todos, VTIMEZONEs, the whole client corpus) and address books (vCard 3 and 4, photos),
exported through the CLI, and imported into a FRESH server for a new user: every item
must GET back byte for byte, every collection must have its kind and properties (with
both databases, that is also every SQLite/PostgreSQL crossing). A repeated import must
change nothing. Plain .ics and .vcf imports, conflicts and a damaged archive are checked
with other users of the source server (a server start costs more than a user).
"""

from __future__ import annotations

import hashlib
import json
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import httpx
import pytest
from icalendar import Calendar

from safehold.core.formats.ical import inspect_calendar
from safehold.core.formats.vcard import inspect_card
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from tests.support.server import Server, add_user, cli

CORPUS = Path(__file__).resolve().parents[1] / "corpus"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
BINARY = bytes(range(256)) * 1200 + b"\r\n\x00\r" + hashlib.sha256(b"x").digest() * 99
LARGE = hashlib.sha256(b"large").digest() * (5 * 1024 * 1024 // 32 + 7)  # over the 4 MiB in-memory limit
CRLF_TEXT = b"first line\r\nsecond line\r\n\r\nlast line without a newline"

WEEKLY = b"""BEGIN:VCALENDAR\r
VERSION:2.0\r
PRODID:-//safehold tests//EN\r
BEGIN:VTIMEZONE\r
TZID:Europe/Berlin\r
BEGIN:DAYLIGHT\r
TZOFFSETFROM:+0100\r
TZOFFSETTO:+0200\r
DTSTART:19700329T020000\r
RRULE:FREQ=YEARLY;BYMONTH=3;BYDAY=-1SU\r
END:DAYLIGHT\r
BEGIN:STANDARD\r
TZOFFSETFROM:+0200\r
TZOFFSETTO:+0100\r
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

TODO = (b"BEGIN:VCALENDAR\nVERSION:2.0\nPRODID:-//lf//EN\nBEGIN:VTODO\nUID:todo-1@safehold\n"
        b"DTSTAMP:20261101T000000Z\nDUE:20261110T170000Z\nSUMMARY:File taxes\nEND:VTODO\nEND:VCALENDAR\n")


def card(uid: str, fn: str, version: str = "4.0") -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:{version}\r\nUID:{uid}\r\nFN:{fn}\r\nN:{fn.split()[-1]};"
            f"{fn.split()[0]};;;\r\nEMAIL;TYPE=work:{uid}@example.org\r\nEND:VCARD\r\n").encode()


def _ok(response: httpx.Response, *expected: int) -> None:
    assert response.status_code in expected, (response.request.method, response.request.url,
                                              response.status_code, response.text[:500])


def url(path: str) -> str:
    return quote(path, safe="/@")


def mkcalendar(c: httpx.Client, path: str, name: str, color: str | None, comps: tuple[str, ...]) -> None:
    body = (f'<C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV}" xmlns:A="http://apple.com/ns/ical/">'
            f"<D:set><D:prop><D:displayname>{name}</D:displayname>"
            + (f"<A:calendar-color>{color}</A:calendar-color>" if color else "")
            + "<C:supported-calendar-component-set>"
            + "".join(f'<C:comp name="{comp}"/>' for comp in comps)
            + "</C:supported-calendar-component-set></D:prop></D:set></C:mkcalendar>")
    _ok(c.request("MKCALENDAR", path, content=body.encode()), 201)


def mkaddressbook(c: httpx.Client, path: str, name: str) -> None:
    body = (f'<D:mkcol xmlns:D="DAV:" xmlns:CR="{CARDDAV}"><D:set><D:prop><D:resourcetype>'
            f"<D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{name}</D:displayname>"
            "</D:prop></D:set></D:mkcol>")
    _ok(c.request("MKCOL", path, content=body.encode(), headers={"Content-Type": "application/xml"}), 201)


def proppatch(c: httpx.Client, path: str, props: str) -> None:
    body = (f'<D:propertyupdate xmlns:D="DAV:" xmlns:Z="urn:example:z" xmlns:A="http://apple.com/ns/ical/">'
            f"<D:set><D:prop>{props}</D:prop></D:set></D:propertyupdate>")
    _ok(c.request("PROPPATCH", path, content=body.encode()), 207)


def load_alice(server: Server) -> None:
    with server.client() as c:
        f = "/dav/files/alice"
        for folder in ("docs", "docs/nested", "docs/nested/deeper", "photos", "empty folder"):
            _ok(c.request("MKCOL", url(f"{f}/{folder}/")), 201)
        files = {"docs/report.txt": CRLF_TEXT, "docs/nested/deeper/blob.bin": BINARY,
                 "empty.txt": b"", "Ümlaut & friends.txt": "grüße\n".encode(),
                 "photos/large.raw": LARGE, "docs/notes.ics": b"not really a calendar\n"}
        for name, data in files.items():
            _ok(c.put(url(f"{f}/{name}"), content=data, headers={"Content-Type": "application/octet-stream"}),
                201)
        proppatch(c, f"{f}/docs/report.txt", "<Z:author>Alice &amp; co</Z:author>")
        proppatch(c, f"{f}/docs/", "<Z:colour>blue</Z:colour>")

        cal = "/dav/calendars/alice"
        proppatch(c, f"{cal}/personal/", "<D:displayname>Home</D:displayname>"
                                         "<A:calendar-color>#00AA00FF</A:calendar-color>")
        _ok(c.put(f"{cal}/personal/weekly.ics", content=WEEKLY), 201)
        _ok(c.put(f"{cal}/personal/todo.ics", content=TODO), 201)
        mkcalendar(c, f"{cal}/corpus/", "Client corpus", "#FF8800FF",
                   ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY"))
        for path in sorted((CORPUS / "ical" / "valid").glob("*.ics")):
            _ok(c.put(url(f"{cal}/corpus/{path.name}"), content=path.read_bytes()), 201)
        proppatch(c, f"{cal}/corpus/", "<Z:note>from the corpus</Z:note>")
        mkcalendar(c, f"{cal}/empty/", "Nothing yet", None, ("VTODO",))

        book = "/dav/addressbooks/alice"
        for path in sorted((CORPUS / "vcard" / "valid").glob("*.vcf")):
            _ok(c.put(url(f"{book}/contacts/{path.name}"), content=path.read_bytes()), 201)
        mkaddressbook(c, f"{book}/work/", "Work")
        _ok(c.put(f"{book}/work/ada.vcf", content=card("ada", "Ada Lovelace", "3.0")), 201)
        _ok(c.put(f"{book}/work/grace.vcf", content=card("grace", "Grace Hopper")), 201)


# -- reading an account back ---------------------------------------------------------------


def open_store(server: Server) -> Store:
    return Store(engine_mod.create(server.database_url), server.data_dir / "tmp")


@dataclass(frozen=True)
class Entry:
    kind: str
    props: tuple[tuple[str, str], ...]
    sha256: str | None
    size: int
    content_type: str | None


def account(server: Server, user: str) -> dict[str, Entry]:
    """Every resource of ``user``, keyed by its path with the user name taken out: what
    must be the same after export and import (ETags and times are not)."""
    store = open_store(server)
    try:
        out: dict[str, Entry] = {}
        for home in ("files", "calendars", "addressbooks"):
            for r in store.subtree(f"{home}/{user}"):
                key = "/".join(["USER" if i == 1 else p for i, p in enumerate(r.path.split("/"))])
                out[key] = Entry(r.kind, tuple(sorted(r.props.items())), r.blob_hash, r.size,
                                 r.content_type)
        return out
    finally:
        store.engine.dispose()


def digests(state: dict[str, Entry]) -> dict[str, str]:
    """Per collection: a digest of its members' names, bytes, types and properties."""
    out: dict[str, hashlib._Hash] = {}
    for path in sorted(state):
        entry = state[path]
        parent = path.rsplit("/", 1)[0]
        out.setdefault(parent, hashlib.sha256()).update(
            json.dumps([path, entry.kind, entry.sha256, entry.content_type, entry.props]).encode())
    return {k: v.hexdigest() for k, v in out.items()}


def last_seq(server: Server, via_cli: bool = False) -> int:
    """The server's last change number: as `safehold check --json` prints it, or read
    directly (the CLI costs a process start)."""
    if via_cli:
        return int(json.loads(cli(server.data_dir, "check", "--json", env=server.env).stdout)["last_seq"])
    store = open_store(server)
    try:
        return store.last_seq()
    finally:
        store.engine.dispose()


def run_import(server: Server, user: str, *args: str) -> dict[str, object]:
    proc = cli(server.data_dir, "import", user, *args, "--json", env=server.env)
    report: dict[str, object] = json.loads(proc.stdout)
    return report


# -- fixtures ------------------------------------------------------------------------------


@dataclass(frozen=True)
class Exported:
    server: Server
    archive: Path
    state: dict[str, Entry]
    stderr: str


@pytest.fixture(scope="module")
def exported(server: Server, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Exported]:
    load_alice(server)
    archive = tmp_path_factory.mktemp("export") / "alice.zip"
    proc = cli(server.data_dir, "export", "alice", "-o", str(archive), env=server.env)
    assert "exported alice: 3 calendar(s), 2 address book(s)" in proc.stdout
    yield Exported(server, archive, account(server, "alice"), proc.stderr)


def _with_user(server: Server, name: str) -> Server:
    add_user(server.data_dir, name, env=server.env)
    return server


# -- the archive ---------------------------------------------------------------------------


def test_the_archive_holds_files_merged_calendars_cards_exact_items_and_a_manifest(exported: Exported) -> None:
    items = {k: v for k, v in exported.state.items() if v.kind == "item"}
    assert f"export: {len(items)}/{len(items)} items" in exported.stderr
    with zipfile.ZipFile(exported.archive) as zf:
        manifest = json.loads(zf.read("manifest.json"))
        assert manifest["format"] == 1 and manifest["user"] == "alice"
        assert manifest["safehold_version"] and manifest["exported_at"] and manifest["last_seq"] > 0
        assert len(manifest["items"]) == len(items)
        for entry in manifest["items"]:
            data = zf.read(entry["member"])
            assert hashlib.sha256(data).hexdigest() == entry["sha256"] and len(data) == entry["size"]
            assert entry["etag"] and entry["content_type"]
            assert exported.state[entry["path"][len("/dav/"):].replace("/alice", "/USER", 1)].sha256 \
                == entry["sha256"]
        assert zf.read("files/docs/report.txt") == CRLF_TEXT
        assert zf.read("files/docs/nested/deeper/blob.bin") == BINARY
        assert zf.read("files/photos/large.raw") == LARGE
        assert zf.read("files/empty.txt") == b""
        assert zf.read("files/Ümlaut & friends.txt") == "grüße\n".encode()
        assert "files/empty folder/" in zf.namelist()
        assert zf.read("items/calendars/alice/personal/todo.ics") == TODO
        by_path = {e["path"]: e for e in manifest["items"]}
        author = by_path["/dav/files/alice/docs/report.txt"]["properties"]["{urn:example:z}author"]
        assert ">Alice &amp; co</Z:author>" in author
        kinds = {c["path"]: c for c in manifest["collections"]}
        assert kinds["/dav/calendars/alice/corpus/"]["kind"] == "calendar"
        assert kinds["/dav/addressbooks/alice/work/"]["kind"] == "addressbook"
        assert "Client corpus" in kinds["/dav/calendars/alice/corpus/"]["properties"]["{DAV:}displayname"]

        corpus = zf.read("calendars/corpus.ics")
        parsed = Calendar.from_ical(corpus)
        assert str(parsed["X-WR-CALNAME"]) == "Client corpus"
        tzids = [str(tz["TZID"]) for tz in parsed.walk("VTIMEZONE")]
        assert len(tzids) == len(set(tzids)) > 3
        uids = {str(c["UID"]) for c in parsed.subcomponents if c.name != "VTIMEZONE"}
        assert len(uids) == len(list((CORPUS / "ical" / "valid").glob("*.ics")))
        assert Calendar.from_ical(zf.read("calendars/personal.ics"))["X-WR-CALNAME"] == "Home"
        assert zf.read("calendars/empty.ics").startswith(b"BEGIN:VCALENDAR\r\n")

        cards = zf.read("addressbooks/work.vcf")
        assert cards == card("ada", "Ada Lovelace", "3.0") + card("grace", "Grace Hopper")
        contacts = zf.read("addressbooks/contacts.vcf")
        assert contacts.upper().count(b"BEGIN:VCARD") == len(list((CORPUS / "vcard" / "valid").glob("*.vcf")))


# -- import into a fresh server ------------------------------------------------------------


def test_import_into_a_fresh_server_reproduces_the_account(exported: Exported, fresh_server: Server) -> None:
    target = _with_user(fresh_server, "carol")
    before = last_seq(target)
    dry = run_import(target, "carol", str(exported.archive), "--dry-run")
    assert last_seq(target) == before  # a dry run writes nothing

    report = run_import(target, "carol", str(exported.archive))
    assert report["items"] == dry["items"]
    items = sum(1 for v in exported.state.values() if v.kind == "item")
    assert report["items"] == {"created": items, "identical": 0, "skipped-conflict": 0, "invalid": 0}
    collections = report["collections"]
    assert isinstance(collections, dict)
    assert collections["skipped-conflict"] == collections["invalid"] == 0
    assert collections["updated"] == 1  # personal: the new account's defaults made way for "Home"

    state = account(target, "carol")
    assert state == exported.state
    assert digests(state) == digests(exported.state)
    with exported.server.client() as src, target.client("carol") as dst:
        for key, entry in sorted(exported.state.items()):
            if entry.kind != "item":
                continue
            a = src.get(url("/dav/" + key.replace("USER", "alice", 1)))
            b = dst.get(url("/dav/" + key.replace("USER", "carol", 1)))
            assert a.status_code == b.status_code == 200, key
            assert a.content == b.content, key
            assert a.headers["content-type"] == b.headers["content-type"], key
        r = dst.request("PROPFIND", "/dav/calendars/carol/", headers={"Depth": "1"})
        assert "Client corpus" in r.text and "Nothing yet" in r.text and ">Home<" in r.text

    seq = last_seq(target, via_cli=True)
    again = run_import(target, "carol", str(exported.archive))
    assert again["items"] == {"created": 0, "identical": items, "skipped-conflict": 0, "invalid": 0}
    assert again["collections"] == {"created": 0, "updated": 0, "identical": len(
        [v for v in exported.state.values() if v.kind != "item"]), "skipped-conflict": 0, "invalid": 0}
    assert again["problems"] == []
    assert last_seq(target, via_cli=True) == seq  # nothing was written


def test_plain_ics_and_vcf_import(exported: Exported, tmp_path: Path) -> None:
    target = _with_user(exported.server, "dave")
    with zipfile.ZipFile(exported.archive) as zf:
        ics, vcf = zf.read("calendars/corpus.ics"), zf.read("addressbooks/contacts.vcf")
    (tmp_path / "corpus.ics").write_bytes(ics)
    (tmp_path / "contacts.vcf").write_bytes(vcf)
    with target.client("dave") as c:
        mkcalendar(c, "/dav/calendars/dave/imported/", "Imported", None,
                   ("VEVENT", "VTODO", "VJOURNAL", "VFREEBUSY"))
    report = run_import(target, "dave", str(tmp_path / "corpus.ics"),
                        "--into", "/dav/calendars/dave/imported/")
    originals = {p.name: p.read_bytes() for p in (CORPUS / "ical" / "valid").glob("*.ics")}
    assert report["items"] == {"created": len(originals), "identical": 0, "skipped-conflict": 0, "invalid": 0}
    cards = {p.name: p.read_bytes() for p in (CORPUS / "vcard" / "valid").glob("*.vcf")}
    report = run_import(target, "dave", str(tmp_path / "contacts.vcf"))
    assert report["items"] == {"created": len(cards), "identical": 0, "skipped-conflict": 0, "invalid": 0}

    by_uid = {inspect_calendar(d).uid: inspect_calendar(d) for d in originals.values()}
    store = open_store(target)
    try:
        imported = [r for r in store.children("calendars/dave/imported")]
        assert len(imported) == len(originals)
        for res in imported:
            info = inspect_calendar(store.read_bytes(res))
            before = by_uid[info.uid]
            assert (info.component, info.start, info.end, info.recurring) == \
                (before.component, before.start, before.end, before.recurring)
        stored = {inspect_card(store.read_bytes(r)).uid: store.read_bytes(r)
                  for r in store.children("addressbooks/dave/contacts")}
    finally:
        store.engine.dispose()
    for data in cards.values():  # each card byte for byte, less a BOM and blank lines after END
        exact = data.removeprefix(b"\xef\xbb\xbf")
        got = stored[inspect_card(data).uid]
        assert (exact + b"\r\n").startswith(got) and (exact + b"\r\n")[len(got):].strip() == b""

    seq = last_seq(target)
    again = run_import(target, "dave", str(tmp_path / "contacts.vcf"))
    assert again["items"] == {"created": 0, "identical": len(cards), "skipped-conflict": 0, "invalid": 0}
    assert last_seq(target) == seq


def _event(uid: str, day: int, summary: str = "Imported") -> str:
    return (f"BEGIN:VEVENT\r\nUID:{uid}\r\nDTSTAMP:20261101T000000Z\r\n"
            f"DTSTART:202611{day:02d}T100000Z\r\nDTEND:202611{day:02d}T110000Z\r\n"
            f"SUMMARY:{summary}\r\nEND:VEVENT\r\n")


def test_a_large_ics_goes_in_batches_and_a_conflict_in_one_batch_spares_the_others(
        exported: Exported, tmp_path: Path) -> None:
    """Several write batches (cli/importer.BATCH_ITEMS): an existing UID under another
    name, an identical item and a name taken by other bytes, in the middle of batches,
    are reported one by one; every other event is created with its own change, and
    another user's PUTs go on while the import runs."""
    from safehold.cli.importer import BATCH_ITEMS
    target = _with_user(exported.server, "gina")
    count = max(3 * BATCH_ITEMS + 7, 70)  # the conflicts below are events 60-62
    events = [_event(f"bulk-{i:04d}", 1 + i % 28) for i in range(count)]
    wrap = "BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\n{}END:VCALENDAR\r\n"
    base = "/dav/calendars/gina/personal/"
    with target.client("gina") as c:
        # the UID of event 60 under another name; event 61 exactly; event 62's name, other bytes
        _ok(c.put(f"{base}elsewhere.ics", content=wrap.format(events[60]).encode()), 201)
        _ok(c.put(f"{base}bulk-0061.ics", content=wrap.format(events[61]).encode()), 201)
        _ok(c.put(f"{base}bulk-0062.ics",
                  content=wrap.format(_event("bulk-0062", 3, "Mine")).encode()), 201)
    ics = tmp_path / "bulk.ics"
    ics.write_text(wrap.format("".join(events)), newline="")
    other = _with_user(target, "hank")
    seq = last_seq(target)
    done = threading.Event()
    statuses: list[int] = []

    def writes_of_another_user() -> None:
        with other.client("hank") as c:
            while not done.is_set() or not statuses:
                vcard = f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:h{len(statuses)}\r\nFN:H\r\nEND:VCARD\r\n"
                statuses.append(c.put(f"/dav/addressbooks/hank/contacts/h{len(statuses)}.vcf",
                                      content=vcard.encode()).status_code)
    writer = threading.Thread(target=writes_of_another_user)
    writer.start()
    try:
        report = run_import(target, "gina", str(ics))
    finally:
        done.set()
        writer.join()
    assert statuses and set(statuses) == {201}
    assert report["items"] == {"created": count - 3, "identical": 1, "skipped-conflict": 2, "invalid": 0}
    problems = {p["what"]: (p["outcome"], p["reason"]) for p in report["problems"]}  # type: ignore[union-attr]
    assert problems[f"{base}bulk-0060.ics"][0] == "skipped-conflict"
    assert "elsewhere.ics" in problems[f"{base}bulk-0060.ics"][1]
    assert problems[f"{base}bulk-0062.ics"][0] == "skipped-conflict"
    # one change (one sync-token step) per created item, plus hank's
    assert last_seq(target) == seq + count - 3 + len(statuses)
    with target.client("gina") as c:
        last = count - 1
        r = c.get(f"{base}bulk-{last:04d}.ics")
        _ok(r, 200)
        assert r.content == wrap.format(events[last]).encode()
        assert b"Mine" in c.get(f"{base}bulk-0062.ics").content  # kept, not overwritten
        _ok(c.get(f"{base}bulk-0060.ics"), 404)


def test_conflicts_and_damage_are_reported_and_nothing_is_overwritten(exported: Exported,
                                                                        tmp_path: Path) -> None:
    target = _with_user(exported.server, "erin")
    other_todo = TODO.replace(b"File taxes", b"Something else")
    with target.client("erin") as c:
        _ok(c.put("/dav/files/erin/empty.txt", content=b"mine"), 201)  # same path, other bytes
        _ok(c.put("/dav/calendars/erin/personal/my-todo.ics", content=other_todo), 201)  # same UID
        _ok(c.put("/dav/calendars/erin/personal/weekly.ics", content=WEEKLY), 201)  # identical
    damaged = tmp_path / "damaged.zip"
    with zipfile.ZipFile(exported.archive) as src, zipfile.ZipFile(damaged, "w") as dst:
        for info in src.infolist():
            data = src.read(info)
            if info.filename == "files/docs/report.txt":
                data = data.replace(b"second", b"SECOND")
            dst.writestr(info, data)
    seq = last_seq(target)
    report = run_import(target, "erin", str(damaged))
    assert last_seq(target) > seq
    problems = {p["what"]: (p["outcome"], p["reason"]) for p in report["problems"]}  # type: ignore[union-attr]
    assert problems["/dav/files/erin/empty.txt"][0] == "skipped-conflict"
    assert problems["/dav/calendars/erin/personal/todo.ics"][0] == "skipped-conflict"
    assert "my-todo.ics" in problems["/dav/calendars/erin/personal/todo.ics"][1]
    assert problems["/dav/files/erin/docs/report.txt"] == (
        "invalid", "files/docs/report.txt does not match the manifest's size and sha256: the archive is damaged")
    assert problems["/dav/calendars/erin/personal/"][0] == "skipped-conflict"  # not empty: keeps its name
    counts = report["items"]
    assert isinstance(counts, dict)
    assert counts["identical"] == 1 and counts["skipped-conflict"] == 2 and counts["invalid"] == 1
    with target.client("erin") as c:
        assert c.get("/dav/files/erin/empty.txt").content == b"mine"
        assert c.get("/dav/calendars/erin/personal/my-todo.ics").content == other_todo
        assert c.get("/dav/calendars/erin/personal/todo.ics").status_code == 404
        assert c.get("/dav/files/erin/docs/report.txt").status_code == 404
        assert c.get(url("/dav/files/erin/docs/nested/deeper/blob.bin")).content == BINARY


def test_bad_input_is_refused_with_a_clear_message(exported: Exported, tmp_path: Path) -> None:
    server = exported.server
    missing = cli(server.data_dir, "import", "nobody", str(exported.archive), env=server.env, check=False)
    assert missing.returncode != 0 and "no user named 'nobody'" in missing.stderr
    junk = tmp_path / "junk.txt"
    junk.write_bytes(b"hello")
    r = cli(server.data_dir, "import", "bob", str(junk), env=server.env, check=False)
    assert r.returncode != 0 and "cannot tell what" in r.stderr
    broken = tmp_path / "broken.ics"
    broken.write_bytes(b"BEGIN:VCALENDAR\r\nBEGIN:VEVENT\r\n")
    r = cli(server.data_dir, "import", "bob", str(broken), env=server.env, check=False)
    assert r.returncode != 0 and "never closed" in r.stderr
    newer = tmp_path / "newer.zip"
    with zipfile.ZipFile(newer, "w") as zf:
        zf.writestr("manifest.json", json.dumps({"format": 2}))
    r = cli(server.data_dir, "import", "bob", str(newer), env=server.env, check=False)
    assert r.returncode != 0 and "newer safehold" in r.stderr
    r = cli(server.data_dir, "export", "alice", "-o", str(exported.archive), env=server.env, check=False)
    assert r.returncode != 0 and "--force" in r.stderr
    r = cli(server.data_dir, "import", "bob", str(exported.archive), env=server.env, check=False)
    assert r.returncode == 0 and "items:" in r.stdout  # alice's archive restores into bob's tree
