"""RFC 7644 §3.4.2.2 filters, run by PostgreSQL through GET /Users and POST /Users/.search.

Every case asks both endpoints and requires the same answer from each. The
oracle tests at the end compare the gateway's SQL semantics with the in-memory
evaluation of scim2-models over a varied population.
"""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta, timezone
from pprint import pformat
from typing import Any

import httpx2
import pytest
from scim2_models import ScimFilter
from sqlalchemy import Engine, insert, select, text

from gateway.scim.attributes import indexed_columns
from gateway.scim.filters import user_name_equals
from gateway.scim.schema import POLICY, ScimUser, load_stored, parse_user
from models.tenants import Tenant
from models.users import User
from tests.conftest import TenantHandle, make_tenant, user_body

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
SEARCH_REQUEST = "urn:ietf:params:scim:api:messages:2.0:SearchRequest"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


# --- helpers ----------------------------------------------------------------


async def listed(client: httpx2.AsyncClient, scim_filter: str) -> list[dict[str, Any]]:
    """The users matching a filter, asked through GET and .search, which must agree."""
    got = await client.get("/Users", params={"filter": scim_filter, "count": "1000"})
    assert got.status_code == 200, (scim_filter, got.status_code, got.text)
    searched = await client.post(
        "/Users/.search",
        json={"schemas": [SEARCH_REQUEST], "filter": scim_filter, "count": 1000},
    )
    assert searched.status_code == 200, (scim_filter, searched.status_code, searched.text)
    body, search_body = got.json(), searched.json()
    assert body["totalResults"] == len(body["Resources"]), scim_filter
    assert search_body["totalResults"] == body["totalResults"], scim_filter
    assert sorted(r["id"] for r in search_body["Resources"]) == sorted(
        r["id"] for r in body["Resources"]
    ), scim_filter
    resources: list[dict[str, Any]] = body["Resources"]
    return resources


async def names(client: httpx2.AsyncClient, scim_filter: str) -> set[str]:
    return {r["userName"] for r in await listed(client, scim_filter)}


class Expectations:
    """Soft checks: every filter of a test is run and all mismatches are reported at once."""

    def __init__(self, client: httpx2.AsyncClient) -> None:
        self.client = client
        self.wrong: dict[str, dict[str, Any]] = {}

    async def __call__(self, scim_filter: str, expected: set[str]) -> None:
        got = await self.client.get("/Users", params={"filter": scim_filter, "count": "1000"})
        actual: Any
        if got.status_code != 200:
            actual = f"HTTP {got.status_code}: {got.json().get('detail', '')[:100]}"
        else:
            actual = sorted(await names(self.client, scim_filter))
        if actual != sorted(expected):
            self.wrong[scim_filter] = {"expected": sorted(expected), "actual": actual}


@asynccontextmanager
async def expecting(client: httpx2.AsyncClient) -> AsyncIterator[Expectations]:
    expect = Expectations(client)
    yield expect
    if expect.wrong:
        pytest.fail("filters answered wrongly:\n" + pformat(expect.wrong, width=100), pytrace=False)


async def assert_invalid_filter(client: httpx2.AsyncClient, scim_filter: str) -> None:
    got = await client.get("/Users", params={"filter": scim_filter})
    searched = await client.post(
        "/Users/.search", json={"schemas": [SEARCH_REQUEST], "filter": scim_filter}
    )
    for response in (got, searched):
        assert response.status_code == 400, (scim_filter[:200], response.status_code, response.text)
        assert response.headers["content-type"] == "application/scim+json"
        error = response.json()
        assert error["schemas"] == [ERROR]
        assert error["status"] == "400"
        assert error["scimType"] == "invalidFilter", (scim_filter[:200], error)
        assert isinstance(error["detail"], str)
        assert error["detail"].strip()


def quoted(value: str) -> str:
    """A filter string literal (JSON rules: quotes and backslashes escaped)."""
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


async def create(client: httpx2.AsyncClient, body: dict[str, Any]) -> dict[str, Any]:
    response = await client.post("/Users", json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


def with_enterprise(body: dict[str, Any], **values: Any) -> dict[str, Any]:
    body["schemas"] = [CORE, ENTERPRISE]
    body[ENTERPRISE] = values
    return body


ADA = "Ada.Lovelace@Example.com"
BOB = "bob@example.org"
CY = "cy@acme.test"
DI = "di@acme.test"


@pytest.fixture
async def people(client: httpx2.AsyncClient) -> dict[str, dict[str, Any]]:
    """A small, hand-made population created through the API, oldest first."""
    ada = user_body(ADA, externalId="Ext-ADA", title="Engineer")
    ada["name"] = {"givenName": "Ada", "familyName": "Lovelace"}
    ada["emails"] = [
        {"value": ADA, "type": "work", "primary": True},
        {"value": "ada@home.test", "type": "home"},
    ]
    with_enterprise(ada, department="Engineering", manager={"value": "Mgr-1"})

    bob = user_body(BOB, externalId="ext-bob", title="Manager", active=False)
    bob["name"] = {"givenName": "Bob", "familyName": "Builder"}
    with_enterprise(bob, department="Sales")

    # No title, no externalId, no enterprise extension.
    cy = user_body(CY)
    cy["name"] = {"givenName": "Cy", "familyName": "lovelace"}

    # An email with no type and one marked home, the primary being the second.
    di = user_body(DI, title="engineer")
    di["emails"] = [
        {"value": "di.other@example.com"},
        {"value": DI, "type": "home", "primary": True},
    ]

    created: dict[str, dict[str, Any]] = {}
    for key, body in (("ada", ada), ("bob", bob), ("cy", cy), ("di", di)):
        created[key] = await create(client, body)
    return created


# --- the operators ------------------------------------------------------------


@pytest.mark.parametrize(
    ("scim_filter", "expected"),
    [
        # eq / ne, case-insensitive on userName (caseExact=false)
        (f'userName eq "{BOB}"', {BOB}),
        ('userName eq "BOB@EXAMPLE.ORG"', {BOB}),
        ('userName eq "ada.lovelace@example.com"', {ADA}),
        ('userName eq "nobody@acme.test"', set()),
        (f'userName ne "{BOB}"', {ADA, CY, DI}),
        ('userName ne "BOB@example.ORG"', {ADA, CY, DI}),
        # co / sw / ew
        ('userName co "acme"', {CY, DI}),
        ('userName co "LOVELACE"', {ADA}),
        ('userName sw "ADA."', {ADA}),
        ('userName sw "example"', set()),
        ('userName ew ".TEST"', {CY, DI}),
        ('userName ew "example.com"', {ADA}),
        ('displayName co "xample"', {ADA, BOB, CY, DI}),
        # pr
        ("title pr", {ADA, BOB, DI}),
        ("externalId pr", {ADA, BOB}),
        ("userName pr", {ADA, BOB, CY, DI}),
        (f"{ENTERPRISE}:department pr", {ADA, BOB}),
        # gt ge lt le on strings (case-insensitive)
        ('userName gt "bob@example.org"', {CY, DI}),
        ('userName ge "BOB@EXAMPLE.ORG"', {BOB, CY, DI}),
        ('userName lt "bob@example.org"', {ADA}),
        ('userName le "Bob@Example.Org"', {ADA, BOB}),
        ('userName gt "C"', {CY, DI}),
        # operators and attribute names are case-insensitive
        ('USERNAME EQ "cy@acme.test"', {CY}),
        ('username Eq "cy@acme.test" OR UserName eQ "di@acme.test"', {CY, DI}),
        ("userName pr AND NOT (title PR)", {CY}),
        # sub-attributes of a complex attribute
        ('name.familyName eq "Lovelace"', {ADA, CY}),
        ('name.familyName eq "LOVELACE"', {ADA, CY}),
        ('name.givenName sw "b"', {BOB}),
        ('NAME.FAMILYNAME co "uild"', {BOB}),
        ("name.middleName pr", set()),
        ("name pr", {ADA, BOB, CY, DI}),
        # title: case-insensitive, and present on some users only
        ('title eq "ENGINEER"', {ADA, DI}),
        ('title eq "Engineer"', {ADA, DI}),
    ],
)
async def test_operators(
    client: httpx2.AsyncClient,
    people: dict[str, dict[str, Any]],
    scim_filter: str,
    expected: set[str],
) -> None:
    assert await names(client, scim_filter) == expected


@pytest.mark.parametrize(
    ("scim_filter", "expected"),
    [
        ('userName eq "cy@acme.test" and title pr', set()),
        ('userName eq "di@acme.test" and title pr', {DI}),
        ('userName eq "cy@acme.test" or userName eq "bob@example.org"', {CY, BOB}),
        ('not (userName eq "cy@acme.test")', {ADA, BOB, DI}),
        ('not(userName eq "cy@acme.test" or userName eq "di@acme.test")', {ADA, BOB}),
        # and binds tighter than or: A or (B and C)
        (f'userName eq "{ADA}" or userName eq "{BOB}" and title eq "Manager"', {ADA, BOB}),
        (f'userName eq "{ADA}" or userName eq "{BOB}" and title eq "Engineer"', {ADA}),
        (f'title eq "Manager" and userName eq "{ADA}" or userName eq "{CY}"', {CY}),
        # parentheses override it: (A or B) and C
        (f'(userName eq "{ADA}" or userName eq "{BOB}") and title eq "Manager"', {BOB}),
        (f'(userName eq "{ADA}" or userName eq "{BOB}") and title eq "Engineer"', {ADA}),
        (f'title eq "Manager" and (userName eq "{ADA}" or userName eq "{CY}")', set()),
        # redundant and nested parentheses
        (f'((userName eq "{CY}"))', {CY}),
        (f'(((userName eq "{CY}") or (userName eq "{DI}")) and (not (title pr)))', {CY}),
        (f'not (not (userName eq "{CY}"))', {CY}),
        # a longer chain mixing all three
        (
            'userName sw "a" and active eq true or userName sw "b" and active eq false '
            'or not (title pr) and name.familyName eq "LOVELACE"',
            {ADA, BOB, CY},
        ),
    ],
)
async def test_logical_operators_and_precedence(
    client: httpx2.AsyncClient,
    people: dict[str, dict[str, Any]],
    scim_filter: str,
    expected: set[str],
) -> None:
    assert await names(client, scim_filter) == expected


async def test_not_and_ne_match_users_without_the_attribute(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # Cy has no title: "title eq x" is false for Cy, so its negation is true.
        await expect('not (title eq "x")', {ADA, BOB, CY, DI})
        await expect('title ne "x"', {ADA, BOB, CY, DI})
        await expect('title ne "Engineer"', {BOB, CY})
        await expect('not (title eq "engineer")', {BOB, CY})
        await expect("not (title pr)", {CY})
        await expect('externalId ne "ext-bob"', {ADA, CY, DI})
        await expect(f'not ({ENTERPRISE}:department eq "sales")', {ADA, CY, DI})
        await expect(f'{ENTERPRISE}:department ne "Sales"', {ADA, CY, DI})
        # ...and the ordering operators do not match a missing value, nor does their negation
        # exclude it.
        await expect('title gt "a"', {ADA, BOB, DI})
        await expect('not (title gt "a")', {CY})


async def test_value_paths_and_multi_valued_attributes(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        await expect('emails[type eq "work" and value co "@example.com"]', {ADA})
        # Both conditions must hold for the SAME email: Di has a type-less @example.com
        # address and a home one, but no work one.
        await expect('emails[type eq "home" and value co "@example.com"]', set())
        await expect('emails[type eq "home" and value co "@acme.test"]', {DI})
        await expect('emails[type eq "home"]', {ADA, DI})
        await expect('emails[type eq "WORK"]', {ADA, BOB, CY})
        await expect('emails[value eq "ADA@HOME.TEST"]', {ADA})
        await expect('emails[type pr and not (type eq "work")]', {ADA, DI})
        await expect("emails[not (type pr)]", {DI})
        await expect('emails[type eq "work" or type eq "home"]', {ADA, BOB, CY, DI})
        await expect('not (emails[type eq "home"])', {BOB, CY})
        # Entra's form: emails[type eq "work"].value eq "x" reads as emails[type eq "work" and ...]
        await expect(f'emails[type eq "work"].value eq "{ADA.upper()}"', {ADA})
        await expect('emails[type eq "work"].value eq "ada@home.test"', set())
        # Without brackets, each condition may hold for a different email.
        await expect('emails.type eq "home" and emails.value co "@example.com"', {ADA, DI})
        await expect('emails.type eq "home"', {ADA, DI})
        await expect("emails.type pr", {ADA, BOB, CY, DI})
        await expect('emails.value ew "@home.test"', {ADA})
        await expect("emails pr", {ADA, BOB, CY, DI})


async def test_boolean_sub_attributes_of_multi_valued_attributes(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # emails.primary is a JSON boolean inside the stored document.
        await expect("emails[primary eq true]", {ADA, BOB, CY, DI})
        await expect('emails[primary eq true and type eq "home"]', {DI})
        await expect('emails[primary eq true and type eq "work"]', {ADA, BOB, CY})
        await expect("emails.primary eq true", {ADA, BOB, CY, DI})
        # Ada's home address and Di's type-less one have no primary: not false either.
        await expect("emails[primary eq false]", set())
        await expect("emails[not (primary eq true)]", {ADA, DI})
        await expect("emails[primary pr]", {ADA, BOB, CY, DI})


async def test_multi_valued_filters_when_a_user_has_no_emails(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # A user without emails (Okta can provision one) must not break anyone's filter.
        body = user_body("noemail@acme.test")
        del body["emails"]
        await create(client, body)
        await expect('emails[type eq "home"]', {ADA, DI})
        await expect('emails.type eq "home"', {ADA, DI})
        await expect('emails co "home.test"', {ADA})
        await expect('emails[type eq "work"].value eq "bob@example.org"', {BOB})
        await expect('not (emails[type eq "home"])', {BOB, CY, "noemail@acme.test"})
        await expect("not (emails pr)", {"noemail@acme.test"})
        await expect('emails eq "bob@example.org"', {BOB})
        # Attributes nobody has are absent from every document.
        await expect('phoneNumbers[type eq "work"]', set())
        await expect('groups eq "x"', set())
        await expect('not (addresses.locality eq "Paris")', {ADA, BOB, CY, DI, "noemail@acme.test"})


async def test_present_means_a_non_empty_value_of_that_sub_attribute(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # RFC 7644 §3.4.2.2 pr: "has a non-empty value". Names are checked at the
        # sub-attribute, not at the complex attribute holding it.
        body = user_body("eve@acme.test", title="")
        body["name"] = {"givenName": "Eve"}
        await create(client, body)
        await expect("name.familyName pr", {ADA, BOB, CY, DI})
        await expect("name.middleName pr", set())
        await expect("not (name.familyName pr)", {"eve@acme.test"})
        await expect("name.givenName pr", {ADA, BOB, CY, DI, "eve@acme.test"})
        await expect("title pr", {ADA, BOB, DI})
        await expect(f"{ENTERPRISE}:manager.value pr", {ADA})
        await expect(f"{ENTERPRISE}:manager.displayName pr", set())


async def test_emails_are_case_insensitive_and_match_any_address(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # Entra looks users up with `emails eq`: any of the addresses, any case.
        await expect(f'emails eq "{ADA.upper()}"', {ADA})
        await expect('emails eq "Ada@Home.Test"', {ADA})
        await expect('emails.value eq "DI.OTHER@EXAMPLE.COM"', {DI})
        await expect('emails eq "nobody@example.com"', set())
        await expect('emails co "HOME.TEST"', {ADA})
        await expect('emails sw "DI."', {DI})
        await expect('emails.value ew "EXAMPLE.ORG"', {BOB})
        # ne on a multi-valued attribute: no address equals the value.
        await expect('emails ne "ada@home.test"', {BOB, CY, DI})
        await expect('not (emails eq "ADA@home.test")', {BOB, CY, DI})


async def test_fully_qualified_attribute_names(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        await expect(f'{CORE}:userName eq "{BOB}"', {BOB})
        await expect(f'{CORE.upper()}:USERNAME eq "{BOB}"', {BOB})
        await expect(f'{CORE}:name.familyName eq "builder"', {BOB})
        await expect(f'{CORE}:emails[type eq "home"]', {ADA, DI})
        await expect(f"{CORE}:title pr", {ADA, BOB, DI})
        await expect(f'{ENTERPRISE}:department eq "Engineering"', {ADA})
        await expect(f'{ENTERPRISE}:department eq "SALES"', {BOB})
        await expect(f'{ENTERPRISE}:department sw "eng"', {ADA})
        await expect(f'{ENTERPRISE.lower()}:Department eq "sales"', {BOB})
        # manager.value is caseExact (RFC 7643 §4.3).
        await expect(f'{ENTERPRISE}:manager.value eq "Mgr-1"', {ADA})
        await expect(f'{ENTERPRISE}:manager.value eq "mgr-1"', set())
        await expect(f"{ENTERPRISE}:manager pr", {ADA})
        await expect(f"{CORE}:active eq true and {ENTERPRISE}:department pr", {ADA})


async def test_external_id_and_id_are_case_exact(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # RFC 7643 §3.1: id and externalId have caseExact true.
        await expect('externalId eq "Ext-ADA"', {ADA})
        await expect('externalId eq "ext-ada"', set())
        await expect('externalId eq "EXT-BOB"', set())
        await expect('externalId sw "Ext"', {ADA})
        await expect('externalId co "ADA"', {ADA})
        await expect('externalId co "ada"', set())
        await expect('externalId ne "ext-ada"', {ADA, BOB, CY, DI})

        ada_id = people["ada"]["id"]
        assert ada_id == ada_id.lower()
        await expect(f'id eq "{ada_id}"', {ADA})
        await expect(f'id ne "{ada_id}"', {BOB, CY, DI})
        await expect(f'id eq "{ada_id}" or id eq "{people["cy"]["id"]}"', {ADA, CY})
        await expect(f'id sw "{ada_id[:8]}"', {ADA})
        await expect('id eq "not-a-uuid"', set())
        await expect('id ne "not-a-uuid"', {ADA, BOB, CY, DI})


async def test_id_is_case_exact(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    async with expecting(client) as expect:
        # RFC 7643 §3.1: id is caseExact. Our ids are lower-case UUIDs, so the same
        # id in upper case is another string that names no resource.
        # (Someone whose id has a letter in it, as almost every UUID has.)
        key, some_id = next((k, p["id"]) for k, p in people.items() if p["id"] != p["id"].upper())
        await expect(f'id eq "{some_id}"', {people[key]["userName"]})
        await expect(f'id eq "{some_id.upper()}"', set())
        await expect(f'id ne "{some_id.upper()}"', {ADA, BOB, CY, DI})


async def test_booleans(client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    async with expecting(client) as expect:
        await expect("active eq false", {BOB})
        await expect("active eq true", {ADA, CY, DI})
        await expect("active ne true", {BOB})
        await expect("active ne false", {ADA, CY, DI})
        await expect("not (active eq true)", {BOB})
        await expect("active pr", {ADA, BOB, CY, DI})
        # Entra writes booleans as strings; the filter form must mean the same.
        await expect('active eq "False"', {BOB})
        await expect('active eq "false"', {BOB})
        await expect('active eq "True"', {ADA, CY, DI})
        await expect("active EQ FALSE", {BOB})
        # The literal is the keyword; the attribute of a deactivated user really is false.
        bob = await client.get(f"/Users/{people['bob']['id']}")
        assert bob.json()["active"] is False


async def test_meta_dates(client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]) -> None:
    async with expecting(client) as expect:
        created = {key: person["meta"]["created"] for key, person in people.items()}
        instants = [_instant(created[key]) for key in ("ada", "bob", "cy", "di")]
        assert instants == sorted(instants)
        assert len(set(instants)) == 4

        await expect(f'meta.created gt "{created["bob"]}"', {CY, DI})
        await expect(f'meta.created ge "{created["bob"]}"', {BOB, CY, DI})
        await expect(f'meta.created lt "{created["bob"]}"', {ADA})
        await expect(f'meta.created le "{created["bob"]}"', {ADA, BOB})
        await expect(f'meta.created eq "{created["cy"]}"', {CY})
        await expect(f'meta.created ne "{created["cy"]}"', {ADA, BOB, DI})
        await expect('meta.created gt "2000-01-01T00:00:00Z"', {ADA, BOB, CY, DI})
        await expect('meta.created lt "2000-01-01T00:00:00Z"', set())
        await expect('meta.lastModified gt "2999-01-01T00:00:00Z"', set())
        await expect("meta.created pr", {ADA, BOB, CY, DI})

        # An update moves lastModified, not created.
        patched = await client.patch(
            f"/Users/{people['ada']['id']}",
            json={"Operations": [{"op": "replace", "value": {"title": "Countess"}}]},
        )
        assert patched.status_code == 200
        modified = patched.json()["meta"]["lastModified"]
        assert _instant(modified) > _instant(created["di"])
        await expect(f'meta.lastModified gt "{created["di"]}"', {ADA})
        await expect(f'meta.lastModified ge "{modified}"', {ADA})
        await expect(f'meta.lastModified gt "{modified}"', set())
        await expect(f'meta.lastModified lt "{modified}"', {BOB, CY, DI})
        await expect(f'meta.created gt "{created["cy"]}"', {DI})
        # The same instant written in another offset.
        shifted = _instant(created["bob"]).astimezone(_offset(hours=2)).isoformat()
        await expect(f'meta.created eq "{shifted}"', {BOB})
        await expect(f'meta.created gt "{shifted}"', {CY, DI})
        await expect(
            f'meta.created ge "{created["bob"]}" and meta.created lt "{created["di"]}"', {BOB, CY}
        )


def _instant(timestamp: str) -> datetime:
    return datetime.fromisoformat(timestamp.replace("Z", "+00:00"))


def _offset(hours: int) -> timezone:
    return timezone(timedelta(hours=hours))


# --- values that look like SQL or LIKE --------------------------------------


@pytest.fixture
async def tricky(client: httpx2.AsyncClient) -> dict[str, str]:
    """Users whose names contain LIKE metacharacters, backslashes and quotes."""
    user_names = {
        "underscore": "a_b@acme.test",
        "plain": "axb@acme.test",
        "percent": "c%d@acme.test",
        "no_percent": "cxxd@acme.test",
        "backslash": "e\\f@acme.test",
        "no_backslash": "ef@acme.test",
        "quote": 'say"hi"@acme.test',
        "apostrophe": "o'neil@acme.test",
    }
    for user_name in user_names.values():
        body = user_body("placeholder@acme.test")
        body["userName"] = user_name
        body["emails"] = [{"value": f"{uuid.uuid4().hex[:8]}@mail.test", "primary": True}]
        await create(client, body)
    return user_names


async def test_like_metacharacters_are_literals(
    client: httpx2.AsyncClient, tricky: dict[str, str]
) -> None:
    async with expecting(client) as expect:
        # "_" is not "any character"...
        await expect('userName co "a_b"', {"a_b@acme.test"})
        await expect('userName sw "a_"', {"a_b@acme.test"})
        await expect('userName ew "_b@acme.test"', {"a_b@acme.test"})
        await expect('userName co "_"', {"a_b@acme.test"})
        # ..."%" is not "anything"...
        await expect('userName co "c%d"', {"c%d@acme.test"})
        await expect('userName sw "c%"', {"c%d@acme.test"})
        await expect('userName co "%"', {"c%d@acme.test"})
        await expect('userName ew "%"', set())
        # ...and a backslash is a backslash, not an escape.
        await expect(f"userName co {quoted('e' + chr(92) + 'f')}", {"e\\f@acme.test"})
        await expect(f"userName co {quoted(chr(92))}", {"e\\f@acme.test"})
        await expect(f"userName sw {quoted('e' + chr(92))}", {"e\\f@acme.test"})
        await expect(f"userName co {quoted(chr(92) + '_')}", set())
        await expect(f"userName co {quoted(chr(92) + '%')}", set())
        await expect(f"userName eq {quoted('e' + chr(92) + 'f@acme.test')}", {"e\\f@acme.test"})
        # The same holds inside a value path and on a JSONB attribute.
        await expect('emails[value co "%"]', set())
        await expect('displayName co "_"', set())


async def test_quotes_inside_values(client: httpx2.AsyncClient, tricky: dict[str, str]) -> None:
    async with expecting(client) as expect:
        await expect('userName eq "say\\"hi\\"@acme.test"', {'say"hi"@acme.test'})
        await expect('userName co "\\"hi\\""', {'say"hi"@acme.test'})
        await expect('userName sw "say\\""', {'say"hi"@acme.test'})
        await expect('userName eq "o\'neil@acme.test"', {"o'neil@acme.test"})
        await expect('userName co "\'"', {"o'neil@acme.test"})
        # JSON escapes in the literal: \u0027 is an apostrophe.
        await expect('userName eq "o\\u0027neil@acme.test"', {"o'neil@acme.test"})


USER_NAME_LOOKUPS = [
    "a_b@acme.test",
    "A_B@ACME.TEST",  # userName is caseExact=false
    "axb@acme.test",
    "c%d@acme.test",
    "o'neil@acme.test",
    "x' OR '1'='1",
    "nobody@acme.test",
    "",
    " a_b@acme.test",
    "Ada.Lovelace@example.com",
    "e\u0301@acme.test",  # decomposed é: the stored names are NFC
    "\u00e9@acme.test",
]


@pytest.mark.parametrize("user_name", USER_NAME_LOOKUPS)
async def test_the_per_user_lookup_finds_what_the_full_filter_finds(
    client: httpx2.AsyncClient, tricky: dict[str, str], people: Any, user_name: str
) -> None:
    """``userName eq "…"`` runs a statement built once (filters.user_name_equals);
    the same filter in parentheses goes through the parser and the SQL
    compiler. Both must list the same users, in the same envelope."""
    # A userName with surrounding whitespace cannot be stored (gateway/addresses.py);
    # lookups with it (USER_NAME_LOOKUPS) must still agree between the two paths.
    for name in ("\u00e9@acme.test",):
        body = user_body("placeholder@acme.test")
        body["userName"] = name
        body["emails"] = [{"value": f"{uuid.uuid4().hex[:8]}@mail.test", "primary": True}]
        assert (await client.post("/Users", json=body)).status_code == 201
    fast = f"userName eq {quoted(user_name)}"
    assert user_name_equals(fast) is not None, "the lookup must take the prebuilt statement"
    for variant in (fast, fast.upper().replace(quoted(user_name).upper(), quoted(user_name))):
        got = await client.get("/Users", params={"filter": variant})
        parsed = await client.get("/Users", params={"filter": f"({fast})"})
        assert got.status_code == parsed.status_code == 200, (got.text, parsed.text)
        assert got.json() == parsed.json(), variant


@pytest.mark.parametrize(
    "scim_filter",
    [
        'userName eq "a" or userName eq "b"',
        'userName  eq "a"',
        ' userName eq "a"',
        'userName eq "a\\"b"',
        'userName eq "a\\u0041"',
        "userName eq 'a'",
        'userName.x eq "a"',
        'userNames eq "a"',
        'userName eq "a" ',
        'userName eq "a\tb"',
    ],
)
def test_only_a_plain_user_name_equality_takes_the_prebuilt_lookup(scim_filter: str) -> None:
    assert user_name_equals(scim_filter) is None


@pytest.mark.parametrize(
    "scim_filter",
    [
        'userName eq "x\' OR 1=1 --"',
        "userName eq \"x' OR '1'='1\"",
        'userName co "\'; DROP TABLE users; --"',
        'userName eq "x\\" or userName pr or userName eq \\"y"',
        "externalId eq \"1' OR '1'='1\"",
        'emails eq "x\' OR 1=1 --"',
        'emails[value eq "\') OR TRUE --"]',
        'title sw "%\' OR 1=1 --"',
        f'{ENTERPRISE}:department eq "x\'::text OR 1=1 --"',
        'name.familyName eq "x\\\\\' OR 1=1 --"',
        'id eq "\' OR 1=1 --"',
        'meta.created gt "2000-01-01T00:00:00Z" and userName eq "$$ OR 1=1 $$"',
    ],
)
async def test_injection_shaped_values_match_nothing(
    client: httpx2.AsyncClient, tricky: dict[str, str], db: Engine, scim_filter: str
) -> None:
    assert await names(client, scim_filter) == set()
    with db.connect() as conn:
        assert conn.execute(text("SELECT count(*) FROM users")).scalar_one() == len(tricky)


async def test_filters_only_see_the_callers_tenant(
    client: httpx2.AsyncClient, app: Any, db: Engine, people: dict[str, dict[str, Any]]
) -> None:
    other: TenantHandle = make_tenant(db, "globex")
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app),
        base_url="http://localhost/scim/v2",
        headers=other.headers,
    ) as globex:
        await create(globex, user_body("cy@acme.test", title="Spy"))
        assert await names(globex, "userName pr") == {CY}
        assert await names(globex, 'userName eq "cy@acme.test" or title pr') == {CY}
        assert await names(globex, 'not (userName eq "nobody")') == {CY}
    assert await names(client, 'title eq "Spy"') == set()
    assert await names(client, 'not (title eq "Spy")') == {ADA, BOB, CY, DI}


async def test_deleted_users_are_never_matched(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    assert (await client.delete(f"/Users/{people['cy']['id']}")).status_code == 204
    assert await names(client, 'userName eq "cy@acme.test"') == set()
    assert await names(client, "not (title pr)") == set()
    assert await names(client, 'emails eq "cy@acme.test"') == set()
    assert await names(client, "userName pr") == {ADA, BOB, DI}


# --- malformed and unsupported filters ---------------------------------------


@pytest.mark.parametrize(
    "scim_filter",
    [
        'fooBar eq "x"',
        'name.fooBar eq "x"',
        f'{ENTERPRISE}:fooBar eq "x"',
        'urn:example:unknown:2.0:User:userName eq "x"',
        "userName eq",
        "userName",
        'eq "x"',
        'userName xx "x"',
        "userName eq x",
        "userName eq 'x'",
        'userName eq "unterminated',
        '(userName eq "x"',
        'userName eq "x")',
        '((userName eq "x")',
        'userName eq "x" and',
        'or userName eq "x"',
        'userName eq "x" and or title pr',
        'not userName eq "x"',
        "not ()",
        "()",
        "emails[",
        'emails[type eq "work"',
        'emails[type eq "work"]]',
        "emails[]",
        'emails[type eq "work" and emails[value pr]]',
        'emails[fooBar eq "x"]',
        "active gt true",
        "active ge false",
        "active lt true",
        "active le false",
        'active co "tr"',
        'active sw "t"',
        'active eq "maybe"',
        "emails.primary gt true",
        "emails[primary lt true]",
        'meta.created gt "not a date"',
        'meta.created eq "2024-13-45T99:00:00Z"',
        "userName eq 42",
        "userName gt true",
        'userName eq "x" userName eq "y"',
        'userName eq "x" && title pr',
        'userName eq "x" || title pr',
        'userName eq "\\x"',
        "   ",
        '"userName" eq "x"',
        'userName.familyName eq "x"',
        'emails.fooBar eq "x"',
        'password co "x"',
    ],
)
async def test_malformed_or_unsupported_filters_are_400_invalid_filter(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]], scim_filter: str
) -> None:
    await assert_invalid_filter(client, scim_filter)


async def test_a_filter_longer_than_4096_characters_is_refused(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    at_limit = 'userName eq "' + "x" * (4096 - len('userName eq ""')) + '"'
    assert len(at_limit) == 4096
    assert await names(client, at_limit) == set()

    too_long = 'userName eq "' + "x" * (4097 - len('userName eq ""')) + '"'
    assert len(too_long) == 4097
    await assert_invalid_filter(client, too_long)
    clauses = " or ".join(f'userName eq "u{i}@acme.test"' for i in range(200))
    assert len(clauses) > 4096
    await assert_invalid_filter(client, clauses)


def _alternating(depth: int) -> str:
    """A filter whose expressions really nest ``depth`` deep, matching Cy only.

    ``(userName pr and (title eq "none" or (userName pr and ...)))``: and/or
    alternate, so nothing can be flattened.
    """
    nested = f'userName eq "{CY}"'
    for level in range(depth):
        wrapper = "userName pr and" if level % 2 else 'title eq "none" or'
        nested = f"({wrapper} {nested})"
    return nested


@pytest.mark.parametrize("depth", [40, 64, 100])
async def test_deeply_nested_expressions_are_refused_not_crashed(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]], depth: int
) -> None:
    negated = "not (" * depth + f'userName eq "{CY}"' + ")" * depth
    assert len(negated) <= 4096
    await assert_invalid_filter(client, negated)
    alternating = _alternating(depth)
    assert len(alternating) <= 4096
    await assert_invalid_filter(client, alternating)
    value_path = "emails[" + "not (" * depth + 'type eq "work"' + ")" * depth + "]"
    await assert_invalid_filter(client, value_path)


@pytest.mark.parametrize("depth", [200, 500, 1000])
async def test_deeply_nested_parentheses_are_refused(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]], depth: int
) -> None:
    # Redundant parentheses nest the syntax without nesting the expression;
    # the same bound applies to both.
    nested = "(" * depth + f'userName eq "{CY}"' + ")" * depth
    assert len(nested) <= 4096
    await assert_invalid_filter(client, nested)


@pytest.mark.parametrize("depth", [1, 2, 5, 10])
async def test_reasonably_nested_parentheses_still_work(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]], depth: int
) -> None:
    nested = "(" * depth + f'userName eq "{CY}"' + ")" * depth
    assert await names(client, nested) == {CY}
    negated = "not (" * (2 * depth) + f'userName eq "{CY}"' + ")" * (2 * depth)
    assert await names(client, negated) == {CY}
    assert await names(client, _alternating(depth)) == {CY}


@pytest.mark.parametrize(
    "scim_filter",
    [
        # Grammatical filters over odd corners of the schema: each must be answered
        # (200) or refused (400 invalidFilter), never crash.
        'schemas eq "urn:ietf:params:scim:schemas:core:2.0:User"',
        "schemas pr",
        'groups eq "x"',
        'groups.value eq "x"',
        "groups pr",
        'meta.resourceType eq "User"',
        'meta.location co "Users"',
        'meta.version eq "W/\\"1\\""',
        "meta pr",
        'x509Certificates.value eq "AAAA"',
        'x509Certificates[value eq "AAAA"]',
        'phoneNumbers[type eq "work" and value co "555"]',
        'addresses[type eq "work" and postalCode sw "9"]',
        'addresses.locality eq "Paris"',
        "roles[primary eq true]",
        "entitlements pr",
        'ims.value co "x"',
        'photos[type eq "photo"]',
        'password eq "secret"',
        "password pr",
        "userName eq null",
        "title eq null",
        "title ne null",
        "emails.value eq null",
        "name.familyName gt null",
        f'{ENTERPRISE}:manager.displayName eq "x"',
        f'{ENTERPRISE}:manager.$ref eq "x"',
        f'{ENTERPRISE}:employeeNumber gt "100"',
        'userName eq "\\u0000"',
        'userName eq "\\ud800"',
        'userName eq "' + "é" * 50 + '"',
        'userName co ""',
        'userName eq ""',
        'emails eq ""',
        'emails[type eq ""]',
        'meta.lastModified gt "2024-01-01"',
        'meta.created eq "2024-01-01T00:00:00"',
        'meta.created gt "9999-12-31T23:59:59Z"',
        'meta.created gt "0001-01-01T00:00:00Z"',
        'emails.primary eq "true"',
        "active eq 1",
        "meta.created gt 5",
        # RFC 7644 lets a service support (or refuse) value selection on other attributes.
        'name[familyName eq "x"]',
        'userName[value eq "x"]',
        'userName eq "x" and (title pr or (emails[type eq "work"] and not (active eq true)))',
        'timezone eq "Europe/Paris"',
        'locale sw "fr"',
        'nickName ew "y"',
        'profileUrl eq "https://example.com/x"',
        'userType eq "Employee"',
        'preferredLanguage eq "fr-FR"',
    ],
)
async def test_odd_but_grammatical_filters_never_5xx(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]], scim_filter: str
) -> None:
    for response in (
        await client.get("/Users", params={"filter": scim_filter}),
        await client.post("/Users/.search", json={"filter": scim_filter}),
    ):
        assert response.status_code in (200, 400), (response.status_code, response.text)
        body = response.json()
        if response.status_code == 400:
            assert body["scimType"] == "invalidFilter", body
            assert body["detail"].strip()
        else:
            assert body["totalResults"] == len(body["Resources"])


async def test_filter_must_be_a_string_in_a_search_request(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    for bad in (42, True, ["userName pr"], {"userName": "x"}):
        response = await client.post("/Users/.search", json={"filter": bad})
        assert response.status_code == 400, (bad, response.text)
        assert response.json()["scimType"] == "invalidFilter"
        assert response.json()["detail"].strip()


async def test_empty_or_absent_filter_lists_everyone(
    client: httpx2.AsyncClient, people: dict[str, dict[str, Any]]
) -> None:
    everyone = {ADA, BOB, CY, DI}
    for response in (
        await client.get("/Users"),
        await client.get("/Users", params={"filter": ""}),
        await client.post("/Users/.search", json={}),
        await client.post("/Users/.search", json={"filter": None}),
    ):
        assert response.status_code == 200, response.text
        assert {r["userName"] for r in response.json()["Resources"]} == everyone


# --- the oracle: SQL semantics against scim2-models' in-memory evaluation ----------

T0 = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)


def _population() -> list[dict[str, Any]]:
    """~30 varied users, as create bodies."""
    bodies: list[dict[str, Any]] = []

    def add(user_name: str, **extra: Any) -> dict[str, Any]:
        body = user_body("someone@acme.test")
        body["userName"] = user_name
        body["emails"] = [{"value": f"{len(bodies)}.{user_name.split('@')[0]}@acme.test"}]
        body["emails"][0].update({"type": "work", "primary": True})
        body["displayName"] = f"User {len(bodies)}"
        enterprise = extra.pop("enterprise", None)
        for key, value in extra.items():
            if value is None:
                body.pop(key, None)
            else:
                body[key] = value
        if enterprise is not None:
            body["schemas"] = [CORE, ENTERPRISE]
            body[ENTERPRISE] = enterprise
        bodies.append(body)
        return body

    add(
        "Alice@Example.com",
        externalId="A-1",
        title="Engineer",
        name={"givenName": "Alice", "familyName": "Anders"},
        enterprise={"department": "Engineering", "manager": {"value": "M-9"}},
    )
    add(
        "alfred@example.com",
        externalId="a-1",
        title="engineer",
        name={"givenName": "Alfred", "familyName": "anders"},
    )
    add(
        "bert@example.org",
        externalId="B-2",
        active=False,
        name={"givenName": "Bert", "familyName": "Berg"},
        enterprise={"department": "Sales"},
    )
    add(
        "Carla@acme.test",
        title="Sales Lead",
        emails=[
            {"value": "carla@home.test", "type": "home"},
            {"value": "Carla@Acme.Test", "type": "work", "primary": True},
        ],
        enterprise={"department": "sales", "employeeNumber": "0042"},
    )
    add("dan@acme.test", title=None, name={"givenName": "Dan"}, active=False)
    add("eve@acme.test", title="CTO", emails=None, name=None, displayName=None)
    add(
        "frank@acme.test",
        externalId="F_1",
        emails=[
            {"value": "frank@acme.test", "type": "work"},
            {"value": "frank@other.test", "type": "other"},
            {"value": "f@example.com"},
        ],
    )
    add("a_b@acme.test", title="a_b")
    add("axb@acme.test", title="axb")
    add("c%d@acme.test", title="100%")
    add("cxxd@acme.test", title="100x")
    add("e\\f@acme.test", title="back\\slash")
    add("ef@acme.test", title="backslash")
    add('say"hi"@acme.test', title='"quoted"')
    add("o'neil@acme.test", title="it's")
    add("ÉMILE@acme.test", name={"givenName": "Émile", "familyName": "Zola"})
    add(
        "zed@acme.test",
        externalId="Z",
        title="zz",
        enterprise={"manager": {"value": "m-9"}, "division": "North"},
    )
    add("ZOE@ACME.TEST", externalId="z", title="ZZ", active=False)
    add("mallory@evil.test", title="x' OR 1=1 --")
    add("nina@acme.test", emails=[{"value": "nina@acme.test", "type": "home", "primary": True}])
    add("oscar@acme.test", emails=[{"value": "oscar@acme.test"}], title="Engineer II")
    add(
        "peggy@acme.test",
        userType="Contractor",
        title="Engineer",
        enterprise={"department": "Engineering", "costCenter": "CC-1"},
    )
    add("quinn@acme.test", nickName="Q", locale="fr-FR", preferredLanguage="fr")
    add(
        "rob@acme.test",
        phoneNumbers=[{"value": "555-0100", "type": "work"}],
        addresses=[{"type": "work", "locality": "Paris", "postalCode": "75001"}],
    )
    add("sybil@acme.test", title="", name={"givenName": "Sybil", "familyName": ""})
    add("trent@acme.test", title="Engineer", active=False, enterprise={"department": "Engineering"})
    add("uma@acme.test", title="engineering manager", externalId="UMA")
    add(
        "victor@acme.test",
        roles=[{"value": "admin", "primary": True}],
        emails=[
            {"value": "victor@acme.test", "type": "work", "primary": False},
            {"value": "VICTOR@HOME.TEST", "type": "home", "primary": True},
        ],
    )
    add("walter@acme.test", externalId="w-1", title="Intern")
    add("yvonne@acme.test", title="Engineer", name={"familyName": "Young"})
    return bodies


@pytest.fixture
async def population(
    client: httpx2.AsyncClient, db: Engine, tenant: TenantHandle
) -> list[dict[str, Any]]:
    """The population stored as the gateway stores it, with spread-out timestamps.

    Documents go through parse_user and indexed_columns (what POST does), then one
    INSERT, so that created/lastModified can be days apart. Returns the users as
    GET /Users renders them.
    """
    with db.begin() as conn:
        tenant_id = conn.execute(select(Tenant.id).where(Tenant.slug == tenant.slug)).scalar_one()
        rows = []
        for i, body in enumerate(_population()):
            document = parse_user(body).document
            created = T0 + timedelta(days=i)
            rows.append(
                {
                    **indexed_columns(document),
                    "id": uuid.uuid4(),
                    "scim_id": uuid.uuid4(),
                    "tenant_id": tenant_id,
                    "attributes": document,
                    "source": "okta",
                    "created_at": created,
                    "updated_at": created + timedelta(hours=(i * 7) % 50),
                }
            )
        conn.execute(insert(User.__table__), rows)
    response = await client.get("/Users", params={"count": "1000"})
    assert response.status_code == 200
    resources: list[dict[str, Any]] = response.json()["Resources"]
    assert len(resources) == len(rows)
    return resources


ORACLE_FILTERS = [
    'userName eq "alice@example.com"',
    'userName eq "ZOE@acme.test"',
    'userName ne "alice@example.com"',
    'userName co "A"',
    'userName sw "a"',
    'userName ew "EXAMPLE.COM"',
    'userName gt "m"',
    'userName ge "mallory@evil.test"',
    'userName lt "C"',
    'userName le "carla@acme.test"',
    'userName co "_"',
    'userName co "%"',
    'userName co "\\\\"',
    'userName co "\\""',
    'userName co "\'"',
    'userName sw "é"',
    'userName eq "émile@acme.test"',
    'externalId eq "A-1"',
    'externalId eq "a-1"',
    'externalId ne "A-1"',
    'externalId co "_"',
    'externalId sw "z"',
    'externalId gt "Z"',
    'externalId lt "a"',
    "externalId pr",
    "not (externalId pr)",
    'title eq "engineer"',
    'title ne "Engineer"',
    'not (title eq "Engineer")',
    'title co "engineer"',
    'title sw "100"',
    'title ew "%"',
    'title co "\\\\"',
    'title co "\'"',
    'title eq "x\' OR 1=1 --"',
    "title pr",
    "not (title pr)",
    'title gt "e"',
    'not (title lt "m")',
    "title eq null",
    "title ne null",
    'name.familyName eq "ANDERS"',
    'name.familyName gt "b"',
    "name.familyName pr",
    "name.givenName pr and not (name.familyName pr)",
    "name pr",
    "not (name pr)",
    'displayName co "1"',
    "displayName pr",
    'emails eq "CARLA@HOME.TEST"',
    'emails eq "f@example.com"',
    'emails ne "frank@acme.test"',
    'emails co "HOME"',
    'emails.value sw "victor"',
    'emails.value ew "@home.test"',
    'emails.type eq "home"',
    'emails.type ne "work"',
    "emails.type pr",
    "emails.primary eq true",
    "emails.primary eq false",
    "emails pr",
    "not (emails pr)",
    'emails[type eq "work" and value co "acme"]',
    'emails[type eq "work" and primary eq true]',
    'emails[type eq "home" and primary eq true]',
    "emails[primary eq false]",
    "emails[not (type pr)]",
    'emails[type eq "work" or type eq "other"]',
    'emails[value ew "example.com"]',
    'not (emails[type eq "work"])',
    'emails[type eq "home"].value co "home"',
    "active eq true",
    "active eq false",
    "active ne true",
    'active eq "False"',
    "not (active eq false)",
    'meta.created gt "2024-03-10T12:00:00Z"',
    'meta.created ge "2024-03-10T12:00:00Z"',
    'meta.created lt "2024-03-05T00:00:00Z"',
    'meta.created le "2024-03-05T12:00:00Z"',
    'meta.created eq "2024-03-05T12:00:00Z"',
    'meta.created eq "2024-03-05T13:00:00+01:00"',
    'meta.lastModified gt "2024-03-15T00:00:00Z"',
    'meta.lastModified lt "2024-03-03T00:00:00Z"',
    'meta.lastModified ge "2024-03-10T12:00:00Z" and meta.created lt "2024-03-10T12:00:00Z"',
    f'{CORE}:userName sw "z"',
    f'{CORE}:name.familyName eq "zola"',
    f'{ENTERPRISE}:department eq "SALES"',
    f'{ENTERPRISE}:department ne "Sales"',
    f"{ENTERPRISE}:department pr",
    f'{ENTERPRISE}:department co "ing"',
    f'{ENTERPRISE}:manager.value eq "M-9"',
    f'{ENTERPRISE}:manager.value eq "m-9"',
    f"{ENTERPRISE}:manager pr",
    f'{ENTERPRISE}:employeeNumber eq "0042"',
    f"{ENTERPRISE}:costCenter pr or {ENTERPRISE}:division pr",
    'userType eq "contractor"',
    'nickName eq "q"',
    'locale sw "FR"',
    'phoneNumbers[type eq "work" and value co "555"]',
    'addresses[type eq "work" and postalCode sw "75"]',
    "addresses.locality pr",
    "roles[primary eq true]",
    'roles.value eq "ADMIN"',
    # combinations and precedence
    'title eq "Engineer" and active eq true',
    'title eq "Engineer" or active eq false and userName sw "z"',
    '(title eq "Engineer" or active eq false) and userName sw "z"',
    'not (title eq "Engineer" or active eq false)',
    'not (title eq "Engineer") and not (active eq false)',
    'userName sw "a" or userName sw "b" or userName sw "c" and active eq true',
    '(userName sw "a" or userName sw "b") and not (externalId pr)',
    'emails[type eq "home"] or (title pr and not (title eq "engineer"))',
    'not (not (userName ew ".test") or title pr)',
    'externalId eq "A-1" or externalId eq "a-1" or externalId eq "UMA"',
]


@pytest.mark.parametrize("scim_filter", ORACLE_FILTERS)
async def test_sql_agrees_with_the_in_memory_reference(
    client: httpx2.AsyncClient, population: list[dict[str, Any]], scim_filter: str
) -> None:
    with POLICY:
        reference = ScimFilter[ScimUser](scim_filter)
        expected = {r["userName"] for r in population if reference.match(load_stored(r))}
    actual = {r["userName"] for r in await listed(client, scim_filter)}
    assert actual == expected, {
        "filter": scim_filter,
        "missing (reference matches, gateway does not)": sorted(expected - actual),
        "extra (gateway matches, reference does not)": sorted(actual - expected),
    }


async def test_the_oracle_population_is_varied(population: list[dict[str, Any]]) -> None:
    # Guards the oracle against a population where every filter trivially agrees.
    assert len(population) == 30
    assert len({r["meta"]["created"] for r in population}) == 30
    assert any("emails" not in r for r in population)
    assert any(len(r.get("emails", [])) > 1 for r in population)
    assert any(r["active"] is False for r in population)
    assert any(ENTERPRISE in r for r in population)
    assert any("title" not in r for r in population)
