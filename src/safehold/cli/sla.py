"""`safehold sla report | probe`: service levels against the written policy, and the
external prober that sees an outage of the whole server from outside."""

from __future__ import annotations

import json
import time
from pathlib import Path

import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.errors import SafeholdError
from safehold.sla import report as report_mod
from safehold.sla.measurement import month_window
from safehold.sla.events import Sample
from safehold.sla.policy import Policy
from safehold.sla.prober import Prober, Target
from safehold.store import sla as store_sla


@click.group()
def sla() -> None:
    """Service levels: measured, reported, and what is owed."""


@sla.command("report")
@click.option("--month", help="YEAR-MONTH (UTC), e.g. 2026-11; default: this month so far.")
@click.option("--format", "fmt", type=click.Choice(["md", "json", "html"]), default="md",
              show_default=True)
@click.option("--samples", "sample_files", multiple=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Samples file of an external prober (`safehold sla probe --samples`); repeatable.")
@common_options
def report(month: str | None, fmt: str, sample_files: tuple[Path, ...], settings: Settings) -> None:
    """Availability, downtime with each incident's cause, RPO and RTO against their
    targets, the last verified restore, and the credits owed under the policy."""
    try:
        policy = Policy.from_settings(settings)
        store = open_store(settings)
        now = time.time()
        start, end, _ = month_window(month, now)
        external: list[Sample] = []
        for path in sample_files:
            engine = store_sla.open_sample_file(path)
            try:
                external += [Sample(float(r["at"]), bool(r["ok"]), float(r["latency"]), r["step"],
                                    r["detail"]) for r in store_sla.read_sample_file(engine, start, end)]
            finally:
                engine.dispose()
        click.echo(report_mod.render(report_mod.gather(store, policy, month, now, external), fmt),
                   nl=False)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc


@sla.command("probe")
@click.option("--url", required=True, help="The safehold server to probe, e.g. https://dav.example.org")
@click.option("--user", required=True, help="A user set aside for probing.")
@click.option("--password-file", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="File whose first line is that user's password.")
@click.option("--collection", help="Collection the probe writes in (created if missing); "
              "default /dav/files/USER/safehold-probe/.")
@click.option("--interval", type=float, default=10.0, show_default=True, help="Seconds between probes.")
@click.option("--count", type=int, default=0, help="Stop after this many probes (default: run until stopped).")
@click.option("--samples", "sample_file", type=click.Path(dir_okay=False, path_type=Path),
              help="SQLite file to append samples to (for `sla report --samples`); "
              "without it, samples are only printed.")
def probe(url: str, user: str, password_file: Path, collection: str | None, interval: float,
          count: int, sample_file: Path | None) -> None:
    """Probe a safehold server from outside: PROPFIND, PUT, GET, DELETE every INTERVAL
    seconds; print each sample as a JSON line."""
    lines = password_file.read_text().splitlines()
    if not lines or not lines[0]:
        raise click.ClickException(f"{password_file} is empty; put the probe user's password on its "
                                   "first line")
    if interval <= 0:
        raise click.ClickException("--interval must be positive")
    target = Target(url.rstrip("/"), user, lines[0],
                    collection or f"/dav/files/{user}/safehold-probe/")
    try:
        prober = Prober(target, create_collection=True)
    except ValueError as exc:
        raise click.ClickException(f"--url: {exc}") from exc
    engine = store_sla.open_sample_file(sample_file) if sample_file else None
    done = 0
    try:
        while True:
            started = time.monotonic()
            s = prober.run_once()
            row = {"at": s.at, "ok": s.ok, "latency": round(s.latency, 4), "step": s.step,
                   "detail": s.detail}
            if engine is not None:
                store_sla.write_sample_file(engine, row)
            click.echo(json.dumps(row))
            done += 1
            if count and done >= count:
                return
            time.sleep(max(0.0, interval - (time.monotonic() - started)))
    except KeyboardInterrupt:
        return
    finally:
        if engine is not None:
            engine.dispose()
