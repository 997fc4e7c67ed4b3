"""The SCIM API: the Starlette app gateway/app.py mounts at /scim/v2.

Every failure in it is answered as RFC 7644 §3.12 JSON
(application/scim+json), whatever the client's Accept header says.
Everything but the OpenAPI description needs the SCIM bearer token
(gateway/auth.py), and resource paths match case-insensitively
(gateway/scim/paths.py).
"""

from __future__ import annotations

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Mount, Route

from gateway.failures import Answers, exception_handlers
from gateway.scim import bulk, discovery, errors, root_search
from gateway.scim.endpoints import RESOURCE_ENDPOINTS
from gateway.scim.openapi import openapi
from gateway.scim.paths import CanonicalPaths, ResourceNames

RESOURCE_ROUTES = [
    *(route for endpoints in RESOURCE_ENDPOINTS for route in endpoints.routes()),
    *root_search.routes,
    *bulk.routes,
    *discovery.routes,
]


class ScimAnswers:
    """RFC 7644 §3.12 error bodies."""

    def error(self, request: Request, exc: errors.ScimError) -> Response:
        return exc.to_response()

    def http_error(self, request: Request, exc: HTTPException) -> Response:
        if exc.status_code == 404:
            return errors.NotFound(
                f"There is no SCIM endpoint at {request.url.path}; the base URL ends in /scim/v2."
            ).to_response()
        if exc.status_code == 405:
            error = errors.MethodNotAllowed(
                f"{request.method} is not supported on {request.url.path}."
            )
            return errors.error_response(error.to_body(), 405, dict(exc.headers or {}))
        body = {"schemas": [errors.ERROR_SCHEMA], "status": str(exc.status_code)}
        return errors.error_response({**body, "detail": exc.detail}, exc.status_code)

    def unavailable(self, request: Request) -> Response:
        return errors.ServiceUnavailable(headers={"Retry-After": "5"}).to_response()

    def refused_value(self, request: Request) -> Response:
        return errors.InvalidValue(
            "A value in this request cannot be stored by SimpleAMS (too long, or containing "
            "characters it cannot store); shorten or correct it."
        ).to_response()

    def server_error(self, request: Request, request_id: str) -> Response:
        body = {
            "schemas": [errors.ERROR_SCHEMA],
            "status": "500",
            "detail": f"Internal error; quote request id {request_id} to SimpleAMS support.",
        }
        return errors.error_response(body, 500)


SCIM_ANSWERS = ScimAnswers()


def scim_answers(request: Request) -> Answers:
    return SCIM_ANSWERS


def create_api(auth: Middleware) -> Starlette:
    """The SCIM API; ``auth`` authenticates every request but the OpenAPI description's."""
    return Starlette(
        routes=[
            # Public, like the RFC 7643 schemas it summarises; no tenant data.
            Route("/openapi.json", openapi),
            Mount("", routes=RESOURCE_ROUTES, middleware=[auth]),
        ],
        middleware=[Middleware(CanonicalPaths, names=ResourceNames(RESOURCE_ROUTES))],
        exception_handlers=exception_handlers(scim_answers),
    )
