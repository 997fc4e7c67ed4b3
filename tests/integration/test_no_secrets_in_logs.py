"""No token ever reaches a log line or an error body."""

from __future__ import annotations

from pathlib import Path

import httpx2

from gateway.auth import generate_token
from tests.conftest import TenantHandle, user_body
from tests.integration.live_server import running_gateway


def test_tokens_never_reach_logs_or_error_bodies(
    database_url: str, tenant: TenantHandle, tmp_path: Path
) -> None:
    log = tmp_path / "gateway.log"
    wrong = generate_token()
    bodies = []
    with (
        running_gateway(database_url, log) as url,
        httpx2.Client(base_url=f"{url}/scim/v2", timeout=30) as http,
    ):
        good = {"Authorization": f"Bearer {tenant.token}"}
        created = http.post("/Users", json=user_body("sec@acme.test"), headers=good)
        assert created.status_code == 201
        bodies.append(created.text)
        for headers in (
            {"Authorization": f"Bearer {wrong}"},
            {"Authorization": f"Bearer {tenant.token}x"},
            {"Authorization": f"Basic {tenant.token}"},
        ):
            refused = http.get("/Users", headers=headers)
            assert refused.status_code == 401
            bodies.append(refused.text)
        # A read with a query string: uvicorn logs the URL, never the headers.
        bodies.append(http.get("/Users", params={"filter": "active eq null"}, headers=good).text)
    text = log.read_text()
    assert "POST /scim/v2/Users" in text  # the log really was written
    for secret in (tenant.token, wrong, tenant.token[len("sams_scim_") :]):
        assert secret not in text
        assert all(secret not in body for body in bodies)
