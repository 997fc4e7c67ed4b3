"""Lists and searches of any resource type: one planner, and which request
shape takes which path.

Every page is in ``order_by`` (``sortBy``) then creation order
(``created_at, id``), which the ``(tenant_id, created_at, id)`` index of each
table reads in order (``ix_users_live_created``, ``ix_groups_tenant_created``).

=======================================  ===============================================
request                                  path (why: the note of the same number)
=======================================  ===============================================
plain ``userName eq "…"``, first page,   ``Source.lookup`` (users: ``userName``), a
no sortBy or cursor                      statement built once (1)
``cursor=`` (RFC 9865)                   ``page_by_cursor``: a keyset range scan after
                                         (or before) the cursor's position (2)
no filter, startIndex 1                  the page off the creation-order index; the
                                         total from ``Source.count_all``, else a count (3)
no filter, the startIndex a sequential   keyset after where the previous page ended
read reaches next                        (``IndexPositions``, per process) (4)
no filter, any other startIndex          index entries skipped (index-only), then keyset
                                         from there (5)
a filter, no sortBy                      ``_matches_then_page``: the matches first, then
                                         ordered and paged; a window count (6)
sortBy                                   ``ORDER BY`` the sort key, then creation order;
                                         a window count (7)
=======================================  ===============================================

1. The lookup IdPs make before every write: no parser, no query building.
2. Every page costs the same however deep, and cursors never expire.
3. Okta's import starts here; users keep their live count in 16 counter rows.
4. No OFFSET: page 500 of a sequential read costs what page 1 does.
5. No heap reads for the rows skipped.
6. Asked for matches in creation order, the planner is tempted by the ordered
   index and filters the tenant's rows one by one.
7. Sorting needs every match anyway.

The resource type's ``Source`` says what a listed row selects, which rows
SCIM sees (users: not deleted) and where an unfiltered total comes from.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from functools import cached_property
from typing import Any

from sqlalchemy import ColumnElement, Select, Table, bindparam, func, select, tuple_
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import Response

from gateway.db import reading
from gateway.scim import errors
from gateway.scim.context import base_url, engine, principal
from gateway.scim.filters import compile_filter, sort_expression
from gateway.scim.http import int_param, scim_json
from gateway.scim.paging import Cursor, IndexPositions, Position, fingerprint
from gateway.scim.render import Projection, cursor_list_response, list_response
from gateway.scim.resources import ResourceType

# RFC 7644 §3.4.2.4: the server may cap count; advertised as filter.maxResults.
MAX_RESULTS = 1000
DEFAULT_COUNT = 100
# Far beyond any directory; keeps OFFSET and the echoed startIndex in range.
MAX_START_INDEX = 2**31 - 1

Row = Any  # a row of Source.columns


@dataclass(frozen=True)
class Lookup:
    """Path (1): the lookup an IdP makes before every write, answered by a
    statement built once.

    :param key: a filter's text -> the key it looks up, or None when the
        filter is anything else (it then takes the general path).
    :param rows: (connection, tenant id, key) -> the live rows with that key.
    """

    key: Callable[[str], str | None]
    rows: Callable[[AsyncConnection, uuid.UUID, str], Awaitable[list[Row]]]


@dataclass(frozen=True, eq=False)
class Source:
    """Where the rows of one resource type's lists come from.

    :param columns: what a listed row selects (the renderer reads these).
    :param live: the rows SCIM sees (users the IdP deleted are kept, unseen).
    :param count_all: a cheap total of a tenant's live rows, with a
        ``tenant_id`` parameter, or None to count them.
    :param lookup: the type's prebuilt lookup (path 1), if it has one.
    """

    resource: ResourceType
    columns: tuple[Any, ...]
    live: tuple[ColumnElement[bool], ...] = ()
    count_all: Select[Any] | None = None
    lookup: Lookup | None = None

    @property
    def table(self) -> Table:
        return self.resource.table

    @cached_property
    def _one(self) -> tuple[Select[Any], Select[Any]]:
        # Built once per type, like every statement a request repeats.
        query = select(*self.columns).where(
            self.table.c.tenant_id == bindparam("tenant_id"),
            self.resource.id_column == bindparam("scim_id"),
            *self.live,
        )
        return query, query.with_for_update(key_share=True)

    async def get(
        self,
        conn: AsyncConnection,
        tenant_id: uuid.UUID,
        scim_id: uuid.UUID | None,
        *,
        for_update: bool = False,
    ) -> Row:
        """The resource a client names by id, as SCIM sees it, or NotFound.

        ``for_update`` locks it (FOR NO KEY UPDATE) until the transaction
        ends: writes to one resource queue, so its versions stay in order.
        """
        if scim_id is not None:
            query = self._one[1] if for_update else self._one[0]
            parameters = {"tenant_id": tenant_id, "scim_id": scim_id}
            row = (await conn.execute(query, parameters)).first()
            if row is not None:
                return row
        noun = self.resource.name.lower()
        raise errors.NotFound(
            f"No {noun} with this id exists in this SimpleAMS workspace (it may have been deleted)."
        )

    def where(
        self, tenant_id: uuid.UUID, condition: ColumnElement[bool] | None
    ) -> list[ColumnElement[bool]]:
        where = [self.table.c.tenant_id == tenant_id, *self.live]
        if condition is not None:
            where.append(condition)
        return where


# Rows of a page -> their SCIM JSON, read in the page's connection (a
# group's members come from another table).
Renderer = Callable[[AsyncConnection, list[Row], Projection, str], Awaitable[list[dict[str, Any]]]]

# Per process: where the next startIndex page of a sequential read begins.
_index_positions = IndexPositions()


@dataclass(frozen=True)
class Query:
    """A list (GET) or search (POST …/.search) request's parameters, as sent."""

    filter_text: Any = None
    start_index: Any = None
    cursor: Any = None
    count: Any = None
    sort_by: Any = None
    sort_order: Any = None
    attributes: Any = None
    excluded: Any = None

    @classmethod
    def of_list(cls, request: Request) -> Query:
        params = request.query_params
        return cls(
            params.get("filter"),
            params.get("startIndex"),
            params.get("cursor"),
            params.get("count"),
            params.get("sortBy"),
            params.get("sortOrder"),
            params.get("attributes"),
            params.get("excludedAttributes"),
        )

    @classmethod
    def of_search(cls, body: Any) -> Query:
        if not isinstance(body, dict):
            raise errors.InvalidSyntax("A search request must be a JSON object (RFC 7644 §3.4.3).")
        if body.get("filter") is not None and not isinstance(body.get("filter"), str):
            raise errors.InvalidFilter("'filter' must be a string.")
        return cls(
            body.get("filter"),
            body.get("startIndex"),
            body.get("cursor"),
            body.get("count"),
            body.get("sortBy"),
            body.get("sortOrder"),
            body.get("attributes"),
            body.get("excludedAttributes"),
        )

    @property
    def first(self) -> int:
        """startIndex, 1-based; < 1 reads as 1 (RFC 7644 §3.4.2.4)."""
        return min(max(1, int_param(self.start_index, "startIndex", 1)), MAX_START_INDEX)

    @property
    def limit(self) -> int:
        """count; a negative one reads as 0, a large one as MAX_RESULTS."""
        return min(max(0, int_param(self.count, "count", DEFAULT_COUNT)), MAX_RESULTS)

    def order_by(self, resource: ResourceType) -> list[ColumnElement[Any]]:
        if not self.sort_by:
            return []
        if not isinstance(self.sort_by, str):
            raise errors.InvalidValue("'sortBy' must be an attribute name.")
        order = str(self.sort_order or "ascending").lower()
        if order not in ("ascending", "descending"):
            raise errors.InvalidValue("'sortOrder' must be 'ascending' or 'descending'.")
        expression = sort_expression(resource, self.sort_by)
        return [
            expression.desc().nulls_last()
            if order == "descending"
            else expression.asc().nulls_last()
        ]


async def respond(request: Request, source: Source, query: Query, render: Renderer) -> Response:
    """The answer to a list or search of one resource type (the table above)."""
    resource = source.resource
    first, limit = query.first, query.limit
    if source.lookup is not None and query.filter_text and first == 1 and limit > 0:
        key = source.lookup.key(query.filter_text)
        if key is not None and query.cursor is None and not query.sort_by:
            return await _look_up(request, source, source.lookup, key, query, render)
    condition = compile_filter(resource, query.filter_text) if query.filter_text else None
    order_by = query.order_by(resource)
    projection = Projection(resource, query.attributes, query.excluded)
    tenant_id = principal(request).tenant_id
    asked = fingerprint(tenant_id, query.filter_text, resource.name)
    url = base_url(request)
    if query.cursor is not None:
        if query.start_index not in (None, ""):
            raise errors.InvalidValue(
                "Page with either 'cursor' (RFC 9865) or 'startIndex', not both."
            )
        if order_by:
            raise errors.InvalidValue(
                "Cursor paging is in creation order; drop 'sortBy', or page with 'startIndex'."
            )
        if not isinstance(query.cursor, str):
            raise errors.InvalidValue("'cursor' must be a string (empty for the first page).")
        return await _cursor_page(
            request, source, condition, asked, query.cursor, limit, projection, render
        )
    # A sequential read (Okta's import) continues where the last page ended.
    position = _index_positions.get(asked, first) if not order_by and first > 1 else None
    async with reading(engine(request)) as conn:
        total, rows = await search(
            conn, source, tenant_id, condition, order_by, first - 1, limit, after=position
        )
        resources = await render(conn, rows, projection, url)
    if rows and not order_by:
        _index_positions.remember(asked, first + len(rows), (rows[-1].created_at, rows[-1].id))
    return scim_json(list_response(resources, total, first))


async def _look_up(
    request: Request, source: Source, lookup: Lookup, key: str, query: Query, render: Renderer
) -> Response:
    projection = Projection(source.resource, query.attributes, query.excluded)
    async with reading(engine(request)) as conn:
        rows = await lookup.rows(conn, principal(request).tenant_id, key)
        resources = await render(conn, rows, projection, base_url(request))
    return scim_json(list_response(resources, len(rows), 1))


async def _cursor_page(
    request: Request,
    source: Source,
    condition: ColumnElement[bool] | None,
    asked: str,
    cursor: str,
    limit: int,
    projection: Projection,
    render: Renderer,
) -> Response:
    """RFC 9865: cursor= is the first page; then nextCursor / previousCursor."""
    at = Cursor.decode(cursor, asked) if cursor else None
    backwards = at is not None and at.direction == "previous"
    async with reading(engine(request)) as conn:
        rows = await page_by_cursor(
            conn,
            source,
            principal(request).tenant_id,
            condition,
            at.position if at else None,
            backwards,
            limit,
        )
        more = len(rows) > limit
        rows = rows[len(rows) - limit :] if backwards and more else rows[:limit]
        resources = await render(conn, rows, projection, base_url(request))
    has_next = more if not backwards else True
    has_previous = at is not None and (more if backwards else True)
    next_cursor = previous_cursor = None
    if rows and has_next:
        next_cursor = Cursor("next", (rows[-1].created_at, rows[-1].id), asked).encode()
    if rows and has_previous:
        previous_cursor = Cursor("previous", (rows[0].created_at, rows[0].id), asked).encode()
    return scim_json(cursor_list_response(resources, next_cursor, previous_cursor))


async def search(
    conn: AsyncConnection,
    source: Source,
    tenant_id: uuid.UUID,
    condition: ColumnElement[bool] | None,
    order_by: list[ColumnElement[Any]],
    offset: int,
    limit: int,
    *,
    after: Position | None = None,
) -> tuple[int, list[Row]]:
    """A page in ``order_by`` (then creation order) and the total.

    :param after: a keyset position (created_at, id) in the default order to
        start after instead of skipping ``offset`` rows.
    """
    c = source.table.c
    where = source.where(tenant_id, condition)

    async def count_matches() -> int:
        if condition is None and source.count_all is not None:
            return int(
                (await conn.execute(source.count_all, {"tenant_id": tenant_id})).scalar_one()
            )
        count = select(func.count()).select_from(source.table).where(*where)
        return int((await conn.execute(count)).scalar_one())

    if limit == 0:
        return await count_matches(), []
    page = select(*source.columns).where(*where).order_by(*order_by, c.created_at, c.id)
    if after is not None:
        page = page.where(tuple_(c.created_at, c.id) > tuple_(*after))
        offset = 0
    elif condition is None and not order_by and offset > 0:
        # A jump deep into the full listing: find where the page starts by
        # skipping index entries only (an index-only scan of the creation-order
        # index, no heap reads), then read the page from there by keyset.
        total = await count_matches()
        start = (
            await conn.execute(
                select(c.created_at, c.id)
                .where(*where)
                .order_by(c.created_at, c.id)
                .offset(offset)
                .limit(1)
            )
        ).first()
        if start is None:
            return total, []
        page = page.where(tuple_(c.created_at, c.id) >= tuple_(*start))
        return total, list((await conn.execute(page.limit(limit))).all())
    if condition is None or after is not None:
        # A full listing (Okta's import) or a page found by its position: the
        # page comes off the creation-order index; the total is a separate count.
        total = await count_matches()
        if offset >= total:
            return total, []
        return total, list((await conn.execute(page.offset(offset).limit(limit))).all())
    # A filtered lookup (IdPs do one per user, matching 0 or 1 rows): the
    # total rides along as a window count, one round trip instead of two.
    if order_by:
        counted = page.add_columns(func.count().over().label("total_results"))
        rows = list((await conn.execute(counted.offset(offset).limit(limit))).all())
    else:
        rows = list((await conn.execute(_matches_then_page(source, where, offset, limit))).all())
    if rows:
        return int(rows[0].total_results), rows
    if offset == 0:
        return 0, []
    return await count_matches(), []


def _matches_then_page(
    source: Source, where: list[ColumnElement[bool]], offset: int, limit: int
) -> Any:
    """Find the filter's matches first, then order and page them.

    Asked for matches *in creation order*, the planner is tempted by the
    ordered (tenant_id, created_at, id) index and filters the tenant's rows
    one by one; when its statistics lag behind a growing directory (a first
    sync on a new installation) it takes that path for ``userName eq``, and
    every lookup reads the whole tenant. A materialized set of matches has no
    order to offer, so the filter's own index (the unique one for userName)
    finds them, and only the matches are sorted.
    """
    c = source.table.c
    matches = select(c.id, c.created_at).where(*where).cte("matches").prefix_with("MATERIALIZED")
    page = (
        select(matches.c.id, matches.c.created_at, func.count().over().label("total_results"))
        .order_by(matches.c.created_at, matches.c.id)
        .offset(offset)
        .limit(limit)
        .subquery("page")
    )
    return (
        select(*source.columns, page.c.total_results)
        .join_from(source.table, page, c.id == page.c.id)
        .order_by(page.c.created_at, page.c.id)
    )


async def page_by_cursor(
    conn: AsyncConnection,
    source: Source,
    tenant_id: uuid.UUID,
    condition: ColumnElement[bool] | None,
    position: Position | None,
    backwards: bool,
    limit: int,
) -> list[Row]:
    """Up to ``limit + 1`` rows after (or, backwards, before) ``position`` in creation
    order, returned in creation order; the extra row says whether there is more."""
    c = source.table.c
    page = select(*source.columns).where(*source.where(tenant_id, condition))
    key = tuple_(c.created_at, c.id)
    if backwards and position is not None:
        page = page.where(key < tuple_(*position)).order_by(c.created_at.desc(), c.id.desc())
    else:
        if position is not None:
            page = page.where(key > tuple_(*position))
        page = page.order_by(c.created_at, c.id)
    rows = list((await conn.execute(page.limit(limit + 1))).all())
    if backwards and position is not None:
        rows.reverse()
    return rows
