"""`safehold check`: the store's self-test and full integrity check."""

from __future__ import annotations

import json

import click

from safehold.cli.common import common_options, open_store
from safehold.config import Settings
from safehold.store import engine as engine_mod


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def check(as_json: bool, settings: Settings) -> None:
    """Run the startup self-test and a full database integrity check."""
    store = open_store(settings)
    facts = engine_mod.self_test(store.engine)
    facts["integrity_check"] = engine_mod.integrity_check(store.engine)
    facts["last_seq"] = str(store.last_seq())
    if as_json:
        click.echo(json.dumps(facts))
    else:
        for k, v in facts.items():
            click.echo(f"{k}: {v}")
    if facts["integrity_check"] != "ok":
        raise SystemExit(1)
