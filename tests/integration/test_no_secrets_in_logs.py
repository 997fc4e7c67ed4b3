"""No token, admin password or session cookie ever reaches a log line or an error body."""

from __future__ import annotations

import re
from pathlib import Path

import httpx2
from sqlalchemy import Engine

from gateway.admin import accounts
from gateway.tokens import generate_token
from tests.conftest import TenantHandle, make_tenant, user_body
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


def test_admin_passwords_session_cookies_and_new_tokens_never_reach_logs(
    database_url: str, db: Engine, tmp_path: Path
) -> None:
    make_tenant(db, "initech", enable=False)
    password = "correct horse battery staple"
    with db.begin() as conn:
        accounts.create_admin(conn, "initech", "it@initech.test", password)
    log = tmp_path / "gateway.log"
    with running_gateway(database_url, log) as url, httpx2.Client(base_url=url, timeout=30) as http:

        def csrf(page: str) -> str:
            found = re.search(r'name="csrf_token" value="([^"]+)"', page)
            assert found is not None
            return found[1]

        for attempt in (password + "!", password):
            answer = http.post(
                "/login",
                data={
                    "workspace": "initech",
                    "email": "it@initech.test",
                    "password": attempt,
                    "csrf_token": csrf(http.get("/login").text),
                },
            )
        assert answer.status_code == 303
        cookie = http.cookies["sams_session"]
        card = http.get("/settings/integrations/scim").text
        issued = http.post(
            "/settings/integrations/scim", data={"enabled": "on", "csrf_token": csrf(card)}
        )
        token = re.search(r"sams_scim_[0-9A-Za-z]{46}", issued.text)
        assert token is not None
    text = log.read_text()
    assert "POST /settings/integrations/scim" in text  # the log really was written
    for secret in (password, cookie, token[0], token[0][len("sams_scim_") :]):
        assert secret not in text
