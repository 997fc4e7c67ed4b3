"""A browser, as far as the admin pages can tell: cookies, forms and their CSRF tokens.

Used by tests/integration/test_admin_pages.py. The admin pages are driven
through the gateway's ASGI interface, with redirects not followed so that a
test can assert every 303 and where it goes.
"""

from __future__ import annotations

import contextlib
import re
from collections.abc import AsyncIterator
from typing import Any

import httpx2
from sqlalchemy import Engine

from gateway.admin import accounts

PASSWORD = "correct horse battery staple"
CSRF_FIELD = re.compile(r'name="csrf_token" value="([^"]+)"')
SESSION_COOKIE = "sams_session"
SECURE_SESSION_COOKIE = "__Host-sams_session"
LOGIN_CSRF_COOKIE = "sams_login_csrf"


def create_admin(db: Engine, slug: str, email: str, password: str = PASSWORD) -> None:
    """An admin of tenant ``slug``, as `simpleams admin create` makes one."""
    with db.begin() as conn:
        accounts.create_admin(conn, slug, email, password)


def csrf_of(html: str) -> str:
    """The hidden csrf_token of the first form on a page."""
    found = CSRF_FIELD.search(html)
    assert found is not None, f"no csrf_token field in:\n{html[:2000]}"
    return found.group(1)


@contextlib.asynccontextmanager
async def browser(
    app: Any,
    base_url: str = "http://localhost",
    client: tuple[str, int] = ("127.0.0.1", 123),
    **kwargs: Any,
) -> AsyncIterator[httpx2.AsyncClient]:
    """One browser (one cookie jar) talking to ``app`` from address ``client``."""
    async with httpx2.AsyncClient(
        transport=httpx2.ASGITransport(app=app, client=client),
        base_url=base_url,
        follow_redirects=False,
        **kwargs,
    ) as http:
        yield http


async def login_form(http: httpx2.AsyncClient, next_path: str | None = None) -> str:
    """GET /login; returns its csrf_token (the browser now holds the matching cookie)."""
    page = await http.get("/login", params={"next": next_path} if next_path else None)
    assert page.status_code == 200, page.text
    return csrf_of(page.text)


async def submit_login(
    http: httpx2.AsyncClient,
    workspace: str | None,
    email: str,
    password: str = PASSWORD,
    next_path: str | None = None,
) -> httpx2.Response:
    """Fill in and send the sign-in form, as a person would."""
    form = {"csrf_token": await login_form(http), "email": email, "password": password}
    if workspace is not None:
        form["workspace"] = workspace
    if next_path is not None:
        form["next"] = next_path
    return await http.post("/login", data=form)


async def sign_in(
    http: httpx2.AsyncClient, workspace: str | None, email: str, password: str = PASSWORD
) -> str:
    """Sign in and return the session cookie's value."""
    answer = await submit_login(http, workspace, email, password)
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == "/staff"
    name = SECURE_SESSION_COOKIE if http.base_url.scheme == "https" else SESSION_COOKIE
    value = http.cookies.get(name)
    assert value, f"no {name} cookie after signing in"
    return value


async def page_csrf(http: httpx2.AsyncClient, path: str) -> str:
    """The session's CSRF token, from a signed-in page's forms."""
    page = await http.get(path)
    assert page.status_code == 200, (path, page.status_code, page.text[:500])
    return csrf_of(page.text)


def set_cookies(response: httpx2.Response) -> list[str]:
    """Every Set-Cookie header of a response, raw."""
    return response.headers.get_list("set-cookie")


def cookie_header(response: httpx2.Response, name: str) -> str | None:
    """The raw Set-Cookie header for cookie ``name``, if the response set it."""
    for header in set_cookies(response):
        if header.startswith(f"{name}="):
            return header
    return None
