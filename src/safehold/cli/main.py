"""Entry point of the `safehold` command."""

from __future__ import annotations

from typing import Any

import click

from safehold import __version__
from safehold.store import engine as engine_mod
from safehold.store import faults
from safehold.cli.backup import backup, drill, restore
from safehold.cli.check import check
from safehold.cli.status import status
from safehold.cli.incidents import incident, incidents
from safehold.cli.prune import prune
from safehold.cli.history import history, restore_user, rollback, undelete
from safehold.cli.portability import export, import_
from safehold.cli.serve import serve
from safehold.cli.sla import sla
from safehold.cli.upgrade import upgrade
from safehold.cli.user import user


class _Safehold(click.Group):
    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except Exception as exc:
            if not faults.fsync_failed(exc):
                raise
            # A write through the engine outside the store (schema creation, the SLA
            # prober's file, …): no traceback, and nothing more on the database
            # (fsyncgate). fatal_fsync exits without closing connections, whose last
            # close would checkpoint the log into the database.
            click.echo("error: the disk failed to fsync the database: the command stopped "
                       "at once. Check the disk (the kernel log); the next start replays the "
                       "database's log", err=True)
            engine_mod.fatal_fsync(exc)
            raise


@click.group(cls=_Safehold, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(__version__, prog_name="safehold")
def main() -> None:
    """safehold: contacts, calendars and files that cannot be lost."""


main.add_command(serve)
main.add_command(user)
main.add_command(check)
main.add_command(history)
main.add_command(undelete)
main.add_command(rollback)
main.add_command(restore_user)
main.add_command(incidents)
main.add_command(incident)
main.add_command(prune)
main.add_command(export)
main.add_command(import_)
main.add_command(backup)
main.add_command(restore)
main.add_command(drill)
main.add_command(status)
main.add_command(sla)
main.add_command(upgrade)
