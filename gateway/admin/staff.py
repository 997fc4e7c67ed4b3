"""/staff and /staff/{id}: the people SCIM (or an admin) put in this workspace.

The list pages by keyset over (name, id), never by OFFSET, so page 1,000 of a
100,000-person directory costs what page 1 does; every query it makes
matches an index of ``models/users.py`` (``ix_users_staff_*``).
"""

from __future__ import annotations

import base64
import binascii
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, desc, func, literal_column, select, tuple_
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from gateway.admin.pages import admin_page, message_page, render
from gateway.admin.sessions import AdminContext
from gateway.db import reading
from models.audit import AuditEntry
from models.checkouts import Asset, Checkout
from models.users import STAFF_SEARCH_TEXT, STAFF_SORT_KEY, User

PAGE_SIZE = 50
MAX_QUERY_LENGTH = 200
STATUSES = ("all", "active", "deactivated", "deleted")
SOURCE_LABELS = {"okta": "Okta", "entra": "Entra ID", "scim": "SCIM", "manual": "Manual"}

_sort_key: ColumnElement[str] = literal_column(STAFF_SORT_KEY)
_search_text: ColumnElement[str] = literal_column(STAFF_SEARCH_TEXT)


def status_of(active: bool, deleted: bool) -> str:
    if deleted:
        return "deleted"
    return "active" if active else "deactivated"


def _status_condition(status: str) -> ColumnElement[bool] | None:
    # Spelt exactly as the partial indexes' predicates, so the planner uses them.
    if status == "active":
        return and_(User.active, User.deleted_at.is_(None))
    if status == "deactivated":
        return and_(~User.active, User.deleted_at.is_(None))
    if status == "deleted":
        return User.deleted_at.is_not(None)
    return None


def _like_pattern(query: str) -> str:
    escaped = query.lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return f"%{escaped}%"


def encode_cursor(sort_key: str, user_id: uuid.UUID) -> str:
    raw = json.dumps([sort_key, str(user_id)], ensure_ascii=False).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(value: str | None) -> tuple[str, uuid.UUID] | None:
    if not value or len(value) > 2048:
        return None
    try:
        raw = base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
        sort_key, user_id = json.loads(raw)
        if not isinstance(sort_key, str) or "\x00" in sort_key:
            return None  # not a cursor we made: PostgreSQL text cannot hold NUL
        return sort_key, uuid.UUID(str(user_id))
    except (binascii.Error, ValueError, TypeError):
        return None


@dataclass(frozen=True)
class StaffPage:
    rows: list[Any]
    next_cursor: str | None
    previous_cursor: str | None


def staff_query(tenant_id: uuid.UUID, status: str, query: str) -> Select[Any]:
    statement: Select[Any] = select(  # type: ignore[assignment]
        User.id,
        User.display_name,
        User.given_name,
        User.family_name,
        User.user_name,
        User.email,
        User.department,
        User.role,
        User.active,
        User.deleted_at,
        User.source,
        User.updated_at,
        _sort_key.label("sort_key"),
    ).where(User.tenant_id == tenant_id)
    condition = _status_condition(status)
    if condition is not None:
        statement = statement.where(condition)
    if query:
        statement = statement.where(_search_text.like(_like_pattern(query), escape="\\"))
    return statement


def page_statement(
    tenant_id: uuid.UUID,
    status: str,
    query: str,
    after: tuple[str, uuid.UUID] | None,
    before: tuple[str, uuid.UUID] | None,
) -> Select[Any]:
    """One page plus one row (to know whether there is another), in name order."""
    statement = staff_query(tenant_id, status, query)
    position = tuple_(_sort_key, User.id)
    if before is not None:
        statement = statement.where(position < tuple_(*before)).order_by(
            desc(_sort_key), desc(User.id)
        )
    else:
        if after is not None:
            statement = statement.where(position > tuple_(*after))
        statement = statement.order_by(_sort_key, User.id)
    return statement.limit(PAGE_SIZE + 1)


def status_counts_statement(tenant_id: uuid.UUID) -> Select[int, int, int, int]:
    live = User.deleted_at.is_(None)
    return select(
        func.count().label("all"),
        func.count().filter(User.active, live).label("active"),
        func.count().filter(~User.active, live).label("deactivated"),
        func.count().filter(User.deleted_at.is_not(None)).label("deleted"),
    ).where(User.tenant_id == tenant_id)


async def load_page(
    request: Request,
    tenant_id: uuid.UUID,
    status: str,
    query: str,
    after: tuple[str, uuid.UUID] | None,
    before: tuple[str, uuid.UUID] | None,
) -> StaffPage:
    statement = page_statement(tenant_id, status, query, after, before)
    async with reading(request.app.state.engine) as conn:
        rows = list((await conn.execute(statement)).all())
    more = len(rows) > PAGE_SIZE
    rows = rows[:PAGE_SIZE]
    if before is not None:
        rows.reverse()
        has_next, has_previous = True, more
    else:
        has_next, has_previous = more, after is not None
    return StaffPage(
        rows=rows,
        next_cursor=encode_cursor(rows[-1].sort_key, rows[-1].id) if rows and has_next else None,
        previous_cursor=(
            encode_cursor(rows[0].sort_key, rows[0].id) if rows and has_previous else None
        ),
    )


async def status_counts(request: Request, tenant_id: uuid.UUID) -> dict[str, int]:
    async with reading(request.app.state.engine) as conn:
        row = (await conn.execute(status_counts_statement(tenant_id))).one()
    return dict(row._mapping)


@admin_page
async def staff_list(request: Request, admin: AdminContext) -> Response:
    status = request.query_params.get("status", "all")
    if status not in STATUSES:
        status = "all"
    # NUL cannot be in any stored text, so it cannot match anything.
    query = request.query_params.get("q", "").replace("\x00", "").strip()[:MAX_QUERY_LENGTH]
    page = await load_page(
        request,
        admin.tenant_id,
        status,
        query,
        decode_cursor(request.query_params.get("after")),
        decode_cursor(request.query_params.get("before")),
    )
    return render(
        request,
        "staff_list.html",
        {
            "section": "staff",
            "page": page,
            "status": status,
            "query": query,
            "counts": await status_counts(request, admin.tenant_id),
            "status_of": status_of,
            "source_labels": SOURCE_LABELS,
        },
        admin=admin,
    )


@admin_page
async def staff_detail(request: Request, admin: AdminContext) -> Response:
    try:
        user_id = uuid.UUID(request.path_params["user_id"])
    except ValueError:
        user_id = None
    async with reading(request.app.state.engine) as conn:
        person = None
        if user_id is not None:
            person = (
                await conn.execute(
                    select(*User.__table__.columns).where(
                        User.id == user_id, User.tenant_id == admin.tenant_id
                    )
                )
            ).first()
        if person is None:
            return message_page(
                request,
                404,
                "No such person",
                "There is nobody with that id in this workspace. Find them in the staff list.",
                admin=admin,
            )
        checkouts = (
            await conn.execute(
                select(
                    Asset.tag,
                    Asset.name,
                    Checkout.checked_out_at,
                    Checkout.returned_at,
                    Checkout.recovery_flagged_at,
                )
                .join(Asset, Asset.id == Checkout.asset_id)
                .where(Checkout.user_id == user_id, Checkout.tenant_id == admin.tenant_id)
                .order_by(desc(Checkout.checked_out_at))
                .limit(200)
            )
        ).all()
        audit = (
            await conn.execute(
                select(
                    AuditEntry.occurred_at,
                    AuditEntry.action,
                    AuditEntry.actor_idp,
                    AuditEntry.changes,
                    AuditEntry.request_id,
                )
                .where(AuditEntry.user_id == user_id, AuditEntry.tenant_id == admin.tenant_id)
                .order_by(desc(AuditEntry.occurred_at), desc(AuditEntry.id))
                .limit(200)
            )
        ).all()
    user = person
    return render(
        request,
        "staff_detail.html",
        {
            "section": "staff",
            "user": user,
            "status": status_of(user.active, user.deleted_at is not None),
            "checkouts": checkouts,
            "open_checkouts": sum(1 for c in checkouts if c.returned_at is None),
            "audit": audit,
            "source_labels": SOURCE_LABELS,
        },
        admin=admin,
    )


routes = [
    Route("/staff", staff_list, methods=["GET"]),
    Route("/staff/{user_id}", staff_detail, methods=["GET"]),
]
