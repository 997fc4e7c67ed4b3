"""Shared fixtures: a fresh PostgreSQL database migrated by Alembic (on the
server TEST_DATABASE_ADMIN_URL names, else on an embedded one of each pytest
process's own), the gateway over ASGI, and tenants with real tokens.

Integration tests commit for real (another process, such as a uvicorn or a
Celery worker, must see the data) and every table is truncated after each test.
"""

from __future__ import annotations

import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, create_engine, text
from sqlalchemy.engine import make_url

from dev.servers import Postgres, free_port
from gateway import tenancy
from gateway.app import create_app
from gateway.cli import migrate
from gateway.settings import Settings
from models.tenants import Plan

SCIM_JSON = "application/scim+json"

# The PostgreSQL of this pytest process, when TEST_DATABASE_ADMIN_URL names none.
_embedded: Postgres | None = None


def admin_database_url() -> str:
    """The server the suite makes its databases on: TEST_DATABASE_ADMIN_URL, else
    a throwaway embedded PostgreSQL of this pytest process's own (dev/servers.py,
    without fsync), started on first use and stopped when pytest ends. Even
    where the machine runs a PostgreSQL the embedded one is faster
    (docs/development.md, "The test suite's PostgreSQL")."""
    global _embedded
    if url := os.environ.get("TEST_DATABASE_ADMIN_URL"):
        return url
    if _embedded is None:
        home = Path(tempfile.mkdtemp(prefix="simpleams-test-postgres-"))
        server = Postgres(home, free_port(), password=False, durable=False)
        server.start()
        _embedded = server
    return _embedded.url()


def pytest_unconfigure(config: pytest.Config) -> None:
    if _embedded is not None:
        _embedded.stop()
        shutil.rmtree(_embedded.home, ignore_errors=True)


@contextmanager
def throwaway_database(prefix: str) -> Iterator[str]:
    """The URL of a new, empty database, dropped afterwards (its sessions too)."""
    name = f"{prefix}_{uuid.uuid4().hex[:10]}"
    admin_url = admin_database_url()
    admin = create_engine(admin_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(text(f'CREATE DATABASE "{name}"'))
    try:
        yield make_url(admin_url).set(database=name).render_as_string(hide_password=False)
    finally:
        with admin.connect() as conn:
            conn.execute(text(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))
        admin.dispose()


@pytest.fixture(scope="session")
def database_url() -> Iterator[str]:
    """A throwaway database, created and migrated once per test session."""
    with throwaway_database("simpleams_test") as url:
        migrate(Settings(database_url=url))
        yield url


@pytest.fixture(scope="session")
def db(database_url: str) -> Iterator[Engine]:
    engine = create_engine(database_url)
    yield engine
    engine.dispose()


@pytest.fixture(autouse=True)
def _clean_tables(request: pytest.FixtureRequest) -> Iterator[None]:
    yield
    if "db" in request.fixturenames:
        engine: Engine = request.getfixturevalue("db")
        with engine.begin() as conn:
            conn.execute(
                text("TRUNCATE tenants, scim_credentials, users, provisioning_events CASCADE")
            )


@pytest.fixture(scope="session")
def settings(database_url: str) -> Settings:
    return Settings(database_url=database_url, base_domain="simpleams.test")


@pytest.fixture(scope="session")
async def _session_app(settings: Settings) -> AsyncIterator[Any]:
    application = create_app(settings)
    yield application
    await application.state.engine.dispose()


@pytest.fixture
def app(_session_app: Any) -> Any:
    """The gateway, shared by the session, with a fresh failed-auth throttle per test."""
    _session_app.state.auth_throttle.clear()
    return _session_app


@dataclass
class TenantHandle:
    slug: str
    token: str

    @property
    def headers(self) -> dict[str, str]:
        return {"Authorization": f"Bearer {self.token}", "Content-Type": SCIM_JSON}


def make_tenant(
    db: Engine, slug: str, plan: Plan = Plan.business, enable: bool = True
) -> TenantHandle:
    """The one way tests set up a tenant: named after its slug, with a SCIM token
    (SCIM enabled) unless ``enable`` is False. A plan other than Business is set
    after the token is issued, as a downgrade would leave it."""
    with db.begin() as conn:
        tenancy.create_tenant(conn, slug, slug.title(), Plan.business if enable else plan)
        token = tenancy.issue_token(conn, slug).token if enable else ""
        if plan is not Plan.business:
            tenancy.set_plan(conn, slug, plan)
    return TenantHandle(slug=slug, token=token)


@pytest.fixture
def tenant(db: Engine) -> TenantHandle:
    return make_tenant(db, "acme")


def scim_client(app: Any, headers: Mapping[str, str] | None = None) -> httpx2.AsyncClient:
    """An IdP talking to the gateway through its ASGI interface; ``headers`` are
    sent with every request (a tenant's ``headers`` carry its token)."""
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://localhost/scim/v2",
        headers=headers,
    )


@pytest.fixture
async def client(app: Any, tenant: TenantHandle) -> AsyncIterator[httpx2.AsyncClient]:
    """The tenant's IdP."""
    async with scim_client(app, tenant.headers) as http:
        yield http


@pytest.fixture
async def anonymous(app: Any, db: Engine) -> AsyncIterator[httpx2.AsyncClient]:
    async with scim_client(app) as http:
        yield http


def user_body(user_name: str, **extra: Any) -> dict[str, Any]:
    """A realistic create body, as Okta sends it."""
    local = user_name.split("@")[0]
    body: dict[str, Any] = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"],
        "userName": user_name,
        "name": {"givenName": local.title(), "familyName": "Example"},
        "emails": [{"primary": True, "value": user_name, "type": "work"}],
        "displayName": f"{local.title()} Example",
        "active": True,
    }
    body.update(extra)
    return body
