"""The PUT path under a held database write lock (http/app.py ``_answer``): a small PUT
may be stored on the event loop, but only when it need not wait for the lock. While
another process holds the database's write lock (`safehold import`, the CLI; on
PostgreSQL another server process), a PUT waits on a worker thread and the other
clients are still answered; once the lock is free the PUT is stored and acknowledged."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import httpx
import sqlalchemy as sa

from safehold.store import engine as engine_mod
from safehold.store.repo import WRITE_LOCK_KEY
from tests.support.server import Server

CARD = (b"BEGIN:VCARD\r\nVERSION:3.0\r\nUID:%s\r\nFN:Held Lock %s\r\n"
        b"N:Lock;Held;;;\r\nEND:VCARD\r\n")
BOOK = "/dav/addressbooks/alice/contacts/"
HOLD = 1.5  # seconds the test holds the write lock


def _card(name: str) -> bytes:
    return CARD % (name.encode(), name.encode())


def test_put_waits_for_a_write_lock_held_elsewhere_and_others_are_served(server: Server) -> None:
    with server.client() as c:
        assert c.put(BOOK + "before.vcf", content=_card("before"),
                     headers={"Content-Type": "text/vcard"}).status_code == 201
    engine = engine_mod.create(server.database_url)
    try:
        with engine.connect() as holder:
            if engine.dialect.name == "sqlite":
                holder.connection.driver_connection.apsw.execute("BEGIN IMMEDIATE")  # type: ignore[union-attr]
            else:
                holder.execute(sa.text("SELECT pg_advisory_lock(:k)"), {"k": WRITE_LOCK_KEY})
            held_at = time.monotonic()
            result: dict[str, object] = {}

            def put() -> None:
                with server.client() as c:
                    r = c.put(BOOK + "held.vcf", content=_card("held"),
                              headers={"Content-Type": "text/vcard", "If-None-Match": "*"})
                    result["status"], result["at"] = r.status_code, time.monotonic()

            writer = threading.Thread(target=put)
            writer.start()
            time.sleep(0.3)  # the PUT is in the server, waiting for the lock
            with server.client() as c:
                for _ in range(5):
                    began = time.monotonic()
                    r = c.get(BOOK + "before.vcf")
                    assert r.status_code == 200 and r.content == _card("before")
                    # Answered while the PUT waits: nothing waits on the event loop.
                    assert time.monotonic() - began < 1.0
            assert "status" not in result  # not acknowledged while the lock is held
            time.sleep(max(0.0, held_at + HOLD - time.monotonic()))
            if engine.dialect.name == "sqlite":
                holder.connection.driver_connection.apsw.execute("ROLLBACK")  # type: ignore[union-attr]
            else:
                holder.execute(sa.text("SELECT pg_advisory_unlock(:k)"), {"k": WRITE_LOCK_KEY})
                holder.commit()
            writer.join(timeout=60)
        assert result["status"] == 201
        assert float(result["at"]) >= held_at + HOLD  # type: ignore[arg-type]
    finally:
        engine.dispose()
    with server.client() as c:
        assert c.get(BOOK + "held.vcf").content == _card("held")


def test_concurrent_small_puts_are_each_stored_once(server: Server) -> None:
    """Writers on the event loop and writers queued on worker threads (group commit)
    mix: every acknowledged PUT is stored with its own change and reads back."""
    names = [f"mix-{i:03d}" for i in range(48)]

    def put(name: str) -> tuple[str, int, str]:
        with server.client() as c:
            r = c.put(f"{BOOK}{name}.vcf", content=_card(name),
                      headers={"Content-Type": "text/vcard", "If-None-Match": "*"})
            return name, r.status_code, r.headers.get("etag", "")

    with ThreadPoolExecutor(6) as pool:
        results = list(pool.map(put, names))
    assert [s for _, s, _ in results] == [201] * len(names)
    assert len({etag for _, _, etag in results}) == len(names)
    with server.client() as c:
        for name, _, etag in results:
            r = c.get(f"{BOOK}{name}.vcf")
            assert r.content == _card(name) and r.headers["etag"] == etag
    paths = [p for _, op, p in server.changes() if op == "put" and "/mix-" in p]
    assert sorted(paths) == sorted(f"addressbooks/alice/contacts/{n}.vcf" for n in names)
    assert httpx.get(server.url + "/healthz").status_code == 200
