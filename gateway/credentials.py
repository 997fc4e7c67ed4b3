"""Which tenant a bearer token belongs to, remembered by each web process.

Every SCIM request presents a token, and looking it up costs a pooled
connection and a database round trip: a quarter of an IdP's lookup + create
(docs/performance.md, "Credential cache"). Each web process therefore remembers
the answers and forgets all of them whenever PostgreSQL announces that one
could have changed: migration 0007 NOTIFYs ``scim_credentials_changed`` when
a credential is created, rotated or revoked and when a tenant's slug, plan
or SCIM switch changes, and a dedicated connection per process LISTENs.

What keeps a revoked token from working:

- Forgetting happens in the same callback that reads the notification, so
  no request can run between the two.
- Before trusting a remembered answer, a request checks without blocking
  whether the listening connection has anything unread; if so it forgets
  everything and looks the token up.
- While the listening connection is down (PostgreSQL restarting) nothing is
  remembered: every request looks its token up, as without the cache.
- An answer looked up while a change was announced is not remembered.

So a rotated or revoked token stops working on every process as soon as
PostgreSQL has delivered the notification, milliseconds after the commit.
Only valid credentials are remembered; bad tokens are never stored here
(gateway/auth.py remembers, for a minute, which token hashes matched
nothing, so that a client repeating a bad token costs no lookup).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import select
import uuid
from dataclasses import dataclass

import psycopg
from sqlalchemy.engine import make_url

log = logging.getLogger("simpleams.gateway.credentials")

CHANNEL = "scim_credentials_changed"
# Far more tenants than a process serves at once; past it, start afresh.
MAX_ENTRIES = 10_000
RECONNECT_SECONDS = (0.5, 1.0, 2.0, 5.0)


@dataclass(frozen=True)
class Credential:
    """A valid (not revoked) credential and what auth checks about its tenant."""

    id: uuid.UUID
    token_hash: str
    tenant_id: uuid.UUID
    slug: str
    plan: str
    scim_enabled: bool


class CredentialCache:
    def __init__(self) -> None:
        self._entries: dict[str, Credential] = {}
        self._fd: int | None = None
        self.generation = 0
        self.hits = 0

    @property
    def listening(self) -> bool:
        return self._fd is not None

    @property
    def fd(self) -> int | None:
        """The listening connection's socket, while it is up."""
        return self._fd

    def get(self, token_hash: str) -> Credential | None:
        if self._fd is None:
            return None
        if self._unread(self._fd):
            self.forget_all()
            return None
        credential = self._entries.get(token_hash)
        if credential is not None:
            self.hits += 1
        return credential

    def remember(self, token_hash: str, credential: Credential, generation: int) -> None:
        """Keep an answer looked up when ``self.generation`` was ``generation``."""
        if self._fd is None or generation != self.generation:
            return
        if len(self._entries) >= MAX_ENTRIES:
            self._entries.clear()
        self._entries[token_hash] = credential

    def forget_all(self) -> None:
        self._entries.clear()
        self.generation += 1

    def attach(self, fd: int) -> None:
        self.forget_all()
        self._fd = fd

    def detach(self) -> None:
        self._fd = None
        self.forget_all()

    def _unread(self, fd: int) -> bool:
        try:
            readable, _, _ = select.select([fd], [], [], 0)
        except (OSError, ValueError):
            # The listening socket is gone (its connection failed and was
            # closed before the listener noticed): trust nothing until it is
            # back.
            self.detach()
            return True
        return bool(readable)


async def keep_listening(cache: CredentialCache, database_url: str) -> None:
    """LISTEN for credential changes until cancelled, reconnecting after failures.

    Runs as a task of the web process' lifespan (gateway/app.py).
    """
    url = make_url(database_url).set(drivername="postgresql")
    dsn = url.render_as_string(hide_password=False)
    failures = 0
    while True:
        lost = asyncio.Event()
        conn: psycopg.AsyncConnection[tuple[object, ...]] | None = None
        try:
            conn = await psycopg.AsyncConnection.connect(
                dsn, autocommit=True, application_name="simpleams-gateway-credentials"
            )
            await conn.execute(f"LISTEN {CHANNEL}")
            _attach(cache, conn, lost)
            if failures:
                log.info("listening for credential changes again")
            failures = 0
            await lost.wait()
            log.warning("lost the credential-change listener; looking every token up meanwhile")
        except (psycopg.Error, OSError) as exc:
            if failures == 0:
                log.warning(
                    "cannot listen for credential changes (%s); retrying", type(exc).__name__
                )
        finally:
            _detach(cache)
            if conn is not None:
                with contextlib.suppress(psycopg.Error, OSError):
                    await conn.close()
        await asyncio.sleep(RECONNECT_SECONDS[min(failures, len(RECONNECT_SECONDS) - 1)])
        failures += 1


def _attach(
    cache: CredentialCache, conn: psycopg.AsyncConnection[tuple[object, ...]], lost: asyncio.Event
) -> None:
    pgconn = conn.pgconn
    fd = pgconn.socket

    def on_readable() -> None:
        # Forget first: from here on no request can use an answer the
        # notification being read might have changed.
        cache.forget_all()
        try:
            pgconn.consume_input()
            while pgconn.notifies() is not None:
                pass
            healthy = pgconn.status == psycopg.pq.ConnStatus.OK
        except psycopg.Error:
            healthy = False
        if not healthy:
            # Stop using the socket now, in this callback: once the
            # connection is closed its descriptor may be reused by another.
            _detach(cache)
            lost.set()

    asyncio.get_running_loop().add_reader(fd, on_readable)
    cache.attach(fd)


def _detach(cache: CredentialCache) -> None:
    fd = cache.fd
    if fd is not None:
        with contextlib.suppress(ValueError, OSError):
            asyncio.get_running_loop().remove_reader(fd)
    cache.detach()
