"""`safehold status`: is the data safe right now? Non-zero exit when red."""

from __future__ import annotations

import json
from datetime import datetime

import click

from safehold.backup import setup
from safehold.backup.status import compute
from safehold.cli.common import common_options, open_store
from safehold.config import Settings


@click.command()
@click.option("--json", "as_json", is_flag=True, help="Print JSON.")
@common_options
def status(as_json: bool, settings: Settings) -> None:
    """Replicas, lag, the last drill, and a verdict (green, amber, red)."""
    store = open_store(settings)
    st = compute(store, setup.resolve(settings, store),
                 verify_days=float(settings.replica_verify_days))
    if as_json:
        click.echo(json.dumps({"verdict": st.verdict, "messages": st.messages, **st.facts},
                              indent=2))
    else:
        click.echo(f"verdict: {st.verdict.upper()}")
        for m in st.messages:
            click.echo(f"  - {m}")
        click.echo(f"last change: {st.facts['last_seq']} (lineage {st.facts['lineage']})")
        for r in st.facts["replicas"]:
            v = r["verify"]
            if v["pass_started"] is None and v["last_full_pass"] is None:
                # No verify slice has listed the replica yet: its size is unknown, not 0.
                click.echo(f"replica {r['url']}: holds seq {r['shipped_seq']}, "
                           f"{r['lag_seconds']:.1f} s behind; size not measured yet")
                click.echo("  verify pass: not started (the server runs one within the hour; "
                           "`safehold backup verify` runs a full one now)")
            else:
                click.echo(f"replica {r['url']}: holds seq {r['shipped_seq']}, "
                           f"{r['lag_seconds']:.1f} s behind; {r['objects']} objects, "
                           f"{r['bytes']} bytes")
                click.echo(f"  verify pass: {v['progress'] * 100:.0f}% of the objects re-read "
                           f"({v['checked']}/{v['objects']}); last full pass "
                           f"{_when(v['last_full_pass'])}")
            p = r.get("retention")
            if p:
                click.echo(f"  retention: {'ok' if p['ok'] else 'FAILED'} at {_when(p['at'])}: "
                           f"{p['detail']}")
        d = st.facts.get("last_drill")
        if d:
            click.echo(f"last drill: {'passed' if d['ok'] else 'FAILED'} at {_when(d['at'])}: "
                       f"{d['detail']}")
        if st.facts.get("next_drill_at"):
            click.echo(f"next drill: {_when(st.facts['next_drill_at'])}")
    if st.verdict == "red":
        raise SystemExit(1)


def _when(at: float | None) -> str:
    if not at:
        return "never"
    return datetime.fromtimestamp(at).astimezone().isoformat(timespec="seconds")
