"""create_app(settings): the apps it is made of, middleware, exception handlers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import time
import uuid
from collections.abc import AsyncIterator
from urllib.parse import quote

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.routing import BaseRoute, Match, Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import statistics
from gateway.admin import passwords
from gateway.admin import routes as admin
from gateway.admin.pages import SecurityHeadersMiddleware, message_page
from gateway.admin.sign_in import sign_in_throttles
from gateway.auth import ScimAuthMiddleware
from gateway.credentials import CredentialCache, keep_listening
from gateway.db import create_engine
from gateway.failures import Answers, exception_handlers, last_resort
from gateway.fairness import TenantShares
from gateway.health import healthz, readyz
from gateway.scim import errors
from gateway.scim.api import SCIM_ANSWERS, create_api
from gateway.scim.paths import route_path
from gateway.settings import Settings
from gateway.tenancy import MalformedHost, request_host
from gateway.throttle import FailedAuthThrottle
from gateway.tokens import TOKEN_PREFIX
from observability import logs

access_log = logging.getLogger("simpleams.gateway.access")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id (the client's X-Request-Id if sane), echo it, and
    put it in the request's log context (AccessLogMiddleware opens it)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID_RE.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id
        logs.bind(request_id=request_id)

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


class AccessLogMiddleware:
    """One log line per request: client, method, route, status, duration; and the
    request's log context (observability/logs.py), which every line logged
    while it is handled carries: its id, its tenant once authenticated, its route.

    The route template (``/scim/v2/Users/{id}``) stands for the path when a
    route took the request (``name_routes``); the path itself only when none
    did (a 404, a request refused before routing), and then never its query
    string: SCIM filters carry personal data (``userName eq "..."``) and a
    misconfigured client may put its token there. uvicorn's own access log,
    which writes it, is off (``app_from_env``). The line is written before
    the last byte of the response goes out, with ``status`` and
    ``duration_ms`` as fields of their own. A client that leaves before
    sending its whole body is this one quiet line too, not an error with
    tracebacks.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        started = time.perf_counter()
        status: int | None = None
        logged = False

        def write(outcome: str, answered: int | None) -> None:
            nonlocal logged
            if logged:
                return
            logged = True
            duration_ms = (time.perf_counter() - started) * 1000
            access_log.info(
                '%s "%s %s" %s %.0fms',
                _client_of(scope),
                scope["method"],
                logs.current().get("route") or _logged_path(scope),
                outcome,
                duration_ms,
                extra={"status": answered, "duration_ms": round(duration_ms, 1)},
            )

        async def send_logged(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body" and not message.get("more_body", False):
                write(str(status), status)
            await send(message)

        with logs.context():
            try:
                await self.app(scope, receive, send_logged)
            except ClientDisconnect:
                # Nobody is left to answer; uvicorn says nothing for a gone client.
                write("- client disconnected before sending its whole body", None)
                return
            except Exception:
                answered = 500 if status is None else status  # ServerErrorMiddleware answers
                write(str(answered), answered)
                raise
            write("-" if status is None else str(status), status)


_TOKEN_SHAPED = re.compile(re.escape(TOKEN_PREFIX) + "[0-9A-Za-z]*")
_PATH_SAFE = "/!$&'()*+,;=:@-._~%"
_MAX_LOGGED_PATH = 512


def _logged_path(scope: Scope) -> str:
    """The path without its query, percent-encoded and bounded, any token cut out."""
    raw = scope.get("raw_path")
    path = raw.decode("latin-1") if isinstance(raw, bytes) else str(scope.get("path", ""))
    path = _TOKEN_SHAPED.sub(TOKEN_PREFIX + "...", path.partition("?")[0])
    shown = quote(path[:_MAX_LOGGED_PATH], safe=_PATH_SAFE)
    return shown + ("..." if len(path) > _MAX_LOGGED_PATH else "")


class _RouteNamed:
    """A route's application, which first puts the route's template in the log context."""

    def __init__(self, app: ASGIApp, template: str) -> None:
        self.app = app
        self.template = template  # below the mount points, which scope["root_path"] holds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        logs.bind(route=scope.get("root_path", "") + self.template)
        await self.app(scope, receive, send)


def name_routes(routes: list[BaseRoute]) -> None:
    """Make each route below ``routes`` name its template (``/Users/{id}``, a mounted
    directory's ``/static/{path}``) in the log context of a request it takes.

    Routing has then happened: a request refused before it (a bad token) or
    that no route takes has no route. Idempotent: the routes of the admin
    pages and the SCIM API are module-level objects, and every app made of
    them (each test's) names them the same way.
    """
    for route in routes:
        if isinstance(route, Mount) and route.routes:
            name_routes(route.routes)
        elif isinstance(route, Route | Mount) and not isinstance(route.app, _RouteNamed):
            template = "/{path}" if isinstance(route, Mount) else route.path_format
            route.app = _RouteNamed(route.app, template)


def _client_of(scope: Scope) -> str:
    # uvicorn --proxy-headers puts the forwarded client here, from trusted proxies only.
    client = scope.get("client")
    return str(client[0]) if client else "-"


class HostMiddleware:
    """400 for a malformed Host header, before anything reads one (gateway/tenancy.py).

    gateway/auth.py checks again for itself: the host binding of tokens must
    not depend on this middleware being in place.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            try:
                request_host(scope["headers"])
            except MalformedHost as exc:
                refusal = errors.ScimError(str(exc), headers={"Connection": "close"})
                await refusal.to_response()(scope, receive, send)
                return
        await self.app(scope, receive, send)


class BodyDeadlineMiddleware:
    """A request body must arrive within ``seconds`` of the application first asking for it.

    Otherwise reading it raises errors.RequestTimeout (408, and the connection is
    closed): a client that promises a body and stalls holds nothing for
    long. gateway/auth.py reads a SCIM request's body before it takes a
    fairness place, so the wait never holds one either. 0 means no limit.
    """

    def __init__(self, app: ASGIApp, seconds: float) -> None:
        self.app = app
        self.seconds = seconds

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or self.seconds <= 0:
            await self.app(scope, receive, send)
            return
        seconds = self.seconds
        deadline: float | None = None
        complete = False

        async def receive_in_time() -> Message:
            nonlocal deadline, complete
            if complete:  # listening for a disconnect, not reading the body
                return await receive()
            if deadline is None:
                deadline = asyncio.get_running_loop().time() + seconds
            try:
                async with asyncio.timeout_at(deadline):
                    message = await receive()
            except TimeoutError:
                raise errors.RequestTimeout(
                    f"The request body did not arrive within {seconds:g} seconds; "
                    "send the request again.",
                    headers={"Connection": "close"},
                ) from None
            if message["type"] != "http.request" or not message.get("more_body", False):
                complete = True
            return message

        await self.app(scope, receive_in_time, send)


class PageAnswers:
    """HTML pages, for the admin pages and for a browser that strayed."""

    def error(self, request: Request, exc: errors.ScimError) -> Response:
        if isinstance(exc, errors.RequestTimeout):
            page = message_page(request, 408, "Request timed out", exc.detail)
            page.headers["Connection"] = "close"
            return page
        return exc.to_response()

    def http_error(self, request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return message_page(request, 404, "Page not found", "There is no page here.")
        return message_page(request, exc.status_code, "Request refused", str(exc.detail))

    def unavailable(self, request: Request) -> Response:
        page = message_page(request, 503, "Temporarily unavailable", "Try again in a few seconds.")
        page.headers["Retry-After"] = "5"
        return page

    def refused_value(self, request: Request) -> Response:
        return message_page(
            request,
            400,
            "Request refused",
            "Something in this request cannot be stored or searched (such as a NUL "
            "character); correct it and try again.",
        )

    def server_error(self, request: Request, request_id: str) -> Response:
        return message_page(
            request,
            500,
            "Something went wrong",
            f"SimpleAMS could not show this page; quote request id {request_id} to support.",
        )


PAGE_ANSWERS = PageAnswers()


def page_answers(request: Request) -> Answers:
    return PAGE_ANSWERS


def answers_by_accept(request: Request) -> Answers:
    """Outside both apps: a browser that strayed gets a page. Anything else is most
    likely an IdP with a wrong base URL, and gets a SCIM error that says where the
    endpoint is."""
    return PAGE_ANSWERS if "text/html" in request.headers.get("accept", "") else SCIM_ANSWERS


class Namespace(Mount):
    """``app`` mounted at the root, for the paths whose first segment starts one of its
    routes: the admin pages refuse /staff/x/y themselves (a page), but /nowhere is
    nobody's."""

    def __init__(self, app: Starlette) -> None:
        super().__init__("", app=app)
        self.first_segments = frozenset(
            route.path.split("/")[1] for route in app.routes if isinstance(route, Route | Mount)
        )

    def matches(self, scope: Scope) -> tuple[Match, Scope]:
        if scope["type"] != "http" or route_path(scope).split("/")[1] not in self.first_segments:
            return Match.NONE, {}
        return super().matches(scope)


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the gateway: the SCIM API (gateway/scim/api.py) mounted at /scim/v2, the
    admin pages, and /healthz and /readyz (gateway/health.py) with every path
    neither serves, each a Starlette app with its own exception handlers
    (gateway/failures.py), in the app that holds the middleware every request
    passes.

    :param settings: configuration; read from the environment when omitted.
    """
    settings = settings or Settings.from_env()
    engine = create_engine(settings)

    @contextlib.asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        tasks = []
        if settings.analyze:
            tasks.append(asyncio.create_task(statistics.keep_fresh(engine)))
        if settings.credential_cache:
            tasks.append(asyncio.create_task(keep_listening(credentials, settings.database_url)))
        yield
        for task in tasks:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await engine.dispose()

    throttle = FailedAuthThrottle(limit=settings.auth_failures_per_minute)
    shares = TenantShares(settings.scim_requests_in_progress)
    credentials = CredentialCache()
    api = create_api(
        Middleware(
            ScimAuthMiddleware,
            engine=engine,
            settings=settings,
            throttle=throttle,
            shares=shares,
            credentials=credentials,
        )
    )
    pages = Starlette(
        routes=admin.routes(),
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers=exception_handlers(page_answers),
    )
    # Any other path: /healthz, /readyz, and an answer for a path nobody serves.
    elsewhere = Starlette(
        routes=[Route("/healthz", healthz), Route("/readyz", readyz)],
        middleware=[Middleware(SecurityHeadersMiddleware)],
        exception_handlers=exception_handlers(answers_by_accept),
    )
    app = Starlette(
        routes=[Mount("/scim/v2", app=api), Namespace(pages)],
        middleware=[
            Middleware(AccessLogMiddleware),
            Middleware(RequestIdMiddleware),
            Middleware(HostMiddleware),
            Middleware(BodyDeadlineMiddleware, seconds=settings.body_read_timeout_seconds),
        ],
        exception_handlers={Exception: last_resort(answers_by_accept)},
        lifespan=lifespan,
    )
    # Not a catch-all route: a path that matches nothing is first redirected to
    # its other spelling (/scim/v2 -> /scim/v2/) if that one matches.
    app.router.default = elsewhere
    name_routes([*app.routes, *elsewhere.routes])
    for part in (api, pages, elsewhere):
        part.state = app.state  # request.app is the mounted app
    app.state.settings = settings
    app.state.engine = engine
    app.state.auth_throttle = throttle
    app.state.tenant_shares = shares
    app.state.credentials = credentials
    app.state.sign_in_throttles = sign_in_throttles(settings)
    app.state.password_hashing = passwords.HashingLimit(
        settings.password_hashes_at_once, settings.password_hashes_waiting
    )
    return app


def app_from_env() -> Starlette:
    """Entry point for uvicorn's --factory."""
    logs.configure()  # uvicorn's own lines too, in SIMPLEAMS_LOG_FORMAT
    # uvicorn's access log writes every URL with its query string (SCIM
    # filters, a token a client put there); AccessLogMiddleware logs each
    # request without it. uvicorn configures logging before it calls this
    # factory, and each connection checks uvicorn.access for handlers when
    # it opens, so this holds with or without --no-access-log.
    uvicorn_access = logging.getLogger("uvicorn.access")
    uvicorn_access.handlers.clear()
    uvicorn_access.propagate = False
    uvicorn_access.disabled = True
    return create_app()
