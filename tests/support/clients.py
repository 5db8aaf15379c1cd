"""A device-safety harness: models of how real sync clients react to what a server
tells them, run against the live server over HTTP.

Why: every open-source sync client treats the server's listing as the truth, so a
server that publishes a restore as a rewind (old sync tokens, a shorter listing, a
token error) makes phones delete their local copies (DESIGN promise 8). These models
let a test ask "what would DAVx5 / Thunderbird / Evolution have done?".

They are MODELS, written from each client's documented behaviour and the outline of
its sync code; they are not the clients. Each keeps a local copy ``{href: (etag,
bytes)}`` and its sync state (token, ctag), speaks the same requests the client sends
(PROPFIND, sync-collection, multiget, GET) and reproduces the client's *decisions*:
when it resets, what it deletes locally, when it gives up and keeps its data. Every
local deletion is recorded in ``deletions`` with the sync that did it and why.

vdirsyncer is not modelled: ``Vdirsyncer`` runs the real program.
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections.abc import Iterable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import unquote
from xml.etree import ElementTree as ET

import httpx
from lxml import etree

from tests.support.server import PASSWORD

DAV = "DAV:"
CALDAV = "urn:ietf:params:xml:ns:caldav"
CARDDAV = "urn:ietf:params:xml:ns:carddav"
CS = "http://calendarserver.org/ns/"
KINDS = ("calendar", "addressbook")


def _q(ns: str, name: str) -> str:
    return f"{{{ns}}}{name}"


DATA_PROP = {"calendar": _q(CALDAV, "calendar-data"), "addressbook": _q(CARDDAV, "address-data")}
MULTIGET = {"calendar": _q(CALDAV, "calendar-multiget"),
            "addressbook": _q(CARDDAV, "addressbook-multiget")}


# -- multistatus ----------------------------------------------------------------------


@dataclass
class DavResponse:
    """One DAV:response of a multistatus: its href (percent-decoded), its own status
    (sync-collection reports a removed member as a response with status 404), and the
    properties found (the 200 propstat), by Clark name."""

    href: str
    status: int | None
    props: dict[str, etree._Element]

    def text(self, name: str) -> str | None:
        el = self.props.get(name)
        return None if el is None else (el.text or "")


def _status(line: str | None) -> int | None:
    if not line:
        return None
    m = re.match(r"\s*HTTP/\d(?:\.\d)?\s+(\d{3})", line)
    return int(m.group(1)) if m else None


def parse_multistatus(body: bytes) -> tuple[list[DavResponse], str | None]:
    """The responses of a 207 body, and its DAV:sync-token (None if absent)."""
    root = etree.fromstring(body, parser=etree.XMLParser(resolve_entities=False, no_network=True))
    out: list[DavResponse] = []
    for resp in root.iter(_q(DAV, "response")):
        href = unquote(resp.findtext(_q(DAV, "href")) or "")
        props: dict[str, etree._Element] = {}
        for ps in resp.findall(_q(DAV, "propstat")):
            if _status(ps.findtext(_q(DAV, "status"))) == 200:
                prop = ps.find(_q(DAV, "prop"))
                if prop is not None:
                    for p in prop:
                        if isinstance(p.tag, str):
                            props[p.tag] = p
        out.append(DavResponse(href, _status(resp.findtext(_q(DAV, "status"))), props))
    token = root.findtext(_q(DAV, "sync-token"))
    return out, token


def _propfind_body(names: Iterable[str]) -> bytes:
    root = etree.Element(_q(DAV, "propfind"), nsmap={"D": DAV})
    prop = etree.SubElement(root, _q(DAV, "prop"))
    for n in names:
        etree.SubElement(prop, n)
    return bytes(etree.tostring(root, xml_declaration=True, encoding="utf-8"))


# -- the models -----------------------------------------------------------------------


@dataclass
class Deletion:
    """A local deletion a model performed: which item, in which sync, and why."""

    href: str
    sync: int
    reason: str  # "server-404" (sync-collection said so), "not-listed" (full listing), "user"


@dataclass
class SyncResult:
    """What one sync did. ``outcome``: ok | unchanged | aborted (503, data kept) |
    failed (another error, data kept)."""

    client: str
    number: int
    outcome: str
    status: int | None = None
    reset: bool = False
    deleted: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)


class SyncFailed(Exception):
    def __init__(self, status: int, outcome: str = "failed") -> None:
        super().__init__(f"HTTP {status}")
        self.status = status
        self.outcome = outcome


class ClientModel:
    """Shared plumbing: the local copy, HTTP, listing, downloading, recording."""

    name = "model"
    kinds: tuple[str, ...] = KINDS
    multiget_batch = 10
    get_single = False  # GET (not multiget) when only one item is to be fetched
    user_agent = "safehold-test-model"

    def __init__(self, base_url: str, collection: str, kind: str, user: str = "alice",
                 password: str = PASSWORD) -> None:
        if kind not in self.kinds:
            raise ValueError(f"{self.name} does not sync a {kind}")
        self.collection = collection if collection.endswith("/") else collection + "/"
        self.kind = kind
        self.http = httpx.Client(base_url=base_url, auth=(user, password), timeout=60.0,
                                 headers={"User-Agent": self.user_agent})
        self.local: dict[str, tuple[str, bytes]] = {}
        self.token: str | None = None
        self.ctag: str | None = None
        self.deletions: list[Deletion] = []
        self.downloads: list[str] = []
        self.results: list[SyncResult] = []
        self.resets = 0
        self._current: SyncResult | None = None

    # context management: every model owns an httpx client
    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> ClientModel:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def retarget(self, base_url: str) -> None:
        """Point the model at another server (same paths): for error-handling tests."""
        auth, headers = self.http.auth, self.http.headers
        self.http.close()
        self.http = httpx.Client(base_url=base_url, auth=auth, timeout=60.0, headers=headers)

    def __repr__(self) -> str:
        return f"<{self.name} {self.collection} {len(self.local)} items>"

    # -- one sync -------------------------------------------------------------------

    def sync(self) -> SyncResult:
        result = SyncResult(self.name, len(self.results) + 1, "ok")
        self._current = result
        try:
            self._sync()
        except SyncFailed as exc:
            result.outcome, result.status = exc.outcome, exc.status
        finally:
            self._current = None
        self.results.append(result)
        return result

    def _sync(self) -> None:
        raise NotImplementedError

    def _unchanged(self) -> None:
        assert self._current is not None
        self._current.outcome = "unchanged"

    def _reset(self) -> None:
        assert self._current is not None
        self._current.reset = True
        self.resets += 1
        self.token = None

    # -- local copy -----------------------------------------------------------------

    def _delete_local(self, href: str, reason: str) -> None:
        if href in self.local:
            del self.local[href]
            number = self._current.number if self._current else len(self.results)
            self.deletions.append(Deletion(href, number, reason))
            if self._current is not None:
                self._current.deleted.append(href)

    def _store(self, href: str, etag: str, data: bytes) -> None:
        self.local[href] = (etag, data)
        self.downloads.append(href)
        if self._current is not None:
            self._current.downloaded.append(href)

    def _prune(self, listed: Iterable[str]) -> None:
        """The step every client runs after a full listing: whatever the server did
        not list is deleted locally. This is the step that wipes phones."""
        keep = set(listed)
        for href in sorted(self.local):
            if href not in keep:
                self._delete_local(href, "not-listed")

    def delete_upstream(self, href: str) -> int:
        """The user deletes an item on the device; the client uploads the deletion
        (DELETE with If-Match, as DAVx5 and Thunderbird do) and drops it locally."""
        etag, _ = self.local[href]
        r = self.http.delete(href, headers={"If-Match": etag})
        if r.status_code < 300:
            self._delete_local(href, "user")
        return r.status_code

    def delete_upstream_many(self, hrefs: list[str], workers: int = 4) -> dict[str, int]:
        """``delete_upstream`` for many items, uploaded ``workers`` at a time (a faster
        phone; the server sees the same burst). Returns the status of each DELETE."""
        def one(href: str) -> int:
            return self.http.delete(href, headers={"If-Match": self.local[href][0]}).status_code

        with ThreadPoolExecutor(workers) as pool:
            statuses = dict(zip(hrefs, pool.map(one, hrefs), strict=True))
        for href in hrefs:
            if statuses[href] < 300:
                self._delete_local(href, "user")
        return statuses

    # -- requests -------------------------------------------------------------------

    def _check(self, r: httpx.Response, ok: int = 207) -> None:
        if r.status_code == 503:
            raise SyncFailed(503, "aborted")
        if r.status_code != ok:
            raise SyncFailed(r.status_code)

    def _collection_props(self) -> DavResponse:
        """PROPFIND Depth 0 on the collection for its sync state."""
        r = self.http.request("PROPFIND", self.collection, headers={"Depth": "0"},
                              content=_propfind_body([_q(DAV, "sync-token"), _q(CS, "getctag"),
                                                      _q(DAV, "resourcetype")]))
        self._check(r)
        responses, _ = parse_multistatus(r.content)
        for resp in responses:
            if resp.href.rstrip("/") == self.collection.rstrip("/"):
                return resp
        raise SyncFailed(r.status_code)

    def _members(self, responses: list[DavResponse]) -> list[DavResponse]:
        return [x for x in responses if x.href.rstrip("/") != self.collection.rstrip("/")
                and not x.href.endswith("/")]

    def _listing(self) -> dict[str, str]:
        """PROPFIND Depth 1 with getetag: {href: etag} of every member."""
        r = self.http.request("PROPFIND", self.collection, headers={"Depth": "1"},
                              content=_propfind_body([_q(DAV, "getetag"), _q(DAV, "resourcetype")]))
        self._check(r)
        responses, _ = parse_multistatus(r.content)
        return {x.href: x.text(_q(DAV, "getetag")) or "" for x in self._members(responses)}

    def _download(self, hrefs: list[str]) -> None:
        """Fetch items by multiget in batches (DAVx5: GET when a batch holds one)."""
        for i in range(0, len(hrefs), self.multiget_batch):
            batch = hrefs[i:i + self.multiget_batch]
            if len(batch) == 1 and self.get_single:
                r = self.http.get(batch[0])
                if r.status_code == 404:
                    continue  # gone since it was listed: the next sync reports it
                self._check(r, 200)
                self._store(batch[0], r.headers.get("etag", ""), r.content)
                continue
            root = etree.Element(MULTIGET[self.kind], nsmap={"D": DAV, "C": CALDAV, "CR": CARDDAV})
            prop = etree.SubElement(root, _q(DAV, "prop"))
            etree.SubElement(prop, _q(DAV, "getetag"))
            etree.SubElement(prop, DATA_PROP[self.kind])
            for h in batch:
                etree.SubElement(root, _q(DAV, "href")).text = h
            r = self.http.request("REPORT", self.collection, headers={"Depth": "1"},
                                  content=etree.tostring(root, xml_declaration=True,
                                                         encoding="utf-8"))
            self._check(r)
            responses, _ = parse_multistatus(r.content)
            for resp in responses:
                data = resp.text(DATA_PROP[self.kind])
                if resp.status == 404 or data is None:
                    continue
                self._store(resp.href, resp.text(_q(DAV, "getetag")) or "", data.encode("utf-8"))

    def _fetch_changed(self, remote: dict[str, str]) -> None:
        """Download what is new or has another ETag than the local copy."""
        wanted = [h for h, etag in sorted(remote.items())
                  if h not in self.local or self.local[h][0] != etag]
        self._download(wanted)

    def _full_listing_sync(self) -> None:
        """List everything (PROPFIND Depth 1), download what changed, delete locally
        what the server did not list."""
        listed = self._listing()
        self._fetch_changed(listed)
        self._prune(listed)

    def _sync_collection(self, token: str | None) -> tuple[httpx.Response, list[DavResponse], str | None]:
        """RFC 6578 sync-collection from ``token`` (None: initial), following 507
        truncation. Returns the first non-207 response with no data, or the merged
        responses and the final token."""
        merged: list[DavResponse] = []
        while True:
            root = etree.Element(_q(DAV, "sync-collection"), nsmap={"D": DAV})
            etree.SubElement(root, _q(DAV, "sync-token")).text = token or ""
            etree.SubElement(root, _q(DAV, "sync-level")).text = "1"
            prop = etree.SubElement(root, _q(DAV, "prop"))
            etree.SubElement(prop, _q(DAV, "getetag"))
            r = self.http.request("REPORT", self.collection, headers={"Depth": "0"},
                                  content=etree.tostring(root, xml_declaration=True,
                                                         encoding="utf-8"))
            if r.status_code != 207:
                return r, [], None
            responses, new_token = parse_multistatus(r.content)
            truncated = any(x.status == 507 and x.href.rstrip("/") == self.collection.rstrip("/")
                            for x in responses)
            merged.extend(self._members(responses))
            token = new_token
            if not truncated:
                return r, merged, token

    def _apply_delta(self, responses: list[DavResponse]) -> None:
        """Apply a sync-collection delta: 404 members are deleted locally (the server
        said so), members with another ETag are downloaded."""
        changed: dict[str, str] = {}
        for resp in responses:
            if resp.status == 404:
                changed.pop(resp.href, None)
                self._delete_local(resp.href, "server-404")
            else:
                changed[resp.href] = resp.text(_q(DAV, "getetag")) or ""
        self._fetch_changed(changed)


class DAVx5(ClientModel):
    """DAVx5 (bitfire, Android), modelled on its documented sync algorithm and
    ``SyncManager``: it reads the collection's sync state (sync-token/getctag) first and
    skips the sync when it has not changed; with a token it asks sync-collection for
    the delta, deletes what comes back 404 and downloads members whose ETag changed
    (GET for a single item, multiget in batches of 10). When the server rejects the
    token (403/409 DAV:valid-sync-token, or any other token error) it resets: a full
    listing (PROPFIND Depth 1 + multiget) after which every local item the server did
    not list is deleted ("deleteNotPresentRemotely"). On 503 it aborts the sync and
    keeps local data (retrying after Retry-After); other errors fail the sync and
    keep local data. Its first sync is the full listing."""

    name = "DAVx5"
    get_single = True
    user_agent = "DAVx5/4.4 (model; safehold tests)"

    def _sync(self) -> None:
        state = self._collection_props()
        remote = state.text(_q(DAV, "sync-token")) or state.text(_q(CS, "getctag"))
        if self.token is not None and remote == self.token:
            self._unchanged()
            return
        if self.token is not None:
            r, responses, new_token = self._sync_collection(self.token)
            if r.status_code == 207:
                self._apply_delta(responses)
                self.token = new_token
                return
            if r.status_code == 503:
                raise SyncFailed(503, "aborted")
            if r.status_code in (403, 409) or b"valid-sync-token" in r.content:
                self._reset()
            else:
                raise SyncFailed(r.status_code)
        # Initial sync, or after a reset: state first, so a change racing the listing
        # is seen next time rather than lost.
        self._full_listing_sync()
        self.token = remote


class ThunderbirdCalendar(ClientModel):
    """Thunderbird's calendar provider (calDavCalendar), modelled: each refresh reads
    CalendarServer's getctag and does nothing if it is unchanged; otherwise it runs a
    WebDAV sync (sync-collection) with its token. On ANY 4xx from sync-collection it
    discards the token and does a full resync (sync-collection without a token), after
    which every cached item the server did not report is deleted. Other errors (5xx)
    put the calendar in an error state and keep the cached items."""

    name = "Thunderbird-Calendar"
    kinds = ("calendar",)
    multiget_batch = 100
    user_agent = "Mozilla/5.0 Thunderbird/128.0 (model; safehold tests)"

    def _sync(self) -> None:
        state = self._collection_props()
        ctag = state.text(_q(CS, "getctag"))
        if self.token is not None and ctag is not None and ctag == self.ctag:
            self._unchanged()
            return
        if self.token is not None:
            r, responses, new_token = self._sync_collection(self.token)
            if r.status_code == 207:
                self._apply_delta(responses)
                self.token, self.ctag = new_token, ctag
                return
            if 400 <= r.status_code <= 499:
                self._reset()
            else:
                self._check(r)
        r, responses, new_token = self._sync_collection(None)
        self._check(r)
        members = {x.href: x.text(_q(DAV, "getetag")) or "" for x in responses if x.status != 404}
        self._fetch_changed(members)
        self._prune(members)
        self.token, self.ctag = new_token, ctag


class ThunderbirdCardDAV(ClientModel):
    """Thunderbird's address book (CardDAVDirectory), modelled: with a sync token it
    sends sync-collection and handles only two statuses specially: 207 (apply the
    delta) and 400 (forget the token and fetch everything: PROPFIND Depth 1 with
    getetag, multiget, then delete every local card the server did not list). Any
    other status fails the sync and keeps the cards (and the old token, so a server
    that answers 403 to a token leaves Thunderbird stuck, never wiped). The first sync
    fetches everything."""

    name = "Thunderbird-CardDAV"
    kinds = ("addressbook",)
    multiget_batch = 100
    user_agent = "Mozilla/5.0 Thunderbird/128.0 CardDAV (model; safehold tests)"

    def _sync(self) -> None:
        if self.token is not None:
            r, responses, new_token = self._sync_collection(self.token)
            if r.status_code == 207:
                self._apply_delta(responses)
                self.token = new_token
                return
            if r.status_code != 400:
                raise SyncFailed(r.status_code, "aborted" if r.status_code == 503 else "failed")
            self._reset()
        token = self._collection_props().text(_q(DAV, "sync-token"))
        self._full_listing_sync()
        self.token = token


class Evolution(ClientModel):
    """Evolution (evolution-data-server's CalDAV/CardDAV backends), modelled: no sync
    token; when the collection's getctag differs from the last one seen it lists the
    collection (PROPFIND Depth 1 with getetag), downloads new and changed items by
    multiget and removes every local item that was not listed. Any error keeps the
    local data."""

    name = "Evolution"
    multiget_batch = 100
    user_agent = "Evolution/3.50 (model; safehold tests)"

    def _sync(self) -> None:
        ctag = self._collection_props().text(_q(CS, "getctag"))
        if ctag is not None and ctag == self.ctag:
            self._unchanged()
            return
        self._full_listing_sync()
        self.ctag = ctag


MODELS: tuple[type[ClientModel], ...] = (DAVx5, ThunderbirdCalendar, ThunderbirdCardDAV, Evolution)


def models_for(base_url: str, collection: str, kind: str, user: str = "alice",
               password: str = PASSWORD) -> list[ClientModel]:
    """One instance of every modelled client that syncs a ``kind`` collection."""
    return [m(base_url, collection, kind, user, password) for m in MODELS if kind in m.kinds]


class Fleet:
    """The devices that sync one collection; closes their HTTP clients on exit."""

    def __init__(self, base_url: str, collection: str, kind: str, user: str = "alice",
                 password: str = PASSWORD) -> None:
        self.collection = collection
        self.kind = kind
        self.models = models_for(base_url, collection, kind, user, password)

    def sync(self) -> list[SyncResult]:
        return [m.sync() for m in self.models]

    def close(self) -> None:
        for m in self.models:
            m.close()

    def __enter__(self) -> Fleet:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[ClientModel]:
        return iter(self.models)


# -- the server's truth ---------------------------------------------------------------


def server_state(client: httpx.Client, collection: str) -> dict[str, tuple[str, bytes]]:
    """What the server holds in ``collection``: {href: (etag, GET bytes)} of every
    member item, from PROPFIND Depth 1 and a GET of each."""
    r = client.request("PROPFIND", collection, headers={"Depth": "1"},
                       content=_propfind_body([_q(DAV, "getetag"), _q(DAV, "resourcetype")]))
    assert r.status_code == 207, (collection, r.status_code, r.text)
    responses, _ = parse_multistatus(r.content)
    out: dict[str, tuple[str, bytes]] = {}
    for resp in responses:
        if resp.href.rstrip("/") == collection.rstrip("/") or resp.href.endswith("/"):
            continue
        g = client.get(resp.href)
        assert g.status_code == 200, (resp.href, g.status_code)
        assert g.headers["etag"] == resp.text(_q(DAV, "getetag")), resp.href
        out[resp.href] = (g.headers["etag"], g.content)
    return out


def dav_error(r: httpx.Response, status: int, namespace: str, condition: str) -> ET.Element:
    """The DAV:error body of a refusal, checked: status, no traceback, the precondition
    element, and a message saying what is wrong."""
    assert r.status_code == status, (r.status_code, r.text[:600])
    assert b"Traceback" not in r.content and b'File "' not in r.content, r.text[:2000]
    assert r.headers["content-type"].startswith("application/xml"), r.headers
    root = ET.fromstring(r.content)
    assert root.tag == "{DAV:}error", r.text
    assert root.find(f"{{{namespace}}}{condition}") is not None, r.text
    message = root.findtext("{DAV:}responsedescription")
    assert message and len(message.strip()) > 10, f"no message saying what is wrong: {r.text}"
    return root


def sync_token(client: httpx.Client, collection: str) -> str:
    r = client.request("PROPFIND", collection, headers={"Depth": "0"},
                       content=_propfind_body([_q(DAV, "sync-token")]))
    assert r.status_code == 207, (collection, r.status_code)
    responses, _ = parse_multistatus(r.content)
    token = responses[0].text(_q(DAV, "sync-token"))
    assert token, r.text
    return token


def token_seq(token: str) -> tuple[str, int]:
    """(lineage, seq) of a safehold token "urn:x-safehold:sync:LINEAGE:SEQ"."""
    head, _, seq = token.rpartition(":")
    return head, int(seq)


# -- vdirsyncer, the real program ------------------------------------------------------

VDIRSYNCER = Path(sys.executable).parent / "vdirsyncer"


def uid_of(data: bytes) -> str:
    m = re.search(rb"^UID:(.*?)\r?$", data, re.MULTILINE)
    assert m, data
    return m.group(1).decode()


class Vdirsyncer:
    """The real vdirsyncer (PyPI), syncing one collection two ways with a local
    filesystem storage. Every file it removes locally during ``sync`` is recorded in
    ``deletions`` (by the UID it held)."""

    name = "vdirsyncer"

    def __init__(self, tmp: Path, base_url: str, collection: str, kind: str, user: str = "alice",
                 password: str = PASSWORD, conflict_resolution: str | None = None) -> None:
        self.kind = kind
        self.ext = ".ics" if kind == "calendar" else ".vcf"
        self.local = tmp / "local"
        self.local.mkdir(parents=True)
        self.config = tmp / "config"
        resolution = f'conflict_resolution = "{conflict_resolution}"' if conflict_resolution else ""
        self.config.write_text(f"""
[general]
status_path = "{tmp / 'status'}"

[pair p]
a = "local"
b = "remote"
collections = null
{resolution}

[storage local]
type = "filesystem"
path = "{self.local}"
fileext = "{self.ext}"

[storage remote]
type = "{'caldav' if kind == 'calendar' else 'carddav'}"
url = "{base_url}{collection}"
username = "{user}"
password = "{password}"
""")
        self.deletions: list[tuple[int, str]] = []
        self.runs = 0
        self.run("discover")

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run([str(VDIRSYNCER), "-c", str(self.config), *args], capture_output=True,
                              text=True, stdin=subprocess.DEVNULL, timeout=300)
        assert proc.returncode == 0, proc.stdout + proc.stderr
        return proc

    def items(self) -> dict[str, bytes]:
        """{UID: bytes} of the local files."""
        return {uid_of(p.read_bytes()): p.read_bytes()
                for p in self.local.iterdir() if p.suffix == self.ext}

    def sync(self) -> list[str]:
        """Run `vdirsyncer sync`; returns the UIDs it deleted locally."""
        self.runs += 1
        before = self.items()
        self.run("sync")
        gone = sorted(set(before) - set(self.items()))
        self.deletions.extend((self.runs, uid) for uid in gone)
        return gone

