"""POST /Bulk (RFC 7644 §3.7): each operation as if sent alone, bulkIds, limits, failOnErrors."""

from __future__ import annotations

import json
import time
import uuid
from collections import Counter
from typing import Any

import httpx2
import jsonschema_rs
import pytest
from sqlalchemy import Engine, text

from tests.conftest import TenantHandle, make_tenant, scim_client, user_body
from tests.integration.test_errors import ERROR, assert_scim_error

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"
BULK_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:BulkResponse"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def bulk_body(operations: Any, **extra: Any) -> dict[str, Any]:
    return {"schemas": [BULK_REQUEST], "Operations": operations, **extra}


async def bulk(client: httpx2.AsyncClient, operations: Any, **extra: Any) -> list[dict[str, Any]]:
    """Send a bulk request that must be accepted as a whole; its per-operation results."""
    response = await client.post("/Bulk", json=bulk_body(operations, **extra))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/scim+json"
    answer = response.json()
    assert answer["schemas"] == [BULK_RESPONSE]
    results: list[dict[str, Any]] = answer["Operations"]
    return results


def create(bulk_id: str, user_name: str, **extra: Any) -> dict[str, Any]:
    return {
        "method": "POST",
        "bulkId": bulk_id,
        "path": "/Users",
        "data": user_body(user_name, **extra),
    }


def with_manager(user_name: str, manager: str, **extra: Any) -> dict[str, Any]:
    body = user_body(user_name, **extra)
    body["schemas"].append(ENTERPRISE)
    body[ENTERPRISE] = {"department": "Ops", "manager": {"value": manager}}
    return body


def assert_op_error(result: dict[str, Any], status: int, scim_type: str | None) -> None:
    """A failed operation: its status and a SCIM error body (RFC 7644 §3.12) as its response."""
    assert result["status"] == str(status), result
    error = result["response"]
    assert error["schemas"] == [ERROR], result
    assert error["status"] == str(status), result
    assert error.get("scimType") == scim_type, result
    assert error["detail"] and "Traceback" not in error["detail"], result
    assert "location" not in result and "version" not in result, result


def user_names(db: Engine, slug: str = "acme") -> set[str]:
    with db.connect() as conn:
        return set(
            conn.execute(
                text(
                    "SELECT u.user_name FROM users u JOIN tenants t ON t.id = u.tenant_id "
                    "WHERE t.slug = :slug"
                ),
                {"slug": slug},
            ).scalars()
        )


def event_kinds(db: Engine, slug: str = "acme") -> list[str]:
    with db.connect() as conn:
        return list(
            conn.execute(
                text(
                    "SELECT e.kind FROM provisioning_events e JOIN tenants t ON t.id = e.tenant_id "
                    "WHERE t.slug = :slug ORDER BY e.id"
                ),
                {"slug": slug},
            ).scalars()
        )


def count(db: Engine, table: str) -> int:
    with db.connect() as conn:
        return int(conn.execute(text(f"SELECT count(*) FROM {table}")).scalar_one())  # noqa: S608


def encoded(value: Any) -> bytes:
    return json.dumps(value).encode()


def server_client(app: Any, handle: TenantHandle) -> httpx2.AsyncClient:
    """Like the client fixture, but an unhandled error is the 500 a real server answers."""
    return httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app, raise_app_exceptions=False),
        base_url="http://localhost/scim/v2",
        headers=handle.headers,
    )


# 1. A mixed bulk ---------------------------------------------------------------------------


async def test_a_mixed_bulk_runs_every_operation_like_the_endpoints_do(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    operations = [
        create("a", "ann@acme.test"),
        {
            "method": "POST",
            "bulkId": "b",
            "path": "/Users",
            "data": with_manager("ben@acme.test", "bulkId:a"),
        },
        {"method": "PATCH", "path": "/Users/bulkId:a", "data": DEACTIVATE},
        {
            "method": "PUT",
            "path": "/Users/bulkId:b",
            "data": with_manager("ben@acme.test", "bulkId:a", title="Lead"),
        },
        {"method": "DELETE", "path": "/Users/bulkId:b"},
    ]
    results = await bulk(client, operations)

    assert [r["status"] for r in results] == ["201", "201", "200", "200", "204"]
    assert [r["method"] for r in results] == ["POST", "POST", "PATCH", "PUT", "DELETE"]
    assert [r.get("bulkId") for r in results] == ["a", "b", None, None, None]
    assert all("response" not in r for r in results), results
    a_location, b_location = results[0]["location"], results[1]["location"]
    a_id, b_id = a_location.rsplit("/", 1)[1], b_location.rsplit("/", 1)[1]
    assert a_location == f"http://localhost/scim/v2/Users/{a_id}"
    assert b_location == f"http://localhost/scim/v2/Users/{b_id}"
    assert a_id != b_id
    assert [r["location"] for r in results[2:]] == [a_location, b_location, b_location]
    assert [r.get("version") for r in results] == ['W/"1"', 'W/"1"', 'W/"2"', 'W/"2"', None]

    # The API sees what the bulk did.
    a = (await client.get(f"/Users/{a_id}")).json()
    assert a["active"] is False
    assert a["meta"]["version"] == 'W/"2"'
    assert (await client.get(f"/Users/{b_id}")).status_code == 404
    # So does the database: b pointed at a (resolved, not the literal bulkId) before it went.
    with db.connect() as conn:
        rows = {
            row.user_name: row
            for row in conn.execute(
                text(
                    "SELECT user_name, scim_id::text AS scim_id, active, deleted_at, title, "
                    "attributes::text AS attributes FROM users"
                )
            )
        }
    assert set(rows) == {"ann@acme.test", "ben@acme.test"}
    assert rows["ann@acme.test"].scim_id == a_id and rows["ann@acme.test"].active is False
    ben = rows["ben@acme.test"]
    assert ben.scim_id == b_id and ben.deleted_at is not None and ben.title == "Lead"
    assert a_id in ben.attributes and "bulkId:" not in ben.attributes

    bulk_kinds = event_kinds(db)
    assert bulk_kinds == [
        "user.created",
        "user.created",
        "user.deactivated",
        "user.updated",
        "user.deleted",
    ]

    # The same requests one by one (in another workspace) make exactly the same events.
    globex = make_tenant(db, "globex")
    async with scim_client(app, globex.headers) as alone:
        a1 = await alone.post("/Users", json=user_body("ann@acme.test"))
        b1 = await alone.post("/Users", json=with_manager("ben@acme.test", a1.json()["id"]))
        assert b1.json()[ENTERPRISE]["manager"]["value"] == a1.json()["id"]
        await alone.patch(f"/Users/{a1.json()['id']}", json=DEACTIVATE)
        replaced = with_manager("ben@acme.test", a1.json()["id"], title="Lead")
        await alone.put(f"/Users/{b1.json()['id']}", json=replaced)
        assert (await alone.delete(f"/Users/{b1.json()['id']}")).status_code == 204
    assert Counter(event_kinds(db, "globex")) == Counter(bulk_kinds)
    assert event_kinds(db, "globex") == bulk_kinds


async def test_bulk_id_references_are_resolved_in_the_returned_resources(
    client: httpx2.AsyncClient,
) -> None:
    results = await bulk(
        client,
        [
            create("boss", "boss@acme.test"),
            {
                "method": "POST",
                "bulkId": "report",
                "path": "/Users",
                "data": with_manager("rep@acme.test", "bulkId:boss"),
            },
        ],
    )
    boss_id = results[0]["location"].rsplit("/", 1)[1]
    report = await client.get(results[1]["location"].removeprefix("http://localhost/scim/v2"))
    assert report.json()[ENTERPRISE]["manager"]["value"] == boss_id


def group(bulk_id: str, name: str, *members: str) -> dict[str, Any]:
    return {
        "method": "POST",
        "bulkId": bulk_id,
        "path": "/Groups",
        "data": {
            "schemas": [GROUP],
            "displayName": name,
            "members": [{"value": m} for m in members],
        },
    }


async def test_groups_and_their_members_in_one_bulk_as_in_rfc_7644_3_7_2(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    add_carol = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "add", "path": "members", "value": [{"value": "bulkId:carol"}]}],
    }
    results = await bulk(
        client,
        [
            create("alice", "alice@acme.test"),
            create("bob", "bob@acme.test"),
            group("guides", "Tour Guides", "bulkId:alice", "bulkId:bob"),
            create("carol", "carol@acme.test"),
            {"method": "PATCH", "path": "/Groups/bulkId:guides", "data": add_carol},
            group("temp", "Temporary", "bulkId:carol"),
            {"method": "DELETE", "path": "/Groups/bulkId:temp"},
            # A reference to a user that was never created fails that operation
            # alone, and so does a reference to the group it would have made.
            group("ghosts", "Ghosts", "bulkId:nobody"),
            {"method": "PATCH", "path": "/Groups/bulkId:ghosts", "data": add_carol},
        ],
    )

    assert [r["status"] for r in results] == [
        *["201"] * 4,
        "204",
        "201",
        "204",
        "409",
        "409",
    ]
    for failed in results[7:]:
        assert_op_error(failed, 409, "invalidValue")
        assert "nobody" in failed["response"]["detail"] or "ghosts" in failed["response"]["detail"]
    ids = {
        r["bulkId"]: r["location"].rsplit("/", 1)[1]
        for r in results
        if "bulkId" in r and r["status"] == "201"
    }
    assert results[2]["location"] == f"http://localhost/scim/v2/Groups/{ids['guides']}"
    assert results[2]["version"].startswith('W/"')
    assert results[4]["location"] == results[2]["location"]

    guides = (await client.get(f"/Groups/{ids['guides']}")).json()
    assert sorted(m["value"] for m in guides["members"]) == sorted(
        [ids["alice"], ids["bob"], ids["carol"]]
    )
    alice = (await client.get(f"/Users/{ids['alice']}")).json()
    assert [(g["value"], g["display"]) for g in alice["groups"]] == [(ids["guides"], "Tour Guides")]
    assert (await client.get(f"/Groups/{ids['temp']}")).status_code == 404
    assert event_kinds(db).count("group.created") == 2
    assert event_kinds(db).count("group.deleted") == 1


async def test_another_tenants_bulk_cannot_touch_a_group_or_make_its_users_members(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    victim = (await client.post("/Users", json=user_body("vic@acme.test"))).json()
    created = await client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Ops", "members": [{"value": victim["id"]}]},
    )
    assert created.status_code == 201, created.text
    ops = created.json()
    intruder = make_tenant(db, "globex")
    rename = {
        "schemas": [PATCH_OP],
        "Operations": [{"op": "replace", "value": {"displayName": "X"}}],
    }
    theirs = f"/Groups/{ops['id']}"
    async with scim_client(app, intruder.headers) as globex:
        results = await bulk(
            globex,
            [
                {"method": "PATCH", "path": theirs, "data": rename},
                {"method": "PUT", "path": theirs, "data": {"schemas": [GROUP], "displayName": "X"}},
                {"method": "DELETE", "path": theirs},
                group("mine", "Mine", victim["id"]),
            ],
        )
    for result in results[:3]:
        assert_op_error(result, 404, None)
    assert_op_error(results[3], 400, "invalidValue")
    assert victim["id"] in results[3]["response"]["detail"]
    after = (await client.get(theirs)).json()
    assert after["displayName"] == "Ops"
    assert [m["value"] for m in after["members"]] == [victim["id"]]
    assert event_kinds(db, "globex") == []


async def test_a_successful_bulk_response_matches_the_published_schema(
    client: httpx2.AsyncClient, anonymous: httpx2.AsyncClient
) -> None:
    document = (await anonymous.get("http://localhost/scim/v2/openapi.json")).json()
    response = await client.post(
        "/Bulk",
        json=bulk_body(
            [
                create("x", "x@acme.test"),
                {"method": "PATCH", "path": "/Users/bulkId:x", "data": DEACTIVATE},
                create("y", "x@acme.test"),
                {"method": "DELETE", "path": "/Users/bulkId:x"},
            ]
        ),
    )
    schema = document["components"]["schemas"]["BulkResponse"]
    jsonschema_rs.validate(schema, response.json())


# 2. Partial failure -------------------------------------------------------------------------


async def test_one_failed_operation_fails_alone_and_so_do_references_to_it(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    assert (await client.post("/Users", json=user_body("taken@acme.test"))).status_code == 201
    operations = [
        create("ok1", "ok1@acme.test"),
        create("clash", "TAKEN@acme.test"),
        {"method": "PATCH", "path": "/Users/bulkId:clash", "data": DEACTIVATE},
        {
            "method": "POST",
            "bulkId": "ref",
            "path": "/Users",
            "data": with_manager("ref@acme.test", "bulkId:clash"),
        },
        {"method": "DELETE", "path": "/Users/bulkId:nobody"},
        {"method": "PATCH", "path": "/Users/bulkId:later", "data": DEACTIVATE},
        create("later", "later@acme.test"),
        {"method": "PATCH", "path": "/Users/bulkId:later", "data": DEACTIVATE},
        {
            "method": "POST",
            "bulkId": "ok2",
            "path": "/Users",
            "data": with_manager("ok2@acme.test", "bulkId:ok1"),
        },
    ]
    results = await bulk(client, operations)

    assert [r["status"] for r in results] == [
        "201",
        "409",
        "409",
        "409",
        "409",
        "409",
        "201",
        "200",
        "201",
    ]
    assert_op_error(results[1], 409, "uniqueness")
    assert "userName" in results[1]["response"]["detail"]
    assert results[1]["bulkId"] == "clash"
    for unresolved in (2, 3, 4, 5):
        assert_op_error(results[unresolved], 409, "invalidValue")
    assert "clash" in results[2]["response"]["detail"]
    assert "nobody" in results[4]["response"]["detail"]
    assert "later" in results[5]["response"]["detail"]

    assert user_names(db) == {
        "taken@acme.test",
        "ok1@acme.test",
        "later@acme.test",
        "ok2@acme.test",
    }
    # A failed operation writes nothing: no events for it, the taken user untouched.
    assert event_kinds(db) == [
        "user.created",  # taken, before the bulk
        "user.created",  # ok1
        "user.created",  # later
        "user.deactivated",  # the PATCH after "later" was created
        "user.created",  # ok2
    ]
    taken = await client.get("/Users", params={"filter": 'userName eq "taken@acme.test"'})
    assert taken.json()["Resources"][0]["active"] is True


# 3. failOnErrors ----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("fail_on_errors", "processed", "created"),
    [
        (None, 7, {"a", "b", "c", "d"}),
        (1, 2, {"a"}),
        (2, 4, {"a", "b"}),
        (3, 6, {"a", "b", "c"}),
    ],
)
async def test_fail_on_errors_stops_after_that_many_failures(
    client: httpx2.AsyncClient,
    db: Engine,
    fail_on_errors: int | None,
    processed: int,
    created: set[str],
) -> None:
    await client.post("/Users", json=user_body("taken@acme.test"))
    operations = [
        create("a", "a@acme.test"),
        create("t1", "taken@acme.test"),  # failure 1
        create("b", "b@acme.test"),
        {"method": "PATCH", "path": "/Users/bulkId:ghost", "data": DEACTIVATE},  # failure 2
        create("c", "c@acme.test"),
        create("t2", "taken@acme.test"),  # failure 3
        create("d", "d@acme.test"),
    ]
    extra = {} if fail_on_errors is None else {"failOnErrors": fail_on_errors}
    results = await bulk(client, operations, **extra)

    expected = ["201", "409", "201", "409", "201", "409", "201"]
    assert [r["status"] for r in results] == expected[:processed]
    assert [r.get("bulkId") for r in results] == [o.get("bulkId") for o in operations][:processed]
    assert user_names(db) == {"taken@acme.test"} | {f"{n}@acme.test" for n in created}
    assert event_kinds(db) == ["user.created"] * (1 + len(created))


async def test_fail_on_errors_larger_than_the_failures_changes_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    results = await bulk(
        client,
        [create("a", "a@acme.test"), create("a2", "a@acme.test"), create("b", "b@acme.test")],
        failOnErrors=2,
    )
    assert [r["status"] for r in results] == ["201", "409", "201"]
    assert user_names(db) == {"a@acme.test", "b@acme.test"}


# 4. Validation ------------------------------------------------------------------------------

A_VALID_POST = create("v", "valid@acme.test")


@pytest.mark.parametrize(
    ("content", "scim_type"),
    [
        (b"{not json", "invalidSyntax"),
        (b"[]", "invalidSyntax"),
        (b'"Operations"', "invalidSyntax"),
        (b"null", "invalidSyntax"),
        (encoded([A_VALID_POST]), "invalidSyntax"),
        (encoded({"schemas": [BULK_REQUEST]}), "invalidSyntax"),
        (encoded(bulk_body(None)), "invalidSyntax"),
        (encoded(bulk_body({"0": A_VALID_POST})), "invalidSyntax"),
        (encoded(bulk_body("POST /Users")), "invalidSyntax"),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors=0)),
            "invalidValue",
        ),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors=-1)),
            "invalidValue",
        ),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors="2")),
            "invalidValue",
        ),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors=True)),
            "invalidValue",
        ),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors=1.5)),
            "invalidValue",
        ),
        (
            encoded(bulk_body([A_VALID_POST], failOnErrors=[1])),
            "invalidValue",
        ),
    ],
)
async def test_a_malformed_bulk_request_is_refused_as_a_whole(
    client: httpx2.AsyncClient, db: Engine, content: bytes, scim_type: str
) -> None:
    response = await client.post("/Bulk", content=content)
    assert_scim_error(response, 400, scim_type)
    assert count(db, "users") == 0
    assert count(db, "provisioning_events") == 0


async def test_a_bulk_request_must_be_json(client: httpx2.AsyncClient, db: Engine) -> None:
    response = await client.post(
        "/Bulk",
        content=encoded(bulk_body([A_VALID_POST])),
        headers={"Content-Type": "text/plain"},
    )
    assert_scim_error(response, 415)
    assert_scim_error(await client.get("/Bulk"), 405)
    assert count(db, "users") == 0


async def test_invalid_operations_fail_alone_and_write_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    data = user_body("never@acme.test")
    operations: list[Any] = [
        "POST /Users",
        ["POST", "/Users"],
        None,
        42,
        {"method": "GET", "path": "/Users"},
        {"method": "GET", "bulkId": "g", "path": "/Users/bulkId:first"},
        {"method": "HEAD", "path": "/Users"},
        {"method": None, "path": "/Users", "bulkId": "n", "data": data},
        {"path": "/Users", "bulkId": "m", "data": data},
        {"method": "POST", "bulkId": "me", "path": "/Me", "data": data},
        {"method": "POST", "bulkId": "blk", "path": "/Bulk", "data": bulk_body([A_VALID_POST])},
        {"method": "POST", "bulkId": "rel", "path": "Users", "data": data},
        {"method": "POST", "bulkId": "url", "path": "http://localhost/scim/v2/Users", "data": data},
        {"method": "POST", "bulkId": "nop", "data": data},
        {"method": "POST", "bulkId": "np", "path": None, "data": data},
        {"method": "POST", "path": "/Users", "data": data},
        {"method": "POST", "bulkId": "", "path": "/Users", "data": data},
        {"method": "POST", "bulkId": 7, "path": "/Users", "data": data},
        create("first", "first@acme.test"),
        create("first", "second@acme.test"),
        {"method": "POST", "bulkId": "nodata", "path": "/Users"},
        {"method": "POST", "bulkId": "listdata", "path": "/Users", "data": [data]},
        {"method": "PATCH", "path": "/Users/bulkId:first", "data": "active=false"},
        {"method": "PATCH", "path": "/Users/bulkId:first", "data": DEACTIVATE, "version": 1},
        {"method": "DELETE", "path": "Users/bulkId:first"},
        {"method": "DELETE", "path": "/Me/bulkId:first"},
        create("last", "last@acme.test"),
    ]
    results = await bulk(client, operations)
    assert len(results) == len(operations)

    expected: list[tuple[int, str | None]] = [
        *[(400, "invalidSyntax")] * 4,  # not objects
        *[(400, "invalidValue")] * 5,  # GET, GET, HEAD, method null, no method
        *[(400, "invalidValue")] * 6,  # /Me, /Bulk, relative, absolute URL, no path, null
        *[(400, "invalidValue")] * 3,  # POST without a (usable) bulkId
        (201, None),
        (400, "invalidValue"),  # duplicate bulkId
        *[(400, "invalidSyntax")] * 3,  # POST/PATCH without an object as data
        (400, "invalidValue"),  # version not a string
        *[(400, "invalidValue")] * 2,  # DELETE off /Users and /Groups
        (201, None),
    ]
    for operation, result, (status, scim_type) in zip(operations, results, expected, strict=True):
        if status == 201:
            assert result["status"] == "201", (operation, result)
        else:
            assert_op_error(result, status, scim_type)
    assert results[0]["method"] is None
    assert results[4]["method"] == "GET"
    assert results[19]["bulkId"] == "first"

    assert user_names(db) == {"first@acme.test", "last@acme.test"}
    assert event_kinds(db) == ["user.created", "user.created"]
    first = await client.get(results[18]["location"].removeprefix("http://localhost/scim/v2"))
    assert first.json()["active"] is True  # no invalid PATCH/DELETE reached it


async def test_a_bulk_id_is_unique_in_the_request_even_when_its_first_post_failed(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """RFC 7644 §3.7: a bulkId identifies one operation of the request; a second POST with
    it is a duplicate (400), whether or not the first POST succeeded."""
    await client.post("/Users", json=user_body("taken@acme.test"))
    results = await bulk(
        client,
        [
            create("x", "taken@acme.test"),
            create("x", "fresh@acme.test"),
            {"method": "PATCH", "path": "/Users/bulkId:x", "data": DEACTIVATE},
        ],
    )
    assert_op_error(results[0], 409, "uniqueness")
    assert_op_error(results[1], 400, "invalidValue")
    assert_op_error(results[2], 409, "invalidValue")
    assert user_names(db) == {"taken@acme.test"}


async def test_a_search_is_not_a_bulk_operation(app: Any, tenant: TenantHandle, db: Engine) -> None:
    """The searches are reads, not operations (bulk.py): refused per operation, never a 500."""
    async with server_client(app, tenant) as client:
        await client.post("/Users", json=user_body("seen@acme.test"))
        response = await client.post(
            "/Bulk",
            json=bulk_body(
                [
                    create("before", "before@acme.test"),
                    {"method": "POST", "bulkId": "s", "path": "/Users/.search", "data": {}},
                    create("after", "after@acme.test"),
                ]
            ),
        )
    assert response.status_code == 200, response.text
    before, search, after = response.json()["Operations"]
    assert before["status"] == "201"
    assert search["status"] in ("400", "404", "405"), search
    assert search["response"]["schemas"] == [ERROR]
    assert after["status"] == "201"
    assert user_names(db) == {"seen@acme.test", "before@acme.test", "after@acme.test"}


@pytest.mark.parametrize("method", ["PATCH", "PUT", "DELETE", "POST"])
async def test_a_path_with_a_trailing_slash_is_done_or_refused_never_redirected(
    app: Any, tenant: TenantHandle, db: Engine, method: str
) -> None:
    """A bulk operation's status is final: the client cannot follow a redirect (RFC 7644
    §3.7.3), so each one is either carried out or refused with a SCIM error."""
    async with server_client(app, tenant) as client:
        created = (await client.post("/Users", json=user_body("sl@acme.test"))).json()
        operation: dict[str, Any] = {
            "PATCH": {"path": f"/Users/{created['id']}/", "data": DEACTIVATE},
            "PUT": {
                "path": f"/Users/{created['id']}/",
                "data": user_body("sl@acme.test", active=False),
            },
            "DELETE": {"path": f"/Users/{created['id']}/"},
            "POST": {"path": "/Users/", "bulkId": "n", "data": user_body("new@acme.test")},
        }[method]
        response = await client.post("/Bulk", json=bulk_body([{"method": method, **operation}]))
        assert response.status_code == 200, response.text
        [result] = response.json()["Operations"]
        assert not result["status"].startswith("3"), result
        done, event = {
            "PATCH": ("200", "user.deactivated"),
            "PUT": ("200", "user.deactivated"),
            "DELETE": ("204", "user.deleted"),
            "POST": ("201", "user.created"),
        }[method]
        if result["status"] == done:
            assert event_kinds(db) == ["user.created", event]
        else:
            assert result["status"].startswith("4"), result
            assert result["response"]["schemas"] == [ERROR]
            assert event_kinds(db) == ["user.created"]


# 5. Limits ----------------------------------------------------------------------------------


async def test_more_than_max_operations_is_413_and_writes_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    config = (await client.get("/ServiceProviderConfig")).json()["bulk"]
    assert config == {"supported": True, "maxOperations": 1000, "maxPayloadSize": 1_048_576}
    operations = [create(f"u{i}", f"u{i}@acme.test") for i in range(1001)]
    content = encoded(bulk_body(operations))
    assert len(content) < config["maxPayloadSize"]  # refused for the count, not the size

    response = await client.post("/Bulk", content=content)

    assert_scim_error(response, 413)
    assert "1000" in response.json()["detail"]
    assert count(db, "users") == 0
    assert count(db, "provisioning_events") == 0


async def test_a_body_over_max_payload_size_is_413_and_writes_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    big = create("big", "big@acme.test", title="x" * 1_048_576)
    response = await client.post("/Bulk", json=bulk_body([create("a", "a@acme.test"), big]))
    assert_scim_error(response, 413)

    # Many small operations adding up to just over the limit, streamed without a length.
    operations = [create(f"p{i}", f"p{i}@acme.test", title="t" * 3000) for i in range(340)]
    content = encoded(bulk_body(operations))
    assert 1_048_576 < len(content) < 1_200_000

    async def chunks() -> Any:
        for start in range(0, len(content), 65536):
            yield content[start : start + 65536]

    streamed = await client.post("/Bulk", content=chunks())
    assert_scim_error(streamed, 413)
    assert count(db, "users") == 0
    assert count(db, "provisioning_events") == 0


async def test_a_thousand_creates_in_one_bulk_all_succeed(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    operations = [
        {
            "method": "POST",
            "bulkId": f"n{i}",
            "path": "/Users",
            "data": user_body(f"n{i}@acme.test"),
        }
        for i in range(1000)
    ]
    started = time.perf_counter()
    response = await client.post("/Bulk", json=bulk_body(operations))
    elapsed = time.perf_counter() - started
    print(
        f"\nbulk create of 1,000 users: {elapsed:.2f} s "
        f"({elapsed * 1000 / len(operations):.2f} ms per operation)"
    )

    assert response.status_code == 200, response.text[:2000]
    results = response.json()["Operations"]
    assert [r["status"] for r in results] == ["201"] * 1000
    assert [r["bulkId"] for r in results] == [f"n{i}" for i in range(1000)]
    assert len({r["location"] for r in results}) == 1000
    assert count(db, "users") == 1000
    assert event_kinds(db) == ["user.created"] * 1000
    listed = await client.get("/Users", params={"count": 0})
    assert listed.json()["totalResults"] == 1000


# 6. version -> If-Match ---------------------------------------------------------------------


async def test_version_is_the_operations_if_match(client: httpx2.AsyncClient, db: Engine) -> None:
    created = (await client.post("/Users", json=user_body("ve@acme.test"))).json()
    path = f"/Users/{created['id']}"
    title = {"Operations": [{"op": "replace", "path": "title", "value": "One"}]}
    retitle = {"Operations": [{"op": "replace", "path": "title", "value": "Two"}]}

    results = await bulk(
        client,
        [
            {"method": "PATCH", "path": path, "data": title, "version": created["meta"]["version"]},
            {"method": "PATCH", "path": path, "data": retitle, "version": 'W/"1"'},  # stale now
            {"method": "PUT", "path": path, "data": user_body("ve@acme.test"), "version": '"9"'},
            {"method": "DELETE", "path": path, "version": 'W/"1"'},
            {"method": "PATCH", "path": path, "data": retitle, "version": '"2"'},  # weak match
        ],
    )

    assert [r["status"] for r in results] == ["200", "412", "412", "412", "200"]
    assert results[0]["version"] == 'W/"2"'
    assert results[4]["version"] == 'W/"3"'
    for stale in results[1:4]:
        assert_op_error(stale, 412, None)
    user = (await client.get(path)).json()
    assert user["title"] == "Two"
    assert user["meta"]["version"] == 'W/"3"'
    assert event_kinds(db) == ["user.created", "user.updated", "user.updated"]


async def test_an_outer_if_match_does_not_leak_into_the_operations(
    client: httpx2.AsyncClient,
) -> None:
    created = (await client.post("/Users", json=user_body("im@acme.test"))).json()
    patch = {"Operations": [{"op": "replace", "path": "title", "value": "Z"}]}
    response = await client.post(
        "/Bulk",
        json=bulk_body([{"method": "PATCH", "path": f"/Users/{created['id']}", "data": patch}]),
        headers={"If-Match": 'W/"42"'},
    )
    assert response.status_code == 200
    assert response.json()["Operations"][0]["status"] == "200"


# 7. Tenant isolation and authentication -----------------------------------------------------


async def test_another_tenants_bulk_cannot_touch_a_users(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    victim = (await client.post("/Users", json=user_body("vic@acme.test"))).json()
    intruder = make_tenant(db, "globex")
    theirs, nobody = f"/Users/{victim['id']}", f"/Users/{uuid.uuid4()}"
    operations = []
    for path in (theirs, nobody):
        operations += [
            {"method": "PATCH", "path": path, "data": DEACTIVATE},
            {"method": "PUT", "path": path, "data": user_body("vic@acme.test", title="Owned")},
            {"method": "DELETE", "path": path},
            {"method": "DELETE", "path": path, "version": 'W/"1"'},
        ]
    async with scim_client(app, intruder.headers) as globex:
        results = await bulk(globex, operations)

        assert [r["status"] for r in results] == ["404"] * 8
        for result in results:
            assert_op_error(result, 404, None)
        # The same answers as for an id that exists nowhere: nothing is revealed.
        assert [r["response"] for r in results[:4]] == [r["response"] for r in results[4:]]

        # A's token on B's host is refused as a whole.
        on_their_host = await globex.post(
            "/Bulk", json=bulk_body(operations), headers={"Host": "acme.simpleams.test"}
        )
        assert_scim_error(on_their_host, 401)

    assert (await client.get(theirs)).json() == victim
    assert event_kinds(db, "globex") == []
    assert event_kinds(db) == ["user.created"]


async def test_a_bulk_without_a_valid_token_is_401_as_a_whole(
    anonymous: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    body = bulk_body([create("a", "a@acme.test")])
    assert_scim_error(await anonymous.post("/Bulk", json=body), 401)
    bad = {"Authorization": "Bearer sams_scim_" + "A" * 46}
    assert_scim_error(await anonymous.post("/Bulk", json=body, headers=bad), 401)
    # One character off (never the same one: a token ending in "x" made this
    # the real token, about one run in 64).
    last = "y" if tenant.token.endswith("x") else "x"
    revoked_like = {"Authorization": f"Bearer {tenant.token[:-1]}{last}"}
    assert_scim_error(await anonymous.post("/Bulk", json=body, headers=revoked_like), 401)
    assert count(db, "users") == 0


# 8. OpenAPI ---------------------------------------------------------------------------------


async def test_openapi_documents_post_bulk(anonymous: httpx2.AsyncClient) -> None:
    response = await anonymous.get("http://localhost/scim/v2/openapi.json")
    assert response.status_code == 200
    document = response.json()
    post = document["paths"]["/Bulk"]["post"]
    assert set(document["paths"]["/Bulk"]) == {"post"}
    request_schema = post["requestBody"]["content"]["application/scim+json"]["schema"]
    assert request_schema == {"$ref": "#/components/schemas/BulkRequest"}
    ok = post["responses"]["200"]["content"]["application/scim+json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/BulkResponse"}
    assert {"400", "401", "413"} <= set(post["responses"])

    schemas = document["components"]["schemas"]
    operations = schemas["BulkRequest"]["properties"]["Operations"]
    assert operations["maxItems"] == 1000
    assert set(operations["items"]["properties"]["method"]["enum"]) == {
        "POST",
        "PUT",
        "PATCH",
        "DELETE",
    }
    assert schemas["BulkRequest"]["properties"]["failOnErrors"]["minimum"] == 1
    result = schemas["BulkResponse"]["properties"]["Operations"]["items"]["properties"]
    assert {"method", "bulkId", "location", "version", "status", "response"} <= set(result)
