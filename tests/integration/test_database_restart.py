"""PostgreSQL restarted under a running gateway: 503 while it is down, recovery
without a restart once it is back, no acknowledged write lost."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import create_engine, text

from gateway.cli import migrate
from gateway.settings import Settings
from tests.conftest import make_tenant, user_body
from tests.integration.live_server import running_gateway
from tests.integration.pipeline import wait_for
from tests.integration.private_postgres import PrivatePostgres


@pytest.fixture
def postgres() -> Iterator[PrivatePostgres]:
    server = PrivatePostgres()
    server.start()
    yield server
    server.cleanup()


def test_the_gateway_answers_503_while_postgres_is_down_and_recovers_by_itself(
    postgres: PrivatePostgres, tmp_path: Path
) -> None:
    migrate(Settings(database_url=postgres.url))
    engine = create_engine(postgres.url)
    token = make_tenant(engine, "acme").token
    engine.dispose()  # the restart would leave this pool with dead connections

    with running_gateway(postgres.url, tmp_path / "gateway.log") as url:
        http = httpx2.Client(
            base_url=f"{url}/scim/v2", headers={"Authorization": f"Bearer {token}"}, timeout=30
        )
        acknowledged = []
        for n in range(5):
            response = http.post("/Users", json=user_body(f"before{n}@acme.test"))
            assert response.status_code == 201
            acknowledged.append(response.json()["userName"])

        postgres.stop()
        for attempt in range(3):
            started = time.monotonic()
            response = http.post("/Users", json=user_body(f"during{attempt}@acme.test"))
            took = time.monotonic() - started
            assert response.status_code == 503, response.text
            assert response.headers["retry-after"]
            assert response.json()["status"] == "503"
            assert took < 10, f"answered after {took:.1f} s"

        postgres.start()

        def creates() -> httpx2.Response | None:
            response = http.post("/Users", json=user_body("after@acme.test"))
            return response if response.status_code == 201 else None

        # Recovers within seconds, the gateway process untouched.
        wait_for(creates, "the gateway to write again after the restart", timeout=20)
        acknowledged.append("after@acme.test")
        listed = http.get("/Users", params={"count": 100}).json()
        http.close()

    assert sorted(u["userName"] for u in listed["Resources"]) == sorted(acknowledged)
    with engine.connect() as conn:
        names = conn.execute(text("SELECT user_name FROM users ORDER BY user_name")).scalars().all()
        events = conn.execute(text("SELECT count(*) FROM provisioning_events")).scalar_one()
    engine.dispose()
    assert sorted(names) == sorted(acknowledged)  # nothing acknowledged lost, nothing half-written
    assert events == len(acknowledged)
