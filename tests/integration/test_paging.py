"""RFC 9865 cursor paging and keyset-stable startIndex reads (gateway/scim/paging.py).

Cursor pages and sequential startIndex pages walk the users in creation order
(``created_at, id``) off ``ix_users_live_created``: no user present through a
walk is skipped or repeated when others are created or deleted meanwhile, and
a page deep in a 20,000-person directory costs what the first one does.
"""

from __future__ import annotations

import base64
import re
import uuid
from datetime import timedelta
from typing import Any

import httpx2
import orjson
import pytest
from sqlalchemy import Engine, event, select, text

from gateway.scim.paging import Cursor, fingerprint
from models.users import User
from tests.conftest import TenantHandle, make_tenant, scim_client, user_body
from tests.integration.test_listing import (
    ERROR,
    LIST_RESPONSE,
    SEARCH_REQUEST,
    T0,
    bulk_insert,
    numbered,
    page,
    search,
    tenant_id,
    user_names,
)

# RFC 3986 §2.3 unreserved characters: a cursor needs no escaping in a URL (RFC 9865).
UNRESERVED = re.compile(r"^[A-Za-z0-9._~-]+$")


# --- helpers ----------------------------------------------------------------------


def names(prefix: str, numbers: Any) -> list[str]:
    return [f"{prefix}{i:04d}@acme.test" for i in numbers]


def assert_cursor_page(body: dict[str, Any]) -> None:
    """RFC 9865 §2: a cursor page has no startIndex and (here) no totalResults, and
    every cursor it carries can go in a URL as it is."""
    assert body["schemas"] == [LIST_RESPONSE]
    assert "startIndex" not in body, body
    assert "totalResults" not in body, body
    assert body["itemsPerPage"] == len(body["Resources"])
    for key in ("nextCursor", "previousCursor"):
        if key in body:
            assert isinstance(body[key], str) and body[key], body[key]
            assert UNRESERVED.match(body[key]), body[key]


async def cursor_get(client: httpx2.AsyncClient, **params: Any) -> dict[str, Any]:
    body = await page(client, **params)
    assert_cursor_page(body)
    return body


async def cursor_search(
    client: httpx2.AsyncClient, path: str = "/Users/.search", **params: Any
) -> dict[str, Any]:
    body: dict[str, Any] = await search(client, path=path, **params)
    assert_cursor_page(body)
    return body


async def walk_forward(
    client: httpx2.AsyncClient, fetch: str = "get", **params: Any
) -> list[dict[str, Any]]:
    """Every page from cursor= (empty) to the one without nextCursor."""
    pages: list[dict[str, Any]] = []
    cursor = ""
    while True:
        body = (
            await cursor_get(client, cursor=cursor, **params)
            if fetch == "get"
            else await cursor_search(client, cursor=cursor, **params)
        )
        pages.append(body)
        assert len(pages) < 1000, "the walk does not end"
        if "nextCursor" not in body:
            return pages
        cursor = body["nextCursor"]


def assert_error(response: httpx2.Response, scim_type: str) -> dict[str, Any]:
    assert response.status_code == 400, response.text
    error: dict[str, Any] = response.json()
    assert error["schemas"] == [ERROR]
    assert error["status"] == "400"
    assert error["scimType"] == scim_type, error
    assert len(error["detail"].strip()) > 20, error
    return error


def encoded(value: Any) -> str:
    return base64.urlsafe_b64encode(orjson.dumps(value)).decode().rstrip("=")


def decoded(cursor: str) -> list[Any]:
    raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
    found: list[Any] = orjson.loads(raw)
    return found


# --- 1. a cursor walk -----------------------------------------------------------------


async def test_cursor_walk_forward_then_back_visits_everyone_once_in_creation_order(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    everyone = names("user", range(250))

    first = await cursor_get(client, cursor="", count=100)
    assert user_names(first) == everyone[:100]
    assert "nextCursor" in first
    assert "previousCursor" not in first

    forward = await walk_forward(client, count=100)
    assert [user_names(p) for p in forward] == [everyone[:100], everyone[100:200], everyone[200:]]
    assert forward[0]["Resources"] == first["Resources"]
    assert "nextCursor" not in forward[-1]
    for later in forward[1:]:
        assert "previousCursor" in later
    seen = [r["id"] for p in forward for r in p["Resources"]]
    assert len(seen) == len(set(seen)) == 250

    # Back from the last page, one page at a time, to the first page exactly.
    backward = [forward[-1]]
    while "previousCursor" in backward[-1]:
        backward.append(await cursor_get(client, cursor=backward[-1]["previousCursor"], count=100))
        assert len(backward) < 10
    assert [user_names(p) for p in backward] == [user_names(p) for p in reversed(forward)]
    assert backward[-1]["Resources"] == forward[0]["Resources"]
    assert "previousCursor" not in backward[-1]
    # Pages reached backwards lead forward again.
    for p in backward[1:]:
        assert "nextCursor" in p
    again = await cursor_get(client, cursor=backward[-1]["nextCursor"], count=100)
    assert user_names(again) == everyone[100:200]


async def test_cursor_walk_with_equal_timestamps_and_small_pages(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    # All created in the same instant: the order falls to id, still total.
    bulk_insert(db, tenant.slug, numbered(23), same_timestamp=True)
    everyone = [r["id"] for r in (await page(client, count=1000))["Resources"]]
    for size in (1, 5, 22, 23, 24):
        pages = await walk_forward(client, count=size)
        walked = [r["id"] for p in pages for r in p["Resources"]]
        assert walked == everyone, size
        assert all(p["itemsPerPage"] == size for p in pages[:-1]), size
        assert "previousCursor" not in pages[0]
        # And back.
        back: list[str] = []
        current = pages[-1]
        while "previousCursor" in current:
            current = await cursor_get(client, cursor=current["previousCursor"], count=size)
            back = [r["id"] for r in current["Resources"]] + back
        assert back + [r["id"] for r in pages[-1]["Resources"]] == everyone, size


async def test_cursor_on_an_empty_tenant_and_a_single_page(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    empty = await cursor_get(client, cursor="")
    assert empty["Resources"] == []
    assert "nextCursor" not in empty and "previousCursor" not in empty
    bulk_insert(db, tenant.slug, numbered(3))
    single = await cursor_get(client, cursor="")
    assert user_names(single) == names("user", range(3))
    assert "nextCursor" not in single and "previousCursor" not in single
    # The default page size is 100, as for startIndex.
    bulk_insert(db, tenant.slug, numbered(150, prefix="more"))
    default = await cursor_get(client, cursor="")
    assert default["itemsPerPage"] == 100


# --- 2. with a filter, by GET and by .search --------------------------------------------


async def test_cursor_pages_only_the_filters_matches(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    scim_filter = 'userName sw "user01"'
    expected = names("user", range(100, 200))
    chunks = [expected[0:30], expected[30:60], expected[60:90], expected[90:]]
    for fetch in ("get", "search"):
        pages = await walk_forward(client, fetch, filter=scim_filter, count=30)
        assert [user_names(p) for p in pages] == chunks, fetch
        assert "previousCursor" not in pages[0]
        # Back from the last page, still inside the filter.
        previous = pages[-1]["previousCursor"]
        back = (
            await cursor_get(client, cursor=previous, filter=scim_filter, count=30)
            if fetch == "get"
            else await cursor_search(client, cursor=previous, filter=scim_filter, count=30)
        )
        assert user_names(back) == chunks[2], fetch
    # .search at the root, and cursors given by GET work in .search (same query).
    root = await cursor_search(client, path="/.search", cursor="", filter=scim_filter, count=60)
    assert user_names(root) == expected[:60]
    got = await cursor_get(client, cursor="", filter=scim_filter, count=60)
    rest = await cursor_search(client, cursor=got["nextCursor"], filter=scim_filter, count=60)
    assert user_names(rest) == expected[60:]
    assert "nextCursor" not in rest
    # A filter nobody matches: an empty first page with no cursors.
    none = await cursor_search(client, cursor="", filter='userName eq "nobody@acme.test"')
    assert none["Resources"] == []
    assert "nextCursor" not in none and "previousCursor" not in none


async def test_cursor_pages_honour_the_projection(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(5))
    body = await cursor_get(client, cursor="", count=2, attributes="userName")
    assert [set(r) for r in body["Resources"]] == [{"id", "schemas", "userName"}] * 2
    rest = await cursor_search(client, cursor=body["nextCursor"], count=5, attributes=["userName"])
    assert user_names(rest) == names("user", range(2, 5))


# --- 3. errors ----------------------------------------------------------------------------


Parts = tuple[str, str, str, str]  # direction, created, user id, query fingerprint

GARBAGE: dict[str, Any] = {
    "not-a-cursor": lambda real, p: "notacursor",
    "percent-signs": lambda real, p: "%%%",
    "padding-only": lambda real, p: "=",
    "non-ascii": lambda real, p: "é",
    "zero-bytes": lambda real, p: "AAAA",
    "truncated": lambda real, p: real[:-3],
    "extended": lambda real, p: real + "x",
    "json-object": lambda real, p: encoded({"direction": "n"}),
    "four-numbers": lambda real, p: encoded([1, 2, 3, 4]),
    "json-null": lambda real, p: encoded(None),
    "four-char-string": lambda real, p: encoded("abcd"),
    "three-parts": lambda real, p: encoded(list(p[:3])),
    "five-parts": lambda real, p: encoded([*p, "extra"]),
    "unknown-direction": lambda real, p: encoded(["x", *p[1:]]),
    "list-direction": lambda real, p: encoded([["n"], *p[1:]]),
    "bad-timestamp": lambda real, p: encoded([p[0], "yesterday", *p[2:]]),
    "naive-timestamp": lambda real, p: encoded([p[0], p[1].split("+")[0], *p[2:]]),
    "date-only": lambda real, p: encoded([p[0], "2024-01-01", *p[2:]]),
    "numeric-timestamp": lambda real, p: encoded([p[0], 1704067200, *p[2:]]),
    "bad-uuid": lambda real, p: encoded([*p[:2], "not-a-uuid", p[3]]),
    "numeric-uuid": lambda real, p: encoded([*p[:2], 12345, p[3]]),
    "list-uuid": lambda real, p: encoded([*p[:2], [p[2]], p[3]]),
    "null-uuid": lambda real, p: encoded([*p[:2], None, p[3]]),
    "other-fingerprint": lambda real, p: encoded([*p[:3], "0" * 16]),
    "null-fingerprint": lambda real, p: encoded([*p[:3], None]),
}


@pytest.mark.parametrize("make", GARBAGE.values(), ids=GARBAGE.keys())
async def test_garbage_cursors_are_400_invalid_cursor(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, make: Any
) -> None:
    bulk_insert(db, tenant.slug, numbered(5))
    real = (await cursor_get(client, cursor="", count=2))["nextCursor"]
    parts = decoded(real)
    assert parts[0] == "n" and len(parts) == 4
    cursor = make(real, tuple(parts))
    got = await client.get("/Users", params={"cursor": cursor})
    error = assert_error(got, "invalidCursor")
    # The detail says what to do.
    assert "cursor" in error["detail"].lower(), error
    searched = await client.post(
        "/Users/.search", json={"schemas": [SEARCH_REQUEST], "cursor": cursor}
    )
    assert_error(searched, "invalidCursor")


async def test_a_tampered_cursor_is_never_a_500(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    """A client can decode its own cursor and edit the position while keeping the
    query fingerprint: the server must answer 200 (a page from there) or 400,
    never 500."""
    bulk_insert(db, tenant.slug, numbered(5))
    real = (await cursor_get(client, cursor="", count=2))["nextCursor"]
    _, _, user_id, query = decoded(real)
    for created in (
        "0001-01-01T00:00:00+00:00",
        "9999-12-31T23:59:59.999999+00:00",
        "2024-01-01T00:00:00+23:59",
        "0001-01-01T00:00:00+14:00",
        "9999-12-31T23:59:59.999999-23:59",
    ):
        for d in ("n", "p"):
            cursor = encoded([d, created, user_id, query])
            response = await client.get("/Users", params={"cursor": cursor})
            assert response.status_code in (200, 400), (created, d, response.text)
            if response.status_code == 400:
                assert response.json()["scimType"] in ("invalidCursor", "invalidValue")


async def test_a_cursor_from_another_filter_is_400_invalid_cursor(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(50))
    a = 'userName sw "user00"'
    b = 'userName sw "user001"'
    from_a = await cursor_get(client, cursor="", filter=a, count=3)
    later_a = await cursor_get(client, cursor=from_a["nextCursor"], filter=a, count=3)
    unfiltered = await cursor_get(client, cursor="", count=3)
    for cursor, scim_filter in (
        (from_a["nextCursor"], b),
        (later_a["previousCursor"], b),
        (from_a["nextCursor"], None),  # dropping the filter is another query too
        (unfiltered["nextCursor"], a),
    ):
        params = {"cursor": cursor} | ({"filter": scim_filter} if scim_filter else {})
        error = assert_error(await client.get("/Users", params=params), "invalidCursor")
        assert "filter" in error["detail"], error
        assert_error(
            await client.post("/Users/.search", json={"schemas": [SEARCH_REQUEST], **params}),
            "invalidCursor",
        )
    # With the filter it was given for, it still works.
    assert user_names(later_a) == names("user", range(3, 6))


async def test_another_tenants_cursor_is_400_invalid_cursor_and_leaks_nothing(
    client: httpx2.AsyncClient, app: Any, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(10))
    other = make_tenant(db, "globex")
    bulk_insert(db, other.slug, numbered(10, prefix="globex"))
    async with scim_client(app, other.headers) as globex:
        theirs = (await globex.get("/Users", params={"cursor": "", "count": "3"})).json()
        assert user_names(theirs) == names("globex", range(3))
        later = (
            await globex.get("/Users", params={"cursor": theirs["nextCursor"], "count": "3"})
        ).json()
    their_cursors = [theirs["nextCursor"], later["nextCursor"], later["previousCursor"]]
    for cursor in their_cursors:
        for response in (
            await client.get("/Users", params={"cursor": cursor}),
            await client.post("/Users/.search", json={"cursor": cursor}),
            await client.post("/.search", json={"cursor": cursor}),
        ):
            assert_error(response, "invalidCursor")
            assert "globex" not in response.text.lower()
    # Ours still page ours only.
    ours = await walk_forward(client, count=4)
    assert [n for p in ours for n in user_names(p)] == names("user", range(10))


async def test_cursor_with_start_index_or_sort_by_is_400_invalid_value(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(5))
    real = (await cursor_get(client, cursor="", count=2))["nextCursor"]
    for cursor in ("", real):
        for extra in ({"startIndex": "1"}, {"startIndex": "3"}, {"sortBy": "userName"}):
            params = {"cursor": cursor, **extra}
            assert_error(await client.get("/Users", params=params), "invalidValue")
            body = {"schemas": [SEARCH_REQUEST], "cursor": cursor, **extra}
            if "startIndex" in extra:
                body["startIndex"] = int(extra["startIndex"])
            assert_error(await client.post("/Users/.search", json=body), "invalidValue")
        assert_error(
            await client.get(
                "/Users", params={"cursor": cursor, "sortBy": "userName", "sortOrder": "descending"}
            ),
            "invalidValue",
        )


@pytest.mark.parametrize("cursor", [5, 0, True, ["abc"], {"next": "abc"}, 1.5])
async def test_a_non_string_cursor_in_a_search_is_400_invalid_value(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, cursor: Any
) -> None:
    bulk_insert(db, tenant.slug, numbered(3))
    for path in ("/Users/.search", "/.search"):
        response = await client.post(path, json={"schemas": [SEARCH_REQUEST], "cursor": cursor})
        assert_error(response, "invalidValue")


# --- 4. changes during a cursor walk ------------------------------------------------------


async def test_users_created_or_deleted_during_a_cursor_walk(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    everyone = {r["userName"]: r["id"] for r in (await page(client, count=1000))["Resources"]}
    first = await cursor_get(client, cursor="", count=100)
    assert user_names(first) == names("user", range(100))

    # Delete one already read, the very user the next cursor points after, and one
    # not read yet; create three new users.
    gone = ["user0050@acme.test", "user0099@acme.test", "user0150@acme.test"]
    for user_name in gone:
        response = await client.delete(f"/Users/{everyone[user_name]}")
        assert response.status_code == 204, response.text
    created = names("late", range(3))
    for user_name in created:
        response = await client.post("/Users", json=user_body(user_name))
        assert response.status_code == 201, response.text

    rest: list[dict[str, Any]] = []
    cursor = first["nextCursor"]
    while cursor:
        body = await cursor_get(client, cursor=cursor, count=100)
        rest.append(body)
        cursor = body.get("nextCursor")
        assert len(rest) < 10
    walked = user_names(first) + [n for p in rest for n in user_names(p)]
    assert len(walked) == len(set(walked)), "a user was listed twice"
    present_throughout = [n for n in names("user", range(250)) if n not in gone]
    assert [n for n in walked if n in present_throughout] == present_throughout
    assert "user0150@acme.test" not in walked
    # New users come last, in the order they were created.
    assert walked[-3:] == created
    assert [n for n in walked if n.startswith("user")][-1] == "user0249@acme.test"

    # Back from the end: the deleted users are gone from the earlier pages.
    back = await cursor_get(client, cursor=rest[-1]["previousCursor"], count=100)
    assert user_names(back) == user_names(rest[0])
    assert "user0150@acme.test" not in user_names(back)


async def test_a_cursor_whose_user_was_deleted_still_leads_on(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(30))
    first = await cursor_get(client, cursor="", count=10)
    second = await cursor_get(client, cursor=first["nextCursor"], count=10)
    # Both users the cursors of the second page are anchored on go away.
    for resource in (second["Resources"][0], second["Resources"][-1]):
        assert (await client.delete(f"/Users/{resource['id']}")).status_code == 204
    onwards = await cursor_get(client, cursor=second["nextCursor"], count=10)
    assert user_names(onwards) == names("user", range(20, 30))
    back = await cursor_get(client, cursor=second["previousCursor"], count=10)
    assert user_names(back) == names("user", range(10))
    assert "previousCursor" not in back


# --- 5. sequential startIndex reads are keyset-stable -------------------------------------


async def test_a_sequential_start_index_read_survives_deletes_on_read_pages(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    one = await page(client, startIndex=1, count=100)
    assert one["totalResults"] == 250
    assert one["startIndex"] == 1
    assert user_names(one) == names("user", range(100))
    for resource in (one["Resources"][10], one["Resources"][20]):
        assert (await client.delete(f"/Users/{resource['id']}")).status_code == 204

    two = await page(client, startIndex=101, count=100)
    # With OFFSET 100 over 248 users this would start at user0102: two users skipped.
    assert user_names(two) == names("user", range(100, 200))
    assert two["startIndex"] == 101
    assert two["totalResults"] == 248
    three = await page(client, startIndex=201, count=100)
    assert user_names(three) == names("user", range(200, 250))
    assert three["startIndex"] == 201
    assert three["totalResults"] == 248
    walked = [r["id"] for p in (one, two, three) for r in p["Resources"]]
    assert len(walked) == len(set(walked)) == 250

    # The same read through .search, after two more deletes on its first page.
    s1 = await search(client, startIndex=1, count=100)
    assert s1["totalResults"] == 248
    for resource in (s1["Resources"][0], s1["Resources"][99]):
        assert (await client.delete(f"/Users/{resource['id']}")).status_code == 204
    s2 = await search(client, startIndex=101, count=100)
    after_last = names("user", [i for i in range(250) if i not in (10, 20)])[100:200]
    assert user_names(s2) == after_last
    assert s2["totalResults"] == 246


async def test_a_sequential_filtered_start_index_read_is_keyset_stable(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    query = {"filter": 'userName sw "user0"'}  # user0000 … user0249
    one = await page(client, startIndex=1, count=50, **query)
    assert one["totalResults"] == 250
    assert (await client.delete(f"/Users/{one['Resources'][0]['id']}")).status_code == 204
    two = await page(client, startIndex=51, count=50, **query)
    assert user_names(two) == names("user", range(50, 100))
    assert two["totalResults"] == 249


async def test_a_random_start_index_jump_is_answered_by_offset(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(250))
    one = await page(client, startIndex=1, count=100)
    for resource in (one["Resources"][10], one["Resources"][20]):
        assert (await client.delete(f"/Users/{resource['id']}")).status_code == 204
    live = names("user", [i for i in range(250) if i not in (10, 20)])
    # Never served a page ending at 150: OFFSET 150 over the live users.
    jump = await page(client, startIndex=151, count=30)
    assert jump["startIndex"] == 151
    assert jump["totalResults"] == 248
    assert user_names(jump) == live[150:180]
    # A sort order is never read from the remembered positions either.
    sorted_two = await page(client, startIndex=101, count=10, sortBy="userName")
    assert user_names(sorted_two) == sorted(live)[100:110]
    # Past the end.
    end = await page(client, startIndex=249, count=10)
    assert end["totalResults"] == 248
    assert end["Resources"] == []


async def test_start_index_mode_keeps_total_results_and_start_index(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(120))
    seen: list[str] = []
    for start in (1, 41, 81, 121):
        for body in (
            await page(client, startIndex=start, count=40),
            await search(client, startIndex=start, count=40),
        ):
            assert body["totalResults"] == 120
            assert body["startIndex"] == start
            assert "nextCursor" not in body and "previousCursor" not in body
        seen += user_names(body)
    assert seen == names("user", range(120))


# --- 6. discovery ---------------------------------------------------------------------------


async def test_service_provider_config_advertises_both_pagination_methods(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.get("/ServiceProviderConfig")
    assert response.status_code == 200, response.text
    assert response.json()["pagination"] == {
        "cursor": True,
        "index": True,
        "defaultPaginationMethod": "index",
        "defaultPageSize": 100,
        "maxPageSize": 1000,
    }


async def test_cursor_page_size_is_capped_at_max_page_size(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(1003))
    body = await cursor_get(client, cursor="", count=5000)
    assert body["itemsPerPage"] == 1000
    rest = await cursor_get(client, cursor=body["nextCursor"], count=5000)
    assert user_names(rest) == names("user", range(1000, 1003))
    assert "nextCursor" not in rest


async def test_openapi_documents_the_cursor(anonymous: httpx2.AsyncClient) -> None:
    spec = (await anonymous.get("/openapi.json")).json()
    listing = spec["paths"]["/Users"]["get"]
    assert {"name": "cursor", "in": "query", "schema": {"type": "string"}} in listing["parameters"]
    schemas = spec["components"]["schemas"]
    assert "cursor" in schemas["SearchRequest"]["properties"]
    listed = schemas["ListResponse"]
    assert "totalResults" not in listed["required"]
    for key in ("nextCursor", "previousCursor"):
        assert listed["properties"][key]["type"] == "string"


# --- 7. query plans at depth ----------------------------------------------------------------

SEED = """
INSERT INTO users (id, tenant_id, scim_id, user_name, user_name_key, external_id, email,
                   email_key, email_values, display_name, given_name, family_name, active,
                   source, attributes, created_at, updated_at)
SELECT gen_random_uuid(), :tenant_id, gen_random_uuid(), u.name, u.name, 'ext-' || i, u.name,
       u.name, ARRAY[u.name], 'Person ' || i, 'Person', 'Example', true, 'okta',
       jsonb_build_object(
           'schemas', jsonb_build_array('urn:ietf:params:scim:schemas:core:2.0:User'),
           'userName', u.name, 'externalId', 'ext-' || i, 'active', true,
           'displayName', 'Person ' || i,
           'name', jsonb_build_object('givenName', 'Person', 'familyName', 'Example'),
           'emails', jsonb_build_array(
               jsonb_build_object('value', u.name, 'type', 'work', 'primary', true))),
       :t0 + i * interval '1 second', :t0 + i * interval '1 second'
FROM generate_series(0, :n - 1) AS i,
     LATERAL (SELECT :prefix || lpad(i::text, 5, '0') || '@example.test' AS name) AS u
"""


def seed(db: Engine, slug: str, n: int) -> uuid.UUID:
    owner = tenant_id(db, slug)
    with db.begin() as conn:
        conn.execute(text(SEED), {"tenant_id": owner, "prefix": slug, "n": n, "t0": T0})
    return owner


@pytest.fixture
def big_tenant(db: Engine, tenant: TenantHandle) -> uuid.UUID:
    owner = seed(db, tenant.slug, 20_000)
    make_tenant(db, "globex")
    seed(db, "globex", 2_000)
    with db.begin() as conn:
        # A few deleted users, as a real directory has.
        conn.execute(
            text(
                "UPDATE users SET deleted_at = now() WHERE tenant_id = :t "
                "AND created_at < :t0 + interval '200 seconds' AND external_id LIKE '%7'"
            ),
            {"t": owner, "t0": T0},
        )
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.execute(text("VACUUM ANALYZE users"))
    return owner


class CapturedSQL:
    """The statements the gateway sends to PostgreSQL, with their parameters."""

    def __init__(self, app: Any) -> None:
        self.engine = app.state.engine.sync_engine
        self.statements: list[tuple[str, Any]] = []

    def __enter__(self) -> CapturedSQL:
        event.listen(self.engine, "before_cursor_execute", self._record)
        return self

    def __exit__(self, *exc: object) -> None:
        event.remove(self.engine, "before_cursor_execute", self._record)

    def _record(self, conn: Any, cursor: Any, statement: str, parameters: Any, *args: Any) -> None:
        self.statements.append((statement, parameters))

    def pages(self) -> list[tuple[str, Any]]:
        """The statements that read a page of users (not a count)."""
        return [
            (sql, params)
            for sql, params in self.statements
            if "FROM users" in sql and "ORDER BY" in sql and "count(*)" not in sql
        ]


def explain(db: Engine, statement: str, parameters: Any) -> str:
    with db.connect() as conn:
        rows = conn.exec_driver_sql("EXPLAIN " + statement, parameters).all()
    return "\n".join(row[0] for row in rows)


def outside_subplans(plan: str) -> str:
    """The plan without its SubPlan and InitPlan sections (each user's group list
    is an ordered aggregate of a few rows there, which PostgreSQL 16 and later
    show as a Sort of their own)."""
    kept: list[str] = []
    skipping_below: int | None = None
    for line in plan.splitlines():
        depth = len(line) - len(line.lstrip())
        if skipping_below is not None and depth > skipping_below:
            continue
        skipping_below = None
        if line.lstrip().startswith(("SubPlan", "InitPlan")):
            skipping_below = depth
            continue
        kept.append(line)
    return "\n".join(kept)


def assert_index_range_scan(plan: str) -> None:
    assert "Seq Scan on users" not in plan, plan
    assert "ix_users_live_created" in plan, plan
    # Read in index order: the tenant's rows are never sorted…
    assert "Sort" not in outside_subplans(plan), plan
    # …and the keyset position bounds the scan, so rows before it are never read.
    assert re.search(r"Index Cond: .*ROW\(created_at, id\) [<>] ROW\(", plan), plan


def position_of(db: Engine, owner: uuid.UUID, index: int) -> tuple[Any, uuid.UUID]:
    """(created_at, id) of the live user at 0-based ``index`` in creation order."""
    with db.connect() as conn:
        row = conn.execute(
            select(User.created_at, User.id)
            .where(User.tenant_id == owner, User.deleted_at.is_(None))
            .order_by(User.created_at, User.id)
            .offset(index)
            .limit(1)
        ).one()
    return row.created_at, row.id


async def test_a_deep_cursor_page_is_an_index_range_scan(
    client: httpx2.AsyncClient, app: Any, db: Engine, big_tenant: uuid.UUID
) -> None:
    position = position_of(db, big_tenant, 15_000)
    query = fingerprint(big_tenant, None)
    for direction in ("next", "previous"):
        cursor = Cursor(direction, position, query).encode()
        with CapturedSQL(app) as captured:
            body = await cursor_get(client, cursor=cursor, count=100)
        assert body["itemsPerPage"] == 100
        after = direction == "next"
        # The page is the right one: it starts (ends) next to the position.
        edge = body["Resources"][0] if after else body["Resources"][-1]
        created = position[0] + timedelta(seconds=1 if after else -1)
        assert edge["meta"]["created"] == created.isoformat().replace("+00:00", "Z")
        [(sql, params)] = captured.pages()
        plan = explain(db, sql, params)
        assert_index_range_scan(plan)
        if not after:
            assert "Index Scan Backward using ix_users_live_created" in plan, plan
    # The first page, too, comes off the index in order (no Sort of 20,000 rows).
    with CapturedSQL(app) as captured:
        await cursor_get(client, cursor="", count=100)
    [(sql, params)] = captured.pages()
    plan = explain(db, sql, params)
    assert "ix_users_live_created" in plan and "Sort" not in outside_subplans(plan), plan
    assert "Seq Scan on users" not in plan, plan


async def test_a_deep_sequential_start_index_page_is_an_index_range_scan(
    client: httpx2.AsyncClient, app: Any, db: Engine, big_tenant: uuid.UUID
) -> None:
    # A jump to 15,001 is OFFSET; the page after it continues from where it ended.
    jump = await page(client, startIndex=15_001, count=100)
    assert jump["itemsPerPage"] == 100
    with CapturedSQL(app) as captured:
        body = await page(client, startIndex=15_101, count=100)
    assert body["startIndex"] == 15_101
    assert body["totalResults"] == 20_000 - 20  # external_id ends in 7 among the first 200
    with db.connect() as conn:
        expected = [
            name
            for (name,) in conn.execute(
                select(User.user_name)
                .where(User.tenant_id == big_tenant, User.deleted_at.is_(None))
                .order_by(User.created_at, User.id)
                .offset(15_100)
                .limit(100)
            )
        ]
    assert user_names(body) == expected
    [(sql, params)] = captured.pages()
    # The page starts after a keyset position, with nothing to skip.
    assert re.search(r"\(users\.created_at, users\.id\) > \(", sql), sql
    offset = re.search(r"OFFSET %\((\w+)\)s", sql)
    assert offset is None or params[offset.group(1)] == 0, (sql, params)
    assert_index_range_scan(explain(db, sql, params))


async def test_a_jump_deep_into_the_listing_skips_index_entries_not_rows(
    client: httpx2.AsyncClient, app: Any, db: Engine, big_tenant: uuid.UUID
) -> None:
    """startIndex=15,001 with no page before it: the skipped rows are index entries
    of the live-users index (an index-only scan), then the page is read by keyset."""
    with db.connect().execution_options(isolation_level="AUTOCOMMIT") as conn:
        conn.exec_driver_sql("VACUUM users")  # the visibility map, as autovacuum keeps it
    with CapturedSQL(app) as captured:
        body = await page(client, startIndex=15_001, count=100)
    with db.connect() as conn:
        expected = [
            name
            for (name,) in conn.execute(
                select(User.user_name)
                .where(User.tenant_id == big_tenant, User.deleted_at.is_(None))
                .order_by(User.created_at, User.id)
                .offset(15_000)
                .limit(100)
            )
        ]
    assert user_names(body) == expected
    skip, read = captured.pages()
    assert "OFFSET" in skip[0] and "attributes" not in skip[0], skip[0]
    skip_plan = explain(db, *skip)
    assert "Index Only Scan using ix_users_live_created" in skip_plan, skip_plan
    assert re.search(r"\(users\.created_at, users\.id\) >= \(", read[0]), read[0]
    read_plan = explain(db, *read)
    assert "Index Scan using ix_users_live_created" in read_plan, read_plan
    assert re.search(r"Index Cond: .*ROW\(created_at, id\) >= ROW\(", read_plan), read_plan
    assert "Seq Scan" not in read_plan and "Sort" not in outside_subplans(read_plan), read_plan
