"""Bearer token -> tenant, for everything under /scim/v2.

The token's format is gateway/tokens.py's. We store only SHA-256 of the
token, look the credential up by that hash, and compare with
``hmac.compare_digest``.

A request passes these steps in order, each one before any cost the next
one has:

1. The Host header parses (gateway/tenancy.py), else 400.
2. The token has the right shape and checksum, else 401 (429 once the
   client address has failed too often): no database work, no place.
3. A token refused in the last minute is refused again without a lookup:
   a throttled client repeating its bad token costs nothing. A token never
   seen before, from a throttled address, is looked up at most once a second
   per address (429 otherwise): a client spraying fresh forged tokens costs
   one index probe a second however fast it sends, while a valid token from
   an IdP's shared egress address still gets through within a second (Entra
   quarantines an app that keeps answering it 429), and after that, as a
   token known valid, as often as it comes.
4. The credential is looked up (the credential cache, else the database),
   and checked against the host and the plan.
5. The body is read, within the deadline gateway/app.py sets.
6. Only then does the request take its tenant's fairness place
   (gateway/fairness.py): a forged token, a slow body or a client that
   leaves never holds one.
"""

from __future__ import annotations

import hmac
import logging
import time
import uuid
from collections.abc import Callable

from sqlalchemy import bindparam, func, select, update
from sqlalchemy.ext.asyncio import AsyncEngine
from starlette.types import ASGIApp, Receive, Scope, Send

from gateway.bounded import BoundedMap
from gateway.credentials import Credential, CredentialCache
from gateway.db import reading
from gateway.fairness import TenantShares
from gateway.scim import errors
from gateway.scim.context import Principal
from gateway.scim.http import read_body, replay
from gateway.settings import Settings
from gateway.tenancy import Host, MalformedHost, request_host
from gateway.throttle import FailedAuthThrottle
from gateway.tokens import hash_token, is_well_formed
from models.tenants import Plan, ScimCredential, Tenant
from observability import logs

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


_NOT_VALID = (
    "This SCIM token is not valid: it was regenerated or the integration was "
    "disabled. Generate a new one in Settings → Integrations → SCIM 2.0."
)


class RecentTokens:
    """Token hashes seen with one outcome, remembered for ``ttl`` seconds.

    Refused tokens: one refused once is refused again without a lookup
    (tokens are random, so one that matched nothing does not start matching
    later; a rotation issues a new token). Valid tokens: one that was valid a
    moment ago may be looked up from a throttled address without waiting for
    the lookup budget. Bounded: the oldest are forgotten first.
    """

    def __init__(
        self, ttl: float, max_entries: int = 10_000, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self.ttl = ttl
        self.clock = clock
        self._at: BoundedMap[str, float] = BoundedMap(max_entries)

    def __contains__(self, token_hash: str) -> bool:
        at = self._at.get(token_hash)
        if at is None:
            return False
        if self.clock() - at >= self.ttl:
            self._at.forget(token_hash)
            return False
        return True

    def add(self, token_hash: str) -> None:
        self._at.put(token_hash, self.clock())


class ThrottledLookups:
    """At most one credential lookup per ``interval`` for each throttled address.

    Bounded: the addresses that looked up least recently are forgotten first.
    """

    def __init__(
        self,
        interval: float = 1.0,
        max_clients: int = 10_000,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.interval = interval
        self.clock = clock
        self._last: BoundedMap[str, float] = BoundedMap(max_clients)

    def allow(self, client: str) -> bool:
        """Whether ``client`` may have a lookup now (and, if so, count it)."""
        now = self.clock()
        last = self._last.get(client)
        if last is not None and now - last < self.interval:
            return False
        self._last.put(client, now)
        return True


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
        self.refused = RecentTokens(ttl=throttle.window)
        self.valid = RecentTokens(ttl=throttle.window)
        self.throttled_lookups = ThrottledLookups()
        self._last_recorded: dict[uuid.UUID, float] = {}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        client = _client_address(scope)
        try:
            host = request_host(scope["headers"])
        except MalformedHost as exc:
            await errors.ScimError(str(exc)).to_response()(scope, receive, send)
            return
        headers: dict[bytes, bytes] = dict(scope["headers"])
        try:
            presented = hash_token(_presented_token(headers))
            principal = await self._authenticate(host, presented, client)
        except errors.Unauthorized as exc:
            await self._refuse(exc, client).to_response()(scope, receive, send)
            return
        except errors.ScimError as exc:
            await exc.to_response()(scope, receive, send)
            return
        try:
            body = await read_body(
                receive, self.settings.max_body_bytes, headers.get(b"content-length")
            )
        except errors.ScimError as exc:
            await exc.to_response()(scope, receive, send)
            return
        scope.setdefault("state", {})["principal"] = principal
        logs.bind(tenant=principal.tenant_slug)
        # The tenant's place is taken last: whatever waits for it has cost
        # one credential lookup (usually the cache) and holds its body.
        async with self.shares.place(str(principal.tenant_id)):
            await self.app(scope, replay(body, receive), send)

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

    async def _authenticate(self, host: Host | None, presented: str, client: str) -> Principal:
        """:param presented: the SHA-256 of the presented token."""
        if presented in self.refused:
            raise errors.Unauthorized(_NOT_VALID)
        credential = self.credentials.get(presented)
        if credential is None:
            throttled = self.throttle.retry_after(client) is not None
            known = presented in self.valid
            if throttled and not known and not self.throttled_lookups.allow(client):
                # Not a failure of this token (it may be an IdP's valid one):
                # come back in a second, when this address may look one up.
                raise errors.TooManyRequests(
                    "Too many requests with an invalid SCIM token from this address; retry "
                    "shortly with the token from Settings → Integrations → SCIM 2.0.",
                    headers={"Retry-After": "1"},
                )
            credential = await self._look_up(presented)
            if credential is None:
                self.refused.add(presented)
        if credential is not None:
            # Kept fresh while in use, so that a cache flush (any tenant's
            # token change) never puts an IdP's token behind the lookup budget.
            self.valid.add(presented)
        if (
            credential is None
            or not hmac.compare_digest(credential.token_hash, presented)
            or not credential.scim_enabled
        ):
            raise errors.Unauthorized(_NOT_VALID)
        self._check_host(host, credential.slug)
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

    def _check_host(self, host: Host | None, slug: str) -> None:
        # On a tenant's own host (SLUG.<base domain>) the token must belong to
        # that tenant; other hosts (localhost, a load balancer) rely on the token.
        if not self.settings.addresses.serves(host, slug):
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
