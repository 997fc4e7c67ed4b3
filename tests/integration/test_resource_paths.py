"""Resource paths match case-insensitively: /scim/v2/users is /scim/v2/Users.

Microsoft's own SCIM test collection sends lowercase paths. Only the segment
right below /scim/v2 is respelled; the URLs the gateway answers with keep
the RFC 7644 spelling.
"""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from tests.conftest import user_body

BASE = "http://localhost/scim/v2"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
BULK = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


def retitle(title: str) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": [{"op": "replace", "path": "title", "value": title}]}


async def assert_found_by_search(client: httpx2.AsyncClient, path: str, filter_text: str) -> None:
    listed = await client.get(path, params={"filter": filter_text})
    assert listed.status_code == 200, listed.text
    assert listed.json()["totalResults"] == 1
    searched = await client.post(
        f"{path}/.search", json={"schemas": [SEARCH], "filter": filter_text}
    )
    assert searched.status_code == 200, searched.text
    assert searched.json()["totalResults"] == 1


@pytest.mark.parametrize("users", ["users", "USERS", "uSeRs"])
async def test_users_are_created_read_searched_changed_and_deleted_however_spelled(
    client: httpx2.AsyncClient, users: str
) -> None:
    created = await client.post(f"/{users}", json=user_body("case@acme.test"))
    assert created.status_code == 201, created.text
    user = created.json()
    location = f"{BASE}/Users/{user['id']}"
    assert created.headers["location"] == user["meta"]["location"] == location

    read = await client.get(f"/{users}/{user['id']}")
    assert read.status_code == 200, read.text
    assert read.json() == user
    await assert_found_by_search(client, f"/{users}", 'userName eq "case@acme.test"')

    patched = await client.patch(f"/{users}/{user['id']}", json=retitle("Patched"))
    assert patched.status_code == 200, patched.text
    assert patched.json()["title"] == "Patched"
    replaced = await client.put(f"/{users}/{user['id']}", json=user_body("case@acme.test"))
    assert replaced.status_code == 200, replaced.text
    assert replaced.json()["meta"]["location"] == location

    assert (await client.delete(f"/{users}/{user['id']}")).status_code == 204
    assert (await client.get(f"/Users/{user['id']}")).status_code == 404


@pytest.mark.parametrize("groups", ["groups", "GROUPS", "gRoUpS"])
async def test_groups_are_created_read_searched_changed_and_deleted_however_spelled(
    client: httpx2.AsyncClient, groups: str
) -> None:
    created = await client.post(f"/{groups}", json={"schemas": [GROUP], "displayName": "Case"})
    assert created.status_code == 201, created.text
    group = created.json()
    assert created.headers["location"] == f"{BASE}/Groups/{group['id']}"

    read = await client.get(f"/{groups}/{group['id']}")
    assert read.status_code == 200, read.text
    assert read.json()["displayName"] == "Case"
    await assert_found_by_search(client, f"/{groups}", 'displayName eq "Case"')

    rename = {
        "schemas": [PATCH],
        "Operations": [{"op": "replace", "path": "displayName", "value": "Renamed"}],
    }
    patched = await client.patch(f"/{groups}/{group['id']}", json=rename)
    assert patched.status_code in (200, 204), patched.text
    assert (await client.get(f"/Groups/{group['id']}")).json()["displayName"] == "Renamed"

    assert (await client.delete(f"/{groups}/{group['id']}")).status_code == 204
    assert (await client.get(f"/Groups/{group['id']}")).status_code == 404


@pytest.mark.parametrize("search", [".search", ".SEARCH"])
async def test_the_root_search_however_spelled(client: httpx2.AsyncClient, search: str) -> None:
    assert (await client.post("/Users", json=user_body("root@acme.test"))).status_code == 201
    found = await client.post(
        f"/{search}", json={"schemas": [SEARCH], "filter": 'userName eq "root@acme.test"'}
    )
    assert found.status_code == 200, found.text
    assert found.json()["totalResults"] == 1


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/serviceproviderconfig", "/ServiceProviderConfig"),
        ("/SERVICEPROVIDERCONFIG", "/ServiceProviderConfig"),
        ("/schemas", "/Schemas"),
        ("/SCHEMAS", "/Schemas"),
        (f"/schemas/{USER_SCHEMA}", f"/Schemas/{USER_SCHEMA}"),
        ("/resourcetypes", "/ResourceTypes"),
        ("/resourceTypes", "/ResourceTypes"),
        ("/resourcetypes/User", "/ResourceTypes/User"),
    ],
)
async def test_discovery_endpoints_however_spelled(
    client: httpx2.AsyncClient, path: str, canonical: str
) -> None:
    answer = await client.get(path)
    assert answer.status_code == 200, answer.text
    assert answer.json() == (await client.get(canonical)).json()


@pytest.mark.parametrize(("bulk", "users"), [("bulk", "users"), ("BULK", "USERS")])
async def test_bulk_however_spelled_and_its_operation_paths_too(
    client: httpx2.AsyncClient, db: Engine, bulk: str, users: str
) -> None:
    request = {
        "schemas": [BULK],
        "Operations": [
            {
                "method": "POST",
                "bulkId": "a",
                "path": f"/{users}",
                "data": user_body("bulk@acme.test"),
            },
            {"method": "PATCH", "path": f"/{users}/bulkId:a", "data": retitle("Bulked")},
        ],
    }
    answer = await client.post(f"/{bulk}", json=request)
    assert answer.status_code == 200, answer.text
    results = answer.json()["Operations"]
    assert [result["status"] for result in results] == ["201", "200"], results
    assert results[0]["location"].startswith(f"{BASE}/Users/")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 1


async def test_an_unknown_name_is_still_404_as_it_was_spelled(client: httpx2.AsyncClient) -> None:
    answer = await client.get("/userz")
    assert answer.status_code == 404
    assert "/scim/v2/userz" in answer.json()["detail"]
