"""The `simpleams` operator command, run as ops run it: a subprocess."""

from __future__ import annotations

from sqlalchemy import Engine, text

from tests.conftest import scim_client
from tests.integration.cli import simpleams


def test_migrate_is_idempotent(database_url: str, db: Engine) -> None:
    result = simpleams(database_url, "migrate")
    assert result.returncode == 0, result.stderr
    with db.connect() as conn:
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar_one()


async def test_enable_prints_the_endpoint_and_the_token_alone_on_the_last_line(
    database_url: str, db: Engine, app: object
) -> None:
    assert (
        simpleams(database_url, "tenant", "create", "initech", "--plan", "business").returncode == 0
    )

    result = simpleams(database_url, "scim", "enable", "initech")

    assert result.returncode == 0, result.stderr
    lines = result.stdout.strip().splitlines()
    token = lines[-1]
    assert token.startswith("sams_scim_") and " " not in token
    assert "https://initech.simpleams.test/scim/v2" in result.stdout
    async with scim_client(app) as http:
        ok = await http.get("/Users", headers={"Authorization": f"Bearer {token}"})
        assert ok.status_code == 200

        rotated = simpleams(database_url, "scim", "rotate", "initech")
        assert rotated.returncode == 0
        new_token = rotated.stdout.strip().splitlines()[-1]
        assert new_token != token
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {token}"})
        ).status_code == 401
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {new_token}"})
        ).status_code == 200

        assert simpleams(database_url, "scim", "disable", "initech").returncode == 0
        assert (
            await http.get("/Users", headers={"Authorization": f"Bearer {new_token}"})
        ).status_code == 401
    with db.connect() as conn:
        hashes = conn.execute(text("SELECT token_hash FROM scim_credentials")).scalars().all()
    assert token not in hashes and new_token not in hashes


def test_operator_errors_are_clear_and_non_zero(database_url: str, db: Engine) -> None:
    unknown = simpleams(database_url, "scim", "enable", "nosuchco")
    assert unknown.returncode == 1
    assert "No tenant with the slug 'nosuchco'" in unknown.stderr

    bad_plan = simpleams(database_url, "tenant", "create", "planco", "--plan", "platinum")
    assert bad_plan.returncode == 2
    assert "invalid choice" in bad_plan.stderr

    assert simpleams(database_url, "tenant", "create", "dupco").returncode == 0
    duplicate = simpleams(database_url, "tenant", "create", "dupco")
    assert duplicate.returncode == 1 and "already exists" in duplicate.stderr

    free = simpleams(database_url, "scim", "enable", "dupco")
    assert free.returncode == 1 and "Business" in free.stderr

    bad_slug = simpleams(database_url, "tenant", "create", "Not A Slug")
    assert bad_slug.returncode == 1 and "not a valid tenant slug" in bad_slug.stderr


def test_a_database_that_is_down_is_reported_not_a_traceback() -> None:
    result = simpleams("postgresql+psycopg://root@127.0.0.1:1/nowhere", "tenant", "create", "x")
    assert result.returncode == 1
    assert "cannot reach the database at 127.0.0.1:1/nowhere" in result.stderr
    assert "Traceback" not in result.stderr


def test_demo_creates_a_business_tenant_and_prints_a_token(database_url: str, db: Engine) -> None:
    first = simpleams(database_url, "demo")
    again = simpleams(database_url, "demo")
    assert first.returncode == again.returncode == 0
    assert first.stdout.splitlines()[-1] != again.stdout.splitlines()[-1]
    with db.connect() as conn:
        plan = conn.execute(text("SELECT plan FROM tenants WHERE slug = 'demo'")).scalar_one()
    assert plan == "business"


def test_demo_sends_notifications_to_its_admin_unless_an_address_was_chosen(
    database_url: str, db: Engine
) -> None:
    first = simpleams(database_url, "demo", "acme-demo")
    assert first.returncode == 0, first.stderr
    assert "Notifications (leaver alerts, digests) go to admin@acme-demo.example" in first.stdout
    chosen = simpleams(
        database_url, "tenant", "set", "acme-demo", "--notify-email", "it@acme.example"
    )
    assert chosen.returncode == 0, chosen.stderr
    again = simpleams(database_url, "demo", "acme-demo")
    assert "go to it@acme.example" in again.stdout
    with db.connect() as conn:
        address = conn.execute(
            text("SELECT notify_email FROM tenants WHERE slug = 'acme-demo'")
        ).scalar_one()
    assert address == "it@acme.example"
