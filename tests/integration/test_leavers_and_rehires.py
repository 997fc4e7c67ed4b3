"""Who a deleted or re-hired person is, and what they keep (security review,
items 3 and 4): a DELETE or a deactivation recomputes the role; a re-hire
restores a record only when the email matches and starts as staff; a group
change racing a DELETE never leaves a deleted user in a group."""

from __future__ import annotations

import asyncio
from typing import Any

import httpx2
from sqlalchemy import Engine, text

from tests.conftest import TenantHandle, user_body
from tests.integration.test_group_roles import map_group, role_events, roles
from tests.integration.test_groups import GROUP, patch


def staff_rows(db: Engine) -> list[tuple[str, str | None, str, bool]]:
    with db.connect() as conn:
        return [
            (row.user_name, row.email, row.role, row.deleted_at is not None)
            for row in conn.execute(
                text("SELECT user_name, email, role, deleted_at FROM users ORDER BY created_at")
            )
        ]


async def admins_group(client: httpx2.AsyncClient, db: Engine, *members: str) -> str:
    map_group(db, "Admins")
    made = await client.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "Admins",
            "members": [{"value": m} for m in members],
        },
    )
    assert made.status_code == 201
    return str(made.json()["id"])


async def test_a_deleted_admin_is_staff_and_a_rehire_starts_as_staff(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    mallory = (await client.post("/Users", json=user_body("mallory@acme.test"))).json()["id"]
    await admins_group(client, db, mallory)
    assert roles(db) == {"mallory@acme.test": "admin"}

    assert (await client.delete(f"/Users/{mallory}")).status_code == 204
    assert staff_rows(db) == [("mallory@acme.test", "mallory@acme.test", "staff", True)]
    assert [(name, change) for name, change, _ in role_events(db)] == [
        ("mallory@acme.test", ["staff", "admin"]),
        ("mallory@acme.test", ["admin", "staff"]),
    ]

    # The same person comes back (same email): the same record, as staff, in no group.
    back = await client.post("/Users", json=user_body("mallory@acme.test"))
    assert back.status_code == 201
    assert staff_rows(db) == [("mallory@acme.test", "mallory@acme.test", "staff", False)]
    assert "groups" not in back.json()


async def test_a_rehire_of_an_admin_deleted_before_the_fix_starts_as_staff(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    """A record deleted while still admin (older data) is restored as staff."""
    made = (await client.post("/Users", json=user_body("old@acme.test"))).json()["id"]
    assert (await client.delete(f"/Users/{made}")).status_code == 204
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'admin'"))
    assert (await client.post("/Users", json=user_body("old@acme.test"))).status_code == 201
    assert staff_rows(db) == [("old@acme.test", "old@acme.test", "staff", False)]
    with db.connect() as conn:
        changes = conn.execute(
            text("SELECT changes FROM provisioning_events WHERE kind = 'user.restored'")
        ).scalar_one()
    assert changes["role"] == ["admin", "staff"]


async def test_the_same_user_name_with_another_email_is_another_person(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    john = await client.post(
        "/Users",
        json=user_body("j.smith", emails=[{"value": "john.smith@acme.test", "primary": True}]),
    )
    assert (await client.delete(f"/Users/{john.json()['id']}")).status_code == 204
    with db.begin() as conn:
        conn.execute(
            text(
                "WITH laptop AS (INSERT INTO assets (id, tenant_id, tag, name)"
                " SELECT gen_random_uuid(), tenant_id, 'LAPTOP-43', 'Laptop' FROM users"
                " RETURNING id, tenant_id)"
                " INSERT INTO checkouts (id, tenant_id, asset_id, user_id, recovery_flagged_at)"
                " SELECT gen_random_uuid(), laptop.tenant_id, laptop.id, users.id, now()"
                " FROM laptop, users"
            )
        )
    jane = await client.post(
        "/Users",
        json=user_body("j.smith", emails=[{"value": "jane.smithers@acme.test", "primary": True}]),
    )
    assert jane.status_code == 201
    assert staff_rows(db) == [
        ("j.smith", "john.smith@acme.test", "staff", True),
        ("j.smith", "jane.smithers@acme.test", "staff", False),
    ]
    with db.connect() as conn:
        holder = conn.execute(
            text(
                "SELECT u.email, c.recovery_flagged_at IS NOT NULL FROM checkouts c"
                " JOIN users u ON u.id = c.user_id"
            )
        ).one()
    assert tuple(holder) == ("john.smith@acme.test", True)
    # The old record keeps its history; the new one starts its own.
    with db.connect() as conn:
        kinds = conn.execute(
            text(
                "SELECT u.email, e.kind FROM provisioning_events e JOIN users u ON u.id = e.user_id"
                " ORDER BY e.id"
            )
        ).all()
    assert [tuple(k) for k in kinds] == [
        ("john.smith@acme.test", "user.created"),
        ("john.smith@acme.test", "user.deleted"),
        ("jane.smithers@acme.test", "user.created"),
    ]


async def test_a_deactivation_recomputes_the_role_from_live_groups(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    ana = (await client.post("/Users", json=user_body("ana@acme.test"))).json()["id"]
    group = await admins_group(client, db, ana)
    # A role left stale by anything but the groups is set right by a deactivation.
    with db.begin() as conn:
        conn.execute(text("UPDATE users SET role = 'staff'"))
    off = patch({"op": "replace", "path": "active", "value": False})
    assert (await client.patch(f"/Users/{ana}", json=off)).status_code == 200
    assert roles(db) == {"ana@acme.test": "admin"}  # still in Admins: the IdP says so
    remove = patch({"op": "remove", "path": f'members[value eq "{ana}"]'})
    assert (await client.patch(f"/Groups/{group}", json=remove)).status_code == 204
    assert roles(db) == {"ana@acme.test": "staff"}


async def race_once(client: httpx2.AsyncClient, group: str, n: int) -> tuple[int, int]:
    user = (await client.post("/Users", json=user_body(f"racer{n}@acme.test"))).json()["id"]
    add = patch({"op": "add", "path": "members", "value": [{"value": user}]})
    joined, deleted = await asyncio.gather(
        client.patch(f"/Groups/{group}", json=add), client.delete(f"/Users/{user}")
    )
    return joined.status_code, deleted.status_code


async def test_a_group_add_racing_a_delete_never_leaves_a_deleted_member(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    group = await admins_group(client, db)
    outcomes: dict[tuple[int, int], int] = {}
    for n in range(100):
        outcome = await race_once(client, group, n)
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
    print("(group PATCH, user DELETE) statuses:", outcomes)
    assert all(status_delete == 204 for _, status_delete in outcomes)
    # The PATCH either came first (204, and the DELETE then removed the
    # membership) or found the user gone (400, nothing applied).
    assert set(outcomes) <= {(204, 204), (400, 204)}
    with db.connect() as conn:
        stale = conn.execute(
            text(
                "SELECT count(*) FROM group_members m JOIN users u ON u.id = m.user_id"
                " WHERE u.deleted_at IS NOT NULL"
            )
        ).scalar()
        admins = conn.execute(text("SELECT count(*) FROM users WHERE role = 'admin'")).scalar()
    assert (stale, admins) == (0, 0)
    listed: dict[str, Any] = (await client.get(f"/Groups/{group}")).json()
    assert listed.get("members", []) == []


async def test_one_user_added_to_two_admin_groups_at_once_is_no_deadlock(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> None:
    """Both group writes lock the joining user and then update their role: they
    must queue, not deadlock (a deadlock's victim would be a 503)."""
    map_group(db, "Admins")
    map_group(db, "Owners")
    groups = []
    for name in ("Admins", "Owners"):
        made = await client.post("/Groups", json={"schemas": [GROUP], "displayName": name})
        groups.append(made.json()["id"])
    statuses: set[int] = set()
    for n in range(50):
        user = (await client.post("/Users", json=user_body(f"both{n}@acme.test"))).json()["id"]
        add = patch({"op": "add", "path": "members", "value": [{"value": user}]})
        answers = await asyncio.gather(*(client.patch(f"/Groups/{g}", json=add) for g in groups))
        statuses |= {answer.status_code for answer in answers}
    assert statuses == {204}
    assert set(roles(db).values()) == {"admin"}
