"""Settings: defaults that need no file, then a TOML file, then SAFEHOLD_* environment
variables, then command-line flags (each overrides the one before)."""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, fields, replace
from pathlib import Path
from typing import Any

from safehold.errors import ConfigError

ENV_PREFIX = "SAFEHOLD_"


@dataclass(frozen=True)
class Settings:
    data_dir: Path = Path("./data")
    database_url: str = ""  # empty: SQLite at DATA_DIR/safehold.db
    host: str = "127.0.0.1"
    port: int = 8232
    max_body_bytes: int = 4 << 30  # 413 above this
    max_xml_bytes: int = 1 << 20  # XML request bodies (PROPFIND, LOCK, ...)
    listing_page_size: int = 1000  # members per page of a streamed listing (PROPFIND, sync)
    auth_cache_seconds: int = 60  # how long a verified password is remembered
    log_level: str = "info"
    guard_mode: str = "record"  # mass-deletion guard: off, record, strict
    guard_min_items: int = 10
    guard_share: float = 0.25
    guard_window_seconds: int = 600
    retention_days: int = 365  # every version kept this long, then the last of each day
    replicas: str = ""  # comma-separated replica URLs; empty: as set by `backup init`
    replication_mode: str = "async"  # async, or sync: acknowledge only what replicas hold
    snapshot_every: int = 5000  # changes between snapshots
    drill_interval_hours: int = 24
    replica_keep_snapshots: int = 7  # replica retention: newest snapshots kept
    replica_keep_days: int = 30  # ... and every snapshot younger than this
    replica_verify_days: int = 7  # every replica object re-read at least this often
    upgrade_max_lag_seconds: int = 60  # upgrade gate: every replica at most this far behind
    upgrade_max_drill_age_seconds: int = 900  # upgrade gate: a passing drill this recent
    # Service levels (docs/sla.md): the written policy and the built-in prober.
    sla_availability_target: float = 99.9  # percent per calendar month
    sla_rpo_seconds: float = 2.0  # replication lag above this is an RPO breach
    sla_rto_minutes: float = 15.0  # whole-server restore, measured by drills
    sla_restore_max_age_hours: float = 26.0  # the last verified restore at most this old
    sla_credits: str = "99.9:10,99:25,95:100"  # LEVEL:CREDIT, percent credit below LEVEL %
    sla_durability_credit: float = 100.0  # percent credit for a durability breach
    sla_drill_breach_hours: float = 48.0  # a failed drill unresolved this long is one
    sla_probe_seconds: int = 10  # built-in prober interval; 0 turns it off
    extra: dict[str, Any] = field(default_factory=dict)

    @property
    def tmp_dir(self) -> Path:
        return self.data_dir / "tmp"

    def db_url(self) -> str:
        if self.database_url:
            return self.database_url
        return f"sqlite:///{(self.data_dir / 'safehold.db').resolve()}"


DOCUMENTED = {f.name for f in fields(Settings)} - {"extra"}


def _coerce(name: str, value: Any) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        if kind == "Path":
            return Path(str(value))
        if kind == "int":
            return int(value)
        if kind == "float":
            return float(value)
        return str(value)
    except (TypeError, ValueError) as exc:
        raise ConfigError(f"setting {name!r}: {value!r} is not a valid {kind}") from exc


def load(config_file: str | None = None, overrides: dict[str, Any] | None = None,
         environ: dict[str, str] | None = None) -> Settings:
    env = os.environ if environ is None else environ
    values: dict[str, Any] = {}
    path = config_file or env.get(ENV_PREFIX + "CONFIG")
    if path:
        try:
            with open(path, "rb") as fh:
                data = tomllib.load(fh)
        except FileNotFoundError as exc:
            raise ConfigError(f"config file {path} does not exist") from exc
        except tomllib.TOMLDecodeError as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from exc
        for key, value in data.items():
            if key not in DOCUMENTED:
                raise ConfigError(f"config file {path}: unknown setting {key!r} "
                                  f"(known: {', '.join(sorted(DOCUMENTED))})")
            values[key] = _coerce(key, value)
    for name in DOCUMENTED:
        if ENV_PREFIX + name.upper() in env:
            values[name] = _coerce(name, env[ENV_PREFIX + name.upper()])
    for key, value in (overrides or {}).items():
        if value is not None:
            values[key] = _coerce(key, value)
    settings = replace(Settings(), **values)
    if settings.guard_mode not in ("off", "record", "strict"):
        raise ConfigError(f"guard_mode must be off, record or strict, not {settings.guard_mode!r}")
    if settings.replication_mode not in ("async", "sync"):
        raise ConfigError(f"replication_mode must be async or sync, not {settings.replication_mode!r}")
    if not 0 < settings.guard_share <= 1:
        raise ConfigError("guard_share must be a fraction between 0 and 1, e.g. 0.25")
    if settings.listing_page_size < 1:
        raise ConfigError("listing_page_size must be at least 1 (default 1000)")
    return settings
