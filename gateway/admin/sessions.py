"""Admin sessions: the cookie, the row behind it, and CSRF.

The cookie holds a random 256-bit token; ``admin_sessions`` keeps its
SHA-256, so a database reader cannot sign in as anyone, and signing out
deletes the row. The cookie is HttpOnly and SameSite=Lax, and Secure (with
the ``__Host-`` prefix, which pins it to this host) whenever the page is
served over HTTPS.

CSRF: every form of a session carries the session's synchronizer token; the
sign-in form, before there is a session, uses a double-submit cookie. A POST
whose Origin header names another site is refused as well.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass
from datetime import timedelta

from sqlalchemy import delete, func, insert, select, update
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from gateway.db import reading, writing
from gateway.settings import Settings
from gateway.tenancy import request_host
from models.admins import Admin, AdminSession
from models.tenants import Tenant
from observability import logs

LOGIN_CSRF_COOKIE = "sams_login_csrf"


@dataclass(frozen=True)
class AdminContext:
    """The signed-in admin of this request, and their tenant."""

    session_id: uuid.UUID
    admin_id: uuid.UUID
    email: str
    tenant_id: uuid.UUID
    tenant_slug: str
    tenant_name: str
    csrf_token: str


def session_cookie_name(request: Request) -> str:
    return "__Host-sams_session" if request.url.scheme == "https" else "sams_session"


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()


async def start(
    conn: AsyncConnection, admin_id: uuid.UUID, tenant_id: uuid.UUID, settings: Settings
) -> str:
    """A new session for a just-verified admin; returns the cookie value."""
    token = secrets.token_urlsafe(32)
    await conn.execute(
        insert(AdminSession).values(
            admin_id=admin_id,
            tenant_id=tenant_id,
            token_hash=_digest(token),
            csrf_token=secrets.token_urlsafe(32),
            expires_at=func.now() + timedelta(hours=settings.admin_session_hours),
        )
    )
    await conn.execute(update(Admin).where(Admin.id == admin_id).values(last_sign_in_at=func.now()))
    return token


async def current(request: Request) -> AdminContext | None:
    """The admin signed in on this request, or None."""
    token = request.cookies.get(session_cookie_name(request))
    if not token or len(token) > 128:
        return None
    settings: Settings = request.app.state.settings
    async with reading(request.app.state.engine) as conn:
        row = (
            await conn.execute(
                select(
                    AdminSession.id,
                    AdminSession.token_hash,
                    AdminSession.csrf_token,
                    Admin.id.label("admin_id"),
                    Admin.email,
                    Tenant.id.label("tenant_id"),
                    Tenant.slug,
                    Tenant.name,
                )
                .join(Admin, Admin.id == AdminSession.admin_id)
                .join(Tenant, Tenant.id == AdminSession.tenant_id)
                .where(AdminSession.token_hash == _digest(token))
                .where(AdminSession.expires_at > func.now())
            )
        ).first()
    if row is None or not hmac.compare_digest(row.token_hash, _digest(token)):
        return None
    # On a tenant's own host, only that tenant's sessions count.
    if not settings.addresses.serves(request_host(request.scope["headers"]), row.slug):
        return None
    logs.bind(tenant=row.slug)
    return AdminContext(
        session_id=row.id,
        admin_id=row.admin_id,
        email=row.email,
        tenant_id=row.tenant_id,
        tenant_slug=row.slug,
        tenant_name=row.name,
        csrf_token=row.csrf_token,
    )


async def end(request: Request, admin: AdminContext) -> None:
    async with writing(request.app.state.engine) as conn:
        await conn.execute(delete(AdminSession).where(AdminSession.id == admin.session_id))
        # Expired sessions of anyone in this tenant go too; nothing else cleans them.
        await conn.execute(
            delete(AdminSession).where(
                AdminSession.tenant_id == admin.tenant_id, AdminSession.expires_at <= func.now()
            )
        )


def set_session_cookie(response: Response, request: Request, token: str, hours: int) -> None:
    response.set_cookie(
        session_cookie_name(request),
        token,
        max_age=hours * 3600,
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )


def clear_session_cookie(response: Response, request: Request) -> None:
    response.delete_cookie(
        session_cookie_name(request),
        path="/",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="lax",
    )


def same_origin(request: Request) -> bool:
    """False when the browser says the form came from another site (Origin header)."""
    origin = request.headers.get("origin")
    if origin is None or origin == "null":
        # Old browsers and some privacy modes omit it; the CSRF token still protects.
        return origin is None
    host = request.headers.get("host", "")
    return origin.split("://", 1)[-1].lower() == host.lower()


def tokens_match(presented: object, expected: str | None) -> bool:
    return (
        isinstance(presented, str)
        and bool(expected)
        and hmac.compare_digest(presented.encode(), (expected or "").encode())
    )


def new_login_csrf() -> str:
    return secrets.token_urlsafe(24)


def set_login_csrf_cookie(response: Response, request: Request, value: str) -> None:
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        value,
        max_age=3600,
        path="/login",
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )
