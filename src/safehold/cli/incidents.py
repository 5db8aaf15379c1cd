"""`safehold incidents USER` and `safehold incident undo|confirm ID`."""

from __future__ import annotations

import json
from datetime import datetime
import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.core import guard
from safehold.core.model import Actor
from safehold.core.present import incident_json, plan_json
from safehold.errors import SafeholdError
from safehold.store.history import History
from safehold.store.incidents import Incidents


@click.command()
@click.argument("user")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def incidents(user: str, as_json: bool, settings: Settings) -> None:
    """List USER's mass-deletion incidents, newest first."""
    store = open_store(settings)
    p = store.principal(user)
    if p is None:
        raise click.ClickException(f"no user named {user!r}")
    port = Incidents(store)
    found = port.for_owner(p.id)
    if as_json:
        click.echo(json.dumps([incident_json(i, port.deleted_paths(i)) for i in found], indent=2))
        return
    if not found:
        click.echo(f"no mass-deletion incidents for {user}")
    for i in found:
        click.echo(f"{i.id:>5}  {i.state:9} {i.count} deleted from /dav/{i.collection}/ by "
                   f"{i.user_agent or '(no User-Agent)'} at "
                   f"{datetime.fromtimestamp(i.opened_at).astimezone():%Y-%m-%d %H:%M}")


@click.group()
def incident() -> None:
    """Undo or confirm a mass-deletion incident."""


@incident.command("undo")
@click.argument("incident_id", type=int)
@click.option("--dry-run", is_flag=True, help="Show what would come back; change nothing.")
@common_options
def undo(incident_id: int, dry_run: bool, settings: Settings) -> None:
    """Bring back everything the burst deleted, as new versions."""
    store = open_store(settings)
    port = Incidents(store)
    inc = port.get(incident_id)
    if inc is None:
        raise click.ClickException(f"no incident {incident_id}; see `safehold incidents USER`")
    try:
        inc, plan = guard.undo(port, History(store), incident_id, Actor(None, "safehold-cli"),
                               inc.owner_id, dry_run=dry_run)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(json.dumps(plan_json(plan), indent=2) if dry_run else
               f"incident {inc.id} undone: {len(plan.ops)} item(s) restored as change {plan.seq}")


@incident.command("confirm")
@click.argument("incident_id", type=int)
@common_options
def confirm(incident_id: int, settings: Settings) -> None:
    """The deletions were intended: close the incident (strict mode lets the client go on)."""
    store = open_store(settings)
    port = Incidents(store)
    inc = port.get(incident_id)
    if inc is None:
        raise click.ClickException(f"no incident {incident_id}")
    guard.confirm(port, incident_id, inc.owner_id)
    click.echo(f"incident {incident_id} confirmed")
