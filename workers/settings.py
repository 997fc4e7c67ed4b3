"""Worker-side configuration, read once from the environment.

Workers never import the gateway, so the few settings both need (database,
base domain, public scheme) are read here again from the same variables,
with the same defaults.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from functools import cached_property

from models.tenant_addresses import TenantAddresses


@dataclass(frozen=True)
class WorkerSettings:
    """
    :param database_url: the same ``postgresql+psycopg://`` URL as the gateway's.
    :param redis_url: the Celery broker.
    :param base_domain: tenants are served at ``SLUG.<base_domain>`` (``addresses``).
    :param public_scheme: the scheme of the links in emails, as the gateway's
        (``SIMPLEAMS_PUBLIC_SCHEME``).
    :param smtp_url: ``smtp://[user:password@]host[:port][?starttls=true]`` or
        ``smtps://…`` (implicit TLS).
    :param mail_from: the From header of every notification.
    :param digest_interval_seconds: at most one digest per tenant this often.
    :param sweep_after_seconds: the relay re-publishes events still unsettled
        this long after publishing (their task was lost, e.g. with Redis).
    """

    database_url: str = "postgresql+psycopg://root@127.0.0.1:5432/test"
    redis_url: str = "redis://127.0.0.1:6379/0"
    base_domain: str = "simpleams.co.uk"
    public_scheme: str = "https"
    smtp_url: str = "smtp://127.0.0.1:25"
    mail_from: str = "SimpleAMS <no-reply@simpleams.co.uk>"
    digest_interval_seconds: int = 300
    digest_check_every_seconds: float = 30.0
    # Longer than the longest retry countdown (retry_backoff_max 300 s +
    # jitter), which restarts this clock (workers/effects.py::on_retry).
    sweep_after_seconds: int = 600
    relay_poll_seconds: float = 1.0
    # LISTEN/NOTIFY wake-ups; off = poll every relay_poll_seconds
    # (docs/performance.md, "Relay wake-up (LISTEN/NOTIFY)").
    relay_listen: bool = True
    # Events per side-effect task; while events keep coming, how often the
    # relay publishes; and how many tasks may wait in the broker before the
    # relay lets the next batch grow (workers/relay.py).
    effect_batch_size: int = 100
    relay_linger_ms: int = 250
    relay_max_waiting: int = 6

    @classmethod
    def from_env(cls) -> WorkerSettings:
        env = os.environ
        defaults = cls()
        return cls(
            database_url=env.get("DATABASE_URL", defaults.database_url),
            redis_url=env.get("REDIS_URL", defaults.redis_url),
            base_domain=env.get("SIMPLEAMS_BASE_DOMAIN", defaults.base_domain).lower().strip("."),
            public_scheme=env.get("SIMPLEAMS_PUBLIC_SCHEME", defaults.public_scheme),
            smtp_url=env.get("SMTP_URL", defaults.smtp_url),
            mail_from=env.get("SIMPLEAMS_MAIL_FROM", defaults.mail_from),
            digest_interval_seconds=int(
                env.get("SIMPLEAMS_DIGEST_INTERVAL_SECONDS", defaults.digest_interval_seconds)
            ),
            digest_check_every_seconds=float(
                env.get("SIMPLEAMS_DIGEST_CHECK_SECONDS", defaults.digest_check_every_seconds)
            ),
            sweep_after_seconds=int(
                env.get("SIMPLEAMS_SWEEP_AFTER_SECONDS", defaults.sweep_after_seconds)
            ),
            relay_poll_seconds=float(
                env.get("SIMPLEAMS_RELAY_POLL_SECONDS", defaults.relay_poll_seconds)
            ),
            relay_listen=env.get("SIMPLEAMS_RELAY_LISTEN", "1").lower() not in ("0", "false", "no"),
            effect_batch_size=max(
                1, int(env.get("SIMPLEAMS_EFFECT_BATCH_SIZE", defaults.effect_batch_size))
            ),
            relay_linger_ms=max(
                0, int(env.get("SIMPLEAMS_RELAY_LINGER_MS", defaults.relay_linger_ms))
            ),
            relay_max_waiting=max(
                0, int(env.get("SIMPLEAMS_RELAY_MAX_WAITING", defaults.relay_max_waiting))
            ),
        )

    @cached_property
    def addresses(self) -> TenantAddresses:
        """Tenants' hosts and URLs (models/tenant_addresses.py, their one owner)."""
        return TenantAddresses(scheme=self.public_scheme, base_domain=self.base_domain)


settings = WorkerSettings.from_env()
