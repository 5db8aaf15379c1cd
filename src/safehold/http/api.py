"""The JSON API under /api/v1/ (for the web UI and scripts): history, undelete,
rollback, restore-user and incidents, each limited to the caller's own data.
Described in openapi.json, served at /api/openapi.json."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from importlib import resources
from typing import Any

from safehold.core import guard as core_guard
from safehold.core import history as core
from safehold.core.model import Actor, Principal
from safehold.core.present import incident_json, plan_json, version_json
from safehold.errors import DomainError
from safehold.store.history import History
from safehold.store.incidents import Incidents
from safehold.store.repo import Store

PREFIX = "/dav/"


class ApiError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


def openapi() -> bytes:
    return resources.files("safehold.http").joinpath("openapi.json").read_bytes()


class Api:
    def __init__(self, store: Store) -> None:
        self.store = store
        self.history = History(store)
        self.incidents = Incidents(store)

    def _path(self, principal: Principal, url_path: Any) -> str:
        if not isinstance(url_path, str) or not url_path.startswith(PREFIX):
            raise ApiError(400, "path must be a URL path such as /dav/files/NAME/x.txt")
        inner = url_path[len(PREFIX):].strip("/")
        parts = inner.split("/")
        if len(parts) < 2 or parts[0] not in core.HOMES or parts[1] != principal.name:
            raise ApiError(404, "not found")  # other users' paths reveal nothing
        return inner

    def handle(self, method: str, path: str, query: dict[str, str], body: bytes,
               principal: Principal, actor: Actor) -> tuple[int, Any]:
        try:
            return self._dispatch(method, path, query, body, principal, actor)
        except ApiError as exc:
            return exc.status, {"error": str(exc)}
        except DomainError as exc:
            return exc.status, {"error": str(exc)}

    def _dispatch(self, method: str, path: str, query: dict[str, str], body: bytes,
                  principal: Principal, actor: Actor) -> tuple[int, Any]:
        routes: list[tuple[str, str, Callable[..., tuple[int, Any]]]] = [
            ("GET", r"/api/v1/history", self._history),
            ("GET", r"/api/v1/deleted", self._deleted),
            ("POST", r"/api/v1/undelete", self._undelete),
            ("POST", r"/api/v1/rollback", self._rollback),
            ("POST", r"/api/v1/restore-user", self._restore_user),
            ("GET", r"/api/v1/incidents", self._incidents),
            ("POST", r"/api/v1/incidents/(\d+)/undo", self._incident_undo),
            ("POST", r"/api/v1/incidents/(\d+)/confirm", self._incident_confirm),
        ]
        for verb, pattern, fn in routes:
            m = re.fullmatch(pattern, path)
            if m is None:
                continue
            if method != verb:
                raise ApiError(405, f"use {verb}")
            data: dict[str, Any] = {}
            if method == "POST" and body.strip():
                try:
                    data = json.loads(body)
                except ValueError as exc:
                    raise ApiError(400, f"the body is not valid JSON: {exc}") from exc
                if not isinstance(data, dict):
                    raise ApiError(400, "the body must be a JSON object")
            return fn(principal, actor, query, data, *m.groups())
        raise ApiError(404, "no such API endpoint; see /api/openapi.json")

    def _history(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        inner = self._path(p, q.get("path"))
        versions = self.history.versions_of(inner)
        if not versions:
            raise ApiError(404, "not found")
        return 200, {"path": PREFIX + inner, "versions": [version_json(v) for v in versions]}

    def _deleted(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        inner = self._path(p, q.get("collection"))
        return 200, {"collection": PREFIX + inner + "/",
                     "deleted": [version_json(v) for v in self.history.deleted_members(inner)]}

    @staticmethod
    def _dry(d: dict[str, Any]) -> bool:
        value = d.get("dry_run", False)
        if not isinstance(value, bool):
            raise ApiError(400, "dry_run must be true or false")
        return value

    def _run(self, p: Principal, a: Actor, plans: list[core.Plan], dry: bool) -> tuple[int, Any]:
        if not dry:
            plans = core.execute_all(self.history, p.id, plans, a)  # all or nothing
        return 200, {"dry_run": dry, "plans": [plan_json(plan) for plan in plans]}

    def _undelete(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        dry = self._dry(d)
        inner = self._path(p, d.get("path"))
        version = d.get("version")
        if version is not None and not isinstance(version, int):
            raise ApiError(400, "version must be a change number")
        return self._run(p, a, [core.plan_undelete(self.history, inner, version)], dry)

    def _point(self, d: dict[str, Any]) -> int:
        to = d.get("to")
        if not isinstance(to, (str, int)) or isinstance(to, bool):
            raise ApiError(400, "to must be an ISO 8601 time or a change number")
        return core.parse_point(str(to), self.history)

    def _rollback(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        dry = self._dry(d)
        inner = self._path(p, d.get("collection"))
        return self._run(p, a, [core.plan_rollback(self.history, inner, self._point(d))], dry)

    def _restore_user(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        dry = self._dry(d)
        return self._run(p, a, core.plan_restore_user(self.history, p.name, self._point(d)), dry)

    def _incidents(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any]) -> tuple[int, Any]:
        return 200, {"incidents": [incident_json(i, self.incidents.deleted_paths(i))
                                   for i in self.incidents.for_owner(p.id)]}

    def _incident_undo(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any],
                       ident: str) -> tuple[int, Any]:
        inc, plan = core_guard.undo(self.incidents, self.history, int(ident), a, p.id,
                                    dry_run=self._dry(d))
        return 200, {"incident": incident_json(inc, self.incidents.deleted_paths(inc)),
                     "plan": plan_json(plan)}

    def _incident_confirm(self, p: Principal, a: Actor, q: dict[str, str], d: dict[str, Any],
                          ident: str) -> tuple[int, Any]:
        inc = core_guard.confirm(self.incidents, int(ident), p.id)
        return 200, {"incident": incident_json(inc, self.incidents.deleted_paths(inc))}
