"""Every admin page's route, for gateway/app.py."""

from __future__ import annotations

from starlette.routing import BaseRoute, Mount
from starlette.staticfiles import StaticFiles

from gateway.admin import activity, scim_settings, sign_in, staff
from gateway.admin.pages import HERE


def routes() -> list[BaseRoute]:
    return [
        *sign_in.routes,
        *scim_settings.routes,
        *staff.routes,
        *activity.routes,
        Mount("/static", StaticFiles(directory=HERE / "static"), name="static"),
    ]
