"""SIGTERM lets work in flight finish: a web request, a worker's task."""

from __future__ import annotations

import json
import signal
import socket
from pathlib import Path
from urllib.parse import urlsplit

import httpx2
from sqlalchemy import Engine, text

from gateway import staff_history
from tests.conftest import TenantHandle, user_body
from tests.integration.live_server import gateway_process
from tests.integration.pipeline import RedisServer, procfile_process, wait_for


def _refuses_connections(host: str, port: int) -> bool:
    try:
        socket.create_connection((host, port), timeout=0.5).close()
    except OSError:
        return True
    return False


def test_sigterm_to_web_finishes_the_request_in_flight(
    database_url: str, tenant: TenantHandle, db: Engine, tmp_path: Path
) -> None:
    with gateway_process(database_url, tmp_path / "web.log") as (url, web):
        address = urlsplit(url)
        host, port = address.hostname or "127.0.0.1", address.port or 80
        body = json.dumps(user_body("inflight@acme.test")).encode()
        head = (
            f"POST /scim/v2/Users HTTP/1.1\r\nHost: {host}\r\n"
            f"Authorization: Bearer {tenant.token}\r\nContent-Type: application/scim+json\r\n"
            f"Content-Length: {len(body)}\r\nConnection: close\r\n\r\n"
        ).encode()
        with socket.create_connection((host, port), timeout=30) as conn:
            conn.sendall(head + body[:10])  # the request is in flight
            web.send_signal(signal.SIGTERM)
            wait_for(lambda: _refuses_connections(host, port), "web to stop accepting")
            conn.sendall(body[10:])
            response = b""
            while chunk := conn.recv(65536):
                response += chunk
        assert response.startswith(b"HTTP/1.1 201"), response[:200]
        # uvicorn re-raises the signal once its graceful shutdown is complete.
        assert web.wait(timeout=30) in (0, -signal.SIGTERM)
        assert "Finished server process" in (tmp_path / "web.log").read_text()
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1


async def test_sigterm_to_a_worker_lets_its_running_task_finish(
    client: httpx2.AsyncClient,
    database_url: str,
    tenant: TenantHandle,
    db: Engine,
    tmp_path: Path,
) -> None:
    redis = RedisServer()
    redis.start()
    env = {
        "DATABASE_URL": database_url,
        "REDIS_URL": redis.url,
        "WORKER_CONCURRENCY": "1",
        "SIMPLEAMS_RELAY_POLL_SECONDS": "0.2",
    }
    try:
        with (
            procfile_process("relay", env, tmp_path),
            procfile_process("worker", env, tmp_path) as worker,
        ):
            created = (await client.post("/Users", json=user_body("term@acme.test"))).json()
            with db.begin() as conn:
                staff_history.record_checkout(conn, tenant.slug, "term@acme.test", "DOCK-1")
            wait_for(lambda: _unsettled(db) == 0, "the creation's effects")

            with db.connect() as blocker:
                blocker.execute(text("SELECT id FROM checkouts FOR UPDATE"))
                deactivate = {"Operations": [{"op": "replace", "value": {"active": False}}]}
                assert (
                    await client.patch(f"/Users/{created['id']}", json=deactivate)
                ).status_code == 200
                wait_for(lambda: _blocked_worker(db), "the lock task to be running (blocked)")
                worker.popen.send_signal(signal.SIGTERM)  # warm shutdown, task mid-run
                blocker.rollback()

            assert worker.popen.wait(timeout=60) == 0, worker.output()[-2000:]
            with db.connect() as conn:
                runs = conn.execute(
                    text(
                        "SELECT count(*) FROM side_effect_runs r JOIN provisioning_events e "
                        "ON e.id = r.event_id WHERE e.kind = 'user.deactivated' "
                        "AND r.effect = 'checkout_lock' AND r.status = 'done'"
                    )
                ).scalar_one()
                locked = conn.execute(text("SELECT checkout_locked FROM users")).scalar_one()
            assert runs == 1  # finished by the worker that was told to stop
            assert locked is True
    finally:
        redis.cleanup()


def _unsettled(db: Engine) -> int:
    with db.connect() as conn:
        return int(
            conn.execute(
                text("SELECT count(*) FROM provisioning_events WHERE settled_at IS NULL")
            ).scalar_one()
        )


def _blocked_worker(db: Engine) -> bool:
    with db.connect() as conn:
        return bool(
            conn.execute(
                text(
                    # This database's worker only: other pytest-xdist processes run theirs.
                    "SELECT count(*) FROM pg_stat_activity WHERE datname = current_database() "
                    "AND application_name LIKE 'simpleams-worker:%' AND wait_event_type = 'Lock'"
                    # The lock task on the blocked checkouts, not another task
                    # waiting a moment for a row the relay holds.
                    " AND query ILIKE '%checkouts%'"
                )
            ).scalar_one()
        )
