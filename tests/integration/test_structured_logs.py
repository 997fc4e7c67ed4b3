"""SIMPLEAMS_LOG_FORMAT=json: the real processes write one JSON object per line,
and each line carries the context it was logged in (observability/logs.py):
the request's id, tenant and route template, the access line's status, a
side effect's effect and events."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx2
import pytest
from aiosmtpd.controller import Controller
from sqlalchemy import Engine

from gateway import staff_history, tenancy
from tests.conftest import TenantHandle, user_body
from tests.db import rows, scalar
from tests.integration.live_server import free_port, running_gateway
from tests.integration.pipeline import Pipeline, pipeline_processes, settled, wait_for

ADMINS = "it-admins@acme.test"
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}

FINISHED = re.compile(r"Task simpleams\.\w+\.\w+\[[^\]]+\] (succeeded|raised)")
UNKNOWN_ATTRIBUTE = {"Operations": [{"op": "replace", "value": {"favouriteBiscuit": "x"}}]}


def json_lines(log: Path) -> list[dict[str, Any]]:
    """Every line of ``log``, each of which must be one JSON object."""
    parsed = []
    for number, line in enumerate(log.read_text().splitlines(), 1):
        try:
            record = json.loads(line)
        except ValueError:
            pytest.fail(f"{log.name}, line {number}, is not JSON: {line}")
        assert isinstance(record, dict), f"{log.name}, line {number}: {line}"
        assert {"timestamp", "level", "logger", "message"} <= record.keys(), line
        parsed.append(record)
    assert parsed, f"{log} is empty"
    return parsed


def test_web_lines_carry_the_request_id_tenant_route_and_status(
    database_url: str, tenant: TenantHandle, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMPLEAMS_LOG_FORMAT", "json")
    log = tmp_path / "gateway.log"
    with (
        running_gateway(database_url, log) as url,
        httpx2.Client(base_url=f"{url}/scim/v2", headers=tenant.headers, timeout=30) as http,
    ):
        created = http.post("/Users", json=user_body("json.person@acme.test"))
        assert created.status_code == 201
        user_id = created.json()["id"]
        read = http.get(f"/Users/{user_id}", headers={"X-Request-Id": "read-1"})
        assert read.status_code == 200
        # Changes nothing: the gateway logs the attribute it ignored, mid-request.
        ignored = http.patch(f"/Users/{user_id}", json=UNKNOWN_ATTRIBUTE)
        assert ignored.status_code == 200
        refused = http.get("/Users", headers={"Authorization": "Bearer nope"})
        assert refused.status_code == 401
    records = json_lines(log)
    access = [r for r in records if r["logger"] == "simpleams.gateway.access"]

    def access_line(request_id: str) -> dict[str, Any]:
        [line] = [r for r in access if r.get("request_id") == request_id]
        return line

    line = access_line("read-1")
    assert line["tenant"] == tenant.slug
    assert line["route"] == "/scim/v2/Users/{id}"
    assert line["status"] == 200 and isinstance(line["duration_ms"], float)
    assert line["level"] == "INFO"
    assert '"GET /scim/v2/Users/{id}" 200' in line["message"]
    assert user_id not in json.dumps(records)  # the route template, never the path with the id

    line = access_line(created.headers["x-request-id"])
    assert (line["route"], line["status"], line["tenant"]) == ("/scim/v2/Users", 201, tenant.slug)

    # A line logged while handling the request, by the SCIM layer, carries the same context.
    [noted] = [r for r in records if r["message"].startswith("write changed nothing")]
    assert noted["request_id"] == ignored.headers["x-request-id"]
    assert (noted["tenant"], noted["route"]) == (tenant.slug, "/scim/v2/Users/{id}")
    assert "favouriteBiscuit" in noted["message"]
    assert access_line(ignored.headers["x-request-id"])["status"] == 200

    # Refused before routing and before a tenant is known: neither is claimed.
    line = access_line(refused.headers["x-request-id"])
    assert line["status"] == 401 and "tenant" not in line and "route" not in line
    assert '"GET /scim/v2/Users" 401' in line["message"]

    # The process's own lines (uvicorn's) are JSON too, outside any request.
    started = [r for r in records if r["logger"].startswith("uvicorn")]
    assert started and all("request_id" not in r for r in started)
    assert "json.person" not in log.read_text()


class RefusingSmtp:
    """An SMTP server that refuses every recipient for good, as a relay refuses
    an unknown mailbox: the reply names the address, so the error does too."""

    def __init__(self) -> None:
        self.port = free_port()
        self.refused: list[str] = []

    @property
    def url(self) -> str:
        return f"smtp://127.0.0.1:{self.port}"

    async def handle_RCPT(
        self, server: Any, session: Any, envelope: Any, address: str, options: Any
    ) -> str:
        self.refused.append(address)
        return f"550 5.1.1 <{address}>: no such mailbox"


@pytest.fixture
def pipeline(database_url: str, tmp_path: Path) -> Iterator[Pipeline]:
    smtp = RefusingSmtp()
    controller = Controller(smtp, hostname="127.0.0.1", port=smtp.port)
    controller.start()
    try:
        with pipeline_processes(database_url, tmp_path, smtp) as running:
            yield running
    finally:
        controller.stop()


async def test_side_effect_lines_carry_the_effect_and_events(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, pipeline: Pipeline
) -> None:
    """A worker and a relay logging JSON: every line of a side-effect task,
    Celery's own included, names the effect and the events; the dead letter
    of a leaver alert the mail server refused names its event, and not the
    address it was refused for."""
    with db.begin() as conn:
        tenancy.set_notify_email(conn, tenant.slug, ADMINS)
    created = [
        (await client.post("/Users", json=user_body(f"fx{n}@acme.test"))).json() for n in range(2)
    ]
    with db.begin() as conn:
        staff_history.record_checkout(conn, tenant.slug, "fx1@acme.test", "LAPTOP-9")
    left = await client.patch(f"/Users/{created[1]['id']}", json=DEACTIVATE)
    assert left.status_code == 200
    ids = [row.id for row in rows(db, "SELECT id FROM provisioning_events ORDER BY id")]
    worker = pipeline.start("worker", SIMPLEAMS_LOG_FORMAT="json")
    relay = pipeline.start("relay", SIMPLEAMS_LOG_FORMAT="json")
    wait_for(lambda: settled(db), "every event settled, the leaver alert as a dead letter")
    # One task per effect, all three logged as finished (notify's as raised).
    wait_for(lambda: len(FINISHED.findall(worker.output())) >= 3, "how each task went")
    assert pipeline.smtp.refused == [ADMINS]

    records = json_lines(worker.log)  # read while the worker runs (docs/development.md, "Logs")
    finished = [r for r in records if FINISHED.search(r["message"])]
    assert {r["effect"] for r in finished} == {"audit", "checkout_lock", "notify"}
    assert all(r["event_ids"] == ids for r in finished)
    [dead] = [r for r in records if "failed for good" in r["message"]]
    assert (dead["effect"], dead["event_id"], dead["level"]) == ("notify", ids[-1], "ERROR")
    assert dead["event_ids"] == ids and "PermanentError" in dead["message"]
    # Outside a task (a task received, by the worker's main process) there is no effect.
    assert any(r["message"].endswith("received") and "effect" not in r for r in records)
    for personal in (ADMINS, "@acme.test", "Fx1"):
        assert personal not in worker.output()
    # ...while the dead letter keeps the whole error, for `simpleams events failed`.
    assert ADMINS in scalar(db, "SELECT error FROM side_effect_runs WHERE status = 'failed'")

    assert any(r["message"].startswith("published") for r in json_lines(relay.log))
