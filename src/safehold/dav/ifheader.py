"""The ``If`` request header (RFC 4918 §10.4): parsing and evaluation."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from safehold.dav.errors import DavError


@dataclass(frozen=True)
class Condition:
    negated: bool
    kind: str  # "token" or "etag"
    value: str


@dataclass(frozen=True)
class IfList:
    resource: str | None  # tagged list: decoded URL path; untagged: None
    conditions: tuple[Condition, ...]


_TOKEN = re.compile(r"""\s*(?:
    (?P<tag><[^>]*>)\s*(?=\()         # a resource tag, followed by a list
  | (?P<open>\()
  | (?P<close>\))
  | (?P<not>Not)\b
  | (?P<state><[^>]*>)
  | (?P<etag>\[[^\]]*\])
)""", re.X | re.I)


def parse(value: str) -> list[IfList]:
    lists: list[IfList] = []
    pos = 0
    resource: str | None = None
    current: list[Condition] | None = None
    negate = False
    value = value.strip()
    while pos < len(value):
        m = _TOKEN.match(value, pos)
        if not m or m.end() == pos:
            if value[pos:].strip() == "":
                break
            raise DavError(400, f"malformed If header near {value[pos:pos + 20]!r}")
        pos = m.end()
        if m.group("tag") and current is None:
            resource = unquote(urlsplit(m.group("tag")[1:-1]).path)
        elif m.group("open"):
            if current is not None:
                raise DavError(400, "malformed If header: nested list")
            current = []
        elif m.group("close"):
            if current is None or not current:
                raise DavError(400, "malformed If header: empty list")
            lists.append(IfList(resource, tuple(current)))
            current = None
        elif m.group("not"):
            if current is None:
                raise DavError(400, "malformed If header: Not outside a list")
            negate = True
        elif m.group("state") or m.group("tag"):
            if current is None:
                raise DavError(400, "malformed If header: state token outside a list")
            current.append(Condition(negate, "token", (m.group("state") or m.group("tag"))[1:-1].strip()))
            negate = False
        elif m.group("etag"):
            if current is None:
                raise DavError(400, "malformed If header: entity tag outside a list")
            current.append(Condition(negate, "etag", m.group("etag")[1:-1].strip()))
            negate = False
    if current is not None or not lists:
        raise DavError(400, "malformed If header")
    return lists


def submitted_tokens(lists: list[IfList]) -> set[str]:
    return {c.value for lst in lists for c in lst.conditions if c.kind == "token" and not c.negated}


def evaluate(lists: list[IfList], request_path: str,
             state: Callable[[str], tuple[str | None, set[str]]]) -> bool:
    """True if any list matches. ``state(path)`` returns (etag or None, lock tokens
    that cover path)."""
    for lst in lists:
        path = lst.resource or request_path
        etag, tokens = state(path)
        ok = True
        for cond in lst.conditions:
            if cond.kind == "etag":
                hit = etag is not None and _strip_weak(cond.value) == _strip_weak(etag)
            else:
                hit = cond.value in tokens
            if hit == cond.negated:
                ok = False
                break
        if ok:
            return True
    return False


def _strip_weak(etag: str) -> str:
    return etag[2:] if etag.startswith("W/") else etag
