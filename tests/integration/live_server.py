"""A real gateway process (uvicorn), for tests that must go over the network."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import httpx2


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_gateway(database_url: str, log_path: Path) -> Iterator[str]:
    """Start `web` as the Procfile does; yield its base URL once /healthz answers."""
    with gateway_process(database_url, log_path) as (url, _process):
        yield url


@contextmanager
def gateway_process(
    database_url: str, log_path: Path
) -> Iterator[tuple[str, subprocess.Popen[bytes]]]:
    """Like running_gateway, and hands over the process (to signal it)."""
    port = free_port()
    env = {**os.environ, "DATABASE_URL": database_url, "PORT": str(port)}
    uvicorn = str(Path(sys.executable).parent / "uvicorn")
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                uvicorn,
                "--factory",
                "gateway.app:app_from_env",
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--timeout-graceful-shutdown",
                "20",
            ],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        try:
            url = f"http://127.0.0.1:{port}"
            _wait_until_healthy(url, process)
            yield url, process
        finally:
            if process.poll() is None:
                process.terminate()
            process.wait(timeout=30)


def _wait_until_healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the gateway exited with {process.returncode}")
        try:
            if httpx2.get(f"{url}/healthz", timeout=1).status_code == 200:
                return
        except httpx2.TransportError:
            pass
        time.sleep(0.1)  # polling interval while waiting on a condition with a deadline
    raise RuntimeError("the gateway did not become healthy within 30 s")
