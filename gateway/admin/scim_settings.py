"""Settings → Integrations → SCIM 2.0: the card from the setup guide.

Ticking *Enable this integration* and saving generates the bearer token and
shows it once, in the answer to that POST; it is never stored in clear, so
it cannot be shown again (a reload asks the server again and gets the card
without it). Regenerating needs an explicit confirmation because the IdP's
token stops working at once.
"""

from __future__ import annotations

import logging
from typing import Any

from sqlalchemy import select
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway import role_mappings, tenancy
from gateway.admin.pages import admin_page, message_page, read_form, render
from gateway.admin.sessions import AdminContext
from gateway.db import reading, writing
from gateway.settings import Settings
from gateway.tenancy import IssuedToken, OperatorError
from models.tenants import Plan, ScimCredential, Tenant
from models.users import Role

log = logging.getLogger("simpleams.gateway.admin")
# How events record a role change made on this page.
ADMIN_PAGES = "SimpleAMS admin pages"

PATH = "/settings/integrations/scim"
_NOTICES = {
    "saved": "Saved.",
    "disabled": "SCIM provisioning is disabled; the token no longer works.",
    "mapped": "Role mapping saved; its group's members have their new role.",
    "unmapped": "Role mapping removed; its group's members are back to their other groups' role.",
}


async def _card(request: Request, admin: AdminContext) -> dict[str, Any]:
    async with reading(request.app.state.engine) as conn:
        tenant = (
            await conn.execute(
                select(Tenant.plan, Tenant.scim_enabled).where(Tenant.id == admin.tenant_id)
            )
        ).one()
        credential = (
            await conn.execute(
                select(
                    ScimCredential.token_prefix,
                    ScimCredential.created_at,
                    ScimCredential.last_used_at,
                ).where(
                    ScimCredential.tenant_id == admin.tenant_id,
                    ScimCredential.revoked_at.is_(None),
                )
            )
        ).first()
        mappings = await conn.run_sync(role_mappings.list_mappings, admin.tenant_slug)
    settings: Settings = request.app.state.settings
    return {
        "mappings": mappings,
        "roles": [role.value for role in Role],
        "plan": Plan(tenant.plan),
        "business": Plan(tenant.plan).includes_scim,
        "enabled": tenant.scim_enabled and credential is not None,
        "credential": credential,
        "endpoint": settings.endpoint_for(admin.tenant_slug),
        "notice": _NOTICES.get(request.query_params.get("notice", "")),
        "new_token": None,
        "section": "settings",
    }


@admin_page
async def show(request: Request, admin: AdminContext) -> Response:
    return render(request, "scim_settings.html", await _card(request, admin), admin=admin)


@admin_page
async def save(request: Request, admin: AdminContext) -> Response:
    form = await read_form(request)
    wanted = form.get("enabled") == "on"
    card = await _card(request, admin)
    if wanted and not card["business"]:
        return _not_business(request, admin, card)
    if wanted == card["enabled"]:
        return RedirectResponse(f"{PATH}?notice=saved", status_code=303)
    if not wanted:
        async with writing(request.app.state.engine) as conn:
            await conn.run_sync(tenancy.disable, admin.tenant_slug)
        log.info("SCIM disabled by admin admin_id=%s tenant=%s", admin.admin_id, admin.tenant_slug)
        return RedirectResponse(f"{PATH}?notice=disabled", status_code=303)
    return await _issue(request, admin, tenancy.enable)


@admin_page
async def regenerate(request: Request, admin: AdminContext) -> Response:
    form = await read_form(request)
    card = await _card(request, admin)
    if not card["business"]:
        return _not_business(request, admin, card)
    if not card["enabled"]:
        return RedirectResponse(PATH, status_code=303)
    if form.get("confirm") != "yes":
        card["error"] = (
            "Tick the confirmation first: the current token stops working as soon as a new one "
            "is generated, so your IdP needs the new one straight away."
        )
        return render(request, "scim_settings.html", card, status_code=400, admin=admin)
    return await _issue(request, admin, tenancy.rotate_token)


async def _issue(request: Request, admin: AdminContext, issue: Any) -> Response:
    try:
        async with writing(request.app.state.engine) as conn:
            issued: IssuedToken | None = await conn.run_sync(issue, admin.tenant_slug)
    except OperatorError as exc:
        return message_page(request, 409, "Not changed", str(exc), admin=admin)
    if issued is None:  # enabled meanwhile (another Save): its token stands
        return RedirectResponse(f"{PATH}?notice=saved", status_code=303)
    log.info(
        "SCIM token issued by admin admin_id=%s tenant=%s prefix=%s",
        admin.admin_id,
        admin.tenant_slug,
        issued.prefix,
    )
    card = await _card(request, admin)
    card["new_token"] = issued.token
    # Shown in this answer only: the page is not cached, and a reload is a GET.
    return render(request, "scim_settings.html", card, admin=admin)


@admin_page
async def roles(request: Request, admin: AdminContext) -> Response:
    """Map an IdP group to a role, or remove a mapping (the CLI's ``simpleams roles``)."""
    form = await read_form(request)
    group = str(form.get("group", ""))
    try:
        async with writing(request.app.state.engine) as conn:
            if form.get("action") == "unmap":
                changed = await conn.run_sync(
                    role_mappings.unmap_group, admin.tenant_slug, group, ADMIN_PAGES
                )
                notice = "unmapped"
            else:
                changed = await conn.run_sync(
                    role_mappings.map_group,
                    admin.tenant_slug,
                    group,
                    str(form.get("role", "")),
                    ADMIN_PAGES,
                )
                notice = "mapped"
    except OperatorError as exc:
        card = await _card(request, admin)
        card["error"] = str(exc)
        return render(request, "scim_settings.html", card, status_code=400, admin=admin)
    log.info(
        "role mapping %s by admin admin_id=%s tenant=%s roles_changed=%s",
        notice,
        admin.admin_id,
        admin.tenant_slug,
        changed,
    )
    return RedirectResponse(f"{PATH}?notice={notice}", status_code=303)


def _not_business(request: Request, admin: AdminContext, card: dict[str, Any]) -> Response:
    card["error"] = (
        f"SCIM provisioning is a Business-plan integration, and this workspace is on the "
        f"{card['plan'].value.capitalize()} plan. Upgrade to Business to enable it."
    )
    return render(request, "scim_settings.html", card, status_code=403, admin=admin)


routes = [
    Route(PATH, show, methods=["GET"]),
    Route(PATH, save, methods=["POST"]),
    Route(f"{PATH}/regenerate", regenerate, methods=["POST"]),
    Route(f"{PATH}/roles", roles, methods=["POST"]),
]
