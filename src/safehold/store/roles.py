"""Who administers the server: a list of user names kept in the ``meta`` table
(key ``web.admins``), so that no schema migration is needed. An administrator sees the
admin pages (users, replicas, drills); everything else is the same as for any user."""

from __future__ import annotations

import json

from safehold.store import replication as rep
from safehold.store.repo import Store

KEY = "web.admins"


def admins(store: Store) -> set[str]:
    raw = rep.get_meta(store, KEY)
    if not raw:
        return set()
    try:
        names = json.loads(raw)
    except ValueError:
        return set()  # a hand-edited meta row: nobody is admin rather than a crash
    return {n for n in names if isinstance(n, str)} if isinstance(names, list) else set()


def is_admin(store: Store, name: str) -> bool:
    return name in admins(store)


def set_admin(store: Store, name: str, admin: bool) -> None:
    names = admins(store)
    names = names | {name} if admin else names - {name}
    rep.set_meta(store, KEY, json.dumps(sorted(names)))
