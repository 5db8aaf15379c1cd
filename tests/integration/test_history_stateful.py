"""History and restores against a model: random sequences of PUT, DELETE, MOVE,
PROPPATCH, MKCOL, undelete (item, collection, earlier version), rollback and
restore-user run on ONE live server while a plain in-memory model records every
version of every path, stamped with the change number the server gave it.

After every step:
- what the server shows (PROPFIND Depth 1 + GET bytes + a dead property) equals the
  model's current state;
- an ETag is stable while its item is unchanged and new whenever it changed (a
  restored item never comes back with an ETag it had before);
- the history of every path the step touched lists exactly the model's versions, in
  order, with the right change numbers;
- a mutation is exactly one new change; a refused one (4xx, a failing restore) none;
- a rollback to change S leaves the subtree exactly as the model had it at S, and its
  plan (create / revert / delete per path) is the one the model predicts.

Restores run in-process through safehold.core.history + safehold.store.history
exactly as the CLI wires them (engine opened and disposed each time), because
spawning the CLI costs seconds; with SAFEHOLD_SLOW=1 they run through the real CLI
and the budget is larger. Each example starts by restore-user to the server's
initial state, itself a restore under test.
"""

from __future__ import annotations

import hashlib
import json
import os
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from urllib.parse import unquote

import httpx
import sqlalchemy as sa
from hypothesis import HealthCheck, event, settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine, initialize, invariant, precondition, rule, run_state_machine_as_test,
)
from lxml import etree

from safehold.core import history as core
from safehold.core.model import Actor
from safehold.errors import SafeholdError
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store.history import History, versions_of
from safehold.store.repo import Store
from tests.support.server import Server, cli

SLOW = os.environ.get("SAFEHOLD_SLOW") == "1"
USE_CLI = SLOW
SETTINGS = settings(max_examples=40 if SLOW else 15, stateful_step_count=40 if SLOW else 25,
                    deadline=None, suppress_health_check=[HealthCheck.too_slow,
                                                          HealthCheck.filter_too_much])

FILES = "files/alice"
SUB = "files/alice/sub"
BOOK = "addressbooks/alice/contacts"
FILE_ITEMS = [f"{FILES}/a.txt", f"{FILES}/b.txt", f"{SUB}/a.txt", f"{SUB}/b.txt"]
CARDS = [f"{BOOK}/a.vcf", f"{BOOK}/b.vcf", f"{BOOK}/c.vcf"]
ITEMS = FILE_ITEMS + CARDS
WATCHED = ITEMS + [SUB]  # the paths the machine creates, changes and restores
UIDS = ["u1", "u2", "u3", "u4"]
COLORS = ["red", "green", "blue & gold"]
ROOTS = [FILES, "addressbooks/alice", BOOK, "calendars/alice", "calendars/alice/personal"]
HOMES = [FILES, "calendars/alice", "addressbooks/alice"]
Z = "urn:x-safehold-test"
DAV = "DAV:"


def href(path: str, collection: bool = False) -> str:
    return f"/dav/{path}" + ("/" if collection else "")


def parent(path: str) -> str:
    return path.rsplit("/", 1)[0]


def below(path: str, prefix: str) -> bool:
    return path == prefix or path.startswith(prefix + "/")


def card(uid: str, name: str) -> bytes:
    return f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:{uid}\r\nFN:{name}\r\nN:{name};;;;\r\nEND:VCARD\r\n".encode()


def uid_of(body: bytes) -> str:
    return body.split(b"UID:", 1)[1].split(b"\r\n", 1)[0].decode()


# -- the model ----------------------------------------------------------------------------


@dataclass(frozen=True)
class V:
    """One version of a path: content (items), a tombstone, or a collection."""

    seq: int
    deleted: bool = False
    body: bytes | None = None
    color: str | None = None
    collection: bool = False

    def same(self, other: V) -> bool:
        return (self.deleted, self.body, self.color, self.collection) == \
            (other.deleted, other.body, other.color, other.collection)

    def at(self, seq: int) -> V:
        return V(seq, self.deleted, self.body, self.color, self.collection)


TOMBSTONE = V(0, deleted=True)


@dataclass
class World:
    """Every version of every path, for the lifetime of one server (examples share it)."""

    base: int
    versions: dict[str, list[V]] = field(default_factory=dict)
    etags: dict[tuple[str, int], str] = field(default_factory=dict)  # (path, head seq) -> ETag
    etags_of: dict[str, set[str]] = field(default_factory=dict)
    # Set while a step runs, cleared when its checks passed: a failed example leaves
    # the model out of step with the server, and the next example resynchronises.
    dirty: bool = False

    def head(self, path: str, at: int | None = None) -> V | None:
        for v in reversed(self.versions.get(path, [])):
            if at is None or v.seq <= at:
                return v
        return None

    def live(self, path: str, at: int | None = None) -> V | None:
        v = self.head(path, at)
        return v if v is not None and not v.deleted else None

    def state(self, prefix: str, at: int | None = None) -> dict[str, V]:
        out = {}
        for p in self.versions:
            if below(p, prefix):
                v = self.live(p, at)
                if v is not None:
                    out[p] = v
        return out


WORLDS: dict[str, World] = {}
OUTCOMES: Counter[str] = Counter()  # what the examples exercised; printed by the test

# A change the model predicts: path -> the version it gets (seq filled in later).
Changes = list[tuple[str, V]]


class Refused(Exception):
    """The model says the server must refuse this restore."""


# -- the database, read directly -----------------------------------------------------------


@contextmanager
def opened(server: Server) -> Iterator[Store]:
    engine = engine_mod.create(server.database_url)
    try:
        yield Store(engine, server.data_dir / "tmp")
    finally:
        engine.dispose()


def log_position(store: Store) -> tuple[int, int]:
    """(last seq, number of changes)."""
    with store.engine.connect() as conn:
        row = conn.execute(sa.text("SELECT max(seq), count(*) FROM change")).one()
    return int(row[0] or 0), int(row[1])


def _color(props: dict[str, str]) -> str | None:
    xml = props.get(f"{{{Z}}}color")
    return None if xml is None else (etree.fromstring(xml.encode()).text or "")


def resync(world: World, store: Store) -> None:
    """After a failed example: take the history of the machine's paths from the server
    so that the next examples (and hypothesis's shrinking) start from the truth."""
    for path in WATCHED:
        world.versions[path] = [
            V(v.seq, v.deleted, blobs.read_all(store.engine, v.blob_hash)
              if v.blob_hash is not None and v.kind == "item" and not v.deleted else None,
              _color(v.props), v.kind != "item" and not v.deleted)
            for v in versions_of(store, path)]
        if not world.versions[path]:
            del world.versions[path]
    world.dirty = False


# -- the machine ---------------------------------------------------------------------------


class HistoryMachine(RuleBasedStateMachine):
    server: Server  # set by the test

    def __init__(self) -> None:
        super().__init__()
        srv = type(self).server
        self.srv = srv
        self.http = httpx.Client(base_url=srv.url, auth=("alice", "correct horse battery"),
                                 timeout=60.0)
        self.world = WORLDS[srv.database_url]
        self.points: list[int] = []
        self.mine: set[tuple[str, int]] = set()  # (path, seq) of content versions made in this example
        self.position = (0, 0)
        self.touched: set[str] = set()

    def teardown(self) -> None:
        self.http.close()

    # -- bookkeeping ---------------------------------------------------------------------

    def _commit(self, changes: Changes, seq: int) -> None:
        for path, v in changes:
            stamped = v.at(seq)
            self.world.versions.setdefault(path, []).append(stamped)
            self.touched.add(path)
            if not stamped.deleted:
                self.mine.add((path, seq))

    def _expect_one_change(self, what: str, changes: Changes) -> None:
        """After an HTTP mutation: exactly one new change if the model predicted one,
        none otherwise; the model's versions get its seq."""
        _note(f"{what}: " + ("changed" if changes else "refused"))
        with opened(self.srv) as store:
            pos = log_position(store)
        if changes:
            assert pos[1] == self.position[1] + 1 and pos[0] > self.position[0], (self.position, pos)
            self._commit(changes, pos[0])
            self.points.append(pos[0])
        else:
            assert pos == self.position, f"a refused request wrote a change: {self.position} -> {pos}"
        self.position = pos

    def _restore(self, build: Callable[[History], list[core.Plan]], cli_args: list[str],
                 predicted: dict[str, Changes] | Refused) -> None:
        """Run a restore (in-process as the CLI does, or the CLI itself) and check it
        against the model's prediction: one change per plan with changes, the plan's
        create/revert/delete per path as predicted, or a refusal that wrote nothing."""
        written: list[tuple[str, int | None, list[tuple[str, str]]]] = []
        self.world.dirty = True
        error: str | None = None
        if USE_CLI:
            proc = cli(self.srv.data_dir, *cli_args, "--json", env=self.srv.env, check=False)
            if proc.returncode == 0:
                for p in json.loads(proc.stdout):
                    written.append((p["target"][len("/dav/"):], p["seq"],
                                    [(ch["action"], ch["path"][len("/dav/"):]) for ch in p["changes"]]))
            else:
                error = proc.stderr
        else:
            with opened(self.srv) as store:
                hist = History(store)
                principal = store.principal("alice")
                assert principal is not None
                try:
                    for done in core.execute_all(hist, principal.id, build(hist),
                                                 Actor(None, "safehold-test")):
                        written.append((done.target, done.seq,
                                        [(op.action, op.path) for op in done.ops]))
                except SafeholdError as exc:
                    error = f"{type(exc).__name__}: {exc}"
        with opened(self.srv) as store:
            pos = log_position(store)
        _note(f"{cli_args[0]}: " + ("refused" if isinstance(predicted, Refused) else
                                    f"{sum(len(c) for c in predicted.values())} change(s)"))
        if isinstance(predicted, Refused):
            assert error is not None, f"expected a refusal ({predicted}), the server did {written}"
            assert pos == self.position, "a refused restore wrote a change"
            return
        assert error is None, f"the restore failed: {error}; the model expected {predicted}"
        got = {target: (seq, sorted(ops)) for target, seq, ops in written if ops}
        want = {target: sorted((self._action(p, v), p) for p, v in ch)
                for target, ch in predicted.items() if ch}
        assert {t: ops for t, (_, ops) in got.items()} == want
        assert pos[1] == self.position[1] + len(got), (self.position, pos, got)
        for target, changes in predicted.items():
            if changes:
                seq = got[target][0]
                assert seq is not None and seq > self.position[0]
                self._commit(changes, seq)
                self.points.append(seq)
        self.position = pos

    def _action(self, path: str, v: V) -> str:
        if v.deleted:
            return "delete"
        return "create" if self.world.live(path) is None else "revert"

    # -- model predictions ---------------------------------------------------------------

    def _uid_taken(self, path: str, uid: str, ignore: tuple[str, ...] = ()) -> bool:
        for other, v in self.world.state(parent(path)).items():
            if parent(other) == parent(path) and other != path and other not in ignore \
                    and v.body is not None and uid_of(v.body) == uid:
                return True
        return False

    def _rollback_changes(self, prefix: str, seq: int) -> Changes:
        if self.world.live(prefix, seq) is None:
            raise Refused(f"{prefix} did not exist at {seq}")
        target = self.world.state(prefix, seq)
        current = self.world.state(prefix)
        changes: Changes = [(p, v) for p, v in sorted(target.items())
                            if p not in current or not current[p].same(v)]
        changes += [(p, TOMBSTONE) for p in sorted(current) if p not in target]
        return changes

    def _undelete_changes(self, path: str, version: int | None) -> Changes:
        versions = self.world.versions.get(path, [])
        if not versions:
            raise Refused("never existed")
        latest = versions[-1]
        if version is not None:
            chosen = next((v for v in reversed(versions) if v.seq == version and not v.deleted), None)
            if chosen is None:
                raise Refused("no such version")
            if chosen.collection:
                return self._undelete_tree(path, chosen.seq)
            if not latest.deleted and latest.same(chosen):
                return []
            return self._item_back(path, chosen)
        if not latest.deleted:
            raise Refused("not deleted")
        before = next((v for v in reversed(versions) if not v.deleted), None)
        if before is None:
            raise Refused("no content")
        if latest.collection or before.collection:
            return self._undelete_tree(path, latest.seq - 1)
        return self._item_back(path, before)

    def _item_back(self, path: str, v: V) -> Changes:
        if self.world.live(parent(path)) is None:
            raise Refused("parent missing")
        if path.endswith(".vcf") and v.body is not None and self._uid_taken(path, uid_of(v.body)):
            raise Refused("UID taken")
        return [(path, v)]

    def _undelete_tree(self, path: str, seq: int) -> Changes:
        current = self.world.state(path)
        return [(p, v) for p, v in sorted(self.world.state(path, seq).items()) if p not in current]

    def _pick(self, data: st.DataObject, paths: list[str], label: str, live: bool = True) -> str:
        """A path from ``paths``: four times in five one that is live (or, with
        live=False, one that is not), so that most steps change something."""
        preferred = [p for p in paths if (self.world.live(p) is not None) == live]
        if preferred and data.draw(st.sampled_from([True, True, True, True, False]),
                                   label=f"{label} preferred?"):
            return data.draw(st.sampled_from(preferred), label=label)
        return data.draw(st.sampled_from(paths), label=label)

    # -- rules ---------------------------------------------------------------------------

    @initialize()
    def reset(self) -> None:
        """Every example starts from the server's initial state: restore-user to it."""
        with opened(self.srv) as store:
            if self.world.dirty:
                resync(self.world, store)
            self.position = log_position(store)
        self.world.dirty = True
        base = self.world.base
        self._restore(lambda h: core.plan_restore_user(h, "alice", base),
                      ["restore-user", "alice", "--to", str(base)],
                      {home: self._rollback_changes(home, base) for home in HOMES})
        self.points = [self.position[0]]
        self.mine = set()

    @rule(data=st.data(), body=st.binary(max_size=48))
    def put_file(self, data: st.DataObject, body: bytes) -> None:
        self.world.dirty = True
        # Mostly where the folder exists (a PUT into a missing folder is a 409).
        fits = [p for p in FILE_ITEMS if self.world.live(parent(p)) is not None]
        if data.draw(st.sampled_from([True, True, True, False]), label="parent exists?"):
            path = data.draw(st.sampled_from(fits), label="path")
        else:
            path = data.draw(st.sampled_from(FILE_ITEMS), label="path")
        old = self.world.live(path)
        if self.world.live(parent(path)) is None:
            expected, changes = 409, []
        else:
            expected = 204 if old else 201
            changes = [(path, V(0, body=body, color=old.color if old else None))]
        r = self.http.put(href(path), content=body, headers={"Content-Type": "application/octet-stream"})
        assert r.status_code == expected, (path, r.status_code, r.text)
        self._expect_one_change("PUT", changes)

    @rule(path=st.sampled_from(CARDS), uid=st.sampled_from(UIDS),
          name=st.text(alphabet="abcxyz ÄéЖ-", min_size=1, max_size=8).map(str.strip).filter(bool))
    def put_card(self, path: str, uid: str, name: str) -> None:
        self.world.dirty = True
        old = self.world.live(path)
        body = card(uid, name)
        if self._uid_taken(path, uid):
            expected, changes = 409, []
        else:
            expected = 204 if old else 201
            changes = [(path, V(0, body=body, color=old.color if old else None))]
        r = self.http.put(href(path), content=body, headers={"Content-Type": "text/vcard"})
        assert r.status_code == expected, (path, r.status_code, r.text)
        self._expect_one_change("PUT vCard", changes)

    def _live(self, paths: list[str]) -> list[str]:
        return [p for p in paths if self.world.live(p) is not None]

    def _delete(self, path: str) -> None:
        self.world.dirty = True
        if self.world.live(path) is None:
            expected, changes = 404, []
        else:
            expected = 204
            changes = [(p, TOMBSTONE) for p in sorted(self.world.state(path), reverse=True)]
        r = self.http.delete(href(path, path == SUB))
        assert r.status_code == expected, (path, r.status_code, r.text)
        self._expect_one_change("DELETE", changes)

    def _mkcol(self) -> None:
        self.world.dirty = True
        exists = self.world.live(SUB) is not None
        r = self.http.request("MKCOL", href(SUB, True))
        assert r.status_code == (405 if exists else 201), r.text
        self._expect_one_change("MKCOL", [] if exists else [(SUB, V(0, collection=True))])

    def _move(self, src: str, dst: str) -> None:
        self.world.dirty = True
        source, target = self.world.live(src), self.world.live(dst)
        changes: Changes = []
        if source is None:
            expected = 404
        elif self.world.live(parent(dst)) is None:
            expected = 409
        elif dst.endswith(".vcf") and source.body is not None \
                and self._uid_taken(dst, uid_of(source.body), ignore=(src,)):
            expected = 409
        else:
            expected = 204 if target else 201
            changes = ([(dst, TOMBSTONE)] if target else []) + [(dst, source), (src, TOMBSTONE)]
        r = self.http.request("MOVE", href(src), headers={"Destination": self.srv.url + href(dst)})
        assert r.status_code == expected, (src, dst, r.status_code, r.text)
        self._expect_one_change("MOVE", changes)

    def _proppatch(self, path: str, color: str | None) -> None:
        self.world.dirty = True
        old = self.world.live(path)
        if color is None:
            op = "<D:remove><D:prop><Z:color/></D:prop></D:remove>"
        else:
            value = color.replace("&", "&amp;")
            op = f"<D:set><D:prop><Z:color>{value}</Z:color></D:prop></D:set>"
        body = (f'<?xml version="1.0"?><D:propertyupdate xmlns:D="DAV:" xmlns:Z="{Z}">{op}'
                "</D:propertyupdate>")
        r = self.http.request("PROPPATCH", href(path, path == SUB), content=body.encode())
        if old is None:
            assert r.status_code == 404, (path, r.status_code, r.text)
            self._expect_one_change("PROPPATCH", [])
            return
        assert r.status_code == 207 and "200 OK" in r.text, (path, r.status_code, r.text)
        self._expect_one_change("PROPPATCH", [(path, V(0, False, old.body, color, old.collection))])

    @precondition(lambda self: bool(self._live(WATCHED)))
    @rule(data=st.data())
    def delete(self, data: st.DataObject) -> None:
        self._delete(data.draw(st.sampled_from(self._live(WATCHED)), label="path"))

    @precondition(lambda self: self.world.live(SUB) is None)
    @rule()
    def mkcol(self) -> None:
        self._mkcol()

    @precondition(lambda self: bool(self._live(ITEMS)))
    @rule(data=st.data())
    def move(self, data: st.DataObject) -> None:
        src = data.draw(st.sampled_from(self._live(ITEMS)), label="src")
        family = CARDS if src in CARDS else FILE_ITEMS
        self._move(src, data.draw(st.sampled_from([p for p in family if p != src]), label="dst"))

    @precondition(lambda self: bool(self._live(WATCHED)))
    @rule(data=st.data(), color=st.none() | st.sampled_from(COLORS))
    def proppatch(self, data: st.DataObject, color: str | None) -> None:
        self._proppatch(data.draw(st.sampled_from(self._live(WATCHED)), label="path"), color)

    @rule(data=st.data(), what=st.sampled_from(["DELETE", "PROPPATCH", "MOVE", "MKCOL"]))
    def refused(self, data: st.DataObject, what: str) -> None:
        """Requests the server must refuse, changing nothing: on a path that is not
        there, or MKCOL on one that is."""
        missing = [p for p in WATCHED if self.world.live(p) is None]
        if what == "MKCOL" and self.world.live(SUB) is not None:
            self._mkcol()
        elif what == "MOVE" and [p for p in missing if p in ITEMS]:
            src = data.draw(st.sampled_from([p for p in missing if p in ITEMS]), label="src")
            family = CARDS if src in CARDS else FILE_ITEMS
            self._move(src, data.draw(st.sampled_from([p for p in family if p != src]), label="dst"))
        elif missing:
            path = data.draw(st.sampled_from(missing), label="path")
            self._delete(path) if what == "DELETE" else self._proppatch(path, "red")

    @precondition(lambda self: bool(self.mine))
    @rule(data=st.data())
    def undelete(self, data: st.DataObject) -> None:
        # Only paths this example gave content: what they restore is then this
        # example's doing (earlier examples left other history on the same server).
        # Deleted ones first (a deleted folder before all), then live ones (which only
        # an earlier --version can change).
        candidates = sorted({p for p, _ in self.mine},
                            key=lambda p: (self.world.live(p) is not None, p != SUB, p))
        path = data.draw(st.sampled_from(candidates), label="path")
        seqs = sorted(s for p, s in self.mine if p == path)
        version = data.draw(st.none() | st.sampled_from(seqs), label="version")
        try:
            predicted: dict[str, Changes] | Refused = {path: self._undelete_changes(path, version)}
        except Refused as exc:
            predicted = exc
        args = ["undelete", "alice", href(path, path == SUB)]
        if version is not None:
            args += ["--version", str(version)]
        self._restore(lambda h: [core.plan_undelete(h, path, version)], args, predicted)

    @rule(data=st.data(), prefix=st.sampled_from([FILES, SUB, BOOK]))
    def rollback(self, data: st.DataObject, prefix: str) -> None:
        seq = data.draw(st.sampled_from(self.points), label="to")
        try:
            predicted: dict[str, Changes] | Refused = {prefix: self._rollback_changes(prefix, seq)}
        except Refused as exc:
            predicted = exc
        self._restore(lambda h: [core.plan_rollback(h, prefix, seq)],
                      ["rollback", "alice", href(prefix, True), "--to", str(seq)], predicted)
        if not isinstance(predicted, Refused):
            # The subtree is now exactly what it was at seq.
            now, then = self.world.state(prefix), self.world.state(prefix, seq)
            assert sorted(now) == sorted(then)
            assert all(now[p].same(then[p]) for p in now)

    @rule(data=st.data())
    def restore_user(self, data: st.DataObject) -> None:
        seq = data.draw(st.sampled_from(self.points), label="to")
        predicted = {home: self._rollback_changes(home, seq) for home in HOMES}
        with httpx.Client(base_url=self.srv.url, auth=("bob", "correct horse battery")) as bob:
            before = bob.get("/dav/files/bob/untouched.txt")
            self._restore(lambda h: core.plan_restore_user(h, "alice", seq),
                          ["restore-user", "alice", "--to", str(seq)], predicted)
            after = bob.get("/dav/files/bob/untouched.txt")
        assert (after.status_code, after.content, after.headers["etag"]) == \
            (before.status_code, before.content, before.headers["etag"]), "restore-user touched bob"

    # -- what the server shows -----------------------------------------------------------

    def _listing(self, collection: str) -> dict[str, tuple[str, str | None]] | None:
        body = (f'<D:propfind xmlns:D="DAV:" xmlns:Z="{Z}"><D:prop><D:getetag/><Z:color/>'
                "</D:prop></D:propfind>")
        r = self.http.request("PROPFIND", href(collection, True), headers={"Depth": "1"},
                              content=body.encode())
        if r.status_code == 404:
            return None
        assert r.status_code == 207, (collection, r.status_code, r.text)
        out = {}
        for resp in etree.fromstring(r.content).iter(f"{{{DAV}}}response"):
            path = unquote(resp.findtext(f"{{{DAV}}}href") or "")[len("/dav/"):].rstrip("/")
            etag = color = None
            for ps in resp.iter(f"{{{DAV}}}propstat"):
                if " 200 " not in (ps.findtext(f"{{{DAV}}}status") or ""):
                    continue
                etag = ps.findtext(f"{{{DAV}}}prop/{{{DAV}}}getetag") or etag
                found = ps.find(f"{{{DAV}}}prop/{{{Z}}}color")
                if found is not None:
                    color = found.text or ""
            assert etag, resp
            out[path] = (etag, color)
        return out

    @invariant()
    def matches_model(self) -> None:
        self._check_visible()
        self._check_history()
        self.world.dirty = False

    def _check_visible(self) -> None:
        seen: dict[str, tuple[str, str | None]] = {}
        for collection in (FILES, SUB, BOOK):
            listing = self._listing(collection)
            if listing is None:
                assert collection == SUB and self.world.live(SUB) is None, f"{collection} is gone"
                continue
            assert collection != SUB or self.world.live(SUB) is not None, "sub/ should be gone"
            seen.update(listing)
        expected = {p: v for root in (FILES, BOOK) for p, v in self.world.state(root).items()}
        assert sorted(seen) == sorted(expected)
        for path, (etag, color) in seen.items():
            v = expected[path]
            if path in WATCHED:
                assert color == v.color, (path, color, v.color)
            if v.body is not None:
                r = self.http.get(href(path))
                assert r.status_code == 200 and r.content == v.body, (path, r.content, v.body)
                assert r.headers["etag"] == etag
            head = self.world.head(path)
            assert head is not None
            key = (path, head.seq)
            if key in self.world.etags:
                assert etag == self.world.etags[key], f"{path}: the ETag changed, the item did not"
            else:
                assert etag not in self.world.etags_of.get(path, set()), \
                    f"{path} changed but shows an ETag it had before"
                self.world.etags[key] = etag
                self.world.etags_of.setdefault(path, set()).add(etag)

    def _check_history(self) -> None:
        if not self.touched:
            return
        with opened(self.srv) as store:
            for path in sorted(self.touched):
                got = [(v.seq, v.deleted, v.blob_hash if v.kind == "item" else None,
                        _color(v.props), v.kind != "item" and not v.deleted)
                       for v in versions_of(store, path)]
                want = [(v.seq, v.deleted,
                         hashlib.sha256(v.body).hexdigest() if v.body is not None else None,
                         v.color, v.collection) for v in self.world.versions[path]]
                assert got == want, f"history of {path}"
        self.touched = set()


def _note(outcome: str) -> None:
    event(outcome)
    OUTCOMES[outcome] += 1


def _setup_world(server: Server) -> World:
    if server.database_url not in WORLDS:
        with httpx.Client(base_url=server.url, auth=("bob", "correct horse battery")) as bob:
            assert bob.put("/dav/files/bob/untouched.txt", content=b"bob's").status_code == 201
        with opened(server) as store:
            base = log_position(store)[0]
            for path in WATCHED:
                assert not versions_of(store, path), f"{path} was used before this module"
        world = World(base)
        for root in ROOTS:
            world.versions[root] = [V(0, collection=True)]
        WORLDS[server.database_url] = world
    return WORLDS[server.database_url]


def test_history_state_machine(server: Server) -> None:
    world = _setup_world(server)
    HistoryMachine.server = server
    run_state_machine_as_test(HistoryMachine, settings=SETTINGS)
    print(dict(sorted(OUTCOMES.items())))

    # The CLI's `history --json` tells the same story as the model (checked for the two
    # paths with the longest histories: each CLI run costs seconds).
    longest = sorted((p for p in WATCHED if p in world.versions),
                     key=lambda p: -len(world.versions[p]))[:2]
    for path in longest:
        proc = cli(server.data_dir, "history", "alice", href(path, path == SUB), "--json",
                   env=server.env)
        got = [(v["seq"], v["deleted"]) for v in json.loads(proc.stdout)]
        assert got == [(v.seq, v.deleted) for v in world.versions[path]], path
