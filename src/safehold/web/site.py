"""The web front door: request parsing, sessions, CSRF, security headers, routing
and rendering. Page handlers live in user_pages and admin_pages; everything they do
is resolved against the logged-in principal (DESIGN promise 9): another user's
collection, item or job is a 404, the same answer as one that does not exist."""

from __future__ import annotations

import logging
import re
import time
import traceback
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from http.cookies import CookieError, SimpleCookie
from importlib import resources
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

import anyio
import jinja2

from safehold import __version__, asgi
from safehold.backup.setup import BackupConfig
from safehold.backup.shipper import Shipper
from safehold.backup.status import Status
from safehold.config import Settings
from safehold.core.model import Principal
from safehold.errors import DomainError, SafeholdError, StorageCorrupt, UserError
from safehold.store import faults, roles
from safehold.store.history import History
from safehold.store.incidents import Incidents
from safehold.store.repo import Store
from safehold.web.jobs import Jobs
from safehold.web.sessions import COOKIE, LOGIN_COOKIE, Session, Sessions, same

log = logging.getLogger("safehold.web")

MAX_FORM_BYTES = 64 * 1024
# No inline script or style anywhere: the one script and the style sheet are files.
CSP = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
       "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")
SECURITY_HEADERS = [
    ("Content-Security-Policy", CSP),
    ("X-Frame-Options", "DENY"),
    ("X-Content-Type-Options", "nosniff"),
    ("Referrer-Policy", "no-referrer"),
    ("Cross-Origin-Opener-Policy", "same-origin"),
]
# First path segments the web pages own. "/status" is kept free for a public status page.
SECTIONS = {"login", "logout", "static", "collection", "item", "undelete", "restore", "rollback",
            "incidents", "export", "connect", "jobs", "admin"}
STATIC_TYPES = {".css": "text/css; charset=utf-8", ".js": "text/javascript; charset=utf-8",
                ".svg": "image/svg+xml"}


@dataclass
class Deps:
    """What the composition root (http.app) hands the web pages."""

    store: Store
    settings: Settings
    backup: BackupConfig
    shipper: Callable[[], Shipper | None]
    status: Callable[[], Status]
    login: Callable[[str, str, str], Awaitable[Principal | None]]
    forget: Callable[[str], None]  # drop a user's cached password
    export: Callable[[str, Path, Callable[[int, int], None]], None]


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes | Iterable[bytes] = b""


class HttpError(Exception):
    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status


@dataclass
class Request:
    method: str
    path: str
    query: dict[str, str]
    form: dict[str, str]
    cookies: dict[str, str]
    headers: dict[str, str]
    client: str
    scheme: str
    session: Session | None = None
    principal: Principal | None = None
    admin: bool = False
    set_cookies: list[str] = field(default_factory=list)

    @property
    def base_url(self) -> str:
        return f"{self.scheme}://{self.headers.get('host', 'localhost')}"

    @property
    def user(self) -> Principal:
        assert self.principal is not None  # routes that need it are login-only
        return self.principal

    def arg(self, name: str, source: str = "form") -> str:
        values = self.form if source == "form" else self.query
        value = values.get(name, "").strip()
        if not value:
            raise HttpError(400, f"the field {name!r} is required")
        return value


Handler = Callable[..., Response]


class Web:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps
        self.store = deps.store
        self.history = History(deps.store)
        self.incidents = Incidents(deps.store)
        self.sessions = Sessions(deps.store)
        self.jobs = Jobs(deps.store)
        self.templates = jinja2.Environment(
            loader=jinja2.PackageLoader("safehold.web", "templates"),
            autoescape=True, undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)
        self.templates.filters["ago"] = ago
        self.templates.filters["when"] = when
        self.templates.filters["size"] = human_size
        self.templates.filters["short"] = short
        self.templates.globals["version"] = __version__
        self.routes: list[tuple[str, re.Pattern[str], Handler, bool]] = []
        from safehold.web import admin_pages, user_pages
        user_pages.register(self)
        admin_pages.register(self)

    def route(self, method: str, pattern: str, handler: Handler, admin: bool = False) -> None:
        self.routes.append((method, re.compile(pattern), handler, admin))

    @staticmethod
    def handles(path: str) -> bool:
        # A request target need not start with "/": "OPTIONS *" (RFC 9110 §7.1) has none.
        return path == "/" or (path.startswith("/") and path.split("/")[1] in SECTIONS)

    # -- ASGI side ------------------------------------------------------------------

    async def handle(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                     path: str) -> Response:
        try:
            req = await self._request(scope, receive, path)
            reply = await self._dispatch(req)
        except HttpError as exc:
            reply = self.error(exc.status, str(exc), None)
            if exc.status == 405:
                reply.headers.append(("Allow", "GET, POST"))
        reply.headers.extend(SECURITY_HEADERS)
        return reply

    async def _request(self, scope: dict[str, Any], receive: Callable[[], Awaitable[dict[str, Any]]],
                       path: str) -> Request:
        headers = {k.decode("latin-1").lower(): v.decode("latin-1") for k, v in scope["headers"]}
        method = scope["method"]
        if method not in ("GET", "HEAD", "POST"):
            raise HttpError(405, f"{method} is not used by the web pages")
        query = _parse_form(scope.get("query_string", b""))
        form: dict[str, str] = {}
        if method == "POST":
            ctype = headers.get("content-type", "").split(";")[0].strip().lower()
            body = await _read_body(receive, headers)
            if (ctype or body) and ctype != "application/x-www-form-urlencoded":
                raise HttpError(415, "forms must be sent as application/x-www-form-urlencoded")
            form = _parse_form(body)
        cookies: dict[str, str] = {}
        try:
            jar: SimpleCookie = SimpleCookie(headers.get("cookie", ""))
            cookies = {k: m.value for k, m in jar.items()}
        except CookieError:
            pass  # a mangled Cookie header: treated as no session
        client = (scope.get("client") or ("?", 0))[0]
        return Request(method, path, query, form, cookies, headers, client, scope.get("scheme", "http"))

    async def _dispatch(self, req: Request) -> Response:
        if req.path.startswith("/static/"):
            return _static(req.path[len("/static/"):])
        session = await anyio.to_thread.run_sync(self.sessions.get, req.cookies.get(COOKIE))
        if req.path == "/login":
            return await self._login(req, session)
        if session is not None:
            principal, admin = await anyio.to_thread.run_sync(self._account, session)
            if principal is None:
                session = None
            else:
                req.session, req.principal, req.admin = session, principal, admin
        if req.path == "/logout":
            if req.method != "POST":
                raise HttpError(405, "log out with the button (POST)")
            if session is not None and same(req.form.get("csrf"), session.csrf):
                await anyio.to_thread.run_sync(self.sessions.drop, session.token)
            return self.redirect("/login", cookies=[_cookie(req, COOKIE, "", expire=True)])
        if req.session is None:
            if req.method == "POST":
                raise HttpError(403, "you are not logged in (or your session ended): log in again")
            target = req.path + ("?" + "&".join(f"{k}={quote(v)}" for k, v in req.query.items())
                                 if req.query else "")
            return self.redirect("/login?next=" + quote(target, safe=""))
        if req.method == "POST" and not same(req.form.get("csrf"), req.session.csrf):
            raise HttpError(403, "this form has expired or did not come from this site: reload the "
                                 "page and try again")
        method = "GET" if req.method == "HEAD" else req.method
        allowed = []
        for verb, pattern, handler, admin in self.routes:
            m = pattern.fullmatch(req.path)
            if m is None:
                continue
            if admin and not req.admin:
                break  # the admin pages do not exist for anyone else
            if verb != method:
                allowed.append(verb)
                continue
            return await anyio.to_thread.run_sync(self._call, handler, req, m.groups())
        if allowed:
            raise HttpError(405, f"use {' or '.join(allowed)}")
        # In a thread: a pending message is forgotten once shown, a database write.
        return await anyio.to_thread.run_sync(self.error, 404, "there is no such page", req)

    def _account(self, session: Session) -> tuple[Principal | None, bool]:
        """The session's user and whether an administrator, read in one thread hand-off;
        a user gone or disabled ends the session."""
        principal = self.store.principal(session.user)
        if principal is None or principal.disabled:
            self.sessions.drop(session.token)
            return None, False
        return principal, roles.is_admin(self.store, principal.name)

    def _call(self, handler: Handler, req: Request, groups: tuple[str, ...]) -> Response:
        try:
            return handler(self, req, *groups)
        except HttpError as exc:
            return self.error(exc.status, str(exc), req)
        except DomainError as exc:
            return self.error(exc.status, str(exc), req)
        except UserError as exc:
            status = 404 if type(exc).__name__ == "UnknownUser" else 400
            return self.error(status, str(exc), req)
        except Exception as exc:
            kind = faults.kind(exc)
            if kind is not None and kind is not StorageCorrupt:
                # Answered as DAV and the API answer it (errors.StorageFault); a damaged
                # database goes to http.app, which also pauses serving.
                log.error("web %s %s: storage fault, nothing was stored: %s", req.method,
                          req.path, faults.detail(exc))
                reply = self.error(kind.status, kind.public, req)
                if kind.retry_after:
                    reply.headers.append(("Retry-After", kind.retry_after))
                return reply
            if kind is not None or not isinstance(exc, SafeholdError):
                raise
            log.error("web %s %s failed:\n%s", req.method, req.path, traceback.format_exc())
            return self.error(503, str(exc), req)

    async def _login(self, req: Request, session: Session | None) -> Response:
        nxt = req.query.get("next") or req.form.get("next") or "/"
        if not nxt.startswith("/") or nxt.startswith("//") or "\\" in nxt:
            nxt = "/"  # never an open redirect to another site
        if req.method in ("GET", "HEAD"):
            if session is not None:
                return self.redirect(nxt)
            token = req.cookies.get(LOGIN_COOKIE) or _token()
            return self.render("login.html", req, http_status=200, login_csrf=token, next=nxt, failed=False,
                               cookies=[_cookie(req, LOGIN_COOKIE, token, path="/login")])
        if req.method != "POST":
            raise HttpError(405, "use GET or POST")
        if not same(req.form.get("csrf"), req.cookies.get(LOGIN_COOKIE)):
            raise HttpError(403, "the login form has expired: reload the page and try again")
        name, password = req.form.get("user", "").strip(), req.form.get("password", "")
        if not name or not password:
            raise HttpError(400, "enter your user name and password")
        principal = await self.deps.login(name, password, req.client)
        if principal is None:
            return self.render("login.html", req, http_status=401, login_csrf=req.cookies[LOGIN_COOKIE],
                               next=nxt, failed=True)
        new = await anyio.to_thread.run_sync(self.sessions.create, principal.name)
        return self.redirect(nxt, cookies=[_cookie(req, COOKIE, new.token),
                                           _cookie(req, LOGIN_COOKIE, "", path="/login", expire=True)])

    # -- responses ----------------------------------------------------------------------

    def render(self, template: str, req: Request | None, http_status: int = 200,
               cookies: list[str] | None = None, **context: Any) -> Response:
        flash: list[str] = []
        if req is not None and req.session is not None:
            flash = self.sessions.take_flash(req.session)
        body = self.templates.get_template(template).render(
            user=req.principal if req else None, admin=req.admin if req else False,
            csrf=req.session.csrf if req and req.session else "", flash=flash,
            path=req.path if req else "", **context).encode("utf-8")
        headers = [("Content-Type", "text/html; charset=utf-8"), ("Cache-Control", "no-store")]
        headers += [("Set-Cookie", c) for c in cookies or []]
        return Response(http_status, headers, body)

    def error(self, status: int, message: str, req: Request | None) -> Response:
        return self.render("error.html", req, http_status=status, status_code=status, message=message)

    @staticmethod
    def redirect(location: str, cookies: list[str] | None = None) -> Response:
        headers = [("Location", location), ("Content-Length", "0"), ("Cache-Control", "no-store")]
        headers += [("Set-Cookie", c) for c in cookies or []]
        return Response(303, headers, b"")

    def done(self, req: Request, location: str, message: str) -> Response:
        """After a successful POST: say what happened on the next page (Post/Redirect/Get)."""
        if req.session is not None:
            self.sessions.flash(req.session, message)
        return self.redirect(location)


def _token() -> str:
    import secrets
    return secrets.token_urlsafe(32)


def _cookie(req: Request, name: str, value: str, path: str = "/", expire: bool = False) -> str:
    parts = [f"{name}={value}", f"Path={path}", "HttpOnly", "SameSite=Strict"]
    if req.scheme == "https":
        parts.append("Secure")
    if expire:
        parts.append("Max-Age=0")
    return "; ".join(parts)


def _parse_form(raw: bytes) -> dict[str, str]:
    try:
        text = raw.decode("utf-8")
        pairs = parse_qs(text, keep_blank_values=True, max_num_fields=200, errors="strict")
    except (UnicodeDecodeError, ValueError) as exc:
        raise HttpError(400, f"the form or query is not valid: {exc}") from exc
    return {k: v[-1] for k, v in pairs.items()}


async def _read_body(receive: Callable[[], Awaitable[dict[str, Any]]], headers: dict[str, str]) -> bytes:
    length = headers.get("content-length")
    if length is not None and (not length.isdigit() or int(length) > MAX_FORM_BYTES):
        raise HttpError(413, f"forms are limited to {MAX_FORM_BYTES // 1024} KiB")
    try:
        return await asgi.read_limited(receive, MAX_FORM_BYTES)
    except asgi.ClientGone:
        raise HttpError(400, "the client went away") from None
    except asgi.BodyTooLarge:
        raise HttpError(413, f"forms are limited to {MAX_FORM_BYTES // 1024} KiB") from None


def _static(name: str) -> Response:
    suffix = Path(name).suffix
    if "/" in name or name.startswith(".") or suffix not in STATIC_TYPES:
        raise HttpError(404, "there is no such file")
    try:
        body = resources.files("safehold.web").joinpath("static", name).read_bytes()
    except (FileNotFoundError, IsADirectoryError) as exc:
        raise HttpError(404, "there is no such file") from exc
    return Response(200, [("Content-Type", STATIC_TYPES[suffix]), ("Cache-Control", "max-age=300")], body)


# -- template filters -------------------------------------------------------------------

def ago(ts: float | None, now: float | None = None) -> str:
    if ts is None:
        return "never"
    seconds = max(0.0, (now or time.time()) - float(ts))
    for unit, size in (("d", 86400), ("h", 3600), ("min", 60)):
        if seconds >= size:
            return f"{seconds / size:.0f} {unit} ago"
    return f"{seconds:.0f} s ago"


def when(ts: float | None) -> str:
    if ts is None:
        return "—"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(float(ts)))


def short(text: str | None, limit: int = 240) -> str:
    """Object-store errors run to a screen of debug text; the page shows the start
    (the whole of it is in the log and in `safehold status`)."""
    if not text:
        return ""
    return text if len(text) <= limit else text[:limit].rstrip() + " …"


def human_size(n: int | None) -> str:
    if n is None:
        return "—"
    size = float(n)
    for unit in ("B", "KiB", "MiB", "GiB"):
        if size < 1024 or unit == "GiB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1024
    return f"{size:.1f} TiB"
