"""What Users and Groups share, tested once over both resource types: one
filter compiler, one case folding, one set of limits (gateway/scim/resources.py).

Each case names the attribute it filters on for each type: a column with a
folded key (userName, a group's displayName) and, for users, a text attribute
kept in the folded document (displayName).
"""

from __future__ import annotations

import unicodedata
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote

import httpx2
import pytest

from tests.conftest import user_body

GROUP = "urn:ietf:params:scim:schemas:core:2.0:Group"
ERROR = "urn:ietf:params:scim:api:messages:2.0:Error"


@dataclass(frozen=True)
class Kind:
    endpoint: str
    attribute: str  # a caseExact=false text attribute a filter names

    def body(self, name: str) -> dict[str, Any]:
        if self.endpoint == "/Groups":
            return {"schemas": [GROUP], "displayName": name}
        # A userName must be an identifier; the name under test goes where the
        # attribute is (userName itself, or displayName).
        user_name = name if self.attribute == "userName" else f"u{abs(hash(name))}@acme.test"
        return user_body(user_name, displayName=name, emails=[])

    async def create(self, client: httpx2.AsyncClient, name: str) -> str:
        response = await client.post(self.endpoint, json=self.body(name))
        assert response.status_code == 201, response.text
        return str(response.json()["id"])

    async def find(self, client: httpx2.AsyncClient, scim_filter: str) -> list[str]:
        response = await client.get(f"{self.endpoint}?filter={quote(scim_filter)}")
        assert response.status_code == 200, response.text
        return [resource["id"] for resource in response.json()["Resources"]]


KINDS = [
    pytest.param(Kind("/Users", "userName"), id="User.userName"),
    pytest.param(Kind("/Users", "displayName"), id="User.displayName"),
    pytest.param(Kind("/Groups", "displayName"), id="Group.displayName"),
]

# Upper-case Greek ends in a capital sigma: Python's lower() makes it a final
# sigma, PostgreSQL's lower() a medial one. Folding makes both the medial one.
GREEK = "ΟΔΥΣΣΕΥΣ"


@pytest.mark.parametrize("kind", KINDS)
@pytest.mark.parametrize(
    ("stored", "asked"),
    [
        pytest.param(GREEK, GREEK, id="greek-as-stored"),
        pytest.param(GREEK, "οδυσσευς", id="greek-final-sigma"),
        pytest.param("Straße", "STRASSE", id="sharp-s"),
        pytest.param(unicodedata.normalize("NFD", "Zoë Müller"), "ZOË MÜLLER", id="nfd-stored"),
        pytest.param("Zoë Müller", unicodedata.normalize("NFD", "zoë müller"), id="nfd-asked"),
    ],
)
async def test_a_name_is_found_whatever_its_case_and_normal_form(
    client: httpx2.AsyncClient, kind: Kind, stored: str, asked: str
) -> None:
    wanted = await kind.create(client, stored)
    await kind.create(client, "Someone Else")
    folded_prefix = asked[: len(asked) // 2]
    for scim_filter in (
        f'{kind.attribute} eq "{asked}"',
        f'{kind.attribute} sw "{folded_prefix}"',
        f'{kind.attribute} co "{asked[1:-1]}"',
        f'{kind.attribute} ew "{asked[1:]}"',
    ):
        assert await kind.find(client, scim_filter) == [wanted], scim_filter
    assert await kind.find(client, f'{kind.attribute} ne "{asked}"') != []
    assert wanted not in await kind.find(client, f'{kind.attribute} ne "{asked}"')


@pytest.mark.parametrize("kind", [KINDS[0], KINDS[2]])
async def test_names_equal_once_folded_are_one_name(client: httpx2.AsyncClient, kind: Kind) -> None:
    """Uniqueness folds as filters do: a second "STRASSE" beside "Straße" is a 409."""
    name = "Straße" if kind.endpoint == "/Groups" else "straße@acme.test"
    await kind.create(client, name)
    again = await client.post(kind.endpoint, json=kind.body(name.upper()))
    assert again.status_code == 409, again.text
    assert again.json()["scimType"] == "uniqueness"


@pytest.mark.parametrize("endpoint", ["/Users", "/Groups"])
async def test_a_filter_nested_too_deep_is_refused_on_every_type(
    client: httpx2.AsyncClient, endpoint: str
) -> None:
    attribute = "userName" if endpoint == "/Users" else "displayName"
    deep = "(" * 40 + f'{attribute} eq "x"' + ")" * 40
    response = await client.get(f"{endpoint}?filter={quote(deep)}")
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["schemas"] == [ERROR] and body["scimType"] == "invalidFilter"
    assert "nests parentheses more than 32 deep" in body["detail"]


async def test_a_users_groups_are_filterable(client: httpx2.AsyncClient) -> None:
    """The read-only groups attribute (RFC 7643 §4.1.2) comes from the membership
    table; a filter on it reads the same place."""
    member = await Kind("/Users", "userName").create(client, "ana@acme.test")
    await Kind("/Users", "userName").create(client, "ben@acme.test")
    group = await client.post(
        "/Groups",
        json={"schemas": [GROUP], "displayName": "Σύλλογος", "members": [{"value": member}]},
    )
    assert group.status_code == 201, group.text
    users = Kind("/Users", "userName")
    assert await users.find(client, f'groups eq "{group.json()["id"]}"') == [member]
    assert await users.find(client, 'groups[display eq "ΣΎΛΛΟΓΟΣ"]') == [member]
    assert await users.find(client, "groups pr") == [member]


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[2]])
async def test_a_projection_reads_the_same_on_every_type(
    client: httpx2.AsyncClient, kind: Kind
) -> None:
    """RFC 7644 §3.9, applied by one Projection (gateway/scim/render.py): id and
    schemas always come back, a sub-attribute path keeps that sub-attribute."""
    scim_id = await kind.create(client, "Ada")
    wanted = await client.get(f"{kind.endpoint}/{scim_id}?attributes=displayName,meta.lastModified")
    assert wanted.status_code == 200, wanted.text
    body = wanted.json()
    assert set(body) == {"schemas", "id", "displayName", "meta"}
    assert set(body["meta"]) == {"lastModified"}
    dropped = await client.get(f"{kind.endpoint}/{scim_id}?excludedAttributes=displayName,id")
    assert "displayName" not in dropped.json() and dropped.json()["id"] == scim_id
    ada = quote('displayName eq "ada"')
    listed = await client.get(f"{kind.endpoint}?filter={ada}&attributes=meta.resourceType")
    assert [r["meta"] for r in listed.json()["Resources"]] == [
        {"resourceType": kind.endpoint[1:-1]}
    ]


async def test_a_group_s_members_come_back_unless_excluded(client: httpx2.AsyncClient) -> None:
    member = await Kind("/Users", "userName").create(client, "ana@acme.test")
    created = await client.post(
        "/Groups", json={"schemas": [GROUP], "displayName": "Ops", "members": [{"value": member}]}
    )
    group_id = created.json()["id"]
    for query, shown in (
        ("", True),
        ("?attributes=members", True),
        ("?attributes=members.value", True),
        ("?attributes=displayName", False),
        ("?excludedAttributes=members", False),
    ):
        body = (await client.get(f"/Groups/{group_id}{query}")).json()
        assert ("members" in body) is shown, query
        if shown:
            assert [m["value"] for m in body["members"]] == [member], query


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[2]])
@pytest.mark.parametrize(
    ("change", "named"),
    [
        pytest.param({"displayName": 123}, "displayName", id="number-for-text"),
        pytest.param({"displayName": ["a"]}, "displayName", id="list-for-text"),
        pytest.param({"externalId": {"a": 1}}, "externalId", id="object-for-text"),
    ],
)
async def test_a_body_of_the_wrong_shape_is_refused_alike_on_every_type(
    client: httpx2.AsyncClient, kind: Kind, change: dict[str, Any], named: str
) -> None:
    """Both types are validated by scim2-models against their schema: the same
    mistake is the same 400, naming the attribute, and nothing is written."""
    before = (await client.get(kind.endpoint)).json()["totalResults"]
    response = await client.post(kind.endpoint, json={**kind.body("Ada"), **change})
    assert response.status_code == 400, response.text
    body = response.json()
    assert body["schemas"] == [ERROR] and body["scimType"] == "invalidValue"
    assert named in body["detail"]
    assert (await client.get(kind.endpoint)).json()["totalResults"] == before


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[2]])
async def test_every_type_pages_by_cursor_and_by_start_index(
    client: httpx2.AsyncClient, kind: Kind
) -> None:
    """One planner (gateway/scim/listing.py): RFC 9865 cursors and startIndex
    pages, in creation order, on every resource type."""
    made = [await kind.create(client, f"Page {n}") for n in range(5)]
    seen: list[str] = []
    page = (await client.get(f"{kind.endpoint}?cursor=&count=2")).json()
    while True:
        assert "startIndex" not in page and "totalResults" not in page
        seen += [r["id"] for r in page["Resources"]]
        if "nextCursor" not in page:
            break
        page = (await client.get(f"{kind.endpoint}?cursor={page['nextCursor']}&count=2")).json()
    assert seen == made
    back = (await client.get(f"{kind.endpoint}?cursor={page['previousCursor']}&count=2")).json()
    assert [r["id"] for r in back["Resources"]] == made[2:4]
    by_index = [
        r["id"]
        for start in (1, 3, 5)
        for r in (await client.get(f"{kind.endpoint}?startIndex={start}&count=2")).json()[
            "Resources"
        ]
    ]
    assert by_index == made


@pytest.mark.parametrize("kind", [KINDS[1], KINDS[2]])
async def test_every_type_sorts_by_its_folded_text(client: httpx2.AsyncClient, kind: Kind) -> None:
    """sortBy compares caseExact=false text folded (models/text.py), on every type."""
    # Stored as sent, code-point order would put every capital first.
    names = ["beta", "ALPHA", "Gamma", "delta"]
    ids = {name: await kind.create(client, name) for name in names}
    for order, expected in (
        ("ascending", ["ALPHA", "beta", "delta", "Gamma"]),
        ("descending", ["Gamma", "delta", "beta", "ALPHA"]),
    ):
        listed = await client.get(f"{kind.endpoint}?sortBy=displayName&sortOrder={order}")
        assert listed.status_code == 200, listed.text
        assert [r["id"] for r in listed.json()["Resources"]] == [ids[n] for n in expected]
