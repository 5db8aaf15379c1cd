"""Crash test: SIGKILL a real server under concurrent write load, then prove that
nothing acknowledged was lost.

Several client threads stream PUTs (random names, random bodies with CRLFs and
non-UTF-8 bytes, overwrites, a few bodies shared between threads so the
content-addressed dedup path runs concurrently) and DELETEs of items they put
successfully, plus a few GETs. The main thread SIGKILLs the server at a random
moment. Then:

* ``safehold check --json`` on the data directory must report ``integrity_check: ok``,
  and ``last_seq`` must lie between "every acknowledged mutation" and "every
  acknowledged or possibly-applied mutation" (one change-log row per PUT/DELETE);
* the server is restarted on the same data directory and every item is read back:
  an acknowledged PUT must be readable with exactly its bytes, an acknowledged
  DELETE must answer 404 -- unless a later request on the same item ended without
  an answer (transport error), in which case either state is allowed;
* the collection listing (PROPFIND Depth: 1) must show exactly the items that GET finds.

Only responses that were fully received count as acknowledged. A request that
failed to connect was certainly not applied; any other transport error makes the
outcome unknown. Each thread owns its own names, so the order of acknowledged
operations on one item is the order in which that thread issued them.

It runs once per test database. On PostgreSQL the safehold process is killed, not
the database: its open transactions die with its sessions, and a commit it sent
just before dying may still land, so the bounds are checked only once every session
of the killed process is gone, and count change-log rows (a PostgreSQL sequence has
gaps where a transaction rolled back) rather than reading the last ``seq``.

20 rounds by default on SQLite and 6 on PostgreSQL (to keep the suite's runtime
modest: PostgreSQL is the second pass over the same code), 200 and 50 with
SAFEHOLD_SLOW=1, or SAFEHOLD_CRASH_ROUNDS=N for both. The seed
(SAFEHOLD_CRASH_SEED) is printed in every failure message: it fixes the names,
bodies, operation mix and kill delays (thread interleaving stays random).
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote, unquote, urlsplit

import httpx
import pytest
import sqlalchemy as sa
from lxml import etree

from tests.conftest import DATABASES
from tests.support.server import PASSWORD, Server, add_user, cli

SLOW = os.environ.get("SAFEHOLD_SLOW") == "1"
ROUNDS_FOR = {"sqlite": int(os.environ.get("SAFEHOLD_CRASH_ROUNDS") or (200 if SLOW else 20)),
              "postgresql": int(os.environ.get("SAFEHOLD_CRASH_ROUNDS") or (50 if SLOW else 6))}
SEED = int(os.environ.get("SAFEHOLD_CRASH_SEED") or 20260917)
THREADS = 4
NAMES_PER_THREAD = 24
KILL_AFTER = (0.2, 1.0)  # seconds of load before SIGKILL
USER = "alice"
HOME = f"/dav/files/{USER}/"
NAME_ALPHABET = "abcdefghijklmnopqrstuvwxyz0123456789-_.~ éßΩ雪"

# Bodies shared by all threads: identical content PUT concurrently to different
# names must be stored once and must never fail.
SHARED_BODIES = [
    b"\r\n",
    b"\xff\xfe\xfd\x80\x81 not utf-8 \r\n\r\n",
    b"BEGIN:VCARD\r\nVERSION:3.0\r\nFN:Shared Body\r\nEND:VCARD\r\n",
    b"same content in many files\n" * 200,
    bytes(range(256)) * 16,
]

Digest = str | None  # sha256 hex of a body the item may hold; None: the item is absent


def _digest(body: bytes) -> str:
    return hashlib.sha256(body).hexdigest()


def _show(state: Digest, sizes: dict[str, int]) -> str:
    return "absent" if state is None else f"{state[:12]}({sizes.get(state, '?')} B)"


@dataclass
class Item:
    name: str
    possible: set[Digest] = field(default_factory=lambda: {None})
    history: list[str] = field(default_factory=list)

    @property
    def url(self) -> str:
        return HOME + quote(self.name, safe="")

    def note(self, entry: str) -> None:
        self.history.append(entry)
        del self.history[:-10]


@dataclass
class Tally:
    """Per-round counts of mutations, for the change-log bounds."""

    acked: int = 0  # 2xx PUT/DELETE: exactly one change row each
    maybe: int = 0  # no answer, or an unexpected answer: zero or one change row
    ops: Counter[str] = field(default_factory=Counter)


class Run:
    """The model of what the server must hold, and what went wrong."""

    def __init__(self, seed: int, rounds: int, database: str) -> None:
        self.seed = seed
        self.rounds = rounds
        self.database = database
        rng = random.Random(f"{seed}-names")
        self.items: list[list[Item]] = []
        seen: set[str] = set()
        for k in range(THREADS):
            mine: list[Item] = []
            while len(mine) < NAMES_PER_THREAD:
                tail = "".join(rng.choice(NAME_ALPHABET) for _ in range(rng.randint(1, 16)))
                name = f"t{k}-{tail.rstrip(' ')}" + ("" if not tail.endswith(" ") else "_")
                if name not in seen:
                    seen.add(name)
                    mine.append(Item(name))
            self.items.append(mine)
        self.sizes: dict[str, int] = {}  # digest -> length, for messages
        self.unexpected: list[str] = []  # answers that should never happen
        self.violations: list[str] = []  # lost or wrong data: fatal
        self.lock = threading.Lock()

    def all_items(self) -> list[Item]:
        return [it for mine in self.items for it in mine]

    def describe(self, it: Item) -> str:
        states = ", ".join(sorted(_show(s, self.sizes) for s in it.possible))
        return f"{it.name!r} may be {{{states}}}; history: " + " | ".join(it.history)

    def fail_message(self, round_no: int, what: str) -> str:
        return (f"{what}\n(crash test seed={self.seed}, round {round_no + 1}/{self.rounds}; "
                f"reproduce with SAFEHOLD_CRASH_SEED={self.seed} SAFEHOLD_TEST_DATABASES="
                f"{self.database} pytest tests/fault/test_crash.py)")


def _round_shared(seed: int, round_no: int) -> list[bytes]:
    """Bodies no earlier round used, picked by every thread: their first PUTs race
    to store the same new blob."""
    return [f"round {round_no} shared body {i} ({seed})\r\n".encode() * (1 + 40 * i) + b"\xfe\xff"
            for i in range(3)]


def _body(rng: random.Random, fresh_shared: list[bytes]) -> bytes:
    roll = rng.random()
    if roll < 0.06:
        return rng.choice(fresh_shared)
    if roll < 0.10:
        return rng.choice(SHARED_BODIES)
    if roll < 0.15:
        return b""
    if roll < 0.18:  # spans two 1 MiB storage chunks
        return rng.randbytes(rng.randint((1 << 20) - 1000, (1 << 20) + 200_000))
    if roll < 0.55:  # text: CRLF, bare CR and LF, UTF-8 and Latin-1, trailing newlines
        words = ["line", "café", "naïve", "雪", "\t", " ", "END:VCARD"]
        lines = [" ".join(rng.choice(words) for _ in range(rng.randint(0, 12)))
                 for _ in range(rng.randint(1, 400))]
        text = rng.choice(["\r\n", "\n", "\r"]).join(lines)
        data = text.encode(rng.choice(["utf-8", "utf-8", "latin-1", "utf-16"]), errors="replace")
        return data + rng.choice([b"", b"\r\n", b"\r\n\r\n", b"\xff"])
    raw = bytearray(rng.randbytes(rng.randint(1, 64 * 1024)))
    for _ in range(rng.randint(0, 20)):  # invalid UTF-8 and CRLFs at random places
        pos = rng.randint(0, len(raw))
        raw[pos:pos] = rng.choice([b"\r\n", b"\xff\xfe", b"\x80", b"\xc3\x28", b"\r", b"\x00"])
    return bytes(raw)


def _worker(run: Run, k: int, round_no: int, base_url: str, stop: threading.Event,
            tally: Tally, errors: list[BaseException]) -> None:
    rng = random.Random(f"{run.seed}-{round_no}-{k}")
    fresh_shared = _round_shared(run.seed, round_no)
    mine = run.items[k]
    try:
        with httpx.Client(base_url=base_url, auth=(USER, PASSWORD), timeout=20.0) as client:
            while not stop.is_set():
                present = [it for it in mine if len(it.possible) == 1 and None not in it.possible]
                roll = rng.random()
                if present and roll < 0.25:
                    _one(run, client, "DELETE", rng.choice(present), None, round_no, tally)
                elif present and roll < 0.35:
                    _one(run, client, "GET", rng.choice(present), None, round_no, tally)
                else:
                    _one(run, client, "PUT", rng.choice(mine), _body(rng, fresh_shared), round_no, tally)
    except BaseException as exc:  # noqa: BLE001 - re-raised by the main thread
        errors.append(exc)


def _one(run: Run, client: httpx.Client, method: str, it: Item, body: bytes | None,
         round_no: int, tally: Tally) -> None:
    new: Digest = None
    if body is not None:
        new = _digest(body)
        with run.lock:
            run.sizes[new] = len(body)
    label = f"r{round_no + 1} {method}" + (f" {_show(new, run.sizes)}" if method == "PUT" else "")
    try:
        resp = client.request(method, it.url, content=body)
    except httpx.ConnectError:
        # Nothing was sent: the server is down (killed). Not applied.
        it.note(f"{label}: refused")
        time.sleep(0.005)
        return
    except httpx.TransportError as exc:
        tally.ops[f"{method} unknown"] += 1
        it.note(f"{label}: no answer ({type(exc).__name__})")
        if method != "GET":
            tally.maybe += 1
            it.possible.add(new)  # either the old state or the new one
        return
    status = resp.status_code
    tally.ops[f"{method} {status}"] += 1
    it.note(f"{label}: {status}")
    if method == "GET":
        got = _digest(resp.content) if status == 200 else None
        if status not in (200, 404) or got not in it.possible:
            msg = (f"GET {it.name!r} during load answered {status} "
                   f"{_show(got, run.sizes) if status == 200 else ''}: " + run.describe(it))
            with run.lock:
                (run.violations if status in (200, 404) else run.unexpected).append(msg)
        return
    ok = {"PUT": (201, 204), "DELETE": (204,)}[method]
    if status in ok:
        tally.acked += 1
        it.possible = {new}
        return
    # Every DELETE targets an item whose last PUT was acknowledged, and a PUT into
    # the home collection has no reason to fail: any other answer is a server bug.
    # What it did to the item is unknown, so both states stay possible.
    tally.maybe += 1
    msg = (f"{method} {it.name!r} answered {status} (request id "
           f"{resp.headers.get('x-request-id')}): {resp.text[:200]!r}")
    with run.lock:
        run.unexpected.append(msg)
        if method == "DELETE" and status == 404:
            run.violations.append(f"DELETE of an acknowledged item answered 404: {run.describe(it)}")
    it.possible.add(new)


def _check(data_dir: Path, where: str, env: dict[str, str]) -> dict[str, str]:
    proc = cli(data_dir, "check", "--json", check=False, env=env)
    assert proc.returncode == 0, \
        f"safehold check failed ({proc.returncode}):\n{proc.stdout}\n{proc.stderr}\n{where}"
    facts: dict[str, str] = json.loads(proc.stdout)
    return facts


class ChangeLog:
    """The length of the change log. SQLite: the last ``seq`` (AUTOINCREMENT rolls
    back with its transaction, so there are no gaps). PostgreSQL: the number of rows,
    read once the killed process's sessions are gone (none can commit after that)."""

    def __init__(self, url: str | None) -> None:
        self.engine = None if url is None else sa.create_engine(
            "postgresql+psycopg://" + url.split("://", 1)[1], poolclass=sa.pool.NullPool)

    def length(self, facts: dict[str, str], where: str) -> int:
        if self.engine is None:
            return int(facts["last_seq"])
        deadline = time.monotonic() + 30
        with self.engine.connect() as conn:
            while conn.execute(sa.text(
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND pid <> pg_backend_pid()")).scalar():
                conn.rollback()
                assert time.monotonic() < deadline, \
                    f"the killed server's PostgreSQL sessions did not end within 30 s\n{where}"
                time.sleep(0.05)
            return int(conn.execute(sa.text("SELECT count(*) FROM change")).scalar() or 0)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.dispose()


def _restart(server: Server, where: str) -> None:
    try:
        server.start()
    except RuntimeError as exc:
        raise AssertionError(f"the server does not start on the crashed data directory: {exc}\n"
                             f"{where}") from exc


def _listing(client: httpx.Client) -> set[str]:
    resp = client.request("PROPFIND", HOME, headers={"Depth": "1"})
    assert resp.status_code == 207, f"PROPFIND {HOME} answered {resp.status_code}: {resp.text[:300]}"
    names = set()
    for href in etree.fromstring(resp.content).iter("{DAV:}href"):
        path = unquote(urlsplit(href.text or "").path)
        if path.rstrip("/") != HOME.rstrip("/"):
            names.add(path[len(HOME):].rstrip("/"))
    return names


def _verify(run: Run, server: Server, round_no: int) -> None:
    """Read every item back from the restarted server and collapse the model to
    what it holds (there are no requests in flight now)."""
    items = run.all_items()
    with server.client() as client, ThreadPoolExecutor(THREADS) as pool:
        # One request first: it fills the server's password cache, so that the
        # parallel GETs do not each pay for an argon2 verification.
        listed = _listing(client)
        answers = list(pool.map(lambda it: client.get(it.url), items))
    found: set[str] = set()
    for it, resp in zip(items, answers, strict=True):
        if resp.status_code == 200:
            body_hash = _digest(resp.content)
            run.sizes.setdefault(body_hash, len(resp.content))
            got: Digest = body_hash
            found.add(it.name)
        elif resp.status_code == 404:
            got = None
        else:
            run.violations.append(f"GET {it.name!r} after restart answered {resp.status_code}: "
                                  f"{resp.text[:200]!r}")
            continue
        if got not in it.possible:
            run.violations.append(
                f"after restart {it.name!r} is {_show(got, run.sizes)}, expected " + run.describe(it))
        it.possible = {got}
        it.note(f"r{round_no + 1} restart: {_show(got, run.sizes)}")
    if listed != found:
        run.violations.append(f"PROPFIND Depth 1 of {HOME} disagrees with GET: listed but not "
                              f"found {sorted(listed - found)}, found but not listed "
                              f"{sorted(found - listed)}")


@pytest.mark.parametrize("database", DATABASES)
def test_sigkill_under_write_load_loses_nothing_acknowledged(
        database: str, tmp_path: Path, request: pytest.FixtureRequest) -> None:
    rounds = ROUNDS_FOR[database]
    url = request.getfixturevalue("postgres").new_database() if database == "postgresql" else None
    env = {"SAFEHOLD_DATABASE_URL": url} if url else {}
    log = ChangeLog(url)
    started = time.monotonic()
    run = Run(SEED, rounds, database)
    main_rng = random.Random(f"{SEED}-kills")
    data = tmp_path / "data"
    add_user(data, USER, env=env)
    where = run.fail_message(-1, "before the first round")
    last_seq = log.length(_check(data, where, env), where)
    server = Server(data, env=env)
    totals: Counter[str] = Counter()
    phases: dict[str, float] = {}  # seconds spent per phase, for the summary line

    def timed(phase: str, since: float) -> float:
        now = time.monotonic()
        phases[phase] = phases.get(phase, 0.0) + now - since
        return now

    try:
        for round_no in range(rounds):
            t = time.monotonic()
            _restart(server, run.fail_message(round_no - 1, "restart after SIGKILL"))
            t = timed("restart", t)
            _verify(run, server, round_no - 1)
            t = timed("verify", t)
            assert not run.violations, run.fail_message(round_no - 1, "\n".join(run.violations))

            stop = threading.Event()
            tally = Tally()
            errors: list[BaseException] = []
            threads = [threading.Thread(target=_worker, name=f"crash-client-{k}",
                                        args=(run, k, round_no, server.url, stop, tally, errors))
                       for k in range(THREADS)]
            for th in threads:
                th.start()
            time.sleep(main_rng.uniform(*KILL_AFTER))
            server.kill()
            stop.set()
            for th in threads:
                th.join(timeout=60)
            assert not any(th.is_alive() for th in threads), "a client thread did not stop"
            if errors:
                raise AssertionError(run.fail_message(round_no, "a client thread failed")) from errors[0]
            totals.update(tally.ops)
            t = timed("load", t)

            where = run.fail_message(round_no, "safehold check after SIGKILL")
            facts = _check(data, where, env)
            seq = log.length(facts, where)
            t = timed("check", t)
            assert facts.get("integrity_check") == "ok", run.fail_message(
                round_no, f"integrity check after SIGKILL: {facts}")
            low, high = last_seq + tally.acked, last_seq + tally.acked + tally.maybe
            if not low <= seq <= high:
                run.violations.append(
                    f"after SIGKILL the change log holds {seq} changes, but it held {last_seq} "
                    f"before the round, {tally.acked} mutations were acknowledged and "
                    f"{tally.maybe} more may have been applied: expected {low}..{high}")
            assert not run.violations, run.fail_message(round_no, "\n".join(run.violations))
            last_seq = seq

        _restart(server, run.fail_message(rounds - 1, "restart after the last SIGKILL"))
        _verify(run, server, rounds - 1)
        assert not run.violations, run.fail_message(rounds - 1, "\n".join(run.violations))
    finally:
        server.stop()
        log.close()

    leftovers = list((data / "tmp").glob("body-*")) if (data / "tmp").exists() else []
    print(f"\ncrash test ({database}): seed={SEED} rounds={rounds} threads={THREADS} "
          f"last_seq={last_seq} in {time.monotonic() - started:.1f}s; "
          f"leftover spool files in {data / 'tmp'}: {len(leftovers)}")
    print("seconds per phase:", {k: round(v, 1) for k, v in phases.items()})
    print("operations:", dict(sorted(totals.items())))
    assert totals["PUT 201"] + totals["PUT 204"] > rounds, \
        "the load generator acknowledged almost nothing: the test did not test anything"
    assert not run.unexpected, run.fail_message(
        rounds - 1, f"{len(run.unexpected)} request(s) got an answer no correct server gives "
        f"(the state checks above passed):\n" + "\n".join(run.unexpected[:20]))

