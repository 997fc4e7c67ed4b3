"""What Users and Groups share beyond filters and paging (test_resource_types.py):
errors (RFC 7644 §3.12), preconditions (§3.14), hostile input, tenant isolation
and the basics of PATCH (§3.5.2), each tested once over both resource types.

Where the types legitimately differ, each asserts its own documented answer: a
user's PATCH is 200 with the user, a group's is 204 without a body unless
``attributes``/``excludedAttributes`` asks for the group (gateway/scim/endpoints.py).
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import orjson
import pytest
from sqlalchemy import Engine

from tests.conftest import TenantHandle, make_tenant, scim_client, user_body
from tests.db import rows, scalar

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
SEARCH = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"


@dataclass(frozen=True)
class Kind:
    """One resource type, as these tests need it."""

    endpoint: str
    required: str  # the attribute a resource of this type cannot lose

    @property
    def is_group(self) -> bool:
        return self.endpoint == "/Groups"

    def body(self, name: str) -> dict[str, Any]:
        if self.is_group:
            return {"schemas": [GROUP], "displayName": name}
        return user_body(f"{name.lower()}@acme.test", displayName=name)

    def replacement(self, current: dict[str, Any], display: str) -> dict[str, Any]:
        """A PUT body keeping the resource's identity, with a new displayName."""
        if self.is_group:
            return {"schemas": [GROUP], "displayName": display}
        return user_body(current["userName"], displayName=display)

    async def create(self, client: httpx2.AsyncClient, name: str) -> dict[str, Any]:
        response = await client.post(self.endpoint, json=self.body(name))
        assert response.status_code == 201, response.text
        return dict(response.json())

    async def read(self, client: httpx2.AsyncClient, scim_id: str) -> dict[str, Any]:
        response = await client.get(f"{self.endpoint}/{scim_id}")
        assert response.status_code == 200, response.text
        return dict(response.json())

    def assert_patched(self, response: httpx2.Response) -> str:
        """The documented answer to a successful PATCH without a projection; its ETag."""
        if self.is_group:
            assert response.status_code == 204, response.text
            assert response.content == b""
        else:
            assert response.status_code == 200, response.text
            assert response.headers["ETag"] == response.json()["meta"]["version"]
        return response.headers["ETag"]

    def count(self, db: Engine) -> int:
        if self.is_group:
            return int(scalar(db, "SELECT count(*) FROM groups"))
        return int(scalar(db, "SELECT count(*) FROM users"))


USERS = Kind("/Users", "userName")
GROUPS = Kind("/Groups", "displayName")
KINDS = [pytest.param(USERS, id="Users"), pytest.param(GROUPS, id="Groups")]


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


RENAME = patch({"op": "replace", "path": "displayName", "value": "Renamed"})


def assert_scim_error(response: httpx2.Response, status: int, scim_type: str | None = None) -> None:
    """An RFC 7644 §3.12 error: the schema, the status as a string, a detail."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR], body
    assert body["status"] == str(status), body
    assert isinstance(body.get("detail"), str) and body["detail"], body
    assert "Traceback" not in body["detail"]
    if scim_type is not None:
        assert body.get("scimType") == scim_type, body


def request_body(kind: Kind, method: str, current: dict[str, Any]) -> dict[str, Any] | None:
    """A valid body for ``method`` on the resource ``current``."""
    if method == "PUT":
        return kind.replacement(current, "Renamed")
    if method == "PATCH":
        return RENAME
    return None


def events(db: Engine) -> list[str]:
    return [row.kind for row in rows(db, "SELECT kind FROM provisioning_events ORDER BY id")]


# ---------------------------------------------------------------------------
# Errors (RFC 7644 §3.12) and preconditions (§3.14)
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["GET", "PUT", "PATCH", "DELETE"])
@pytest.mark.parametrize(
    "missing",
    [
        pytest.param(str(uuid.uuid4()), id="unknown-uuid"),
        pytest.param("not-a-uuid", id="malformed"),
        pytest.param("12345", id="number"),
        pytest.param(str(uuid.uuid4())[:-1], id="truncated-uuid"),
        pytest.param("%27%20OR%201%3D1--", id="sql-ish"),
    ],
)
async def test_an_unknown_or_malformed_id_is_a_scim_404(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str, missing: str
) -> None:
    existing = await kind.create(client, "Ada")
    before = events(db)
    body = request_body(kind, method, existing)
    response = await client.request(
        method, f"{kind.endpoint}/{missing}", **({"json": body} if body is not None else {})
    )
    assert_scim_error(response, 404)
    assert "scimType" not in response.json()
    assert await kind.read(client, existing["id"]) == existing
    assert events(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "spelling",
    [
        pytest.param(str.upper, id="upper-case"),
        pytest.param(lambda scim_id: scim_id.replace("-", ""), id="no-dashes"),
        pytest.param(lambda scim_id: f"urn:uuid:{scim_id}", id="urn"),
    ],
)
async def test_another_spelling_of_an_id_is_not_the_id(
    client: httpx2.AsyncClient, kind: Kind, spelling: Any
) -> None:
    """RFC 7643 §3.1: ids are caseExact; ours are canonical lowercase UUIDs, and
    another spelling of the same UUID names nothing (gateway/scim/resources.parse_id),
    in a path, a filter or a member list alike."""
    existing = await kind.create(client, "Ada")
    other = spelling(existing["id"])
    assert_scim_error(await client.get(f"{kind.endpoint}/{other}"), 404)
    by_id = quote('id eq "' + other + '"')
    found = await client.get(f"{kind.endpoint}?filter={by_id}")
    assert found.json()["totalResults"] == 0
    if not kind.is_group:
        refused = await client.post(
            "/Groups",
            json={"schemas": [GROUP], "displayName": "Ops", "members": [{"value": other}]},
        )
        assert_scim_error(refused, 400, "invalidValue")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("content_type", ["text/plain", "application/x-www-form-urlencoded", ""])
async def test_a_body_not_sent_as_json_is_415(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str, content_type: str
) -> None:
    existing = await kind.create(client, "Ada")
    url = kind.endpoint if method == "POST" else f"{kind.endpoint}/{existing['id']}"
    body = request_body(kind, method, existing) or kind.body("Ben")
    response = await client.request(
        method, url, content=orjson.dumps(body), headers={"Content-Type": content_type}
    )
    assert_scim_error(response, 415)
    assert kind.count(db) == 1
    assert await kind.read(client, existing["id"]) == existing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize(
    "content",
    [
        pytest.param(b"{not json", id="broken"),
        pytest.param(b'{"displayName": "x",}', id="trailing-comma"),
        pytest.param(b"", id="empty"),
        pytest.param(b"\xff\xfe garbage", id="not-utf8"),
    ],
)
async def test_a_body_that_is_not_json_is_400_invalid_syntax(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str, content: bytes
) -> None:
    existing = await kind.create(client, "Ada")
    url = kind.endpoint if method == "POST" else f"{kind.endpoint}/{existing['id']}"
    response = await client.request(method, url, content=content)
    assert_scim_error(response, 400, "invalidSyntax")
    assert kind.count(db) == 1
    assert await kind.read(client, existing["id"]) == existing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["PUT", "PATCH", "DELETE"])
async def test_if_match_with_a_stale_etag_is_412_and_with_the_current_one_applies(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str
) -> None:
    created = await kind.create(client, "Ada")
    stale = created["meta"]["version"]
    moved = await client.patch(
        f"{kind.endpoint}/{created['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "Moved"}),
    )
    current_etag = kind.assert_patched(moved)
    assert current_etag != stale
    current = await kind.read(client, created["id"])
    assert current["meta"]["version"] == current_etag
    url = f"{kind.endpoint}/{created['id']}"
    body = request_body(kind, method, current)
    payload: dict[str, Any] = {"json": body} if body is not None else {}
    before = events(db)

    refused = await client.request(method, url, headers={"If-Match": stale}, **payload)
    assert_scim_error(refused, 412)
    assert await kind.read(client, created["id"]) == current
    assert events(db) == before

    applied = await client.request(method, url, headers={"If-Match": current_etag}, **payload)
    if method == "DELETE":
        assert applied.status_code == 204, applied.text
        assert (await client.get(url)).status_code == 404
    elif method == "PATCH":
        kind.assert_patched(applied)
        assert (await kind.read(client, created["id"]))["displayName"] == "Renamed"
    else:
        assert applied.status_code == 200, applied.text
        assert applied.json()["displayName"] == "Renamed"
    assert len(events(db)) == len(before) + 1


@pytest.mark.parametrize("kind", KINDS)
async def test_the_etag_header_is_meta_version_on_every_answer(
    client: httpx2.AsyncClient, kind: Kind
) -> None:
    created = await client.post(kind.endpoint, json=kind.body("Ada"))
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["ETag"] == body["meta"]["version"]
    assert created.headers["Location"] == body["meta"]["location"]
    url = f"{kind.endpoint}/{body['id']}"

    got = await client.get(url)
    assert got.headers["ETag"] == got.json()["meta"]["version"] == body["meta"]["version"]

    put = await client.put(url, json=kind.replacement(body, "Renamed"))
    assert put.status_code == 200, put.text
    assert put.headers["ETag"] == put.json()["meta"]["version"] != body["meta"]["version"]

    patched = await client.patch(
        url, json=patch({"op": "replace", "path": "displayName", "value": "Again"})
    )
    etag = kind.assert_patched(patched)
    assert etag != put.headers["ETag"]
    again = await client.get(url)
    assert again.headers["ETag"] == again.json()["meta"]["version"] == etag

    # A projection without meta still carries the ETag header.
    projected = await client.get(f"{url}?attributes=displayName")
    assert "meta" not in projected.json() and projected.headers["ETag"] == etag


# ---------------------------------------------------------------------------
# Hostile input
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("where", ["value", "name"])
async def test_a_nul_character_in_the_body_is_400_not_500(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str, where: str
) -> None:
    existing = await kind.create(client, "Ada")
    before = events(db)
    url = kind.endpoint if method == "POST" else f"{kind.endpoint}/{existing['id']}"
    if where == "value":
        display = {"displayName": "Ada\u0000Lovelace"}
    else:
        display = {"displayName": "Ada", "nick\u0000Name": "x"}
    if method == "PATCH":
        body: dict[str, Any] = patch({"op": "replace", "value": display})
    elif method == "PUT":
        body = {**kind.replacement(existing, "Ada"), **display}
    else:
        body = {**kind.body("Ben"), **display}
    response = await client.request(method, url, json=body)
    assert_scim_error(response, 400, "invalidValue")
    assert kind.count(db) == 1
    assert await kind.read(client, existing["id"]) == existing
    assert events(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
async def test_a_two_megabyte_body_is_413(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str
) -> None:
    existing = await kind.create(client, "Ada")
    url = kind.endpoint if method == "POST" else f"{kind.endpoint}/{existing['id']}"
    huge = "x" * (2 * 1024 * 1024)
    if method == "PATCH":
        body: dict[str, Any] = patch({"op": "replace", "path": "displayName", "value": huge})
    elif method == "PUT":
        body = kind.replacement(existing, huge)
    else:
        body = kind.body("Ben") | {"displayName": huge}
    response = await client.request(method, url, json=body)
    assert_scim_error(response, 413)
    assert kind.count(db) == 1
    assert await kind.read(client, existing["id"]) == existing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("method", ["POST", "PUT", "PATCH"])
@pytest.mark.parametrize("depth", [40, 5000])
async def test_deeply_nested_json_is_400(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, method: str, depth: int
) -> None:
    existing = await kind.create(client, "Ada")
    url = kind.endpoint if method == "POST" else f"{kind.endpoint}/{existing['id']}"
    nested = "[" * depth + "]" * depth
    if method == "PATCH":
        content = (
            f'{{"schemas": ["{PATCH_OP}"], "Operations": [{{"op": "replace", '
            f'"path": "displayName", "value": {nested}}}]}}'
        )
    else:
        start = kind.replacement(existing, "Ada") if method == "PUT" else kind.body("Ben")
        content = orjson.dumps(start).decode()[:-1] + f', "extra": {nested}}}'
    response = await client.request(method, url, content=content.encode())
    assert_scim_error(response, 400, "invalidSyntax")
    assert kind.count(db) == 1
    assert await kind.read(client, existing["id"]) == existing


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["list", "search"])
@pytest.mark.parametrize(
    "scim_filter",
    [
        pytest.param('displayName eq "A\u0000da"', id="in-a-string"),
        pytest.param('displayName eq "Ada"\u0000', id="after-the-filter"),
        pytest.param('display\u0000Name eq "Ada"', id="in-a-name"),
    ],
)
async def test_a_filter_with_a_nul_is_400_invalid_filter(
    client: httpx2.AsyncClient, kind: Kind, how: str, scim_filter: str
) -> None:
    """The same filter is the same error, whether in the query string (GET) or in
    a search request's body (POST .search, RFC 7644 §3.4.3)."""
    await kind.create(client, "Ada")
    if how == "list":
        response = await client.get(f"{kind.endpoint}?filter={quote(scim_filter)}")
    else:
        response = await client.post(
            f"{kind.endpoint}/.search", json={"schemas": [SEARCH], "filter": scim_filter}
        )
    assert_scim_error(response, 400, "invalidFilter")


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize("how", ["list", "search"])
async def test_a_negative_count_reads_as_zero_and_start_index_zero_as_one(
    client: httpx2.AsyncClient, kind: Kind, how: str
) -> None:
    """RFC 7644 §3.4.2.4: a negative count is 0 (totals only); startIndex < 1 is 1."""
    made = [(await kind.create(client, name))["id"] for name in ("Ada", "Ben", "Cy")]

    async def page(**params: Any) -> dict[str, Any]:
        if how == "list":
            response = await client.get(kind.endpoint, params=params)
        else:
            response = await client.post(
                f"{kind.endpoint}/.search", json={"schemas": [SEARCH], **params}
            )
        assert response.status_code == 200, response.text
        return dict(response.json())

    for count in (-5, 0):
        totals = await page(count=count)
        assert totals["totalResults"] == 3, count
        assert totals["itemsPerPage"] == 0 and totals["Resources"] == [], count
    for start in (0, -3):
        first = await page(startIndex=start, count=2)
        assert first["startIndex"] == 1, start
        assert [r["id"] for r in first["Resources"]] == made[:2], start
        assert first["totalResults"] == 3


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("name", "value"),
    [("count", "abc"), ("count", "1.5"), ("startIndex", "abc"), ("startIndex", "one")],
)
async def test_a_paging_parameter_that_is_not_an_integer_is_400_invalid_value(
    client: httpx2.AsyncClient, kind: Kind, name: str, value: str
) -> None:
    await kind.create(client, "Ada")
    listed = await client.get(kind.endpoint, params={name: value})
    assert_scim_error(listed, 400, "invalidValue")
    assert name in listed.json()["detail"]
    searched = await client.post(
        f"{kind.endpoint}/.search", json={"schemas": [SEARCH], name: value}
    )
    assert_scim_error(searched, 400, "invalidValue")


# ---------------------------------------------------------------------------
# Tenant isolation
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
async def test_another_tenant_can_neither_see_nor_touch_a_resource(
    client: httpx2.AsyncClient, app: Any, db: Engine, kind: Kind
) -> None:
    victim = await kind.create(client, "Ada")
    before = events(db)
    globex = make_tenant(db, "globex")
    async with scim_client(app, globex.headers) as intruder:
        theirs = f"{kind.endpoint}/{victim['id']}"
        nobody = f"{kind.endpoint}/{uuid.uuid4()}"
        for method in ("GET", "PUT", "PATCH", "DELETE"):
            body = request_body(kind, method, victim)
            payload: dict[str, Any] = {"json": body} if body is not None else {}
            on_theirs = await intruder.request(method, theirs, **payload)
            on_nobody = await intruder.request(method, nobody, **payload)
            assert_scim_error(on_theirs, 404)
            assert on_nobody.status_code == 404, method
            # Worded like an id that exists nowhere, but for the id itself.
            assert on_theirs.json()["detail"].replace(victim["id"], "?") == on_nobody.json()[
                "detail"
            ].replace(nobody.rsplit("/", 1)[1], "?"), method
            # A precondition does not reveal the resource either.
            guarded = await intruder.request(
                method, theirs, headers={"If-Match": victim["meta"]["version"]}, **payload
            )
            assert guarded.status_code == 404, method

        listed = await intruder.get(kind.endpoint)
        assert listed.json()["totalResults"] == 0 and listed.json()["Resources"] == []
        for lookup in (
            f'id eq "{victim["id"]}"',
            'displayName eq "Ada"',
            f"{kind.required} pr",
            f'meta.resourceType eq "{kind.endpoint[1:-1]}"',
        ):
            found = await intruder.get(kind.endpoint, params={"filter": lookup})
            assert found.status_code == 200, found.text
            assert found.json()["totalResults"] == 0, lookup
            for search in (f"{kind.endpoint}/.search", "/.search"):
                searched = await intruder.post(search, json={"schemas": [SEARCH], "filter": lookup})
                assert searched.status_code == 200, (search, searched.text)
                assert searched.json()["totalResults"] == 0, (search, lookup)
                assert searched.json()["Resources"] == [], (search, lookup)

    assert await kind.read(client, victim["id"]) == victim
    assert events(db) == before


async def test_a_group_cannot_take_another_tenants_user_as_a_member(
    client: httpx2.AsyncClient, app: Any, db: Engine, tenant: TenantHandle
) -> None:
    ana = (await USERS.create(client, "Ana"))["id"]
    group = await GROUPS.create(client, "Ops")
    globex = make_tenant(db, "globex")
    async with scim_client(app, globex.headers) as other:
        outsider = (await other.post("/Users", json=user_body("eve@globex.test"))).json()["id"]
        their_group = await GROUPS.create(other, "Theirs")
    before = events(db)
    url = f"/Groups/{group['id']}"
    members = [{"value": ana}, {"value": outsider}]
    for method, target, body in (
        ("POST", "/Groups", {"schemas": [GROUP], "displayName": "New", "members": members}),
        ("PUT", url, {"schemas": [GROUP], "displayName": "Ops", "members": members}),
        ("PATCH", url, patch({"op": "add", "path": "members", "value": members})),
        ("PATCH", url, patch({"op": "replace", "path": "members", "value": members})),
        ("PATCH", url, patch({"op": "add", "value": {"members": members}})),
    ):
        refused = await client.request(method, target, json=body)
        assert_scim_error(refused, 400, "invalidValue")
        assert outsider in refused.json()["detail"], (method, body)
    # Nor can the other tenant put our user into its own group.
    async with scim_client(app, globex.headers) as other:
        theirs = await other.patch(
            f"/Groups/{their_group['id']}",
            json=patch({"op": "add", "path": "members", "value": [{"value": ana}]}),
        )
        assert_scim_error(theirs, 400, "invalidValue")

    assert await GROUPS.read(client, group["id"]) == group
    assert group["members"] == []
    assert scalar(db, "SELECT count(*) FROM group_members") == 0
    assert scalar(db, "SELECT count(*) FROM groups") == 2
    assert events(db) == before


# ---------------------------------------------------------------------------
# PATCH basics
# ---------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "operation",
    [
        pytest.param({"op": "replace", "path": "displayName", "value": "X"}, id="with-path"),
        pytest.param({"op": "replace", "value": {"displayName": "X"}}, id="without-path"),
        pytest.param({"op": "Replace", "path": "displayName", "value": "X"}, id="entra-Replace"),
        pytest.param({"op": "Replace", "value": {"displayName": "X"}}, id="entra-no-path"),
        pytest.param({"op": "REPLACE", "path": "displayname", "value": "X"}, id="shouting"),
    ],
)
async def test_a_replace_of_display_name_applies(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, operation: dict[str, Any]
) -> None:
    created = await kind.create(client, "Ada")
    url = f"{kind.endpoint}/{created['id']}"
    response = await client.patch(url, json=patch(operation))
    etag = kind.assert_patched(response)
    if not kind.is_group:
        assert response.json()["displayName"] == "X"
    after = await kind.read(client, created["id"])
    assert after["displayName"] == "X"
    assert after["meta"]["version"] == etag != created["meta"]["version"]
    assert after[kind.required] == ("X" if kind.is_group else created["userName"])
    assert events(db)[-1] == ("group.updated" if kind.is_group else "user.updated")


async def test_a_group_patch_answers_with_the_group_when_a_projection_asks(
    client: httpx2.AsyncClient,
) -> None:
    """The one documented difference: a group PATCH is 204 unless a projection asks."""
    created = await GROUPS.create(client, "Ada")
    url = f"/Groups/{created['id']}"
    projected = await client.patch(f"{url}?attributes=displayName", json=RENAME)
    assert projected.status_code == 200, projected.text
    assert projected.json() == {
        "schemas": [GROUP],
        "id": created["id"],
        "displayName": "Renamed",
    }
    assert (
        projected.headers["ETag"] == (await GROUPS.read(client, created["id"]))["meta"]["version"]
    )
    whole = await client.patch(
        f"{url}?excludedAttributes=members",
        json=patch({"op": "replace", "value": {"displayName": "Again"}}),
    )
    assert whole.status_code == 200, whole.text
    assert whole.json()["displayName"] == "Again" and "members" not in whole.json()
    assert whole.headers["ETag"] == whole.json()["meta"]["version"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "operation",
    [
        pytest.param("path", id="remove-path"),
        pytest.param("urn", id="remove-urn-path"),
        pytest.param("replace-null", id="replace-with-null"),
        pytest.param("replace-empty", id="replace-with-empty"),
    ],
)
async def test_the_required_attribute_cannot_be_removed(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, operation: str
) -> None:
    created = await kind.create(client, "Ada")
    before = events(db)
    schema = GROUP if kind.is_group else "urn:ietf:params:scim:schemas:core:2.0:User"
    op: dict[str, Any] = {
        "path": {"op": "remove", "path": kind.required},
        "urn": {"op": "remove", "path": f"{schema}:{kind.required}"},
        "replace-null": {"op": "replace", "path": kind.required, "value": None},
        "replace-empty": {"op": "replace", "path": kind.required, "value": ""},
    }[operation]
    response = await client.patch(f"{kind.endpoint}/{created['id']}", json=patch(op))
    assert_scim_error(response, 400)
    assert response.json().get("scimType") in ("mutability", "invalidValue"), response.text
    assert await kind.read(client, created["id"]) == created
    assert events(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "body",
    [
        pytest.param(patch({"op": "frobnicate", "path": "displayName", "value": "X"}), id="op"),
        pytest.param(patch({"op": "copy", "path": "displayName", "value": "X"}), id="json-patch"),
        pytest.param(patch({"path": "displayName", "value": "X"}), id="no-op"),
        pytest.param(patch({"op": None, "path": "displayName", "value": "X"}), id="null-op"),
        pytest.param(patch({"op": ["replace"], "path": "displayName", "value": "X"}), id="list"),
        pytest.param(patch(), id="empty-operations"),
        pytest.param({"schemas": [PATCH_OP]}, id="no-operations"),
        pytest.param({"schemas": [PATCH_OP], "Operations": None}, id="null-operations"),
        pytest.param({"schemas": [PATCH_OP], "Operations": {}}, id="object-operations"),
        pytest.param([{"op": "replace", "path": "displayName", "value": "X"}], id="bare-list"),
        pytest.param(patch("replace"), id="string-operation"),
    ],
)
async def test_a_malformed_patch_is_400_invalid_syntax_and_changes_nothing(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, body: Any
) -> None:
    created = await kind.create(client, "Ada")
    before = events(db)
    response = await client.patch(f"{kind.endpoint}/{created['id']}", json=body)
    assert_scim_error(response, 400, "invalidSyntax")
    assert await kind.read(client, created["id"]) == created
    assert events(db) == before


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "operation",
    [
        pytest.param({"op": "replace", "path": "displayName", "value": "Ada"}, id="with-path"),
        pytest.param({"op": "Replace", "value": {"displayName": "Ada"}}, id="without-path"),
        pytest.param({"op": "add", "path": "displayName", "value": "Ada"}, id="add"),
    ],
)
async def test_a_patch_that_changes_nothing_keeps_the_version(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, operation: dict[str, Any]
) -> None:
    created = await kind.create(client, "Ada")
    before = events(db)
    url = f"{kind.endpoint}/{created['id']}"
    response = await client.patch(url, json=patch(operation))
    assert kind.assert_patched(response) == created["meta"]["version"]
    assert await kind.read(client, created["id"]) == created
    assert events(db) == before
    # The unchanged ETag still satisfies a precondition.
    guarded = await client.patch(
        url, json=patch(operation), headers={"If-Match": response.headers["ETag"]}
    )
    assert kind.assert_patched(guarded) == created["meta"]["version"]


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("schemas", "status"),
    [
        pytest.param(None, 2, id="absent"),
        pytest.param([PATCH_OP], 2, id="PatchOp"),
        pytest.param([PATCH_OP.upper()], 2, id="PatchOp-shouting"),
        pytest.param([], 400, id="empty"),
        pytest.param(["urn:ietf:params:scim:api:messages:2.0:BulkRequest"], 400, id="another"),
        pytest.param(PATCH_OP, 400, id="not-a-list"),
    ],
)
async def test_a_patch_bodys_schemas_are_read_alike(
    client: httpx2.AsyncClient, kind: Kind, schemas: Any, status: int
) -> None:
    """Clients that omit ``schemas`` are served; one that names another message is told."""
    created = await kind.create(client, "Ada")
    body: dict[str, Any] = {"Operations": RENAME["Operations"]}
    if schemas is not None:
        body["schemas"] = schemas
    response = await client.patch(f"{kind.endpoint}/{created['id']}", json=body)
    if status == 400:
        assert_scim_error(response, 400, "invalidValue")
        assert PATCH_OP in response.json()["detail"]
        assert await kind.read(client, created["id"]) == created
    else:
        kind.assert_patched(response)
        assert (await kind.read(client, created["id"]))["displayName"] == "Renamed"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    "operations",
    [
        pytest.param(
            [
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "replace", "path": "mailNickname", "value": "ada"},
            ],
            id="path",
        ),
        pytest.param(
            [{"op": "Replace", "value": {"displayName": "Renamed", "mailNickname": "ada"}}],
            id="no-path",
        ),
    ],
)
async def test_an_unknown_attribute_in_a_patch_is_ignored_and_listed_on_the_event(
    client: httpx2.AsyncClient, db: Engine, kind: Kind, operations: list[dict[str, Any]]
) -> None:
    """An admin's custom mapping must not stop the IdP's job (a 400 would)."""
    created = await kind.create(client, "Ada")
    response = await client.patch(f"{kind.endpoint}/{created['id']}", json=patch(*operations))
    kind.assert_patched(response)
    after = await kind.read(client, created["id"])
    assert after["displayName"] == "Renamed" and "mailNickname" not in after
    last = rows(db, "SELECT ignored_attributes FROM provisioning_events ORDER BY id DESC LIMIT 1")
    assert last[0].ignored_attributes == ["mailNickname"]


@pytest.mark.parametrize("kind", KINDS)
async def test_an_unknown_attribute_in_a_create_is_ignored_and_listed_on_the_event(
    client: httpx2.AsyncClient, db: Engine, kind: Kind
) -> None:
    response = await client.post(kind.endpoint, json={**kind.body("Ada"), "mailNickname": "ada"})
    assert response.status_code == 201, response.text
    assert "mailNickname" not in response.json()
    last = rows(db, "SELECT kind, ignored_attributes FROM provisioning_events ORDER BY id")
    assert [(row.kind, row.ignored_attributes) for row in last] == [
        ("group.created" if kind.is_group else "user.created", ["mailNickname"])
    ]


@pytest.mark.parametrize("kind", KINDS)
async def test_read_only_attributes_sent_with_a_path_less_patch_are_ignored(
    client: httpx2.AsyncClient, kind: Kind
) -> None:
    """Okta renames a group with its id (and meta) in the value: not a change of id."""
    created = await kind.create(client, "Ada")
    value = {"id": str(uuid.uuid4()), "meta": {"version": 'W/"9"'}, "displayName": "Renamed"}
    response = await client.patch(
        f"{kind.endpoint}/{created['id']}", json=patch({"op": "replace", "value": value})
    )
    kind.assert_patched(response)
    after = await kind.read(client, created["id"])
    assert after["id"] == created["id"] and after["displayName"] == "Renamed"
