"""gateway/scim/paths.py: the resource segment below /scim/v2 matches case-insensitively."""

from __future__ import annotations

from typing import Any

import pytest

from gateway.scim.api import RESOURCE_ROUTES
from gateway.scim.paths import CanonicalPaths, ResourceNames, route_path

NAMES = ResourceNames(RESOURCE_ROUTES)
SCHEMA = "urn:ietf:params:scim:schemas:core:2.0:User"


@pytest.mark.parametrize(
    ("path", "canonical"),
    [
        ("/users", "/Users"),
        ("/USERS/AbC-1", "/Users/AbC-1"),  # what follows keeps its case
        ("/uSeRs/.search", "/Users/.search"),
        ("/users/", "/Users/"),
        ("/groups/Id/More", "/Groups/Id/More"),
        ("/bulk", "/Bulk"),
        ("/.SEARCH", "/.search"),
        ("/serviceproviderconfig", "/ServiceProviderConfig"),
        ("/resourcetypes/user", "/ResourceTypes/user"),
        (f"/schemas/{SCHEMA.upper()}", f"/Schemas/{SCHEMA.upper()}"),
        ("/Users/x", "/Users/x"),
        ("/userz", "/userz"),  # no such endpoint: as it was
        ("/openapi.json", "/openapi.json"),
        ("/", "/"),
        ("", ""),
        ("users", "users"),
    ],
)
def test_only_the_first_segment_is_respelled(path: str, canonical: str) -> None:
    assert NAMES.canonical(path) == canonical


def test_route_path_is_below_the_mount() -> None:
    assert route_path({"path": "/scim/v2/users", "root_path": "/scim/v2"}) == "/users"
    assert route_path({"path": "/scim/v2x/users", "root_path": "/scim/v2"}) == "/scim/v2x/users"
    assert route_path({"path": "/staff/1", "root_path": ""}) == "/staff/1"
    assert route_path({"path": "/staff/1"}) == "/staff/1"


async def test_the_middleware_hands_on_the_respelled_path_and_leaves_the_callers_scope() -> None:
    seen: list[dict[str, Any]] = []

    async def app(scope: Any, receive: Any, send: Any) -> None:
        seen.append(scope)

    scope = {"type": "http", "path": "/scim/v2/users/AbC", "root_path": "/scim/v2"}
    await CanonicalPaths(app, NAMES)(scope, None, None)  # type: ignore[arg-type]
    assert seen[0]["path"] == "/scim/v2/Users/AbC"
    assert scope["path"] == "/scim/v2/users/AbC"

    unchanged = {"type": "http", "path": "/scim/v2/Users/AbC", "root_path": "/scim/v2"}
    await CanonicalPaths(app, NAMES)(unchanged, None, None)  # type: ignore[arg-type]
    assert seen[1] is unchanged
