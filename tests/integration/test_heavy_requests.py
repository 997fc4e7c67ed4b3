"""One tenant's heaviest accepted request does not stall the others.

A security review froze every tenant with one PATCH of thousands of
operations: applying it took seconds of CPU on the event loop. Now a PATCH is
bounded (gateway/scim/limits.py) and the CPU work of a PATCH, and of rendering
large group pages, runs in a worker thread. These tests measure another
tenant's reads against a real uvicorn while the heaviest accepted request of
each kind runs.
"""

from __future__ import annotations

import statistics
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import orjson
import pytest
from sqlalchemy import Engine, text

from gateway.scim.bulk import MAX_OPERATIONS
from gateway.scim.limits import MAX_PATCH_OPERATIONS, MAX_PATCH_VALUES, MAX_VALUES
from tests.conftest import make_tenant, user_body
from tests.integration.live_server import running_gateway

PATCH_URN = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK_URN = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
# Another tenant's read must stay fast while the heavy request runs.
P99_LIMIT_SECONDS = 0.1


def patch_body(operations: list[dict[str, Any]]) -> dict[str, Any]:
    return {"schemas": [PATCH_URN], "Operations": operations}


def addresses(user_name: str, count: int) -> list[dict[str, Any]]:
    local, domain = user_name.split("@")
    return [{"value": f"{local}+{n}@{domain}", "type": "other"} for n in range(count)]


def heaviest_patch(user_name: str) -> dict[str, Any]:
    """The costliest PATCH the limits accept: every operation a path filter that
    scans an attribute holding the most values allowed."""
    values = [item["value"] for item in addresses(user_name, MAX_VALUES)]
    return patch_body(
        [
            {
                "op": "replace",
                "path": f'emails[value eq "{values[n % len(values)]}"].type',
                "value": "work" if n % 2 else "home",
            }
            for n in range(MAX_PATCH_OPERATIONS)
        ]
    )


def p99(latencies: list[float]) -> float:
    return statistics.quantiles(latencies, n=100, method="inclusive")[98]


@dataclass(frozen=True)
class Gateway:
    url: str
    heavy_token: str  # the tenant sending the heavy request
    other_token: str  # the tenant whose reads are measured
    other_user: str  # one of the other tenant's users

    def client(self, token: str, timeout: float) -> httpx2.Client:
        headers = {"Authorization": f"Bearer {token}"}
        return httpx2.Client(base_url=f"{self.url}/scim/v2", headers=headers, timeout=timeout)


@contextmanager
def two_tenants(database_url: str, db: Engine, tmp_path: Path) -> Iterator[Gateway]:
    heavy, other = make_tenant(db, "heavy"), make_tenant(db, "other")
    with running_gateway(database_url, tmp_path / "gateway.log") as url:
        gateway = Gateway(url, heavy.token, other.token, "")
        with gateway.client(other.token, 60) as http:
            made = http.post("/Users", json=user_body("reader@other.test"))
            assert made.status_code == 201
        yield Gateway(url, heavy.token, other.token, made.json()["id"])


def timed_read(http: httpx2.Client, path: str) -> float:
    started = time.perf_counter()
    answer = http.get(path)
    assert answer.status_code == 200
    return time.perf_counter() - started


def assert_reads_stay_fast(
    gateway: Gateway, heavy_work: Callable[[httpx2.Client], list[int]], path: str = ""
) -> None:
    """Another tenant's read p99 while heavy_work runs stays within 100 ms of
    its p99 just before. On a quiet machine that is about 5 ms, so the target
    is 100 ms; the suite runs three processes on 2 cores, and the allowance
    follows that load instead of failing on it. Work on the event loop adds its
    whole duration (the heaviest PATCH there: 296 ms). ``path``: what the
    other tenant reads (default: one of its users)."""
    path = path or f"/Users/{gateway.other_user}"
    with gateway.client(gateway.other_token, 60) as http:
        before = [timed_read(http, path) for _ in range(40)]
    during = reads_during(gateway, heavy_work, path)
    print(f"p99 before {p99(before) * 1000:.1f} ms, during {p99(during) * 1000:.1f} ms")
    assert p99(during) < P99_LIMIT_SECONDS + p99(before)


def reads_during(
    gateway: Gateway, heavy_work: Callable[[httpx2.Client], list[int]], path: str
) -> list[float]:
    """Run heavy_work with the heavy tenant's client in a thread; meanwhile the
    other tenant reads its user, one request after another, until heavy_work is
    done. Returns the reads' latencies."""
    latencies: list[float] = []
    with (
        gateway.client(gateway.heavy_token, 300) as heavy,
        gateway.client(gateway.other_token, 60) as http,
        ThreadPoolExecutor(1) as pool,
    ):
        timed_read(http, path)  # connection warm
        running = pool.submit(heavy_work, heavy)
        while not running.done():
            latencies.append(timed_read(http, path))
        assert set(running.result()) == {200}
    assert len(latencies) >= 20
    return latencies


def test_another_tenants_reads_stay_fast_during_the_heaviest_patch(
    database_url: str, db: Engine, tmp_path: Path
) -> None:
    name = "many@heavy.test"

    def patch_five_times(http: httpx2.Client) -> list[int]:
        made = http.post("/Users", json=user_body(name, emails=addresses(name, MAX_VALUES)))
        assert made.status_code == 201
        user = made.json()["id"]
        return [
            http.patch(f"/Users/{user}", json=heaviest_patch(name)).status_code for _ in range(5)
        ]

    with two_tenants(database_url, db, tmp_path) as gateway:
        assert_reads_stay_fast(gateway, patch_five_times)


def test_another_tenants_reads_stay_fast_during_the_largest_bulk(
    database_url: str, db: Engine, tmp_path: Path
) -> None:
    operations = [
        {"method": "POST", "path": "/Users", "bulkId": f"u{n}", "data": user_body(f"b{n}@h.test")}
        for n in range(MAX_OPERATIONS)
    ]

    def bulk(http: httpx2.Client) -> list[int]:
        answer = http.post("/Bulk", json={"schemas": [BULK_URN], "Operations": operations})
        assert {op["status"] for op in answer.json()["Operations"]} == {"201"}
        return [answer.status_code]

    with two_tenants(database_url, db, tmp_path) as gateway:
        assert_reads_stay_fast(gateway, bulk)


def seed_large_groups(db: Engine, slug: str, groups: int, members: int) -> None:
    """Groups that each hold the same members, written straight to the tables."""
    with db.begin() as conn:
        tenant = conn.execute(text("SELECT id FROM tenants WHERE slug = :s"), {"s": slug}).scalar()
        conn.execute(
            text(
                "INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, email,"
                " email_key, attributes)"
                " SELECT gen_random_uuid(), :tenant, gen_random_uuid(), name, name, name, name,"
                " '{}'"
                " FROM (SELECT 'm' || n || '@heavy.test' AS name"
                " FROM generate_series(1, :members) AS n) AS names"
            ),
            {"tenant": tenant, "members": members},
        )
        conn.execute(
            text(
                "INSERT INTO groups (id, tenant_id, display_name, display_name_key)"
                " SELECT gen_random_uuid(), :tenant, 'Group ' || n, 'group ' || n"
                " FROM generate_series(1, :groups) AS n"
            ),
            {"tenant": tenant, "groups": groups},
        )
        conn.execute(
            text(
                "INSERT INTO group_members (group_id, user_id, display)"
                " SELECT g.id, u.id, u.user_name FROM groups g JOIN users u USING (tenant_id)"
                " WHERE g.tenant_id = :tenant"
            ),
            {"tenant": tenant},
        )


def test_another_tenants_reads_stay_fast_while_large_groups_are_listed(
    database_url: str, db: Engine, tmp_path: Path
) -> None:
    """20 groups of 3,000 members, listed with their members: 60,000 entries."""

    def list_three_times(http: httpx2.Client) -> list[int]:
        answers = [http.get("/Groups", params={"count": 20}) for _ in range(3)]
        for answer in answers:
            groups = answer.json()["Resources"]
            assert [len(group["members"]) for group in groups] == [3000] * 20
            assert groups[0]["members"][0]["$ref"].endswith(groups[0]["members"][0]["value"])
        return [answer.status_code for answer in answers]

    with two_tenants(database_url, db, tmp_path) as gateway:
        seed_large_groups(db, "heavy", groups=20, members=3000)
        # Probed with a read that needs no database work: each listing costs
        # PostgreSQL about 0.4 s of CPU building the members' JSON, and with the
        # suite's three processes on 2 cores a database-backed read would
        # measure that contention rather than the gateway's event loop, which
        # is what this protects (alone: GET /Users/{id} p99 25 ms during it).
        assert_reads_stay_fast(gateway, list_three_times, "/ServiceProviderConfig")


# --- The limits themselves: clear SCIM errors, nothing written. -----------------------


@pytest.fixture
async def crowded(client: httpx2.AsyncClient) -> dict[str, Any]:
    """A user whose emails hold the most values allowed."""
    name = "crowded@acme.test"
    made = await client.post("/Users", json=user_body(name, emails=addresses(name, MAX_VALUES)))
    assert made.status_code == 201
    return dict(made.json())


async def test_a_patch_over_the_operation_limit_is_400_too_many_naming_the_limit(
    client: httpx2.AsyncClient, crowded: dict[str, Any]
) -> None:
    operations = [{"op": "replace", "path": "title", "value": f"T{n}"} for n in range(101)]
    answer = await client.patch(f"/Users/{crowded['id']}", json=patch_body(operations))
    assert answer.status_code == 400
    assert answer.json()["scimType"] == "tooMany"
    assert f"at most {MAX_PATCH_OPERATIONS} operations" in answer.json()["detail"]
    assert "101" in answer.json()["detail"]
    after = await client.get(f"/Users/{crowded['id']}")
    assert after.json()["meta"]["version"] == crowded["meta"]["version"]


async def test_a_patch_carrying_too_many_values_is_400_too_many(
    client: httpx2.AsyncClient, crowded: dict[str, Any]
) -> None:
    extra = [{"value": f"p{n}@acme.test"} for n in range(MAX_PATCH_VALUES + 1)]
    answer = await client.patch(
        f"/Users/{crowded['id']}",
        json=patch_body([{"op": "replace", "path": "phoneNumbers", "value": extra}]),
    )
    assert answer.status_code == 400
    assert answer.json()["scimType"] == "tooMany"
    assert f"at most {MAX_PATCH_VALUES} values" in answer.json()["detail"]


async def test_a_patch_that_grows_an_attribute_past_its_limit_is_400_and_changes_nothing(
    client: httpx2.AsyncClient, crowded: dict[str, Any]
) -> None:
    answer = await client.patch(
        f"/Users/{crowded['id']}",
        json=patch_body(
            [
                {"op": "replace", "path": "title", "value": "Changed"},
                {"op": "add", "path": "emails", "value": [{"value": "one.more@acme.test"}]},
            ]
        ),
    )
    assert answer.status_code == 400
    assert answer.json()["scimType"] == "invalidValue"
    assert answer.json()["detail"] == (
        f"'emails' may hold at most {MAX_VALUES} values; this request gives it {MAX_VALUES + 1}."
    )
    after = (await client.get(f"/Users/{crowded['id']}")).json()
    assert after["meta"]["version"] == crowded["meta"]["version"]
    assert "title" not in after


@pytest.mark.parametrize("method", ["POST", "PUT"])
async def test_a_create_or_replace_over_the_value_limit_is_400_invalid_value(
    client: httpx2.AsyncClient, crowded: dict[str, Any], method: str
) -> None:
    name = f"{uuid.uuid4().hex[:8]}@acme.test"
    body = user_body(name, phoneNumbers=[{"value": f"+44 {n}"} for n in range(MAX_VALUES + 1)])
    if method == "POST":
        answer = await client.post("/Users", json=body)
    else:
        body["userName"] = "crowded@acme.test"
        answer = await client.put(f"/Users/{crowded['id']}", json=body)
    assert answer.status_code == 400
    assert answer.json()["scimType"] == "invalidValue"
    assert f"'phoneNumbers' may hold at most {MAX_VALUES} values" in answer.json()["detail"]
    listed = (await client.get("/Users")).json()
    assert [u["userName"] for u in listed["Resources"]] == ["crowded@acme.test"]
    assert listed["Resources"][0]["meta"]["version"] == crowded["meta"]["version"]


async def test_the_limits_are_advertised(client: httpx2.AsyncClient) -> None:
    schema = (await client.get("/Schemas/urn:ietf:params:scim:schemas:core:2.0:User")).json()
    described = {a["name"]: a.get("description", "") for a in schema["attributes"]}
    assert described["emails"].endswith(f"At most {MAX_VALUES} values.")
    assert described["phoneNumbers"].endswith(f"At most {MAX_VALUES} values.")
    assert "At most" not in described["groups"]  # read-only: not the client's to send
    user_type = (await client.get("/ResourceTypes/User")).json()
    assert f"at most {MAX_PATCH_OPERATIONS} operations" in user_type["description"]


async def test_a_user_stored_over_the_limit_can_still_be_deactivated_but_not_grown(
    client: httpx2.AsyncClient, db: Engine, crowded: dict[str, Any]
) -> None:
    """A user stored before the limit existed, with more values than it allows,
    can still be updated and deactivated (PATCH or PUT); it cannot grow."""
    phones = [{"value": f"+44 20 7946 {n:04}"} for n in range(MAX_VALUES + 5)]
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE users SET attributes = attributes || jsonb_build_object('phoneNumbers', "
                "CAST(:phones AS jsonb))"
            ),
            {"phones": orjson.dumps(phones).decode()},
        )
    user = f"/Users/{crowded['id']}"
    off = patch_body([{"op": "replace", "value": {"active": False}}])
    assert (await client.patch(user, json=off)).status_code == 200
    current = (await client.get(user)).json()
    assert len(current["phoneNumbers"]) == MAX_VALUES + 5
    body = {k: v for k, v in current.items() if k not in ("id", "meta", "groups")}
    body["active"] = True
    assert (await client.put(user, json=body)).status_code == 200
    grow = patch_body([{"op": "add", "path": "phoneNumbers", "value": [{"value": "+1 555"}]}])
    grown = await client.patch(user, json=grow)
    assert grown.status_code == 400
    assert grown.json()["scimType"] == "invalidValue"


async def test_lists_of_unmodelled_attributes_are_ignored_not_counted(
    client: httpx2.AsyncClient,
) -> None:
    """An admin's custom mapping that sends a long list (memberOf, proxyAddresses)
    is ignored, as every attribute we do not model is: never a 400."""
    many = [f"CN=Group {n},OU=Groups,DC=corp,DC=local" for n in range(MAX_PATCH_VALUES + 10)]
    body = user_body(
        "custom@acme.test",
        proxyAddresses=many,
        **{"urn:okta:custom:1.0:User": {"memberOf": many}},
    )
    made = await client.post("/Users", json=body)
    assert made.status_code == 201, made.text
    again = patch_body([{"op": "add", "path": "proxyAddresses", "value": many}])
    assert (await client.patch(f"/Users/{made.json()['id']}", json=again)).status_code == 200
