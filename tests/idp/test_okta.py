"""Okta's provisioning sequences, replayed end to end against the gateway.

Each test is one readable script of what Okta sends, in order, with Okta's
headers. Sources:

- "Okta and SCIM Version 2.0" (Okta SCIM 2.0 protocol reference,
  developer.okta.com/docs/api/openapi/okta-scim/guides/scim-20): the request
  lines, the ``User-Agent: Okta SCIM Client 1.0.0`` header and the bodies in
  ``tests/fixtures/scim/okta-*.json``; userName lookup before create; 409 for
  a user that already exists; paging with ``startIndex``/``count=100``, integer
  ``totalResults``/``itemsPerPage``/``startIndex`` and the same order whatever
  the page size; deactivation by PATCH (OIN apps) or PUT (AIW apps).
- Okta's SCIM 2.0 SPEC test (the Runscope/BlazeMeter suite an OIN submission
  must pass): ``Accept: application/scim+json``,
  ``Content-Type: application/scim+json; charset=utf-8``, ``Accept-Charset:
  utf-8``, and its "Required Test" steps.
- RFC 7644 §3.4.2.4 (paging), §3.5.1 (PUT), §3.5.2 (PATCH), §3.12 (errors).
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import Engine, text

from tests.idp.records import event_kinds, staff_row

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "scim"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"

# What Okta's provisioning client sends with every request (see module docstring).
OKTA = {
    "User-Agent": "Okta SCIM Client 1.0.0",
    "Accept": "application/scim+json",
    "Accept-Charset": "utf-8",
    "Content-Type": "application/scim+json; charset=utf-8",
}


def load(name: str) -> Any:
    """A captured payload from tests/fixtures/scim, fresh on every call."""
    return json.loads((FIXTURES / name).read_text())


def okta_user(user_name: str, given: str, family: str, **extra: Any) -> dict[str, Any]:
    """The create body Okta sends (okta-create-user.json) for another person."""
    body: dict[str, Any] = load("okta-create-user.json")
    body.update(
        userName=user_name,
        name={"givenName": given, "familyName": family},
        emails=[{"primary": True, "value": user_name, "type": "work"}],
        displayName=f"{given} {family}",
        externalId="00u" + uuid.uuid4().hex[:17],
        **extra,
    )
    return body


def find(user_name: str) -> dict[str, str]:
    """Okta's existence check: ``filter=userName eq "..."&startIndex=1&count=100``."""
    return {"filter": f'userName eq "{user_name}"', "startIndex": "1", "count": "100"}


def assert_list_response(body: dict[str, Any], total: int, start: int, items: int) -> None:
    """RFC 7644 §3.4.2; Okta: the paging values are exchanged as integers, not strings."""
    assert body["schemas"] == [LIST_RESPONSE]
    for key, expected in (("totalResults", total), ("startIndex", start), ("itemsPerPage", items)):
        assert type(body[key]) is int, (key, body[key])
        assert body[key] == expected, (key, body[key])
    assert isinstance(body["Resources"], list)
    assert len(body["Resources"]) == items


async def test_test_api_credentials_against_an_empty_and_then_a_populated_workspace(
    client: httpx2.AsyncClient,
) -> None:
    # "Test API Credentials" in the app's Provisioning tab: list users, then look one up.
    listed = await client.get("/Users", params={"startIndex": "1", "count": "100"}, headers=OKTA)
    assert listed.status_code == 200
    assert listed.headers["content-type"] == "application/scim+json"
    assert_list_response(listed.json(), total=0, start=1, items=0)

    lookup = await client.get("/Users", params=find("nobody@okta.local"), headers=OKTA)
    assert lookup.status_code == 200
    assert_list_response(lookup.json(), total=0, start=1, items=0)

    # Once people are assigned, the same calls page through them in one stable order.
    for n in range(5):
        created = await client.post(
            "/Users", json=okta_user(f"user{n}@okta.local", f"User{n}", "Okta"), headers=OKTA
        )
        assert created.status_code == 201
    everyone = (
        await client.get("/Users", params={"startIndex": "1", "count": "100"}, headers=OKTA)
    ).json()
    assert_list_response(everyone, total=5, start=1, items=5)
    order = [user["id"] for user in everyone["Resources"]]

    first = await client.get("/Users", params={"startIndex": "1", "count": "2"}, headers=OKTA)
    second = await client.get("/Users", params={"startIndex": "3", "count": "2"}, headers=OKTA)
    third = await client.get("/Users", params={"startIndex": "5", "count": "2"}, headers=OKTA)
    assert_list_response(first.json(), total=5, start=1, items=2)
    assert_list_response(second.json(), total=5, start=3, items=2)
    assert_list_response(third.json(), total=5, start=5, items=1)
    paged = [u["id"] for page in (first, second, third) for u in page.json()["Resources"]]
    assert paged == order

    found = (await client.get("/Users", params=find("user3@okta.local"), headers=OKTA)).json()
    assert_list_response(found, total=1, start=1, items=1)
    assert found["Resources"][0]["userName"] == "user3@okta.local"


async def test_assigning_a_user_looks_them_up_then_creates_them(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = load("okta-create-user.json")

    # 1. Determine if the user already exists.
    before = await client.get("/Users", params=find(body["userName"]), headers=OKTA)
    assert before.status_code == 200
    assert_list_response(before.json(), total=0, start=1, items=0)

    # 2. Not found, so create it.
    created = await client.post("/Users", json=body, headers=OKTA)
    assert created.status_code == 201
    user = created.json()
    assert user["id"]
    assert created.headers["location"].endswith(f"/Users/{user['id']}")
    assert user["schemas"][0] == USER_SCHEMA
    assert user["userName"] == "test.user@okta.local"
    assert user["externalId"] == "00ujl29u0le5T6Aj10h7"
    assert user["name"] == {"givenName": "Test", "familyName": "User"}
    assert user["emails"][0]["value"] == "test.user@okta.local"
    assert user["active"] is True
    # RFC 7643 §4.1.1: password is writeOnly and never returned.
    assert "password" not in user

    # 3. The next lookup (and the next import) finds the user Okta just created.
    after = (await client.get("/Users", params=find(body["userName"]), headers=OKTA)).json()
    assert_list_response(after, total=1, start=1, items=1)
    assert after["Resources"][0]["id"] == user["id"]
    fetched = await client.get(f"/Users/{user['id']}", headers=OKTA)
    assert fetched.status_code == 200
    assert fetched.json()["id"] == user["id"]

    row = staff_row(db, user["id"])
    assert row.role == "staff"
    assert row.active is True
    assert row.deleted_at is None
    assert row.email == "test.user@okta.local"
    assert (row.given_name, row.family_name) == ("Test", "User")
    assert row.source == "okta"
    assert "1mz050nq" not in json.dumps(row.attributes)
    assert event_kinds(db) == ["user.created"]


async def test_okta_spec_test_required_user_steps(client: httpx2.AsyncClient, db: Engine) -> None:
    """Okta's SPEC test, user steps after "Test Users endpoint", in its order."""
    seeded = await client.post(
        "/Users", json=okta_user("bjensen@example.com", "Barbara", "Jensen"), headers=OKTA
    )
    assert seeded.status_code == 201

    # Test Users endpoint: GET /Users?count=1&startIndex=1, then GET /Users/{id}.
    page = await client.get("/Users", params={"count": "1", "startIndex": "1"}, headers=OKTA)
    assert_list_response(page.json(), total=1, start=1, items=1)
    first = page.json()["Resources"][0]
    one = (await client.get(f"/Users/{first['id']}", headers=OKTA)).json()
    assert one["id"] == first["id"]
    assert one["name"]["familyName"] and one["name"]["givenName"] and one["userName"]
    assert one["active"] is not None
    assert one["emails"][0]["value"]

    # Test invalid User by username / by ID.
    missing = await client.get("/Users", params=find("abcdefgh@example.com"), headers=OKTA)
    assert missing.status_code == 200
    assert missing.json()["totalResults"] == 0
    not_an_id = await client.get("/Users/010101001010101011001010101011", headers=OKTA)
    assert not_an_id.status_code == 404
    assert not_an_id.json()["schemas"] == [ERROR]
    assert not_an_id.json()["status"] == "404"
    assert not_an_id.json()["detail"]

    # Create Okta user with realistic values, then verify that it was created.
    name = "Runscope300Hfluaklab151@example.com"
    realistic = okta_user(name, "Runscope300", "Hfluaklab151")
    assert (await client.get("/Users", params=find(name), headers=OKTA)).json()["totalResults"] == 0
    created = await client.post("/Users", json=realistic, headers=OKTA)
    assert created.status_code == 201
    verified = await client.get(f"/Users/{created.json()['id']}", headers=OKTA)
    assert verified.status_code == 200
    assert verified.json()["userName"] == name

    # Username Case Sensitivity Check: userName is caseExact=false (RFC 7643 §4.1.1).
    caps = await client.get(
        "/Users", params=find("RUNSCOPE300HFLUAKLAB151@example.com"), headers=OKTA
    )
    assert caps.json()["totalResults"] == 1
    assert event_kinds(db) == ["user.created", "user.created"]


async def test_okta_spec_test_expects_409_when_recreating_the_same_user(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """SPEC test "Expect failure when recreating user with same values": the identical
    POST again must be a 409, not a second 201 (Okta: "the Service Provider needs to
    respond with an error schema to stop the provisioning job")."""
    body = okta_user("Runscope300Hfluaklab151@example.com", "Runscope300", "Hfluaklab151")
    assert (await client.post("/Users", json=body, headers=OKTA)).status_code == 201

    again = await client.post("/Users", json=body, headers=OKTA)

    assert again.status_code == 409
    assert again.json()["schemas"] == [ERROR]
    assert again.json()["scimType"] == "uniqueness"
    assert event_kinds(db) == ["user.created"]


async def test_a_different_person_with_a_taken_username_gets_409_uniqueness(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    first = await client.post(
        "/Users", json=okta_user("sam@okta.local", "Samantha", "First"), headers=OKTA
    )
    assert first.status_code == 201

    # Another Okta user whose app username collides (Okta's lookup missed it,
    # e.g. another case); a different person, a different email.
    other = okta_user("SAM@okta.local", "Samuel", "Second")
    other["emails"] = [{"primary": True, "value": "samuel.second@okta.local", "type": "work"}]
    duplicate = await client.post("/Users", json=other, headers=OKTA)

    # Okta: "If the User object that Okta tries to create already exists ... respond
    # with an error schema to stop the provisioning job" (409); RFC 7644 §3.3, §3.12.
    assert duplicate.status_code == 409
    error = duplicate.json()
    assert error["schemas"] == [ERROR]
    assert error["status"] == "409"
    assert error["scimType"] == "uniqueness"
    assert "userName" in error["detail"]
    with db.connect() as conn:
        rows = conn.execute(text("SELECT given_name, email FROM users")).all()
    assert [tuple(r) for r in rows] == [("Samantha", "sam@okta.local")]
    assert event_kinds(db) == ["user.created"]


async def test_profile_update_gets_the_user_then_puts_the_whole_user(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=load("okta-create-user.json"), headers=OKTA)).json()
    url = f"/Users/{created['id']}"

    # Okta first reads the user ...
    current = await client.get(url, headers=OKTA)
    assert current.status_code == 200
    # ... then PUTs the whole user back with the changed attributes (okta-put-user.json).
    replacement = load("okta-put-user.json")
    replacement["id"] = created["id"]
    updated = await client.put(url, json=replacement, headers=OKTA)

    assert updated.status_code == 200
    user = updated.json()
    assert user["id"] == created["id"]
    assert user["name"] == {"givenName": "Another", "middleName": "Excited", "familyName": "User"}
    assert user["emails"][0]["value"] == "test.user@okta.local"
    assert user["active"] is True
    assert user["meta"]["version"] == 'W/"2"'
    row = staff_row(db, created["id"])
    assert (row.given_name, row.family_name) == ("Another", "User")
    assert row.attributes["name"]["middleName"] == "Excited"
    assert row.email == "test.user@okta.local"
    assert row.active is True and row.role == "staff"

    # Okta re-sends unchanged users; that must not write a new version or event.
    again = await client.put(url, json=replacement, headers=OKTA)
    assert again.status_code == 200
    assert again.json()["meta"]["version"] == 'W/"2"'
    assert event_kinds(db) == ["user.created", "user.updated"]


async def test_update_by_patch_without_a_path(client: httpx2.AsyncClient, db: Engine) -> None:
    """RFC 7644 §3.5.2.1's own example (rfc7644-3.5.2.json) sent the way Okta PATCHes:
    one operation, no path, the attributes in the value object. Attribute names are
    case-insensitive (RFC 7643 §2.1), so "nickname" is nickName."""
    created = (
        await client.post(
            "/Users", json=okta_user("babs@okta.local", "Barbara", "Jensen"), headers=OKTA
        )
    ).json()

    patched = await client.patch(
        f"/Users/{created['id']}", json=load("rfc7644-3.5.2.json"), headers=OKTA
    )

    assert patched.status_code == 200
    user = patched.json()
    assert user["nickName"] == "Babs"
    assert {(e["type"], e["value"]) for e in user["emails"]} == {
        ("work", "babs@okta.local"),
        ("home", "babs@jensen.org"),
    }
    row = staff_row(db, created["id"])
    # The primary work address stays SimpleAMS's key; the new one is searchable.
    assert row.email == "babs@okta.local"
    assert sorted(row.email_values) == ["babs@jensen.org", "babs@okta.local"]
    assert row.active is True
    assert event_kinds(db) == ["user.created", "user.updated"]


async def test_deactivate_and_reactivate_by_patch(client: httpx2.AsyncClient, db: Engine) -> None:
    """OIN integrations: unassigning or deactivating the Okta user sends this PATCH."""
    created = (await client.post("/Users", json=load("okta-create-user.json"), headers=OKTA)).json()
    url = f"/Users/{created['id']}"

    off = await client.patch(url, json=load("okta-patch-deactivate.json"), headers=OKTA)

    assert off.status_code == 200
    assert off.json()["active"] is False
    assert off.json()["id"] == created["id"]
    row = staff_row(db, created["id"])
    assert row.active is False
    assert row.deleted_at is None  # deactivated, not deleted: Okta never DELETEs users
    # Okta keeps reading deactivated users (import, re-assignment).
    assert (await client.get(url, headers=OKTA)).json()["active"] is False
    lookup = (await client.get("/Users", params=find(created["userName"]), headers=OKTA)).json()
    assert lookup["totalResults"] == 1
    assert lookup["Resources"][0]["active"] is False

    on = await client.patch(url, json=load("okta-patch-reactivate.json"), headers=OKTA)

    assert on.status_code == 200
    assert on.json()["active"] is True
    row = staff_row(db, created["id"])
    assert row.active is True and row.deleted_at is None and row.role == "staff"
    assert event_kinds(db) == ["user.created", "user.deactivated", "user.reactivated"]


async def test_deactivate_and_reactivate_by_put(client: httpx2.AsyncClient, db: Engine) -> None:
    """App Integration Wizard integrations send every update, deactivation included, as PUT."""
    created = (await client.post("/Users", json=load("okta-create-user.json"), headers=OKTA)).json()
    url = f"/Users/{created['id']}"

    current = (await client.get(url, headers=OKTA)).json()
    off = await client.put(url, json={**current, "active": False}, headers=OKTA)

    assert off.status_code == 200
    assert off.json()["active"] is False
    row = staff_row(db, created["id"])
    assert row.active is False and row.deleted_at is None
    assert row.email == "test.user@okta.local"

    current = (await client.get(url, headers=OKTA)).json()
    on = await client.put(url, json={**current, "active": True}, headers=OKTA)

    assert on.status_code == 200
    assert on.json()["active"] is True
    assert staff_row(db, created["id"]).active is True
    assert event_kinds(db) == ["user.created", "user.deactivated", "user.reactivated"]


async def test_import_pages_through_250_users_100_at_a_time(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    for n in range(250):
        response = await client.post(
            "/Users", json=okta_user(f"import{n:03}@okta.local", f"Import{n}", "User"), headers=OKTA
        )
        assert response.status_code == 201, response.text

    # Okta: count=100; while totalResults says there is more, startIndex += 100.
    seen: list[str] = []
    start, pages = 1, []
    while True:
        page = await client.get(
            "/Users", params={"startIndex": str(start), "count": "100"}, headers=OKTA
        )
        assert page.status_code == 200
        body = page.json()
        pages.append(body)
        seen += [user["id"] for user in body["Resources"]]
        if start + 100 > body["totalResults"]:
            break
        start += 100

    assert [(p["startIndex"], p["itemsPerPage"], p["totalResults"]) for p in pages] == [
        (1, 100, 250),
        (101, 100, 250),
        (201, 50, 250),
    ]
    for body in pages:
        assert_list_response(body, 250, body["startIndex"], body["itemsPerPage"])
    assert len(seen) == 250
    assert len(set(seen)) == 250  # each user exactly once
    with db.connect() as conn:
        stored = set(
            conn.execute(text("SELECT scim_id::text FROM users WHERE deleted_at IS NULL")).scalars()
        )
    assert set(seen) == stored

    # The same order whatever count and startIndex are (Okta SCIM 2.0 reference).
    other_size: list[str] = []
    for start in range(1, 251, 33):
        page = await client.get(
            "/Users", params={"startIndex": str(start), "count": "33"}, headers=OKTA
        )
        other_size += [user["id"] for user in page.json()["Resources"]]
    assert other_size == seen

    # Past the end: an empty page, the total still right.
    beyond = (
        await client.get("/Users", params={"startIndex": "301", "count": "100"}, headers=OKTA)
    ).json()
    assert_list_response(beyond, total=250, start=301, items=0)
