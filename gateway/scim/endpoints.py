"""The endpoints of every SCIM resource type (RFC 7644 §3): orchestrate only.

``Endpoints(storage).routes()`` serves ``/Users`` or ``/Groups`` from a
``Storage`` (storage.py), what a resource type stores its own way;
everything else is here once:

- parameters first: ``attributes``/``excludedAttributes`` are parsed before
  any write, so a bad one cannot fail a write that committed;
- the body read (gateway/scim/http.py) and validated by the type;
- one transaction per write, the current version locked (``FOR NO KEY
  UPDATE``) and its ETag checked against ``If-Match`` (RFC 7644 §3.14);
- the answer rendered in that transaction, with its ``ETag`` (and
  ``Location`` for a create);
- lists and searches through the planner (gateway/scim/listing.py).

PATCH is parsed (and, for users, applied) in a worker thread: its cost
grows with its size (bounded in gateway/scim/limits.py), and the event loop
keeps serving every other tenant meanwhile.

Answers differ by type in one documented place, ``Storage.patch_answers_resource``:
a user's PATCH is 200 with the user (RFC 7644 §3.5.2 allows 204, but Okta,
Entra and checkers handle 200 best); a group's is 204 without the member
list unless ``attributes``/``excludedAttributes`` ask for the group (Okta
and Entra expect 204; a 100,000-member list is megabytes).
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.db import reading, writing
from gateway.scim import listing
from gateway.scim.context import actor, base_url, engine, principal
from gateway.scim.group_store import GROUP_STORAGE
from gateway.scim.http import check_if_match, read_json, scim_json
from gateway.scim.listing import Query
from gateway.scim.render import Projection, etag, location
from gateway.scim.resources import ResourceType, parse_id
from gateway.scim.storage import Row, Storage
from gateway.scim.store import USER_STORAGE


class Endpoints:
    """The seven endpoints of one resource type."""

    def __init__(self, storage: Storage) -> None:
        self.storage = storage
        self.resource: ResourceType = storage.source.resource

    def routes(self) -> list[Route]:
        endpoint = self.resource.endpoint
        return [
            Route(endpoint, self.list, methods=["GET"]),
            Route(endpoint, self.create, methods=["POST"]),
            Route(f"{endpoint}/.search", self.search, methods=["POST"]),
            Route(f"{endpoint}/{{id}}", self.get, methods=["GET"]),
            Route(f"{endpoint}/{{id}}", self.replace, methods=["PUT"]),
            Route(f"{endpoint}/{{id}}", self.patch, methods=["PATCH"]),
            Route(f"{endpoint}/{{id}}", self.delete, methods=["DELETE"]),
        ]

    def _projection(self, request: Request) -> Projection:
        params = request.query_params
        return Projection(self.resource, params.get("attributes"), params.get("excludedAttributes"))

    async def _single(
        self,
        conn: AsyncConnection,
        request: Request,
        row: Row,
        projection: Projection,
        status: int = 200,
    ) -> Response:
        url = base_url(request)
        (resource,) = await self.storage.render(conn, [row], projection, url)
        headers = {"ETag": etag(row.version)}
        if status == 201:
            scim_id = str(getattr(row, str(self.resource.id_column.key)))
            headers["Location"] = location(self.resource, scim_id, url)
        return scim_json(resource, status, headers)

    async def list(self, request: Request) -> Response:
        return await self.query(request, Query.of_list(request))

    async def search(self, request: Request) -> Response:
        """POST …/.search (RFC 7644 §3.4.3)."""
        return await self.query(request, Query.of_search(await read_json(request, search=True)))

    async def query(self, request: Request, query: Query) -> Response:
        return await listing.respond(request, self.storage.source, query, self.storage.render)

    async def create(self, request: Request) -> Response:
        projection = self._projection(request)
        data = self.storage.parse(await read_json(request), current=None)
        who = actor(request)
        async with reading(engine(request)) as conn:
            row = await self.storage.create_if_new(conn, who, data)
            if row is not None:
                return await self._single(conn, request, row, projection, 201)
        async with writing(engine(request)) as conn:
            row = await self.storage.create(conn, who, data)
            return await self._single(conn, request, row, projection, 201)

    async def get(self, request: Request) -> Response:
        projection = self._projection(request)
        scim_id = parse_id(request.path_params["id"])
        async with reading(engine(request)) as conn:
            row = await self.storage.source.get(conn, principal(request).tenant_id, scim_id)
            return await self._single(conn, request, row, projection)

    async def replace(self, request: Request) -> Response:
        projection = self._projection(request)
        body = await read_json(request)
        scim_id = parse_id(request.path_params["id"])
        who = actor(request)
        async with writing(engine(request)) as conn:
            current = await self.storage.source.get(conn, who.tenant_id, scim_id, for_update=True)
            check_if_match(request, current.version)
            # Validated against the version it replaces: values stored before a
            # rule tightened may stay (a leaver's deactivation must apply).
            data = self.storage.parse(body, current=current)
            row = await self.storage.replace(conn, who, current, data)
            return await self._single(conn, request, row, projection)

    async def patch(self, request: Request) -> Response:
        projection = self._projection(request)
        patch = await run_in_threadpool(self.storage.parse_patch, await read_json(request))
        scim_id = parse_id(request.path_params["id"])
        who = actor(request)
        async with writing(engine(request)) as conn:
            current = await self.storage.source.get(conn, who.tenant_id, scim_id, for_update=True)
            check_if_match(request, current.version)
            row = await self.storage.patch(conn, who, current, patch)
            if not (self.storage.patch_answers_resource or projection.given):
                return Response(status_code=204, headers={"ETag": etag(row.version)})
            return await self._single(conn, request, row, projection)

    async def delete(self, request: Request) -> Response:
        scim_id = parse_id(request.path_params["id"])
        who = actor(request)
        async with writing(engine(request)) as conn:
            current = await self.storage.source.get(conn, who.tenant_id, scim_id, for_update=True)
            check_if_match(request, current.version)
            await self.storage.delete(conn, who, current)
        return Response(status_code=204)


# Every resource type's endpoints, in the order discovery lists the types.
RESOURCE_ENDPOINTS = (Endpoints(USER_STORAGE), Endpoints(GROUP_STORAGE))
