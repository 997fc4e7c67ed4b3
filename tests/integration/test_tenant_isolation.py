"""Tenant A's token can never read, find, change or delete tenant B's users,
and its errors do not reveal whether one of B's ids exists."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
from sqlalchemy import Engine, text

from tests.conftest import TenantHandle, make_tenant, scim_client, user_body


async def test_another_tenants_users_are_invisible_and_untouchable(
    client: httpx2.AsyncClient, app: Any, db: Engine, tenant: TenantHandle
) -> None:
    victim = (await client.post("/Users", json=user_body("vic@acme.test"))).json()
    intruder_tenant = make_tenant(db, "globex")
    async with scim_client(app, intruder_tenant.headers) as intruder:
        theirs, nobody = f"/Users/{victim['id']}", f"/Users/{uuid.uuid4()}"
        patch = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
        for method, kwargs in (
            ("GET", {}),
            ("PUT", {"json": user_body("vic@acme.test", title="Owned")}),
            ("PATCH", {"json": patch}),
            ("DELETE", {}),
        ):
            on_theirs = await intruder.request(method, theirs, **kwargs)
            on_nobody = await intruder.request(method, nobody, **kwargs)
            assert on_theirs.status_code == on_nobody.status_code == 404
            # The same answer as for an id that exists nowhere: nothing is revealed.
            assert on_theirs.json() == on_nobody.json()

        for lookup in (
            f'id eq "{victim["id"]}"',
            'userName eq "vic@acme.test"',
            'emails[value eq "vic@acme.test"]',
            "userName pr",
        ):
            found = await intruder.get("/Users", params={"filter": lookup})
            assert found.json()["totalResults"] == 0, lookup
            for search in ("/Users/.search", "/.search"):
                searched = await intruder.post(search, json={"filter": lookup})
                assert searched.json()["totalResults"] == 0, (search, lookup)
        assert (await intruder.get("/Users")).json()["totalResults"] == 0

        # A's token on B's host is refused outright.
        on_their_host = await intruder.get("/Users", headers={"Host": "acme.simpleams.test"})
        assert on_their_host.status_code == 401

    untouched = (await client.get(f"/Users/{victim['id']}")).json()
    assert untouched == victim
    with db.connect() as conn:
        kinds = conn.execute(text("SELECT kind FROM provisioning_events")).scalars().all()
    assert kinds == ["user.created"]
