"""`safehold serve`."""

from __future__ import annotations

import logging

import click
import uvicorn

from safehold.cli.common import common_options
from dataclasses import replace

from safehold.config import Settings
from safehold.errors import SafeholdError
from safehold.http import memory
from safehold.http.app import build
from safehold.http import protocol


# How long an idle keep-alive connection stays open. uvicorn's 5 s default races with
# clients and reverse proxies that reuse a connection after a pause: a request sent as the
# server closes it is lost ("server disconnected without a response", a proxy's 502), seen
# in the test suite after a rollback paused a client for ~5 s. Longer than nginx's (60 s)
# and Caddy's upstream keep-alive, so that the proxy closes first.
KEEP_ALIVE_SECONDS = 125


@click.command()
@click.option("--host", help="Address to listen on (default 127.0.0.1).")
@click.option("--port", type=int, help="Port to listen on (default 8232).")
@common_options
def serve(host: str | None, port: int | None, settings: Settings) -> None:
    """Run the server (creates the database on first use)."""
    memory.tune()  # before the first large allocations
    settings = replace(settings, host=host or settings.host, port=port or settings.port)
    logging.basicConfig(level=settings.log_level.upper(),
                        format="%(asctime)s %(levelname)s %(name)s %(message)s")
    try:
        app = build(settings)
    except SafeholdError as exc:
        raise click.ClickException(f"cannot start: {exc}") from exc
    memory.freeze()  # what was built so far lives as long as the process
    click.echo(f"safehold listening on http://{settings.host}:{settings.port}/dav/ "
               f"(data in {settings.data_dir})", err=True)
    uvicorn.run(app, host=settings.host, port=settings.port, log_level="warning",
                access_log=False, lifespan="on", timeout_graceful_shutdown=5,
                http=protocol.Protocol, ws="none", timeout_keep_alive=KEEP_ALIVE_SECONDS,
                server_header=False)  # the app sends its own (safehold/VERSION), once
