"""Our Redis transport for Celery: kombu's, with one failure made survivable.

When Redis goes away while a worker holds an unacknowledged task, Celery
closes the consumer's connection, and kombu's Redis channel, on closing,
puts the unacknowledged message back through that connection. If the
connection has already let go of its broker address (kombu 5.7, seen in
tests/integration/test_soak.py during a Redis restart), that fails with an
AttributeError. Celery takes an AttributeError for a bug of its own and
stops the worker ("Unrecoverable error", exit code 1): a Redis restart
could take the workers down with it.

A channel whose connection is gone now says so with a connection error,
which every close path ignores, and the worker reconnects. The message is
not lost: it stays in Redis's unacked set and comes back after the
visibility timeout (workers/app.py), and if Redis lost it, the relay's
sweep publishes its events again (workers/relay.py).
"""

from __future__ import annotations

from typing import Any

import redis
from kombu.transport import TRANSPORT_ALIASES
from kombu.transport import redis as kombu_redis


class Channel(kombu_redis.Channel):
    def _connparams(self, asynchronous: bool = False) -> dict[str, Any]:
        if self.connection.client is None:
            raise redis.ConnectionError("the broker connection is already closed")
        params: dict[str, Any] = super()._connparams(asynchronous=asynchronous)
        return params


class Transport(kombu_redis.Transport):
    Channel = Channel


def use_for_redis_urls() -> None:
    """Make redis:// and rediss:// URLs use this transport.

    kombu finds a URL's transport by its scheme in TRANSPORT_ALIASES. Naming
    the class in Celery's ``broker_transport`` instead would also work, but
    would make the broker URI read ``workers.broker:Transport://...``, which
    Flower cannot parse (its Broker page needs ``redis://``).
    """
    for scheme in ("redis", "rediss"):
        TRANSPORT_ALIASES[scheme] = f"{__name__}:Transport"
