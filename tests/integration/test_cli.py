"""The `simpleams` operator command, run as ops run it: a subprocess."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import httpx2
from sqlalchemy import Engine, text

SIMPLEAMS = str(Path(sys.executable).parent / "simpleams")


def run(database_url: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "DATABASE_URL": database_url, "SIMPLEAMS_BASE_DOMAIN": "simpleams.test"}
    return subprocess.run(
        [SIMPLEAMS, *args], capture_output=True, text=True, env=env, timeout=60, check=False
    )


def test_migrate_is_idempotent(database_url: str, db: Engine) -> None:
    result = run(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    with db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


async def test_enable_prints_the_endpoint_and_the_token_alone_on_the_last_line(
    database_url: str, db: Engine, app: object
) -> None:
    assert run(database_url, "tenant", "create", "initech", "--plan", "business").returncode == 0

    result = run(database_url, "scim", "enable", "initech")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    token = lines[-1]
    assert token.startswith("sams_scim_") and " " not in token
    assert "https://initech.simpleams.test/scim/v2" in result.stdout
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),  # type: ignore[arg-type]
        base_url="http://localhost/scim/v2",
    ) as http:
        ok = await http.get("/Users", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200

        rotated = run(database_url, "scim", "rotate", "initech")
        assert rotated.returncode == 0
        new_token = rotated.stdout.strip().splitlines()[-1]
        assert new_token != token
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 401
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {new_token}"})
        ).status_code == 200

        assert run(database_url, "scim", "disable", "initech").returncode == 0
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {new_token}"})
        ).status_code == 401
    with db.connect() as conn:
        hashes = conn.execute(text("SELECT token_hash FROM scim_credentials")).scalars().all()
    assert token not in hashes and new_token not in hashes


def test_operator_errors_are_clear_and_non_zero(database_url: str, db: Engine) -> None:
    unknown = run(database_url, "scim", "enable", "nosuchco")
    assert unknown.returncode == 1
    assert "No tenant with the slug 'nosuchco'" in unknown.stderr

    bad_plan = run(database_url, "tenant", "create", "planco", "--plan", "platinum")
    assert bad_plan.returncode == 2
    assert "invalid choice" in bad_plan.stderr

    assert run(database_url, "tenant", "create", "dupco").returncode == 0
    duplicate = run(database_url, "tenant", "create", "dupco")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    free = run(database_url, "scim", "enable", "dupco")
    assert free.returncode == 1 and "Business" in free.stderr

    bad_slug = run(database_url, "tenant", "create", "Not A Slug")
    assert bad_slug.returncode == 1 and "not a valid tenant slug" in bad_slug.stderr


def test_a_database_that_is_down_is_reported_not_a_traceback() -> None:
    result = run("postgresql+psycopg://root@127.0.0.1:1/nowhere", "tenant", "create", "x")
    assert result.returncode == 1
    assert "cannot reach the database at 127.0.0.1:1/nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_creates_a_business_tenant_and_prints_a_token(database_url: str, db: Engine) -> None:
    first = run(database_url, "demo")
    again = run(database_url, "demo")
    assert first.returncode == again.returncode == 0
    assert first.stdout.splitlines()[-1] != again.stdout.splitlines()[-1]
    with db.connect() as conn:
        plan = conn.execute(text("SELECT plan FROM tenants WHERE slug = 'demo'")).scalar_one()
    assert plan == "business"


def test_demo_sends_notifications_to_its_admin_unless_an_address_was_chosen(
    database_url: str, db: Engine
) -> None:
    first = run(database_url, "demo", "acme-demo")
    assert first.returncode == 0, first.stderr
    assert "Notifications (leaver alerts, digests) go to admin@acme-demo.example" in first.stdout
    chosen = run(database_url, "tenant", "set", "acme-demo", "--notify-email", "it@acme.example")
    assert chosen.returncode == 0, chosen.stderr
    again = run(database_url, "demo", "acme-demo")
    assert "go to it@acme.example" in again.stdout
    with db.connect() as conn:
        address = conn.execute(
            text("SELECT notify_email FROM tenants WHERE slug = 'acme-demo'")
        ).scalar_one()
    assert address == "it@acme.example"
