"""Options every command takes, and opening the store from them."""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable
from typing import Any, TypeVar

import click

from safehold import config
from safehold.errors import SafeholdError
from safehold.store import engine as engine_mod
from safehold.backup import setup
from safehold.store import lost, unfinished
from safehold.store.repo import Store

F = TypeVar("F", bound=Callable[..., Any])


def common_options(fn: F) -> F:
    @click.option("--config", "config_file", type=click.Path(dir_okay=False),
                  help="TOML settings file (or SAFEHOLD_CONFIG).")
    @click.option("--data-dir", type=click.Path(file_okay=False),
                  help="Data directory (or SAFEHOLD_DATA_DIR; default ./data).")
    @click.option("--database-url", help="postgresql://… or sqlite:///… "
                  "(or SAFEHOLD_DATABASE_URL; default SQLite in the data directory).")
    @functools.wraps(fn)
    def wrapper(*args: Any, config_file: str | None, data_dir: str | None,
                database_url: str | None, **kwargs: Any) -> Any:
        try:
            settings = config.load(config_file, {"data_dir": data_dir, "database_url": database_url})
        except SafeholdError as exc:
            raise click.ClickException(str(exc)) from exc
        return fn(*args, settings=settings, **kwargs)
    return wrapper  # type: ignore[return-value]


def open_store(settings: config.Settings, *, restoring: bool = False) -> Store:
    """Open the store the way the server does (creating it on first use). A database a
    restore did not finish is refused (store/unfinished.py), except by the restore."""
    try:
        settings.data_dir.mkdir(parents=True, exist_ok=True)
        if not restoring:
            lost.refuse_if_lost(settings.db_url(), setup.key_path(settings))
        engine = engine_mod.create(settings.db_url())
        engine_mod.ensure_schema(engine)
        engine_mod.self_test(engine)
        detail = None if restoring else unfinished.found(engine)
    except SafeholdError as exc:
        raise click.ClickException(str(exc)) from exc
    if detail is not None:
        engine.dispose()
        raise click.ClickException(unfinished.refusal(detail))
    return Store(engine, settings.tmp_dir)


def fail(message: str, code: int = 1) -> None:
    click.echo(f"error: {message}", err=True)
    sys.exit(code)
