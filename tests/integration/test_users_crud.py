"""RFC 7644 §3.3, §3.4.1, §3.5.1, §3.6 and our semantics from the setup guide."""

from __future__ import annotations

from typing import Any

import httpx2
from sqlalchemy import Engine, event, text

from tests.conftest import SCIM_JSON, make_tenant, scim_client, user_body

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"


def staff_row(db: Engine, email: str) -> Any:
    with db.connect() as conn:
        return conn.execute(
            text("SELECT * FROM users WHERE lower(email) = lower(:e)"), {"e": email}
        ).one()


def events(db: Engine) -> list[Any]:
    with db.connect() as conn:
        return list(conn.execute(text("SELECT * FROM provisioning_events ORDER BY id")).all())


async def test_create_returns_201_with_location_etag_and_full_resource(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = user_body("ada@acme.test", externalId="00u1", title="Engineer")
    body["schemas"].append(ENTERPRISE)
    body[ENTERPRISE] = {"department": "Engineering", "manager": {"value": "00u0"}}
    response = await client.post("/Users", json=body)

    assert response.status_code == 201
    assert response.headers["content-type"] == SCIM_JSON
    created = response.json()
    assert response.headers["location"] == created["meta"]["location"]
    assert created["meta"]["location"].endswith(f"/scim/v2/Users/{created['id']}")
    assert response.headers["etag"] == created["meta"]["version"] == 'W/"1"'
    assert created["meta"]["resourceType"] == "User"
    assert created["meta"]["created"] == created["meta"]["lastModified"]
    assert created["userName"] == "ada@acme.test"
    assert created["externalId"] == "00u1"
    assert created[ENTERPRISE]["department"] == "Engineering"

    row = staff_row(db, "ada@acme.test")
    assert row.role == "staff"
    assert row.active is True
    assert row.department == "Engineering"
    assert str(row.scim_id) == created["id"]
    [event] = events(db)
    assert event.kind == "user.created"
    assert event.user_id == row.id
    assert event.changes["userName"] == [None, "ada@acme.test"]
    assert event.request_id == response.headers["x-request-id"]


async def test_get_returns_the_user_and_404_for_unknown_ids(client: httpx2.AsyncClient) -> None:
    created = (await client.post("/Users", json=user_body("bo@acme.test"))).json()

    fetched = await client.get(f"/Users/{created['id']}")
    assert fetched.status_code == 200
    assert fetched.json() == created
    assert fetched.headers["etag"] == 'W/"1"'

    for unknown in ("3f0b7a2e-5b8e-4c4e-9a57-1c2d3e4f5a6b", "not-a-uuid"):
        missing = await client.get(f"/Users/{unknown}")
        assert missing.status_code == 404
        assert missing.json()["schemas"] == ["urn:ietf:params:scim:api:messages:2.0:Error"]
        assert missing.json()["status"] == "404"


async def test_put_replaces_the_user_and_bumps_the_version(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=user_body("cy@acme.test"))).json()
    replacement = user_body("cy@acme.test", title="Lead")
    replacement["name"] = {"givenName": "Cyril", "familyName": "Example"}
    replacement["schemas"].append(ENTERPRISE)
    replacement[ENTERPRISE] = {"department": "Sales"}

    response = await client.put(f"/Users/{created['id']}", json=replacement)

    assert response.status_code == 200
    updated = response.json()
    assert updated["name"]["givenName"] == "Cyril"
    assert updated["meta"]["version"] == 'W/"2"'
    assert updated["meta"]["created"] == created["meta"]["created"]
    assert updated["meta"]["lastModified"] > created["meta"]["lastModified"]
    row = staff_row(db, "cy@acme.test")
    assert (row.given_name, row.department, row.title) == ("Cyril", "Sales", "Lead")
    assert events(db)[-1].kind == "user.updated"
    assert events(db)[-1].changes["name.givenName"] == ["Cy", "Cyril"]


async def test_put_of_an_unchanged_user_writes_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    # Okta re-sends whole users; a no-op must not fan out side effects.
    created = (await client.post("/Users", json=user_body("di@acme.test"))).json()
    response = await client.put(f"/Users/{created['id']}", json=user_body("di@acme.test"))
    assert response.status_code == 200
    assert response.json()["meta"]["version"] == 'W/"1"'
    assert [e.kind for e in events(db)] == ["user.created"]


async def test_email_change_propagates_and_stays_the_primary_key(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=user_body("ed@acme.test"))).json()
    body = user_body("ed@acme.test")
    body["emails"] = [{"value": "edward@acme.test", "type": "work", "primary": True}]
    assert (await client.put(f"/Users/{created['id']}", json=body)).status_code == 200
    assert staff_row(db, "edward@acme.test").user_name == "ed@acme.test"


async def test_active_false_soft_deactivates_and_true_reactivates(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=user_body("fi@acme.test"))).json()
    deactivate = {"Operations": [{"op": "replace", "value": {"active": False}}]}

    off = await client.patch(f"/Users/{created['id']}", json=deactivate)
    assert off.status_code == 200
    assert off.json()["active"] is False
    assert staff_row(db, "fi@acme.test").active is False
    # Deactivated users stay visible to SCIM so the IdP can re-enable them.
    assert (await client.get(f"/Users/{created['id']}")).json()["active"] is False
    listed = (await client.get("/Users", params={"filter": 'userName eq "fi@acme.test"'})).json()
    assert listed["totalResults"] == 1

    on = await client.put(f"/Users/{created['id']}", json=user_body("fi@acme.test", active=True))
    assert on.json()["active"] is True
    row = staff_row(db, "fi@acme.test")
    assert row.active is True
    assert str(row.scim_id) == created["id"]
    assert [e.kind for e in events(db)] == ["user.created", "user.deactivated", "user.reactivated"]


async def test_delete_soft_deactivates_and_hides_the_user_from_scim(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = (await client.post("/Users", json=user_body("gu@acme.test"))).json()

    response = await client.delete(f"/Users/{created['id']}")

    assert response.status_code == 204
    assert response.content == b""
    assert (await client.get(f"/Users/{created['id']}")).status_code == 404
    assert (await client.delete(f"/Users/{created['id']}")).status_code == 404
    assert (await client.get("/Users")).json()["totalResults"] == 0
    row = staff_row(db, "gu@acme.test")  # never removed: the audit log stays intact
    assert row.active is False
    assert row.deleted_at is not None
    assert [e.kind for e in events(db)] == ["user.created", "user.deleted"]


async def test_rehire_after_delete_restores_the_same_staff_record_under_a_new_scim_id(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    first = (await client.post("/Users", json=user_body("ha@acme.test", title="Analyst"))).json()
    staff_id = staff_row(db, "ha@acme.test").id
    await client.delete(f"/Users/{first['id']}")

    again = await client.post("/Users", json=user_body("ha@acme.test", title="Manager"))

    assert again.status_code == 201
    rehired = again.json()
    assert rehired["id"] != first["id"]
    assert rehired["title"] == "Manager"
    assert rehired["active"] is True
    row = staff_row(db, "ha@acme.test")
    assert row.id == staff_id and row.deleted_at is None and row.active is True
    # RFC 7644 §3.6: the deleted id keeps answering 404.
    assert (await client.get(f"/Users/{first['id']}")).status_code == 404
    assert [e.kind for e in events(db)] == ["user.created", "user.deleted", "user.restored"]


async def test_a_create_of_someone_new_is_one_statement_in_autocommit(
    app: Any, client: httpx2.AsyncClient, db: Engine
) -> None:
    """The initial sync's common case costs one round trip (docs/performance.md,
    "One statement per create"); the user and its event still commit together."""
    seen: list[tuple[str, Any]] = []

    def record(conn: Any, cursor: Any, statement: str, *args: Any) -> None:
        if "scim_credentials" not in statement:  # authentication's, not the create's
            seen.append((statement, conn.get_execution_options().get("isolation_level")))

    engine = app.state.engine.sync_engine
    event.listen(engine, "before_cursor_execute", record)
    try:
        created = await client.post("/Users", json=user_body("one@acme.test"))
    finally:
        event.remove(engine, "before_cursor_execute", record)

    assert created.status_code == 201
    assert len(seen) == 1, [sql for sql, _ in seen]
    statement, isolation = seen[0]
    assert statement.startswith("WITH new_user AS") and isolation == "AUTOCOMMIT"
    assert [e.kind for e in events(db)] == ["user.created"]
    assert str(staff_row(db, "one@acme.test").scim_id) == created.json()["id"]


async def test_create_colliding_with_a_live_user_is_409_naming_the_attribute(
    client: httpx2.AsyncClient,
) -> None:
    await client.post("/Users", json=user_body("ia@acme.test"))

    same_name = await client.post("/Users", json=user_body("IA@ACME.TEST"))
    assert same_name.status_code == 409
    assert same_name.json()["scimType"] == "uniqueness"
    assert "userName" in same_name.json()["detail"]

    same_email = user_body("someone-else")
    same_email["emails"] = [{"value": "Ia@Acme.Test", "type": "work", "primary": True}]
    collision = await client.post("/Users", json=same_email)
    assert collision.status_code == 409
    assert "email" in collision.json()["detail"]


async def test_a_create_retried_after_a_lost_answer_recovers_through_the_lookup(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """docs/scim.md, "Users": a create of someone who exists is 409, then the lookup links it."""
    body = user_body("jo@acme.test", externalId="00u9")
    first = await client.post("/Users", json=body)  # committed; pretend the answer was lost

    retry = await client.post("/Users", json=body)

    assert retry.status_code == 409
    assert retry.json()["scimType"] == "uniqueness"
    assert first.json()["id"] in retry.json()["detail"]
    # What Okta (userName) and Entra (externalId) do next: look it up, then update it.
    for lookup in ('userName eq "jo@acme.test"', 'externalId eq "00u9"'):
        found = (await client.get("/Users", params={"filter": lookup})).json()
        assert [u["id"] for u in found["Resources"]] == [first.json()["id"]]
    updated = await client.put(f"/Users/{first.json()['id']}", json={**body, "title": "Chef"})
    assert updated.status_code == 200
    assert [e.kind for e in events(db)] == ["user.created", "user.updated"]


async def test_a_deactivated_user_still_answers_the_lookup_so_a_create_never_loops(
    client: httpx2.AsyncClient,
) -> None:
    body = user_body("kim@acme.test")
    created = (await client.post("/Users", json=body)).json()
    off = {"Operations": [{"op": "replace", "path": "active", "value": False}]}
    await client.patch(f"/Users/{created['id']}", json=off)

    assert (await client.post("/Users", json=body)).status_code == 409
    found = (await client.get("/Users", params={"filter": 'userName eq "kim@acme.test"'})).json()
    assert [u["id"] for u in found["Resources"]] == [created["id"]]


async def test_if_match_is_honoured_on_put_patch_and_delete(client: httpx2.AsyncClient) -> None:
    created = (await client.post("/Users", json=user_body("ka@acme.test"))).json()
    url = f"/Users/{created['id']}"
    stale = {"If-Match": 'W/"7"'}
    patch = {"Operations": [{"op": "replace", "path": "title", "value": "X"}]}

    for response in (
        await client.put(url, json=user_body("ka@acme.test", title="Y"), headers=stale),
        await client.patch(url, json=patch, headers=stale),
        await client.delete(url, headers=stale),
    ):
        assert response.status_code == 412
        assert response.json()["status"] == "412"

    ok = await client.patch(url, json=patch, headers={"If-Match": created["meta"]["version"]})
    assert ok.status_code == 200
    assert ok.headers["etag"] == 'W/"2"'
    assert (await client.delete(url, headers={"If-Match": 'W/"2"'})).status_code == 204


async def test_read_only_attributes_on_input_are_ignored(client: httpx2.AsyncClient) -> None:
    body = user_body("lu@acme.test", id="client-chosen", meta={"created": "2001-01-01T00:00:00Z"})
    created = await client.post("/Users", json=body)
    assert created.status_code == 201
    assert created.json()["id"] != "client-chosen"
    assert created.json()["meta"]["created"].startswith("20") and not created.json()["meta"][
        "created"
    ].startswith("2001")


async def test_unknown_attributes_are_ignored_and_noted_on_the_event(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = user_body("mo@acme.test", mailNickname="mo", password="hunter2")
    created = await client.post("/Users", json=body)

    assert created.status_code == 201
    assert "mailNickname" not in created.json()
    assert "password" not in created.json()
    assert events(db)[0].ignored_attributes == ["mailNickname", "password"]
    with db.connect() as conn:
        stored = conn.execute(text("SELECT attributes::text FROM users")).scalar_one()
    assert "hunter2" not in stored


async def test_a_known_attribute_with_the_wrong_type_is_400_invalid_value(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    for bad in (
        user_body("no@acme.test", active="maybe"),
        user_body("no@acme.test", name="Just A String"),
        user_body("no@acme.test", emails="no@acme.test"),
        {"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], "displayName": "No userName"},
        user_body(""),
    ):
        response = await client.post("/Users", json=bad)
        assert response.status_code == 400, bad
        assert response.json()["scimType"] == "invalidValue", response.json()
        assert response.json()["detail"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


async def test_new_users_record_which_idp_created_them(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    await client.post(
        "/Users", json=user_body("pa@acme.test"), headers={"User-Agent": "Okta SCIM Client 1.0.0"}
    )
    assert staff_row(db, "pa@acme.test").source == "okta"
    assert events(db)[0].actor_idp == "okta"


async def test_tenants_cannot_see_or_touch_each_others_users(
    client: httpx2.AsyncClient, app: Any, db: Engine
) -> None:
    other = make_tenant(db, "globex")
    theirs = (await client.post("/Users", json=user_body("qi@acme.test"))).json()
    async with scim_client(app, other.headers) as intruder:
        url = f"/Users/{theirs['id']}"
        assert (await intruder.get(url)).status_code == 404
        assert (
            await intruder.patch(
                url, json={"Operations": [{"op": "replace", "path": "active", "value": False}]}
            )
        ).status_code == 404
        assert (await intruder.delete(url)).status_code == 404
        assert (await intruder.get("/Users")).json()["totalResults"] == 0
        found = await intruder.get("/Users", params={"filter": 'userName eq "qi@acme.test"'})
        assert found.json()["totalResults"] == 0
        # The same person may exist in both workspaces.
        assert (await intruder.post("/Users", json=user_body("qi@acme.test"))).status_code == 201
    assert staff_row_count(db) == 2


def staff_row_count(db: Engine) -> int:
    with db.connect() as conn:
        return int(conn.execute(text("SELECT count(*) FROM users")).scalar_one())


async def test_leaving_active_out_never_reactivates_a_deactivated_user(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """Only an explicit active=true restores access (docs/scim.md, "Users": deactivate)."""
    created = (await client.post("/Users", json=user_body("nia@acme.test"))).json()
    url = f"/Users/{created['id']}"
    await client.patch(
        url, json={"Operations": [{"op": "replace", "path": "active", "value": False}]}
    )
    without_active = {
        k: v for k, v in user_body("nia@acme.test", title="X").items() if k != "active"
    }

    for response in (
        await client.put(url, json=without_active),
        await client.patch(url, json={"Operations": [{"op": "remove", "path": "active"}]}),
        await client.patch(
            url, json={"Operations": [{"op": "replace", "path": "active", "value": None}]}
        ),
    ):
        assert response.status_code == 200
        # The attribute may be gone from the resource (a remove), never true.
        assert response.json().get("active") in (None, False)
    assert staff_row(db, "nia@acme.test").active is False
    assert "user.reactivated" not in [e.kind for e in events(db)]
    still_off = await client.get("/Users", params={"filter": "active eq false"})
    assert still_off.json()["totalResults"] == 1


async def test_a_deleted_users_name_and_email_can_be_reused_by_a_live_user(
    client: httpx2.AsyncClient,
) -> None:
    # The IdP cannot see deleted users, so they must not block its writes.
    alice = (await client.post("/Users", json=user_body("alice@acme.test"))).json()
    bob = (await client.post("/Users", json=user_body("bob@acme.test"))).json()
    await client.delete(f"/Users/{alice['id']}")

    taken = user_body("alice@acme.test")
    response = await client.put(f"/Users/{bob['id']}", json=taken)

    assert response.status_code == 200
    assert response.json()["userName"] == "alice@acme.test"


async def test_rehire_matches_names_the_way_postgresql_lowercases_them(
    client: httpx2.AsyncClient,
) -> None:
    # Python lowercases a final capital sigma to the final form (U+03C2), PostgreSQL
    # to the medial one (U+03C3): names must be compared with lower() in SQL.
    first = (await client.post("/Users", json=user_body("ΟΔΥΣΣΕΥΣ@acme.test"))).json()
    await client.delete(f"/Users/{first['id']}")
    again = await client.post("/Users", json=user_body("ΟΔΥΣΣΕΥΣ@acme.test"))
    assert again.status_code == 201


async def test_a_bad_projection_fails_before_anything_is_written(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    response = await client.post(
        "/Users", params={"attributes": 'emails[type eq "work"]'}, json=user_body("pj@acme.test")
    )
    assert response.status_code == 400
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


async def test_pathless_patch_keys_with_a_value_filter_are_applied(
    client: httpx2.AsyncClient,
) -> None:
    created = (await client.post("/Users", json=user_body("vf@acme.test"))).json()
    operations = [
        {"op": "Replace", "value": {'emails[type eq "work"].value': "new@acme.test", "title": "T"}}
    ]
    response = await client.patch(f"/Users/{created['id']}", json={"Operations": operations})
    assert response.status_code == 200
    assert response.json()["title"] == "T"
    assert [e["value"] for e in response.json()["emails"]] == ["new@acme.test"]
