"""Microsoft Entra ID's provisioning sequences, replayed end to end against the gateway.

Each test is one readable script of what the Entra provisioning service sends,
in order. Sources:

- "Tutorial: Develop and plan provisioning for a SCIM endpoint in Microsoft
  Entra ID" (learn.microsoft.com/entra/identity/app-provisioning/
  use-scim-to-provision-users-and-groups): Test Connection queries a random
  GUID and expects 200 with an empty ListResponse; users are queried by
  userName, externalId and ``emails[type eq "work"].value``, with ``eq`` and
  ``and``; ``op`` arrives as Add/Replace/Remove; disabled users must still be
  returned; DELETE answers 204; the Create/Update/Disable/Delete request bodies;
  the enterprise ``manager`` as a plain string in the schema example.
- "Known issues and resolutions with SCIM 2.0 protocol compliance of the
  Microsoft Entra user provisioning service" (same site,
  application-provisioning-config-problem-scim-compatibility): what the
  provisioning job sends by default (``"value": "False"`` to disable, one
  Replace per attribute) and with the ``aadOptscim062020`` flag (a Replace
  without path whose value has dotted and URN-prefixed keys).
- Bodies captured from Entra in public bug reports: the manager Add with a
  plain-string value (Captain-P-Goldfish/SCIM-SDK#541), the Add on
  ``emails[type eq "work"].value`` (Microsoft Q&A 1684621), and the request
  headers ``Content-Type: application/scim+json; charset=utf-8``
  (MicrosoftDocs/azure-docs#12728, SCIM-SDK#416).
- Microsoft's Postman collection for SCIM endpoints (AzureAD/SCIMReferenceCode,
  "Test your SCIM endpoint"): PascalCase attribute names, and operations that
  carry an extra ``"name"`` key (``{"name": "addMember", "op": "add", ...}``).

Microsoft does not document the provisioning service's User-Agent, so these
tests neither send a made-up one nor assert which IdP the gateway recorded.
"""

from __future__ import annotations

import json
import uuid
from pathlib import Path
from typing import Any

import httpx2
from sqlalchemy import Engine

from tests.idp.records import event_kinds, staff_row

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "scim"
LIST_RESPONSE = "urn:ietf:params:scim:api:messages:2.0:ListResponse"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"
PATCH_OP = "urn:ietf:params:scim:api:messages:2.0:PatchOp"
USER_SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"
ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
DEPARTMENT = f"{ENTERPRISE}:department"
MANAGER = f"{ENTERPRISE}:manager"
WORK_EMAIL = 'emails[type eq "work"].value'

# What the Entra provisioning service sends with each write (see module docstring).
ENTRA = {"Content-Type": "application/scim+json; charset=utf-8"}


def load(name: str) -> Any:
    """A captured payload from tests/fixtures/scim, fresh on every call."""
    return json.loads((FIXTURES / name).read_text())


def patch(*operations: dict[str, Any]) -> dict[str, Any]:
    return {"schemas": [PATCH_OP], "Operations": list(operations)}


def without_email(user_name: str) -> dict[str, Any]:
    """A user whose Entra account has no mail attribute, so no work email flows."""
    return {
        "schemas": [USER_SCHEMA, ENTERPRISE],
        "externalId": str(uuid.uuid4()),
        "userName": user_name,
        "active": True,
        "meta": {"resourceType": "User"},
        "name": {"formatted": "No Mail", "familyName": "Mail", "givenName": "No"},
        "roles": [],
    }


def work_emails(user: dict[str, Any]) -> list[str]:
    return [e["value"] for e in user.get("emails") or [] if e.get("type") == "work"]


async def create(client: httpx2.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/Users", json=body, headers=ENTRA)
    assert response.status_code == 201, response.text
    user: dict[str, Any] = response.json()
    return user


async def query(client: httpx2.AsyncClient, filter_: str) -> dict[str, Any]:
    response = await client.get("/Users", params={"filter": filter_})
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    assert body["schemas"] == [LIST_RESPONSE]
    return body


async def test_test_connection_queries_a_random_guid_and_gets_an_empty_list(
    client: httpx2.AsyncClient,
) -> None:
    # Exactly as it arrives (MicrosoftDocs/azure-docs#94189): '+' for spaces.
    guid = uuid.uuid4()
    probe = await client.get(f"/Users?filter=userName+eq+%22{guid}%22")

    assert probe.status_code == 200
    assert probe.headers["content-type"] == "application/scim+json"
    body = probe.json()
    assert body["schemas"] == [LIST_RESPONSE]
    assert body["totalResults"] == 0
    assert body["Resources"] == []

    # Still empty, never a 404, once the workspace has people in it.
    await create(client, load("entra-create-user.json"))
    again = await query(client, f'userName eq "{uuid.uuid4()}"')
    assert again["totalResults"] == 0
    assert again["Resources"] == []
    # "Get User by query - Zero results".
    nobody = await query(client, 'userName eq "non-existent user"')
    assert nobody["totalResults"] == 0


async def test_matching_queries_by_username_external_id_and_work_email(
    client: httpx2.AsyncClient,
) -> None:
    body = load("entra-create-user.json")
    user = await create(client, body)

    for filter_ in (
        f'userName eq "{body["userName"]}"',
        f'externalId eq "{body["externalId"]}"',
        f'userName eq "{body["userName"]}" and externalId eq "{body["externalId"]}"',
        # userName and emails are caseExact=false (RFC 7643 §4.1.1, §4.1.2).
        f'userName eq "{body["userName"].upper()}"',
        f'{WORK_EMAIL} eq "{body["emails"][0]["value"].lower()}"',
    ):
        found = await query(client, filter_)
        assert found["totalResults"] == 1, filter_
        assert [u["id"] for u in found["Resources"]] == [user["id"]], filter_

    for filter_ in (
        f'userName eq "{body["userName"]}" and externalId eq "{uuid.uuid4()}"',
        # externalId is caseExact=true (RFC 7643 §3.1).
        f'externalId eq "{body["externalId"].upper()}"',
    ):
        assert (await query(client, filter_))["totalResults"] == 0, filter_

    fetched = await client.get(f"/Users/{user['id']}")
    assert fetched.status_code == 200
    assert fetched.json()["userName"] == body["userName"]


async def test_create_with_the_enterprise_extension_and_a_plain_string_manager(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = load("entra-create-user.json")

    response = await client.post("/Users", json=body, headers=ENTRA)

    assert response.status_code == 201
    user = response.json()
    assert user["id"]
    assert response.headers["location"].endswith(f"/Users/{user['id']}")
    assert user["userName"] == body["userName"]
    assert user["externalId"] == "0a21f0f2-8d2a-4f8e-bf98-7363c4aed4ef"
    assert user["active"] is True
    assert user["name"]["formatted"] == "givenName familyName"
    assert ENTERPRISE in user["schemas"]
    assert user[ENTERPRISE]["department"] == "Engineering"
    assert user[ENTERPRISE]["manager"]["value"] == "123456"
    assert user["meta"]["resourceType"] == "User"

    row = staff_row(db, user["id"])
    assert row.role == "staff"
    assert row.active is True
    assert row.deleted_at is None
    assert row.department == "Engineering"
    # "Values sent should be stored in the same format they were sent."
    assert row.email == "Test_User_11bb11bb-cc22-dd33-ee44-55ff55ff55ff@testuser.com"
    assert row.attributes[ENTERPRISE]["manager"]["value"] == "123456"
    assert event_kinds(db) == ["user.created"]


async def test_update_user_multi_valued_properties(client: httpx2.AsyncClient, db: Engine) -> None:
    user = await create(client, load("entra-create-user.json"))

    response = await client.patch(
        f"/Users/{user['id']}", json=load("entra-patch-update-multi-valued.json"), headers=ENTRA
    )

    assert response.status_code == 200
    updated = response.json()
    # The work address is replaced in place, not added next to the old one.
    assert work_emails(updated) == ["updatedEmail@microsoft.com"]
    assert updated["name"]["familyName"] == "updatedFamilyName"
    assert updated["name"]["givenName"] == "givenName"
    row = staff_row(db, user["id"])
    assert row.email == "updatedEmail@microsoft.com"
    assert row.family_name == "updatedFamilyName"
    assert row.department == "Engineering"
    assert event_kinds(db) == ["user.created", "user.updated"]


async def test_a_work_email_replaced_or_added_on_a_user_without_one_is_added(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    no_mail = await create(client, without_email("no.mail@contoso.test"))
    assert staff_row(db, no_mail["id"]).email is None

    # Replace on a value path that matches nothing yet: Entra expects it created.
    replaced = await client.patch(
        f"/Users/{no_mail['id']}",
        json=patch({"op": "Replace", "path": WORK_EMAIL, "value": "first.mail@contoso.test"}),
        headers=ENTRA,
    )

    assert replaced.status_code == 200
    assert work_emails(replaced.json()) == ["first.mail@contoso.test"]
    assert staff_row(db, no_mail["id"]).email == "first.mail@contoso.test"

    # Entra also sends "Add" for the same path (entra-patch-add-work-email.json) ...
    other = await create(client, without_email("other.no.mail@contoso.test"))
    added = await client.patch(
        f"/Users/{other['id']}", json=load("entra-patch-add-work-email.json"), headers=ENTRA
    )
    assert added.status_code == 200
    assert added.json()["title"] == "tester"
    assert work_emails(added.json()) == ["joe@joe.com"]
    row = staff_row(db, other["id"])
    assert (row.email, row.title) == ("joe@joe.com", "tester")

    # ... including when the user already has a work email, meaning "change it":
    # a user has at most one email of each type (Entra's guidelines).
    changed = await client.patch(
        f"/Users/{other['id']}",
        json=patch({"op": "Add", "path": WORK_EMAIL, "value": "joe.new@joe.com"}),
        headers=ENTRA,
    )
    assert changed.status_code == 200
    assert work_emails(changed.json()) == ["joe.new@joe.com"]
    assert staff_row(db, other["id"]).email == "joe.new@joe.com"
    assert event_kinds(db) == [
        "user.created",
        "user.updated",
        "user.created",
        "user.updated",
        "user.updated",
    ]


async def test_replace_multiple_attributes_one_capitalised_operation_each(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    user = await create(client, load("entra-create-user.json"))

    response = await client.patch(
        f"/Users/{user['id']}", json=load("entra-patch-replace-multiple.json"), headers=ENTRA
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated["displayName"] == "Pvlo"
    assert work_emails(updated) == ["TestBcwqnm@test.microsoft.com"]
    assert (updated["name"]["givenName"], updated["name"]["familyName"]) == ("Gtfd", "Pkqf")
    assert updated["externalId"] == "Eqpj"
    assert updated[ENTERPRISE]["employeeNumber"] == "Eqpj"
    assert updated[ENTERPRISE]["department"] == "Engineering"
    row = staff_row(db, user["id"])
    assert row.email == "TestBcwqnm@test.microsoft.com"
    assert (row.given_name, row.family_name) == ("Gtfd", "Pkqf")
    assert (row.display_name, row.external_id) == ("Pvlo", "Eqpj")
    assert row.department == "Engineering"
    assert row.active is True
    assert event_kinds(db) == ["user.created", "user.updated"]


async def test_replace_without_path_with_dotted_and_urn_prefixed_keys(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """The aadOptscim062020 shape: RFC 7644 §3.5.2.3 replace with no path, whose value
    names sub-attributes ("name.givenName") and extension attributes by full URN."""
    user = await create(client, load("entra-create-user.json"))

    response = await client.patch(
        f"/Users/{user['id']}",
        json=load("entra-patch-replace-multiple-aadoptscim062020.json"),
        headers=ENTRA,
    )

    assert response.status_code == 200
    updated = response.json()
    assert updated["displayName"] == "Bjfe"
    assert (updated["name"]["givenName"], updated["name"]["familyName"]) == ("Kkom", "Unua")
    assert updated[ENTERPRISE]["employeeNumber"] == "Aklq"
    assert work_emails(updated) == ["TestMhvaes@test.microsoft.com"]
    # The dotted keys are paths, not new attributes; siblings are untouched.
    for key in ("name.givenName", "name.familyName", f"{ENTERPRISE}:employeeNumber"):
        assert key not in updated
        assert key not in staff_row(db, user["id"]).attributes
    assert updated["name"]["formatted"] == "givenName familyName"
    assert updated[ENTERPRISE]["department"] == "Engineering"
    assert updated[ENTERPRISE]["manager"]["value"] == "123456"
    row = staff_row(db, user["id"])
    assert (row.given_name, row.family_name, row.display_name) == ("Kkom", "Unua", "Bjfe")
    assert row.email == "TestMhvaes@test.microsoft.com"
    assert row.department == "Engineering"
    assert event_kinds(db) == ["user.created", "user.updated"]


async def test_department_and_manager_patches_with_extra_operation_keys(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    user = await create(client, without_email("mgr.test@contoso.test"))
    url = f"/Users/{user['id']}"

    # Manager added with the manager's id as a bare string (entra-patch-add-manager.json).
    response = await client.patch(url, json=load("entra-patch-add-manager.json"), headers=ENTRA)
    assert response.status_code == 200
    assert response.json()[ENTERPRISE]["manager"]["value"] == "271"

    # Operations may carry a "name" key (Microsoft's Postman collection): not an attribute.
    response = await client.patch(
        url,
        json=patch(
            {"name": "addDepartment", "op": "Add", "path": DEPARTMENT, "value": "Sales"},
            {"name": "replaceGivenName", "op": "Replace", "path": "name.givenName", "value": "Mo"},
        ),
        headers=ENTRA,
    )
    assert response.status_code == 200
    assert response.json()[ENTERPRISE]["department"] == "Sales"
    assert response.json()["name"]["givenName"] == "Mo"
    assert "addDepartment" not in json.dumps(response.json())
    row = staff_row(db, user["id"])
    assert (row.department, row.given_name) == ("Sales", "Mo")

    response = await client.patch(
        url,
        json=patch(
            {"op": "Replace", "path": DEPARTMENT, "value": "Marketing"},
            {"op": "Replace", "path": MANAGER, "value": "272"},
        ),
        headers=ENTRA,
    )
    assert response.status_code == 200
    assert response.json()[ENTERPRISE]["manager"]["value"] == "272"
    assert staff_row(db, user["id"]).department == "Marketing"

    response = await client.patch(url, json=patch({"op": "Remove", "path": MANAGER}), headers=ENTRA)
    assert response.status_code == 200
    assert "manager" not in response.json().get(ENTERPRISE, {})

    response = await client.patch(
        url, json=patch({"op": "Remove", "path": DEPARTMENT}), headers=ENTRA
    )
    assert response.status_code == 200
    assert "department" not in response.json().get(ENTERPRISE, {})
    row = staff_row(db, user["id"])
    assert row.department is None
    assert row.active is True and row.role == "staff"
    assert event_kinds(db) == ["user.created"] + ["user.updated"] * 5


async def test_disable_and_enable_with_string_booleans(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = load("entra-create-user.json")
    user = await create(client, body)
    url = f"/Users/{user['id']}"

    off = await client.patch(url, json=load("entra-patch-disable.json"), headers=ENTRA)

    assert off.status_code == 200
    assert off.json()["active"] is False  # a boolean again on the way out
    row = staff_row(db, user["id"])
    assert row.active is False
    assert row.deleted_at is None
    # "The user object should be returned in a request whether or not the user is active."
    assert (await client.get(url)).json()["active"] is False
    assert (await query(client, f'userName eq "{body["userName"]}"'))["totalResults"] == 1

    on = await client.patch(
        url, json=patch({"op": "Replace", "path": "active", "value": "True"}), headers=ENTRA
    )
    assert on.status_code == 200
    assert on.json()["active"] is True
    assert staff_row(db, user["id"]).active is True

    # With aadOptscim062020 the same request carries a real boolean.
    off_again = await client.patch(
        url, json=patch({"op": "replace", "path": "active", "value": False}), headers=ENTRA
    )
    assert off_again.status_code == 200
    assert staff_row(db, user["id"]).active is False
    assert event_kinds(db) == [
        "user.created",
        "user.deactivated",
        "user.reactivated",
        "user.deactivated",
    ]


async def test_delete_then_recreate_restores_the_same_staff_record(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    body = load("entra-create-user.json")
    first = await create(client, body)
    staff_id = staff_row(db, first["id"]).id

    deleted = await client.delete(f"/Users/{first['id']}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    gone = await client.get(f"/Users/{first['id']}")
    assert gone.status_code == 404
    assert gone.json()["schemas"] == [ERROR]
    assert gone.json()["status"] == "404"
    assert (await query(client, f'userName eq "{body["userName"]}"'))["totalResults"] == 0
    row = staff_row(db, first["id"])  # kept: the audit trail and history stay
    assert row.deleted_at is not None
    assert row.active is False
    assert row.role == "staff"
    assert event_kinds(db) == ["user.created", "user.deleted"]

    # The user is assigned again: Entra looks them up, finds nobody, creates.
    assert (await query(client, f'externalId eq "{body["externalId"]}"'))["totalResults"] == 0
    again = await create(client, body)

    assert again["id"] != first["id"]
    assert again["active"] is True
    assert (await client.get(f"/Users/{first['id']}")).status_code == 404  # RFC 7644 §3.6
    assert (await client.get(f"/Users/{again['id']}")).status_code == 200
    row = staff_row(db, again["id"])
    assert row.id == staff_id
    assert row.deleted_at is None
    assert row.active is True
    assert row.department == "Engineering"
    assert event_kinds(db) == ["user.created", "user.deleted", "user.restored"]


async def test_postman_collection_pascal_case_attribute_names(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """Microsoft's Postman collection writes "Primary", "Department", "Manager": {"Value"}
    and filters on "DisplayName": attribute names are case-insensitive (RFC 7643 §2.1)."""
    body = load("entra-postman-create-enterprise-user.json")
    body["externalId"] = str(uuid.uuid4())

    user = await create(client, body)

    assert user[ENTERPRISE]["department"] == "bob"
    assert user[ENTERPRISE]["manager"]["value"] == "SuzzyQ"
    primary = [e["value"] for e in user["emails"] if e.get("primary") is True]
    assert primary == ["testing@bob2.com"]
    row = staff_row(db, user["id"])
    assert row.department == "bob"
    assert row.email == "testing@bob2.com"
    found = await query(client, 'DisplayName eq "lennay"')
    assert [u["id"] for u in found["Resources"]] == [user["id"]]
