"""Writing an export archive (layout: core.portability) from the store.

Streaming: bodies go from the store to the zip one chunk at a time, and a merged
calendar or address book is spooled to a temporary file (its time zones and header
depend on every object, and must come first). Only the listing of the account, not its
content, is held in memory. The archive is written beside its final name and renamed into
place once complete and fsync'd, so a failed export never leaves a plausible-looking zip.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
import time
import zipfile
from collections.abc import Callable
from pathlib import Path
from typing import IO

from lxml import etree

from safehold import __version__
from safehold.cli.progress import Progress
from safehold.core import portability as port
from safehold.core.model import ADDRESSBOOK, CALENDAR, Resource, parent_of
from safehold.dav import xml
from safehold.errors import ArchiveError
from safehold.store.repo import Store

DISPLAYNAME = "{DAV:}displayname"
CALENDAR_COLOR = "{http://apple.com/ns/ical/}calendar-color"
COPY_CHUNK = 1 << 20
_EXTENSION = {CALENDAR: ".ics", ADDRESSBOOK: ".vcf"}
_FOLDER = {CALENDAR: "calendars", ADDRESSBOOK: "addressbooks"}


def _zipinfo(member: str, when: float, size: int = 0) -> zipfile.ZipInfo:
    stamp = time.localtime(max(when, 315532800 + 86400))  # zip times start in 1980
    info = zipfile.ZipInfo(member, date_time=stamp[:6])
    info.compress_type = zipfile.ZIP_DEFLATED
    info.file_size = size  # lets zipfile choose ZIP64 up front for bodies over 2 GiB
    info.external_attr = (0o40755 << 16) | 0x10 if member.endswith("/") else 0o100644 << 16
    return info


def _text_property(props: dict[str, str], name: str) -> str | None:
    """The text of a stored dead property (an XML element), e.g. a displayname."""
    stored = props.get(name)
    if not stored:
        return None
    try:
        text = xml.parse_fragment(stored).text
    except etree.XMLSyntaxError:
        return None
    return text.strip() if text and text.strip() else None


class Exporter:
    def __init__(self, store: Store, user: str, tmp_dir: Path, progress: Progress,
                 clock: Callable[[], float] = time.time) -> None:
        self.store = store
        self.user = user
        self.tmp_dir = tmp_dir
        self.progress = progress
        self.clock = clock
        self._members: set[str] = set()

    def write(self, out_path: Path) -> port.Manifest:
        partial = out_path.with_name(out_path.name + ".partial")
        try:
            with open(partial, "wb") as fh:
                with zipfile.ZipFile(fh, "w", zipfile.ZIP_DEFLATED) as zf:
                    manifest = self._fill(zf)
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(partial, out_path)
        except BaseException:
            partial.unlink(missing_ok=True)
            raise
        return manifest

    def _fill(self, zf: zipfile.ZipFile) -> port.Manifest:
        exported_at = self.clock()
        last_seq = self.store.last_seq()
        listing = [r for home in port.HOMES for r in self.store.subtree(f"{home}/{self.user}")]
        kinds = {r.path: r.kind for r in listing if r.is_collection}
        items = [r for r in listing if not r.is_collection]
        self.progress.start(len(items))
        self.tmp_dir.mkdir(parents=True, exist_ok=True)
        by_collection: dict[str, list[Resource]] = {}
        loose: list[Resource] = []
        for item in items:
            if kinds.get(parent_of(item.path)) in _EXTENSION:
                by_collection.setdefault(parent_of(item.path), []).append(item)
            else:
                loose.append(item)
        collections: list[port.CollectionEntry] = []
        entries: list[port.ItemEntry] = []
        for res in (r for r in listing if r.is_collection):
            merged: str | None = None
            not_merged: list[str] = []
            renamed: list[str] = []
            if res.kind in _EXTENSION:
                merged = self._unique(self._merged_name(res))
                not_merged, renamed = self._merged(zf, res, merged, by_collection.get(res.path, []),
                                                   entries)
            elif res.path.startswith(f"files/{self.user}/"):
                zf.writestr(_zipinfo(self._files_member(res.path) + "/", res.modified_at), b"")
            collections.append(port.CollectionEntry(
                path=port.url_path(res.path, True), kind=res.kind, properties=res.props,
                created_at=res.created_at, modified_at=res.modified_at, merged=merged,
                not_merged=not_merged, renamed_timezones=renamed))
        for res in loose:
            member = self._unique(self._files_member(res.path)
                                  if res.path.startswith(f"files/{self.user}/") else "items/" + res.path)
            entries.append(self._entry(res, member, self._stream(zf, member, res)))
            self.progress.step()
        manifest = port.Manifest(user=self.user, exported_at=exported_at,
                                 safehold_version=__version__, last_seq=last_seq,
                                 collections=collections,
                                 items=sorted(entries, key=lambda e: e.path))
        zf.writestr(_zipinfo(port.MANIFEST, exported_at), manifest.to_json())
        return manifest

    # -- names -------------------------------------------------------------------

    def _files_member(self, path: str) -> str:
        return "files/" + path[len(f"files/{self.user}/"):]

    def _merged_name(self, res: Resource) -> str:
        home, _user, rest = res.path.split("/", 2)
        folder = _FOLDER[res.kind]
        inner = rest if home == folder else f"{home}/{rest}"
        return f"{folder}/{inner}{_EXTENSION[res.kind]}"

    def _unique(self, member: str) -> str:
        """Members never repeat (zipfile would write a second entry of the same name)."""
        candidate, n = member, 2
        while candidate in self._members:
            head, dot, ext = member.rpartition(".")
            candidate = f"{head}-{n}.{ext}" if dot and "/" not in ext else f"{member}-{n}"
            n += 1
        self._members.add(candidate)
        return candidate

    # -- bodies ------------------------------------------------------------------

    def _stream(self, zf: zipfile.ZipFile, member: str, res: Resource) -> str:
        """Copy ``res``'s bytes into the archive chunk by chunk; returns their sha256."""
        digest = hashlib.sha256()
        size = 0
        with zf.open(_zipinfo(member, res.modified_at, res.size), "w") as out:
            for chunk in self.store.read_body(res):
                digest.update(chunk)
                size += len(chunk)
                out.write(chunk)
        return self._checked(res, digest.hexdigest(), size)

    def _checked(self, res: Resource, sha256: str, size: int) -> str:
        if (res.blob_hash is not None and sha256 != res.blob_hash) or size != res.size:
            raise ArchiveError(f"the stored bytes of /dav/{res.path} do not match their recorded "
                               f"size and sha256; the store may be damaged: run `safehold check` "
                               "and restore the item from history or a backup")
        return sha256

    def _entry(self, res: Resource, member: str, sha256: str) -> port.ItemEntry:
        return port.ItemEntry(path=port.url_path(res.path), member=member, size=res.size,
                              sha256=sha256, etag=res.etag, content_type=res.content_type,
                              properties=res.props, created_at=res.created_at,
                              modified_at=res.modified_at)

    def _merged(self, zf: zipfile.ZipFile, coll: Resource, merged: str, members: list[Resource],
                entries: list[port.ItemEntry]) -> tuple[list[str], list[str]]:
        """Write each object of a calendar or address book under items/, and all of them
        as one .ics/.vcf. Returns the items that could not be merged and renamed TZIDs."""
        not_merged: list[str] = []
        with tempfile.TemporaryFile(dir=self.tmp_dir, prefix="export-") as spool:
            merger = port.CalendarMerger(spool.write) if coll.kind == CALENDAR else None
            for res in members:
                data = self.store.read_bytes(res)
                sha256 = self._checked(res, hashlib.sha256(data).hexdigest(), len(data))
                member = self._unique("items/" + res.path)
                zf.writestr(_zipinfo(member, res.modified_at, len(data)), data)
                entries.append(self._entry(res, member, sha256))
                if merger is None:
                    spool.write(port.for_concatenation(data))
                elif merger.add(data) is not None:
                    not_merged.append(port.url_path(res.path))
                self.progress.step()
            with zf.open(_zipinfo(merged, coll.modified_at), "w") as out:
                if merger is not None:
                    out.write(merger.header(f"-//safehold//safehold {__version__}//EN",
                                            _text_property(coll.props, DISPLAYNAME),
                                            _text_property(coll.props, CALENDAR_COLOR)))
                    out.write(merger.timezones())
                _copy(spool, out)
                if merger is not None:
                    out.write(port.FOOTER)
        return not_merged, merger.renamed if merger is not None else []


def _copy(spool: IO[bytes], out: IO[bytes]) -> None:
    spool.seek(0)
    shutil.copyfileobj(spool, out, COPY_CHUNK)
