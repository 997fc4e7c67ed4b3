"""Every filterable attribute with every filter operator, on /Users and /Groups.

Each filter must be answered (200) when RFC 7644 §3.4.2.2 lets the operator
apply to the attribute's type, and refused with 400 ``invalidFilter`` otherwise,
with a detail naming the attribute, the operator and the operators the
attribute does take. Nothing may be a 5xx (security review, item 9:
``meta.created sw "…"`` was a 500 ``timestamp with time zone ~~ text``).

Which attributes a filter accepts comes from the code (the lists the compilers
use); their types come from discovery (/Schemas) and, for the common attributes
/Schemas does not list, from RFC 7643 §3.1. Which operator applies to which type
is written below from the RFC, independently of the gateway's own table.
"""

from __future__ import annotations

import asyncio
import re
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

from gateway.scim import resources
from tests.conftest import user_body

ENTERPRISE = "urn:ietf:params:scim:schemas:extension:enterprise:2.0:User"
CORE = "urn:ietf:params:scim:schemas:core:2.0:User"
GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"

OPERATORS = ("eq", "ne", "co", "sw", "ew", "gt", "ge", "lt", "le", "pr")
ORDERED = frozenset({"eq", "ne", "gt", "ge", "lt", "le", "pr"})
# RFC 7644 §3.4.2.2: co/sw/ew are string operators; gt/ge/lt/le order strings
# and dates, and "Boolean and Binary attributes SHALL cause a failed response
# (HTTP status code 400) with a 'scimType' of 'invalidFilter'"; a complex
# attribute can only be present. pr applies to everything.
APPLICABLE = {
    "string": frozenset(OPERATORS),
    "reference": frozenset(OPERATORS),
    "dateTime": ORDERED,
    "integer": ORDERED,
    "decimal": ORDERED,
    "boolean": frozenset({"eq", "ne", "pr"}),
    "binary": frozenset({"eq", "ne", "pr"}),
    "complex": frozenset({"pr"}),
}
# RFC 7643 §4.1.1: a write-only attribute (password) is only tested for equality.
WRITE_ONLY = frozenset({"eq", "ne", "pr"})
# RFC 7643 §3.1: the common attributes, which /Schemas does not list.
COMMON_TYPES = {
    "id": "string",
    "externalid": "string",
    "meta.created": "dateTime",
    "meta.lastmodified": "dateTime",
    "meta.resourcetype": "string",
    "meta.location": "reference",
    "meta.version": "string",
}
# A value of the attribute's type, for the operand.
VALUES = {
    "dateTime": '"2020-01-01T00:00:00Z"',
    "boolean": "true",
    "binary": '"QUJD"',
    "reference": '"https://example.com/x"',
    "integer": "1",
    "decimal": "1.5",
}


@dataclass(frozen=True)
class Attribute:
    """An attribute path as a filter names it, with what the RFC says of it."""

    path: str  # as written in the filter, e.g. "emails.value" or "emails[value …]"
    name: str  # the dotted name the detail must mention, e.g. "emails.value"
    type: str  # RFC 7643 §2.3 type of what a comparison compares
    write_only: bool
    filterable: bool  # listed by the compiler of its resource type

    def filter(self, op: str) -> str:
        value = "" if op == "pr" else " " + VALUES.get(self.type, '"x"')
        clause = f"{self.leaf} {op}{value}"
        return f"{self.head}[{clause}]" if self.head else clause

    @property
    def head(self) -> str:
        return self.path.split("[", 1)[0] if "[" in self.path else ""

    @property
    def leaf(self) -> str:
        return self.path.split("[", 1)[1].rstrip("]") if "[" in self.path else self.path

    @property
    def applicable(self) -> frozenset[str]:
        """The operators RFC 7644 §3.4.2.2 (and RFC 7643 §4.1.1) let apply."""
        return WRITE_ONLY if self.write_only else APPLICABLE[self.type]


async def advertised(client: httpx2.AsyncClient, resource: str) -> list[dict[str, Any]]:
    """The schema attributes /Schemas advertises for a resource type, each with
    its ``path`` (extension attributes fully qualified)."""
    resource_type = (await client.get(f"/ResourceTypes/{resource}")).json()
    urns = [resource_type["schema"]] + [
        extension["schema"] for extension in resource_type.get("schemaExtensions", [])
    ]
    found = []
    for urn in urns:
        schema = await client.get(f"/Schemas/{urn}")
        assert schema.status_code == 200, schema.text
        prefix = "" if urn == resource_type["schema"] else f"{urn}:"
        for attribute in schema.json()["attributes"]:
            found.append({**attribute, "path": prefix + attribute["name"]})
    return found


async def attributes(client: httpx2.AsyncClient, resource: str) -> list[Attribute]:
    """Every filterable attribute (from the code) and every advertised one (from
    /Schemas), dotted and, for multi-valued complex attributes, as value filters."""
    listed = (resources.USER if resource == "User" else resources.GROUP).filter_attributes
    filterable = {path.lower() for path in listed}
    result: dict[str, Attribute] = {}

    def add(path: str, name: str, type_: str, write_only: bool) -> None:
        result[path.lower()] = Attribute(
            path, name, type_, write_only, filterable=name.lower() in filterable
        )

    for attribute in await advertised(client, resource):
        path, subs = attribute["path"], attribute.get("subAttributes") or []
        write_only = attribute.get("mutability") == "writeOnly"
        type_ = attribute["type"]
        value = next((sub for sub in subs if sub["name"] == "value"), None)
        if type_ == "complex" and attribute["multiValued"] and value is not None:
            # RFC 7644 §3.4.2.2: `emails co "x"` compares emails.value.
            type_ = value["type"]
        add(path, path, type_, write_only)
        for sub in subs:
            dotted = f"{path}.{sub['name']}"
            sub_write_only = write_only or sub.get("mutability") == "writeOnly"
            add(dotted, dotted, sub["type"], sub_write_only)
            if attribute["multiValued"]:
                add(f"{path}[{sub['name']}]", dotted, sub["type"], sub_write_only)
    for path in listed:
        if path.lower() not in result:
            # A common attribute (or anything else the compiler lists beyond /Schemas).
            assert path.lower() in COMMON_TYPES, f"no RFC type known for {path!r}"
            add(path, path, COMMON_TYPES[path.lower()], write_only=False)
    return sorted(result.values(), key=lambda a: a.path)


OPERATOR_WORD = re.compile(r"\b(" + "|".join(OPERATORS) + r")\b")


def not_answered(response: httpx2.Response) -> str | None:
    """Why a response is not a 200 ListResponse, or None."""
    if response.status_code != 200:
        detail = response.json().get("detail", "") if response.status_code < 500 else ""
        return f"expected 200, got {response.status_code}: {(detail or response.text)[:200]}"
    body = response.json()
    if body.get("totalResults") != len(body.get("Resources", [])):
        return f"not a complete ListResponse: {body}"
    return None


def not_refused(attribute: Attribute, op: str, response: httpx2.Response) -> str | None:
    """Why a response is not the 400 invalidFilter ``attribute op …`` deserves, or None."""
    if response.status_code != 400:
        return f"expected 400 invalidFilter, got {response.status_code}: {response.text[:200]}"
    body = response.json()
    if body.get("schemas") != [ERROR] or body.get("scimType") != "invalidFilter":
        return f"expected scimType invalidFilter: {body}"
    detail = body.get("detail")
    if not isinstance(detail, str) or attribute.name.lower() not in detail.lower():
        return f"the detail does not name {attribute.name!r}: {detail!r}"
    if attribute.filterable:
        # The operator refused, and the operators the attribute does take.
        named = set(OPERATOR_WORD.findall(detail))
        if f"'{op}'" not in detail or named != attribute.applicable | {op}:
            return f"the detail should name '{op}' and {sorted(attribute.applicable)}: {detail!r}"
    return None


@pytest.fixture
async def population(client: httpx2.AsyncClient) -> None:
    """A user with a value in most attributes, a bare one, and a group of both."""
    full = user_body(
        "ada@acme.test",
        externalId="ext-ada",
        title="Engineer",
        nickName="ada",
        profileUrl="https://example.com/ada",
        userType="Employee",
        preferredLanguage="en-GB",
        locale="en-GB",
        timezone="Europe/London",
        phoneNumbers=[{"value": "+44 20 7946 0000", "type": "work", "primary": True}],
        ims=[{"value": "ada", "type": "xmpp"}],
        photos=[{"value": "https://example.com/ada.png", "type": "photo"}],
        addresses=[{"type": "work", "locality": "London", "postalCode": "N1", "primary": True}],
        entitlements=[{"value": "admin"}],
        roles=[{"value": "staff", "primary": True}],
        x509Certificates=[{"value": "QUJD"}],
    )
    full["name"]["middleName"] = "Augusta"
    full["schemas"] = [CORE, ENTERPRISE]
    full[ENTERPRISE] = {
        "employeeNumber": "7",
        "costCenter": "CC",
        "organization": "Acme",
        "division": "R&D",
        "department": "Engineering",
        "manager": {"value": "mgr-1"},
    }
    ids = []
    for body in (full, {"schemas": [CORE], "userName": "bare@acme.test"}):
        created = await client.post("/Users", json=body)
        assert created.status_code == 201, created.text
        ids.append(created.json()["id"])
    group = await client.post(
        "/Groups",
        json={
            "schemas": [GROUP],
            "displayName": "Everyone",
            "externalId": "ext-everyone",
            "members": [{"value": user_id} for user_id in ids],
        },
    )
    assert group.status_code == 201, group.text


async def grid(client: httpx2.AsyncClient, resource: str) -> dict[str, str]:
    """Run every attribute with every operator; answer the filters answered wrongly.

    The operators that apply to an attribute are asked together, ``(a eq v) or
    (a ne v) or …``: one clause the compiler refused would refuse the whole
    filter, and PostgreSQL checks the types of every clause before running any
    (the 500 of item 9 came from there). Only when that fails is each asked on
    its own, to name it. Every refusal is asked on its own, for its detail.
    """
    endpoint = f"/{resource}s"
    # Concurrent, a few at a time: the answers do not depend on each other.
    limit = asyncio.Semaphore(4)

    async def ask(scim_filter: str) -> httpx2.Response | str:
        async with limit:
            try:
                return await client.get(endpoint, params={"filter": scim_filter})
            except Exception as exc:  # the ASGI transport re-raises what would be a 500
                return f"raised {type(exc).__name__}: {str(exc)[:200]}"

    async def answered(attribute: Attribute) -> dict[str, str]:
        ops = [op for op in OPERATORS if attribute.filterable and op in attribute.applicable]
        if not ops:
            return {}
        together = " or ".join(f"({attribute.filter(op)})" for op in ops)
        response = await ask(together)
        why = response if isinstance(response, str) else not_answered(response)
        if why is None:
            return {}
        wrongs = {}
        for op in ops:
            alone = await ask(attribute.filter(op))
            alone_why = alone if isinstance(alone, str) else not_answered(alone)
            if alone_why is not None:
                wrongs[attribute.filter(op)] = alone_why
        return wrongs or {together: why}

    async def refused(attribute: Attribute, op: str) -> dict[str, str]:
        response = await ask(attribute.filter(op))
        why = response if isinstance(response, str) else not_refused(attribute, op, response)
        return {} if why is None else {attribute.filter(op): why}

    every = await attributes(client, resource)
    checks = [answered(attribute) for attribute in every] + [
        refused(attribute, op)
        for attribute in every
        for op in OPERATORS
        if not (attribute.filterable and op in attribute.applicable)
    ]
    wrongs: dict[str, str] = {}
    for found in await asyncio.gather(*checks):
        wrongs.update(found)
    return wrongs


def report(wrongs: dict[str, str]) -> str:
    return f"{len(wrongs)} filters answered wrongly:\n" + "\n".join(
        f"  {scim_filter}\n    {why}" for scim_filter, why in sorted(wrongs.items())
    )


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("resource", ["User", "Group"])
async def test_every_attribute_and_operator_is_answered_or_refused_as_invalid_filter(
    client: httpx2.AsyncClient, resource: str
) -> None:
    wrongs = await grid(client, resource)
    assert not wrongs, report(wrongs)


@pytest.mark.usefixtures("population")
@pytest.mark.parametrize("resource", ["Users", "Groups"])
@pytest.mark.parametrize("attribute", ["meta.created", "meta.lastModified"])
@pytest.mark.parametrize("op", ["co", "sw", "ew"])
async def test_string_operators_on_dates_are_400_naming_what_dates_take(
    client: httpx2.AsyncClient, resource: str, attribute: str, op: str
) -> None:
    scim_filter = f'{attribute} {op} "2020-01-01T00:00:00Z"'
    for response in (
        await client.get(f"/{resource}", params={"filter": scim_filter}),
        await client.post(f"/{resource}/.search", json={"filter": scim_filter}),
    ):
        assert response.status_code == 400, (scim_filter, response.status_code, response.text)
        body = response.json()
        assert body["scimType"] == "invalidFilter", body
        detail = body["detail"]
        assert attribute in detail and f"'{op}'" in detail, detail
        assert "dateTime" in detail, detail
        assert set(OPERATOR_WORD.findall(detail)) == APPLICABLE["dateTime"] | {op}, detail


@pytest.mark.usefixtures("population")
async def test_a_binary_value_is_compared_as_its_base64_text(client: httpx2.AsyncClient) -> None:
    for scim_filter, expected in (
        ('x509Certificates.value eq "QUJD"', ["ada@acme.test"]),
        ('x509Certificates[value eq "QUJD"]', ["ada@acme.test"]),
        ('x509Certificates.value eq "QUJE"', []),
        ('x509Certificates.value ne "QUJD"', ["bare@acme.test"]),
    ):
        response = await client.get("/Users", params={"filter": scim_filter})
        assert response.status_code == 200, (scim_filter, response.text)
        found = sorted(r["userName"] for r in response.json()["Resources"])
        assert found == expected, scim_filter
