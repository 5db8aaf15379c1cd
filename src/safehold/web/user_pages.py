"""A user's own pages: collections, an item's history with a field diff, recently
deleted with undelete, roll back with a preview, incidents with undo, export, and
connection details. Every URL names a /dav/ path; it is checked against the
logged-in user's homes before anything is read (404 otherwise)."""

from __future__ import annotations

import time
import xml.etree.ElementTree as ET
from collections.abc import Iterator
from pathlib import Path
from urllib.parse import quote
from typing import TYPE_CHECKING, Any

from safehold.core import guard as core_guard
from safehold.core import history as core
from safehold.core.model import ITEM, Actor, Version, parent_of
from safehold.core.present import plan_json
from safehold.web import diff as diff_mod
from safehold.web.jobs import Job
from safehold.web.site import HttpError, Request, Response

if TYPE_CHECKING:
    from safehold.web.site import Web

PREFIX = "/dav/"
HOME_TITLES = {"calendars": "Calendars", "addressbooks": "Address books", "files": "Files"}
DISPLAYNAME = "{DAV:}displayname"
WEB_CLIENT = "safehold-web"
HISTORY_SHOWN = 50


def register(web: Web) -> None:
    web.route("GET", r"/", home)
    web.route("GET", r"/collection", collection)
    web.route("GET", r"/item", item)
    web.route("POST", r"/undelete", undelete)
    web.route("POST", r"/restore", restore)
    web.route("GET", r"/rollback", rollback_preview)
    web.route("POST", r"/rollback", rollback)
    web.route("GET", r"/incidents", incidents)
    web.route("POST", r"/incidents/(\d+)/undo", incident_undo)
    web.route("POST", r"/incidents/(\d+)/confirm", incident_confirm)
    web.route("GET", r"/export", export_page)
    web.route("POST", r"/export", export)
    web.route("GET", r"/connect", connect)
    web.route("GET", r"/jobs/([A-Za-z0-9_-]+)", job_page)
    web.route("GET", r"/jobs/([A-Za-z0-9_-]+)\.json", job_json)
    web.route("GET", r"/jobs/([A-Za-z0-9_-]+)/download", job_download)


# -- helpers ------------------------------------------------------------------------------

def own(req: Request, url_path: str) -> str:
    """/dav/HOME/USER/... of the logged-in user -> the store path; anything else 404."""
    if not url_path.startswith(PREFIX):
        raise HttpError(400, "the path must be a URL path such as /dav/calendars/NAME/personal/")
    inner = url_path[len(PREFIX):].strip("/")
    parts = inner.split("/")
    if len(parts) < 2 or parts[0] not in core.HOMES or parts[1] != req.user.name or ".." in parts:
        raise HttpError(404, "there is no such page")  # the same answer for other users' paths
    return inner


def url(inner: str, collection: bool = False) -> str:
    return PREFIX + inner + ("/" if collection else "")


def title_of(props: dict[str, str], path: str) -> str:
    stored = props.get(DISPLAYNAME)
    if stored:
        try:
            text = ET.fromstring(stored).text
        except ET.ParseError:
            text = None
        if text and text.strip():
            return text.strip()
    return path.rsplit("/", 1)[-1]


def actor(req: Request) -> Actor:
    return Actor(req.user.id, WEB_CLIENT, None)


def shipped(web: Web) -> None:
    shipper = web.deps.shipper()
    if shipper is not None:
        shipper.nudge()  # restores are changes like any other: ship them now


def version_row(v: Version) -> dict[str, Any]:
    return {"seq": v.seq, "when": v.at, "who": v.actor or "the server", "client": v.user_agent or "—",
            "op": v.op, "change_op": v.change_op, "deleted": v.deleted, "size": v.size,
            "name": v.path.rsplit("/", 1)[-1], "path": v.path}


# -- pages --------------------------------------------------------------------------------

def home(web: Web, req: Request) -> Response:
    name = req.user.name
    groups = []
    for home_name in core.HOMES:
        listing = web.store.subtree(f"{home_name}/{name}")
        counts: dict[str, int] = {}
        for res in listing:
            if res.kind == ITEM:
                counts[res.parent] = counts.get(res.parent, 0) + 1
        rows = [{"url": url(r.path, True), "title": title_of(r.props, r.path), "kind": r.kind,
                 "items": counts.get(r.path, 0), "modified": r.modified_at}
                for r in listing if r.is_collection
                and (home_name == "files" or r.path != f"{home_name}/{name}")]
        groups.append({"title": HOME_TITLES[home_name], "rows": rows})
    open_incidents = [i for i in web.incidents.for_owner(req.user.id) if i.state == "open"]
    return web.render("home.html", req, groups=groups, open_incidents=len(open_incidents))


def collection(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path", "query"))
    res = web.store.get(inner)
    if res is None or not res.is_collection:
        raise HttpError(404, "there is no such collection")
    children = web.store.children(inner)
    items = [{"name": c.path.rsplit("/", 1)[-1], "url": url(c.path, c.is_collection),
              "folder": c.is_collection, "size": c.size, "modified": c.modified_at} for c in children]
    deleted = [version_row(v) | {"url": url(v.path)} for v in web.history.deleted_members(inner)]
    return web.render("collection.html", req, title=title_of(res.props, res.path),
                      url=url(inner, True), parent=url(parent_of(inner), True)
                      if inner.count("/") > 1 else None, items=items, deleted=deleted,
                      now=time.strftime("%Y-%m-%dT%H:%M"))


def _body(web: Web, v: Version | None) -> bytes | None:
    if v is None or v.deleted or v.blob_hash is None:
        return None
    return web.history.blob(v.blob_hash)


def item(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path", "query"))
    versions = web.history.versions_of(inner)
    if not versions or versions[0].kind != ITEM:
        raise HttpError(404, "there is no such item")
    current = versions[-1]
    parent = web.store.get(parent_of(inner))
    text = parent is not None and parent.kind in ("calendar", "addressbook")
    rows = []
    shown = versions[-HISTORY_SHOWN:]
    offset = len(versions) - len(shown)
    for i, v in enumerate(shown):
        prev = versions[offset + i - 1] if offset + i > 0 else None
        row = version_row(v)
        if v.deleted:
            row["changes"] = []  # the history says "Deleted"; listing every field adds nothing
        elif text:
            row["changes"] = diff_mod.diff(_body(web, prev), _body(web, v))
        else:
            row["changes"] = [] if v.deleted or prev is None or prev.deleted or prev.size == v.size \
                else [diff_mod.FieldChange("size", [f"{prev.size} bytes"], [f"{v.size} bytes"])]
        row["restorable"] = not v.deleted and (current.deleted or v.blob_hash != current.blob_hash)
        rows.append(row)
    rows.reverse()
    return web.render("item.html", req, name=inner.rsplit("/", 1)[-1], url=url(inner),
                      collection=url(parent_of(inner), True), deleted=current.deleted,
                      versions=rows, older=offset)


def undelete(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path"))
    plan = core.plan_undelete(web.history, inner)
    done = core.execute(web.history, req.user.id, plan, actor(req))
    shipped(web)
    return web.done(req, "/collection?path=" + quote(url(parent_of(inner), True)),
                    f"brought back {inner.rsplit('/', 1)[-1]} ({len(done.ops)} item(s), "
                    f"change {done.seq})")


def restore(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path"))
    raw = req.arg("version")
    if not raw.isdigit():
        raise HttpError(400, "version must be a change number")
    plan = core.plan_undelete(web.history, inner, int(raw))
    done = core.execute(web.history, req.user.id, plan, actor(req))
    shipped(web)
    message = (f"version {raw} is the current content already" if not done.ops else
               f"restored version {raw} as change {done.seq}")
    return web.done(req, "/item?path=" + quote(url(inner)), message)


def _point(web: Web, req: Request, source: str) -> int:
    raw = req.arg("to", source)
    return core.parse_point(raw, web.history)


def rollback_preview(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path", "query"))
    res = web.store.get(inner)
    if res is None or not res.is_collection:
        raise HttpError(404, "there is no such collection")
    seq = _point(web, req, "query")
    plan = core.plan_rollback(web.history, inner, seq)
    return web.render("rollback.html", req, title=title_of(res.props, res.path), url=url(inner, True),
                      to=req.query["to"], seq=seq, plan=plan_json(plan),
                      changes=[{"action": op.action, "name": op.path[len(inner) + 1:] or op.path,
                                "path": url(op.path), "from_seq": op.source.seq if op.source else None}
                               for op in plan.ops])


def rollback(web: Web, req: Request) -> Response:
    inner = own(req, req.arg("path"))
    raw = req.arg("to")
    if not raw.isdigit():
        raise HttpError(400, "to must be the change number shown on the preview")
    seq = core.parse_point(raw, web.history)
    if web.store.get(inner) is None:
        raise HttpError(404, "there is no such collection")
    who = actor(req)
    owner = req.user.id

    def work(job: Job) -> str:
        job.progress(0, 0, "comparing the collection with change " + raw)
        plan = core.plan_rollback(web.history, inner, seq)
        job.progress(0, len(plan.ops), f"writing {len(plan.ops)} change(s) as one new change")
        done = core.execute(web.history, owner, plan, who)
        shipped(web)
        job.progress(len(plan.ops), len(plan.ops))
        job.result = plan_json(done)
        s = done.summary()
        return (f"rolled back to change {raw}: {s['create']} brought back, {s['revert']} reverted, "
                f"{s['delete']} removed" + (f" (change {done.seq})" if done.seq else ""))
    job = web.jobs.start(req.user.name, "rollback", f"Roll back {url(inner, True)}", work,
                         back="/collection?path=" + quote(url(inner, True)))
    return web.redirect(f"/jobs/{job.id}")


def incidents(web: Web, req: Request) -> Response:
    rows = [{"id": i.id, "collection": url(i.collection, True), "state": i.state,
             "client": i.user_agent or "—", "count": i.count, "opened": i.opened_at,
             "deleted": [p.rsplit("/", 1)[-1] for p in web.incidents.deleted_paths(i)][:20]}
            for i in web.incidents.for_owner(req.user.id)]
    return web.render("incidents.html", req, incidents=rows)


def incident_undo(web: Web, req: Request, ident: str) -> Response:
    inc, plan = core_guard.undo(web.incidents, web.history, int(ident), actor(req), req.user.id)
    shipped(web)
    return web.done(req, "/incidents", f"incident {inc.id}: brought back {len(plan.ops)} item(s)")


def incident_confirm(web: Web, req: Request, ident: str) -> Response:
    inc = core_guard.confirm(web.incidents, int(ident), req.user.id)
    return web.done(req, "/incidents", f"incident {inc.id}: the deletions are kept")


def export_page(web: Web, req: Request) -> Response:
    return web.render("export.html", req)


def export(web: Web, req: Request) -> Response:
    name = req.user.name
    folder = web.deps.settings.tmp_dir / "web-exports"

    def work(job: Job) -> str:
        folder.mkdir(parents=True, exist_ok=True)
        out = folder / f"{job.id}.zip"
        web.deps.export(name, out, lambda done, total: job.progress(done, total, "writing items"))
        job.file = out
        return f"your archive is ready ({out.stat().st_size} bytes)"
    job = web.jobs.start(name, "export", "Export everything", work, back="/export")
    return web.redirect(f"/jobs/{job.id}")


def connect(web: Web, req: Request) -> Response:
    base = req.base_url
    name = req.user.name
    return web.render("connect.html", req, base=base, name=name, rows=[
        ("Server (CalDAV and CardDAV; phones find the rest)", base + "/"),
        ("Calendars", f"{base}/dav/calendars/{name}/"),
        ("Address books", f"{base}/dav/addressbooks/{name}/"),
        ("Files (WebDAV)", f"{base}/dav/files/{name}/"),
    ])


def _job(web: Web, req: Request, ident: str) -> Job:
    job = web.jobs.get(ident, req.user.name)
    if job is None:
        raise HttpError(404, "there is no such job (finished jobs are kept for an hour)")
    return job


def job_page(web: Web, req: Request, ident: str) -> Response:
    return web.render("job.html", req, job=_job(web, req, ident))


def job_json(web: Web, req: Request, ident: str) -> Response:
    import json
    body = json.dumps(_job(web, req, ident).as_json()).encode()
    return Response(200, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)


def job_download(web: Web, req: Request, ident: str) -> Response:
    job = _job(web, req, ident)
    if job.file is None or job.state != "done":
        raise HttpError(404, "this job has no file to download")
    if not job.here():
        # Several hosts behind one address: the archive is on the disk of the one that
        # wrote it (docs/storage.md).
        raise HttpError(404, f"the archive is on another server ({job.hostname}); "
                             "download it from there, or export again")
    if not job.file.exists():
        raise HttpError(404, "the archive is no longer there (archives are kept for an hour); "
                             "export again")
    stamp = time.strftime("%Y%m%d-%H%M", time.localtime(job.finished or time.time()))
    return Response(200, [("Content-Type", "application/zip"),
                          ("Content-Length", str(job.file.stat().st_size)),
                          ("Content-Disposition",
                           f'attachment; filename="safehold-{req.user.name}-{stamp}.zip"'),
                          ("Cache-Control", "no-store")], _chunks(job.file))


def _chunks(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as fh:
        while chunk := fh.read(1 << 20):
            yield chunk
