"""The "phone gone mad" scenario: a client deletes 400 of 500 contacts. The burst is
recorded as an incident; one undo brings all 400 back with their exact bytes; in
strict mode the deletions stop at the threshold."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.server import Server, add_user, cli

BOOK = "/dav/addressbooks/alice/contacts"
PHONE = {"User-Agent": "DAVx5/4.4 (gone mad)"}


def card(i: int) -> bytes:
    return (f"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:c{i}\r\nFN:Contact {i}\r\n"
            f"N:{i};Contact;;;\r\nTEL:+1 555 {i:04d}\r\nEND:VCARD\r\n").encode()


def _fill(server: Server, n: int) -> None:
    with server.client() as c:
        for i in range(n):
            assert c.put(f"{BOOK}/c{i}.vcf", content=card(i)).status_code == 201


def _incidents(server: Server) -> list[dict[str, object]]:
    out = cli(server.data_dir, "incidents", "alice", "--json", env=server.env).stdout
    return list(json.loads(out))


@pytest.fixture
def strict_server(tmp_path: Path) -> Iterator[Server]:
    data = tmp_path / "data"
    env = {"SAFEHOLD_GUARD_MODE": "strict"}
    add_user(data, "alice", env=env)
    srv = Server(data, env=env).start()
    yield srv
    srv.stop()


def test_phone_gone_mad_is_undone_in_one_action(fresh_server: Server) -> None:
    _fill(fresh_server, 500)
    with fresh_server.client(headers=PHONE) as phone:
        for i in range(400):
            assert phone.delete(f"{BOOK}/c{i}.vcf").status_code == 204
    found = _incidents(fresh_server)
    assert len(found) == 1
    inc = found[0]
    assert inc["state"] == "open" and inc["count"] == 400
    assert inc["user_agent"] == PHONE["User-Agent"]
    assert len(inc["deleted"]) == 400  # type: ignore[arg-type]

    dry = cli(fresh_server.data_dir, "incident", "undo", str(inc["id"]), "--dry-run",
              env=fresh_server.env)
    assert json.loads(dry.stdout)["summary"]["create"] == 400
    out = cli(fresh_server.data_dir, "incident", "undo", str(inc["id"]), env=fresh_server.env)
    assert "400 item(s) restored" in out.stdout
    with fresh_server.client() as c:
        for i in range(500):
            r = c.get(f"{BOOK}/c{i}.vcf")
            assert r.status_code == 200 and r.content == card(i)
    assert _incidents(fresh_server)[0]["state"] == "undone"


def test_ordinary_deletions_are_no_incident(fresh_server: Server) -> None:
    _fill(fresh_server, 30)
    with fresh_server.client(headers=PHONE) as phone:
        for i in range(10):  # at the item threshold, not above it
            assert phone.delete(f"{BOOK}/c{i}.vcf").status_code == 204
    assert _incidents(fresh_server) == []


def test_strict_mode_stops_at_the_threshold(strict_server: Server) -> None:
    _fill(strict_server, 40)
    statuses = []
    with strict_server.client(headers=PHONE) as phone:
        for i in range(40):
            statuses.append(phone.delete(f"{BOOK}/c{i}.vcf").status_code)
    # 11 deletions of 40 exceed both thresholds (>10 items, >25%); the rest are refused
    # with 503, which clients treat as "try later" and keep their data on.
    assert statuses[:11] == [204] * 11
    assert set(statuses[11:]) == {503}
    with strict_server.client() as c:
        assert c.get(f"{BOOK}/c39.vcf").status_code == 200
        # Another client of the same user is not blocked.
        assert c.delete(f"{BOOK}/c39.vcf").status_code == 204
    inc = _incidents(strict_server)[0]
    cli(strict_server.data_dir, "incident", "confirm", str(inc["id"]), env=strict_server.env)
    with strict_server.client(headers=PHONE) as phone:
        assert phone.delete(f"{BOOK}/c38.vcf").status_code == 204


@pytest.mark.parametrize("agent", ["", "Gone-mad " * 80 + "!"], ids=["no-user-agent", "long-user-agent"])
def test_strict_mode_stops_clients_whatever_their_user_agent(strict_server: Server, agent: str) -> None:
    """The change log keeps no User-Agent as NULL and a long one cut to 512 characters:
    a client sending either is counted like any other (it was not counted at all)."""
    _fill(strict_server, 40)
    with strict_server.client(headers={"User-Agent": agent}) as phone:
        statuses = [phone.delete(f"{BOOK}/c{i}.vcf").status_code for i in range(20)]
    assert statuses[:11] == [204] * 11
    assert set(statuses[11:]) == {503}
