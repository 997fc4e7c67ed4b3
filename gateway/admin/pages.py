"""What every admin page shares: templates, the sign-in gate, CSRF, security headers."""

from __future__ import annotations

import functools
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

from starlette.datastructures import FormData
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.templating import Jinja2Templates
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.admin import sessions
from gateway.admin.sessions import AdminContext

HERE = Path(__file__).parent
templates = Jinja2Templates(directory=HERE / "templates")

AdminEndpoint = Callable[[Request, AdminContext], Awaitable[Response]]


def _when(value: datetime | None) -> str:
    if value is None:
        return "never"
    return value.astimezone(UTC).strftime("%d %b %Y, %H:%M UTC")


def _ago(value: datetime | None) -> str:
    if value is None:
        return "never"
    seconds = int((datetime.now(UTC) - value).total_seconds())
    if seconds < 60:
        return "just now"
    for size, unit in ((86400, "day"), (3600, "hour"), (60, "minute")):
        if seconds >= size:
            count = seconds // size
            return f"{count} {unit}{'s' if count != 1 else ''} ago"
    return "just now"


def _minute(value: datetime) -> str:
    return value.astimezone(UTC).strftime("%H:%M")


def _number(value: int) -> str:
    return f"{value:,}"


templates.env.filters["when"] = _when
templates.env.filters["minute"] = _minute
templates.env.filters["ago"] = _ago
templates.env.filters["number"] = _number


def render(
    request: Request,
    name: str,
    context: dict[str, Any],
    status_code: int = 200,
    admin: AdminContext | None = None,
) -> Response:
    response = templates.TemplateResponse(
        request, name, {"admin": admin, **context}, status_code=status_code
    )
    if admin is not None:
        # Tenant data: never kept by the browser's or a proxy's cache.
        response.headers["Cache-Control"] = "no-store"
    return response


def message_page(
    request: Request, status_code: int, title: str, detail: str, admin: AdminContext | None = None
) -> Response:
    return render(
        request,
        "message.html",
        {"title": title, "detail": detail},
        status_code=status_code,
        admin=admin,
    )


async def read_form(request: Request) -> FormData:
    # Our forms have a handful of short fields and no uploads.
    return await request.form(max_files=0, max_fields=20, max_part_size=64 * 1024)


def admin_page(endpoint: AdminEndpoint) -> Callable[[Request], Awaitable[Response]]:
    """Only for a signed-in admin; a POST must also carry the session's CSRF token.

    Signed-out visitors are sent to /login and come back here afterwards.
    """

    @functools.wraps(endpoint)
    async def gate(request: Request) -> Response:
        admin = await sessions.current(request)
        if admin is None:
            if request.method != "GET":
                return message_page(
                    request,
                    401,
                    "Signed out",
                    "Your session has ended. Sign in again, then repeat what you were doing.",
                )
            target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
            return RedirectResponse(f"/login?next={quote(target, safe='')}", status_code=303)
        if request.method == "POST":
            form = await read_form(request)
            if not sessions.same_origin(request) or not sessions.tokens_match(
                form.get("csrf_token"), admin.csrf_token
            ):
                return message_page(
                    request,
                    403,
                    "Form refused",
                    "This form was not sent from this SimpleAMS page, or it has expired. "
                    "Reload the page and try again.",
                    admin=admin,
                )
        return await endpoint(request, admin)

    return gate


# Admin pages use no inline script or style and are never framed.
_SECURITY_HEADERS = [
    (
        b"content-security-policy",
        b"default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        b"connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    ),
    (b"x-frame-options", b"DENY"),
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"same-origin"),
    (b"permissions-policy", b"camera=(), microphone=(), geolocation=()"),
    (b"cross-origin-opener-policy", b"same-origin"),
]
_HSTS = (b"strict-transport-security", b"max-age=31536000; includeSubDomains")


class SecurityHeadersMiddleware:
    """Browser-facing security headers on every response of the app it wraps
    (gateway/app.py: everything but the SCIM API)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = message.setdefault("headers", [])
                present = {name.lower() for name, _ in headers}
                for name, value in _SECURITY_HEADERS + ([_HSTS] if https else []):
                    if name not in present:
                        headers.append((name, value))
            await send(message)

        await self.app(scope, receive, send_with_headers)
