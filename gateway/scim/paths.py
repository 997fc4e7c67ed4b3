"""Resource paths match case-insensitively: /scim/v2/users is /scim/v2/Users.

RFC 7644 spells the endpoints /Users, /Groups, /Bulk, /Schemas, ... and
some clients do not (Microsoft's own SCIM test collection sends /users).
Only the segment right below /scim/v2 is respelled, as the routes spell it,
before routing; what follows it (an id, a schema URN) keeps its case.
"""

from __future__ import annotations

from collections.abc import Iterable

from starlette.routing import BaseRoute, Route
from starlette.types import ASGIApp, Receive, Scope, Send


def route_path(scope: Scope) -> str:
    """The request's path below the app's mount point (``/Users`` of ``/scim/v2/Users``)."""
    root: str = scope.get("root_path", "")
    path: str = scope["path"]
    return path[len(root) :] if root and path.startswith(root + "/") else path


class ResourceNames:
    """The first path segments of ``routes`` (``Users`` of ``/Users/{user_id}``), by lower case."""

    def __init__(self, routes: Iterable[BaseRoute]) -> None:
        self._spelled: dict[str, str] = {}
        for route in routes:
            if isinstance(route, Route):
                name = route.path.split("/")[1]
                self._spelled[name.lower()] = name

    def canonical(self, path: str) -> str:
        """``path`` (below /scim/v2: ``/users/ID``) with its first segment spelled as the
        routes spell it (``/Users/ID``); a path whose first segment no route has is as it was."""
        if not path.startswith("/"):
            return path
        name, slash, rest = path[1:].partition("/")
        spelled = self._spelled.get(name.lower(), name)
        return path if spelled == name else f"/{spelled}{slash}{rest}"


class CanonicalPaths:
    """Respell the resource segment of every request's path before the routes see it."""

    def __init__(self, app: ASGIApp, names: ResourceNames) -> None:
        self.app = app
        self.names = names

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            below = route_path(scope)
            canonical = self.names.canonical(below)
            if canonical != below:
                scope = {**scope, "path": scope["path"][: -len(below)] + canonical}
        await self.app(scope, receive, send)
