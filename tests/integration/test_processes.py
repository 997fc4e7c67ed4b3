"""The Procfile's worker and flower lines start and do their job with real Redis."""

from __future__ import annotations

import os
import re
import shlex
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2

from tests.integration.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return command.strip()
    raise KeyError(name)


@contextmanager
def procfile_process(
    name: str, env: dict[str, str], log: Path, extra_args: str = ""
) -> Iterator[subprocess.Popen[bytes]]:
    """Run a Procfile line through a shell, as honcho and Heroku-style runners do."""
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    with log.open("wb") as out:
        process = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {procfile_command(name)} {extra_args}"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        try:
            yield process
        finally:
            process.terminate()
            process.wait(timeout=30)


def wait_for(predicate: object, what: str, timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return
        time.sleep(0.2)  # polling interval while waiting on a condition with a deadline
    raise AssertionError(f"timed out waiting for {what}")


def test_the_worker_line_starts_a_celery_worker_that_answers_ping(tmp_path: Path) -> None:
    from workers.app import app

    name = f"test-{os.getpid()}@"
    env = {"REDIS_URL": "redis://127.0.0.1:6379/0"}
    log = tmp_path / "worker.log"
    with procfile_process("worker", env, log, f"-n {shlex.quote(name + '%h')}") as worker:
        wait_for(
            lambda: any(name in key for reply in app.control.ping(timeout=1) for key in reply),
            "the worker to answer ping",
        )
    # Warm shutdown on SIGTERM exits cleanly.
    assert worker.returncode == 0, log.read_text()[-2000:]


def test_flower_requires_authentication(tmp_path: Path) -> None:
    port = free_port()
    env = {"FLOWER_PORT": str(port), "FLOWER_BASIC_AUTH": "ops:s3cret-test"}
    with procfile_process("flower", env, tmp_path / "flower.log"):
        url = f"http://127.0.0.1:{port}/api/workers"

        def answering() -> bool:
            try:
                return httpx2.get(url, timeout=1).status_code in (200, 401)
            except httpx2.TransportError:
                return False

        wait_for(answering, "flower to listen")
        assert httpx2.get(url, timeout=5).status_code == 401
        assert httpx2.get(url, auth=("ops", "s3cret-test"), timeout=5).status_code == 200
    assert "s3cret-test" not in (tmp_path / "flower.log").read_text()


def test_flower_refuses_to_start_without_credentials(tmp_path: Path) -> None:
    env = {"FLOWER_BASIC_AUTH": ""}
    with procfile_process("flower", env, tmp_path / "flower.log") as flower:
        flower.wait(timeout=30)
    assert flower.returncode != 0
    assert re.search("FLOWER_BASIC_AUTH", (tmp_path / "flower.log").read_text())
