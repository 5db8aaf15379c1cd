"""The operator's pages: a verdict on whether the data is safe right now, replicas
(lag, size, last verified restore), restore drills with "run drill now", the upgrade
gate, and users (add, disable, enable, reset password). Only for administrators
(`safehold user add --admin`, or `safehold user admin NAME`); a 404 for anyone else."""

from __future__ import annotations

import importlib
import json
import logging
import threading
import time
from typing import TYPE_CHECKING, Any

from safehold.backup import child_process
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.status import Status
from safehold.core import users
from safehold.core.model import Actor
from safehold.errors import SafeholdError
from safehold.store import replication as rep
from safehold.store import roles
from safehold.web.jobs import Job
from safehold.web.site import HttpError, Request, Response

if TYPE_CHECKING:
    from safehold.web.site import Web

log = logging.getLogger("safehold.web")
SIZE_EVERY = 300.0  # replica sizes are measured in the background at most this often


def register(web: Web) -> None:
    web.route("GET", r"/admin", admin, admin=True)
    web.route("POST", r"/admin/drill", run_drill, admin=True)
    web.route("POST", r"/admin/users", add_user, admin=True)
    web.route("POST", r"/admin/users/([^/]+)/disable", disable, admin=True)
    web.route("POST", r"/admin/users/([^/]+)/enable", enable, admin=True)
    web.route("POST", r"/admin/users/([^/]+)/password", password, admin=True)


class ReplicaSizes:
    """Listing a replica can take a while (and fails slowly when it is down), so the
    admin page shows the last measurement and refreshes it in the background."""

    def __init__(self) -> None:
        self.sizes: dict[str, tuple[float, int | None, str | None]] = {}
        self._busy = threading.Lock()

    def get(self, replicas: list[ReplicaClient]) -> dict[str, tuple[float, int | None, str | None]]:
        now = time.time()
        stale = [r for r in replicas if now - self.sizes.get(r.url, (0.0, None, None))[0] > SIZE_EVERY]
        if stale and self._busy.acquire(blocking=False):
            threading.Thread(target=self._measure, args=(stale,), daemon=True,
                             name="safehold-replica-size").start()
        return dict(self.sizes)

    def _measure(self, replicas: list[ReplicaClient]) -> None:
        try:
            for replica in replicas:
                try:
                    total = sum(o.size for o in replica.list(""))
                    self.sizes[replica.url] = (time.time(), total, None)
                except SafeholdError as exc:
                    self.sizes[replica.url] = (time.time(), None, str(exc))
        finally:
            self._busy.release()


_SIZES = ReplicaSizes()


def _replicas(web: Web) -> list[ReplicaClient]:
    shipper = web.deps.shipper()
    if shipper is not None:
        return list(shipper.replicas)
    out = []
    for u in web.deps.backup.replicas:
        try:
            out.append(open_replica(u))
        except SafeholdError:
            continue
    return out


def headline(status: Status, now: float | None = None) -> str:
    """The one sentence at the top of the admin page."""
    now = now or time.time()
    if status.verdict != "green":
        return status.messages[0] if status.messages else status.verdict
    drill = status.facts.get("last_drill")
    lags = [float(r["lag_seconds"]) for r in status.facts.get("replicas", [])]
    parts = []
    if drill:
        hours = (now - float(drill["at"])) / 3600
        parts.append(f"last verified restore {hours:.0f} h ago" if hours >= 1 else
                     f"last verified restore {max(1.0, hours * 60):.0f} min ago")
    if lags:
        parts.append(f"replica {max(lags):.0f} s behind")
    return "your data is safe: " + ", ".join(parts)


def upgrade_state(web: Web) -> dict[str, str] | None:
    """The upgrade gate's state when this build has one (safehold.upgrade), else None.
    Looked up at run time so that the pages work with and without the gate."""
    try:
        gate = importlib.import_module("safehold.upgrade.gate")
        versioning = importlib.import_module("safehold.store.versioning")
    except ImportError:
        return None
    settings = web.deps.settings
    report = gate.evaluate(web.store, web.deps.backup,
                           float(getattr(settings, "upgrade_max_lag_seconds", 60)),
                           float(getattr(settings, "upgrade_max_drill_age_seconds", 900)))
    out = {"gate": "open: `safehold upgrade` may start now" if report.open else
           "closed: " + "; ".join(report.reasons) + " (`safehold upgrade --backup-now` opens it)"}
    running = versioning.marker(web.store.engine)
    if running:
        out["running now"] = str(versioning.describe_marker(running))
    last = rep.get_meta(web.store, versioning.LAST)
    if last:
        try:
            found = json.loads(last)
        except ValueError:
            found = last
        out["last upgrade"] = (", ".join(f"{k}: {v}" for k, v in sorted(found.items()))
                               if isinstance(found, dict) else str(found))
    return out


def admin(web: Web, req: Request) -> Response:
    status = web.deps.status()
    replicas = _replicas(web)
    sizes = _SIZES.get(replicas)
    drills = rep.drills(web.store, limit=20)
    last_ok: dict[str, dict[str, Any]] = {}
    for d in rep.drills(web.store, limit=200):
        if d["ok"] and d["replica"] not in last_ok:
            last_ok[d["replica"]] = d
    rows = []
    for r in status.facts.get("replicas", []):
        measured = sizes.get(r["url"])
        rows.append(r | {"size": measured[1] if measured else None,
                         "size_error": measured[2] if measured else None,
                         "verified": last_ok.get(r["url"], {}).get("at")})
    admins = roles.admins(web.store)
    people = [{"name": p.name, "disabled": p.disabled, "admin": p.name in admins,
               "created": p.created_at} for p in web.store.principals()]
    running = web.jobs.running("drill")
    return web.render("admin.html", req, status=status, headline=headline(status), replicas=rows,
                      drills=drills, people=people, upgrade=upgrade_state(web),
                      problem=web.deps.backup.problem, running=running)


def run_drill(web: Web, req: Request) -> Response:
    running = web.jobs.running("drill")
    if running is not None:
        if running.owner == req.user.name:
            return web.redirect(f"/jobs/{running.id}")
        raise HttpError(409, "a restore drill is running already (started by another "
                             "administrator); wait for it to finish")
    key = web.deps.backup.key
    replicas = _replicas(web)
    if key is None or not replicas:
        raise HttpError(409, web.deps.backup.problem or "no replica is configured: run "
                        "`safehold backup init --replica URL --kit FILE`")

    def work(job: Job) -> str:
        results = []
        for i, replica in enumerate(replicas):
            job.progress(i, len(replicas), f"restoring {replica.url} into a scratch database")
            results += child_process.drill(web.deps.settings, web.store, replica, key)
        job.progress(len(replicas), len(replicas))
        job.result = {"results": [r.__dict__ for r in results]}
        bad = [r for r in results if not r.ok]
        if bad:
            raise SafeholdError("; ".join(f"{r.replica}: {r.detail}" for r in bad))
        return "; ".join(f"{r.replica}: {r.detail} ({r.seconds:.1f} s)" for r in results)
    job = web.jobs.start(req.user.name, "drill", "Restore drill", work, back="/admin")
    return web.redirect(f"/jobs/{job.id}")


def _name(raw: str) -> str:
    try:
        return users.check_name(raw)
    except SafeholdError as exc:
        raise HttpError(400, str(exc)) from exc


def _known(web: Web, raw: str) -> str:
    name = _name(raw)
    if web.store.principal(name) is None:
        raise HttpError(404, f"there is no user named {name!r}")
    return name


def add_user(web: Web, req: Request) -> Response:
    name = _name(req.arg("name"))
    secret = users.check_password(req.form.get("password", ""))
    if web.store.principal(name) is not None:
        raise HttpError(409, f"a user named {name!r} exists already")
    users.add_user(web.store, name, secret, Actor(req.user.id, "safehold-web"))
    if req.form.get("admin") == "on":
        roles.set_admin(web.store, name, True)
    return web.done(req, "/admin#users", f"created user {name}")


def disable(web: Web, req: Request, raw: str) -> Response:
    name = _known(web, raw)
    if name == req.user.name:
        raise HttpError(409, "you cannot disable yourself; ask another administrator")
    web.store.set_disabled(name, True)
    web.deps.forget(name)
    web.sessions.drop_user(name)
    return web.done(req, "/admin#users", f"disabled {name}: logged out everywhere, data kept")


def enable(web: Web, req: Request, raw: str) -> Response:
    name = _known(web, raw)
    web.store.set_disabled(name, False)
    return web.done(req, "/admin#users", f"enabled {name}")


def password(web: Web, req: Request, raw: str) -> Response:
    name = _known(web, raw)
    secret = users.check_password(req.form.get("password", ""))
    web.store.set_password(name, users.hash_password(secret))
    web.deps.forget(name)
    if name != req.user.name:
        web.sessions.drop_user(name)
    return web.done(req, "/admin#users", f"new password set for {name}; their devices need it now")
