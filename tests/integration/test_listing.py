"""RFC 7644 §3.4.2.3 sorting, §3.4.2.4 paging, §3.9 projections, §3.4.3 .search,
and the query plans of the lookups IdPs make on every user."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, func, insert, select, text
from sqlalchemy.dialects.postgresql import psycopg as psycopg_dialect

from gateway.scim.attributes import indexed_columns
from gateway.scim.filters import compile_filter
from gateway.scim.resources import USER
from gateway.scim.schema import parse_user
from models.tenants import Tenant
from models.users import User
from tests.conftest import TenantHandle, make_tenant, user_body

CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
T0 = datetime(2024, 1, 1, tzinfo=UTC)

users = User.__table__


# --- helpers ----------------------------------------------------------------


def tenant_id(db: Engine, slug: str) -> uuid.UUID:
    with db.connect() as conn:
        found: uuid.UUID = conn.execute(select(Tenant.id).where(Tenant.slug == slug)).scalar_one()
    return found


def bulk_insert(
    db: Engine,
    slug: str,
    bodies: list[dict[str, Any]],
    *,
    same_timestamp: bool = False,
) -> None:
    """Store users as POST /Users would (parse_user + indexed_columns), in one INSERT.

    Each user is created a minute after the previous one unless ``same_timestamp``.
    """
    owner = tenant_id(db, slug)
    rows = []
    for i, body in enumerate(bodies):
        document = parse_user(body).document
        created = T0 if same_timestamp else T0 + timedelta(minutes=i)
        rows.append(
            {
                **indexed_columns(document),
                "id": uuid.uuid4(),
                "scim_id": uuid.uuid4(),
                "tenant_id": owner,
                "attributes": document,
                "source": "okta",
                "created_at": created,
                "updated_at": created,
            }
        )
    with db.begin() as conn:
        for start in range(0, len(rows), 1000):
            conn.execute(insert(users), rows[start : start + 1000])


def numbered(n: int, prefix: str = "user") -> list[dict[str, Any]]:
    return [user_body(f"{prefix}{i:04d}@acme.test", externalId=f"ext-{i:04d}") for i in range(n)]


async def page(client: httpx2.AsyncClient, **params: Any) -> dict[str, Any]:
    response = await client.get("/Users", params={k: str(v) for k, v in params.items()})
    assert response.status_code == 200, (params, response.text)
    assert response.headers["content-type"] == "application/scim+json"
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    assert body["itemsPerPage"] == len(body["Resources"])
    return body


async def search(client: httpx2.AsyncClient, path: str = "/Users/.search", **params: Any) -> Any:
    response = await client.post(path, json={"schemas": [SEARCH_REQUEST], **params})
    assert response.status_code == 200, (params, response.text)
    body = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    assert body["itemsPerPage"] == len(body["Resources"])
    return body


def assert_invalid_value(response: httpx2.Response) -> None:
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["schemas"] == [ERROR]
    assert error["status"] == "400"
    assert error["scimType"] == "invalidValue", error
    assert error["detail"].strip()


def user_names(body: dict[str, Any]) -> list[str]:
    return [r["userName"] for r in body["Resources"]]


# --- paging -------------------------------------------------------------------


async def test_defaults_are_start_index_1_and_count_100(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(150))
    for body in (await page(client), await search(client)):
        assert body["totalResults"] == 150
        assert body["startIndex"] == 1
        assert body["itemsPerPage"] == 100
        assert user_names(body) == [f"user{i:04d}@acme.test" for i in range(100)]


async def test_an_empty_tenant_lists_nothing(client: httpx2.AsyncClient) -> None:
    for body in (await page(client), await search(client)):
        assert body["totalResults"] == 0
        assert body["itemsPerPage"] == 0
        assert body["Resources"] == []
        assert body["startIndex"] == 1


async def test_count_is_clamped_to_1000(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(1005))
    for count in (1001, 5000, 10**12):
        for body in (await page(client, count=count), await search(client, count=count)):
            assert body["totalResults"] == 1005
            assert body["itemsPerPage"] == 1000
            assert len({r["id"] for r in body["Resources"]}) == 1000
    exact = await page(client, count=1000)
    assert exact["itemsPerPage"] == 1000
    rest = await page(client, startIndex=1001, count=1000)
    assert rest["itemsPerPage"] == 5
    assert rest["startIndex"] == 1001
    assert user_names(rest) == [f"user{i:04d}@acme.test" for i in range(1000, 1005)]


async def test_count_zero_or_negative_returns_no_resources_but_the_total(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(7))
    for count in (0, -1, -1000):
        for body in (
            await page(client, count=count),
            await search(client, count=count),
            await page(client, count=count, filter='userName sw "user000"'),
        ):
            assert body["totalResults"] == 7
            assert body["itemsPerPage"] == 0
            assert body["Resources"] == []
            assert body["startIndex"] == 1


async def test_start_index_below_1_is_read_as_1(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(5))
    first = await page(client, count=2)
    for start in (0, -1, -99):
        for body in (
            await page(client, startIndex=start, count=2),
            await search(client, startIndex=start, count=2),
        ):
            assert body["startIndex"] == 1
            assert body["totalResults"] == 5
            assert [r["id"] for r in body["Resources"]] == [r["id"] for r in first["Resources"]]


async def test_start_index_past_the_end_is_an_empty_page(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(5))
    last = await page(client, startIndex=5, count=10)
    assert user_names(last) == ["user0004@acme.test"]
    for start in (6, 1000):
        body = await page(client, startIndex=start)
        assert body["totalResults"] == 5
        assert body["Resources"] == []
        assert body["itemsPerPage"] == 0
        assert body["startIndex"] == start


@pytest.mark.parametrize("name", ["startIndex", "count"])
@pytest.mark.parametrize("value", ["abc", "1.5", "1e3", "0x10", "ten", "--1", "1,2"])
async def test_non_integer_paging_values_in_the_query_are_400_invalid_value(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, name: str, value: str
) -> None:
    bulk_insert(db, tenant.slug, numbered(2))
    assert_invalid_value(await client.get("/Users", params={name: value}))


@pytest.mark.parametrize("name", ["startIndex", "count"])
@pytest.mark.parametrize("value", ["abc", 2.5, True, False, [1], {"n": 1}, "1.5"])
async def test_non_integer_paging_values_in_a_search_are_400_invalid_value(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle, name: str, value: Any
) -> None:
    bulk_insert(db, tenant.slug, numbered(3))
    response = await client.post("/Users/.search", json={"schemas": [SEARCH_REQUEST], name: value})
    assert_invalid_value(response)


async def test_pages_are_stable_with_no_duplicates_or_gaps(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    # All created in the same instant: the order must still be total and repeatable.
    bulk_insert(db, tenant.slug, numbered(57), same_timestamp=True)
    everyone = [r["id"] for r in (await page(client, count=1000))["Resources"]]
    assert len(everyone) == len(set(everyone)) == 57
    for size in (1, 7, 10, 56, 57, 100):
        for fetch in ("get", "search"):
            seen: list[str] = []
            start = 1
            while True:
                body = (
                    await page(client, startIndex=start, count=size)
                    if fetch == "get"
                    else await search(client, startIndex=start, count=size)
                )
                assert body["totalResults"] == 57
                assert body["startIndex"] == start
                if not body["Resources"]:
                    break
                seen += [r["id"] for r in body["Resources"]]
                start += size
            assert seen == everyone, (size, fetch)
    # Asking again gives the same order.
    assert [r["id"] for r in (await page(client, count=1000))["Resources"]] == everyone


async def test_paging_a_filtered_sorted_list(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bodies = numbered(40)
    for i, body in enumerate(bodies):
        body["title"] = ["Engineer", "Manager"][i % 2]
        # Many ties on the sort key.
        body["name"] = {"givenName": "X", "familyName": f"Family{i % 3}"}
    bulk_insert(db, tenant.slug, bodies, same_timestamp=True)
    query = {"filter": 'title eq "engineer"', "sortBy": "name.familyName"}
    everyone = await page(client, count=1000, **query)
    assert everyone["totalResults"] == 20
    families = [r["name"]["familyName"] for r in everyone["Resources"]]
    assert families == sorted(families)
    ids = [r["id"] for r in everyone["Resources"]]
    pages: list[str] = []
    for start in range(1, 21, 6):
        body = await page(client, startIndex=start, count=6, **query)
        assert body["totalResults"] == 20
        pages += [r["id"] for r in body["Resources"]]
    assert pages == ids
    searched: list[str] = []
    for start in range(1, 21, 6):
        body = await search(client, startIndex=start, count=6, **query)
        searched += [r["id"] for r in body["Resources"]]
    assert searched == ids


# --- sorting ------------------------------------------------------------------


@pytest.fixture
async def sortable(client: httpx2.AsyncClient) -> dict[str, dict[str, Any]]:
    """Users created in this order, with names chosen so no two sort keys agree."""
    specs = [
        ("carol@acme.test", "Zimmer", "ext-C", "carol@acme.test"),
        ("alice@acme.test", "young", "ext-a", "alice@acme.test"),
        ("Bob@acme.test", "Xavier", "ext-B", "bob@acme.test"),
        ("dave@acme.test", "abbott", "Ext-d", "dave@acme.test"),
        ("Erin@acme.test", "Brown", "ext-e", "erin@acme.test"),
    ]
    created: dict[str, dict[str, Any]] = {}
    for user_name, family, external_id, email in specs:
        body = user_body(user_name, externalId=external_id)
        body["name"] = {"givenName": "G", "familyName": family}
        body["emails"] = [{"value": email, "type": "work", "primary": True}]
        response = await client.post("/Users", json=body)
        assert response.status_code == 201, response.text
        created[user_name] = response.json()
    return created


CREATION_ORDER = ["carol@acme.test", "alice@acme.test", "Bob@acme.test", "dave@acme.test"]
CREATION_ORDER += ["Erin@acme.test"]
BY_USER_NAME = ["alice@acme.test", "Bob@acme.test", "carol@acme.test", "dave@acme.test"]
BY_USER_NAME += ["Erin@acme.test"]
# abbott, Brown, Xavier, young, Zimmer (case-insensitive)
BY_FAMILY_NAME = ["dave@acme.test", "Erin@acme.test", "Bob@acme.test", "alice@acme.test"]
BY_FAMILY_NAME += ["carol@acme.test"]
BY_EXTERNAL_ID = ["dave@acme.test", "Bob@acme.test", "carol@acme.test", "alice@acme.test"]
BY_EXTERNAL_ID += ["Erin@acme.test"]


@pytest.mark.parametrize(
    ("sort_by", "expected"),
    [
        ("userName", BY_USER_NAME),
        (f"{CORE}:userName", BY_USER_NAME),
        ("USERNAME", BY_USER_NAME),
        ("name.familyName", BY_FAMILY_NAME),
        ("meta.created", CREATION_ORDER),
        ("meta.lastModified", CREATION_ORDER),
        # emails: by the (primary) value, case-insensitively
        ("emails", BY_USER_NAME),
        ("emails.value", BY_USER_NAME),
        # externalId is caseExact: "Ext-d" < "ext-B" < "ext-C" < "ext-a" < "ext-e"
        (
            "externalId",
            BY_EXTERNAL_ID,
        ),
    ],
)
async def test_sort_by(
    client: httpx2.AsyncClient,
    sortable: dict[str, dict[str, Any]],
    sort_by: str,
    expected: list[str],
) -> None:
    for body in (
        await page(client, sortBy=sort_by),
        await page(client, sortBy=sort_by, sortOrder="ascending"),
        await search(client, sortBy=sort_by),
        await search(client, sortBy=sort_by, sortOrder="ascending"),
    ):
        assert user_names(body) == expected
    for body in (
        await page(client, sortBy=sort_by, sortOrder="descending"),
        await page(client, sortBy=sort_by, sortOrder="DESCENDING"),
        await search(client, sortBy=sort_by, sortOrder="descending"),
    ):
        assert user_names(body) == expected[::-1]
    # Paging applies after sorting.
    second = await page(client, sortBy=sort_by, sortOrder="descending", startIndex=2, count=2)
    assert user_names(second) == expected[::-1][1:3]


async def test_without_sort_by_the_order_is_creation_order(
    client: httpx2.AsyncClient, sortable: dict[str, dict[str, Any]]
) -> None:
    assert user_names(await page(client)) == CREATION_ORDER
    # sortOrder alone has nothing to apply to.
    assert user_names(await page(client, sortOrder="descending")) == CREATION_ORDER


async def test_sort_by_emails_uses_the_primary_address(client: httpx2.AsyncClient) -> None:
    # RFC 7644 §3.4.2.3: a multi-valued attribute sorts by its primary value, if any,
    # else by its first value.
    specs = {
        "one@acme.test": [
            {"value": "zz-home@acme.test", "type": "home"},
            {"value": "aa-work@acme.test", "type": "work", "primary": True},
        ],
        "two@acme.test": [{"value": "mm@acme.test", "type": "work", "primary": True}],
        "three@acme.test": [
            {"value": "bb@acme.test", "type": "home"},
            {"value": "yy@acme.test", "type": "other"},
        ],
    }
    for user_name, emails in specs.items():
        body = user_body(user_name)
        body["emails"] = emails
        response = await client.post("/Users", json=body)
        assert response.status_code == 201, response.text
    # Primary (or first) values: one -> aa-work, two -> mm, three -> bb.
    expected = ["one@acme.test", "three@acme.test", "two@acme.test"]
    assert user_names(await page(client, sortBy="emails")) == expected
    assert (
        user_names(await page(client, sortBy="emails", sortOrder="descending")) == (expected[::-1])
    )


async def test_users_without_the_sort_attribute_are_still_listed(
    client: httpx2.AsyncClient, sortable: dict[str, dict[str, Any]]
) -> None:
    body = user_body("nofamily@acme.test")
    body["name"] = {"givenName": "Nobody"}
    del body["emails"]
    assert (await client.post("/Users", json=body)).status_code == 201
    for order in ("ascending", "descending"):
        for sort_by in ("name.familyName", "emails", "title", f"{ENTERPRISE}:department"):
            listed = user_names(await page(client, sortBy=sort_by, sortOrder=order))
            assert sorted(listed) == sorted([*CREATION_ORDER, "nofamily@acme.test"]), sort_by
    ranked = user_names(await page(client, sortBy="name.familyName"))
    assert [n for n in ranked if n != "nofamily@acme.test"] == BY_FAMILY_NAME


@pytest.mark.parametrize("sort_by", ["fooBar", "name.fooBar", f"{ENTERPRISE}:fooBar", "emails["])
async def test_unknown_sort_by_is_400_invalid_value(
    client: httpx2.AsyncClient, sortable: dict[str, dict[str, Any]], sort_by: str
) -> None:
    assert_invalid_value(await client.get("/Users", params={"sortBy": sort_by}))
    assert_invalid_value(await client.post("/Users/.search", json={"sortBy": sort_by}))


@pytest.mark.parametrize("sort_order", ["up", "asc", "desc", "1"])
async def test_unknown_sort_order_is_400_invalid_value(
    client: httpx2.AsyncClient, sortable: dict[str, dict[str, Any]], sort_order: str
) -> None:
    assert_invalid_value(
        await client.get("/Users", params={"sortBy": "userName", "sortOrder": sort_order})
    )


# --- attributes / excludedAttributes ------------------------------------------------------


@pytest.fixture
async def ada(client: httpx2.AsyncClient) -> dict[str, Any]:
    body = user_body("ada@acme.test", externalId="00u1", title="Engineer")
    body["schemas"] = [CORE, ENTERPRISE]
    body[ENTERPRISE] = {"department": "Engineering", "employeeNumber": "7"}
    body["emails"].append({"value": "ada@home.test", "type": "home"})
    response = await client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def projected(
    client: httpx2.AsyncClient, user_id: str, **params: str
) -> list[dict[str, Any]]:
    """The user as GET /Users/{id}, GET /Users and .search return it under a projection."""
    single = await client.get(f"/Users/{user_id}", params=params)
    assert single.status_code == 200, single.text
    listed = await page(client, **params)
    search_params = {k: v.split(",") for k, v in params.items()}
    searched = await search(client, **search_params)
    root = await search(client, path="/.search", **search_params)
    assert listed["totalResults"] == searched["totalResults"] == root["totalResults"] == 1
    return [
        single.json(),
        listed["Resources"][0],
        searched["Resources"][0],
        root["Resources"][0],
    ]


async def test_attributes_returns_only_those_plus_id_and_schemas(
    client: httpx2.AsyncClient, ada: dict[str, Any]
) -> None:
    for resource in await projected(client, ada["id"], attributes="userName"):
        assert set(resource) == {"id", "schemas", "userName"}
        assert resource["id"] == ada["id"]
        assert resource["userName"] == "ada@acme.test"
        # The representation carries no extension attribute, so it may drop that URN.
        assert CORE in resource["schemas"]
        assert set(resource["schemas"]) <= set(ada["schemas"])
    for resource in await projected(client, ada["id"], attributes="userName,displayName"):
        assert set(resource) == {"id", "schemas", "userName", "displayName"}
        assert resource["displayName"] == ada["displayName"]
    # Attribute names are case-insensitive, and may be fully qualified.
    for resource in await projected(client, ada["id"], attributes=f"{CORE}:USERNAME"):
        assert set(resource) == {"id", "schemas", "userName"}


async def test_attributes_with_sub_attributes_and_extensions(
    client: httpx2.AsyncClient, ada: dict[str, Any]
) -> None:
    for resource in await projected(client, ada["id"], attributes="name.familyName"):
        assert set(resource) == {"id", "schemas", "name"}
        assert resource["name"] == {"familyName": "Example"}
    for resource in await projected(client, ada["id"], attributes="emails.value"):
        assert set(resource) == {"id", "schemas", "emails"}
        assert resource["emails"] == [{"value": "ada@acme.test"}, {"value": "ada@home.test"}]
    for resource in await projected(client, ada["id"], attributes=f"{ENTERPRISE}:department"):
        assert set(resource) == {"id", "schemas", ENTERPRISE}
        assert resource[ENTERPRISE] == {"department": "Engineering"}
    for resource in await projected(client, ada["id"], attributes="meta"):
        assert set(resource) == {"id", "schemas", "meta"}
        assert resource["meta"] == ada["meta"]


async def test_excluded_attributes_drops_them(
    client: httpx2.AsyncClient, ada: dict[str, Any]
) -> None:
    expected = {k: v for k, v in ada.items() if k != "emails"}
    for resource in await projected(client, ada["id"], excludedAttributes="emails"):
        assert resource == expected
    for resource in await projected(
        client, ada["id"], excludedAttributes=f"emails,title,{ENTERPRISE}:department"
    ):
        assert "emails" not in resource
        assert "title" not in resource
        assert resource[ENTERPRISE] == {"employeeNumber": "7"}
        assert resource["userName"] == "ada@acme.test"
    for resource in await projected(client, ada["id"], excludedAttributes="name.givenName"):
        assert resource["name"] == {"familyName": "Example"}


async def test_id_and_schemas_cannot_be_excluded(
    client: httpx2.AsyncClient, ada: dict[str, Any]
) -> None:
    for resource in await projected(client, ada["id"], excludedAttributes="id,schemas"):
        assert resource["id"] == ada["id"]
        assert resource["schemas"] == ada["schemas"]
    for resource in await projected(client, ada["id"], attributes="title"):
        assert set(resource) == {"id", "schemas", "title"}


async def test_projection_applies_to_every_listed_user(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(12))
    for body in (
        await page(client, attributes="userName", count=5, startIndex=3),
        await search(client, attributes=["userName"], count=5, startIndex=3),
    ):
        assert body["totalResults"] == 12
        assert [set(r) for r in body["Resources"]] == [{"id", "schemas", "userName"}] * 5
        assert user_names(body) == [f"user{i:04d}@acme.test" for i in range(2, 7)]
    excluded = await page(
        client, excludedAttributes="emails,name", filter='userName ew "1@acme.test"'
    )
    assert user_names(excluded) == ["user0001@acme.test", "user0011@acme.test"]
    for resource in excluded["Resources"]:
        assert "emails" not in resource
        assert "name" not in resource
        assert resource["externalId"].startswith("ext-")


async def test_invalid_projection_is_400_invalid_value(
    client: httpx2.AsyncClient, ada: dict[str, Any]
) -> None:
    for params in ({"attributes": 'emails[type eq "work"]'}, {"excludedAttributes": "x[y"}):
        response = await client.get("/Users", params=params)
        assert response.status_code == 400, (params, response.text)
        assert response.json()["scimType"] in ("invalidValue", "invalidFilter", "invalidPath")
        assert response.json()["detail"].strip()


# --- POST .search -------------------------------------------------------------------


async def test_search_at_the_root_and_on_users_agree_with_get(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    bulk_insert(db, tenant.slug, numbered(30))
    query = {
        "filter": 'userName sw "user001" or externalId eq "ext-0025"',
        "sortBy": "userName",
        "sortOrder": "descending",
        "startIndex": 2,
        "count": 5,
    }
    got = await page(client, **query)
    on_users = await search(client, **query)
    at_root = await search(client, path="/.search", **query)
    assert got == on_users == at_root
    assert got["totalResults"] == 11
    assert got["startIndex"] == 2
    assert user_names(got) == [f"user{i:04d}@acme.test" for i in (19, 18, 17, 16, 15)]
    for resource in at_root["Resources"]:
        assert resource["meta"]["resourceType"] == "User"
        assert resource["meta"]["location"].endswith(f"/Users/{resource['id']}")


async def test_search_requests_that_are_not_objects_are_400(client: httpx2.AsyncClient) -> None:
    for path in ("/Users/.search", "/.search"):
        for bad in ([], "filter", 42):
            response = await client.post(path, json=bad)
            assert response.status_code == 400, response.text
            assert response.json()["scimType"] == "invalidSyntax"


async def test_listing_only_shows_the_callers_live_users(
    client: httpx2.AsyncClient, app: Any, db: Engine, tenant: TenantHandle
) -> None:
    other = make_tenant(db, "globex")
    bulk_insert(db, tenant.slug, numbered(4))
    bulk_insert(db, other.slug, numbered(6, prefix="globex"))
    body = await page(client)
    doomed = body["Resources"][0]["id"]
    assert (await client.delete(f"/Users/{doomed}")).status_code == 204
    for listed in (await page(client), await search(client), await search(client, path="/.search")):
        assert listed["totalResults"] == 3
        assert doomed not in {r["id"] for r in listed["Resources"]}
        assert all(name.startswith("user") for name in user_names(listed))
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://localhost/scim/v2",
        headers=other.headers,
    ) as globex:
        listed = (await globex.get("/Users", params={"count": "1000"})).json()
        assert listed["totalResults"] == 6
        assert all(name.startswith("globex") for name in user_names(listed))


# --- query plans: the lookups IdPs make on every user are index scans ---------------


@pytest.fixture
def two_thousand_users(db: Engine, tenant: TenantHandle) -> uuid.UUID:
    bodies = numbered(2000)
    for i, body in enumerate(bodies):
        body["emails"].append({"value": f"alias{i:04d}@other.test", "type": "home"})
    bulk_insert(db, tenant.slug, bodies)
    other = make_tenant(db, "globex")
    bulk_insert(db, other.slug, numbered(300, prefix="globex"))
    with db.begin() as conn:
        conn.execute(text("ANALYZE users"))
    return tenant_id(db, tenant.slug)


def plans(db: Engine, owner: uuid.UUID, scim_filter: str) -> list[str]:
    """EXPLAIN of the two statements store.search runs for a filter (count, then page)."""
    c = users.c
    where = [c.tenant_id == owner, c.deleted_at.is_(None), compile_filter(USER, scim_filter)]
    statements = [
        select(func.count()).select_from(users).where(*where),
        select(c.id, c.scim_id, c.attributes, c.version, c.created_at, c.updated_at)
        .where(*where)
        .order_by(c.created_at, c.id)
        .offset(0)
        .limit(100),
    ]
    dialect = psycopg_dialect.dialect()
    found = []
    with db.connect() as conn:
        for statement in statements:
            compiled = statement.compile(dialect=dialect)
            rows = conn.exec_driver_sql("EXPLAIN " + str(compiled), compiled.params).all()
            found.append("\n".join(row[0] for row in rows))
        # The statements do find the user (so the plan is the one a lookup gets).
        assert conn.execute(statements[0]).scalar_one() == 1
    return found


@pytest.mark.parametrize(
    ("scim_filter", "index"),
    [
        ('userName eq "USER1234@acme.test"', "uq_users_tenant_username"),
        (f'{CORE}:userName eq "user0042@acme.test"', "uq_users_tenant_username"),
        ('externalId eq "ext-1234"', "ix_users_tenant_external_id"),
        ('emails eq "Alias1234@Other.test"', "ix_users_email_values"),
        ('emails.value eq "user1234@acme.test"', "ix_users_email_values"),
    ],
)
def test_idp_lookups_are_index_scans(
    db: Engine, two_thousand_users: uuid.UUID, scim_filter: str, index: str
) -> None:
    for plan in plans(db, two_thousand_users, scim_filter):
        assert "Seq Scan on users" not in plan, f"{scim_filter}:\n{plan}"
        assert index in plan, f"{scim_filter} does not use {index}:\n{plan}"


async def test_idp_lookups_answer_through_the_api_on_a_big_tenant(
    client: httpx2.AsyncClient, two_thousand_users: uuid.UUID
) -> None:
    for scim_filter, expected in (
        ('userName eq "USER1234@acme.test"', "user1234@acme.test"),
        ('externalId eq "ext-0007"', "user0007@acme.test"),
        ('emails eq "ALIAS1999@other.test"', "user1999@acme.test"),
    ):
        body = await page(client, filter=scim_filter)
        assert body["totalResults"] == 1
        assert user_names(body) == [expected]
    body = await page(client, filter='externalId eq "EXT-0007"')
    assert body["totalResults"] == 0
