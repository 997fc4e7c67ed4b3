"""Provisioning activity: what the IdP did lately and where each side effect is.

During an initial sync the admin sees progress ("Okta: 12,400 users created
in the last 10 minutes", and the last hour minute by minute with the
side-effect backlog, gateway/admin/sync_chart.py); ops find a failed side
effect and retry it, and an admin releases what the mass-deprovision guard
held. The live part is a fragment (``/activity/live``) the page fetches again
every few seconds.
"""

from __future__ import annotations

import uuid
from collections import defaultdict
from dataclasses import dataclass
from datetime import timedelta
from typing import Any, TypeVar

from sqlalchemy import Select, desc, func, select
from sqlalchemy.ext.asyncio import AsyncConnection
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway import side_effects
from gateway.admin import sync_chart
from gateway.admin.pages import admin_page, message_page, read_form, render
from gateway.admin.sessions import AdminContext
from gateway.db import reading, writing
from gateway.side_effects import dead_letters
from gateway.tenancy import OperatorError
from models.event_kinds import EVENT_KINDS, idp_label
from models.groups import Group
from models.outbox import EFFECTS, EventKind, ProvisioningEvent, RunStatus, SideEffectRun
from models.tenants import Tenant
from models.users import User

_Query = TypeVar("_Query", bound="Select[*tuple[Any, ...]]")

WINDOW_MINUTES = 10
RECENT_EVENTS = 50
REFRESH_SECONDS = 5
# The names of event kinds and IdPs are models/event_kinds.py's.
_KIND_ORDER = {kind: n for n, kind in enumerate(EVENT_KINDS)}
_KIND_LABELS = {kind: names.label for kind, names in EVENT_KINDS.items()}
# What an event is about, for the tables: a person (their email, else their
# userName) or a group (its name). Groups are deleted for real, so for a
# deleted group's events the name is the one the event itself recorded (a
# create or rename's new name, a delete's last name); an event that recorded
# none (a membership change) shows as a deleted group. Outer joins, so that
# a group's events are listed too.
_SUBJECT = (
    ProvisioningEvent.user_id,
    ProvisioningEvent.group_id,
    User.email,
    User.user_name,
    func.coalesce(
        Group.display_name,
        ProvisioningEvent.changes["displayName"][1].astext,
        ProvisioningEvent.changes["displayName"][0].astext,
    ).label("group_name"),
)


def _with_subject(query: _Query) -> _Query:
    """``query`` (which has provisioning_events in its FROM) joined to what each event is about."""
    return query.outerjoin(User, User.id == ProvisioningEvent.user_id).outerjoin(
        Group, Group.id == ProvisioningEvent.group_id
    )


@dataclass(frozen=True)
class EffectState:
    effect: str
    state: str  # pending, done, failed, held
    error: str | None


async def _summary(
    conn: AsyncConnection, tenant_id: uuid.UUID
) -> dict[str, list[tuple[int, str, str]]]:
    """Per IdP, (count, "user" or "group", verb): "Okta: 3 users created, 1 group updated"."""
    rows = await conn.execute(
        select(ProvisioningEvent.actor_idp, ProvisioningEvent.kind, func.count())
        .where(
            ProvisioningEvent.tenant_id == tenant_id,
            ProvisioningEvent.occurred_at >= func.now() - timedelta(minutes=WINDOW_MINUTES),
        )
        .group_by(ProvisioningEvent.actor_idp, ProvisioningEvent.kind)
    )
    by_idp: dict[str, list[tuple[int, str, str]]] = defaultdict(list)
    # People first, in their lifecycle's order, then groups.
    for idp, kind, count in sorted(rows, key=lambda row: _KIND_ORDER.get(row.kind, 99)):
        names = EVENT_KINDS.get(kind)
        noun, verb = (names.noun, names.verb) if names is not None else ("user", kind)
        by_idp[idp_label(idp)].append((count, noun, verb))
    return dict(sorted(by_idp.items()))


async def _effect_counts(conn: AsyncConnection, tenant_id: uuid.UUID) -> dict[str, int]:
    pending = (
        await conn.execute(
            select(func.count()).where(
                ProvisioningEvent.tenant_id == tenant_id, ProvisioningEvent.settled_at.is_(None)
            )
        )
    ).scalar_one()
    unfinished = await conn.execute(
        select(SideEffectRun.status, func.count())
        .join(ProvisioningEvent, ProvisioningEvent.id == SideEffectRun.event_id)
        .where(SideEffectRun.status != RunStatus.done.value)
        .where(ProvisioningEvent.tenant_id == tenant_id)
        .group_by(SideEffectRun.status)
    )
    counts = {"pending_events": pending, "failed": 0, "held": 0}
    counts.update({status: count for status, count in unfinished})
    return counts


async def _recent(conn: AsyncConnection, tenant_id: uuid.UUID) -> list[dict[str, Any]]:
    query = _with_subject(
        select(
            ProvisioningEvent.id,
            ProvisioningEvent.kind,
            ProvisioningEvent.occurred_at,
            ProvisioningEvent.actor_idp,
            ProvisioningEvent.settled_at,
            *_SUBJECT,
        ).select_from(ProvisioningEvent)
    )
    events = (
        await conn.execute(
            query.where(ProvisioningEvent.tenant_id == tenant_id)
            .order_by(desc(ProvisioningEvent.occurred_at), desc(ProvisioningEvent.id))
            .limit(RECENT_EVENTS)
        )
    ).all()
    runs: dict[int, dict[str, Any]] = defaultdict(dict)
    if events:
        for finished in await conn.execute(
            select(
                SideEffectRun.event_id,
                SideEffectRun.effect,
                SideEffectRun.status,
                SideEffectRun.error,
            ).where(SideEffectRun.event_id.in_([event.id for event in events]))
        ):
            runs[finished.event_id][finished.effect] = finished
    recent = []
    for event in events:
        effects = []
        for effect in EFFECTS.get(EventKind(event.kind), ()):
            run = runs[event.id].get(effect.value)
            effects.append(
                EffectState(
                    effect=effect.value,
                    state=run.status if run else "pending",
                    error=run.error if run else None,
                )
            )
        recent.append({"event": event, "effects": effects})
    return recent


async def _failed(conn: AsyncConnection, tenant_id: uuid.UUID) -> list[Any]:
    # A group's failed side effect is listed too: the "failed" count and
    # "Retry all" include it, so the table must show it.
    query = _with_subject(dead_letters(*_SUBJECT))
    return list(
        (
            await conn.execute(
                query.where(ProvisioningEvent.tenant_id == tenant_id)
                .order_by(desc(SideEffectRun.finished_at))
                .limit(100)
            )
        ).all()
    )


async def _live_context(request: Request, admin: AdminContext) -> dict[str, Any]:
    async with reading(request.app.state.engine) as conn:
        guard = (
            await conn.execute(
                select(Tenant.guard_tripped_at, func.now().label("now")).where(
                    Tenant.id == admin.tenant_id
                )
            )
        ).one()
        return {
            "section": "activity",
            "kind_labels": _KIND_LABELS,
            "idp_label": idp_label,
            "window_minutes": WINDOW_MINUTES,
            "refresh_seconds": REFRESH_SECONDS,
            "summary": await _summary(conn, admin.tenant_id),
            "counts": await _effect_counts(conn, admin.tenant_id),
            "recent": await _recent(conn, admin.tenant_id),
            "failed": await _failed(conn, admin.tenant_id),
            "chart": await sync_chart.last_hour(conn, admin.tenant_id),
            "series": sync_chart.SERIES,
            "width": sync_chart.WIDTH,
            "height": sync_chart.HEIGHT,
            "left": sync_chart.PLOT_LEFT,
            "top": sync_chart.PLOT_TOP,
            "bottom": sync_chart.PLOT_TOP + sync_chart.PLOT_HEIGHT,
            "guard_tripped_at": guard.guard_tripped_at,
            "updated_at": guard.now,
            "notice": {
                "retried": "Put back in the queue; the workers run it again now.",
                "released": "Released: the held deactivations take effect now.",
            }.get(request.query_params.get("notice", "")),
        }


@admin_page
async def activity(request: Request, admin: AdminContext) -> Response:
    return render(request, "activity.html", await _live_context(request, admin), admin=admin)


@admin_page
async def activity_live(request: Request, admin: AdminContext) -> Response:
    return render(request, "_activity_live.html", await _live_context(request, admin), admin=admin)


async def _tenant_dead_letters(
    conn: AsyncConnection, tenant_id: uuid.UUID, wanted: str
) -> list[str]:
    """This tenant's failed side effects matching ``wanted`` (an id, or "all")."""
    query = (
        select(SideEffectRun.event_id, SideEffectRun.effect)
        .join(ProvisioningEvent, ProvisioningEvent.id == SideEffectRun.event_id)
        .where(SideEffectRun.status == RunStatus.failed.value)
        .where(ProvisioningEvent.tenant_id == tenant_id)
    )
    if wanted != "all":
        number, _, effect = wanted.partition(":")
        if not number.isdigit() or not effect or len(number) > 18:
            return []
        query = query.where(SideEffectRun.event_id == int(number), SideEffectRun.effect == effect)
    return [f"{row.event_id}:{row.effect}" for row in await conn.execute(query)]


@admin_page
async def retry(request: Request, admin: AdminContext) -> Response:
    form = await read_form(request)
    wanted = str(form.get("id", ""))
    async with writing(request.app.state.engine) as conn:
        # Only this tenant's dead letters: the CLI's operation is global.
        ids = await _tenant_dead_letters(conn, admin.tenant_id, wanted)
        if not ids and wanted == "all":
            return RedirectResponse("/activity", status_code=303)
        if not ids:
            return message_page(
                request,
                404,
                "Nothing to retry",
                "That side effect is not failed (any more) in this workspace.",
                admin=admin,
            )
        try:
            await conn.run_sync(side_effects.retry_side_effects, ids)
        except OperatorError as exc:
            return message_page(request, 409, "Not retried", str(exc), admin=admin)
    return RedirectResponse("/activity?notice=retried", status_code=303)


@admin_page
async def release_guard(request: Request, admin: AdminContext) -> Response:
    form = await read_form(request)
    if form.get("confirm") != "yes":
        return message_page(
            request,
            400,
            "Not released",
            "Tick the confirmation first: releasing locks the held leavers out and sends their "
            "notifications.",
            admin=admin,
        )
    async with writing(request.app.state.engine) as conn:
        await conn.run_sync(side_effects.release_guard, admin.tenant_slug)
    return RedirectResponse("/activity?notice=released", status_code=303)


routes = [
    Route("/activity", activity, methods=["GET"]),
    Route("/activity/live", activity_live, methods=["GET"]),
    Route("/activity/retry", retry, methods=["POST"]),
    Route("/activity/guard/release", release_guard, methods=["POST"]),
]
