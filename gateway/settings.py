"""Configuration, read once from the environment, with working local defaults."""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from models.tenant_addresses import TenantAddresses

DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"
DEFAULT_REDIS_URL = "redis://127.0.0.1:6379/0"


@dataclass(frozen=True)
class Settings:
    """Everything the gateway and the CLI need to know about their environment.

    :param database_url: a ``postgresql+psycopg://`` URL; the same URL serves
        the async gateway engine, the sync worker engine and Alembic.
    :param redis_url: the Celery broker.
    :param base_domain: tenants are served at ``SLUG.<base_domain>`` (``addresses``).
    :param public_scheme: the scheme IdPs and browsers use to reach us
        (``meta.location``, the endpoint shown to admins).
    :param max_body_bytes: requests larger than this get 413.
    :param body_read_timeout_seconds: a request body must arrive within this
        many seconds of the gateway asking for it, or 408 (0: no limit);
        uvicorn has no such limit of its own.
    :param db_pool_size: connections per gateway process; at least
        ``scim_requests_in_progress``, since each request in progress may hold
        one. With fewer, at load the pool opens and closes an overflow
        connection for most requests, and every new session costs PostgreSQL
        a backend start and its statements prepared again
        (docs/performance.md, "Pool size": 168-188 sessions and 17.4 s of
        PostgreSQL CPU per 3,000-user sync at 4, against 16-17 and 13.5 s at
        12).
    :param db_statement_timeout_ms: bound every statement so a stuck query
        answers an error long before Okta's 60 s timeout.
    :param auth_failures_per_minute: failed authentications one client address
        may make per minute (per process) before it gets 429.
    :param admin_session_hours: an admin's sign-in lasts this long, then they
        sign in again (absolute, not sliding: a stolen cookie stops working).
    :param sign_in_failures: failed admin sign-ins allowed per client address
        and, separately, per account within 15 minutes (per process); past
        the account's, only addresses that have not failed on it may try
        (gateway/admin/sign_in.py).
    :param password_hashes_at_once: argon2 computations (64 MiB each) one web
        process runs at once for sign-ins; the rest wait their turn.
    :param password_hashes_waiting: sign-ins that may wait for one; past
        that, a sign-in gets 503 with Retry-After at once.
    :param scim_requests_in_progress: SCIM requests one web process works on
        at once, split evenly between the tenants sending them; the rest
        wait their turn, so a large tenant's sync cannot crowd out the
        others (gateway/fairness.py). 4 keep one process as busy as 12 do
        (docs/performance.md, "Requests in progress per process"), and each
        one more in progress adds to every other's wait. 0 means no limit.
    :param credential_cache: remember which tenant each token belongs to,
        forgetting on PostgreSQL's change notifications (gateway/credentials.py).
    :param analyze: refresh the planner statistics of the tables a sync grows
        (gateway/statistics.py); off only where ANALYZE is not allowed.
    """

    database_url: str = DEFAULT_DATABASE_URL
    redis_url: str = DEFAULT_REDIS_URL
    base_domain: str = "simpleams.co.uk"
    public_scheme: str = "https"
    max_body_bytes: int = 1_048_576
    body_read_timeout_seconds: float = 10.0
    db_pool_size: int = 12
    db_statement_timeout_ms: int = 10_000
    auth_failures_per_minute: int = 20
    admin_session_hours: int = 12
    sign_in_failures: int = 10
    password_hashes_at_once: int = 2
    password_hashes_waiting: int = 8
    scim_requests_in_progress: int = 4
    credential_cache: bool = True
    analyze: bool = True

    @classmethod
    def from_env(cls, environ: dict[str, str] | None = None) -> Settings:
        env = os.environ if environ is None else environ
        return cls(
            database_url=env.get("DATABASE_URL", DEFAULT_DATABASE_URL),
            redis_url=env.get("REDIS_URL", DEFAULT_REDIS_URL),
            base_domain=env.get("SIMPLEAMS_BASE_DOMAIN", "simpleams.co.uk").lower().strip("."),
            public_scheme=env.get("SIMPLEAMS_PUBLIC_SCHEME", "https"),
            max_body_bytes=int(env.get("SIMPLEAMS_MAX_BODY_BYTES", "1048576")),
            body_read_timeout_seconds=float(env.get("SIMPLEAMS_BODY_READ_TIMEOUT_SECONDS", "10")),
            db_pool_size=int(env.get("SIMPLEAMS_DB_POOL_SIZE", "12")),
            db_statement_timeout_ms=int(env.get("SIMPLEAMS_DB_STATEMENT_TIMEOUT_MS", "10000")),
            auth_failures_per_minute=int(env.get("SIMPLEAMS_AUTH_FAILURES_PER_MINUTE", "20")),
            admin_session_hours=int(env.get("SIMPLEAMS_ADMIN_SESSION_HOURS", "12")),
            sign_in_failures=int(env.get("SIMPLEAMS_SIGN_IN_FAILURES", "10")),
            password_hashes_at_once=int(env.get("SIMPLEAMS_PASSWORD_HASHES_AT_ONCE", "2")),
            password_hashes_waiting=int(env.get("SIMPLEAMS_PASSWORD_HASHES_WAITING", "8")),
            scim_requests_in_progress=int(env.get("SIMPLEAMS_SCIM_REQUESTS_IN_PROGRESS", "4")),
            credential_cache=env.get("SIMPLEAMS_CREDENTIAL_CACHE", "1").lower()
            not in ("0", "false", "no"),
            analyze=env.get("SIMPLEAMS_ANALYZE", "1").lower() not in ("0", "false", "no"),
        )

    @cached_property
    def addresses(self) -> TenantAddresses:
        """Tenants' hosts and URLs (models/tenant_addresses.py, their one owner)."""
        from models.tenant_addresses import TenantAddresses  # loads SQLAlchemy (models/)

        return TenantAddresses(scheme=self.public_scheme, base_domain=self.base_domain)

    def endpoint_for(self, slug: str) -> str:
        """The tenant's SCIM endpoint, as the settings page and `simpleams` show it."""
        return self.addresses.scim_endpoint(slug)
