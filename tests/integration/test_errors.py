"""RFC 7644 §3.12 error bodies for everything that can go wrong at the HTTP layer."""

from __future__ import annotations

from typing import Any

import httpx2
import pytest
from sqlalchemy import Engine, text

from tests.conftest import TenantHandle, user_body

ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


def assert_scim_error(response: httpx2.Response, status: int, scim_type: str | None = None) -> None:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/scim+json"
    body = response.json()
    assert body["schemas"] == [ERROR]
    assert body["status"] == str(status)
    assert body.get("scimType") == scim_type
    assert body["detail"] and "Traceback" not in body["detail"]


def unhandled(caplog: pytest.LogCaptureFixture) -> list[str]:
    """The "unhandled error" log lines (one per failure: the soak test counts them)."""
    return [r.getMessage() for r in caplog.records if r.getMessage().startswith("unhandled error")]


async def test_unknown_paths_and_methods_get_scim_errors(client: httpx2.AsyncClient) -> None:
    assert_scim_error(await client.get("/Nope"), 404)
    assert_scim_error(await client.delete("/Users"), 405)
    assert_scim_error(await client.put("/ServiceProviderConfig", json={}), 405)


async def test_paths_outside_scim_get_scim_404(anonymous: httpx2.AsyncClient) -> None:
    assert_scim_error(await anonymous.get("http://localhost/nowhere"), 404)


@pytest.mark.parametrize(
    ("content", "content_type", "status", "scim_type"),
    [
        (b"{not json", "application/scim+json", 400, "invalidSyntax"),
        (b"\xff\xfe\x00garbage", "application/scim+json", 400, "invalidSyntax"),
        (b"[1, 2]", "application/scim+json", 400, "invalidSyntax"),
        (b'"a string"', "application/json", 400, "invalidSyntax"),
        (b'{"userName": "x@y.z"}', "text/plain", 415, None),
        (b'{"userName": "x@y.z"}', None, 415, None),
    ],
)
async def test_malformed_bodies_are_4xx_and_write_nothing(
    client: httpx2.AsyncClient,
    db: Engine,
    content: bytes,
    content_type: str | None,
    status: int,
    scim_type: str | None,
) -> None:
    headers = {"Content-Type": content_type} if content_type else {"Content-Type": ""}
    response = await client.post("/Users", content=content, headers=headers)
    assert_scim_error(response, status, scim_type)
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


async def test_a_nul_character_anywhere_in_the_body_is_invalid_value(
    client: httpx2.AsyncClient, db: Engine
) -> None:
    # JSON allows \u0000, PostgreSQL cannot store it: a 400, not a 500.
    for body in (
        user_body("nul\u0000@acme.test"),
        user_body("nul@acme.test", name={"givenName": "N\u0000"}),
        user_body("nul@acme.test", **{"mail\u0000Nickname": "x"}),
    ):
        assert_scim_error(await client.post("/Users", json=body), 400, "invalidValue")
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


async def test_application_json_is_accepted_as_well_as_scim_json(
    client: httpx2.AsyncClient,
) -> None:
    response = await client.post(
        "/Users", json=user_body("js@acme.test"), headers={"Content-Type": "application/json"}
    )
    assert response.status_code == 201
    assert response.headers["content-type"] == "application/scim+json"


async def test_a_body_over_the_limit_is_413(client: httpx2.AsyncClient) -> None:
    huge = user_body("big@acme.test", title="x" * 2_000_000)
    assert_scim_error(await client.post("/Users", json=huge), 413)


@pytest.mark.parametrize(
    ("operations", "scim_type"),
    [
        ([], "invalidSyntax"),
        ([{"op": "replace", "path": "id", "value": "mine"}], "mutability"),
        (
            [{"op": "replace", "path": "meta.created", "value": "2020-01-01T00:00:00Z"}],
            "mutability",
        ),
        ([{"op": "replace", "path": "userName", "value": None}], "mutability"),
        ([{"op": "replace", "path": "active", "value": "perhaps"}], "invalidValue"),
        ([{"op": "replace", "path": 'emails[type eq "home"', "value": "x"}], "invalidPath"),
        ([{"op": "launch", "path": "title", "value": "x"}], "invalidSyntax"),
        ([{"op": "remove"}], "noTarget"),
        (["not an object"], "invalidSyntax"),
    ],
)
async def test_bad_patches_are_400_with_the_right_scim_type_and_change_nothing(
    client: httpx2.AsyncClient, operations: list[object], scim_type: str
) -> None:
    created = (await client.post("/Users", json=user_body("pt@acme.test"))).json()

    response = await client.patch(f"/Users/{created['id']}", json={"Operations": operations})

    assert_scim_error(response, 400, scim_type)
    after = (await client.get(f"/Users/{created['id']}")).json()
    assert after == created


async def test_a_patch_is_atomic(client: httpx2.AsyncClient) -> None:
    created = (await client.post("/Users", json=user_body("at@acme.test"))).json()
    operations = [
        {"op": "replace", "path": "title", "value": "Changed"},
        {"op": "replace", "path": "id", "value": "not allowed"},
    ]
    response = await client.patch(f"/Users/{created['id']}", json={"Operations": operations})
    assert response.status_code == 400
    assert (await client.get(f"/Users/{created['id']}")).json() == created


async def test_a_patch_emptying_username_is_invalid_value(client: httpx2.AsyncClient) -> None:
    created = (await client.post("/Users", json=user_body("un@acme.test"))).json()
    operations = [{"op": "replace", "path": "userName", "value": ""}]
    response = await client.patch(f"/Users/{created['id']}", json={"Operations": operations})
    assert_scim_error(response, 400, "invalidValue")


async def test_patch_into_another_users_identity_is_409(client: httpx2.AsyncClient) -> None:
    await client.post("/Users", json=user_body("one@acme.test"))
    two = (await client.post("/Users", json=user_body("two@acme.test"))).json()
    operations = [{"op": "replace", "path": "userName", "value": "ONE@acme.test"}]
    response = await client.patch(f"/Users/{two['id']}", json={"Operations": operations})
    assert_scim_error(response, 409, "uniqueness")
    assert "userName" in response.json()["detail"]


async def test_an_unexpected_error_is_a_generic_500_with_the_request_id(
    app: object,
    tenant: TenantHandle,
    monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    from gateway.scim import listing

    def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(listing, "compile_filter", explode)
    # Starlette re-raises after rendering the 500; read the response instead.
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)  # type: ignore[arg-type]
    async with httpx2.AsyncClient(
        transport=transport, base_url="http://localhost/scim/v2", headers=tenant.headers
    ) as client:
        response = await client.get("/Users", params={"filter": 'displayName eq "x"'})

    assert_scim_error(response, 500)
    assert "secret internals" not in response.text
    assert response.headers["x-request-id"] in response.json()["detail"]
    assert any("secret internals" in str(r.exc_info) for r in caplog.records if r.exc_info)
    # Answered and logged once, though Starlette raises it on through the gateway.
    request_id = response.headers["x-request-id"]
    assert response.headers.get_list("x-request-id") == [request_id]
    assert unhandled(caplog) == [f"unhandled error request_id={request_id}"]


async def test_a_value_postgresql_refuses_is_400_not_500(
    client: httpx2.AsyncClient, monkeypatch: pytest.MonkeyPatch
) -> None:
    # The safety net behind the explicit checks: if a value ever reaches the
    # database and is refused there, the IdP still gets a SCIM 400.
    from gateway.scim import http

    monkeypatch.setattr(http, "_shape_problem", lambda value, **options: None)
    response = await client.post("/Users", json=user_body("nul\u0000@acme.test"))
    assert_scim_error(response, 400, "invalidValue")


@pytest.mark.parametrize(
    "params",
    [
        {"sortBy": "userName pr or userName"},
        {"sortBy": 'userName eq "a" and active'},
        {"filter": "active eq null"},
        {"startIndex": "99999999999999999999"},
        {"count": "99999999999999999999"},
        {"startIndex": "99999999999999999999", "filter": 'userName eq "x"'},
    ],
)
async def test_odd_query_parameters_are_4xx_or_clamped_never_500(
    client: httpx2.AsyncClient, params: dict[str, str]
) -> None:
    response = await client.get("/Users", params=params)
    assert response.status_code in (200, 400), response.text
    if response.status_code == 400:
        assert response.json()["scimType"] in ("invalidValue", "invalidFilter")
    else:
        assert response.json()["startIndex"] <= 2**31


@pytest.mark.parametrize("field", ["userName", "externalId", "email"])
async def test_values_too_long_to_index_are_400_not_503(
    client: httpx2.AsyncClient, field: str
) -> None:
    import secrets

    long_value = secrets.token_hex(3000)  # random: PostgreSQL cannot compress it below the limit
    body = user_body("long@acme.test")
    if field == "email":
        body["emails"] = [{"value": f"{long_value}@acme.test", "type": "work", "primary": True}]
    else:
        body[field] = long_value
    assert_scim_error(await client.post("/Users", json=body), 400, "invalidValue")


@pytest.mark.parametrize(
    "body",
    [
        user_body("sb@acme.test", active="yes"),
        user_body("sb@acme.test", active=1),
        user_body("sb@acme.test", emails=[{"value": "@", "type": "work"}]),
        user_body("sb@acme.test", emails=[{"value": "a@@b", "type": "work"}]),
    ],
)
async def test_lax_coercions_are_refused(
    client: httpx2.AsyncClient, body: dict[str, object]
) -> None:
    assert_scim_error(await client.post("/Users", json=body), 400, "invalidValue")


@pytest.mark.parametrize("value", [True, "True", "False", "true", "false"])
async def test_booleans_and_entras_string_booleans_are_accepted(
    client: httpx2.AsyncClient, value: object
) -> None:
    assert (
        await client.post("/Users", json=user_body("ok@acme.test", active=value))
    ).status_code == 201


@pytest.mark.parametrize("text", ["active eq 1", 'active eq "yes"', "meta.created gt 5"])
async def test_filter_literals_of_the_wrong_type_are_invalid_filter(
    client: httpx2.AsyncClient, text: str
) -> None:
    assert_scim_error(await client.get("/Users", params={"filter": text}), 400, "invalidFilter")


@pytest.mark.parametrize("depth", [33, 500, 999, 1023])
@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("POST", "/Users"),
        ("PUT", "/Users/00000000-0000-0000-0000-000000000000"),
        ("PATCH", "/Users/00000000-0000-0000-0000-000000000000"),
        ("POST", "/Users/.search"),
        ("POST", "/Bulk"),
    ],
)
async def test_absurdly_nested_bodies_are_400_not_500(
    client: httpx2.AsyncClient, db: Engine, method: str, path: str, depth: int
) -> None:
    """Nesting that Python would have to recurse through (a RecursionError, a 500,
    before this was checked) is refused as soon as the body is parsed."""
    nested = "[" * depth + "]" * depth
    body = '{"schemas": ["urn:ietf:params:scim:schemas:core:2.0:User"], '
    body += f'"userName": "deep@acme.test", "x": {nested}}}'
    answer = await client.request(method, path, content=body)
    assert_scim_error(answer, 400, "invalidSyntax")
    assert "levels" in answer.json()["detail"]
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == 0


async def test_a_body_nested_as_deep_as_scim_goes_is_accepted(client: httpx2.AsyncClient) -> None:
    patch = {
        "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
        "Operations": [
            {"op": "add", "value": {"emails": [{"value": "deep@acme.test", "type": "work"}]}}
        ],
    }
    created = await client.post("/Users", json=user_body("deep@acme.test"))
    assert created.status_code == 201
    assert (await client.patch(f"/Users/{created.json()['id']}", json=patch)).status_code == 200


@pytest.mark.parametrize("sqlstate", ["40P01", "40001"])  # deadlock, serialization failure
async def test_a_write_rolled_back_by_a_deadlock_is_503_to_retry_not_500(
    client: httpx2.AsyncClient, db: Engine, sqlstate: str
) -> None:
    # PostgreSQL picks one transaction of a deadlock (or a serialization
    # conflict) and rolls it back; running it again succeeds. A real error
    # from PostgreSQL, raised by a trigger for one userName only.
    with db.begin() as conn:
        conn.execute(
            text(
                "CREATE FUNCTION roll_back_one() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN "
                "IF NEW.user_name = 'victim@acme.test' THEN "
                f"RAISE EXCEPTION 'chosen as the deadlock victim' USING ERRCODE = '{sqlstate}'; "
                "END IF; RETURN NEW; END $$"
            )
        )
        conn.execute(
            text(
                "CREATE TRIGGER roll_back_one BEFORE INSERT ON users "
                "FOR EACH ROW EXECUTE FUNCTION roll_back_one()"
            )
        )
    try:
        response = await client.post("/Users", json=user_body("victim@acme.test"))
        assert_scim_error(response, 503)
        assert response.headers["retry-after"] == "5"
        assert (
            await client.post("/Users", json=user_body("bystander@acme.test"))
        ).status_code == 201
    finally:
        with db.begin() as conn:
            conn.execute(text("DROP TRIGGER roll_back_one ON users"))
            conn.execute(text("DROP FUNCTION roll_back_one()"))
    with db.connect() as conn:
        names = conn.execute(text("SELECT user_name FROM users")).scalars().all()
    assert names == ["bystander@acme.test"]


# --- Which app answers: the SCIM API, the admin pages, or neither ------------------

HTML = "text/html,application/xhtml+xml,*/*;q=0.8"


def raw_client(app: Any, **kwargs: Any) -> httpx2.AsyncClient:
    """An unhandled error is the 500 a real server answers, not an exception here."""
    transport = httpx2.ASGITransport(app=app, raise_app_exceptions=False)
    return httpx2.AsyncClient(transport=transport, base_url="http://localhost", **kwargs)


async def test_the_scim_api_answers_scim_json_even_to_a_browser(
    anonymous: httpx2.AsyncClient, tenant: TenantHandle
) -> None:
    browser = {"Accept": HTML}
    nowhere = await anonymous.get("/Nope", headers={**browser, **tenant.headers})
    assert_scim_error(nowhere, 404)
    assert "/scim/v2/Nope" in nowhere.json()["detail"]
    assert "content-security-policy" not in nowhere.headers
    wrong_method = await anonymous.delete("/Users", headers={**browser, **tenant.headers})
    assert_scim_error(wrong_method, 405)
    assert "GET" in wrong_method.headers["allow"]
    assert_scim_error(await anonymous.get("/Users", headers=browser), 401)
    # The public OpenAPI description is the SCIM API's too.
    described = await anonymous.get("/openapi.json", headers=browser)
    assert described.status_code == 200
    assert "content-security-policy" not in described.headers


async def test_the_admin_pages_answer_pages_whatever_the_client_accepts(app: object) -> None:
    async with raw_client(app, headers={"Accept": "application/scim+json"}) as http:
        for path in ("/staff/x/y", "/settings/nope", "/static/nope.css"):
            missing = await http.get(path)
            assert missing.status_code == 404, path
            assert missing.headers["content-type"].startswith("text/html"), path
            assert "Page not found" in missing.text
            assert "content-security-policy" in missing.headers
        wrong_method = await http.get("/logout")
        assert wrong_method.status_code == 405
        assert wrong_method.headers["content-type"].startswith("text/html")
        assert "Request refused" in wrong_method.text


async def test_outside_both_apps_the_accept_header_decides(app: object) -> None:
    async with raw_client(app) as http:
        idp = await http.get("/nowhere")
        assert_scim_error(idp, 404)
        assert "There is no SCIM endpoint at /nowhere" in idp.json()["detail"]
        assert_scim_error(await http.post("/healthz"), 405)

        page = await http.get("/nowhere", headers={"Accept": HTML})
        assert page.status_code == 404
        assert page.headers["content-type"].startswith("text/html")
        assert "Page not found" in page.text
        assert "content-security-policy" in page.headers
        refused = await http.post("/healthz", headers={"Accept": HTML})
        assert refused.status_code == 405
        assert refused.headers["content-type"].startswith("text/html")

        # Redirected to the spelling that has a route, as before.
        for path, target in (
            ("/scim/v2", "/scim/v2/"),
            ("/staff/", "/staff"),
            ("/healthz/", "/healthz"),
        ):
            moved = await http.get(path)
            assert moved.status_code == 307, path
            assert moved.headers["location"] == f"http://localhost{target}"


async def test_an_unexpected_error_on_an_admin_page_is_a_page_logged_once(
    app: object, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    from gateway.admin import sessions

    async def explode(*args: object, **kwargs: object) -> None:
        raise RuntimeError("secret internals")

    monkeypatch.setattr(sessions, "current", explode)
    async with raw_client(app, headers={"Accept": "application/json"}) as http:
        response = await http.get("/login")
    assert response.status_code == 500
    assert response.headers["content-type"].startswith("text/html")
    assert "Something went wrong" in response.text
    assert "secret internals" not in response.text
    request_id = response.headers["x-request-id"]
    assert response.headers.get_list("x-request-id") == [request_id]
    assert request_id in response.text
    assert unhandled(caplog) == [f"unhandled error request_id={request_id}"]
