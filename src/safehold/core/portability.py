"""Export and import (DESIGN promise 10): the archive layout, its manifest, names for
split objects, and the import report. Pure: no storage, no I/O.

An export archive is a zip::

    manifest.json                      this module's Manifest (format 1)
    files/<path>                       the files home, byte for byte, folders kept
    calendars/<name>.ics               each calendar as ONE iCalendar file (for other software)
    addressbooks/<name>.vcf            each address book as ONE vCard file (for other software)
    items/<store path>                 every calendar object and vCard, byte for byte

The merged .ics/.vcf files are for other software and necessarily splice objects
together (see formats.ical_splice); the items/ tree and files/ are what an import reads,
so that export followed by import reproduces an account byte for byte. The manifest is
the authority: it names the archive member of every item, with its sha256.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from safehold.core.formats.contentlines import SplitObject
from safehold.core.formats.ical_splice import FOOTER, CalendarMerger, StructureError, split_calendar
from safehold.core.formats.vcard_splice import for_concatenation, split_cards
from safehold.errors import ArchiveError

__all__ = [
    "FOOTER", "FORMAT", "MANIFEST", "CalendarMerger", "CollectionEntry", "ImportReport", "ItemEntry",
    "Manifest", "SplitObject", "StructureError", "for_concatenation", "object_name", "retarget",
    "split_calendar", "split_cards",
]

FORMAT = 1  # bump when a reader of format 1 would misread the archive
MANIFEST = "manifest.json"
PREFIX = "/dav/"
HOMES = ("files", "calendars", "addressbooks")
OUTCOMES = ("created", "identical", "skipped-conflict", "invalid")
# A collection that exists with only a new account's default properties (or a subset of
# the archive's) takes the archive's: "updated". Nothing a user chose is overwritten.
COLLECTION_OUTCOMES = ("created", "updated", "identical", "skipped-conflict", "invalid")
LAYOUT = {
    "files/": "the files home, byte for byte",
    "calendars/": "one iCalendar file per calendar (objects merged; for other software)",
    "addressbooks/": "one vCard file per address book (cards concatenated; for other software)",
    "items/": "every calendar object and vCard, byte for byte (what import reads)",
}
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._@+-]{0,119}")
_UNSAFE = re.compile(r"[^A-Za-z0-9._@+-]+")


@dataclass(frozen=True)
class ItemEntry:
    path: str  # URL path as the client saw it (not percent-encoded), e.g. /dav/files/alice/a.txt
    member: str  # where its exact bytes are in the archive
    size: int
    sha256: str
    etag: str
    content_type: str | None
    properties: dict[str, str]  # dead properties: Clark name -> XML element
    created_at: float
    modified_at: float


@dataclass(frozen=True)
class CollectionEntry:
    path: str  # URL path ending in "/"
    kind: str  # collection, calendar, addressbook
    properties: dict[str, str]
    created_at: float
    modified_at: float
    merged: str | None = None  # the .ics/.vcf member holding all its objects
    not_merged: list[str] = field(default_factory=list)  # items left out of ``merged`` (see items/)
    renamed_timezones: list[str] = field(default_factory=list)  # TZIDs ``merged`` had to rename


@dataclass(frozen=True)
class Manifest:
    user: str
    exported_at: float
    safehold_version: str
    last_seq: int  # the store's last change when the export began
    collections: list[CollectionEntry]
    items: list[ItemEntry]
    format: int = FORMAT

    def to_json(self) -> bytes:
        body = {
            "format": self.format,
            "user": self.user,
            "exported_at": datetime.fromtimestamp(self.exported_at, UTC).isoformat(timespec="seconds"),
            "safehold_version": self.safehold_version,
            "last_seq": self.last_seq,
            "layout": LAYOUT,
            "counts": {"collections": len(self.collections), "items": len(self.items),
                       "bytes": sum(i.size for i in self.items)},
            "collections": [asdict(c) for c in self.collections],
            "items": [asdict(i) for i in self.items],
        }
        return json.dumps(body, indent=1, ensure_ascii=False).encode("utf-8")

    @classmethod
    def from_json(cls, data: bytes) -> Manifest:
        """Read a manifest, refusing what this release cannot read correctly."""
        try:
            body = json.loads(data)
        except (UnicodeDecodeError, json.JSONDecodeError) as exc:
            raise ArchiveError(f"{MANIFEST} is not valid JSON: {exc}") from exc
        if not isinstance(body, dict):
            raise ArchiveError(f"{MANIFEST} is not a JSON object")
        fmt = body.get("format")
        if not isinstance(fmt, int) or fmt < 1:
            raise ArchiveError(f"{MANIFEST} has no valid format number; this is not a safehold export")
        if fmt > FORMAT:
            raise ArchiveError(f"the archive is in export format {fmt}, this safehold reads format "
                               f"{FORMAT}: import it with a newer safehold")
        try:
            exported = datetime.fromisoformat(str(body["exported_at"])).timestamp()
            return cls(
                user=_str(body, "user"), exported_at=exported,
                safehold_version=_str(body, "safehold_version"), last_seq=int(body["last_seq"]),
                collections=[CollectionEntry(
                    path=_str(c, "path"), kind=_str(c, "kind"), properties=_props(c),
                    created_at=float(c["created_at"]), modified_at=float(c["modified_at"]),
                    merged=c.get("merged"), not_merged=list(c.get("not_merged") or []),
                    renamed_timezones=list(c.get("renamed_timezones") or []),
                ) for c in body["collections"]],
                items=[ItemEntry(
                    path=_str(i, "path"), member=_str(i, "member"), size=int(i["size"]),
                    sha256=_str(i, "sha256"), etag=str(i.get("etag") or ""),
                    content_type=i.get("content_type"), properties=_props(i),
                    created_at=float(i["created_at"]), modified_at=float(i["modified_at"]),
                ) for i in body["items"]],
                format=fmt,
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ArchiveError(f"{MANIFEST} is incomplete or damaged ({type(exc).__name__}: {exc}); "
                               "export the account again") from exc


def _str(obj: Any, key: str) -> str:
    value = obj[key]
    if not isinstance(value, str):
        raise TypeError(f"{key!r} must be a string")
    return value


def _props(obj: Any) -> dict[str, str]:
    props = obj.get("properties") or {}
    if not isinstance(props, dict) or not all(isinstance(k, str) and isinstance(v, str)
                                              for k, v in props.items()):
        raise TypeError("'properties' must map names to XML strings")
    return dict(props)


def url_path(store_path: str, collection: bool = False) -> str:
    return PREFIX + store_path + ("/" if collection else "")


def retarget(path: str, source_user: str, target_user: str) -> str:
    """The store path for ``path`` (a URL path of ``source_user``'s) in ``target_user``'s
    account. Anything outside the source user's homes is refused, so an archive cannot
    write into another account."""
    parts = path[len(PREFIX):].strip("/").split("/") if path.startswith(PREFIX) else []
    if (len(parts) < 2 or parts[0] not in HOMES or parts[1] != source_user
            or any(p in ("", ".", "..") or any(ord(ch) < 32 or ord(ch) == 127 for ch in p)
                   for p in parts)):
        raise ArchiveError(f"{path!r} is not a path in {source_user}'s account")
    parts[1] = target_user
    return "/".join(parts)


def object_name(uid: str, extension: str) -> str:
    """A resource name for an object split out of a file: the UID when it is a plain,
    short name, else a readable part of it plus a hash of the whole UID, so that distinct
    UIDs never share a name and importing the same file twice finds the same names."""
    base = uid[len("urn:uuid:"):] if uid.lower().startswith("urn:uuid:") else uid
    if _SAFE_NAME.fullmatch(base):
        return base + extension
    readable = _UNSAFE.sub("-", base).strip("-.")[:60]
    digest = hashlib.sha256(uid.encode("utf-8", errors="surrogateescape")).hexdigest()[:16]
    return f"{readable}-{digest}{extension}" if readable else digest + extension


@dataclass(frozen=True)
class Problem:
    kind: str  # "item" or "collection"
    outcome: str  # one of OUTCOMES / COLLECTION_OUTCOMES
    what: str  # URL path, or a label for a part of a file that has no path
    reason: str


@dataclass
class ImportReport:
    """What an import did (or, dry run, would do). Nothing is ever overwritten: an
    existing item with other bytes is a ``skipped-conflict``."""

    source: str
    user: str
    dry_run: bool
    items: dict[str, int] = field(default_factory=lambda: dict.fromkeys(OUTCOMES, 0))
    collections: dict[str, int] = field(default_factory=lambda: dict.fromkeys(COLLECTION_OUTCOMES, 0))
    problems: list[Problem] = field(default_factory=list)

    def note(self, kind: str, outcome: str, what: str, reason: str | None = None) -> None:
        counts = self.items if kind == "item" else self.collections
        assert outcome in counts, outcome
        counts[outcome] += 1
        if reason is not None:
            self.problems.append(Problem(kind, outcome, what, reason))

    @property
    def complete(self) -> bool:
        """Everything is in the account: created now or already there."""
        return not any(c[o] for c in (self.items, self.collections)
                       for o in ("skipped-conflict", "invalid"))

    def as_json(self) -> dict[str, Any]:
        return {"source": self.source, "user": self.user, "dry_run": self.dry_run,
                "collections": self.collections, "items": self.items,
                "problems": [asdict(p) for p in self.problems]}

    def summary(self) -> list[str]:
        def counts(c: dict[str, int]) -> str:
            return ", ".join(f"{n} {o}" for o, n in c.items())
        out = [f"collections: {counts(self.collections)}", f"items: {counts(self.items)}"]
        out += [f"{p.outcome} {p.what}: {p.reason}" for p in self.problems]
        if self.dry_run:
            out.append("dry run: nothing was written")
        return out
