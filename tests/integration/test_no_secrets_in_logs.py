"""No token, admin password, session cookie, email address or name ever reaches a
log line or an error body, in either log format (SIMPLEAMS_LOG_FORMAT)."""

from __future__ import annotations

import json
import re
from pathlib import Path

import httpx2
import pytest
from sqlalchemy import Engine

from gateway.admin import accounts
from gateway.tokens import generate_token
from tests.conftest import TenantHandle, make_tenant, user_body
from tests.integration.live_server import running_gateway

FORMATS = ["text", "json"]


@pytest.fixture(params=FORMATS)
def log_format(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """The gateway the test starts logs in this format."""
    chosen: str = request.param
    monkeypatch.setenv("SIMPLEAMS_LOG_FORMAT", chosen)
    return chosen


def logged(log: Path, log_format: str) -> str:
    """What the log says, as text to search: JSON lines decoded (a secret escaped
    in JSON, ``\u00e9`` or ``\"``, is still found), each line checked to be JSON."""
    text = log.read_text()
    if log_format == "text":
        assert not text.startswith("{"), text[:200]
        return text
    decoded = [json.loads(line) for line in text.splitlines()]
    assert decoded and all(isinstance(record, dict) for record in decoded)
    return "\n".join(json.dumps(record, ensure_ascii=False) for record in decoded)


def test_tokens_never_reach_logs_or_error_bodies(
    database_url: str, tenant: TenantHandle, tmp_path: Path, log_format: str
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
        # Personal data in a path (an IdP that puts an address where the id goes)
        # and in a filter: the route template is logged, never either.
        assert http.get("/Users/sec@acme.test", headers=good).status_code == 404
        found = http.get("/Users", params={"filter": 'userName eq "sec@acme.test"'}, headers=good)
        assert found.json()["totalResults"] == 1
    text = logged(log, log_format)
    assert "POST /scim/v2/Users" in text  # the log really was written
    assert "/scim/v2/Users/{id}" in text
    for secret in (tenant.token, wrong, tenant.token[len("sams_scim_") :]):
        assert secret not in text
        assert all(secret not in body for body in bodies)
    for personal in ("sec@acme.test", "Sec Example", "Example"):
        assert personal not in text


def test_admin_passwords_session_cookies_and_new_tokens_never_reach_logs(
    database_url: str, db: Engine, tmp_path: Path, log_format: str
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
    text = logged(log, log_format)
    assert "POST /settings/integrations/scim" in text  # the log really was written
    assert "tenant=initech" in text or '"tenant": "initech"' in text  # and said whose
    for secret in (password, cookie, token[0], token[0][len("sams_scim_") :], "it@initech.test"):
        assert secret not in text
