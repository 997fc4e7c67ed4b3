"""What a failure becomes: classified, logged and answered once, in the failing app's format.

The gateway is made of Starlette apps (gateway/app.py): the SCIM API mounted
at /scim/v2 answers RFC 7644 §3.12 JSON (gateway/scim/api.py), the admin
pages answer HTML pages, and the gateway itself answers a path neither
serves in whichever the client reads. Each says how its answers look
(``Answers``); ``exception_handlers`` does the rest the same way for all:
which database failure it is (gateway/db.py), and the log line.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any, Protocol

from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from starlette.exceptions import HTTPException
from starlette.requests import ClientDisconnect, Request
from starlette.responses import Response
from starlette.types import ExceptionHandler

from gateway.db import classify, sqlstate
from gateway.scim import errors
from gateway.tenancy import MalformedHost

log = logging.getLogger("simpleams.gateway")


class Answers(Protocol):
    """How one app answers each kind of failure."""

    def error(self, request: Request, exc: errors.ScimError) -> Response:
        """A SCIM error no endpoint turned into a response (a body that came too late)."""

    def http_error(self, request: Request, exc: HTTPException) -> Response:
        """No route for the path (404), or not for the method (405)."""

    def unavailable(self, request: Request) -> Response:
        """The database is away or rolled the write back: a 503 to retry."""

    def refused_value(self, request: Request) -> Response:
        """PostgreSQL refused a value of the request: a 400."""

    def server_error(self, request: Request, request_id: str) -> Response:
        """Anything else: a 500 naming the request id, without internals."""


def exception_handlers(answers: Callable[[Request], Answers]) -> dict[Any, ExceptionHandler]:
    """An app's exception handlers; ``answers`` tells how to answer a request."""

    async def scim_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, errors.ScimError):  # registered for ScimError only
            return await server_error(request, exc)
        return answers(request).error(request, exc)

    async def malformed_host(request: Request, exc: Exception) -> Response:
        # HostMiddleware refuses these first; this is for a reader it did not foresee.
        return errors.ScimError(str(exc)).to_response()

    async def http_error(request: Request, exc: Exception) -> Response:
        if not isinstance(exc, HTTPException):  # registered for HTTPException only
            return await server_error(request, exc)
        return answers(request).http_error(request, exc)

    async def database_error(request: Request, exc: Exception) -> Response:
        request_id = _request_id(request)
        failure, state = classify(exc), sqlstate(exc)
        if failure == "unavailable":
            log.warning("database unavailable request_id=%s sqlstate=%s", request_id, state or "-")
            return answers(request).unavailable(request)
        if failure == "refused":
            # PostgreSQL refused a value our validation let through.
            log.warning("database refused a value request_id=%s sqlstate=%s", request_id, state)
            return answers(request).refused_value(request)
        return await server_error(request, exc)

    async def server_error(request: Request, exc: Exception) -> Response:
        if isinstance(exc, ClientDisconnect):
            # Nobody is left to answer: raised on, unanswered, to the access log
            # (gateway/app.py), which writes it as one quiet line.
            raise exc
        request_id = _request_id(request)
        log.error("unhandled error request_id=%s", request_id, exc_info=exc)
        # Starlette raises the failure on to the app this one is mounted in:
        # that app must neither answer nor log it again.
        request.state.failure_answered = True
        return answers(request).server_error(request, request_id)

    return {
        errors.ScimError: scim_error,
        MalformedHost: malformed_host,
        HTTPException: http_error,
        DBAPIError: database_error,
        PoolTimeoutError: database_error,
        Exception: server_error,
    }


def last_resort(answers: Callable[[Request], Answers]) -> ExceptionHandler:
    """The outermost app's 500: for a failure no mounted app answered (one in
    the outermost middleware), and silent for one a mounted app did answer."""

    async def unanswered(request: Request, exc: Exception) -> Response:
        if getattr(request.state, "failure_answered", False):
            return Response(status_code=500)  # never sent: the mounted app's answer went out
        request_id = _request_id(request)
        log.error("unhandled error request_id=%s", request_id, exc_info=exc)
        response = answers(request).server_error(request, request_id)
        # ServerErrorMiddleware sits outside RequestIdMiddleware, so echo the id here.
        response.headers["X-Request-Id"] = request_id
        return response

    return unanswered


def _request_id(request: Request) -> str:
    return str(getattr(request.state, "request_id", "-"))
