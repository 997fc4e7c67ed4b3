"""SCIM tokens and admin sessions are bound to their tenant's host by one rule
(models/tenant_addresses.py ``TenantAddresses.serves``)."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import Engine

from tests.conftest import TenantHandle
from tests.integration.admin_client import SESSION_COOKIE, browser, create_admin, sign_in

ADMIN = "admin@acme.test"
HOSTS = {
    "acme.simpleams.test": True,
    "localhost": True,
    "globex.simpleams.test": False,
    # A deeper name under the base domain is no tenant's host.
    "x.acme.simpleams.test": False,
}


async def test_tokens_and_sessions_work_on_the_same_hosts(
    app: Any, db: Engine, tenant: TenantHandle
) -> None:
    create_admin(db, tenant.slug, ADMIN)
    async with browser(app, base_url="http://acme.simpleams.test") as http:
        cookie = {"Cookie": f"{SESSION_COOKIE}={await sign_in(http, None, ADMIN)}"}
    for host, served in HOSTS.items():
        async with httpx2.AsyncClient(
            transport=httpx2.ASGITransport(app=app), base_url=f"http://{host}"
        ) as scim:
            users = await scim.get("/scim/v2/Users", headers=tenant.headers)
        async with browser(app, base_url=f"http://{host}", headers=cookie) as admin:
            staff = await admin.get("/staff")
        assert (users.status_code, staff.status_code) == ((200, 200) if served else (401, 303)), (
            host
        )
