"""`safehold user add|passwd|list|disable|enable`."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime

import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.core import users
from safehold.core.model import Actor
from safehold.errors import UserError
from safehold.store.sla import is_internal
from safehold.store import roles, web_sessions


def _read_password(from_stdin: bool) -> str:
    if from_stdin:
        line = sys.stdin.readline()
        if not line:
            raise click.ClickException("--password-stdin: standard input is empty")
        return line.rstrip("\r\n")
    if not sys.stdin.isatty():
        raise click.ClickException("no terminal to prompt on; pass --password-stdin")
    return str(click.prompt("Password", hide_input=True, confirmation_prompt=True))


@click.group()
def user() -> None:
    """Manage users (principals)."""


@user.command("add")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@click.option("--admin", is_flag=True, help="Let NAME use the admin web pages.")
@common_options
def add(name: str, password_stdin: bool, admin: bool, settings: Settings) -> None:
    """Create user NAME with a files home at /dav/files/NAME/."""
    try:
        users.check_name(name)
        password = users.check_password(_read_password(password_stdin))
        store = open_store(settings)
        users.add_user(store, name, password, Actor(None, "safehold-cli"))
        if admin:
            roles.set_admin(store, name, True)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"created user {name}" + (" (administrator)" if admin else ""))


@user.command("admin")
@click.argument("name")
@click.option("--revoke", is_flag=True, help="Take the administrator role away instead.")
@common_options
def admin_(name: str, revoke: bool, settings: Settings) -> None:
    """Make NAME an administrator (the admin web pages), or --revoke it."""
    store = open_store(settings)
    if store.principal(name) is None:
        raise click.ClickException(f"no user named {name!r}; see `safehold user list`")
    roles.set_admin(store, name, not revoke)
    click.echo(f"{name} is {'no longer ' if revoke else ''}an administrator")


@user.command("passwd")
@click.argument("name")
@click.option("--password-stdin", is_flag=True, help="Read the password from standard input.")
@common_options
def passwd(name: str, password_stdin: bool, settings: Settings) -> None:
    """Set a new password for NAME."""
    try:
        password = users.check_password(_read_password(password_stdin))
        store = open_store(settings)
        store.set_password(name, users.hash_password(password))
        # A reset after a leak must not leave a web login made with the old password.
        ended = web_sessions.remove_user(store, name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"password changed for {name}; running servers accept the new one at once "
               f"and the old one for at most auth_cache_seconds; {ended} web login(s) ended")


@user.command("list")
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def list_(as_json: bool, settings: Settings) -> None:
    """List users."""
    # The SLA prober's internal account is not a user.
    rows = [p for p in open_store(settings).principals() if not is_internal(p.name)]
    if as_json:
        click.echo(json.dumps([{"name": p.name, "disabled": p.disabled,
                                "created_at": p.created_at} for p in rows]))
        return
    for p in rows:
        created = datetime.fromtimestamp(p.created_at, UTC).strftime("%Y-%m-%d %H:%M")
        click.echo(f"{p.name}\t{'disabled' if p.disabled else 'active'}\tcreated {created} UTC")


@user.command("disable")
@click.argument("name")
@common_options
def disable(name: str, settings: Settings) -> None:
    """Stop NAME from logging in (data is kept)."""
    try:
        store = open_store(settings)
        store.set_disabled(name, True)
        ended = web_sessions.remove_user(store, name)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"disabled {name}; {ended} web login(s) ended")


@user.command("enable")
@click.argument("name")
@common_options
def enable(name: str, settings: Settings) -> None:
    """Allow a disabled user to log in again."""
    try:
        open_store(settings).set_disabled(name, False)
    except UserError as exc:
        raise click.ClickException(str(exc)) from exc
    click.echo(f"enabled {name}")
