"""`safehold prune`: apply the retention policy now (the server also runs it daily)."""

from __future__ import annotations

import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.store.retention import prune as run_prune


@click.command()
@click.option("--dry-run", is_flag=True, help="Count what would be pruned; change nothing.")
@common_options
def prune(dry_run: bool, settings: Settings) -> None:
    """Drop the content of versions older than retention_days, keeping the last version
    of each day, every current version and every change-log row."""
    result = run_prune(open_store(settings), settings.retention_days, dry_run=dry_run)
    if dry_run:
        click.echo(f"dry run: {result.versions} old version(s) would lose their content")
    else:
        click.echo(f"pruned {result.versions} version(s); removed {result.blobs} blob(s), "
                   f"{result.bytes} bytes (run {result.run_id})")
