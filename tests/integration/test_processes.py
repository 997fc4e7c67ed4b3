"""The Procfile's worker and flower lines start and do their job with a real Redis."""

from __future__ import annotations

import os
import shlex
from pathlib import Path

import httpx2

from tests.integration.live_server import free_port
from tests.integration.pipeline import RedisServer, procfile_process, wait_for
from workers.routing import QUEUES


def test_the_worker_line_starts_a_celery_worker_that_answers_ping(
    tmp_path: Path, redis_server: RedisServer
) -> None:
    from celery import Celery

    name = f"test-{os.getpid()}@"
    env = {"REDIS_URL": redis_server.url}
    with procfile_process("worker", env, tmp_path, f"-n {shlex.quote(name + '%h')}") as worker:
        control = Celery(broker=redis_server.url).control
        wait_for(
            lambda: any(name in key for reply in control.ping(timeout=1) for key in reply),
            "the worker to answer ping",
        )
        # It consumes every queue of the routing table, named nowhere else.
        active = control.inspect(timeout=5).active_queues() or {}
        consumed = {
            queue["name"] for key, queues in active.items() if name in key for queue in queues
        }
        assert consumed == set(QUEUES)
    # Warm shutdown on SIGTERM exits cleanly.
    assert worker.popen.returncode == 0, worker.output()[-2000:]


def test_flower_requires_authentication(tmp_path: Path, redis_server: RedisServer) -> None:
    port = free_port()
    env = {
        "FLOWER_PORT": str(port),
        "FLOWER_BASIC_AUTH": "ops:s3cret-test",
        "REDIS_URL": redis_server.url,
    }
    with procfile_process("flower", env, tmp_path) as flower:
        url = f"http://127.0.0.1:{port}/api/workers"

        def answering() -> bool:
            try:
                return httpx2.get(url, timeout=1).status_code in (200, 401)
            except httpx2.TransportError:
                return False

        wait_for(answering, "flower to listen")
        assert httpx2.get(url, timeout=5).status_code == 401
        assert httpx2.get(url, auth=("ops", "s3cret-test"), timeout=5).status_code == 200
        # The password is read from the environment, never put on a command line.
        command_line = Path(f"/proc/{flower.popen.pid}/cmdline").read_bytes()
        assert b"celery" in command_line and b"s3cret-test" not in command_line
    assert "s3cret-test" not in flower.output()


def test_flower_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    with procfile_process("flower", {"FLOWER_BASIC_AUTH": ""}, tmp_path) as flower:
        flower.popen.wait(timeout=30)
    assert flower.popen.returncode != 0
    assert "FLOWER_BASIC_AUTH" in flower.output()
