"""Shared fixtures: a live server process with two users (alice, bob)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, add_user


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    data = tmp_path_factory.mktemp("srv") / "data"
    add_user(data, "alice")
    add_user(data, "bob")
    srv = Server(data).start()
    yield srv
    srv.stop()


@pytest.fixture
def fresh_server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    add_user(data, "alice")
    add_user(data, "bob")
    srv = Server(data).start()
    yield srv
    srv.stop()
