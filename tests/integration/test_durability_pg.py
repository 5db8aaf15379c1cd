"""Server settings of a PostgreSQL that safehold does not own (issue 7).

One that may lose acknowledged writes is not safehold's to refuse (the operator may
have reasons), but it must not go unnoticed: the server warns in its log at startup
and `safehold status` turns amber, naming the setting. One whose default isolation
is stricter than READ COMMITTED must not break the writers' lock: safehold's own
sessions run at READ COMMITTED."""

from __future__ import annotations

import json
import threading
from pathlib import Path

import psycopg
import pytest
import sqlalchemy as sa

from safehold.core import users
from safehold.core.model import Actor
from safehold.store import engine as engine_mod
from safehold.store.repo import Store
from safehold.store.schema import change
from tests.support.server import Server, add_user, cli

pytestmark = pytest.mark.skipif("postgresql" not in __import__("tests.conftest").conftest.DATABASES,
                                reason="SAFEHOLD_TEST_DATABASES excludes postgresql")


def test_synchronous_commit_off_is_warned_and_amber(postgres: object, tmp_path: Path) -> None:
    url = postgres.new_database()  # type: ignore[attr-defined]
    # Set for this database only, as a DBA might: every session safehold opens gets it.
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" SET synchronous_commit = off')
    env = {"SAFEHOLD_DATABASE_URL": url}
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    try:
        with srv.client() as c:  # the server still serves: a warning, not a refusal
            assert c.put("/dav/files/alice/a.txt", content=b"kept?").status_code == 201
        log = srv.log()
        assert "WARNING" in log and "synchronous_commit=off" in log, log
        st = json.loads(cli(data, "status", "--json", env=env, check=False).stdout)
        assert st["verdict"] == "amber", st
        found = [m for m in st["messages"] if "synchronous_commit=off" in m]
        assert found and "synchronous_commit = on" in found[0], st["messages"]
        text = cli(data, "status", env=env, check=False)
        assert text.returncode == 0 and "verdict: AMBER" in text.stdout
        assert "synchronous_commit=off" in text.stdout
    finally:
        srv.stop()


def test_durable_postgresql_has_no_durability_message(postgres: object, tmp_path: Path) -> None:
    env = {"SAFEHOLD_DATABASE_URL": postgres.new_database()}  # type: ignore[attr-defined]
    data = tmp_path / "data"
    add_user(data, "alice", env=env)
    st = json.loads(cli(data, "status", "--json", env=env, check=False).stdout)
    assert not [m for m in st["messages"] if "durability" in m], st["messages"]
    facts = json.loads(cli(data, "check", "--json", env=env).stdout)
    assert (facts["fsync"], facts["synchronous_commit"], facts["full_page_writes"]) == ("on", "on", "on")


@pytest.mark.parametrize("isolation", ["repeatable read", "serializable"])
def test_stricter_default_isolation_does_not_break_writers(postgres: object, tmp_path: Path,
                                                           isolation: str) -> None:
    """Two stores (two processes' engines) overwrite the same items concurrently. At
    the server's stricter default a writer's snapshot would predate the commit it
    waited for behind the lock: serialization failures, or a head that misses the
    other's version."""
    url = postgres.new_database()  # type: ignore[attr-defined]
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute(f'ALTER DATABASE "{url.rsplit("/", 1)[1]}" '
                     f"SET default_transaction_isolation = '{isolation}'")
    engines = [engine_mod.create(url) for _ in range(2)]
    try:
        engine_mod.ensure_schema(engines[0])
        stores = [Store(e, tmp_path / f"tmp{i}") for i, e in enumerate(engines)]
        users.add_user(stores[0], "alice", "password-1", Actor(None))
        failures: list[BaseException] = []

        def work(n: int) -> None:
            try:
                for i in range(25):
                    stores[n % 2].put(f"files/alice/f{i % 5}.txt", 1, f"{n}-{i}".encode(),
                                      "text/plain", Actor(1, "pytest", f"r{n}-{i}"))
            except BaseException as exc:  # noqa: BLE001 - reported below
                failures.append(exc)

        threads = [threading.Thread(target=work, args=(n,)) for n in range(4)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert not failures, failures[:3]
        with engines[0].connect() as db:
            puts = db.execute(sa.select(sa.func.count()).select_from(change)
                              .where(change.c.op == "put")).scalar()
        assert puts == 100
        for i in range(5):  # each head is the item's latest version
            head = stores[1].get(f"files/alice/f{i}.txt")
            assert head is not None
            latest = max(v["seq"] for v in stores[1].changes_for(f"files/alice/f{i}.txt"))
            assert head.seq == latest
    finally:
        for e in engines:
            e.dispose()
