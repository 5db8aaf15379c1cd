"""`safehold export | import`: a user's data in standard formats, and back (DESIGN
promise 10). Both work while the server runs; see docs/cli.md for what each path keeps
byte for byte."""

from __future__ import annotations

import json
from pathlib import Path

import click

from safehold.cli.common import common_options, open_store
from safehold.cli.exporter import Exporter
from safehold.cli.history import store_path
from safehold.cli.importer import Importer
from safehold.cli.progress import Progress
from safehold.config import Settings
from safehold.core import portability as port
from safehold.core.model import ADDRESSBOOK, CALENDAR, Actor, Principal
from safehold.errors import SafeholdError
from safehold.store.repo import Store

ACTOR = Actor(None, "safehold-cli import")
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")


def _principal(store: Store, user: str) -> Principal:
    found = store.principal(user)
    if found is None:
        raise click.ClickException(f"no user named {user!r}; see `safehold user list`, or create "
                                   f"one with `safehold user add {user}`")
    return found


@click.command()
@click.argument("user")
@click.option("-o", "--output", required=True, type=click.Path(dir_okay=False, path_type=Path),
              help="The zip file to write.")
@click.option("--force", is_flag=True, help="Replace OUTPUT if it exists.")
@common_options
def export(user: str, output: Path, force: bool, settings: Settings) -> None:
    """Write all of USER's files, calendars and address books to a zip: files as files,
    each calendar as one .ics, each address book as one .vcf, every item's exact bytes,
    and a manifest.json."""
    if output.exists() and not force:
        raise click.ClickException(f"{output} exists; pass --force to replace it, or choose "
                                   "another name")
    store = open_store(settings)
    _principal(store, user)
    progress = Progress("export")
    try:
        manifest = Exporter(store, user, settings.tmp_dir, progress).write(output)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    except OSError as exc:
        raise click.ClickException(f"cannot write {output}: {exc}") from exc
    progress.finish()
    kinds = [c.kind for c in manifest.collections]
    click.echo(f"exported {user}: {kinds.count(CALENDAR)} calendar(s), "
               f"{kinds.count(ADDRESSBOOK)} address book(s), {len(manifest.items)} item(s), "
               f"{sum(i.size for i in manifest.items)} bytes to {output}")


def _kind_of(path: Path) -> str:
    """zip, ics or vcf: by content, then by extension."""
    with open(path, "rb") as fh:
        head = fh.read(4096)
    if head.startswith(_ZIP_MAGIC):
        return "zip"
    text = head.removeprefix(b"\xef\xbb\xbf").lstrip().upper()
    if text.startswith(b"BEGIN:VCALENDAR"):
        return "ics"
    if text.startswith(b"BEGIN:VCARD"):
        return "vcf"
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("zip", "ics", "vcf"):
        return suffix
    raise click.ClickException(f"cannot tell what {path} is: expected a safehold export (.zip), "
                               "an iCalendar file (.ics) or a vCard file (.vcf)")


@click.command("import")
@click.argument("user")
@click.argument("file", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--into", "into", metavar="COLLECTION_PATH",
              help="For a .ics or .vcf: the calendar or address book to import into, e.g. "
                   "/dav/calendars/USER/work/ (default: USER's personal calendar or contacts).")
@click.option("--dry-run", is_flag=True, help="Report what would happen; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@common_options
def import_(user: str, file: Path, into: str | None, dry_run: bool, as_json: bool,
            settings: Settings) -> None:
    """Import FILE into USER's account: a zip written by `safehold export` (restored byte
    for byte), or a plain .ics or .vcf (split into one item per UID / per card).
    Nothing existing is overwritten."""
    kind = _kind_of(file)
    if kind == "zip" and into is not None:
        raise click.BadParameter("an export archive restores its own collections; --into is for "
                                 ".ics and .vcf files", param_hint="--into")
    target = store_path(user, into) if into is not None else None
    store = open_store(settings)
    principal = _principal(store, user)
    report = port.ImportReport(str(file), user, dry_run)
    progress = Progress("import")
    importer = Importer(store, principal, report, progress, settings.tmp_dir, ACTOR)
    try:
        if kind == "zip":
            importer.archive(file)
        else:
            data = file.read_bytes()
            if kind == "ics":
                objects = port.split_calendar(data, lambda uid: port.object_name(uid, ".ics"))
                importer.objects(objects, target or f"calendars/{user}/personal", CALENDAR)
            else:
                objects = port.split_cards(data, lambda uid: port.object_name(uid, ".vcf"))
                importer.objects(objects, target or f"addressbooks/{user}/contacts", ADDRESSBOOK)
    except port.StructureError as exc:
        raise click.ClickException(f"{file} is not a valid iCalendar file: {exc}") from exc
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    progress.finish()
    if as_json:
        click.echo(json.dumps(report.as_json(), indent=2))
    else:
        click.echo(f"import of {file} into {user}{' (dry run)' if dry_run else ''}")
        for line in report.summary():
            click.echo(line)
