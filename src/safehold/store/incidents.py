"""Mass-deletion incidents: the store side of core.guard."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from sqlalchemy.engine import Connection

from safehold.core.model import Incident
from safehold.store.repo import Store
from safehold.store.schema import change, incident, resource, version


def _incident(r: Any) -> Incident:
    return Incident(id=int(r.id), owner_id=int(r.owner_id), collection=r.collection,
                    actor_id=r.actor_id, user_agent=r.user_agent, opened_at=float(r.opened_at),
                    first_seq=int(r.first_seq), last_seq=int(r.last_seq), count=int(r.count),
                    state=r.state, resolved_at=r.resolved_at, undo_seq=r.undo_seq)


def _recent(anonymous: bool, sqlite: bool) -> sa.TextClause:
    """Member deletions by one client since a time, driven from the delete changes
    (the partial index ix_change_delete_at, revision 0007): the cost is the number of
    deletions in the window, not of all writes in it. At N = 100,000 written within
    the window, a DELETE walked the whole change log and every version of the
    collection (150 ms); this reads the 654 deletions there were (3.5 ms). SQLite's
    planner, without statistics, would start from the version table's parent index:
    CROSS JOIN fixes its order (PostgreSQL plans from its statistics)."""
    return sa.text(
        "SELECT count(DISTINCT version.path), min(version.seq), max(version.seq) "
        f"FROM change {'CROSS JOIN' if sqlite else 'JOIN'} version ON version.seq = change.seq "
        "WHERE change.op = 'delete' AND change.at >= :k_since AND "
        f"{'change.actor_id IS NULL' if anonymous else 'change.actor_id = :k_actor'} AND "
        "coalesce(change.user_agent, '') = :k_ua AND version.parent = :k_parent AND version.deleted")


# Built once: every DELETE of a member runs one (building them cost more than running).
_RECENT = {(anonymous, sqlite): _recent(anonymous, sqlite)
           for anonymous in (False, True) for sqlite in (False, True)}
_MEMBERS = sa.select(sa.func.count()).select_from(resource).where(
    resource.c.parent == sa.bindparam("k_parent"))


class Incidents:
    """What core.guard.GuardPort needs, on the store."""

    def __init__(self, store: Store) -> None:
        self.store = store

    def recent_deletes(self, collection: str, actor_id: int | None, user_agent: str,
                       since: float) -> tuple[int, int, int]:
        """(count, first seq, last seq) of member deletions by this client since ``since``."""
        # The change log keeps at most 512 characters of a User-Agent, and none as NULL.
        params = {"k_parent": collection, "k_since": since, "k_ua": user_agent[:512],
                  "k_actor": actor_id}

        def q(c: Connection) -> tuple[int, int, int]:
            statement = _RECENT[actor_id is None, c.dialect.name == "sqlite"]
            row = c.execute(statement, params if actor_id is not None else
                            {k: v for k, v in params.items() if k != "k_actor"}).one()
            return int(row[0] or 0), int(row[1] or 0), int(row[2] or 0)
        return self.store._read(q)

    def member_count(self, collection: str) -> int:
        return self.store._read(lambda c: int(c.execute(_MEMBERS, {"k_parent": collection}).scalar() or 0))

    def find_open(self, collection: str, actor_id: int | None, user_agent: str) -> Incident | None:
        def q(c: Connection) -> Incident | None:
            row = c.execute(sa.select(incident).where(
                incident.c.collection == collection, incident.c.user_agent == user_agent,
                incident.c.state == "open",
                incident.c.actor_id == actor_id if actor_id is not None
                else incident.c.actor_id.is_(None)).order_by(incident.c.id.desc())).first()
            return _incident(row) if row else None
        return self.store._read(q)

    def save(self, inc: Incident) -> Incident:
        values = dict(owner_id=inc.owner_id, collection=inc.collection, actor_id=inc.actor_id,
                      user_agent=inc.user_agent, opened_at=inc.opened_at, first_seq=inc.first_seq,
                      last_seq=inc.last_seq, count=inc.count, state=inc.state,
                      resolved_at=inc.resolved_at, undo_seq=inc.undo_seq)

        def tx(c: Connection) -> Incident:
            if inc.id:
                c.execute(sa.update(incident).where(incident.c.id == inc.id).values(**values))
                return inc
            new_id = int(c.execute(sa.insert(incident).values(**values)).inserted_primary_key[0])  # type: ignore[index]
            return _incident(c.execute(sa.select(incident).where(incident.c.id == new_id)).one())
        return self.store._write(tx)

    def get(self, incident_id: int) -> Incident | None:
        row = self.store._read(lambda c: c.execute(
            sa.select(incident).where(incident.c.id == incident_id)).first())
        return _incident(row) if row else None

    def for_owner(self, owner_id: int) -> list[Incident]:
        rows = self.store._read(lambda c: c.execute(
            sa.select(incident).where(incident.c.owner_id == owner_id)
            .order_by(incident.c.id.desc())).all())
        return [_incident(r) for r in rows]

    def deleted_paths(self, inc: Incident) -> list[str]:
        """The members this client deleted during the incident, in order."""
        def q(c: Connection) -> list[str]:
            rows = c.execute(
                sa.select(version.c.path).join(change, change.c.seq == version.c.seq)
                .where(version.c.parent == inc.collection, version.c.deleted.is_(True),
                       change.c.op == "delete", version.c.seq >= inc.first_seq,
                       version.c.seq <= inc.last_seq, change.c.user_agent == inc.user_agent,
                       change.c.actor_id == inc.actor_id if inc.actor_id is not None
                       else change.c.actor_id.is_(None))
                .order_by(version.c.seq)).scalars().all()
            return list(dict.fromkeys(rows))
        return self.store._read(q)
