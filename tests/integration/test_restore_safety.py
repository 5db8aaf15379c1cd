"""Restores never make a device delete its data (DESIGN promise 8).

For every kind of restore (undelete an item, an earlier version of an item, rollback
of a calendar or an address book to a change number or a time, undelete of a whole
collection, restore-user) the devices that sync the collection -- models of DAVx5,
Thunderbird (calendar and CardDAV), Evolution (tests/support/clients.py) and the real
vdirsyncer -- sync before, during and after, and afterwards:
- no device deleted an item the server has (in particular one just restored);
- every device holds exactly the server's items, byte for byte, with the server's ETags;
- restored items carry NEW ETags (so every device downloads them) and the collection's
  sync token moved forward on the same lineage (so no device's token became invalid:
  none of them reset);
- ``--dry-run`` planned exactly what the restore then did, and changed nothing.
"""

from __future__ import annotations

import itertools
import json
import re
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from threading import Thread
from typing import Any

import httpx
import pytest

from tests.support.clients import (
    DAVx5, ClientModel, Evolution, Fleet, SyncResult, ThunderbirdCalendar, ThunderbirdCardDAV,
    Vdirsyncer, server_state, sync_token, token_seq, uid_of,
)
from tests.support.server import Server, cli

KINDS = ("calendar", "addressbook")
EXT = {"calendar": ".ics", "addressbook": ".vcf"}
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
_names = itertools.count()


def item(kind: str, uid: str, text: str) -> bytes:
    """A calendar event or a vCard; CRLF and non-ASCII so that byte fidelity matters."""
    if kind == "calendar":
        return ("BEGIN:VCALENDAR\r\nVERSION:2.0\r\nPRODID:-//safehold tests//EN\r\nBEGIN:VEVENT\r\n"
                f"UID:{uid}\r\nDTSTAMP:20261101T000000Z\r\nDTSTART:20261201T100000Z\r\n"
                f"DTEND:20261201T110000Z\r\nSUMMARY:Café {text}\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
                ).encode()
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:José {text}\r\nN:{text};José;;;\r\n"
            f"EMAIL;TYPE=work:{uid}@example.org\r\nNOTE:line one\\nline two\r\nEND:VCARD\r\n").encode()


def new_collection(c: httpx.Client, kind: str, label: str, user: str = "alice") -> str:
    """A new calendar (MKCALENDAR) or address book (extended MKCOL), with a displayname."""
    name = f"{label}-{next(_names)}"
    if kind == "calendar":
        href = f"/dav/calendars/{user}/{name}/"
        body = (f'<C:mkcalendar xmlns:D="DAV:" xmlns:C="{CALDAV}"><D:set><D:prop>'
                f"<D:displayname>{name}</D:displayname></D:prop></D:set></C:mkcalendar>")
        r = c.request("MKCALENDAR", href, content=body.encode())
    else:
        href = f"/dav/addressbooks/{user}/{name}/"
        body = (f'<D:mkcol xmlns:D="DAV:" xmlns:CR="{CARDDAV}"><D:set><D:prop><D:resourcetype>'
                f"<D:collection/><CR:addressbook/></D:resourcetype><D:displayname>{name}"
                "</D:displayname></D:prop></D:set></D:mkcol>")
        r = c.request("MKCOL", href, content=body.encode(), headers={"Content-Type": "application/xml"})
    assert r.status_code == 201, (href, r.status_code, r.text)
    return href


def put(c: httpx.Client, href: str, body: bytes, expect: tuple[int, ...] = (201, 204)) -> str:
    r = c.put(href, content=body)
    assert r.status_code in expect, (href, r.status_code, r.text)
    return r.headers["etag"]


def move(c: httpx.Client, server: Server, src: str, dst: str) -> None:
    r = c.request("MOVE", src, headers={"Destination": server.url + dst})
    assert r.status_code in (201, 204), (src, dst, r.status_code, r.text)


def populate(c: httpx.Client, coll: str, kind: str, n: int, prefix: str = "i") -> dict[str, bytes]:
    """``n`` new items in ``coll`` (uploaded four at a time)."""
    bodies = {f"{coll}{prefix}{i}{EXT[kind]}": item(kind, f"{prefix}{i}-{coll}", f"item {i}")
              for i in range(n)}
    with ThreadPoolExecutor(4) as pool:
        list(pool.map(lambda hb: put(c, hb[0], hb[1], (201,)), bodies.items()))
    return bodies


# -- the CLI ----------------------------------------------------------------------------


def run_json(server: Server, *args: str) -> Any:
    return json.loads(cli(server.data_dir, *args, "--json", env=server.env).stdout)


def last_seq_db(server: Server) -> int:
    rows = server.changes()
    return rows[-1][0] if rows else 0


def last_seq_cli(server: Server) -> int:
    return int(run_json(server, "check")["last_seq"])


def dry_run_then_restore(server: Server, watched: dict[str, httpx.Client],
                         *args: str) -> list[dict[str, Any]]:
    """Run the restore with --dry-run (which must change nothing: same last_seq, same
    listings, ETags and bytes in the ``watched`` collections), then for real; the real
    one must do what the dry run said and write one new change per plan. Returns the
    plans as written."""
    seq_before = last_seq_db(server)
    before = {col: server_state(c, col) for col, c in watched.items()}
    planned = run_json(server, *args, "--dry-run")
    assert last_seq_cli(server) == seq_before, "--dry-run wrote a change"
    assert {col: server_state(c, col) for col, c in watched.items()} == before, \
        "--dry-run changed data"
    assert all(p["seq"] is None for p in planned)
    assert sum(len(p["changes"]) for p in planned) > 0, planned

    done = run_json(server, *args)
    assert [p["changes"] for p in done] == [p["changes"] for p in planned]
    seqs = [p["seq"] for p in done if p["changes"]]
    assert seqs and all(s > seq_before for s in seqs), (seq_before, done)
    assert last_seq_db(server) == max(seqs)
    return list(done)


def history(server: Server, user: str, href: str) -> list[dict[str, Any]]:
    return list(run_json(server, "history", user, href))


# -- the assertions ----------------------------------------------------------------------


def assert_token_advanced(before: str, after: str) -> None:
    (lineage0, seq0), (lineage1, seq1) = token_seq(before), token_seq(after)
    assert lineage1 == lineage0, "the restore changed the lineage: every device's token is void"
    assert seq1 > seq0, f"the sync token did not move forward: {before} -> {after}"


def assert_devices_safe(results: list[tuple[ClientModel, SyncResult]],
                        truth: dict[str, tuple[str, bytes]], restored: set[str]) -> None:
    """After the post-restore sync: nothing the server has was deleted on a device, every
    device equals the server, nothing had to reset, and restored items were downloaded."""
    for model, res in results:
        who = f"{model.name} ({model.collection})"
        assert res.outcome == "ok", f"{who} did not sync: {res}"
        assert not res.reset, f"{who} had to reset its sync state after the restore"
        wrongly = sorted(h for h in res.deleted if h in truth)
        assert not wrongly, f"{who} deleted items the server has: {wrongly}"
        assert sorted(model.local) == sorted(truth), f"{who} holds other items than the server"
        for href, (etag, data) in truth.items():
            assert model.local[href][1] == data, f"{who}: other bytes for {href}"
            assert model.local[href][0] == etag, f"{who}: other ETag for {href}"
        missed = sorted(restored - set(res.downloaded))
        assert not missed, f"{who} did not download restored items {missed}"


def sync_all(*fleets: Fleet) -> list[tuple[ClientModel, SyncResult]]:
    return [(m, m.sync()) for f in fleets for m in f]


def initial_sync(truth: dict[str, tuple[str, bytes]], *fleets: Fleet) -> None:
    for model, res in sync_all(*fleets):
        assert res.outcome == "ok", (model.name, res)
        assert {h: d for h, (_, d) in model.local.items()} == {h: d for h, (_, d) in truth.items()}


def assert_new_etags(truth: dict[str, tuple[str, bytes]], hrefs: set[str],
                     seen: dict[str, set[str]]) -> None:
    for href in hrefs:
        assert truth[href][0] not in seen.get(href, set()), f"{href} came back with an old ETag"


# -- one test per restore kind --------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
def test_undelete_item(server: Server, kind: str) -> None:
    with server.client() as c:
        coll = new_collection(c, kind, "undel")
        bodies = populate(c, coll, kind, 5)
        x = f"{coll}i2{EXT[kind]}"
        with Fleet(server.url, coll, kind) as eager, Fleet(server.url, coll, kind) as lagging:
            truth = server_state(c, coll)
            initial_sync(truth, eager, lagging)
            old_etag = truth[x][0]

            assert c.delete(x).status_code == 204
            for model, res in sync_all(eager):  # the deletion reaches some devices first
                assert res.deleted == [x], (model.name, res)
            token = sync_token(c, coll)

            done = dry_run_then_restore(server, {coll: c}, "undelete", "alice", x)
            assert [(ch["action"], ch["path"]) for ch in done[0]["changes"]] == [("create", x)]

            truth = server_state(c, coll)
            assert truth[x][1] == bodies[x]
            assert_new_etags(truth, {x}, {x: {old_etag}})
            assert_token_advanced(token, sync_token(c, coll))
            versions = history(server, "alice", x)
            assert [v["change_op"] for v in versions] == ["put", "delete", "restore"]
            assert versions[-1]["etag"] == truth[x][0] and versions[-1]["seq"] == done[0]["seq"]

            assert_devices_safe(sync_all(eager, lagging), truth, {x})


@pytest.mark.parametrize("kind", KINDS)
def test_restore_earlier_version(server: Server, kind: str) -> None:
    with server.client() as c:
        coll = new_collection(c, kind, "version")
        populate(c, coll, kind, 3)
        x = f"{coll}edited{EXT[kind]}"
        versions = [item(kind, f"edited-{coll}", f"version {n}") for n in (1, 2, 3)]
        etags = {put(c, x, versions[0], (201,))}
        seq_v1 = last_seq_db(server)
        etags |= {put(c, x, v, (204,)) for v in versions[1:]}
        with Fleet(server.url, coll, kind) as eager, Fleet(server.url, coll, kind) as lagging:
            truth = server_state(c, coll)
            initial_sync(truth, eager, lagging)
            token = sync_token(c, coll)

            done = dry_run_then_restore(server, {coll: c}, "undelete", "alice", x,
                                        "--version", str(seq_v1))
            assert [(ch["action"], ch["path"], ch["from_seq"]) for ch in done[0]["changes"]] \
                == [("revert", x, seq_v1)]

            truth = server_state(c, coll)
            assert truth[x][1] == versions[0]
            assert_new_etags(truth, {x}, {x: etags})
            assert_token_advanced(token, sync_token(c, coll))
            assert [v["change_op"] for v in history(server, "alice", x)] == ["put"] * 3 + ["restore"]

            assert_devices_safe(sync_all(eager, lagging), truth, {x})


@pytest.mark.parametrize("point", ["seq", "time"])
@pytest.mark.parametrize("kind", KINDS)
def test_rollback_collection(server: Server, kind: str, point: str) -> None:
    e = EXT[kind]
    with server.client() as c:
        coll = new_collection(c, kind, f"rollback-{point}")
        bodies = populate(c, coll, kind, 5)
        seen: dict[str, set[str]] = {}
        with Fleet(server.url, coll, kind) as eager, Fleet(server.url, coll, kind) as lagging:
            at_point = server_state(c, coll)
            initial_sync(at_point, eager, lagging)
            for href, (etag, _) in at_point.items():
                seen.setdefault(href, set()).add(etag)
            if point == "seq":
                to = [str(last_seq_db(server))] * 2
            else:
                time.sleep(0.3)
                moment = time.time()
                time.sleep(0.3)
                # The dry run takes naive local time, the restore an explicit offset:
                # both must mean the same moment.
                to = [datetime.fromtimestamp(moment).isoformat(),
                      datetime.fromtimestamp(moment).astimezone().isoformat()]

            # After the point: delete, edit, create, move, and a re-PUT of the same bytes.
            assert c.delete(f"{coll}i0{e}").status_code == 204
            seen[f"{coll}i1{e}"].add(put(c, f"{coll}i1{e}", item(kind, f"i1-{coll}", "edited"), (204,)))
            put(c, f"{coll}new{e}", item(kind, f"new-{coll}", "created later"), (201,))
            move(c, server, f"{coll}i2{e}", f"{coll}moved{e}")
            same_bytes_etag = put(c, f"{coll}i3{e}", bodies[f"{coll}i3{e}"], (204,))
            sync_all(eager)
            token = sync_token(c, coll)

            seq_before, before = last_seq_db(server), server_state(c, coll)
            planned = run_json(server, "rollback", "alice", coll, "--to", to[0], "--dry-run")
            assert last_seq_cli(server) == seq_before and server_state(c, coll) == before
            done = run_json(server, "rollback", "alice", coll, "--to", to[1])
            assert [p["changes"] for p in done] == [p["changes"] for p in planned]
            assert done[0]["summary"] == {"create": 2, "revert": 1, "delete": 2}, done
            assert {ch["path"] for ch in done[0]["changes"] if ch["action"] == "delete"} == \
                {f"{coll}new{e}", f"{coll}moved{e}"}

            truth = server_state(c, coll)
            assert {h: d for h, (_, d) in truth.items()} == {h: d for h, (_, d) in at_point.items()}
            restored = {f"{coll}i0{e}", f"{coll}i1{e}", f"{coll}i2{e}"}
            assert_new_etags(truth, restored, seen)
            assert truth[f"{coll}i3{e}"][0] == same_bytes_etag  # same content: left alone
            assert truth[f"{coll}i4{e}"][0] == at_point[f"{coll}i4{e}"][0]  # untouched
            assert_token_advanced(token, sync_token(c, coll))

            results = sync_all(eager, lagging)
            assert_devices_safe(results, truth, restored)
            for model, res in results:  # the only deletions: what the rollback removed
                assert set(res.deleted) <= {f"{coll}new{e}", f"{coll}moved{e}"}, (model.name, res)


@pytest.mark.parametrize("kind", KINDS)
def test_undelete_collection(server: Server, kind: str) -> None:
    with server.client() as c:
        coll = new_collection(c, kind, "gone")
        populate(c, coll, kind, 4)
        with Fleet(server.url, coll, kind) as eager, Fleet(server.url, coll, kind) as lagging:
            original = server_state(c, coll)
            initial_sync(original, eager, lagging)
            token = sync_token(c, coll)
            assert c.delete(coll).status_code == 204

            # While it is gone, devices that sync get 404 for the collection: they fail the
            # sync and keep everything (none of them is told "this collection is empty").
            for model, res in sync_all(eager):
                assert res.outcome == "failed" and res.status == 404, (model.name, res)
                assert not res.deleted and len(model.local) == 4

            done = dry_run_then_restore(server, {}, "undelete", "alice", coll)
            assert done[0]["summary"] == {"create": 5, "revert": 0, "delete": 0}

            truth = server_state(c, coll)
            assert {h: d for h, (_, d) in truth.items()} == {h: d for h, (_, d) in original.items()}
            assert_new_etags(truth, set(truth), {h: {t} for h, (t, _) in original.items()})
            assert_token_advanced(token, sync_token(c, coll))
            r = c.request("PROPFIND", coll, headers={"Depth": "0"})
            name = coll.rstrip("/").rsplit("/", 1)[1]
            assert re.search(f"displayname[^>]*>{name}<", r.text), r.text  # its properties too
            assert re.search(f":{kind}[ /]", r.text), r.text

            assert_devices_safe(sync_all(eager, lagging), truth, set(truth))


def _files(c: httpx.Client, user: str) -> dict[str, bytes]:
    r = c.request("PROPFIND", f"/dav/files/{user}/", headers={"Depth": "1"})
    assert r.status_code == 207
    hrefs = [h.split("</D:href>")[0] for h in r.text.split("<D:href>")[1:]]
    return {h: c.get(h).content for h in hrefs if not h.endswith("/")}


def test_restore_user(fresh_server: Server) -> None:
    srv = fresh_server
    cal, book = "/dav/calendars/alice/personal/", "/dav/addressbooks/alice/contacts/"
    bob_book = "/dav/addressbooks/bob/contacts/"
    with srv.client() as alice, srv.client("bob") as bob, \
            Fleet(srv.url, cal, "calendar") as cal_devices, \
            Fleet(srv.url, book, "addressbook") as book_devices, \
            Fleet(srv.url, bob_book, "addressbook", user="bob") as bob_devices:
        populate(alice, cal, "calendar", 4)
        populate(alice, book, "addressbook", 4)
        populate(bob, bob_book, "addressbook", 3, prefix="bob")
        for name in ("a.txt", "b.txt"):
            put(alice, f"/dav/files/alice/{name}", f"alice's {name} \xe9\r\n".encode("latin-1"))
        put(bob, "/dav/files/bob/notes.txt", b"bob's notes")
        at_point = {col: server_state(alice, col) for col in (cal, book)}
        files_at_point = _files(alice, "alice")
        initial_sync(at_point[cal], cal_devices)
        initial_sync(at_point[book], book_devices)
        initial_sync(server_state(bob, bob_book), bob_devices)
        seen = {h: {t} for col in at_point.values() for h, (t, _) in col.items()}
        point = last_seq_db(srv)

        # Later: alice's devices (or alice) change things; so does bob.
        assert alice.delete(f"{cal}i0.ics").status_code == 204
        put(alice, f"{cal}i1.ics", item("calendar", f"i1-{cal}", "moved to friday"), (204,))
        put(alice, f"{cal}late.ics", item("calendar", "late", "added later"), (201,))
        assert alice.delete(f"{book}i0.vcf").status_code == 204
        put(alice, f"{book}i1.vcf", item("addressbook", f"i1-{book}", "new name"), (204,))
        assert alice.delete("/dav/files/alice/a.txt").status_code == 204
        put(alice, "/dav/files/alice/b.txt", b"overwritten", (204,))
        put(alice, "/dav/files/alice/c.txt", b"created later", (201,))
        put(bob, f"{bob_book}late.vcf", item("addressbook", "bob-late", "after the point"), (201,))
        put(bob, "/dav/files/bob/notes.txt", b"bob's notes, edited after the point", (204,))
        sync_all(cal_devices, book_devices, bob_devices)
        bob_before = server_state(bob, bob_book)
        bob_files = _files(bob, "bob")
        bob_token = sync_token(bob, bob_book)
        tokens = {col: sync_token(alice, col) for col in (cal, book)}

        done = dry_run_then_restore(srv, {cal: alice, book: alice, bob_book: bob}, "restore-user",
                                    "alice", "--to", str(point))
        assert sorted(p["target"] for p in done) == ["/dav/addressbooks/alice", "/dav/calendars/alice",
                                                     "/dav/files/alice"]

        for col in (cal, book):
            truth = server_state(alice, col)
            assert {h: d for h, (_, d) in truth.items()} == \
                {h: d for h, (_, d) in at_point[col].items()}
            assert_token_advanced(tokens[col], sync_token(alice, col))
        assert _files(alice, "alice") == files_at_point
        assert alice.get("/dav/files/alice/c.txt").status_code == 404
        restored = {f"{cal}i0.ics", f"{cal}i1.ics", f"{book}i0.vcf", f"{book}i1.vcf"}
        truths = {col: server_state(alice, col) for col in (cal, book)}
        assert_new_etags({**truths[cal], **truths[book]}, restored, seen)

        # bob is untouched: same items, same ETags, same token, same files.
        assert server_state(bob, bob_book) == bob_before
        assert sync_token(bob, bob_book) == bob_token
        assert _files(bob, "bob") == bob_files
        for model, res in sync_all(bob_devices):
            assert not res.deleted and not res.downloaded and not res.reset, (model.name, res)

        assert_devices_safe(sync_all(cal_devices), truths[cal], {h for h in restored if h.startswith(cal)})
        assert_devices_safe(sync_all(book_devices), truths[book],
                            {h for h in restored if h.startswith(book)})


@pytest.mark.parametrize("kind", KINDS)
def test_vdirsyncer_across_a_rollback(server: Server, tmp_path: Path, kind: str) -> None:
    """The real vdirsyncer, syncing before and after a rollback, deletes nothing locally
    that the server has and ends with exactly the server's items."""
    e = EXT[kind]
    with server.client() as c:
        coll = new_collection(c, kind, "vdir")
        populate(c, coll, kind, 5)
        v = Vdirsyncer(tmp_path, server.url, coll, kind)
        v.sync()
        at_point = server_state(c, coll)
        assert v.items() == {uid_of(d): d for _, d in at_point.values()}
        point = last_seq_db(server)

        assert c.delete(f"{coll}i0{e}").status_code == 204
        put(c, f"{coll}i1{e}", item(kind, f"i1-{coll}", "edited"), (204,))
        put(c, f"{coll}new{e}", item(kind, f"new-{coll}", "created later"), (201,))
        assert v.sync() == [f"i0-{coll}"]  # the server said so

        run_json(server, "rollback", "alice", coll, "--to", str(point))
        truth = server_state(c, coll)
        gone = v.sync()
        server_uids = {uid_of(d) for _, d in truth.values()}
        assert not set(gone) & server_uids, f"vdirsyncer deleted {set(gone) & server_uids}"
        assert gone == [f"new-{coll}"]
        assert v.items() == {uid_of(d): d for _, d in truth.values()}
        assert server_state(c, coll) == truth  # and it pushed nothing back


def test_phone_gone_mad_rollback(server: Server) -> None:
    """A phone deletes 400 of 500 contacts; the other devices dutifully delete them too.
    A rollback to the change before brings all 400 back with their exact bytes and new
    ETags, and every device downloads them again. (The mass-deletion guard would catch
    the burst; this is the recovery path, without it.)"""
    with server.client() as c:
        book = new_collection(c, "addressbook", "mad")
        bodies = populate(c, book, "addressbook", 500)
        with DAVx5(server.url, book, "addressbook") as mad, \
                Fleet(server.url, book, "addressbook") as eager, \
                Fleet(server.url, book, "addressbook") as lagging:
            original = server_state(c, book)
            initial_sync(original, eager, lagging)
            assert mad.sync().outcome == "ok" and len(mad.local) == 500
            before = last_seq_db(server)

            victims = sorted(bodies)[:400]
            assert set(mad.delete_upstream_many(victims).values()) == {204}
            for model, res in sync_all(eager):
                assert sorted(res.deleted) == victims, model.name  # the harm is real
            token = sync_token(c, book)

            done = dry_run_then_restore(server, {book: c}, "rollback", "alice", book,
                                        "--to", str(before))
            assert done[0]["summary"] == {"create": 400, "revert": 0, "delete": 0}

            truth = server_state(c, book)
            assert sorted(truth) == sorted(bodies)
            for href in victims:
                assert truth[href][1] == bodies[href], href  # the exact bytes
            assert_new_etags(truth, set(victims), {h: {t} for h, (t, _) in original.items()})
            assert_token_advanced(token, sync_token(c, book))

            results = sync_all(eager, lagging)
            results.append((mad, mad.sync()))
            assert_devices_safe(results, truth, set(victims))


@pytest.mark.parametrize("how", ["put", "move"])
def test_rollback_across_a_uid_swap(server: Server, how: str) -> None:
    """After the point two contacts trade UIDs (a client re-linked them: by PUTs through
    a temporary UID, or by MOVEs through a temporary name). Rolling the address book
    back must bring both back as they were; the devices then hold exactly that."""
    with server.client() as c:
        book = new_collection(c, "addressbook", f"swap-{how}")
        a, b, tmp = f"{book}a.vcf", f"{book}b.vcf", f"{book}tmp.vcf"
        card_a, card_b = item("addressbook", f"ua-{book}", "Ada"), item("addressbook", f"ub-{book}", "Bob")
        put(c, a, card_a, (201,))
        put(c, b, card_b, (201,))
        with Fleet(server.url, book, "addressbook") as devices:
            at_point = server_state(c, book)
            initial_sync(at_point, devices)
            point = last_seq_db(server)
            if how == "put":
                put(c, b, item("addressbook", f"uc-{book}", "Bob"), (204,))
                put(c, a, item("addressbook", f"ub-{book}", "Ada"), (204,))
                put(c, b, item("addressbook", f"ua-{book}", "Bob"), (204,))
            else:
                move(c, server, a, tmp)
                move(c, server, b, a)
                move(c, server, tmp, b)
            sync_all(devices)
            token = sync_token(c, book)

            done = run_json(server, "rollback", "alice", book, "--to", str(point))
            assert done[0]["summary"]["revert"] == 2, done

            truth = server_state(c, book)
            assert {h: d for h, (_, d) in truth.items()} == {a: card_a, b: card_b}
            assert_new_etags(truth, {a, b}, {h: {t} for h, (t, _) in at_point.items()})
            assert_token_advanced(token, sync_token(c, book))
            assert_devices_safe(sync_all(devices), truth, {a, b})


# -- the harness itself: the models do what their clients do on errors -------------------


class _Unavailable(BaseHTTPRequestHandler):
    def _answer(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        if length:
            self.rfile.read(length)
        body = b"the store is being checked; try again later\n"
        self.send_response(503)
        self.send_header("Retry-After", "60")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    do_PROPFIND = do_REPORT = do_GET = do_PUT = do_DELETE = _answer

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.mark.parametrize("kind", KINDS)
def test_models_handle_errors_like_their_clients(server: Server, kind: str) -> None:
    """Sanity of the harness: a token the server does not know makes DAVx5 and
    Thunderbird Calendar reset (and then delete what the server no longer lists),
    leaves Thunderbird CardDAV failing with its data kept, and does not concern
    Evolution; a 503 makes every model keep its data."""
    with server.client() as c:
        coll = new_collection(c, kind, "errors")
        populate(c, coll, kind, 3)
        with Fleet(server.url, coll, kind) as fleet:
            initial_sync(server_state(c, coll), fleet)
            x = f"{coll}i0{EXT[kind]}"
            assert c.delete(x).status_code == 204
            for model in fleet:
                if model.token is not None:
                    model.token = "urn:x-safehold:sync:0000000000000000:1"
                model.ctag = None
            truth = server_state(c, coll)
            for model in fleet:
                res = model.sync()
                if isinstance(model, DAVx5 | ThunderbirdCalendar):
                    assert res.outcome == "ok" and res.reset and res.deleted == [x], res
                    assert model.deletions[-1].reason == "not-listed"
                elif isinstance(model, ThunderbirdCardDAV):
                    assert res.outcome == "failed" and res.status == 403 and not res.reset, res
                    assert x in model.local  # stuck, but nothing lost
                else:
                    assert isinstance(model, Evolution)
                    assert res.outcome == "ok" and res.deleted == [x], res
                if not isinstance(model, ThunderbirdCardDAV):
                    assert sorted(model.local) == sorted(truth)

            stub = ThreadingHTTPServer(("127.0.0.1", 0), _Unavailable)
            thread = Thread(target=stub.serve_forever, daemon=True)
            thread.start()
            try:
                for model in fleet:
                    held = dict(model.local)
                    model.token, model.ctag = None, None  # even a full resync must not wipe
                    model.retarget(f"http://127.0.0.1:{stub.server_address[1]}")
                    res = model.sync()
                    assert res.outcome == "aborted" and res.status == 503, (model.name, res)
                    assert model.local == held and not res.deleted
            finally:
                stub.shutdown()
                stub.server_close()
                thread.join()
