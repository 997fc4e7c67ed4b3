"""/login and /logout for tenant admins.

A wrong workspace, email or password all get the same answer, after the
same argon2 work, so the page does not reveal who is an admin.

Failed sign-ins are throttled (429 with Retry-After), in each process, over
15 minutes, by two rules:

* per client address: past ``sign_in_failures`` failures, the address is
  refused for every account, even with the right password;
* per account: past ``sign_in_failures`` failures from any addresses, an
  address that has itself failed on that account is refused for it, while
  an address that has not may still try. So strangers cannot lock the admin
  out (their failures do not stop the admin's own address), and a guesser
  spread over many addresses gets one guess per address, not ten
  (OWASP's Authentication Cheat Sheet: account lockout without the denial
  of service).

argon2 (64 MiB a computation) runs at most ``password_hashes_at_once`` at a
time per process, with ``password_hashes_waiting`` more waiting; past that
a sign-in gets 503 with Retry-After at once (passwords.HashingLimit).
"""

from __future__ import annotations

import logging

from sqlalchemy import func, select
from starlette.applications import Starlette
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response
from starlette.routing import Route

from gateway.admin import passwords, sessions
from gateway.admin.pages import admin_page, message_page, read_form, render
from gateway.admin.sessions import AdminContext
from gateway.db import reading, writing
from gateway.settings import Settings
from gateway.tenancy import request_host
from gateway.throttle import FailedAuthThrottle
from models.admins import Admin
from models.tenants import Tenant
from observability import logs

log = logging.getLogger("simpleams.gateway.admin")

SIGN_IN_WINDOW_SECONDS = 900.0
# Seconds a sign-in turned away for want of argon2 capacity is asked to wait.
BUSY_RETRY_AFTER_SECONDS = 2

SignInThrottles = tuple[FailedAuthThrottle, FailedAuthThrottle, FailedAuthThrottle]


def sign_in_throttles(settings: Settings) -> SignInThrottles:
    """(per client address, per account, per account and address) failed
    sign-in counters for one process; the last only remembers whether the
    address failed on the account within the window."""
    return (
        FailedAuthThrottle(limit=settings.sign_in_failures, window=SIGN_IN_WINDOW_SECONDS),
        FailedAuthThrottle(limit=settings.sign_in_failures, window=SIGN_IN_WINDOW_SECONDS),
        FailedAuthThrottle(limit=1, window=SIGN_IN_WINDOW_SECONDS),
    )


def password_hashing(app: Starlette) -> passwords.HashingLimit:
    """This process's bound on argon2 work for sign-ins (made by create_app)."""
    limit: passwords.HashingLimit = app.state.password_hashing
    return limit


def refused_for(throttles: SignInThrottles, client: str, account: str) -> int | None:
    """Seconds until ``client`` may try ``account`` again, or None when it may now."""
    by_address, by_account, by_address_on_account = throttles
    wait = by_address.retry_after(client)
    if wait is not None:
        return wait
    account_wait = by_account.retry_after(account)
    if account_wait is None:
        return None
    # The account is under attack: only addresses that have not failed on it may try.
    own_wait = by_address_on_account.retry_after(_address_on_account(client, account))
    return None if own_wait is None else min(account_wait, own_wait)


def record_failed_sign_in(throttles: SignInThrottles, client: str, account: str) -> None:
    by_address, by_account, by_address_on_account = throttles
    by_address.record_failure(client)
    by_account.record_failure(account)
    by_address_on_account.record_failure(_address_on_account(client, account))


def _address_on_account(client: str, account: str) -> str:
    return f"{client} {account}"  # an address has no space in it


def _safe_next(value: object) -> str:
    """Only a path on this site: never an open redirect to somewhere else."""
    if isinstance(value, str) and value.startswith("/") and not value.startswith(("//", "/\\")):
        return value
    return "/staff"


def _client(request: Request) -> str:
    return request.client.host if request.client else "-"


def _login_form(
    request: Request, status_code: int = 200, error: str | None = None, **values: str
) -> Response:
    settings: Settings = request.app.state.settings
    host_slug = settings.addresses.slug_of(request_host(request.scope["headers"]))
    csrf = sessions.new_login_csrf()
    response = render(
        request,
        "login.html",
        {
            "csrf_token": csrf,
            "host_slug": host_slug,
            "next": _safe_next(values.get("next") or request.query_params.get("next")),
            "workspace": values.get("workspace", ""),
            "email": values.get("email", ""),
            "error": error,
            "signed_out": request.query_params.get("signed_out") == "1",
        },
        status_code=status_code,
    )
    response.headers["Cache-Control"] = "no-store"
    sessions.set_login_csrf_cookie(response, request, csrf)
    return response


async def login_page(request: Request) -> Response:
    if await sessions.current(request) is not None:
        return RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    return _login_form(request)


async def login(request: Request) -> Response:
    settings: Settings = request.app.state.settings
    form = await read_form(request)
    email = str(form.get("email", "")).strip()[:320]
    password = str(form.get("password", ""))
    target = _safe_next(form.get("next"))
    host_slug = settings.addresses.slug_of(request_host(request.scope["headers"]))
    workspace = host_slug or str(form.get("workspace", "")).strip().lower()[:63]
    if not sessions.same_origin(request) or not sessions.tokens_match(
        form.get("csrf_token"), request.cookies.get(sessions.LOGIN_CSRF_COOKIE)
    ):
        return _login_form(
            request,
            403,
            "The sign-in form expired or did not come from this page. Try again.",
            workspace=workspace,
            email=email,
            next=target,
        )
    throttles: SignInThrottles = request.app.state.sign_in_throttles
    client = _client(request)
    account = f"{workspace}:{email.lower()}"
    wait = refused_for(throttles, client, account)
    if wait is not None:
        log.warning("throttling admin sign-ins client=%s retry_after=%s", client, wait)
        response = message_page(
            request,
            429,
            "Too many attempts",
            f"Too many failed sign-ins. Wait {max(1, wait // 60)} minute(s), then try again, "
            "or ask SimpleAMS support to reset your password.",
        )
        response.headers["Retry-After"] = str(wait)
        return response

    row = None
    # PostgreSQL text cannot hold NUL, so no admin has one: a failed sign-in
    # like any other wrong value (and it is counted), without asking the database.
    if "\x00" not in email + workspace:
        async with reading(request.app.state.engine) as conn:
            row = (
                await conn.execute(
                    select(Admin.id, Admin.password_hash, Tenant.id.label("tenant_id"))
                    .join(Tenant, Tenant.id == Admin.tenant_id)
                    .where(Tenant.slug == workspace, func.lower(Admin.email) == email.lower())
                )
            ).first()
    try:
        verified = await password_hashing(request.app).verify(
            row.password_hash if row else None, password
        )
    except passwords.HashingBusy:
        log.warning("admin sign-in turned away, argon2 at capacity client=%s", client)
        response = message_page(
            request,
            503,
            "Busy",
            "Too many sign-ins at once on this server. Wait a few seconds, then try again.",
        )
        response.headers["Retry-After"] = str(BUSY_RETRY_AFTER_SECONDS)
        return response
    if row is None or not verified:
        record_failed_sign_in(throttles, client, account)
        log.info("admin sign-in failed client=%s workspace=%s", client, workspace)
        return _login_form(
            request,
            400,
            "That workspace, email and password do not match an admin. Check them and try again.",
            workspace=workspace,
            email=email,
            next=target,
        )
    async with writing(request.app.state.engine) as conn:
        token = await sessions.start(conn, row.id, row.tenant_id, settings)
    logs.bind(tenant=workspace)  # the slug of the tenant just signed in to
    log.info("admin signed in admin_id=%s workspace=%s", row.id, workspace)
    response = RedirectResponse(target, status_code=303)
    sessions.set_session_cookie(response, request, token, settings.admin_session_hours)
    response.delete_cookie(sessions.LOGIN_CSRF_COOKIE, path="/login")
    return response


@admin_page
async def logout(request: Request, admin: AdminContext) -> Response:
    await sessions.end(request, admin)
    response = RedirectResponse("/login?signed_out=1", status_code=303)
    sessions.clear_session_cookie(response, request)
    return response


async def home(request: Request) -> Response:
    return RedirectResponse("/staff", status_code=303)


routes = [
    Route("/", home, methods=["GET"]),
    Route("/login", login_page, methods=["GET"]),
    Route("/login", login, methods=["POST"]),
    Route("/logout", logout, methods=["POST"]),
]
