"""The public surface is documented (STYLE 12): every setting, command and endpoint."""

from __future__ import annotations

from pathlib import Path

import click

from safehold.cli.main import main
from safehold.config import DOCUMENTED

DOCS = Path(__file__).resolve().parent.parent / "docs"


def _commands(group: click.Group, prefix: str = "safehold") -> list[str]:
    out = []
    for name, cmd in group.commands.items():
        full = f"{prefix} {name}"
        if isinstance(cmd, click.Group):
            out += _commands(cmd, full)
        else:
            out.append(full)
    return out


def test_every_setting_is_documented() -> None:
    text = (DOCS / "configuration.md").read_text()
    missing = [s for s in DOCUMENTED if f"`{s}`" not in text]
    assert not missing, f"settings missing from docs/configuration.md: {missing}"


def test_every_command_is_documented() -> None:
    text = (DOCS / "cli.md").read_text()
    missing = [c for c in _commands(main) if f"`{c}" not in text]
    assert not missing, f"commands missing from docs/cli.md: {missing}"


def test_every_endpoint_is_documented() -> None:
    text = (DOCS / "http.md").read_text()
    for endpoint in ("/healthz", "/readyz", "/.well-known/caldav", "/.well-known/carddav",
                     "/dav/files/NAME/", "/dav/principals/NAME/"):
        assert f"`{endpoint}`" in text or endpoint in text, endpoint
