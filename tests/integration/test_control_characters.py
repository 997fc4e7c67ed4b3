"""Control characters in userName and emails: refused at the SCIM edge, escaped by `simpleams`.

Security review item 11. ``^[^@\\s]+@[^@\\s]+$`` let ESC through, so a stored
``esc\\x1b[8m@ex.com`` drove the terminal of the operator reading
``simpleams audit``; and ``$`` matches before a final newline, so PATCHing an
email to ``other@ex.com\\n`` gave two live users one address. Values already
stored before the rule are escaped by every `simpleams` command that prints
them, which is tested here by writing them straight into the database.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from tests.conftest import user_body
from tests.integration.cli import simpleams
from tests.integration.test_errors import assert_scim_error

BULK_REQUEST = "urn:ietf:params:scim:api:messages:2.0:BulkRequest"

HOSTILE = [
    "esc\x1b[8m@ex.com",
    "other@ex.com\n",
    " other@ex.com",
    "other@ex.com\t",
    "oth\u2028er@ex.com",
    "oth\x9ber@ex.com",
    "oth\u200ber@ex.com",
]


def snapshot(db: Engine) -> list[Any]:
    """Every user row and event: what a refused request must leave as it was."""
    with db.connect() as conn:
        users = conn.execute(
            text("SELECT id, user_name, email, email_values, attributes, version FROM users")
        ).all()
        events = conn.execute(text("SELECT id, kind FROM provisioning_events ORDER BY id")).all()
    return [sorted(map(tuple, users), key=str), list(map(tuple, events))]


def assert_invalid_value(response: httpx2.Response, attribute: str) -> None:
    assert_scim_error(response, 400, "invalidValue")
    detail = response.json()["detail"]
    assert attribute in detail, detail
    assert all(char.isprintable() for char in detail), detail


# --- the SCIM edge --------------------------------------------------------------


@pytest.mark.parametrize("value", HOSTILE)
async def test_post_with_such_a_user_name_or_email_is_400_and_writes_nothing(
    client: httpx2.AsyncClient, db: Engine, value: str
) -> None:
    as_email = user_body("bob@ex.com", emails=[{"value": value, "type": "work", "primary": True}])
    assert_invalid_value(await client.post("/Users", json=as_email), "emails[0].value")
    as_name = user_body(value, emails=[{"value": "bob@ex.com", "type": "work", "primary": True}])
    assert_invalid_value(await client.post("/Users", json=as_name), "'userName'")
    assert snapshot(db) == [[], []]


@pytest.mark.parametrize("value", HOSTILE)
async def test_put_and_patch_with_such_a_value_are_400_and_change_nothing(
    client: httpx2.AsyncClient, db: Engine, value: str
) -> None:
    created = await client.post("/Users", json=user_body("bob@ex.com"))
    assert created.status_code == 201, created.text
    url = f"/Users/{created.json()['id']}"
    before = snapshot(db)

    as_email = user_body("bob@ex.com", emails=[{"value": value, "type": "work", "primary": True}])
    assert_invalid_value(await client.put(url, json=as_email), "emails[0].value")
    as_name = user_body(value, emails=[{"value": "bob@ex.com", "type": "work", "primary": True}])
    assert_invalid_value(await client.put(url, json=as_name), "'userName'")
    for operation, attribute in [
        ({"op": "replace", "path": "userName", "value": value}, "'userName'"),
        ({"op": "replace", "value": {"userName": value}}, "'userName'"),
        ({"op": "replace", "path": 'emails[type eq "work"].value', "value": value}, "emails["),
        ({"op": "add", "path": "emails", "value": [{"value": value}]}, "emails[1].value"),
        ({"op": "replace", "value": {"emails": [{"value": value}]}}, "emails[0].value"),
    ]:
        answer = await client.patch(url, json={"Operations": [operation]})
        assert_invalid_value(answer, attribute)
    assert snapshot(db) == before


async def test_two_live_users_cannot_share_an_address_through_a_trailing_newline(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    """The review's repro: PATCH bob's email to `other@ex.com\\n` while other@ex.com exists."""
    assert (await client.post("/Users", json=user_body("other@ex.com"))).status_code == 201
    bob = await client.post("/Users", json=user_body("bob@ex.com"))
    assert bob.status_code == 201
    before = snapshot(db)

    repro = {"op": "replace", "path": 'emails[type eq "work"].value', "value": "other@ex.com\n"}
    answer = await client.patch(f"/Users/{bob.json()['id']}", json={"Operations": [repro]})

    assert_invalid_value(answer, "emails[")
    assert snapshot(db) == before
    with db.connect() as conn:
        holders = conn.execute(
            text("SELECT count(*) FROM users WHERE btrim(lower(email), E' \\n') = 'other@ex.com'")
        ).scalar_one()
    assert holders == 1


async def test_bulk_operations_with_such_values_fail_alone_and_write_nothing(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = await client.post("/Users", json=user_body("bob@ex.com"))
    assert created.status_code == 201
    before = snapshot(db)
    operations = [
        {"method": "POST", "bulkId": "a", "path": "/Users", "data": user_body("esc\x1b[8m@ex.com")},
        {
            "method": "PATCH",
            "path": f"/Users/{created.json()['id']}",
            "data": {"Operations": [{"op": "replace", "path": "userName", "value": "bob\n"}]},
        },
    ]
    response = await client.post(
        "/Bulk", json={"schemas": [BULK_REQUEST], "Operations": operations}
    )
    assert response.status_code == 200, response.text
    for result in response.json()["Operations"]:
        assert result["status"] == "400", result
        assert result["response"]["scimType"] == "invalidValue", result
    assert snapshot(db) == before


async def test_a_user_stored_with_such_values_before_the_rule_can_be_read_and_deactivated(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    created = await client.post("/Users", json=user_body("bob@ex.com"))
    assert created.status_code == 201
    url = f"/Users/{created.json()['id']}"
    legacy_name, legacy_email = "bob\x1b[8m", "esc\x1b[8m@ex.com"
    document = {
        **created.json(),
        "userName": legacy_name,
        "emails": [{"value": legacy_email, "type": "work", "primary": True}],
    }
    for key in ("id", "meta"):
        document.pop(key)
    with db.begin() as conn:
        conn.execute(
            text(
                "UPDATE users SET user_name = :name, email = :email, "
                "attributes = CAST(:document AS jsonb)"
            ),
            {"name": legacy_name, "email": legacy_email, "document": json.dumps(document)},
        )

    read = await client.get(url, params={"attributes": "userName,emails"})
    assert read.status_code == 200, read.text
    assert read.json()["userName"] == legacy_name
    assert read.json()["emails"][0]["value"] == legacy_email
    leaver = await client.patch(
        url, json={"Operations": [{"op": "replace", "value": {"active": False}}]}
    )
    assert leaver.status_code == 200, leaver.text
    assert leaver.json()["active"] is False


# --- the operator command --------------------------------------------------------

ESC_NAME = "mallory\x1b[8m\nfake line"
ESC_EMAIL = "esc\x1b]0;owned\x07@ex.com\n"
C1_AND_SEPARATORS = "csi\x9b2J\u2028\u202eevil\x7f"


def plant_hostile_values(db: Engine) -> None:
    """Values as they may sit in a database written before the rule (or by hand)."""
    with db.begin() as conn:
        tenant_id = conn.execute(text("SELECT id FROM tenants WHERE slug = 'acme'")).scalar_one()
        params = {
            "t": tenant_id,
            "name": ESC_NAME,
            "email": ESC_EMAIL,
            "c1": C1_AND_SEPARATORS,
            "error": ESC_NAME + C1_AND_SEPARATORS,
            "group_name": C1_AND_SEPARATORS + ESC_NAME,
            "changes": json.dumps({"displayName": [ESC_NAME, C1_AND_SEPARATORS]}),
        }
        event_id = conn.execute(
            text(
                "INSERT INTO provisioning_events (tenant_id, group_id, kind, changes, actor_idp) "
                "VALUES (:t, gen_random_uuid(), 'group.created', '{}'::jsonb, 'okta') RETURNING id"
            ),
            params,
        ).scalar_one()
        params["e"] = event_id
        conn.execute(
            text(
                "INSERT INTO audit_log (event_id, tenant_id, occurred_at, action, actor_idp, "
                "actor_user_agent, target_user_name, target_email, changes) "
                "VALUES (:e, :t, now(), 'created', 'okta\x1b[2J', :c1, :name, :email, "
                "CAST(:changes AS jsonb))"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO side_effect_runs (event_id, effect, status, attempts, error) "
                "VALUES (:e, 'notify', 'failed', 1, :error)"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO role_mappings (tenant_id, group_key, group_name, role) "
                "VALUES (:t, 'evil', :group_name, 'admin')"
            ),
            params,
        )
        conn.execute(
            text(
                "INSERT INTO admins (id, tenant_id, email, password_hash) "
                "VALUES (gen_random_uuid(), :t, :email, 'x')"
            ),
            params,
        )
        conn.execute(text("UPDATE tenants SET notify_email = :email WHERE id = :t"), params)


def assert_escaped(output: str, *, lines: int, separator: str = "") -> None:
    """No control character but the line ends (and the command's own column separator)."""
    allowed = {"\n", *separator}
    raw = sorted({f"U+{ord(c):04X}" for c in output if not c.isprintable() and c not in allowed})
    assert raw == [], f"raw control characters reached the terminal: {raw}\n{output!r}"
    assert len(output.splitlines()) == lines, output
    for escaped in ("\\x1b[8m", "\\n", "\\x9b", "\\u2028", "\\u202e", "\\x7f"):
        assert escaped in output, (escaped, output)


@pytest.mark.usefixtures("tenant")
def test_the_cli_prints_stored_control_characters_escaped(database_url: str, db: Engine) -> None:
    plant_hostile_values(db)

    audit = simpleams(database_url, "audit", "acme")
    assert audit.returncode == 0, audit.stderr
    assert_escaped(audit.stdout, lines=1)
    assert "\\x1b]0;owned\\x07@ex.com\\n" in audit.stdout  # the email, as stored, escaped

    failed = simpleams(database_url, "events", "failed")
    assert failed.returncode == 0, failed.stderr
    assert_escaped(failed.stdout, lines=1)

    roles = simpleams(database_url, "roles", "list", "acme")
    assert roles.returncode == 0, roles.stderr
    assert_escaped(roles.stdout, lines=1, separator="\t")
    assert roles.stdout.count("\t") == 2  # the columns are still tab-separated

    admins = simpleams(database_url, "admin", "list", "acme")
    assert admins.returncode == 0, admins.stderr
    assert admins.stdout == "esc\\x1b]0;owned\\x07@ex.com\\n\n"

    demo = simpleams(database_url, "demo", "acme")
    assert demo.returncode == 0, demo.stderr
    assert "go to esc\\x1b]0;owned\\x07@ex.com\\n\n" in demo.stdout
    assert "\x1b" not in demo.stdout


@pytest.mark.usefixtures("tenant")
def test_the_cli_json_audit_escapes_them_and_still_reads_back_exactly(
    database_url: str, db: Engine
) -> None:
    plant_hostile_values(db)

    audit = simpleams(database_url, "audit", "acme", "--json")

    assert audit.returncode == 0, audit.stderr
    raw = sorted({f"U+{ord(c):04X}" for c in audit.stdout if not c.isprintable() and c != "\n"})
    assert raw == [], audit.stdout
    [line] = audit.stdout.splitlines()
    entry = json.loads(line)
    assert entry["user"] == ESC_EMAIL
    assert entry["user_agent"] == C1_AND_SEPARATORS
    assert entry["changes"] == {"displayName": [ESC_NAME, C1_AND_SEPARATORS]}


@pytest.mark.usefixtures("tenant")
def test_the_cli_escapes_what_it_echoes_in_an_error(database_url: str) -> None:
    refused = simpleams(database_url, "checkin", "acme", "TAG\x1b[8m\u2028")
    assert refused.returncode == 1
    assert "Asset TAG\\x1b[8m\\u2028 is not checked out." in refused.stderr
    assert all(char.isprintable() for char in refused.stderr.rstrip("\n")), refused.stderr


def test_every_line_the_cli_prints_goes_through_its_escaping() -> None:
    """A new print() in gateway/cli.py would bypass the escaping: only _say may call print."""
    import ast

    import gateway.cli

    tree = ast.parse(Path(gateway.cli.__file__).read_text())
    callers = [
        function.name
        for function in ast.walk(tree)
        if isinstance(function, ast.FunctionDef)
        for call in ast.walk(function)
        if isinstance(call, ast.Call)
        and isinstance(call.func, ast.Name)
        and call.func.id in ("print", "input")
    ]
    writes = [
        node.attr
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute) and node.attr in ("write", "writelines")
    ]
    assert callers == ["_say"], callers
    assert writes == [], writes


async def test_an_external_id_with_a_control_character_is_refused(
    client: httpx2.AsyncClient,
) -> None:
    body = user_body("ext@acme.test", externalId="00u1\x1b[31m\n")
    answer = await client.post("/Users", json=body)
    assert answer.status_code == 400
    assert answer.json()["scimType"] == "invalidValue"
    assert answer.json()["detail"].startswith("'externalId' ")
