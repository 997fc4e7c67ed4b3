"""create_app(settings): routes, middleware, exception handlers, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import uuid
from collections.abc import AsyncIterator

from sqlalchemy import text
from sqlalchemy.exc import DataError, DBAPIError, OperationalError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import JSONResponse, Response
from starlette.routing import Mount, Route
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway import statistics
from gateway.admin import routes as admin
from gateway.admin.pages import SecurityHeadersMiddleware, message_page
from gateway.admin.sign_in import sign_in_throttles
from gateway.auth import ScimAuthMiddleware
from gateway.credentials import CredentialCache, keep_listening
from gateway.db import create_engine
from gateway.fairness import TenantShares
from gateway.scim import bulk, discovery, errors, groups, root_search, users
from gateway.scim.openapi import openapi
from gateway.settings import Settings
from gateway.throttle import FailedAuthThrottle

log = logging.getLogger("simpleams.gateway")

# Admin page paths (gateway/admin): errors there are pages, whatever the Accept header.
ADMIN_PATHS = frozenset({"/", "/login", "/logout", "/staff", "/activity"})
ADMIN_PREFIXES = ("/staff/", "/activity/", "/settings/", "/static/")
_REQUEST_ID_RE = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")


class RequestIdMiddleware:
    """Give every request an id (the client's X-Request-Id if sane), echo it, log with it."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        offered = dict(scope["headers"]).get(b"x-request-id", b"").decode("latin-1")
        request_id = offered if _REQUEST_ID_RE.match(offered) else uuid.uuid4().hex
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_with_id(message: Message) -> None:
            if message["type"] == "http.response.start":
                message.setdefault("headers", []).append((b"x-request-id", request_id.encode()))
            await send(message)

        await self.app(scope, receive, send_with_id)


async def _scim_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, errors.ScimError):  # registered for ScimError only
        return await _server_error(request, exc)
    return exc.to_response()


def _for_a_browser(request: Request) -> bool:
    """An admin page, or a browser that strayed: answer HTML. Anything else outside
    /scim/v2 is most likely an IdP with a wrong base URL, and gets a SCIM error
    that says where the endpoint is."""
    path = request.url.path
    return not path.startswith("/scim/") and (
        "text/html" in request.headers.get("accept", "")
        or path in ADMIN_PATHS
        or path.startswith(ADMIN_PREFIXES)
    )


async def _http_error(request: Request, exc: Exception) -> Response:
    if not isinstance(exc, HTTPException):  # registered for HTTPException only
        return await _server_error(request, exc)
    if _for_a_browser(request):
        if exc.status_code == 404:
            return message_page(request, 404, "Page not found", "There is no page here.")
        return message_page(request, exc.status_code, "Request refused", str(exc.detail))
    if exc.status_code == 404:
        return errors.NotFound(
            f"There is no SCIM endpoint at {request.url.path}; the base URL ends in /scim/v2."
        ).to_response()
    if exc.status_code == 405:
        error = errors.MethodNotAllowed(f"{request.method} is not supported on {request.url.path}.")
        return errors.error_response(error.to_body(), 405, dict(exc.headers or {}))
    return errors.error_response(
        {"schemas": [errors.ERROR_SCHEMA], "status": str(exc.status_code), "detail": exc.detail},
        exc.status_code,
    )


# SQLSTATE classes that mean "try again shortly": connection exceptions,
# insufficient resources, operator intervention (restart, a statement
# timeout), and transaction rollback (PostgreSQL chose this write as a
# deadlock's victim, or a serialization conflict's: running it again
# succeeds). The IdP retries a 503 with Retry-After.
_UNAVAILABLE = ("08", "40", "53", "57")
# Data exceptions and program limits (a value too long to index): the
# client's data, so a 400.
_REFUSED_DATA = ("22", "54")


async def _database_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "-")
    sqlstate = str(getattr(getattr(exc, "orig", None), "sqlstate", None) or "")
    unavailable = (
        isinstance(exc, PoolTimeoutError)
        or getattr(exc, "connection_invalidated", False)
        or sqlstate[:2] in _UNAVAILABLE
        or (isinstance(exc, OperationalError) and not sqlstate)
    )
    if unavailable:
        log.warning("database unavailable request_id=%s sqlstate=%s", request_id, sqlstate or "-")
        if _for_a_browser(request):
            response = message_page(
                request, 503, "Temporarily unavailable", "Try again in a few seconds."
            )
            response.headers["Retry-After"] = "5"
            return response
        return errors.ServiceUnavailable(headers={"Retry-After": "5"}).to_response()
    if sqlstate[:2] in _REFUSED_DATA or isinstance(exc, DataError):
        # PostgreSQL refused a value our validation let through.
        log.warning("database refused a value request_id=%s sqlstate=%s", request_id, sqlstate)
        if _for_a_browser(request):
            return message_page(
                request,
                400,
                "Request refused",
                "Something in this request cannot be stored or searched (such as a NUL "
                "character); correct it and try again.",
            )
        return errors.InvalidValue(
            "A value in this request cannot be stored by SimpleAMS (too long, or containing "
            "characters it cannot store); shorten or correct it."
        ).to_response()
    return await _server_error(request, exc)


async def _server_error(request: Request, exc: Exception) -> Response:
    request_id = getattr(request.state, "request_id", "-")
    log.error("unhandled error request_id=%s", request_id, exc_info=exc)
    if _for_a_browser(request):
        response = message_page(
            request,
            500,
            "Something went wrong",
            f"SimpleAMS could not show this page; quote request id {request_id} to support.",
        )
        response.headers["X-Request-Id"] = request_id
        return response
    body = {
        "schemas": [errors.ERROR_SCHEMA],
        "status": "500",
        "detail": f"Internal error; quote request id {request_id} to SimpleAMS support.",
    }
    # ServerErrorMiddleware sits outside RequestIdMiddleware, so echo the id here.
    return errors.error_response(body, 500, {"X-Request-Id": request_id})


async def healthz(request: Request) -> Response:
    """Liveness and database reachability for load balancers and docker-compose."""
    try:
        async with request.app.state.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))
    except (OperationalError, PoolTimeoutError, OSError):
        return JSONResponse({"status": "unavailable", "database": "down"}, status_code=503)
    return JSONResponse({"status": "ok"})


def create_app(settings: Settings | None = None) -> Starlette:
    """Build the gateway.

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
    scim_routes = users.routes + groups.routes + root_search.routes + bulk.routes + discovery.routes
    app = Starlette(
        routes=[
            Route("/healthz", healthz),
            # Public, like the RFC 7643 schemas it summarises; no tenant data.
            Route("/scim/v2/openapi.json", openapi),
            Mount(
                "/scim/v2",
                routes=scim_routes,
                middleware=[
                    Middleware(
                        ScimAuthMiddleware,
                        engine=engine,
                        settings=settings,
                        throttle=throttle,
                        shares=shares,
                        credentials=credentials,
                    )
                ],
            ),
            *admin.routes(),
        ],
        middleware=[Middleware(RequestIdMiddleware), Middleware(SecurityHeadersMiddleware)],
        exception_handlers={
            errors.ScimError: _scim_error,
            HTTPException: _http_error,
            DBAPIError: _database_error,
            PoolTimeoutError: _database_error,
            Exception: _server_error,
        },
        lifespan=lifespan,
    )
    app.state.settings = settings
    app.state.engine = engine
    app.state.auth_throttle = throttle
    app.state.tenant_shares = shares
    app.state.credentials = credentials
    app.state.sign_in_throttles = sign_in_throttles(settings)
    return app


def app_from_env() -> Starlette:
    """Entry point for uvicorn's --factory."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    return create_app()
