"""The web UI and JSON API of ``livefaces serve`` (the only module that imports aiohttp).

Why aiohttp: one well-kept dependency gives the HTTP server, streaming responses (MJPEG),
and an HTTP/WebSocket client (used by the tests to drive Chromium over the DevTools
protocol); no separate ASGI server is needed, and it runs on its own event loop in one
background thread beside the pipeline's threads.

Routes (all but ``/health`` need the token when one is configured)::

    GET /                                   the page: live view per camera, status, event feed
    GET /health                             {"status": "ok"|"degraded", "problems": [...], ...}
                                            (always 200; no token needed)
    GET /metrics                            Prometheus text format
    GET /api/cameras                        [{name, url (password-free), status...}, ...]
    GET /api/cameras/{name}                 one camera (404 when unknown)
    GET /api/cameras/{name}/snapshot.jpg    newest annotated frame (503 before the first)
    GET /api/cameras/{name}/stream.mjpeg    live annotated MJPEG, ?fps= capped by web.stream_fps
    GET /api/events?since=ID&limit=N        {"events": [...], "next": ID} (JSON Lines schema)
    GET /api/people                         {"enabled", "people": [{name, present: [cameras],
                                            last_seen, last_camera}], "unknown": [{id, camera,
                                            track_id, seen}], "strangers": [{id, first_seen,
                                            last_seen, cameras, seen, views, ignored,
                                            new_today}]}
                                            (live identification; no embedding)
    GET /api/people/unknown/{id}.jpg        the kept crop of a recent unknown face (404: gone)
    POST /api/people/unknown/{id}           {"name": "ada"}: add that face to the people folder
                                            as ada (enrolled at once); {"name", "people"}
    GET /api/people/strangers/{id}.jpg      a stranger's best thumbnail (people.strangers on)
    POST /api/people/strangers/{id}         {"name": "ada"} | {"action": "ignore"|"forget"} |
                                            {"action": "merge", "other": "stranger-9"};
                                            {"id", "action", "people"}

Token: ``Authorization: Bearer T``, or the ``livefaces_token`` cookie; opening any page
with ``?token=T`` sets the cookie (HttpOnly, SameSite=Strict) and redirects to the same path
of this server without it (never to another host: ``//evil.example/?token=T`` goes to
``/evil.example/``), so the token does not stay in the address bar. Requests are logged (at
DEBUG) without their query strings, with control characters escaped (no forged log lines);
:class:`RedactingFilter` redacts tokens in any log line (the CLI installs it).

Without a token only this server's host names are answered (``Host:`` localhost, 127.0.0.1,
[::1], ``web.host``, ``web.allowed_hosts``; others 403: no DNS rebinding). Wrong tokens are
limited per client address (:data:`AUTH_FAILURES` in :data:`AUTH_WINDOW_S` seconds, then 429
with Retry-After) and logged without the token. Connections that send no complete request
within ``web.idle_timeout`` are closed, at most :attr:`WebServer.connection_cap` stay open
(the oldest idle one makes room), and repeated warnings are one a minute (:class:`_Once`).

JSON answers are rounded (pixels 0.1, scores 4 decimals, other numbers 2-3) and never contain
NaN or infinity (``null`` instead).
"""

from __future__ import annotations

import asyncio
import collections
import errno
import hmac
import json
import logging
import math
import os
import re
import sys
import threading
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

from aiohttp import web
from aiohttp.abc import AbstractAccessLogger
from aiohttp.http_exceptions import HttpProcessingError

from ..redact import redact_params
from .config import WebConfig, is_loopback
from .hub import Hub

log = logging.getLogger(__name__)

COOKIE = "livefaces_token"
_PAGE = (Path(__file__).with_name("page.html")).read_text(encoding="utf-8")
_BOUNDARY = "livefacesframe"

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]

#: host names answered without a token (any port), besides ``web.host`` and ``web.allowed_hosts``
LOOPBACK_NAMES = ("localhost", "127.0.0.1", "::1")
#: wrong tokens per client: after AUTH_FAILURES within AUTH_WINDOW_S seconds the client is
#: answered 429 (with Retry-After) until the oldest of them is AUTH_WINDOW_S old
AUTH_FAILURES = 10
AUTH_WINDOW_S = 60.0
#: a repeated warning (a refused host name, a wrong token, accept() failing) is logged at
#: most once per this many seconds per kind and client
LOG_EVERY_S = 60.0


def host_name(header: str) -> str | None:
    """The host name of a ``Host:`` header, lower-case, without port, brackets or a final dot
    (``[::1]:8780`` -> ``::1``); None when it is malformed."""
    h = header.strip().lower()
    if h.startswith("["):
        name, sep, rest = h[1:].partition("]")
        if not sep or (rest and not (rest.startswith(":") and rest[1:].isdigit())):
            return None
    else:
        before, sep, port = h.rpartition(":")
        if sep and not port.isdigit():
            return None
        name = before if sep else h
    return name.rstrip(".") or None


class _Throttle:
    """Wrong tokens per client (its IP address) in a sliding window."""

    def __init__(self, limit: int = AUTH_FAILURES, window: float = AUTH_WINDOW_S,
                 clock: Callable[[], float] = time.monotonic, max_clients: int = 4096):
        self.limit, self.window, self.clock, self.max_clients = limit, window, clock, max_clients
        self._fails: dict[str, collections.deque[float]] = {}

    def _recent(self, client: str, now: float) -> collections.deque[float] | None:
        q = self._fails.get(client)
        if q is None:
            return None
        while q and q[0] <= now - self.window:
            q.popleft()
        if not q:
            del self._fails[client]
            return None
        return q

    def retry_after(self, client: str) -> float:
        """Seconds ``client`` must wait (0: it may try)."""
        now = self.clock()
        q = self._recent(client, now)
        return q[0] + self.window - now if q is not None and len(q) >= self.limit else 0.0

    def failed(self, client: str) -> int:
        """Count one wrong token; the client's count in the window."""
        now = self.clock()
        q = self._recent(client, now)
        if q is None:
            if len(self._fails) >= self.max_clients:  # bounded: forget the stale, then the oldest
                for c in list(self._fails):
                    self._recent(c, now)
                while len(self._fails) >= self.max_clients:
                    del self._fails[next(iter(self._fails))]
            q = self._fails[client] = collections.deque()
        q.append(now)
        return len(q)


class _Once:
    """``log.warning`` (or ``level``) at most once per :data:`LOG_EVERY_S` per key; the
    next line of a key says how many were left out meanwhile."""

    def __init__(self, every: float = LOG_EVERY_S, clock: Callable[[], float] = time.monotonic):
        self.every, self.clock = every, clock
        self._last: dict[Any, float] = {}
        self._skipped: dict[Any, int] = {}

    def __call__(self, key: Any, msg: str, *args: Any, level: int = logging.WARNING,
                 exc_info: bool = False) -> bool:
        now = self.clock()
        last = self._last.get(key)
        if last is not None and now - last < self.every:
            self._skipped[key] = self._skipped.get(key, 0) + 1
            return False
        if len(self._last) > 4096:
            self._last = {k: t for k, t in self._last.items() if now - t < self.every}
            self._skipped = {k: n for k, n in self._skipped.items() if k in self._last}
        self._last[key] = now
        skipped = self._skipped.pop(key, 0)
        if skipped:
            msg += f" ({skipped} more like it in the last {self.every:g} s not logged)"
        log.log(level, msg, *args, exc_info=exc_info)
        return True


def open_file_limit() -> int | None:
    """The process's soft limit of open files (None where unknown)."""
    try:
        import resource
    except ImportError:  # not POSIX
        return None
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return None if soft == resource.RLIM_INFINITY else int(soft)


def reachable_address() -> str | None:
    """An address of this machine that other machines may reach (the one of its default
    route), or None (no network). Nothing is sent."""
    import ipaddress
    import socket

    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            s.connect(("192.0.2.1", 9))  # TEST-NET-1: UDP connect only picks the route
            addr = str(s.getsockname()[0])
        if not ipaddress.ip_address(addr).is_loopback and addr != "0.0.0.0":
            return addr
    except (OSError, ValueError):
        pass
    try:
        for info in socket.getaddrinfo(socket.gethostname(), None, socket.AF_INET):
            addr = str(info[4][0])
            if not ipaddress.ip_address(addr).is_loopback:
                return addr
    except (OSError, ValueError):
        pass
    return None


def accept_backlog(fd_limit: int | None) -> int:
    """The listen backlog, which is also how many connections asyncio accepts in one go
    before any can be closed: 100, less under a small open-file limit (an eighth of it)."""
    return 100 if not fd_limit else max(8, min(100, fd_limit // 8))


def connection_cap(max_connections: int, fd_limit: int | None, backlog: int = 0) -> int:
    """Connections served at once: ``max_connections``, and at most half the open-file limit
    less one accept burst (``backlog``; the rest is for cameras, models and the process), at
    least 4."""
    if not fd_limit:
        return max(4, max_connections)
    return max(4, min(max_connections, fd_limit // 2 - backlog))


_BEARER = re.compile(r"(?i)(bearer\s+)\S+")
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def _escape_control(text: str, keep_newlines: bool = False) -> str:
    def esc(m: re.Match[str]) -> str:
        ch = m.group(0)
        if keep_newlines and ch == "\n":
            return ch
        return {"\n": "\\n", "\r": "\\r", "\t": "\\t"}.get(ch, f"\\x{ord(ch):02x}")

    return _CONTROL.sub(esc, text)


def redact(text: str, secrets: tuple[str, ...] | list[str] = (), keep_newlines: bool = False) -> str:
    """``text`` safe for a log line: known ``secrets`` and ``token=``/``password=``-like query
    values and bearer credentials replaced by ``***``, control characters (newlines, NUL, ESC)
    escaped as ``\\n``, ``\\x00``... unless ``keep_newlines`` (tracebacks)."""
    for sec in secrets:
        if sec:
            text = text.replace(sec, "***")
    text = redact_params(text)
    text = _BEARER.sub(lambda m: f"{m.group(1)}***", text)
    return _escape_control(text, keep_newlines)


def safe_path(request: web.BaseRequest) -> str:
    """The request path for a log line: no query string, control characters escaped."""
    return redact(request.path)


class RedactingFilter(logging.Filter):
    """A :class:`logging.Filter` for handlers: every record's message (and traceback) goes
    through :func:`redact` with the given secrets, so neither a token nor a forged line
    (``%0a`` in a URL) reaches the log, whatever library logged it."""

    def __init__(self, secrets: tuple[str, ...] | list[str] = ()):
        super().__init__()
        self.secrets = tuple(s for s in secrets if s)

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            msg = record.getMessage()
        except Exception:  # noqa: BLE001 - a bad format string: log it as given
            msg = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = redact(msg, self.secrets), ()
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text, self.secrets, keep_newlines=True)
        return True


class _ServerLog:
    """aiohttp's server logger: a malformed request (a client's doing, not ours) becomes one
    escaped, redacted DEBUG line instead of an ERROR with a traceback; real errors stay errors."""

    def __init__(self, logger: logging.Logger):
        self._log = logger

    def exception(self, msg: str, *args: Any, exc_info: Any = True, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else sys.exc_info()[1]
        if isinstance(exc, HttpProcessingError):
            self._log.debug("bad request (%s %s): %s", exc.code, type(exc).__name__,
                            redact(str(exc.message).strip()))
        else:
            self._log.error(msg, *args, exc_info=exc_info, **kw)

    def debug(self, msg: str, *args: Any, exc_info: Any = None, **kw: Any) -> None:
        exc = exc_info if isinstance(exc_info, BaseException) else None
        if isinstance(exc, HttpProcessingError):
            self.exception(msg, *args, exc_info=exc)
        else:
            self._log.debug(msg, *args, exc_info=exc_info, **kw)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._log, name)


class _AccessLogger(AbstractAccessLogger):
    def log(self, request: web.BaseRequest, response: web.StreamResponse, time: float) -> None:
        # path only (a ?token= must never reach a log line), control characters escaped
        self.logger.debug("%s %s -> %s (%.1f ms)", _escape_control(request.method), safe_path(request),
                          response.status, time * 1000)


#: decimals by key: pixel geometry 0.1 px, scores 4, seconds 3, everything else 2
_DIGITS = {"box": 1, "bbox": 1, "landmarks": 1, "confidence": 4, "score": 4, "scores": 4}


def clean_json(data: Any, digits: int = 2) -> Any:
    """``data`` with floats rounded (see :data:`_DIGITS`; keys ending in ``_s`` get 3) and
    NaN/infinity replaced by None, so the JSON is valid and readable."""
    if isinstance(data, float):
        return round(data, digits) if math.isfinite(data) else None
    if isinstance(data, dict):
        out = {}
        for k, v in data.items():
            d = _DIGITS.get(k, 3 if isinstance(k, str) and k.endswith("_s") else digits)
            out[k] = clean_json(v, d)
        return out
    if isinstance(data, (list, tuple)):
        return [clean_json(v, digits) for v in data]
    if hasattr(data, "item") and hasattr(data, "dtype"):  # a numpy scalar
        return clean_json(data.item(), digits)
    return data


def _json(data: Any, status: int = 200) -> web.Response:
    text = json.dumps(clean_json(data), ensure_ascii=False, allow_nan=False)
    return web.Response(text=text, status=status, content_type="application/json",
                        headers={"Cache-Control": "no-store"})


def _error(status: int, message: str) -> web.Response:
    return _json({"error": message, "status": status}, status=status)


def local_location(raw_path: str, raw_query: str = "") -> str:
    """A redirect target on this server: ``//host/x`` or ``/\\host/x`` (which browsers read
    as another host) becomes ``/host/x``; anything not starting with ``/`` becomes ``/``."""
    path = "/" + raw_path.lstrip("/\\") if raw_path.startswith(("/", "\\")) else "/"
    path = _CONTROL.sub("", path)
    return path + ("?" + raw_query if raw_query else "")


class WebServer:
    """Serve ``hub`` over HTTP on a background thread.

    Args:
        hub: where frames, events and status come from.
        config: host, port (0 = any free port; see :attr:`port` after :meth:`start`), token,
            stream_fps (per-client MJPEG cap).

    ``/health`` and ``/metrics`` show the statistics the server pushed into the hub.
    """

    def __init__(self, hub: Hub, config: WebConfig,
                 name_face: Callable[[str, str], list[str]] | None = None,
                 strangers: Callable[[], list[dict[str, Any]]] | None = None,
                 stranger_action: Callable[[str, str, str | None], list[str]] | None = None,
                 stranger_jpeg: Callable[[str], bytes | None] | None = None):
        if not is_loopback(config.host) and not config.token:
            raise ValueError("a token is required when binding a non-loopback address")
        self.hub = hub
        self.config = config
        #: ``(unknown face id, name) -> enrolled names`` (the server's: through the
        #: identification worker); KeyError for an unknown id, LiveFacesError for the rest
        self.name_face = name_face
        #: ``() -> [stranger JSON]`` with ``people.strangers`` on (``/api/people``'s
        #: ``strangers``); None: off
        self.list_strangers = strangers
        #: ``(stranger id, "name"|"ignore"|"forget", name) -> enrolled names`` (the worker's)
        self.stranger_action = stranger_action
        self.stranger_jpeg = stranger_jpeg
        self._token = config.token
        self._metrics: Any = None  # serve.metrics.Metrics, made at the first scrape
        self.port: int | None = None
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._runner: web.AppRunner | None = None
        self._stopping: asyncio.Event | None = None
        self._ready = threading.Event()
        self._startup_error: BaseException | None = None
        self.streams_open = 0
        #: without a token, the ``Host:`` names answered (DNS rebinding: see _host_mw)
        bound = config.host.strip("[]").lower().rstrip(".")  # an address, not a Host: header
        self.allowed_hosts = frozenset({*LOOPBACK_NAMES, *config.allowed_hosts}
                                       | ({bound} if bound else set()))
        self._throttle = _Throttle()
        self._once = _Once()
        self._busy: dict[Any, int] = {}  # connection (aiohttp's handler) -> requests in progress
        self._server: asyncio.AbstractServer | None = None
        self._backlog = accept_backlog(open_file_limit())

    @property
    def connection_cap(self) -> int:
        """Connections (and requests in progress) at most: ``web.max_connections``, at most
        half the open-file limit as it is now."""
        return connection_cap(self.config.max_connections, open_file_limit(), self._backlog)

    # ------------------------------------------------------------------ app

    def make_app(self) -> web.Application:
        app = web.Application(middlewares=[self._errors_mw, self._busy_mw, self._host_mw,
                                           self._auth_mw])
        r = app.router
        r.add_get("/", self.page)
        r.add_get("/health", self.health)
        r.add_get("/metrics", self.metrics)
        r.add_get("/api/cameras", self.cameras)
        r.add_get("/api/cameras/{name}", self.camera)
        r.add_get("/api/cameras/{name}/snapshot.jpg", self.snapshot)
        r.add_get("/api/cameras/{name}/stream.mjpeg", self.stream)
        r.add_get("/api/events", self.events)
        r.add_get("/api/people", self.people)
        r.add_get("/api/people/unknown/{id}.jpg", self.unknown_jpeg)
        r.add_post("/api/people/unknown/{id}", self.name_unknown)
        r.add_get("/api/people/strangers/{id}.jpg", self.stranger_thumb)
        r.add_post("/api/people/strangers/{id}", self.act_on_stranger)
        return app

    @web.middleware
    async def _errors_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        try:
            return await handler(request)
        except web.HTTPException as e:
            if e.status >= 400:
                return _error(e.status, e.reason)
            raise
        except (asyncio.CancelledError, ConnectionResetError):
            raise
        except Exception as e:
            # once a minute per route and error: a request repeated in a loop must not write
            # a traceback per attempt
            route = request.match_info.route.resource
            where = route.canonical if route is not None else safe_path(request)
            self._once(("internal", where, type(e).__name__), "internal error on %s %s",
                       _escape_control(request.method), safe_path(request), level=logging.ERROR,
                       exc_info=True)
            return _error(500, "internal error (see the server log)")

    def _credentials(self, request: web.Request) -> list[str]:
        given = request.headers.get("Authorization", "")
        cand = [given[7:]] if given.lower().startswith("bearer ") else []
        cand += [request.cookies.get(COOKIE, ""), request.query.get("token", "")]
        return [c for c in cand if c]

    def _authorised(self, request: web.Request) -> bool:
        if not self._token:
            return True
        token = self._token.encode()
        return any(hmac.compare_digest(c.encode(), token) for c in self._credentials(request))

    @web.middleware
    async def _busy_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Counts the requests in progress per connection (a connection with none is idle: the
        first to close when :attr:`connection_cap` is reached); beyond the cap of requests
        in progress (MJPEG streams), 503."""
        conn = request.protocol
        cap = self.connection_cap
        if sum(self._busy.values()) >= cap:
            self._once("busy", "web: %d requests in progress (the connection cap): answering 503", cap)
            return _error(503, "too many requests in progress; try again later")
        self._busy[conn] = self._busy.get(conn, 0) + 1
        try:
            return await handler(request)
        finally:
            n = self._busy.pop(conn, 1) - 1
            if n > 0:
                self._busy[conn] = n

    @web.middleware
    async def _host_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        """Without a token, only this server's own host names are answered: a page on another
        site that points its own name at 127.0.0.1 (DNS rebinding) sends ``Host: its.name``
        and gets 403, so it can neither read the API nor name a face. A request without a
        ``Host:`` header (HTTP/1.0 tools) is no browser's and is answered."""
        raw = request.headers.get("Host")
        if not self._token and raw is not None and host_name(raw) not in self.allowed_hosts:
            self._once(("host", raw), "web: refused a request for host name %r (%s %s): not one of "
                       "this server's names; add it to web.allowed_hosts if it is one", raw,
                       _escape_control(request.method), safe_path(request))
            return _error(403, "this server does not answer to that host name (add it to "
                               "web.allowed_hosts, or set a token)")
        return await handler(request)

    @web.middleware
    async def _auth_mw(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        if request.path == "/health" or not self._token:
            return await handler(request)
        client = request.remote or "?"
        wait = self._throttle.retry_after(client)
        if wait > 0:
            resp = _error(429, f"too many wrong tokens from this address; try again in "
                               f"{math.ceil(wait)} s")
            resp.headers["Retry-After"] = str(math.ceil(wait))
            return resp
        if not self._authorised(request):
            if self._credentials(request):  # a wrong token (none at all is not a guess)
                n = self._throttle.failed(client)
                if n == 1:
                    log.warning("web: a wrong token from %s (%s %s); more from it are not logged, "
                                "after %d in %g s it is refused (429)", redact(client),
                                _escape_control(request.method), safe_path(request),
                                AUTH_FAILURES, AUTH_WINDOW_S)
                elif n == AUTH_FAILURES:
                    log.warning("web: %d wrong tokens from %s in %g s: refused (429) until it "
                                "stops", n, redact(client), AUTH_WINDOW_S)
            return _error(401, "a token is needed: send 'Authorization: Bearer TOKEN' or open "
                               "the page once as /?token=TOKEN")
        if "token" in request.query:  # move it from the URL into a cookie
            q = request.rel_url.query.copy()
            del q["token"]
            target = local_location(request.rel_url.raw_path, request.rel_url.with_query(q).raw_query_string)
            resp = web.HTTPFound(target)
            resp.set_cookie(COOKIE, self._token, httponly=True, samesite="Strict", path="/")
            raise resp
        return await handler(request)

    def _camera_or_404(self, request: web.Request) -> str:
        name = request.match_info["name"]
        if self.hub.camera(name) is None:
            raise web.HTTPNotFound(reason=f"no camera named {name!r}")
        return name

    # ------------------------------------------------------------------ handlers

    async def page(self, request: web.Request) -> web.Response:
        return web.Response(text=_PAGE, content_type="text/html",
                            headers={"Cache-Control": "no-store",
                                     "Content-Security-Policy": "default-src 'self'; "
                                     "script-src 'unsafe-inline' 'self'; style-src 'unsafe-inline' 'self'; "
                                     "img-src 'self' blob:"})

    async def health(self, request: web.Request) -> web.Response:
        """200 ``{"status": "ok"|"degraded", "problems": [...], ...}``: degraded (still 200: the
        process serves, a liveness probe must not restart it for a broker outage) when the
        hub's newest statistics report problems (MQTT unreachable, a camera down or behind)."""
        body: dict[str, Any] = {"status": "ok", "cameras": len(self.hub.camera_names),
                                "uptime_s": round(self.hub.clock() - self.hub.started, 1),
                                "problems": []}
        body.update(self.hub.health())
        if body.get("problems"):
            body["status"] = "degraded"
        return _json(body)

    async def metrics(self, request: web.Request) -> web.Response:
        from .metrics import CONTENT_TYPE, Metrics

        if self._metrics is None:
            self._metrics = Metrics(self.hub)
        text = self._metrics.text()
        return web.Response(body=text.encode("utf-8"), headers={"Content-Type": CONTENT_TYPE})

    async def cameras(self, request: web.Request) -> web.Response:
        return _json({"cameras": list(self.hub.status().values())})

    async def camera(self, request: web.Request) -> web.Response:
        name = self._camera_or_404(request)
        return _json(self.hub.status()[name])

    async def snapshot(self, request: web.Request) -> web.Response:
        name = self._camera_or_404(request)
        got = await asyncio.get_running_loop().run_in_executor(None, self.hub.jpeg, name)
        if got is None:
            return _error(503, f"camera {name!r} has not delivered a frame yet")
        seq, data = got
        return web.Response(body=data, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store", "X-Frame-Seq": str(seq)})

    async def stream(self, request: web.Request) -> web.StreamResponse:
        name = self._camera_or_404(request)
        cap = float(self.config.stream_fps)
        try:
            fps = min(cap, float(request.query.get("fps", cap)))
        except ValueError:
            return _error(400, "fps must be a number")
        if fps <= 0:
            return _error(400, "fps must be > 0")
        headers = {"Content-Type": f"multipart/x-mixed-replace; boundary={_BOUNDARY}",
                   "Cache-Control": "no-store", "Pragma": "no-cache"}
        if request.method == "HEAD":  # headers only: no endless body
            return web.Response(headers=headers)
        resp = web.StreamResponse(headers=headers)
        await resp.prepare(request)
        loop = asyncio.get_running_loop()
        interval, last = 1.0 / fps, -1
        assert self._stopping is not None
        self.streams_open += 1
        try:
            while not self._stopping.is_set():
                t0 = time.monotonic()
                if self.hub.frame_seq(name) != last:
                    got = await loop.run_in_executor(None, self.hub.jpeg, name)
                    if got is not None:
                        last, data = got
                        await resp.write(
                            f"--{_BOUNDARY}\r\nContent-Type: image/jpeg\r\nContent-Length: {len(data)}"
                            f"\r\n\r\n".encode() + data + b"\r\n")
                # the per-client frame-rate cap: at most one frame per interval
                try:
                    await asyncio.wait_for(self._stopping.wait(),
                                           max(0.005, interval - (time.monotonic() - t0)))
                except asyncio.TimeoutError:
                    pass
        except (ConnectionResetError, asyncio.CancelledError):
            pass  # the client went away
        finally:
            self.streams_open -= 1
        return resp

    async def events(self, request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
            limit = max(1, min(1000, int(request.query.get("limit", "200"))))
        except ValueError:
            return _error(400, "since and limit must be integers (since = the 'next' of the last answer)")
        events, nxt = self.hub.events_since(since, limit)
        return _json({"events": events, "next": nxt})

    async def people(self, request: web.Request) -> web.Response:
        people = self.hub.people_status()
        from ..errors import LiveFacesError

        strangers: list[dict[str, Any]] = []
        if self.list_strangers is not None:
            try:
                strangers = await asyncio.get_running_loop().run_in_executor(None, self.list_strangers)
            except LiveFacesError as e:  # a damaged store: said, not a 500 with a traceback
                return _error(500, str(e))
        return _json({"enabled": people is not None, "people": people or [],
                      "unknown": self.hub.unknown_faces(), "strangers": strangers})

    async def unknown_jpeg(self, request: web.Request) -> web.Response:
        from .hub import encode_jpeg

        crop = self.hub.unknown_crop(request.match_info["id"])
        if crop is None:
            return _error(404, "no such unknown face (only the most recent are kept)")
        data = await asyncio.get_running_loop().run_in_executor(
            None, encode_jpeg, crop, self.hub.jpeg_quality)
        return web.Response(body=data, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})

    async def name_unknown(self, request: web.Request) -> web.Response:
        """Enrol a kept unknown face under a name (JSON body ``{"name": ...}``)."""
        from ..errors import LiveFacesError

        if self.name_face is None:
            return _error(404, "identification is off (no 'people:' in the configuration)")
        if request.content_type != "application/json":
            return _error(415, "send JSON: {\"name\": \"...\"}")
        try:  # bounded: a body sent a byte a minute must not hold a connection for ever
            body = await asyncio.wait_for(request.json(), self.config.idle_timeout)
        except asyncio.TimeoutError:
            return _error(408, "the request body did not arrive in time")
        except ValueError:
            return _error(400, "the body is not JSON")
        name = body.get("name") if isinstance(body, dict) else None
        if not isinstance(name, str) or not name.strip():
            return _error(400, "give the person's name: {\"name\": \"...\"}")
        face_id = request.match_info["id"]
        try:
            people = await asyncio.get_running_loop().run_in_executor(
                None, self.name_face, face_id, name.strip())
        except KeyError:
            return _error(404, "no such unknown face (only the most recent are kept)")
        except LiveFacesError as e:
            return _error(400, str(e))
        log.info("unknown face %s added to the people folder as %s", redact(face_id),
                 redact(name.strip()))
        return _json({"name": name.strip(), "people": people})

    async def stranger_thumb(self, request: web.Request) -> web.Response:
        if self.stranger_jpeg is None:
            return _error(404, "strangers are off (people.strangers in the configuration)")
        data = await asyncio.get_running_loop().run_in_executor(
            None, self.stranger_jpeg, request.match_info["id"])
        if data is None:
            return _error(404, "no such stranger")
        return web.Response(body=data, content_type="image/jpeg",
                            headers={"Cache-Control": "no-store"})

    async def act_on_stranger(self, request: web.Request) -> web.Response:
        """``{"name": "ada"}`` (enrol the stranger's views as ada), ``{"action": "ignore"}``,
        ``{"action": "forget"}`` or ``{"action": "merge", "other": "stranger-9"}``."""
        from ..errors import LiveFacesError

        if self.stranger_action is None:
            return _error(404, "strangers are off (people.strangers in the configuration)")
        if request.content_type != "application/json":
            return _error(415, "send JSON: {\"name\": \"...\"} or {\"action\": \"ignore\"|\"forget\"}")
        try:
            body = await asyncio.wait_for(request.json(), self.config.idle_timeout)
        except asyncio.TimeoutError:
            return _error(408, "the request body did not arrive in time")
        except ValueError:
            return _error(400, "the body is not JSON")
        if not isinstance(body, dict):
            return _error(400, "send a JSON object")
        name = body.get("name")
        action = body.get("action", "name" if name is not None else None)
        if action not in ("name", "ignore", "forget", "merge"):
            return _error(400, "give {\"name\": \"...\"} or {\"action\": \"ignore\"|\"forget\"}"
                               " or {\"action\": \"merge\", \"other\": \"stranger-N\"}")
        if action == "merge":
            name = body.get("other")
            if not isinstance(name, str) or not name.strip():
                return _error(400, "give the stranger to merge in: {\"other\": \"stranger-N\"}")
        if action == "name" and (not isinstance(name, str) or not name.strip()):
            return _error(400, "give the person's name: {\"name\": \"...\"}")
        sid = request.match_info["id"]
        try:
            people = await asyncio.get_running_loop().run_in_executor(
                None, self.stranger_action, sid, action,
                name.strip() if isinstance(name, str) else None)
        except LiveFacesError as e:
            return _error(404 if "no such stranger" in str(e) else 400, str(e))
        log.info("stranger %s: %s", redact(sid), action)
        return _json({"id": sid, "action": action, "people": people})

    # ------------------------------------------------------------------ lifecycle

    def start(self, timeout: float = 10.0) -> WebServer:
        """Bind and serve on a background thread; raises OSError if the port is taken."""
        self._thread = threading.Thread(target=self._run, name="livefaces-web", daemon=True)
        self._thread.start()
        if not self._ready.wait(timeout):
            raise TimeoutError("the web server did not start in time")
        if self._startup_error is not None:
            raise self._startup_error
        return self

    @property
    def url(self) -> str:
        """A URL of the server from this machine (for a wildcard bind: its loopback)."""
        host = self.config.host
        shown = {"0.0.0.0": "127.0.0.1", "": "127.0.0.1", "::": "::1"}.get(host, host)
        return f"http://{'[' + shown + ']' if ':' in shown else shown}:{self.port}/"

    def where(self) -> str:
        """Where it listens, for the start-up line: the bound address; for all interfaces
        (``0.0.0.0``, ``::``) that, an address other machines may reach, and this machine's."""
        host, port = self.config.host, self.port
        if host not in ("0.0.0.0", "::", ""):
            return self.url
        bound = "[::]" if host == "::" else "0.0.0.0"
        lan = reachable_address()
        other = f"http://{'[' + lan + ']' if ':' in lan else lan}:{port}/" if lan else \
            f"http://THIS-MACHINES-ADDRESS:{port}/"
        return (f"http://{bound}:{port}/ (all interfaces: from another machine e.g. {other}, "
                f"from this one {self.url})")

    def _run(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(self._startup())
        except BaseException as e:  # port in use, bad address: reported by start()
            self._startup_error = e
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(self._cleanup())
            loop.close()

    async def _startup(self) -> None:
        self._stopping = asyncio.Event()
        loop = asyncio.get_running_loop()
        loop.set_exception_handler(self._loop_error)
        # keepalive_timeout: aiohttp closes a connection idle that long, also one that never
        # sent a complete request (silent or slow clients; "slowloris")
        self._runner = web.AppRunner(self.make_app(), access_log_class=_AccessLogger,
                                     access_log=log, handle_signals=False, shutdown_timeout=2.0,
                                     logger=_ServerLog(log), keepalive_timeout=self.config.idle_timeout)
        await self._runner.setup()
        http = self._runner.server
        assert http is not None

        def connection() -> asyncio.BaseProtocol:
            # at the cap, the oldest connection without a request in progress makes room (a
            # flood of silent clients cannot lock out /health or the page)
            open_now, cap = http.connections, self.connection_cap
            if len(open_now) >= cap:
                idle = [c for c in open_now if c not in self._busy]
                for c in idle[:len(open_now) - cap + 1]:
                    c.force_close()
                self._once("cap", "web: %d connections open (the cap: web.max_connections, at "
                           "most half the open-file limit): closing the oldest idle ones",
                           len(open_now))
            return http()

        self._backlog = accept_backlog(open_file_limit())
        self._server = await loop.create_server(connection, self.config.host or None, self.config.port,
                                                reuse_address=True, backlog=self._backlog)
        socks: list[Any] = list(getattr(self._server, "sockets", None) or [])
        self.port = socks[0].getsockname()[1] if socks else self.config.port

    def _loop_error(self, loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
        """The event loop's error handler: ``accept()`` out of file descriptors (asyncio logs
        that with a traceback per attempt, thousands a second) is one warning a minute."""
        exc = context.get("exception")
        if isinstance(exc, OSError) and exc.errno in (errno.EMFILE, errno.ENFILE, errno.ENOBUFS,
                                                      errno.ENOMEM):
            self._once("accept", "web: cannot accept connections: %s (open-file limit %s); "
                       "lower web.max_connections or raise the limit (ulimit -n)",
                       os.strerror(exc.errno), open_file_limit())
            return
        loop.default_exception_handler(context)

    async def _cleanup(self) -> None:
        if self._server is not None:
            self._server.close()
        if self._runner is not None:
            await self._runner.cleanup()

    def stop(self, timeout: float = 5.0) -> None:
        """Close streams and the listening socket; returns within ``timeout`` seconds."""
        loop = self._loop
        if loop is None or self._thread is None or not loop.is_running():
            return
        def _stop() -> None:
            assert self._stopping is not None
            self._stopping.set()
            loop.stop()
        loop.call_soon_threadsafe(_stop)
        self._thread.join(timeout)
