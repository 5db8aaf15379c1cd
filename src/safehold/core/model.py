"""Domain records shared by the store and the protocol adapters."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import NamedTuple

COLLECTION = "collection"  # a plain WebDAV collection
CALENDAR = "calendar"
ADDRESSBOOK = "addressbook"
ITEM = "item"
COLLECTION_KINDS = (COLLECTION, CALENDAR, ADDRESSBOOK)


@dataclass(frozen=True)
class Actor:
    """Who made a change: recorded on every change-log row."""

    principal_id: int | None
    user_agent: str | None = None
    request_id: str | None = None


@dataclass(frozen=True)
class Principal:
    id: int
    name: str
    disabled: bool
    created_at: float


class Resource(NamedTuple):
    """The head (latest live version) of a collection or item. A NamedTuple: listings
    build one per member, five times faster than a frozen dataclass."""

    path: str
    parent: str
    owner_id: int
    kind: str
    version_id: int
    blob_hash: str | None
    size: int
    etag: str
    content_type: str | None
    props: dict[str, str]
    seq: int
    created_at: float
    modified_at: float

    @property
    def is_collection(self) -> bool:
        return self.kind != ITEM


@dataclass(frozen=True)
class ItemIndex:
    """What parsing an item gave, kept beside its bytes for queries."""

    component: str  # VEVENT, VTODO, VJOURNAL, VFREEBUSY, VCARD
    uid: str
    start: float | None  # UTC epoch seconds; None: unbounded
    end: float | None
    recurring: bool = False
    # A recurring event's instances as (start, end) UTC epoch seconds when they decide
    # time-range queries exactly (core.formats.ical_spans); None: parse to decide.
    spans: tuple[tuple[int, int], ...] | None = None


@dataclass(frozen=True)
class Lock:
    token: str
    path: str
    depth: str  # "0" or "infinity"
    scope: str  # "exclusive" or "shared"
    owner_xml: str | None
    principal_id: int
    timeout: int
    expires_at: float


@dataclass(frozen=True)
class Body:
    """A request body already spooled to disk and hashed (see store.blobs)."""

    path: str
    size: int
    sha256: str


def dump_props(props: dict[str, str]) -> str:
    return json.dumps(props, sort_keys=True, ensure_ascii=False)


def load_props(text: str) -> dict[str, str]:
    loaded: dict[str, str] = json.loads(text) if text else {}
    return loaded


def parent_of(path: str) -> str:
    return path.rsplit("/", 1)[0] if "/" in path else ""


@dataclass(frozen=True)
class Version:
    """One immutable version of a resource, with who made it (a history entry)."""

    id: int
    seq: int
    path: str
    kind: str
    op: str
    deleted: bool
    blob_hash: str | None
    size: int
    etag: str
    content_type: str | None
    props: dict[str, str]
    at: float
    actor: str | None  # principal name, None for the server itself
    user_agent: str | None
    request_id: str | None
    change_op: str  # the op of the change this version belongs to (e.g. "restore")


@dataclass(frozen=True)
class RestoreOp:
    """One step of a restore: bring ``path`` back to ``source`` or delete it."""

    path: str
    action: str  # "create", "revert" or "delete"
    source: Version | None  # the version whose content comes back (None for delete)
    index: ItemIndex | None = None


@dataclass(frozen=True)
class Incident:
    """A burst of deletions by one client in one collection (DESIGN promise 8)."""

    id: int
    owner_id: int
    collection: str
    actor_id: int | None
    user_agent: str
    opened_at: float
    first_seq: int
    last_seq: int
    count: int
    state: str  # "open", "undone" or "confirmed"
    resolved_at: float | None = None
    undo_seq: int | None = None
