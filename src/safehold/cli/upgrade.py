"""`safehold upgrade`: the gated schema upgrade (safehold.upgrade, docs/upgrades.md)."""

from __future__ import annotations

import logging

import click

from safehold.cli.common import common_options
from safehold.config import Settings
from safehold.errors import SafeholdError
from safehold.backup import setup
from safehold.store import engine as engine_mod
from safehold.store import lost
from safehold.store.repo import Store
from safehold.upgrade import runner


@click.command()
@click.option("--dry-run", is_flag=True,
              help="Print the pending migrations and whether the gate is open; change nothing.")
@click.option("--backup-now", is_flag=True,
              help="Ship, snapshot and drill every replica first, so that the gate opens.")
@click.option("--override-gate", "override", metavar="REASON",
              help="Upgrade without a verified backup. Logged and recorded with REASON.")
@common_options
def upgrade(dry_run: bool, backup_now: bool, override: str | None, settings: Settings) -> None:
    """Migrate the database to this release's schema, gated by a verified backup."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    if override is not None and not override.strip():
        raise click.BadParameter("give the reason for overriding the gate", param_hint="--override-gate")
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        lost.refuse_if_lost(settings.db_url(), setup.key_path(settings))
        engine = engine_mod.create(settings.db_url())
        # Not ensure_schema: this command is the one that may open an older schema.
        engine_mod.self_test(engine)
        store = Store(engine, settings.tmp_dir)
        runner.upgrade(store, settings, runner.Options(dry_run, backup_now, override),
                       lambda line: click.echo(line))
    except runner.GateClosed as exc:
        click.echo(f"Error: {exc}", err=True)
        raise SystemExit(2) from exc
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
