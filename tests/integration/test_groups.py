"""/Groups with the requests Okta (Push Groups) and Entra ID send, their
errors, and tenant isolation. Against the real PostgreSQL, through the app."""

from __future__ import annotations

import uuid
from typing import Any

import httpx2
from sqlalchemy import Engine, text

from tests.conftest import TenantHandle, make_tenant, scim_client, user_body

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
PATCH = "urn:ietf:params:scim:api:messages:2.0:PatchOp"


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH], "Operations": list(operations)}


async def users(client: httpx2.AsyncClient, *names: str) -> list[str]:
    ids = []
    for name in names:
        response = await client.post("/Users", json=user_body(f"{name}@acme.test"))
        assert response.status_code == 201, response.text
        ids.append(response.json()["id"])
    return ids


async def member_ids(client: httpx2.AsyncClient, group_id: str) -> list[str]:
    """Sorted: the order of a multi-valued attribute carries no meaning (RFC 7643 §2.4)."""
    group = (await client.get(f"/Groups/{group_id}")).json()
    return sorted(member["value"] for member in group.get("members", []))


async def test_okta_push_groups_create_rename_add_and_remove_members(
    client: httpx2.AsyncClient,
) -> None:
    ana, ben, cy = await users(client, "ana", "ben", "cy")
    okta = {"User-Agent": "Okta SCIM Client 1.0.0"}
    # Okta checks for the group by name, then creates it without members.
    found = await client.get('/Groups?filter=displayName eq "SimpleAMS Admins"', headers=okta)
    assert found.json()["totalResults"] == 0
    created = await client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "SimpleAMS Admins", "members": []}
    )
    assert created.status_code == 201, created.text
    group = created.json()
    assert created.headers["location"].endswith(f"/Groups/{group['id']}")
    assert created.headers["etag"] == group["meta"]["version"]
    assert group["displayName"] == "SimpleAMS Admins" and group["members"] == []
    assert group["meta"]["resourceType"] == "Group"

    added = await client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {
                "op": "add",
                "path": "members",
                "value": [{"value": ana, "display": "ana@acme.test"}, {"value": ben}],
            }
        ),
        headers=okta,
    )
    assert added.status_code == 204, added.text
    assert await member_ids(client, group["id"]) == sorted([ana, ben])
    renamed = await client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "value": {"id": group["id"], "displayName": "AMS Admins"}}),
    )
    assert renamed.status_code == 204
    removed = await client.patch(
        f"/Groups/{group['id']}",
        json=patch(
            {"op": "remove", "path": f'members[value eq "{ana}"]'},
            {"op": "add", "path": "members", "value": [{"value": cy}]},
        ),
    )
    assert removed.status_code == 204
    after = (await client.get(f"/Groups/{group['id']}")).json()
    assert after["displayName"] == "AMS Admins"
    assert sorted(m["value"] for m in after["members"]) == sorted([ben, cy])
    member = next(m for m in after["members"] if m["value"] == ben)
    assert member["display"] == "Ben Example"
    assert member["$ref"].endswith(f"/Users/{ben}") and member["type"] == "User"
    assert after["meta"]["version"] != group["meta"]["version"]

    assert (await client.delete(f"/Groups/{group['id']}")).status_code == 204
    assert (await client.get(f"/Groups/{group['id']}")).status_code == 404
    # The users are untouched.
    assert (await client.get(f"/Users/{ana}")).status_code == 200


async def test_entra_create_with_members_add_remove_with_value_and_filter_without_members(
    client: httpx2.AsyncClient,
) -> None:
    ana, ben, cy = await users(client, "ana", "ben", "cy")
    entra = {"User-Agent": "Azure Active Directory SCIM Client"}
    created = await client.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "externalId": "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159",
            "displayName": "Finance",
            "members": [{"value": ana}],
            "meta": {"resourceType": "Group"},
        },
        headers=entra,
    )
    assert created.status_code == 201, created.text
    group_id = created.json()["id"]

    listed = await client.get(
        '/Groups?excludedAttributes=members&filter=displayName eq "Finance"', headers=entra
    )
    [found] = listed.json()["Resources"]
    assert found["id"] == group_id and "members" not in found
    assert found["externalId"] == "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"
    single = await client.get(f"/Groups/{group_id}?excludedAttributes=members")
    assert "members" not in single.json() and single.json()["displayName"] == "Finance"

    add = patch({"op": "Add", "path": "members", "value": [{"value": ben}, {"value": cy}]})
    assert (await client.patch(f"/Groups/{group_id}", json=add)).status_code == 204
    # Entra's remove names the members to remove in "value": only those go.
    remove = patch({"op": "Remove", "path": "members", "value": [{"value": ben}]})
    assert (await client.patch(f"/Groups/{group_id}", json=remove)).status_code == 204
    assert await member_ids(client, group_id) == sorted([ana, cy])
    rename = patch({"op": "Replace", "path": "displayName", "value": "Finance Team"})
    assert (await client.patch(f"/Groups/{group_id}", json=rename)).status_code == 204
    by_external_id = await client.get(
        '/Groups?filter=externalId eq "8aa1a0c0-c4c3-4bc0-b4a5-2ef676900159"'
    )
    assert [g["displayName"] for g in by_external_id.json()["Resources"]] == ["Finance Team"]
    # A remove retried after it succeeded changes nothing and is not an error.
    assert (await client.patch(f"/Groups/{group_id}", json=remove)).status_code == 204


async def test_an_unknown_or_foreign_member_is_refused_and_nothing_is_applied(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    (ana,) = await users(client, "ana")
    group = (await client.post("/Groups", json={"schemas": [GROUP], "displayName": "Ops"})).json()
    other = make_tenant(db, "globex")
    async with scim_client(app, other.headers) as globex:
        outsider = (await globex.post("/Users", json=user_body("eve@globex.test"))).json()["id"]
    for stranger in (outsider, str(uuid.uuid4()), "not-an-id"):
        refused = await client.patch(
            f"/Groups/{group['id']}",
            json=patch(
                {"op": "replace", "path": "displayName", "value": "Renamed"},
                {"op": "add", "path": "members", "value": [{"value": ana}, {"value": stranger}]},
            ),
        )
        assert refused.status_code == 400, refused.text
        body = refused.json()
        assert body["scimType"] == "invalidValue"
        assert stranger in body["detail"] and "Nothing was changed" in body["detail"]
    after = (await client.get(f"/Groups/{group['id']}")).json()
    assert after["displayName"] == "Ops" and after["members"] == []
    assert after["meta"]["version"] == group["meta"]["version"]
    created = await client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "X", "members": [{"value": outsider}]}
    )
    assert created.status_code == 400
    assert (await client.get('/Groups?filter=displayName eq "X"')).json()["totalResults"] == 0


async def test_another_tenants_groups_are_invisible_and_untouchable(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    group = (
        await client.post("/Groups", json={"schemas": [GROUP], "displayName": "Secret"})
    ).json()
    other = make_tenant(db, "globex")
    async with scim_client(app, other.headers) as intruder:
        theirs, nobody = f"/Groups/{group['id']}", f"/Groups/{uuid.uuid4()}"
        rename = patch({"op": "replace", "path": "displayName", "value": "Owned"})
        for method, kwargs in (
            ("GET", {}),
            ("PUT", {"json": {"schemas": [GROUP], "displayName": "Owned"}}),
            ("PATCH", {"json": rename}),
            ("DELETE", {}),
        ):
            on_theirs = await intruder.request(method, theirs, **kwargs)
            on_nobody = await intruder.request(method, nobody, **kwargs)
            assert on_theirs.status_code == on_nobody.status_code == 404
            assert on_theirs.json()["detail"].replace(group["id"], "X") == on_nobody.json()[
                "detail"
            ].replace(nobody.rsplit("/", 1)[1], "X")
        assert (await intruder.get("/Groups")).json()["totalResults"] == 0
        # The same name is free in another workspace.
        mine = await intruder.post("/Groups", json={"schemas": [GROUP], "displayName": "Secret"})
        assert mine.status_code == 201
    assert (await client.get(f"/Groups/{group['id']}")).json()["displayName"] == "Secret"


async def test_display_names_are_unique_case_insensitively(client: httpx2.AsyncClient) -> None:
    first = await client.post("/Groups", json={"schemas": [GROUP], "displayName": "Admins"})
    assert first.status_code == 201
    again = await client.post("/Groups", json={"schemas": [GROUP], "displayName": "ADMINS"})
    assert again.status_code == 409
    assert again.json()["scimType"] == "uniqueness"
    second = (await client.post("/Groups", json={"schemas": [GROUP], "displayName": "B"})).json()
    clash = await client.patch(
        f"/Groups/{second['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "admins"}),
    )
    assert clash.status_code == 409 and clash.json()["scimType"] == "uniqueness"


async def test_put_replace_and_remove_all_set_the_whole_member_list(
    client: httpx2.AsyncClient,
) -> None:
    ana, ben, cy = await users(client, "ana", "ben", "cy")
    group = (
        await client.post(
            "/Groups",
            json={"schemas": [GROUP], "displayName": "G", "members": [{"value": ana}]},
        )
    ).json()
    put = await client.put(
        f"/Groups/{group['id']}",
        json={"schemas": [GROUP], "displayName": "G2", "members": [{"value": ben}, {"value": cy}]},
    )
    assert put.status_code == 200
    assert sorted(m["value"] for m in put.json()["members"]) == sorted([ben, cy])
    replaced = await client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "path": "members", "value": [{"value": ana}]}),
    )
    assert replaced.status_code == 204
    assert await member_ids(client, group["id"]) == [ana]
    emptied = await client.patch(
        f"/Groups/{group['id']}", json=patch({"op": "remove", "path": "members"})
    )
    assert emptied.status_code == 204
    assert await member_ids(client, group["id"]) == []
    # Asking for the group back turns the 204 into a 200 with the projection.
    shown = await client.patch(
        f"/Groups/{group['id']}?attributes=displayName",
        json=patch({"op": "add", "path": "members", "value": [{"value": cy}]}),
    )
    assert shown.status_code == 200
    assert shown.json() == {"schemas": [GROUP], "id": group["id"], "displayName": "G2"}


async def test_a_user_deleted_by_the_idp_leaves_every_group(client: httpx2.AsyncClient) -> None:
    ana, ben = await users(client, "ana", "ben")
    group = (
        await client.post(
            "/Groups",
            json={
                "schemas": [GROUP],
                "displayName": "G",
                "members": [{"value": ana}, {"value": ben}],
            },
        )
    ).json()
    assert (await client.delete(f"/Users/{ana}")).status_code == 204
    assert await member_ids(client, group["id"]) == [ben]
    found = await client.get(f'/Groups?filter=members eq "{ana}"')
    assert found.json()["totalResults"] == 0
    found = await client.get(f'/Groups?filter=members[value eq "{ben}"]')
    assert found.json()["totalResults"] == 1


async def test_filters_on_groups_and_their_errors(client: httpx2.AsyncClient) -> None:
    for name in ("Finance", "Field Sales", "IT"):
        await client.post("/Groups", json={"schemas": [GROUP], "displayName": name})

    async def names(filter_text: str) -> list[str]:
        response = await client.get("/Groups", params={"filter": filter_text})
        assert response.status_code == 200, response.text
        return sorted(g["displayName"] for g in response.json()["Resources"])

    assert await names('displayName sw "f"') == ["Field Sales", "Finance"]
    assert await names('displayName co "SAL" or displayName eq "it"') == ["Field Sales", "IT"]
    assert await names('not (displayName sw "F")') == ["IT"]
    assert await names("externalId pr") == []
    page = (await client.get("/Groups?count=2&startIndex=2&excludedAttributes=members")).json()
    assert page["totalResults"] == 3 and page["startIndex"] == 2
    assert [g["displayName"] for g in page["Resources"]] == ["Field Sales", "IT"]
    for bad in ('title eq "x"', "displayName eq", "members gt 3"):
        refused = await client.get("/Groups", params={"filter": bad})
        assert refused.status_code == 400, bad
        assert refused.json()["scimType"] == "invalidFilter"
    searched = await client.post(
        "/Groups/.search",
        json={
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:SearchRequest"],
            "filter": 'displayName eq "IT"',
            "attributes": ["displayName"],
        },
    )
    assert [g["displayName"] for g in searched.json()["Resources"]] == ["IT"]


async def test_bad_group_bodies_get_clear_errors(client: httpx2.AsyncClient, db: Engine) -> None:
    (ana,) = await users(client, "ana")
    cases = [
        ({"schemas": [GROUP]}, "invalidValue", "displayName"),
        ({"schemas": [GROUP], "displayName": "  "}, "invalidValue", "displayName"),
        ({"schemas": [GROUP], "displayName": "x" * 300}, "invalidValue", "longer"),
        ({"schemas": ["urn:nope"], "displayName": "G"}, "invalidValue", "schemas"),
        (
            {"schemas": [GROUP], "displayName": "G", "members": [{"value": ana, "type": "Group"}]},
            "invalidValue",
            "nested",
        ),
        ({"schemas": [GROUP], "displayName": "G", "members": ["x"]}, "invalidValue", "value"),
    ]
    for body, scim_type, words in cases:
        response = await client.post("/Groups", json=body)
        assert response.status_code == 400, body
        assert response.json()["scimType"] == scim_type
        assert words in response.json()["detail"], response.json()["detail"]
    group = (await client.post("/Groups", json={"schemas": [GROUP], "displayName": "G"})).json()
    bad_patches = [
        (patch({"op": "move", "path": "members"}), "invalidSyntax"),
        (patch({"op": "remove"}), "noTarget"),
        (patch({"op": "remove", "path": "displayName"}), "mutability"),
        (patch({"op": "replace", "path": "members.display", "value": "x"}), "invalidPath"),
        (patch({"op": "add", "path": 'members[value eq "x"]', "value": "y"}), "invalidPath"),
        ({"schemas": [PATCH], "Operations": []}, "invalidSyntax"),
    ]
    for body, scim_type in bad_patches:
        response = await client.patch(f"/Groups/{group['id']}", json=body)
        assert response.status_code == 400, body
        assert response.json()["scimType"] == scim_type, (body, response.json())
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM groups")).scalar() == 1
    stale = await client.patch(
        f"/Groups/{group['id']}",
        json=patch({"op": "replace", "path": "displayName", "value": "H"}),
        headers={"If-Match": 'W/"999"'},
    )
    assert stale.status_code == 412


async def test_a_tenant_without_groups_lists_none(
    client: httpx2.AsyncClient, tenant: TenantHandle
) -> None:
    listed = (await client.get("/Groups")).json()
    assert listed["totalResults"] == 0 and listed["Resources"] == []


async def test_a_search_at_the_root_finds_users_and_groups(client: httpx2.AsyncClient) -> None:
    (ana,) = await users(client, "ana")
    group = (
        await client.post(
            "/Groups", json={"schemas": [GROUP], "displayName": "G", "members": [{"value": ana}]}
        )
    ).json()
    search = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
    everything = (await client.post("/.search", json={"schemas": [search]})).json()
    assert everything["totalResults"] == 2
    assert [r["id"] for r in everything["Resources"]] == [ana, group["id"]]  # users first
    second = (await client.post("/.search", json={"startIndex": 2, "count": 1})).json()
    assert [r["id"] for r in second["Resources"]] == [group["id"]]
    # userName is the users' only: it finds no group, and no error.
    by_name = (await client.post("/.search", json={"filter": 'userName eq "ana@acme.test"'})).json()
    assert [r["id"] for r in by_name["Resources"]] == [ana]
    named = await client.post(
        "/.search", json={"filter": 'displayName eq "G"', "attributes": ["displayName"]}
    )
    assert named.json()["Resources"] == [
        {"schemas": [GROUP], "id": group["id"], "displayName": "G"}
    ]
    neither = await client.post("/.search", json={"filter": 'nonsense eq "x"'})
    assert neither.status_code == 400 and neither.json()["scimType"] == "invalidFilter"


async def test_a_users_groups_attribute_lists_their_groups_read_only(
    client: httpx2.AsyncClient,
) -> None:
    ana, ben = await users(client, "ana", "ben")
    made = {}
    for name in ("Zeta", "Alpha"):
        body = {"schemas": [GROUP], "displayName": name, "members": [{"value": ana}]}
        made[name] = (await client.post("/Groups", json=body)).json()["id"]
    user = (await client.get(f"/Users/{ana}")).json()
    assert [(g["value"], g["display"], g["type"]) for g in user["groups"]] == [
        (made["Alpha"], "Alpha", "direct"),
        (made["Zeta"], "Zeta", "direct"),
    ]
    assert user["groups"][0]["$ref"].endswith(f"/Groups/{made['Alpha']}")
    assert "groups" not in (await client.get(f"/Users/{ben}")).json()
    listed = (await client.get('/Users?filter=userName eq "ana@acme.test"')).json()
    assert len(listed["Resources"][0]["groups"]) == 2
    assert "groups" not in (await client.get(f"/Users/{ana}?excludedAttributes=groups")).json()
    # A write of the user ignores groups sent to it and answers with the real ones.
    patched = await client.patch(
        f"/Users/{ana}",
        json={"Operations": [{"op": "replace", "path": "title", "value": "Ops"}]},
    )
    assert [g["display"] for g in patched.json()["groups"]] == ["Alpha", "Zeta"]
    put = await client.put(
        f"/Users/{ben}", json={**user_body("ben@acme.test"), "groups": [{"value": made["Zeta"]}]}
    )
    assert put.status_code == 200 and "groups" not in put.json()
    assert await member_ids(client, made["Zeta"]) == [ana]


async def test_group_changes_are_provisioning_events(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    ana, ben = await users(client, "ana", "ben")
    okta = {"User-Agent": "Okta SCIM Client 1.0.0"}
    body = {"schemas": [GROUP], "displayName": "Ops", "members": [{"value": ana}]}
    group = (await client.post("/Groups", json=body, headers=okta)).json()
    ops = f"/Groups/{group['id']}"
    await client.patch(
        ops,
        json=patch(
            {"op": "replace", "path": "displayName", "value": "Operations"},
            {"op": "add", "path": "members", "value": [{"value": ben}]},
            {"op": "remove", "path": f'members[value eq "{ana}"]'},
        ),
    )
    # Nothing changes: no event, and the version (ETag) stays.
    before = (await client.get(ops)).json()["meta"]["version"]
    same = await client.patch(
        ops, json=patch({"op": "add", "path": "members", "value": [{"value": ben}]})
    )
    assert same.headers["etag"] == before
    put_same = {"schemas": [GROUP], "displayName": "Operations", "members": [{"value": ben}]}
    assert (await client.put(ops, json=put_same)).json()["meta"]["version"] == before
    assert (await client.delete(ops)).status_code == 204

    with db.connect() as conn:
        staff = dict(conn.execute(text("SELECT scim_id::text, id::text FROM users")).all())
        events = conn.execute(
            text(
                "SELECT kind, group_id::text, user_id, changes, actor_idp FROM provisioning_events"
                " WHERE kind LIKE 'group.%' ORDER BY id"
            )
        ).all()
    assert [(e.kind, e.group_id, e.user_id, e.actor_idp) for e in events] == [
        ("group.created", group["id"], None, "okta"),
        ("group.updated", group["id"], None, "scim"),
        ("group.deleted", group["id"], None, "scim"),
    ]
    assert events[0].changes == {
        "displayName": [None, "Ops"],
        "members": {"added": [staff[ana]]},
    }
    assert events[1].changes == {
        "displayName": ["Ops", "Operations"],
        "members": {"added": [staff[ben]], "removed": [staff[ana]]},
    }
    assert events[2].changes == {
        "displayName": ["Operations", None],
        "members": {"removed": [staff[ben]]},
    }
