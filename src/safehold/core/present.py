"""JSON shapes of history entries, restore plans and incidents, shared by the CLI's
--json output and the HTTP API (so that both say the same thing)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from safehold.core.history import Plan
from safehold.core.model import Incident, Version

PREFIX = "/dav/"


def when(ts: float) -> str:
    return datetime.fromtimestamp(ts).astimezone().isoformat(timespec="seconds")


def version_json(v: Version) -> dict[str, Any]:
    return {"seq": v.seq, "path": PREFIX + v.path, "op": v.op, "change_op": v.change_op,
            "deleted": v.deleted, "size": v.size, "etag": v.etag or None,
            "content_type": v.content_type, "time": when(v.at), "user": v.actor,
            "user_agent": v.user_agent, "request_id": v.request_id}


def plan_json(plan: Plan) -> dict[str, Any]:
    return {"target": PREFIX + plan.target, "to_seq": plan.to_seq, "seq": plan.seq,
            "summary": plan.summary(),
            "changes": [{"action": op.action, "path": PREFIX + op.path,
                         "from_seq": op.source.seq if op.source else None} for op in plan.ops]}


def incident_json(inc: Incident, paths: list[str]) -> dict[str, Any]:
    return {"id": inc.id, "collection": PREFIX + inc.collection + "/", "state": inc.state,
            "user_agent": inc.user_agent, "count": inc.count, "opened_at": when(inc.opened_at),
            "first_seq": inc.first_seq, "last_seq": inc.last_seq, "undo_seq": inc.undo_seq,
            "deleted": [PREFIX + p for p in paths]}
