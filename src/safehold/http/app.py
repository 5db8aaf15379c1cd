"""The composition root: an ASGI app that wires settings, store, authentication
and the DAV layer together, and maps every error to a clean response."""

from __future__ import annotations

import functools
import itertools
import json
import logging
import secrets
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, unquote_to_bytes

import anyio
import sqlalchemy as sa

from safehold import __version__, asgi
from safehold.config import Settings
from safehold.core.model import Actor
from safehold import caldav, carddav
from safehold.core.guard import Guard, Policy
from safehold.core.users import ensure_homes
from safehold.backup import child_process
from safehold.backup import manifest as manifest_mod
from safehold.backup import setup
from safehold.backup import verify as verify_mod
from safehold.backup.crypto import Key
from safehold.backup.replica_client import ReplicaClient, open_replica
from safehold.backup.shipper import Shipper
from safehold.backup.status import Status, compute
from safehold.errors import SafeholdError, StoreUnavailable
from safehold.store import unfinished
from safehold.http import metrics
from safehold.sla.service import Sla
from safehold.store import sla as store_sla
from safehold.store import replication as rep
from safehold.store import retention
from safehold.store.incidents import Incidents
from safehold.dav import handler as dav_handler
from safehold.dav import xml
from safehold.dav.methods import options, report
from safehold.sync import collection as sync_collection
from safehold.dav.errors import DavError
from safehold.dav.paths import check_path
from safehold.dav.types import BodyBytes, DavRequest, DavResponse, Pieces
from safehold.errors import DomainError, StorageCorrupt, StorageFailed, WriteBusy
from safehold.http import api as api_mod
from safehold.http.auth import Authenticator
from safehold.http import webglue
from safehold.http.davbackend import PREFIX, StoreDavBackend
from safehold.store import blobs
from safehold.store import engine as engine_mod
from safehold.store import lost
from safehold.store import faults, versioning
from safehold.store.repo import Store

log = logging.getLogger("safehold.http")

Scope = dict[str, Any]
Receive = Callable[[], Awaitable[dict[str, Any]]]
Send = Callable[[dict[str, Any]], Awaitable[None]]

_BODYLESS = {"GET", "HEAD", "OPTIONS", "DELETE", "UNLOCK"}
SLOW_REQUEST = 1.0  # seconds; slower requests are logged at info


def _user_agent(scope: Scope) -> str:
    for name, value in scope.get("headers") or ():
        if name == b"user-agent":
            return str(value.decode("latin-1"))
    return ""


@dataclass
class _Reply:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes] = b""


def _text(status: int, message: str, headers: list[tuple[str, str]] | None = None) -> _Reply:
    body = (message + "\n").encode()
    return _Reply(status, [("Content-Type", "text/plain; charset=utf-8"),
                           ("Content-Length", str(len(body)))] + (headers or []), body)


def _json(status: int, data: object) -> _Reply:
    body = json.dumps(data, indent=1).encode()
    return _Reply(status, [("Content-Type", "application/json"), ("Cache-Control", "no-store")], body)


def _dav_error(err: DavError) -> _Reply:
    if err.status == 304:
        return _Reply(304, err.headers, b"")
    if err.condition:
        body = xml.error_body(err.condition, err.namespace, hrefs=err.hrefs, message=err.message)
        return _Reply(err.status, [("Content-Type", "application/xml; charset=utf-8"),
                                   ("Content-Length", str(len(body)))] + err.headers, body)
    return _text(err.status, err.message, err.headers)


def _failure(exc: Exception, scope: Scope, request_id: str) -> _Reply:
    """The answer to a request that failed unexpectedly; the details go to the log
    only. A storage fault stored nothing (store/faults.py) and is told as such, with
    what to do: a full disk 507 (RFC 4918 §11.5; DAVx5 shows "server storage full" and
    retries), an I/O error, a damaged or a read-only database 503 with Retry-After
    (clients keep their data and retry), not a 500 that reads as a bug."""
    kind = faults.kind(exc)
    where = (request_id, scope.get("method"), scope.get("path"))
    if kind is StorageFailed:
        log.error("request %s %s %s failed:\n%s", *where, traceback.format_exc())
    elif kind is not None:
        # Not a bug: one line with the database's own words, no traceback.
        log.error("request %s %s %s: %s, nothing was stored: %s", *where, kind.reason,
                  faults.detail(exc))
    if kind is not None:
        headers = [("Retry-After", kind.retry_after)] if kind.retry_after else []
        return _text(kind.status, f"{kind.public} (request id {request_id})", headers)
    log.error("request %s %s %s failed:\n%s", *where, traceback.format_exc())
    return _text(500, f"internal error; request id {request_id}")


DAMAGED = ("the database is damaged: serving is paused so that devices keep their copies. "
           "Check it (safehold check), restore it (safehold restore) and restart the server")


def _not_ready(exc: Exception) -> _Reply:
    """/readyz's answer when its write probe failed: 503 with the fault in stable words
    (a load balancer or a status page may show it to anyone); the database's own
    message, which may hold SQL or a path, goes to the log only."""
    kind = faults.kind(exc)
    log.warning("/readyz: the store is not writable (%s): %s", type(exc).__name__,
                faults.detail(exc))
    return _text(503, f"store not writable: {kind.reason if kind else 'see the server log'}")


def install_protocols() -> None:
    """Register CalDAV, CardDAV and sync-collection with the generic DAV layer."""
    global _installed
    if _installed:
        return
    caldav.install()
    carddav.install()
    dav_handler.register("REPORT", report.handle)
    report.register(xml.dav("sync-collection"), sync_collection.handle, sync_collection.quick)
    options.DAV_CLASSES.extend(["calendar-access", "addressbook", "extended-mkcol"])
    options.ALLOW += ", REPORT, MKCALENDAR"
    _installed = True


_installed = False


_MUTATING = {"PUT", "DELETE", "MKCOL", "MKCALENDAR", "PROPPATCH", "COPY", "MOVE"}
_QUICK = {"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"}  # may be answered by dav_handler.quick
# Methods that never write: each runs in one read transaction (Store.reading).
_READ_ONLY = {"GET", "HEAD", "OPTIONS", "PROPFIND", "REPORT"}
LOOP_PUT_BYTES = 16384  # PUT bodies up to this size may be stored on the event loop


class App:
    def __init__(self, settings: Settings, store: Store) -> None:
        self.settings = settings
        self.store = store
        self.auth = Authenticator(store, ttl=settings.auth_cache_seconds)
        self.lineage = store.lineage()
        self.guard = Guard(Incidents(store), Policy(
            settings.guard_mode, settings.guard_min_items, settings.guard_share,
            float(settings.guard_window_seconds)))
        self._homes_checked: set[int] = set()
        self.api = api_mod.Api(store)
        self.backup = setup.resolve(settings, store, create_default=True)
        self.shipper: Shipper | None = None
        self.regressed: str | None = None
        self._schema_head = engine_mod.schema_state(store.engine)[1]
        self._upgrade_checked: tuple[float, str | None] = (-1.0, None)
        # Request ids: unique per process (a random prefix) without a syscall each.
        self._id_prefix = secrets.token_hex(4)
        self._ids = itertools.count(1)
        # SQLite reads never wait for a writer (WAL), so bounded reads run on the event
        # loop (see _answer); a PostgreSQL read is a network round trip that can block.
        self._reads_on_loop = engine_mod.is_sqlite(store.engine)
        self._loop_conn: sa.Connection | None = None  # kept checked out for those reads
        if self.backup.problem:
            log.error("backups are NOT running: %s", self.backup.problem)
        elif self.backup.key is not None:
            replicas = [open_replica(u) for u in self.backup.replicas]
            self.regressed = _regression(store, self.backup.key, replicas, self.lineage)
            self.shipper = Shipper(store, self.backup.key, replicas, self.lineage,
                                   settings.snapshot_every)
            self.shipper.snapshot_in = functools.partial(
                child_process.snapshot, settings, self.backup.key.fingerprint)
        install_protocols()
        self.sla = Sla(settings, store, lambda: self.regressed, self.status)
        self.web = webglue.build(self)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "lifespan":
            await self._lifespan(receive, send)
            return
        if scope["type"] != "http":
            return
        request_id = f"{self._id_prefix}{next(self._ids):08x}"
        started = time.monotonic()
        try:
            reply = await self._route(scope, receive, request_id)
        except Exception as exc:  # noqa: BLE001 - the one place every failure is caught
            reply = _failure(exc, scope, request_id)
            if self.regressed is None and faults.kind(exc) is StorageCorrupt:
                # Promise 8: a damaged store may answer a smaller listing next, so DAV
                # and /readyz answer 503 from now on, as for a regression.
                self.regressed = DAMAGED
                log.error("%s", DAMAGED)
        await self._send(send, reply, request_id)
        self.sla.count(reply.status, _user_agent(scope))
        elapsed = time.monotonic() - started
        # One line per request only at debug: at info it cost a tenth of a GET.
        (log.info if elapsed >= SLOW_REQUEST else log.debug)(
            "%s %s %s -> %d in %.1f ms", request_id, scope.get("method"), scope.get("path"),
            reply.status, elapsed * 1000)

    async def _lifespan(self, receive: Receive, send: Send) -> None:
        async with anyio.create_task_group() as tasks:
            while True:
                message = await receive()
                if message["type"] == "lifespan.startup":
                    tasks.start_soon(self._prune_daily)
                    tasks.start_soon(self.sla.run)
                    tasks.start_soon(self._drill_daily)
                    if self.shipper is not None and self.regressed is None:
                        self.shipper.start()
                    await send({"type": "lifespan.startup.complete"})
                elif message["type"] == "lifespan.shutdown":
                    tasks.cancel_scope.cancel()
                    if self.shipper is not None:
                        self.shipper.stop()
                    if self._loop_conn is not None:
                        self._loop_conn.close()
                    await send({"type": "lifespan.shutdown.complete"})
                    return

    async def _drill_daily(self) -> None:
        """Backup upkeep in one task, so that retention never deletes what a drill or a
        verify slice is reading: a verify slice every hour (backup/verify.py), and every
        drill_interval_hours a restore drill (the first one ten minutes after start, so a
        fresh server verifies its replica the same day) followed by replica retention."""
        next_drill, next_verify = time.time() + 600, time.time() + 300
        while True:
            await anyio.to_thread.run_sync(rep.set_meta, self.store, "drill.next_at",
                                           str(next_drill))
            await anyio.sleep(max(0.0, min(next_drill, next_verify) - time.time()))
            if self.shipper is None or self.backup.key is None:
                next_verify, next_drill = time.time() + 3600, time.time() + 3600
                continue
            key, settings = self.backup.key, self.settings
            for replica in self.shipper.replicas:
                try:
                    if time.time() >= next_verify:
                        objects = verify_mod.load_state(self.store, replica.url).objects
                        await anyio.to_thread.run_sync(
                            verify_mod.run_slice, self.store, replica, key,
                            verify_mod.slice_size(objects, settings.replica_verify_days),
                            float(settings.replica_verify_days))
                    if time.time() >= next_drill:
                        # In a child process: the server's RSS never carries a drill.
                        for r in await anyio.to_thread.run_sync(
                                child_process.drill, settings, self.store, replica, key):
                            (log.info if r.ok else log.error)("drill of %s at seq %d: %s",
                                                              r.replica, r.seq, r.detail)
                        p = await anyio.to_thread.run_sync(
                            child_process.retention, settings, self.store, replica, key,
                            settings.replica_keep_snapshots, float(settings.replica_keep_days))
                        log.info("replica retention on %s: %s", replica.url, p.detail)
                except Exception:  # noqa: BLE001 - recorded by the next status, retried
                    log.error("backup upkeep of %s failed:\n%s", replica.url,
                              traceback.format_exc())
            if time.time() >= next_verify:
                next_verify = time.time() + verify_mod.PASS_INTERVAL
            if time.time() >= next_drill:
                next_drill = time.time() + settings.drill_interval_hours * 3600

    def status(self) -> Status:
        return compute(self.store, self.backup,
                       verify_days=float(self.settings.replica_verify_days))

    async def _prune_daily(self) -> None:
        """Retention runs an hour after start, then once a day."""
        await anyio.sleep(3600)
        while True:
            try:
                result = await anyio.to_thread.run_sync(
                    retention.prune, self.store, self.settings.retention_days)
                log.info("retention: pruned %d versions, %d blobs, %d bytes", result.versions,
                         result.blobs, result.bytes)
            except Exception:  # noqa: BLE001 - a failed run is retried tomorrow, loudly
                log.error("retention run failed:\n%s", traceback.format_exc())
            await anyio.sleep(86400)

    async def _send(self, send: Send, reply: _Reply, request_id: str) -> None:
        headers = [(k.lower().encode("latin-1"), v.encode("latin-1")) for k, v in reply.headers]
        headers.append((b"x-request-id", request_id.encode()))
        headers.append((b"server", f"safehold/{__version__}".encode()))
        held = Pieces([reply.body]) if isinstance(reply.body, bytes) else reply.body
        if isinstance(held, Pieces):  # in memory: sent with a Content-Length
            if not any(k == b"content-length" for k, _ in headers):
                headers.append((b"content-length", str(sum(map(len, held))).encode()))
            await send({"type": "http.response.start", "status": reply.status, "headers": headers})
            for piece in held[:-1]:  # written together at the end of this loop step
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            await send({"type": "http.response.body", "body": held[-1] if held else b""})
            return
        await send({"type": "http.response.start", "status": reply.status, "headers": headers})
        it: Iterator[bytes] = iter(held)
        # The chunks a streamed listing already holds (dav/listing.Body.ready: its head,
        # the first pages, often the end) go out without a worker-thread hand-off each,
        # which costs more than sending them (0.1-1.4 ms, the most on a busy machine).
        ready: Callable[[], tuple[list[bytes], bool]] | None = getattr(it, "ready", None)
        pieces, whole = ready() if ready is not None else ([], False)
        try:
            for piece in pieces:
                await send({"type": "http.response.body", "body": piece, "more_body": True})
            while not whole:
                chunk = await anyio.to_thread.run_sync(next, it, None)
                if chunk is None:
                    break
                await send({"type": "http.response.body", "body": chunk, "more_body": True})
            await send({"type": "http.response.body", "body": b""})
        finally:
            # A streamed listing holds a read snapshot until closed (dav/listing.py),
            # also when the client went away or a page failed: the status line is
            # out, so the connection is cut rather than the body completed. One read
            # whole is closed already (closing it again touches no database).
            close = getattr(it, "close", None)
            if close is not None and whole:
                close()
            elif close is not None:
                await anyio.to_thread.run_sync(close)

    async def _route(self, scope: Scope, receive: Receive, request_id: str) -> _Reply:
        try:
            path = unquote_to_bytes(scope.get("raw_path") or scope["path"].encode()).decode("utf-8")
        except UnicodeDecodeError:
            return _text(400, "the URL path is not valid UTF-8")
        method = scope["method"]
        if path == "/healthz":
            return _text(200, "ok")
        if path == "/readyz":
            paused = await self._paused()
            if paused:
                return _text(503, paused)
            try:
                await anyio.to_thread.run_sync(self.store.writable)
            except Exception as exc:  # noqa: BLE001 - readiness reports any failure
                return _not_ready(exc)
            return _text(200, "ready")
        if path in ("/.well-known/caldav", "/.well-known/carddav"):
            return _Reply(301, [("Location", PREFIX), ("Content-Length", "0")])
        if path == "/status":
            # Public (no login): figures only, no user, collection or replica names.
            body = await anyio.to_thread.run_sync(self.sla.page)
            return _Reply(200, [("Content-Type", "text/html; charset=utf-8"),
                                ("Cache-Control", "no-store")], body)
        if path == "/metrics":
            body = await anyio.to_thread.run_sync(metrics.render, self.status, [self.sla.collector])
            return _Reply(200, [("Content-Type", "text/plain; version=0.0.4; charset=utf-8")], body)
        if path == "/api/openapi.json":
            body = api_mod.openapi()
            return _Reply(200, [("Content-Type", "application/json")], body)
        if path.startswith("/api/"):
            return await self._api(scope, receive, path, method, request_id)
        if path == "/" and method in ("PROPFIND", "OPTIONS"):
            # Clients given only the server URL ask "/" for current-user-principal.
            return await self._dav(scope, receive, path, method, request_id)
        if self.web.handles(path):
            # The web pages (login, history, restores, admin) under "/"; "/status" stays free.
            web_reply = await self.web.handle(scope, receive, path)
            return _Reply(web_reply.status, web_reply.headers, web_reply.body)
        if path == PREFIX.rstrip("/") or path.startswith(PREFIX):
            return await self._dav(scope, receive, path, method, request_id)
        return _text(404, "not found")

    async def _paused(self) -> str | None:
        """Why this process must not serve data now, or None: it regressed, or an
        upgrade runs on the shared database (the marker, re-read at most once a second
        so that every process of a PostgreSQL deployment notices it)."""
        if self.regressed:
            return self.regressed
        checked, problem = self._upgrade_checked
        now = time.monotonic()
        if now - checked >= 1.0:
            try:
                problem = await anyio.to_thread.run_sync(
                    versioning.serving_problem, self.store.engine, self._schema_head)
            except Exception as exc:  # noqa: BLE001 - mid-migration tables may be locked
                # Answered to /readyz and DAV: stable words; the detail (SQL) to the log.
                kind = faults.kind(exc)
                log.warning("cannot read the schema state: %s", faults.detail(exc))
                problem = ("cannot read the schema state: " + kind.reason if kind else
                           "cannot read the schema state; an upgrade may be running")
            self._upgrade_checked = (now, problem)
        return problem

    async def _api(self, scope: Scope, receive: Receive, path: str, method: str,
                   request_id: str) -> _Reply:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("?", 0))[0]
        principal = await self.auth.authenticate(headers.get("authorization"), client)
        if principal is None:
            return _text(401, "authentication required",
                         [("WWW-Authenticate", 'Basic realm="safehold", charset="UTF-8"')])
        paused = await self._paused()
        if paused and method == "POST":  # restores write; reads of history are harmless
            return _json(503, {"error": paused})
        body = b""
        if method == "POST":
            chunks = []
            size = 0
            while True:
                message = await receive()
                chunk = message.get("body", b"")
                size += len(chunk)
                if size > 65536:
                    return _json(413, {"error": "API request bodies are limited to 64 KiB"})
                chunks.append(chunk)
                if not message.get("more_body", False):
                    break
            body = b"".join(chunks)
        query = {k: v[-1] for k, v in parse_qs(scope.get("query_string", b"").decode("latin-1")).items()}
        actor = Actor(principal.id, headers.get("user-agent"), request_id)
        status, data = await anyio.to_thread.run_sync(self.api.handle, method, path, query, body,
                                                      principal, actor)
        return _json(status, data)

    async def _dav(self, scope: Scope, receive: Receive, path: str, method: str,
                   request_id: str) -> _Reply:
        bad = check_path(path)
        if bad:
            return _text(400, bad)
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        client = (scope.get("client") or ("?", 0))[0]
        principal = await self.auth.authenticate(headers.get("authorization"), client)
        if principal is None:
            return _text(401, "authentication required",
                         [("WWW-Authenticate", 'Basic realm="safehold", charset="UTF-8"')])
        paused = await self._paused()
        if paused:
            # Promise 8: a server unsure of its own state (data older than its replica,
            # schema mid-upgrade) answers 503 (clients keep their data), never a smaller
            # listing.
            return _text(503, paused, [("Retry-After", "3600" if self.regressed else "60")])
        sync = self.settings.replication_mode == "sync" and self.shipper is not None \
            and method in _MUTATING
        if sync and any(r["last_error"] for r in self.status().facts["replicas"]):
            return _text(503, "a replica is unreachable and replication_mode is sync: the "
                         "write was not accepted; try again later", [("Retry-After", "30")])
        if path == PREFIX.rstrip("/"):
            path = PREFIX
        actor = Actor(principal.id, headers.get("user-agent"), request_id)
        if principal.id not in self._homes_checked:
            # Accounts made by an older release get the homes they lack.
            await anyio.to_thread.run_sync(ensure_homes, self.store, principal, actor)
            self._homes_checked.add(principal.id)
        guard = self.sla.canary_guard if store_sla.is_internal(principal.name) else self.guard
        backend = StoreDavBackend(self.store, principal, actor, self.lineage, guard,
                                  self.settings.listing_page_size, writing=method in _MUTATING)
        if not backend.allowed(path):
            # The same answer whether or not the other user or resource exists.
            return _text(404, "not found")
        spool: blobs.Spool | BodyBytes | None = None
        try:
            try:
                spool = await self._read_body(receive, headers, method)
            except DavError as err:
                return _dav_error(err)
            base = f"{scope.get('scheme', 'http')}://{headers.get('host', 'localhost')}"
            req = DavRequest(method, path, headers,
                             spool.finish() if isinstance(spool, blobs.Spool) else spool, base,
                             principal.name)
            try:
                resp = await self._answer(req, backend)
            except DavError as err:
                return _dav_error(err)
            except DomainError as exc:
                return _text(exc.status, str(exc))
            if self.shipper is not None and method in _MUTATING and resp.status < 300:
                if sync:
                    seq = await anyio.to_thread.run_sync(self.store.last_seq)
                    if not await anyio.to_thread.run_sync(self.shipper.wait_shipped, seq, 10.0):
                        return _text(503, "the change is stored here but not yet on every "
                                     "replica (replication_mode sync); retry", [("Retry-After", "30")])
                else:
                    self.shipper.nudge()
            return _Reply(resp.status, resp.headers, resp.body)
        finally:
            if isinstance(spool, blobs.Spool):
                spool.discard()

    async def _answer(self, req: DavRequest, backend: StoreDavBackend) -> DavResponse:
        """Run the DAV handler. A bounded read (dav_handler.quick: one resource, a small
        body) on SQLite runs right here on the event loop: two thread hand-offs cost
        more than its work (a GET of a contact is ~0.2 ms of work); its connection
        stays checked out between requests (Store.reading's ``kept``). Everything else,
        and everything while the connection pool is busy (a checkout could wait), goes
        to a worker thread, so that no slow request stalls the other clients."""
        if self._reads_on_loop and req.method in _QUICK and engine_mod.connection_idle(self.store.engine):
            conn = self._loop_conn
            if conn is None or conn.closed or conn.invalidated:
                conn = self._loop_conn = self.store.engine.connect()
            with self.store.reading(conn):
                resp = dav_handler.quick(req, backend)
            if resp is not None:
                return resp
        if self._reads_on_loop and req.method == "PUT" and isinstance(req.body, BodyBytes) \
                and req.body.size <= LOOP_PUT_BYTES and engine_mod.connection_idle(self.store.engine):
            # A small PUT on SQLite, when no other writer holds or waits for the lock:
            # its work (parse, ~10 statements, one fsync'd commit) costs less than the
            # hand-offs to and from a worker thread. Its checks (item, parent, locks)
            # and its write share one write transaction (Store.writing_now), which never
            # waits for the lock here; if it is taken, nothing was read or written and
            # the PUT runs on a worker thread, in the group commit of the writers there.
            try:
                with self.store.writing_now():
                    return dav_handler.handle(req, backend)
            except WriteBusy:
                backend = StoreDavBackend(self.store, backend.principal, backend.actor,
                                          backend.lineage, backend.guard, backend.page_size,
                                          writing=True)
        return await anyio.to_thread.run_sync(self._handle, req, backend)

    def _handle(self, req: DavRequest, backend: StoreDavBackend) -> DavResponse:
        if req.method in _READ_ONLY:
            with self.store.reading():
                return dav_handler.handle(req, backend)
        return dav_handler.handle(req, backend)

    async def _read_body(self, receive: Receive, headers: dict[str, str],
                         method: str) -> blobs.Spool | BodyBytes | None:
        length = headers.get("content-length")
        limit = self.settings.max_body_bytes if method == "PUT" else self.settings.max_xml_bytes
        if length is not None:
            if not length.isdigit():
                raise DavError(400, "invalid Content-Length")
            if int(length) > limit:
                raise DavError(413, f"the request body is larger than the limit of {limit} bytes")
        if method in _BODYLESS and length in (None, "0") and "transfer-encoding" not in headers:
            return None
        if method != "PUT":
            return await _read_small_body(receive, limit)
        if length is not None and int(length) <= blobs.CHUNK and "transfer-encoding" not in headers:
            # A body of one chunk is held in memory by the store anyway: no temporary
            # file (mkdir, mkstemp and unlink on the event loop, two reads on the worker).
            return await _read_small_body(receive, int(length))
        spool = blobs.Spool(self.settings.tmp_dir)
        try:
            while True:
                message = await receive()
                if message["type"] == "http.disconnect":
                    raise DavError(400, "the client went away")
                chunk = message.get("body", b"")
                if chunk:
                    if spool.size + len(chunk) > limit:
                        raise DavError(413, f"the request body is larger than the limit of {limit} bytes")
                    await anyio.to_thread.run_sync(spool.write, chunk) if len(chunk) > 65536 else spool.write(chunk)
                if not message.get("more_body", False):
                    break
        except BaseException:
            spool.discard()
            raise
        return spool


async def _read_small_body(receive: Receive, limit: int) -> BodyBytes:
    """An XML body (at most max_xml_bytes), in memory: parsed at once, never stored."""
    try:
        return BodyBytes(await asgi.read_limited(receive, limit))
    except asgi.ClientGone:
        raise DavError(400, "the client went away") from None
    except asgi.BodyTooLarge:
        raise DavError(413, f"the request body is larger than the limit of {limit} bytes") from None


def _regression(store: Store, key: Key, replicas: list[ReplicaClient], lineage: str) -> str | None:
    """A server whose data is older than what it already shipped has lost data (a
    restored VM, a copied-back file): refuse DAV rather than publish the loss."""
    last = store.last_seq()
    for replica in replicas:
        try:
            man = manifest_mod.read(replica, key)
        except SafeholdError as exc:
            log.error("cannot read the manifest of %s: %s", replica.url, exc)
            continue
        if man is not None and man.lineage == lineage and man.high_water > last:
            return (f"this server's data ends at change {last} but its replica {replica.url} "
                    f"holds changes up to {man.high_water}: data was lost here. Serving is "
                    f"paused so that devices keep their copies. Run `safehold restore --from "
                    f"{replica.url} --kit KIT --into NEW_DIR` and start from NEW_DIR (on "
                    "PostgreSQL: restore and serve with `--database-url "
                    "postgresql://USER@HOST/NEW_DB`, a new, empty database).")
    return None


def build(settings: Settings) -> App:
    """Open (creating on first use) the store, run the self-test, return the app."""
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    settings.tmp_dir.mkdir(parents=True, exist_ok=True)
    for stale in settings.tmp_dir.glob("body-*"):
        stale.unlink(missing_ok=True)  # uploads cut off by a crash: never acknowledged
    lost.refuse_if_lost(settings.db_url(), setup.key_path(settings))  # before it is created
    engine = engine_mod.create(settings.db_url())
    engine_mod.ensure_schema(engine)
    facts = engine_mod.self_test(engine)
    log.info("store self-test passed: %s", facts)
    detail = unfinished.found(engine)
    if detail is not None:  # before anything below writes to it (a lineage, homes)
        engine.dispose()
        raise StoreUnavailable(unfinished.refusal(detail))
    store = Store(engine, settings.tmp_dir)
    store.lineage()
    return App(settings, store)


