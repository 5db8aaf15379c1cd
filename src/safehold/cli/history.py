"""`safehold history | undelete | rollback | restore-user`: see and restore the past.
All of them work while the server runs; restores are new changes, never rewinds."""

from __future__ import annotations

import json
from typing import Any

import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.core import history as core
from safehold.core.model import Actor
from safehold.core.present import plan_json, version_json, when
from safehold.errors import SafeholdError
from safehold.store.history import History
from safehold.store.repo import Store

PREFIX = "/dav/"


def store_path(user: str, path: str) -> str:
    """A client-visible URL path -> the store's path, checking it is USER's."""
    if not path.startswith(PREFIX):
        raise click.BadParameter(f"{path!r} must be a URL path such as /dav/files/{user}/notes.txt")
    inner = path[len(PREFIX):].strip("/")
    parts = inner.split("/")
    if len(parts) < 2 or parts[1] != user or parts[0] not in core.HOMES:
        raise click.BadParameter(f"{path!r} is not in {user}'s tree "
                                 f"(/dav/files/{user}/, /dav/calendars/{user}/, /dav/addressbooks/{user}/)")
    return inner


def _owner(store: Store, user: str) -> int:
    p = store.principal(user)
    if p is None:
        raise click.ClickException(f"no user named {user!r}; see `safehold user list`")
    return p.id


def _print_plans(plans: list[core.Plan], dry_run: bool, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps([plan_json(p) for p in plans], indent=2))
        return
    total = 0
    for plan in plans:
        for op in plan.ops:
            src = f" (content of change {op.source.seq})" if op.source else ""
            click.echo(f"{op.action:7} {PREFIX}{op.path}{src}")
        total += len(plan.ops)
    if total == 0:
        click.echo("nothing to change: the state already matches")
    elif dry_run:
        click.echo(f"dry run: {total} change(s) would be written; nothing was changed")
    else:
        seqs = ", ".join(str(p.seq) for p in plans if p.seq)
        click.echo(f"restored: {total} change(s) written as change {seqs}; "
                   "devices will sync them as ordinary updates")


def _run(settings: Settings, user: str, build: Any, dry_run: bool, as_json: bool) -> None:
    store = open_store(settings)
    hist = History(store)
    try:
        owner = _owner(store, user)
        plans = build(hist)
        if not dry_run:
            actor = Actor(None, "safehold-cli")
            plans = core.execute_all(hist, owner, plans, actor)  # all or nothing
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    _print_plans(plans, dry_run, as_json)


def restore_options(fn: Any) -> Any:
    """The options every restore command shares: a dry run, JSON output, settings."""
    fn = common_options(fn)
    fn = click.option("--json", "as_json", is_flag=True, help="Print JSON.")(fn)
    return click.option("--dry-run", is_flag=True, help="Show what would change; change nothing.")(fn)


@click.command()
@click.argument("user")
@click.argument("path")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def history(user: str, path: str, as_json: bool, settings: Settings) -> None:
    """Every version of PATH (an item or collection URL path), oldest first."""
    inner = store_path(user, path)
    store = open_store(settings)
    _owner(store, user)
    versions = History(store).versions_of(inner)
    if not versions:
        raise click.ClickException(f"{path} has no history: it never existed")
    if as_json:
        click.echo(json.dumps([version_json(v) for v in versions], indent=2))
        return
    for v in versions:
        what = "deleted" if v.deleted else f"{v.size} bytes {v.etag}"
        click.echo(f"{v.seq:>8}  {when(v.at)}  {v.change_op:9} {what}  by {v.actor or 'server'}"
                   f" ({v.user_agent or '-'}, request {v.request_id or '-'})")


@click.command()
@click.argument("user")
@click.argument("path")
@click.option("--version", "version_seq", type=int, help="Restore the version of this change "
              "number (see `safehold history`); default: the last one before the delete.")
@restore_options
def undelete(user: str, path: str, version_seq: int | None, dry_run: bool, as_json: bool,
             settings: Settings) -> None:
    """Bring back a deleted item or collection, or an earlier version of an item."""
    inner = store_path(user, path)
    _run(settings, user, lambda h: [core.plan_undelete(h, inner, version_seq)], dry_run, as_json)


@click.command()
@click.argument("user")
@click.argument("collection_path")
@click.option("--to", "point", required=True, help="ISO 8601 time (naive = server local time) "
              "or a change number.")
@restore_options
def rollback(user: str, collection_path: str, point: str, dry_run: bool, as_json: bool,
             settings: Settings) -> None:
    """Roll a collection back to a moment: later items are deleted, deleted ones come
    back, changed ones revert. Written as new changes (undoable)."""
    inner = store_path(user, collection_path)

    def build(h: History) -> list[core.Plan]:
        return [core.plan_rollback(h, inner, core.parse_point(point, h))]
    _run(settings, user, build, dry_run, as_json)


@click.command("restore-user")
@click.argument("user")
@click.option("--to", "point", required=True, help="ISO 8601 time (naive = server local time) "
              "or a change number.")
@restore_options
def restore_user(user: str, point: str, dry_run: bool, as_json: bool, settings: Settings) -> None:
    """Restore all of USER's files, calendars and address books to a moment; other
    users are not touched."""
    def build(h: History) -> list[core.Plan]:
        return core.plan_restore_user(h, user, core.parse_point(point, h))
    _run(settings, user, build, dry_run, as_json)
