"""Run a command with a PostgreSQL and a Redis (docs/development.md).

    python -m dev up [--data .data] [--pg-port 15432] [--redis-port 16379] -- COMMAND...

``up`` (`make up`): unless DATABASE_URL is set, starts the embedded PostgreSQL
with its data in .data/postgres and a database ``simpleams``; unless REDIS_URL
is set, the embedded Redis with its data in .data/redis. It prints which
database and broker COMMAND uses (never a password), hands it their URLs in
the environment (and in .data/env, for a second shell: ``. .data/env``), and
stops what it started once COMMAND has ended.

(The test suite starts its own servers: tests/conftest.py.)

Ctrl-C in a terminal sends SIGINT to the whole foreground process group,
COMMAND included, so SIGINT here only waits for COMMAND to finish; SIGTERM and
SIGHUP are passed on to it. The servers, in sessions of their own, are stopped
after COMMAND, whatever ended it: its own exit, Ctrl-C, or a crash.
"""

from __future__ import annotations

import argparse
import fcntl
import os
import signal
import subprocess
import sys
from collections.abc import Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from dev.servers import Postgres, Redis, ServiceError

DATABASE = "simpleams"


def say(line: str, file: TextIO = sys.stdout) -> None:
    print(line, file=file, flush=True)


def masked(url: str) -> str:
    """``url`` with its password, if any, replaced by ***."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.rpartition("@")
    login = netloc[0].partition(":")[0]
    return urlunsplit(parts._replace(netloc=f"{login}:***@{netloc[2]}"))


def shown(path: Path) -> str:
    """``path`` relative to the working directory when it is inside it."""
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


@contextmanager
def only_user_of(data: Path) -> Iterator[None]:
    """Hold .data/lock for as long as the servers run: a second `make up` in the
    same checkout stops here instead of opening the same files. The lock goes
    with the process, however it ends."""
    data.mkdir(parents=True, exist_ok=True)
    with (data / "lock").open("a+") as lock:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            lock.seek(0)
            raise ServiceError(
                f"another `make up` (pid {lock.read().strip() or '?'}) is using {shown(data)}: "
                "stop it first"
            ) from None
        lock.truncate(0)
        lock.write(f"{os.getpid()}\n")
        lock.flush()
        yield


def run(command: Sequence[str], env: dict[str, str]) -> int:
    """Run ``command`` to its end and return its exit status (128 + N for signal N)."""
    child = subprocess.Popen(command, env=env)  # noqa: S603 - the command `make` gives

    def pass_on(signum: int, _frame: FrameType | None) -> None:
        if child.poll() is None:
            child.send_signal(signum)

    def wait_for_child(_signum: int, _frame: FrameType | None) -> None:
        """The terminal's SIGINT went to the child's process group as well."""

    signal.signal(signal.SIGINT, wait_for_child)
    signal.signal(signal.SIGTERM, pass_on)
    signal.signal(signal.SIGHUP, pass_on)
    code = child.wait()
    return 128 - code if code < 0 else code


def up(data: Path, pg_port: int, redis_port: int, command: Sequence[str]) -> int:
    env = dict(os.environ)
    exports = []
    with ExitStack() as stack:
        if not (env.get("DATABASE_URL") and env.get("REDIS_URL")):
            stack.enter_context(only_user_of(data))
        if env.get("DATABASE_URL"):
            say(f"Database: {masked(env['DATABASE_URL'])} (DATABASE_URL)")
        else:
            postgres = Postgres(data / "postgres", pg_port)
            if postgres.initialise():
                say(f"Database: created a PostgreSQL cluster in {shown(postgres.data)}")
            stack.callback(stop, postgres)
            postgres.start()
            postgres.create_database(DATABASE)
            env["DATABASE_URL"] = postgres.url(DATABASE)
            exports.append(f"export DATABASE_URL='{env['DATABASE_URL']}'")
            say(
                f"Database: embedded PostgreSQL {Postgres.version()} on 127.0.0.1:{pg_port}, "
                f"data in {shown(postgres.home)} (no DATABASE_URL set)"
            )
        if env.get("REDIS_URL"):
            say(f"Broker:   {masked(env['REDIS_URL'])} (REDIS_URL)")
        else:
            broker = Redis(data / "redis", redis_port)
            stack.callback(stop, broker)
            broker.start()
            env["REDIS_URL"] = broker.url
            exports.append(f"export REDIS_URL='{env['REDIS_URL']}'")
            say(
                f"Broker:   embedded Redis {Redis.version()} on 127.0.0.1:{redis_port}, "
                f"data in {shown(broker.home)} (no REDIS_URL set)"
            )
        if exports:
            stack.enter_context(env_file(data / "env", exports))
        return run(command, env)
    raise AssertionError("unreachable")  # ExitStack swallows no exception


@contextmanager
def env_file(path: Path, exports: list[str]) -> Iterator[None]:
    """The URLs of the servers running now, for `. .data/env` in another shell
    (mode 0600: they hold passwords); removed when the servers stop."""
    path.unlink(missing_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "w") as out:
        out.write(f"# The servers of the `make up` running now (pid {os.getpid()}).\n")
        out.write("\n".join(exports) + "\n")
    try:
        yield
    finally:
        path.unlink(missing_ok=True)


def stop(server: Postgres | Redis) -> None:
    if server.running:
        code = server.stop()
        how = "stopped" if code == 0 else f"stopped (exit status {code}; see {server.log})"
        say(f"{server.name} {how}.")


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m dev", description=__doc__.split("\n")[0])
    modes = parser.add_subparsers(dest="mode", required=True)
    for_up = modes.add_parser("up", help="the servers of `make up`, data kept in --data")
    for_up.add_argument("--data", type=Path, default=Path(".data"))
    for_up.add_argument("--pg-port", type=int, default=15432)
    for_up.add_argument("--redis-port", type=int, default=16379)
    for_up.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND ...")
    args = parser.parse_args(argv)
    command = args.command[1:] if args.command[:1] == ["--"] else args.command
    if not command:
        parser.error("give the command to run after --")
    try:
        return up(args.data, args.pg_port, args.redis_port, command)
    except ServiceError as exc:
        say(f"python -m dev: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:  # Ctrl-C while the servers were starting; they are stopped
        return 128 + signal.SIGINT


if __name__ == "__main__":
    sys.exit(main())
