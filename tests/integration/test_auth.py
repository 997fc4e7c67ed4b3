"""Bearer authentication, tenancy and the Business-plan gate."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from gateway import tenancy
from models.tenants import Plan
from tests.conftest import TenantHandle, make_tenant

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def assert_401(response: httpx2.Response) -> None:
    assert response.status_code == 401
    assert response.headers["www-authenticate"].startswith("Bearer")
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == "401"
    assert body["detail"]


@pytest.mark.parametrize(
    "authorization",
    [
        None,
        "",
        "Bearer",
        "Basic dXNlcjpwYXNz",
        "Bearer not-a-simpleams-token",
        # Well-formed prefix, wrong checksum.
        "Bearer sams_scim_" + "A" * 46,
    ],
)
async def test_missing_or_malformed_tokens_get_401(
    anonymous: httpx2.AsyncClient, authorization: str | None
) -> None:
    headers = {"Authorization": authorization} if authorization is not None else {}
    assert_401(await anonymous.get("/Users", headers=headers))


async def test_an_unknown_well_formed_token_gets_401(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle
) -> None:
    from gateway.tokens import generate_token

    assert_401(
        await anonymous.get("/Users", headers={"Authorization": f"Bearer {generate_token()}"})
    )


async def test_a_rotated_out_token_stops_working_and_the_new_one_works(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle, db: Engine
) -> None:
    with db.begin() as conn:
        new = tenancy.rotate_token(conn, tenant.slug).token

    assert_401(await anonymous.get("/Users", headers={"Authorization": f"Bearer {tenant.token}"}))
    ok = await anonymous.get("/Users", headers={"Authorization": f"Bearer {new}"})
    assert ok.status_code == 200


async def test_a_disabled_integration_rejects_its_token(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle, db: Engine
) -> None:
    with db.begin() as conn:
        tenancy.disable(conn, tenant.slug)
    assert_401(await anonymous.get("/Users", headers={"Authorization": f"Bearer {tenant.token}"}))


@pytest.mark.parametrize("plan", [Plan.free, Plan.pro])
async def test_scim_is_a_business_plan_feature(
    anonymous: httpx2.AsyncClient, db: Engine, plan: Plan
) -> None:
    handle = make_tenant(db, "smallco", plan=plan)  # the token was issued before the downgrade

    response = await anonymous.get("/Users", headers={"Authorization": f"Bearer {handle.token}"})

    assert response.status_code == 403
    assert response.json()["status"] == "403"
    assert "Business" in response.json()["detail"]


async def test_enabling_scim_on_a_non_business_plan_is_refused(db: Engine) -> None:
    make_tenant(db, "freeco", plan=Plan.free, enable=False)
    with pytest.raises(tenancy.OperatorError, match="Business"), db.begin() as conn:
        tenancy.issue_token(conn, "freeco")


async def test_on_a_tenant_host_the_token_must_belong_to_that_tenant(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle, db: Engine
) -> None:
    other = make_tenant(db, "globex")
    auth = {"Authorization": f"Bearer {tenant.token}"}

    own = await anonymous.get("/Users", headers={**auth, "Host": "acme.simpleams.test"})
    assert own.status_code == 200
    assert_401(await anonymous.get("/Users", headers={**auth, "Host": "globex.simpleams.test"}))
    # Other hosts (localhost, a load balancer) rely on the token alone.
    assert (
        await anonymous.get("/Users", headers={**auth, "Host": "10.0.0.5:8000"})
    ).status_code == 200
    assert other.token != tenant.token


async def test_meta_location_uses_the_tenant_host_over_https(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle
) -> None:
    from tests.conftest import user_body

    headers = {**tenant.headers, "Host": "acme.simpleams.test"}
    created = await anonymous.post("/Users", json=user_body("loc@acme.test"), headers=headers)
    assert created.headers["location"].startswith("https://acme.simpleams.test/scim/v2/Users/")


async def test_last_use_is_recorded_without_a_write_per_request(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    with db.connect() as conn:
        assert conn.execute(text("SELECT last_used_at FROM scim_credentials")).scalar_one() is None
    for _ in range(3):
        assert (await client.get("/Users")).status_code == 200
    with db.connect() as conn:
        first = conn.execute(text("SELECT last_used_at FROM scim_credentials")).scalar_one()
        assert first is not None
    assert (await client.get("/Users")).status_code == 200
    with db.connect() as conn:
        # Coalesced: a second request within the resolution window writes nothing.
        assert conn.execute(text("SELECT last_used_at FROM scim_credentials")).scalar_one() == first


async def test_only_the_token_hash_is_stored(tenant: TenantHandle, db: Engine) -> None:
    import hashlib

    with db.connect() as conn:
        row: Any = conn.execute(text("SELECT token_hash, token_prefix FROM scim_credentials")).one()
    assert row.token_hash == hashlib.sha256(tenant.token.encode()).hexdigest()
    assert tenant.token not in row.token_hash
    assert tenant.token.startswith(row.token_prefix) and len(row.token_prefix) < 20


async def test_repeated_bad_tokens_get_429_but_a_valid_token_gets_through(
    app: Any, tenant: TenantHandle
) -> None:
    from gateway.tokens import generate_token

    def client_from(address: str) -> httpx2.AsyncClient:
        transport = httpx2.ASGITransport(app=app, client=(address, 40000))
        return httpx2.AsyncClient(transport=transport, base_url="http://localhost/scim/v2")

    async with client_from("203.0.113.7") as scanner, client_from("203.0.113.8") as other:
        for _ in range(20):
            assert_401(await scanner.get("/Users", headers={"Authorization": "Bearer nope"}))
        forged = {"Authorization": f"Bearer {generate_token()}"}
        throttled = await scanner.get("/Users", headers=forged)
        assert throttled.status_code == 429
        assert int(throttled.headers["retry-after"]) > 0
        assert throttled.json()["status"] == "429"
        # The IdP behind the same address keeps working (Entra quarantines on
        # 429): from a throttled address a token never seen before is looked up
        # at most once a second (gateway/auth.py), so it gets through within one.
        valid = {"Authorization": f"Bearer {tenant.token}"}
        async with asyncio.timeout(5):
            while (ok := await scanner.get("/Users", headers=valid)).status_code != 200:
                assert ok.status_code == 429
                await asyncio.sleep(0.2)  # the IdP's retry, as Retry-After asks
        # Once known, it is never throttled again.
        for _ in range(5):
            assert (await scanner.get("/Users", headers=valid)).status_code == 200
        assert_401(await other.get("/Users", headers={"Authorization": "Bearer nope"}))
