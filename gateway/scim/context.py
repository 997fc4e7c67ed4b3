"""The request context of a SCIM call: who is asking, for which tenant, and
where its resources live.

``principal`` is set by the authentication middleware (gateway/auth.py);
``actor`` is what every provisioning event records of the caller
(models.outbox.Actor); ``base_url`` is the tenant's endpoint that
``meta.location`` and Location headers name. Endpoints read these here and
nowhere else.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.requests import Request

from gateway.settings import Settings
from gateway.tenancy import request_host
from models.outbox import Actor
from models.tenant_addresses import scim_endpoint_at


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, and which credential (for the audit trail)."""

    tenant_id: uuid.UUID
    tenant_slug: str
    credential_id: uuid.UUID


def engine(request: Request) -> AsyncEngine:
    found: AsyncEngine = request.app.state.engine
    return found


def principal(request: Request) -> Principal:
    found: Principal = request.state.principal
    return found


def base_url(request: Request) -> str:
    """The /scim/v2 URL for meta.location and Location headers.

    The tenant's canonical endpoint (models/tenant_addresses.py), never a
    reflected Host header, unless the client came straight to
    localhost or an IP address (a developer, a health check through a load
    balancer's IP), where the canonical name may not resolve: then the host
    as gateway/tenancy.py parsed it, rebuilt from its parts. The scheme comes
    from uvicorn, which honours X-Forwarded-Proto only from trusted proxies.
    """
    settings: Settings = request.app.state.settings
    host = request_host(request.scope["headers"])
    if host is not None and host.local:
        scheme = "https" if request.scope.get("scheme") == "https" else "http"
        return scim_endpoint_at(scheme, host.netloc)
    return settings.addresses.scim_endpoint(principal(request).tenant_slug)


def idp_of(user_agent: str | None) -> str:
    """Name the IdP from its User-Agent, for the audit trail and the staff list's source."""
    agent = (user_agent or "").lower()
    if "okta" in agent:
        return "okta"
    if any(mark in agent for mark in ("microsoft", "azure", "aad", "entra")):
        return "entra"
    return "scim"


def actor(request: Request) -> Actor:
    who = principal(request)
    user_agent = request.headers.get("user-agent")
    return Actor(
        tenant_id=who.tenant_id,
        credential_id=who.credential_id,
        idp=idp_of(user_agent),
        user_agent=user_agent[:512] if user_agent else None,
        request_id=request.state.request_id,
    )
