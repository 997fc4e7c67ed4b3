"""X-Forwarded-For counts only from a configured proxy, in a real uvicorn.

The failed-authentication throttles (and the log lines) key on the client
address uvicorn's proxy-header handling leaves in the ASGI scope. A client
that may set its own address walks around them: 40 bad tokens with a new
X-Forwarded-For each got 40 answers of 401 and no 429. So `web`, as the Procfile and
docker-compose.yml start it, trusts no proxy unless FORWARDED_ALLOW_IPS
names one; a named proxy's X-Forwarded-For is honoured, right to left (the
address the proxy appended, not whatever the client wrote before it).

Every test here runs the command line ops run, with the environment ops
give it, and talks to it over TCP from 127.0.0.1, an address uvicorn trusts
by itself unless told otherwise.
"""

from __future__ import annotations

import os
import re
import subprocess
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx2
import pytest
import yaml

from tests.integration.live_server import free_port
from tests.integration.pipeline import BIN, ROOT, procfile_process, wait_for

BAD_TOKEN = {"Authorization": "Bearer not-a-simpleams-token"}
# The gateway's default: failed authentications per address per minute.
LIMIT = 20
SPOOFED = "198.51.100."  # TEST-NET-2: what the client claims to be


def _healthy(url: str, process: subprocess.Popen[bytes]) -> None:
    def answers() -> bool:
        assert process.poll() is None, f"web exited with {process.returncode}"
        try:
            return httpx2.get(f"{url}/healthz", timeout=1).status_code == 200
        except httpx2.TransportError:
            return False

    wait_for(answers, "web to answer /healthz", timeout=30)


@contextmanager
def procfile_web(env: dict[str, str], log_dir: Path) -> Iterator[tuple[str, Any]]:
    """The Procfile's `web` line, through a shell, as honcho runs it."""
    port = free_port()
    with procfile_process("web", {**env, "PORT": str(port)}, log_dir) as web:
        url = f"http://127.0.0.1:{port}"
        _healthy(url, web.popen)
        yield url, web.output


def _interpolate(value: str, shell: dict[str, str]) -> str:
    """Compose's ${NAME}, ${NAME:-default} and ${NAME:?error}, for an operator's shell."""

    def one(found: re.Match[str]) -> str:
        name, operator, default = found.group(1), found.group(2), found.group(3) or ""
        if shell.get(name):
            return shell[name]
        if operator == "?":
            raise AssertionError(f"compose requires {name}: {default}")
        return default if operator == "-" else ""

    return re.sub(r"\$\{(\w+)(?::([-?])([^}]*))?\}", one, value)


@contextmanager
def compose_web(
    database_url: str, shell: dict[str, str], log_dir: Path
) -> Iterator[tuple[str, Any]]:
    """docker-compose.yml's `web`: its command and its environment, with the
    defaults compose fills in from ``shell`` (the operator's environment)."""
    service = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]["web"]
    environment = {
        name: _interpolate(str(value), shell) for name, value in service["environment"].items()
    }
    command = [_interpolate(str(part), shell) for part in service["command"]]
    port = free_port()
    command[command.index("--port") + 1] = str(port)
    # Only what the container would have: no FORWARDED_ALLOW_IPS from this machine.
    env = {k: v for k, v in os.environ.items() if k != "FORWARDED_ALLOW_IPS"}
    env.update(environment, DATABASE_URL=database_url, PATH=f"{BIN}:{os.environ['PATH']}")
    log = log_dir / "compose-web.log"
    with log.open("wb") as out:
        process = subprocess.Popen(command, cwd=ROOT, env=env, stdout=out, stderr=subprocess.STDOUT)
    try:
        url = f"http://127.0.0.1:{port}"
        _healthy(url, process)
        yield url, lambda: log.read_text(errors="replace")
    finally:
        process.terminate()
        process.wait(timeout=30)


def bad_token_statuses(url: str, forwarded_for: list[str]) -> list[int]:
    """One request with a bad token per X-Forwarded-For value, in order."""
    with httpx2.Client(base_url=f"{url}/scim/v2", timeout=10) as client:
        return [
            client.get("/Users", headers={**BAD_TOKEN, "X-Forwarded-For": value}).status_code
            for value in forwarded_for
        ]


def assert_spoofing_does_not_escape_the_throttle(url: str, output: Any) -> None:
    rotating = [f"{SPOOFED}{n}" for n in range(LIMIT + 2)]
    assert bad_token_statuses(url, rotating) == [401] * LIMIT + [429, 429]
    # The address in the logs is the connection's, not the claimed one.
    assert "throttling failed authentications client=127.0.0.1 " in output()
    assert SPOOFED not in output()


@pytest.fixture
def no_trusted_proxy(monkeypatch: pytest.MonkeyPatch) -> None:
    """As on a machine where nobody configured a proxy."""
    monkeypatch.delenv("FORWARDED_ALLOW_IPS", raising=False)


def test_the_procfile_web_ignores_a_spoofed_forwarded_for(
    database_url: str, tmp_path: Path, no_trusted_proxy: None
) -> None:
    with procfile_web({"DATABASE_URL": database_url}, tmp_path) as (url, output):
        assert_spoofing_does_not_escape_the_throttle(url, output)


def test_compose_web_trusts_no_proxy_unless_one_is_configured(
    database_url: str, tmp_path: Path
) -> None:
    shell = {"SMTP_URL": "smtp://relay.invalid:587"}  # compose insists on one
    with compose_web(database_url, shell, tmp_path) as (url, output):
        assert_spoofing_does_not_escape_the_throttle(url, output)


def test_a_configured_proxy_forwarded_for_is_honoured_right_to_left(
    database_url: str, tmp_path: Path
) -> None:
    env = {"DATABASE_URL": database_url, "FORWARDED_ALLOW_IPS": "127.0.0.1"}
    with procfile_web(env, tmp_path) as (url, output):
        # Each client behind the proxy has its own count: no 429 for anyone.
        behind = [f"203.0.113.{n}" for n in range(LIMIT + 5)]
        assert bad_token_statuses(url, behind) == [401] * len(behind)

        # One client behind it, writing its own X-Forwarded-For, which the
        # proxy appends to: still counted as the address the proxy saw.
        client = "192.0.2.7"
        chains = [f"{SPOOFED}{n}, {client}" for n in range(LIMIT)]
        assert bad_token_statuses(url, chains) == [401] * LIMIT
        assert bad_token_statuses(url, [f"{SPOOFED}99, {client}", client, "192.0.2.8"]) == [
            429,
            429,
            401,
        ]
        assert f"throttling failed authentications client={client} " in output()
        assert "client=127.0.0.1" not in output()
