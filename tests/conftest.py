"""Shared fixtures: a live server process with two users (alice, bob), run once per
database the suite targets (SQLite, and PostgreSQL started by the tests).

SAFEHOLD_TEST_DATABASES=sqlite (or postgresql) narrows the run to one database."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, add_user

DATABASES = [d.strip() for d in os.environ.get("SAFEHOLD_TEST_DATABASES",
                                                 "sqlite,postgresql").split(",") if d.strip()]


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    from tests.support.postgres import PostgresServer
    pg = PostgresServer().start()
    yield pg
    pg.stop()


@pytest.fixture(scope="session")
def s3() -> Iterator[object]:
    """A real S3-compatible server (rclone serve s3) on loopback, one per session;
    each test takes its own prefix with ``s3.url(prefix)`` and ``s3.env()``."""
    from tests.support.s3 import S3Server
    server = S3Server().start()
    yield server
    server.stop()


def _env_for(database: str, request: pytest.FixtureRequest) -> dict[str, str]:
    if database == "sqlite":
        return {}
    if database == "postgresql":
        pg = request.getfixturevalue("postgres")
        return {"SAFEHOLD_DATABASE_URL": pg.new_database()}  # type: ignore[attr-defined]
    raise ValueError(f"unknown test database {database!r}")


def _start(data: Path, env: dict[str, str]) -> Server:
    add_user(data, "alice", env=env)
    add_user(data, "bob", env=env)
    return Server(data, env=env).start()


@pytest.fixture(scope="module", params=DATABASES)
def server(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    srv = _start(tmp_path_factory.mktemp("srv") / "data", _env_for(request.param, request))
    yield srv
    srv.stop()


@pytest.fixture(params=DATABASES)
def fresh_server(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Server]:
    srv = _start(tmp_path / "data", _env_for(request.param, request))
    yield srv
    srv.stop()


@pytest.fixture(params=DATABASES)
def database_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """A database URL for store-level contract tests, one per target database."""
    env = _env_for(request.param, request)
    return env.get("SAFEHOLD_DATABASE_URL") or f"sqlite:///{tmp_path / 'safehold.db'}"
