"""Importing into an account: an export archive (collections with their properties, items
byte for byte at their original names, each checked against the manifest's sha256), or
the objects split out of a plain .ics or .vcf file.

Every item goes through the validation of a DAV PUT (core.items.index_for, with the
calendar's supported components) and is written with If-None-Match semantics: nothing
that exists is ever overwritten. An existing item with the same bytes is ``identical``;
anything else at its path, or a UID the collection already uses, is a
``skipped-conflict``. A dry run makes the same decisions and writes nothing.
"""

from __future__ import annotations

import hashlib
import zipfile
import zlib
from dataclasses import dataclass
from pathlib import Path

from safehold.caldav.props import supported_components
from safehold.cli.progress import Progress
from safehold.core import portability as port
from safehold.core import users
from safehold.core.items import MAX_ITEM_BYTES, InvalidItem, index_for
from safehold.core.model import (
    ADDRESSBOOK, CALENDAR, COLLECTION_KINDS, ITEM, Actor, Body, ItemIndex, Principal, parent_of,
)
from safehold.dav.backend import Node
from safehold.errors import ArchiveError, DomainError, PreconditionFailed, UidConflict
from safehold.http.davbackend import MEDIA_TYPE
from safehold.store import blobs
from safehold.store.blobs import Spool
from safehold.store.repo import NewItem, Store

READ_CHUNK = 1 << 20
# A .ics or .vcf is written in batches of at most this many items (or bytes) per write
# transaction: an import of 5,000 events must never keep another user's PUT waiting for
# SQLite's one writer (or PostgreSQL's writers' lock) for long. Each batch takes ~10–60 ms;
# between batches the next items are parsed and validated without holding the lock.
BATCH_ITEMS = 20
BATCH_BYTES = 1 << 20
SMALL = 4 << 20  # bodies up to this size are held in memory; larger ones are spooled to disk
_INDEXED = (CALENDAR, ADDRESSBOOK)


@dataclass
class _Payload:
    """An item's bytes: in memory when small, else spooled to disk (with its hash)."""

    sha256: str
    size: int
    data: bytes | None = None
    spool: Spool | None = None

    @classmethod
    def of(cls, data: bytes) -> _Payload:
        return cls(hashlib.sha256(data).hexdigest(), len(data), data=data)

    def read(self) -> bytes:
        if self.data is not None:
            return self.data
        assert self.spool is not None
        with open(self.spool.path, "rb") as fh:
            return fh.read()

    def for_store(self) -> Body | bytes:
        if self.data is not None:
            return self.data
        assert self.spool is not None
        return Body(self.spool.path, self.size, self.sha256)

    def discard(self) -> None:
        if self.spool is not None:
            self.spool.discard()


@dataclass(frozen=True)
class _Existing:
    kind: str
    props: dict[str, str]
    sha256: str | None = None


class Importer:
    def __init__(self, store: Store, principal: Principal, report: port.ImportReport,
                 progress: Progress, tmp_dir: Path, actor: Actor) -> None:
        self.store = store
        self.principal = principal
        self.report = report
        self.progress = progress
        self.tmp_dir = tmp_dir
        self.actor = actor
        self.dry_run = report.dry_run
        self._planned: dict[str, _Existing] = {}  # what a dry run would have created
        self._blocked: list[str] = []  # conflicting collections: nothing is imported below them
        self._uids: dict[str, dict[str, str]] = {}  # dry run: collection -> UID -> path
        self._known: dict[str, _Existing] = {}  # what a .ics/.vcf's collection held at the start
        self._pending: list[NewItem] = []  # validated items waiting for their batch
        self._pending_bytes = 0

    # -- an export archive -----------------------------------------------------------

    def archive(self, path: Path) -> None:
        try:
            zf = zipfile.ZipFile(path)
        except (zipfile.BadZipFile, OSError) as exc:
            raise ArchiveError(f"{path} is not a readable zip file ({exc})") from exc
        with zf:
            try:
                raw = zf.read(port.MANIFEST)
            except KeyError as exc:
                raise ArchiveError(f"{path} has no {port.MANIFEST}, so it is not a safehold export; "
                                   "to import calendars or contacts, pass a .ics or .vcf file") from exc
            except (zipfile.BadZipFile, zlib.error) as exc:
                raise ArchiveError(f"{port.MANIFEST} in {path} is damaged ({exc})") from exc
            manifest = port.Manifest.from_json(raw)
            for entry in sorted(manifest.collections, key=lambda c: (c.path.count("/"), c.path)):
                self._collection(entry, manifest.user)
            self.progress.start(len(manifest.items))
            for item in manifest.items:
                self._archived_item(zf, item, manifest.user)
                self.progress.step()

    def _collection(self, entry: port.CollectionEntry, source_user: str) -> None:
        try:
            path = port.retarget(entry.path, source_user, self.principal.name)
        except ArchiveError as exc:
            self.report.note("collection", "invalid", entry.path, str(exc))
            return
        what = port.url_path(path, True)
        if entry.kind not in COLLECTION_KINDS:
            self.report.note("collection", "invalid", what, f"unknown collection kind {entry.kind!r}")
            return
        blocker = self._blocker(path)
        if blocker is not None:
            self._blocked.append(path)
            self.report.note("collection", "skipped-conflict", what, f"inside {blocker}, which conflicts")
            return
        existing = self._at(path)
        if existing is not None:
            if existing.kind != entry.kind:
                self._blocked.append(path)
                self.report.note("collection", "skipped-conflict", what,
                                 f"a {existing.kind} exists here; nothing below it is imported")
            elif existing.props == entry.properties:
                self.report.note("collection", "identical", what)
            elif self._replaceable(path, existing, entry.properties):
                self._set_props(path, existing, entry)
                self.report.note("collection", "updated", what,
                                 "took the archive's properties (it had only defaults or fewer)")
            else:
                self.report.note("collection", "skipped-conflict", what,
                                 "exists with other properties; kept them (its items are imported)")
            return
        depth = path.count("/") + 1
        parent = self._at(parent_of(path)) if depth > 2 else None
        if depth > 2 and (parent is None or parent.kind == ITEM):
            self.report.note("collection", "invalid", what, "its parent collection is missing")
            return
        if parent is not None and parent.kind in _INDEXED and entry.kind != "collection":
            self.report.note("collection", "invalid", what, f"a {entry.kind} cannot be inside a {parent.kind}")
            return
        if self.dry_run:
            self._planned[path] = _Existing(entry.kind, entry.properties)
        else:
            try:
                self.store.mkcol(path, self.principal.id, self.actor, dict(entry.properties),
                                 root=depth <= 2, kind=entry.kind)
            except DomainError as exc:
                self._blocked.append(path)
                self.report.note("collection", "skipped-conflict", what, str(exc))
                return
        self.report.note("collection", "created", what)

    def _replaceable(self, path: str, existing: _Existing, props: dict[str, str]) -> bool:
        """May the archive's properties replace ``existing``'s? Only when that overwrites
        nothing a user chose: the archive has every existing property with the same
        value, or the collection is an empty one with a new account's defaults."""
        if all(props.get(name) == value for name, value in existing.props.items()):
            return True
        defaults = next((dict(p) for home, name, kind, p in users.DEFAULT_COLLECTIONS
                         if path == f"{home}/{self.principal.name}/{name}" and kind == existing.kind),
                        None)
        return existing.props == defaults and not self.store.children(path)

    def _set_props(self, path: str, existing: _Existing, entry: port.CollectionEntry) -> None:
        if self.dry_run:
            self._planned[path] = _Existing(existing.kind, entry.properties)
            return
        self.store.proppatch(path, dict(entry.properties),
                             [name for name in existing.props if name not in entry.properties],
                             self.actor)

    def _archived_item(self, zf: zipfile.ZipFile, entry: port.ItemEntry, source_user: str) -> None:
        try:
            path = port.retarget(entry.path, source_user, self.principal.name)
        except ArchiveError as exc:
            self.report.note("item", "invalid", entry.path, str(exc))
            return
        what = port.url_path(path)
        if self._precheck(path, what):
            return
        try:
            payload = self._read_member(zf, entry)
        except ArchiveError as exc:
            self.report.note("item", "invalid", what, str(exc))
            return
        try:
            self._item(path, payload, entry.content_type, entry.properties)
        finally:
            payload.discard()

    def _read_member(self, zf: zipfile.ZipFile, entry: port.ItemEntry) -> _Payload:
        """The member's bytes, checked against the manifest's size and sha256. Reading
        stops at the size the manifest promises, so a doctored archive cannot fill the disk."""
        digest = hashlib.sha256()
        size = 0
        held: list[bytes] = []
        spool = Spool(self.tmp_dir) if entry.size > SMALL else None
        try:
            with zf.open(entry.member) as fh:
                while chunk := fh.read(READ_CHUNK):
                    size += len(chunk)
                    if size > entry.size:
                        break
                    digest.update(chunk)
                    if spool is None:
                        held.append(chunk)
                    else:
                        spool.write(chunk)
            if spool is not None:
                spool.finish()
            if size != entry.size or digest.hexdigest() != entry.sha256:
                raise ArchiveError(f"{entry.member} does not match the manifest's size and sha256: "
                                   "the archive is damaged")
        except BaseException as exc:
            if spool is not None:
                spool.discard()
            if isinstance(exc, KeyError):
                raise ArchiveError(f"{entry.member} is missing from the archive") from exc
            if isinstance(exc, (zipfile.BadZipFile, zlib.error, EOFError)):
                raise ArchiveError(f"{entry.member} is damaged in the archive ({exc})") from exc
            raise
        return _Payload(entry.sha256, size, b"".join(held) if spool is None else None, spool)

    # -- objects split out of a .ics or .vcf --------------------------------------------

    def objects(self, objects: list[port.SplitObject], collection: str, kind: str) -> None:
        target = self._at(collection)
        what = port.url_path(collection, True)
        if target is None or target.kind != kind:
            raise ArchiveError(f"{what} is not {'a calendar' if kind == CALENDAR else 'an address book'}"
                               " of this user; create it with a client, or name one with --into")
        # What is there, read once: one query instead of one per object (the write
        # still checks If-None-Match, so an item created meanwhile is never overwritten).
        self._known = {res.path: _Existing(res.kind, res.props, res.blob_hash)
                       for res in self.store.children(collection)}
        self._known[collection] = target
        self.progress.start(len(objects))
        try:
            for obj in objects:
                if obj.error is not None or obj.data is None:
                    self.report.note("item", "invalid", obj.label, obj.error or "empty")
                    self.progress.step()
                elif not self._item(f"{collection}/{obj.name}", _Payload.of(obj.data),
                                    MEDIA_TYPE[kind], None, batched=True):
                    self.progress.step()
                elif len(self._pending) >= BATCH_ITEMS or self._pending_bytes >= BATCH_BYTES:
                    self._flush()
            self._flush()
        finally:
            self._known = {}

    def _flush(self) -> None:
        """Write the pending items in one short transaction (see BATCH_ITEMS)."""
        if not self._pending:
            return
        pending, self._pending, self._pending_bytes = self._pending, [], 0
        outcomes = self.store.put_new_many(self.principal.id, pending, self.actor)
        for item, error in zip(pending, outcomes, strict=True):
            what = port.url_path(item.path)
            if error is None:
                self.report.note("item", "created", what)
            elif isinstance(error, UidConflict):
                self.report.note("item", "skipped-conflict", what,
                                 f"UID {item.index.uid if item.index else ''!r} is already used by "
                                 f"{port.url_path(error.path)}")
            elif isinstance(error, PreconditionFailed):
                self.report.note("item", "skipped-conflict", what,
                                 "was created meanwhile by someone else")
            else:
                self.report.note("item", "invalid", what, str(error))
        self.progress.step(len(pending))

    # -- one item ----------------------------------------------------------------------

    def _precheck(self, path: str, what: str) -> bool:
        """Report items that cannot go in whatever their bytes are; True if reported."""
        blocker = self._blocker(path)
        if blocker is not None:
            self.report.note("item", "skipped-conflict", what, f"inside {blocker}, which conflicts")
            return True
        parent = self._at(parent_of(path))
        if parent is None or parent.kind == ITEM:
            self.report.note("item", "invalid", what,
                             f"its collection {port.url_path(parent_of(path), True)} does not exist")
            return True
        return False

    def _item(self, path: str, payload: _Payload, content_type: str | None,
              props: dict[str, str] | None, *, batched: bool = False) -> bool:
        """Store one item unless something is in the way. ``props`` None: the source
        has no properties, so existing ones do not make a difference. ``batched``: a
        small item without properties joins the pending batch (written by _flush, which
        reports it); otherwise it is written now. Returns whether it is pending."""
        what = port.url_path(path)
        existing = self._at(path)
        if existing is not None:
            if existing.kind != ITEM:
                self.report.note("item", "skipped-conflict", what, f"a {existing.kind} exists at this path")
            elif existing.sha256 != payload.sha256:
                self.report.note("item", "skipped-conflict", what,
                                 "an item with other bytes exists at this path; kept it")
            elif props is not None and existing.props != props:
                self.report.note("item", "skipped-conflict", what,
                                 "the same bytes exist with other properties; kept them")
            else:
                self.report.note("item", "identical", what)
            return False
        parent_path = parent_of(path)
        parent = self._at(parent_path)
        assert parent is not None  # _precheck
        index: ItemIndex | None = None
        if parent.kind in _INDEXED:
            try:
                index = self._validate(parent, payload)
            except InvalidItem as exc:
                self.report.note("item", "invalid", what, str(exc))
                return False
            content_type = content_type or MEDIA_TYPE[parent.kind]
        elif path.split("/")[0] in ("calendars", "addressbooks"):
            self.report.note("item", "invalid", what,
                             "items belong in a calendar or an address book, not here")
            return False
        if self.dry_run:
            self._dry_run_put(path, payload, index, props)
            return False
        if batched and payload.data is not None and not props and payload.size <= blobs.CHUNK:
            self._pending.append(NewItem(path, payload.data, content_type, index))
            self._pending_bytes += payload.size
            self._known[path] = _Existing(ITEM, {}, payload.sha256)  # a second object of that name
            return True
        try:
            self.store.put(path, self.principal.id, payload.for_store(), content_type, self.actor,
                           if_none_match=True, index=index)
        except UidConflict as exc:
            self.report.note("item", "skipped-conflict", what,
                             f"UID {index.uid if index else ''!r} is already used by "
                             f"{port.url_path(exc.path)}")
            return False
        except PreconditionFailed:
            self.report.note("item", "skipped-conflict", what, "was created meanwhile by someone else")
            return False
        except DomainError as exc:
            self.report.note("item", "invalid", what, str(exc))
            return False
        if props:
            self.store.proppatch(path, dict(props), [], self.actor)
        self.report.note("item", "created", what)
        return False

    def _validate(self, parent: _Existing, payload: _Payload) -> ItemIndex | None:
        """What a DAV PUT into the collection checks (http.davbackend._validate)."""
        if payload.size > MAX_ITEM_BYTES:
            ns = "urn:ietf:params:xml:ns:caldav" if parent.kind == CALENDAR else "urn:ietf:params:xml:ns:carddav"
            raise InvalidItem(f"items are limited to {MAX_ITEM_BYTES} bytes", "max-resource-size", ns)
        if parent.kind == CALENDAR:
            node = Node(href="", is_collection=True, etag="", size=0, content_type=None,
                        created_at=0.0, modified_at=0.0, dead_props=parent.props, kind=CALENDAR)
            return index_for(CALENDAR, payload.read(), supported_components(node))
        return index_for(parent.kind, payload.read())

    def _dry_run_put(self, path: str, payload: _Payload, index: ItemIndex | None,
                     props: dict[str, str] | None) -> None:
        what = port.url_path(path)
        if index is not None:
            uids = self._known_uids(parent_of(path))
            other = uids.get(index.uid)
            if other is not None and other != path:
                self.report.note("item", "skipped-conflict", what,
                                 f"UID {index.uid!r} is already used by {port.url_path(other)}")
                return
            uids[index.uid] = path
        self._planned[path] = _Existing(ITEM, dict(props or {}), payload.sha256)
        self.report.note("item", "created", what)

    # -- what is there -------------------------------------------------------------------

    def _at(self, path: str) -> _Existing | None:
        planned = self._planned.get(path) or self._known.get(path)
        if planned is not None:
            return planned
        if self._known and parent_of(path) in self._known:
            return None  # a new name in the collection read at the start
        res = self.store.get(path)
        if res is None:
            return None
        return _Existing(res.kind, res.props, res.blob_hash)

    def _blocker(self, path: str) -> str | None:
        for blocked in self._blocked:
            if path.startswith(blocked + "/"):
                return port.url_path(blocked, True)
        return None

    def _known_uids(self, collection: str) -> dict[str, str]:
        """Dry run only: the UIDs the collection holds (the store checks them itself when
        writing), learnt by indexing its items once."""
        if collection not in self._uids:
            found: dict[str, str] = {}
            parent = self._at(collection)
            for res in self.store.children(collection) if parent is not None else []:
                if res.is_collection or parent is None or parent.kind not in _INDEXED:
                    continue
                try:
                    index = index_for(parent.kind, self.store.read_bytes(res))
                except InvalidItem:
                    continue
                if index is not None:
                    found.setdefault(index.uid, res.path)
            self._uids[collection] = found
        return self._uids[collection]
