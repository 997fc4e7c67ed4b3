"""The embedded PostgreSQL and Redis of `make up` and `make test` (dev/): they
keep their data across a clean stop, say clearly why they cannot start, and
`python -m dev up` stops them whatever ends the command it runs.

The whole of `make up` on them, from a fresh clone, is test_newcomer.py."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import psycopg
import pytest
import redis

from dev.servers import Postgres, Redis, ServiceError, free_port
from tests.integration.pipeline import ROOT, wait_for


@pytest.fixture
def postgres(tmp_path: Path) -> Iterator[Postgres]:
    server = Postgres(tmp_path / "postgres", free_port())
    yield server
    server.crash()


@pytest.fixture
def broker(tmp_path: Path) -> Iterator[Redis]:
    server = Redis(tmp_path / "redis", free_port())
    yield server
    server.crash()


def plain(url: str) -> str:
    """A SQLAlchemy URL as libpq takes it."""
    return url.replace("postgresql+psycopg://", "postgresql://")


def test_postgres_keeps_its_data_across_a_fast_shutdown(postgres: Postgres) -> None:
    postgres.start()
    assert postgres.create_database("simpleams") is True
    with psycopg.connect(plain(postgres.url("simpleams")), autocommit=True) as conn:
        conn.execute("CREATE TABLE kept (n int)")
        conn.execute("INSERT INTO kept VALUES (42)")
    # Only with its password: scram-sha-256 on 127.0.0.1, no Unix socket.
    assert postgres.password and postgres.password not in postgres.log.read_text()
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        psycopg.connect(f"host=127.0.0.1 port={postgres.port} user=simpleams password=wrong")

    assert postgres.stop() == 0
    log = postgres.log.read_text()
    assert "received fast shutdown request" in log and "database system is shut down" in log
    assert not (postgres.data / "postmaster.pid").exists()

    postgres.start()
    assert postgres.create_database("simpleams") is False
    with psycopg.connect(plain(postgres.url("simpleams"))) as conn:
        assert conn.execute("SELECT n FROM kept").fetchall() == [(42,)]
    # A clean stop leaves nothing to recover.
    assert "database system was shut down at" in postgres.log.read_text()
    assert "automatic recovery in progress" not in postgres.log.read_text()


def test_postgres_runs_unprivileged_and_listens_on_loopback_only(postgres: Postgres) -> None:
    postgres.start()
    with psycopg.connect(plain(postgres.url())) as conn:
        listen = conn.execute("SHOW listen_addresses").fetchone()
        sockets = conn.execute("SHOW unix_socket_directories").fetchone()
        fsync = conn.execute("SHOW fsync").fetchone()
    assert (listen, sockets, fsync) == (("127.0.0.1",), ("",), ("on",))
    # As root (CI), in a user namespace of its own: root's files, not root's powers.
    assert (postgres.data / "PG_VERSION").stat().st_uid == os.geteuid()


def test_redis_asks_for_its_password_and_keeps_its_data_across_a_stop(broker: Redis) -> None:
    broker.start()
    with pytest.raises(redis.AuthenticationError):
        redis.Redis(port=broker.port).ping()
    redis.Redis.from_url(broker.url).set("kept", "42")
    assert broker.password and broker.password not in broker.log.read_text()
    assert broker.stop() == 0
    assert "ready to exit, bye bye" in broker.log.read_text()

    broker.start()
    assert redis.Redis.from_url(broker.url).get("kept") == b"42"


def test_a_taken_port_is_named_before_anything_starts(tmp_path: Path) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        server = Postgres(tmp_path / "postgres", port)
        with pytest.raises(ServiceError, match=rf"port {port} on 127.0.0.1 is taken.*PG_PORT="):
            server.start()
        with pytest.raises(ServiceError, match=rf"port {port} .*REDIS_PORT="):
            Redis(tmp_path / "redis", port).start()
    assert server.process is None


def test_a_server_that_exits_while_starting_is_reported_with_its_log(postgres: Postgres) -> None:
    postgres.initialise()
    (postgres.data / "PG_VERSION").write_text("9\n")
    with pytest.raises(
        ServiceError, match=r"(?s)PostgreSQL exited with status \d+ .*incompatible with server"
    ):
        postgres.start()
    assert postgres.process is None


def dev(*args: str, env: dict[str, str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "dev", *args],
        cwd=cwd,
        env={**env, "PYTHONPATH": str(ROOT)},
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def without_services() -> dict[str, str]:
    return {
        name: value
        for name, value in os.environ.items()
        if name not in ("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_ADMIN_URL")
    }


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


CHECK_SERVICES = """
import os, sys, psycopg, redis
url = os.environ["DATABASE_URL"]
with psycopg.connect(url.replace("postgresql+psycopg://", "postgresql://")) as conn:
    assert conn.execute("SELECT current_database()").fetchone() == ("simpleams",)
assert redis.Redis.from_url(os.environ["REDIS_URL"]).ping()
assert open(".data/env").read().count("export ") == 2
sys.exit(3)
"""


def test_dev_up_runs_the_command_with_both_servers_and_stops_them(tmp_path: Path) -> None:
    pg_port, redis_port = free_port(), free_port()
    up = dev(
        *("up", "--pg-port", str(pg_port), "--redis-port", str(redis_port)),
        *("--", sys.executable, "-c", CHECK_SERVICES),
        env=without_services(),
        cwd=tmp_path,
    )
    out, _ = up.communicate(timeout=120)
    assert up.returncode == 3, out  # the command's own exit status
    assert re.search(
        rf"^Database: embedded PostgreSQL 18\.\d+ on 127\.0\.0\.1:{pg_port}, "
        r"data in \.data/postgres \(no DATABASE_URL set\)$",
        out,
        re.MULTILINE,
    ), out
    assert re.search(
        rf"^Broker:   embedded Redis \d+\.\d+\.\d+ on 127\.0\.0\.1:{redis_port}, "
        r"data in \.data/redis \(no REDIS_URL set\)$",
        out,
        re.MULTILINE,
    ), out
    assert out.rstrip().endswith("Redis stopped.\nPostgreSQL stopped."), out
    passwords = [
        (tmp_path / ".data" / name / "password").read_text().strip()
        for name in ("postgres", "redis")
    ]
    assert not any(password in out for password in passwords)
    assert port_free(pg_port) and port_free(redis_port)
    assert not (tmp_path / ".data" / "env").exists()


def test_dev_up_uses_the_urls_it_is_given_and_starts_nothing(tmp_path: Path) -> None:
    env = {
        **without_services(),
        "DATABASE_URL": "postgresql+psycopg://app:hunter2@db.example:5432/app",
        "REDIS_URL": "redis://:s3cret@broker.example:6379/0",
    }
    up = dev("up", "--", sys.executable, "-c", "pass", env=env, cwd=tmp_path)
    out, _ = up.communicate(timeout=60)
    assert up.returncode == 0, out
    assert out.splitlines() == [
        "Database: postgresql+psycopg://app:***@db.example:5432/app (DATABASE_URL)",
        "Broker:   redis://:***@broker.example:6379/0 (REDIS_URL)",
    ]
    assert not (tmp_path / ".data").exists()


def test_a_second_dev_up_in_the_same_checkout_stops_at_the_lock(tmp_path: Path) -> None:
    env = {**without_services(), "DATABASE_URL": "postgresql://x/y"}  # Redis of its own
    own_redis = ("up", "--redis-port", str(free_port()), "--")
    first = dev(
        *own_redis, sys.executable, "-c", "import time; time.sleep(600)", env=env, cwd=tmp_path
    )
    try:
        wait_for(lambda: (tmp_path / ".data" / "env").exists(), "the first to start Redis", 120)
        second = dev(*own_redis, sys.executable, "-c", "pass", env=env, cwd=tmp_path)
        out, _ = second.communicate(timeout=60)
        assert second.returncode == 1
        assert out.splitlines() == [
            f"python -m dev: another `make up` (pid {first.pid}) is using .data: stop it first"
        ]
    finally:
        first.terminate()  # passed on to its command
        first.communicate(timeout=60)


def test_sigterm_to_dev_up_reaches_the_command_and_the_servers_stop(tmp_path: Path) -> None:
    pg_port, redis_port = free_port(), free_port()
    up = dev(
        *("up", "--pg-port", str(pg_port), "--redis-port", str(redis_port)),
        *("--", sys.executable, "-c", "import time; time.sleep(600)"),
        env=without_services(),
        cwd=tmp_path,
    )
    try:
        wait_for(lambda: (tmp_path / ".data" / "env").exists(), "the servers to start", 120)
        up.send_signal(signal.SIGTERM)
        out, _ = up.communicate(timeout=120)
    finally:
        if up.poll() is None:
            up.kill()
    assert up.returncode == 128 + signal.SIGTERM, out
    assert "Redis stopped.\nPostgreSQL stopped." in out
    assert port_free(pg_port) and port_free(redis_port)
