"""Bearer token -> tenant, for everything under /scim/v2.

The token's format is gateway/tokens.py's. We store only SHA-256 of the
token, look the credential up by that hash, and compare with
``hmac.compare_digest``.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from dataclasses import dataclass

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.credentials import Credential, CredentialCache
from gateway.db import reading
from gateway.fairness import TenantShares
from gateway.scim import errors
from gateway.settings import Settings
from gateway.throttle import FailedAuthThrottle
from gateway.tokens import hash_token, is_well_formed
from models.tenants import Plan, ScimCredential, Tenant

log = logging.getLogger("simpleams.gateway.auth")

# last_used_at is written at most this often per credential and process:
# recording every request would add a write to every IdP call.
LAST_USED_RESOLUTION_SECONDS = 60.0


# Built once: every SCIM request runs it (store.py says why that matters).
_CREDENTIAL = (
    select(
        ScimCredential.id,
        ScimCredential.token_hash,
        Tenant.id.label("tenant_id"),
        Tenant.slug,
        Tenant.plan,
        Tenant.scim_enabled,
    )
    .join(Tenant, Tenant.id == ScimCredential.tenant_id)
    .where(ScimCredential.token_hash == bindparam("token_hash"))
    .where(ScimCredential.revoked_at.is_(None))
)


def _client_address(scope: Scope) -> str:
    # uvicorn --proxy-headers puts the forwarded client here, from trusted proxies only.
    client = scope.get("client")
    return str(client[0]) if client else "-"


def _presented_token(headers: dict[bytes, bytes]) -> str:
    """The bearer token of the request, checked for shape before any database work."""
    authorization = headers.get(b"authorization", b"").decode("latin-1")
    scheme, _, token = authorization.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise errors.Unauthorized()
    if not is_well_formed(token):
        raise errors.Unauthorized(
            "The bearer token is not a SimpleAMS SCIM token. Copy it again from "
            "Settings → Integrations → SCIM 2.0, or generate a new one."
        )
    return token


@dataclass(frozen=True)
class Principal:
    """Who is calling: the tenant, and which credential (for the audit trail)."""

    tenant_id: uuid.UUID
    tenant_slug: str
    credential_id: uuid.UUID


class ScimAuthMiddleware:
    """Authenticate every request under /scim/v2 before routing it.

    Shaped like Starlette's AuthenticationMiddleware: an auth failure becomes
    a SCIM error response here, in one place.
    """

    def __init__(
        self,
        app: ASGIApp,
        engine: AsyncEngine,
        settings: Settings,
        throttle: FailedAuthThrottle,
        shares: TenantShares,
        credentials: CredentialCache,
    ) -> None:
        self.app = app
        self.shares = shares
        self.credentials = credentials
        self.engine = engine
        self.settings = settings
        self.throttle = throttle
        self._last_recorded: dict[uuid.UUID, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        try:
            headers: dict[bytes, bytes] = dict(scope["headers"])
            token = _presented_token(headers)
        except errors.Unauthorized as exc:
            await self._refuse(exc, _client_address(scope)).to_response()(scope, receive, send)
            return
        presented = hash_token(token)
        # The tenant's share is taken before any database work, by credential
        # (one per tenant): a request waiting its turn costs nothing.
        async with self.shares.place(presented):
            try:
                principal = await self._authenticate(headers, presented)
            except errors.Unauthorized as exc:
                refusal = self._refuse(exc, _client_address(scope))
                await refusal.to_response()(scope, receive, send)
                return
            except errors.ScimError as exc:
                await exc.to_response()(scope, receive, send)
                return
            scope.setdefault("state", {})["principal"] = principal
            await self.app(scope, receive, send)

    def _refuse(self, failure: errors.Unauthorized, client: str) -> errors.ScimError:
        """401 for a failed authentication, or 429 once this client has failed too often."""
        wait = self.throttle.retry_after(client)
        if wait is not None:
            log.warning("throttling failed authentications client=%s retry_after=%s", client, wait)
            return errors.TooManyRequests(
                "Too many requests with an invalid SCIM token from this address; wait, then use "
                "the token from Settings → Integrations → SCIM 2.0.",
                headers={"Retry-After": str(wait)},
            )
        self.throttle.record_failure(client)
        return failure

    async def _authenticate(self, headers: dict[bytes, bytes], presented: str) -> Principal:
        """:param presented: the SHA-256 of the presented token."""
        credential = self.credentials.get(presented)
        if credential is None:
            credential = await self._look_up(presented)
        if (
            credential is None
            or not hmac.compare_digest(credential.token_hash, presented)
            or not credential.scim_enabled
        ):
            raise errors.Unauthorized(
                "This SCIM token is not valid: it was regenerated or the integration was "
                "disabled. Generate a new one in Settings → Integrations → SCIM 2.0."
            )
        self._check_host(headers, credential.slug)
        if not Plan(credential.plan).includes_scim:
            raise errors.Forbidden(
                "SCIM provisioning is a Business-plan integration; this workspace is on the "
                f"{Plan(credential.plan).value} plan. Upgrade to Business to provision users."
            )
        await self._record_use(credential.id)
        return Principal(
            tenant_id=credential.tenant_id,
            tenant_slug=credential.slug,
            credential_id=credential.id,
        )

    async def _look_up(self, presented: str) -> Credential | None:
        generation = self.credentials.generation
        async with reading(self.engine) as conn:
            row = (await conn.execute(_CREDENTIAL, {"token_hash": presented})).first()
        if row is None:
            return None
        credential = Credential(**row._mapping)  # _CREDENTIAL selects exactly its fields
        self.credentials.remember(presented, credential, generation)
        return credential

    def _check_host(self, headers: dict[bytes, bytes], slug: str) -> None:
        # On a tenant's own host (SLUG.<base domain>) the token must belong to
        # that tenant; other hosts (localhost, a load balancer) rely on the token.
        host = headers.get(b"host", b"").decode("latin-1").lower().rsplit(":", 1)[0].rstrip(".")
        suffix = "." + self.settings.base_domain
        if host.endswith(suffix) and host[: -len(suffix)] != slug:
            raise errors.Unauthorized(
                "This SCIM token belongs to a different SimpleAMS workspace than the URL; "
                "check the Base URL / Tenant URL in your IdP."
            )

    async def _record_use(self, credential_id: uuid.UUID) -> None:
        now = time.monotonic()
        last = self._last_recorded.get(credential_id)
        if last is not None and now - last < LAST_USED_RESOLUTION_SECONDS:
            return
        self._last_recorded[credential_id] = now
        async with reading(self.engine) as conn:
            await conn.execute(
                update(ScimCredential)
                .where(ScimCredential.id == credential_id)
                .values(last_used_at=func.now())
            )
