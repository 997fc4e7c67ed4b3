"""README's first command, `make up`, brings the whole service up and it works.

Run as a user runs it (no SMTP_URL set), on a database and a Redis of its
own and on spare ports: it prints the demo tenant's token, the gateway takes
a SCIM create with it, Flower asks for its password, and the create's digest
reaches the local mail sink through relay, worker and beat.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest

from tests.conftest import SCIM_JSON, throwaway_database, user_body
from tests.integration.live_server import free_port
from tests.integration.pipeline import ROOT, RedisServer, wait_for


@pytest.fixture
def fresh_database_url() -> Iterator[str]:
    """An empty database: `make up` migrates it itself."""
    with throwaway_database("simpleams_make_up") as url:
        yield url


def test_make_up_serves_scim_flower_and_mail(
    tmp_path: Path, fresh_database_url: str, redis_server: RedisServer
) -> None:
    web_port, flower_port, mail_port = free_port(), free_port(), free_port()
    env = {
        name: value
        for name, value in os.environ.items()
        # As on a fresh machine: no mail relay chosen, no Flower password, and
        # not inside the `make test` that runs this suite.
        if name not in ("SMTP_URL", "FLOWER_BASIC_AUTH", "MAKEFLAGS", "MAKELEVEL", "MFLAGS")
    }
    env.update(
        DATABASE_URL=fresh_database_url,
        REDIS_URL=redis_server.url,
        FLOWER_PORT=str(flower_port),
        # A digest right away instead of every 5 minutes.
        SIMPLEAMS_DIGEST_INTERVAL_SECONDS="1",
        SIMPLEAMS_DIGEST_CHECK_SECONDS="0.5",
    )
    log = tmp_path / "make-up.log"
    with log.open("wb") as out:
        make = subprocess.Popen(
            ["make", "up", f"PORT={web_port}", f"MAIL_PORT={mail_port}"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=subprocess.STDOUT,
            start_new_session=True,  # honcho and everything it starts, stopped together
        )
    try:

        def output() -> str:
            return log.read_text(errors="replace")

        def printed_token() -> str | None:
            assert make.poll() is None, output()[-3000:]
            text = output()
            found = re.search(r"^(sams_scim_\S+)$", text, re.MULTILINE)
            # The "Mail:" line ends what `make up` prints before the processes start.
            return found.group(1) if found and "Mail:" in text else None

        token = wait_for(printed_token, "make up to print the demo tenant's token", timeout=120)
        assert f"Gateway: http://127.0.0.1:{web_port}/scim/v2" in output()
        # The URLs it was given, and no server of its own (test_newcomer.py has those).
        assert f"Database: {fresh_database_url} (DATABASE_URL)" in output()
        assert f"Broker:   {redis_server.url} (REDIS_URL)" in output()
        assert "Notifications (leaver alerts, digests) go to admin@demo.example" in output()
        assert "Mail:    no SMTP_URL set" in output()

        with httpx2.Client(
            base_url=f"http://127.0.0.1:{web_port}/scim/v2",
            headers={"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON},
            timeout=10,
        ) as scim:

            def gateway_answers() -> bool:
                try:
                    return scim.get("/ServiceProviderConfig").status_code == 200
                except httpx2.TransportError:
                    return False

            wait_for(gateway_answers, "the gateway to answer")
            created = scim.post("/Users", json=user_body("ada@demo.example", displayName="Ada"))
            assert created.status_code == 201, created.text

        def flower_status() -> int | None:
            try:
                return httpx2.get(
                    f"http://127.0.0.1:{flower_port}/api/workers", timeout=2
                ).status_code
            except httpx2.TransportError:
                return None

        assert wait_for(flower_status, "Flower to listen") == 401

        # The digest of that create, printed by the mail sink `make up` started.
        wait_for(
            lambda: re.search(r"mail\.1 *\| .*Subject: .*created 1 user", output()),
            "the create's digest to reach the local mail sink",
        )
        assert "To: admin@demo.example" in output()
    finally:
        if make.poll() is None:
            os.killpg(make.pid, signal.SIGTERM)
            try:
                make.wait(timeout=60)
            except subprocess.TimeoutExpired:
                os.killpg(make.pid, signal.SIGKILL)
                make.wait(timeout=10)
