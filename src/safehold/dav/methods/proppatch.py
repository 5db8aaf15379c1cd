"""PROPPATCH (RFC 4918 §9.2): all instructions succeed or none do; each call is one
new version of the resource (dead properties are versioned like content)."""

from __future__ import annotations

from lxml import etree

from safehold.dav import props, xml
from safehold.dav.backend import DavBackend
from safehold.dav.conditions import check_if_header, require_unlocked
from safehold.dav.errors import DavError
from safehold.dav.methods import mkcol
from safehold.dav.paths import href
from safehold.dav.types import DavRequest, DavResponse
from safehold.dav.xml import dav


def handle(req: DavRequest, backend: DavBackend) -> DavResponse:
    root = xml.parse(req.body_bytes())
    if root.tag != dav("propertyupdate"):
        raise DavError(400, "the body must be a DAV:propertyupdate element")
    node = backend.get(req.path)
    if node is None:
        raise DavError(404, "not found")
    if node.virtual:
        raise DavError(403, "properties of this collection cannot be changed")
    tokens = check_if_header(req, backend)
    require_unlocked(backend, req.path, tokens, membership=False)
    ops: list[tuple[str, str, etree._Element]] = []
    for instr in root:
        if instr.tag not in (dav("set"), dav("remove")):
            continue
        for prop in instr:
            if prop.tag != dav("prop"):
                continue
            for p in prop:
                if isinstance(p.tag, str):
                    ops.append(("set" if instr.tag == dav("set") else "remove", str(p.tag), p))
    if not ops:
        raise DavError(400, "DAV:propertyupdate contains no properties")
    # name -> (precondition element, message) of each refused instruction
    failed: dict[str, tuple[str, str | None]] = {
        name: (dav("cannot-modify-protected-property"), None)
        for _, name, _ in ops if name in props.PROTECTED}
    failed.update(_invalid_values(node.kind, ops, failed))
    set_props: dict[str, str] = {}
    remove: list[str] = []
    if not failed:
        for op, name, el in ops:
            if op == "set":
                el.tail = None
                set_props[name] = etree.tostring(el, encoding="unicode")
                if name in remove:
                    remove.remove(name)
            else:
                set_props.pop(name, None)
                remove.append(name)
        backend.proppatch(req.path, set_props, remove)
    ms = xml.multistatus()
    resp = xml.sub(ms, dav("response"))
    xml.sub(resp, dav("href"), href(node.href))
    # One propstat per status and, for 403, per precondition (RFC 4918 §9.2.1).
    by_status: dict[tuple[int, str | None, str | None], list[str]] = {}
    for _, name, _ in ops:
        key: tuple[int, str | None, str | None] = \
            (403, *failed[name]) if name in failed else (424 if failed else 200, None, None)
        if name not in by_status.setdefault(key, []):
            by_status[key].append(name)
    for (code, condition, message), names in by_status.items():
        ps = xml.sub(resp, dav("propstat"))
        pr = xml.sub(ps, dav("prop"))
        for name in names:
            xml.sub(pr, name)
        xml.sub(ps, dav("status"), xml.status_line(code))
        if condition is not None:
            err = xml.sub(ps, dav("error"))
            xml.sub(err, condition)
        if message is not None:
            xml.sub(ps, dav("responsedescription"), message)
    return DavResponse(207, [("Content-Type", "application/xml; charset=utf-8")], xml.to_bytes(ms))


def _invalid_values(kind: str, ops: list[tuple[str, str, etree._Element]],
                    protected: dict[str, tuple[str, str | None]]) -> dict[str, tuple[str, str | None]]:
    """Values the collection's kind refuses, checked as at its creation (e.g. a
    CALDAV:calendar-timezone that is not one readable VTIMEZONE, RFC 4791 §5.2.2)."""
    validator = mkcol.VALIDATORS.get(kind)
    if validator is None:
        return {}
    out: dict[str, tuple[str, str | None]] = {}
    for op, name, el in ops:
        if op != "set" or name in protected:
            continue
        try:
            validator({name: etree.tostring(el, encoding="unicode", with_tail=False)})
        except DavError as exc:
            if exc.condition is None:
                raise
            out[name] = (f"{{{exc.namespace}}}{exc.condition}", exc.message)
    return out
