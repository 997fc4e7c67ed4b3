"""The workers' broker transport survives a close after Redis went away (workers/broker.py)."""

from __future__ import annotations

from tests.integration.pipeline import RedisServer
from workers.app import app
from workers.broker import Transport


def test_redis_urls_use_our_transport_and_keep_their_scheme(redis_server: RedisServer) -> None:
    with app.connection_for_write(redis_server.url) as connection:
        assert isinstance(connection.transport, Transport)
        # Flower's Broker page picks its client by this scheme.
        assert connection.as_uri().startswith("redis://")


def test_closing_a_channel_whose_connection_let_go_of_redis_does_not_stop_the_worker(
    redis_server: RedisServer,
) -> None:
    # The state the soak test met when Redis restarted under a worker: the
    # consumer's channel holds a delivered, unacknowledged task, and its
    # connection no longer knows the broker's address when Celery closes it.
    with app.connection_for_write(redis_server.url) as connection:
        channel = connection.default_channel
        assert channel.client.ping()
        channel.qos._delivered["1"] = object()  # kombu's record of an unacked delivery
        channel.connection.client = None

        # kombu's close path ignores connection errors only; an AttributeError
        # here is what Celery reported as "Unrecoverable error" before exiting.
        connection.maybe_close_channel(channel)
        assert channel.closed

    with app.connection_for_write(redis_server.url) as again:  # the worker reconnects
        assert again.default_channel.client.ping()
