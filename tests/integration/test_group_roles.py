"""IdP groups mapped to SimpleAMS roles: membership changes through SCIM set
roles, each change is an event, and `simpleams roles` maps, lists and unmaps."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import Engine, text

from gateway import role_mappings
from tests.conftest import TenantHandle
from tests.integration.cli import simpleams
from tests.integration.test_groups import GROUP, patch, users


def roles(db: Engine) -> dict[str, str]:
    with db.connect() as conn:
        return dict(conn.execute(text("SELECT user_name, role FROM users")).all())


def role_events(db: Engine) -> list[tuple[str, Any, str]]:
    with db.connect() as conn:
        return [
            (row.user_name, row.changes["role"], row.actor_idp)
            for row in conn.execute(
                text(
                    "SELECT u.user_name, e.changes, e.actor_idp FROM provisioning_events e"
                    " JOIN users u ON u.id = e.user_id WHERE e.changes ? 'role' ORDER BY e.id"
                )
            )
        ]


def map_group(db: Engine, name: str, role: str = "admin") -> int:
    with db.begin() as conn:
        return role_mappings.map_group(conn, "acme", name, role)


async def test_okta_membership_changes_make_and_unmake_admins(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    map_group(db, "SimpleAMS Admins")  # before the IdP pushes the group
    ana, ben = await users(client, "ana", "ben")
    okta = {"User-Agent": "Okta SCIM Client 1.0.0"}
    group = (
        await client.post(
            "/Groups",
            json={
                "schemas": [GROUP],
                "displayName": "simpleams admins",
                "members": [{"value": ana}],
            },
            headers=okta,
        )
    ).json()
    assert roles(db) == {"ana@acme.test": "admin", "ben@acme.test": "staff"}

    add = patch({"op": "add", "path": "members", "value": [{"value": ben}]})
    assert (await client.patch(f"/Groups/{group['id']}", json=add, headers=okta)).status_code == 204
    remove = patch({"op": "remove", "path": f'members[value eq "{ana}"]'})
    assert (await client.patch(f"/Groups/{group['id']}", json=remove)).status_code == 204
    assert roles(db) == {"ana@acme.test": "staff", "ben@acme.test": "admin"}
    assert role_events(db) == [
        ("ana@acme.test", ["staff", "admin"], "okta"),
        ("ben@acme.test", ["staff", "admin"], "okta"),
        ("ana@acme.test", ["admin", "staff"], "scim"),
    ]
    # A PATCH that changes no role records no role event.
    again = patch({"op": "add", "path": "members", "value": [{"value": ben}]})
    assert (await client.patch(f"/Groups/{group['id']}", json=again)).status_code == 204
    assert len(role_events(db)) == 3


async def test_renaming_or_deleting_a_mapped_group_returns_its_members_to_staff(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    map_group(db, "Admins")
    ana, ben = await users(client, "ana", "ben")
    admins = (
        await client.post(
            "/Groups",
            json={
                "schemas": [GROUP],
                "displayName": "Admins",
                "members": [{"value": ana}, {"value": ben}],
            },
        )
    ).json()
    # ben is in a second mapped group too: losing one keeps him admin.
    map_group(db, "IT")
    await client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "IT", "members": [{"value": ben}]}
    )
    rename = patch({"op": "replace", "value": {"id": admins["id"], "displayName": "Former"}})
    assert (await client.patch(f"/Groups/{admins['id']}", json=rename)).status_code == 204
    assert roles(db) == {"ana@acme.test": "staff", "ben@acme.test": "admin"}
    back = {"schemas": [GROUP], "displayName": "ADMINS", "members": [{"value": ana}]}
    assert (await client.put(f"/Groups/{admins['id']}", json=back)).status_code == 200
    assert roles(db) == {"ana@acme.test": "admin", "ben@acme.test": "admin"}
    assert (await client.delete(f"/Groups/{admins['id']}")).status_code == 204
    assert roles(db) == {"ana@acme.test": "staff", "ben@acme.test": "admin"}


async def test_a_mapping_made_or_removed_later_applies_at_once(
    client: httpx2.AsyncClient, db: Engine, database_url: str
) -> None:
    ana, ben = await users(client, "ana", "ben")
    await client.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "SimpleAMS Admins",
            "members": [{"value": ana}, {"value": ben}],
        },
    )
    assert set(roles(db).values()) == {"staff"}

    mapped = simpleams(database_url, "roles", "map", "acme", "SimpleAMS Admins", "admin")
    assert mapped.returncode == 0, mapped.stderr
    assert "2 users' roles changed" in mapped.stdout
    assert set(roles(db).values()) == {"admin"}
    listed = simpleams(database_url, "roles", "list", "acme")
    assert listed.stdout.strip() == "SimpleAMS Admins\tadmin\t2 members"
    assert [actor for _, _, actor in role_events(db)] == ["admin", "admin"]

    unmapped = simpleams(database_url, "roles", "unmap", "acme", "simpleams admins")
    assert unmapped.returncode == 0 and "2 users' roles changed" in unmapped.stdout
    assert set(roles(db).values()) == {"staff"}
    assert "No role mappings" in simpleams(database_url, "roles", "list", "acme").stdout

    for args, words in (
        (("roles", "map", "acme", "G", "owner"), "invalid choice"),
        (("roles", "map", "nope", "G", "admin"), "nope"),
        (("roles", "unmap", "acme", "Never mapped"), "No role mapping"),
    ):
        refused = simpleams(database_url, *args)
        assert refused.returncode != 0
        assert words in refused.stderr, refused.stderr
