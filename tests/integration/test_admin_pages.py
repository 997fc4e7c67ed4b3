"""The admin pages, driven as a browser drives them, against the real database.

What this proves:

* signing in sets a server-side session cookie (HttpOnly, SameSite=Lax, and
  ``__Host-``/Secure over HTTPS), never follows ``next`` off the site, and
  answers a wrong workspace, email or password with one indistinguishable 400;
* every POST needs the form's CSRF token and a same-site Origin, and a refused
  one changes nothing; signed-out visitors are sent to /login (GET) or get
  401 (POST); signing out, or a password reset, ends sessions on the server;
* failed sign-ins are throttled per client address and per account;
* Settings → Integrations → SCIM 2.0 issues a working token shown once,
  does not rotate it on a re-save, rotates only when confirmed, disables it,
  and refuses the free and pro plans;
* one tenant's admin never sees, nor acts on, another tenant's staff or
  dead letters, and a session is signed out on another tenant's host;
* the staff list filters by status, searches names and emails literally,
  and pages by keyset without skipping or repeating anyone;
* the staff detail shows checkouts and the audit trail; the activity page
  summarises changes by IdP and retries dead letters and releases the guard;
* `simpleams admin create` makes an admin who can sign in;
* browser-facing security headers, and HTML (not SCIM JSON) errors outside
  /scim/v2, even for a value PostgreSQL refuses;
* a double-clicked Save hands out one working token, and every dead letter
  can be retried from the page, however many there are.
"""

from __future__ import annotations

import asyncio
import base64
import re
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, timedelta
from typing import Any
from urllib.parse import quote, urljoin, urlsplit

import httpx2
import pytest
from sqlalchemy import Engine, insert, text

from gateway import staff_history
from gateway.admin import accounts
from gateway.app import create_app
from gateway.settings import Settings
from gateway.tenancy import OperatorError
from models.audit import AuditEntry
from models.outbox import SideEffectRun
from models.tenants import Plan
from tests.conftest import SCIM_JSON, TenantHandle, make_tenant, scim_client, user_body
from tests.db import rows, scalar
from tests.integration.admin_client import (
    LOGIN_CSRF_COOKIE,
    PASSWORD,
    SECURE_SESSION_COOKIE,
    SESSION_COOKIE,
    browser,
    cookie_header,
    create_admin,
    csrf_of,
    login_form,
    page_csrf,
    set_cookies,
    sign_in,
    submit_login,
)
from tests.integration.cli import simpleams

ADMIN = "admin@acme.test"
SCIM_PAGE = "/settings/integrations/scim"
# The one-time token card's field (the settings card shows only the prefix).
SHOWN_TOKEN = re.compile(r'id="bearer-token" readonly value="(sams_scim_[A-Za-z0-9_\-]+)"')
BROWSER_ACCEPT = "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8"
SIGN_IN_REFUSED = (
    "That workspace, email and password do not match an admin. Check them and try again."
)
OKTA = {"User-Agent": "Okta SCIM Client 1.0.0"}
ENTRA = {"User-Agent": "Azure AD SCIM Provisioning"}
DEACTIVATE = {"Operations": [{"op": "replace", "value": {"active": False}}]}
EVIL = "https://evil.example"
# A row of the staff list: its status, the person's staff id and the name shown.
STAFF_ROW = re.compile(
    r'<tr data-status="(\w+)">\s*<th scope="row"><a href="/staff/([0-9a-f-]{36})">([^<]*)</a>'
)
NEXT_LINK = re.compile(r'rel="next" href="[^"]*;after=([A-Za-z0-9_\-]+)"')
PREV_LINK = re.compile(r'rel="prev" href="[^"]*;before=([A-Za-z0-9_\-]+)"')


# --- helpers ------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _fresh_sign_in_throttles(app: Any) -> None:
    for throttle in app.state.sign_in_throttles:
        throttle.clear()


@pytest.fixture
def acme_admin(db: Engine, tenant: TenantHandle) -> str:
    create_admin(db, tenant.slug, ADMIN)
    return ADMIN


@pytest.fixture
async def signed_in(app: Any, acme_admin: str) -> AsyncIterator[httpx2.AsyncClient]:
    """The browser of acme's admin, signed in."""
    async with browser(app) as http:
        await sign_in(http, "acme", acme_admin)
        yield http


def session_count(db: Engine) -> int:
    return int(scalar(db, "SELECT count(*) FROM admin_sessions"))


def staff_id(db: Engine, email: str) -> str:
    return str(scalar(db, "SELECT id FROM users WHERE lower(email) = lower(:e)", e=email))


def staff_rows(html: str) -> list[tuple[str, str, str]]:
    """(status, staff id, name) of every row of a staff list page, in order."""
    return STAFF_ROW.findall(html)


def names_on(html: str) -> list[str]:
    return [name for _, _, name in staff_rows(html)]


def same_site(location: str, base: str = "http://localhost/") -> bool:
    """Where a browser goes for this Location: still this host?"""
    return urlsplit(urljoin(base, location)).netloc == urlsplit(base).netloc


async def scim_status(app: Any, token: str) -> int:
    """What an IdP holding ``token`` gets from GET /scim/v2/Users."""
    async with scim_client(app) as idp:
        return (await idp.get("/Users", headers={"Authorization": f"Bearer {token}"})).status_code


@pytest.fixture
async def idp(app: Any, tenant: TenantHandle) -> AsyncIterator[httpx2.AsyncClient]:
    """acme's IdP, as Okta (the User-Agent names it)."""
    async with scim_client(app, {**tenant.headers, **OKTA}) as http:
        yield http


async def provision(idp: httpx2.AsyncClient, email: str, **extra: Any) -> dict[str, Any]:
    created = await idp.post("/Users", json=user_body(email, **extra))
    assert created.status_code == 201, created.text
    body: dict[str, Any] = created.json()
    return body


# --- 1. signing in ---------------------------------------------------------------


async def test_the_right_password_signs_in_with_an_httponly_lax_server_side_session(
    app: Any, db: Engine, acme_admin: str
) -> None:
    async with browser(app) as http:
        answer = await submit_login(http, "acme", acme_admin)

        assert answer.status_code == 303
        assert answer.headers["location"] == "/staff"
        cookie = cookie_header(answer, SESSION_COOKIE)
        assert cookie is not None, set_cookies(answer)
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert "httponly" in attributes
        assert "samesite=lax" in attributes
        assert "path=/" in attributes
        assert "secure" not in attributes  # plain http: a Secure cookie would never come back
        assert not any(a.startswith("domain=") for a in attributes)
        # The one-use sign-in CSRF cookie is dropped.
        dropped = cookie_header(answer, LOGIN_CSRF_COOKIE)
        assert dropped is not None and "max-age=0" in dropped.lower()

        value = http.cookies[SESSION_COOKIE]
        staff = await http.get("/staff")
        assert staff.status_code == 200
        assert acme_admin in staff.text

    # Server-side: one row, holding a digest of the cookie, not the cookie.
    session = rows(db, "SELECT token_hash FROM admin_sessions")
    assert len(session) == 1 and session[0].token_hash != value and value not in session[0]
    assert scalar(db, "SELECT last_sign_in_at FROM admins WHERE email = :e", e=ADMIN) is not None


async def test_the_email_is_matched_case_insensitively(app: Any, acme_admin: str) -> None:
    async with browser(app) as http:
        answer = await submit_login(http, " ACME ", acme_admin.upper())
        assert answer.status_code == 303 and answer.headers["location"] == "/staff"


async def test_over_https_the_cookie_is_host_prefixed_and_secure(app: Any, acme_admin: str) -> None:
    async with browser(app, base_url="https://acme.simpleams.test") as http:
        # On the tenant's own host there is no workspace field to fill in.
        page = await http.get("/login")
        assert 'name="workspace"' not in page.text
        assert "Workspace <strong>acme</strong>" in page.text
        login_cookie = cookie_header(page, LOGIN_CSRF_COOKIE)
        assert login_cookie is not None and "secure" in login_cookie.lower()

        answer = await submit_login(http, None, acme_admin)

        assert answer.status_code == 303, answer.text
        cookie = cookie_header(answer, SECURE_SESSION_COOKIE)
        assert cookie is not None, set_cookies(answer)
        attributes = [part.strip().lower() for part in cookie.split(";")]
        assert {"secure", "httponly", "samesite=lax", "path=/"} <= set(attributes)
        assert not any(a.startswith("domain=") for a in attributes)  # required by __Host-
        assert cookie_header(answer, SESSION_COOKIE) is None
        assert answer.headers["strict-transport-security"].startswith("max-age=")

        staff = await http.get("/staff")
        assert staff.status_code == 200 and acme_admin in staff.text


async def test_on_a_tenant_host_the_host_names_the_workspace_not_the_form(
    app: Any, db: Engine, acme_admin: str
) -> None:
    make_tenant(db, "globex")
    create_admin(db, "globex", acme_admin)  # the same person, admin of both

    async with browser(app, base_url="http://acme.simpleams.test") as http:
        answer = await submit_login(http, "globex", acme_admin)
        assert answer.status_code == 303

    signed_into = scalar(
        db, "SELECT t.slug FROM admin_sessions s JOIN tenants t ON t.id = s.tenant_id"
    )
    assert signed_into == "acme"


async def test_a_wrong_password_unknown_email_and_unknown_workspace_get_the_same_400(
    app: Any, db: Engine, acme_admin: str
) -> None:
    answers = []
    async with browser(app) as http:
        for workspace, email, password in (
            ("acme", acme_admin, "not the password at all"),
            ("acme", "nobody@acme.test", PASSWORD),
            ("nosuchco", acme_admin, PASSWORD),
            ("acme", acme_admin, ""),
        ):
            answer = await submit_login(http, workspace, email, password)
            answers.append(answer)
            assert answer.status_code == 400, (workspace, email, answer.text[:300])
            assert SIGN_IN_REFUSED in answer.text
            assert cookie_header(answer, SESSION_COOKIE) is None
        assert SESSION_COOKIE not in http.cookies
        assert (await http.get("/staff")).status_code == 303

    # Nothing on the page tells the three cases apart but what the visitor typed.
    errors = {tuple(re.findall(r'<p class="error"[^>]*>([^<]*)</p>', a.text)) for a in answers}
    assert errors == {(SIGN_IN_REFUSED,)}
    assert session_count(db) == 0


async def test_next_is_followed_only_when_it_is_a_path_on_this_site(
    app: Any, acme_admin: str
) -> None:
    async with browser(app) as http:
        inside = await submit_login(http, "acme", acme_admin, next_path="/activity?x=1")
        assert inside.status_code == 303 and inside.headers["location"] == "/activity?x=1"

    for evil in (
        "//evil.example",
        "https://evil.example",
        "http:evil.example",
        "/\\evil.example",
        "\\\\evil.example",
        "//evil.example/%2F..",
        "/\t/evil.example",
        " //evil.example",
        "javascript:alert(1)",
    ):
        async with browser(app) as http:
            answer = await submit_login(http, "acme", acme_admin, next_path=evil)
            assert answer.status_code == 303, evil
            location = answer.headers["location"]
            assert same_site(location), (evil, location)
            assert location.startswith("/") and not location.startswith(("//", "/\\")), evil

            # Already signed in, GET /login?next=… redirects at once: also only on site.
            again = await http.get("/login", params={"next": evil})
            assert again.status_code == 303, evil
            assert same_site(again.headers["location"]), (evil, again.headers["location"])

            # The login form carries it only as a path (the POST above shows where it leads).
            async with browser(app) as fresh:
                form = await fresh.get("/login", params={"next": evil})
                carried = re.search(r'name="next" value="([^"]*)"', form.text)
                assert carried is not None, evil
                assert carried.group(1).startswith("/"), (evil, carried.group(1))
                assert not carried.group(1).startswith(("//", "/\\")), (evil, carried.group(1))


# --- 2. CSRF ---------------------------------------------------------------------


async def test_sign_in_without_the_double_submit_pair_is_refused(
    app: Any, db: Engine, acme_admin: str
) -> None:
    form = {"workspace": "acme", "email": acme_admin, "password": PASSWORD}
    async with browser(app) as http, browser(app) as other:
        token = await login_form(http)
        other_token = await login_form(other)
        attempts = [
            await http.post("/login", data=form),  # no token
            await http.post("/login", data={**form, "csrf_token": ""}),
            await http.post("/login", data={**form, "csrf_token": other_token}),  # not its cookie
        ]
        # The right pair, but sent from another site's page.
        fresh = await login_form(http)
        attempts.append(
            await http.post("/login", data={**form, "csrf_token": fresh}, headers={"Origin": EVIL})
        )
        async with browser(app) as no_cookie:  # never loaded the form
            attempts.append(await no_cookie.post("/login", data={**form, "csrf_token": token}))
        for answer in attempts:
            assert answer.status_code == 403, answer.text[:300]
            assert cookie_header(answer, SESSION_COOKIE) is None
        assert SESSION_COOKIE not in http.cookies
        assert session_count(db) == 0

        # The same browser with its own token and its own page's Origin gets in.
        fresh = await login_form(http)
        ok = await http.post(
            "/login", data={**form, "csrf_token": fresh}, headers={"Origin": "http://localhost"}
        )
        assert ok.status_code == 303
    assert session_count(db) == 1


async def test_a_signed_in_form_without_the_sessions_token_is_refused_and_changes_nothing(
    app: Any, db: Engine
) -> None:
    make_tenant(db, "beta", enable=False)
    create_admin(db, "beta", "admin@beta.test")
    async with browser(app) as http:
        await sign_in(http, "beta", "admin@beta.test")
        token = await page_csrf(http, SCIM_PAGE)
        for data, headers in (
            ({"enabled": "on"}, {}),
            ({"enabled": "on", "csrf_token": ""}, {}),
            ({"enabled": "on", "csrf_token": token[:-1] + ("x" if token[-1] != "x" else "y")}, {}),
            ({"enabled": "on", "csrf_token": token}, {"Origin": EVIL}),
            ({"enabled": "on", "csrf_token": token}, {"Origin": "null"}),
        ):
            refused = await http.post(SCIM_PAGE, data=data, headers=headers)
            assert refused.status_code == 403, (data, headers)
            assert "Form refused" in refused.text
            assert not SHOWN_TOKEN.search(refused.text)
        assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'beta'") is False
        assert scalar(db, "SELECT count(*) FROM scim_credentials") == 0

        # Signing out without the token is refused too: the session survives.
        assert (await http.post("/logout", data={})).status_code == 403
        assert (
            await http.post("/logout", data={"csrf_token": token}, headers={"Origin": EVIL})
        ).status_code == 403
        assert (await http.get("/staff")).status_code == 200
        assert session_count(db) == 1

        # The right token from this page's own origin is accepted.
        accepted = await http.post(
            SCIM_PAGE,
            data={"enabled": "on", "csrf_token": token},
            headers={"Origin": "http://localhost"},
        )
        assert accepted.status_code == 200 and SHOWN_TOKEN.search(accepted.text)


async def test_regenerate_without_the_csrf_token_leaves_the_token_working(
    app: Any, db: Engine, tenant: TenantHandle, signed_in: httpx2.AsyncClient
) -> None:
    token = await page_csrf(signed_in, SCIM_PAGE)
    for data, headers in (
        ({"confirm": "yes"}, {}),
        ({"confirm": "yes", "csrf_token": "forged"}, {}),
        ({"confirm": "yes", "csrf_token": token}, {"Origin": EVIL}),
    ):
        refused = await signed_in.post(f"{SCIM_PAGE}/regenerate", data=data, headers=headers)
        assert refused.status_code == 403
        assert not SHOWN_TOKEN.search(refused.text)
    assert await scim_status(app, tenant.token) == 200
    assert scalar(db, "SELECT count(*) FROM scim_credentials") == 1


# --- 3. signed out ---------------------------------------------------------------


async def test_signed_out_visitors_are_sent_to_sign_in_and_come_back(
    app: Any, db: Engine, acme_admin: str
) -> None:
    paths = [
        "/staff",
        "/staff?status=active&q=ann+lee",
        f"/staff/{uuid.uuid4()}",
        "/activity",
        "/activity/live",
        SCIM_PAGE,
    ]
    async with browser(app) as http:
        for path in paths:
            answer = await http.get(path)
            assert answer.status_code == 303, path
            assert answer.headers["location"] == f"/login?next={quote(path, safe='')}", path
        home = await http.get("/")
        assert home.status_code == 303 and home.headers["location"] == "/staff"

        # The login page carries `next`, and signing in lands there.
        sent_to = (await http.get("/activity")).headers["location"]
        form = await http.get(sent_to)
        assert 'name="next" value="/activity"' in form.text
        answer = await http.post(
            "/login",
            data={
                "csrf_token": csrf_of(form.text),
                "next": "/activity",
                "workspace": "acme",
                "email": acme_admin,
                "password": PASSWORD,
            },
        )
        assert answer.status_code == 303 and answer.headers["location"] == "/activity"


async def test_signed_out_posts_get_401_and_do_nothing(app: Any, db: Engine) -> None:
    make_tenant(db, "beta", enable=False)
    with db.begin() as conn:
        conn.execute(text("UPDATE tenants SET guard_tripped_at = now() WHERE slug = 'beta'"))
    async with browser(app) as http:
        for path, data in (
            (SCIM_PAGE, {"enabled": "on"}),
            (f"{SCIM_PAGE}/regenerate", {"confirm": "yes"}),
            ("/activity/retry", {"id": "all"}),
            ("/activity/guard/release", {"confirm": "yes"}),
            ("/logout", {}),
        ):
            answer = await http.post(path, data={**data, "csrf_token": "anything"})
            assert answer.status_code == 401, path
            assert "Signed out" in answer.text
            assert answer.headers["content-type"].startswith("text/html")
    assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'beta'") is False
    assert scalar(db, "SELECT guard_tripped_at FROM tenants WHERE slug = 'beta'") is not None


async def test_signing_out_ends_the_session_on_the_server(
    app: Any, db: Engine, signed_in: httpx2.AsyncClient
) -> None:
    old = signed_in.cookies[SESSION_COOKIE]
    token = await page_csrf(signed_in, "/staff")

    out = await signed_in.post("/logout", data={"csrf_token": token})

    assert out.status_code == 303 and out.headers["location"] == "/login?signed_out=1"
    cleared = cookie_header(out, SESSION_COOKIE)
    assert cleared is not None and "max-age=0" in cleared.lower()
    assert session_count(db) == 0
    assert "You are signed out." in (await signed_in.get("/login?signed_out=1")).text

    # A copy of the old cookie (kept by an attacker, or a second tab) is worthless.
    async with browser(app, headers={"Cookie": f"{SESSION_COOKIE}={old}"}) as replay:
        assert (await replay.get("/staff")).status_code == 303
        posted = await replay.post(SCIM_PAGE, data={"csrf_token": token})
        assert posted.status_code == 401
    assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'acme'") is True


async def test_an_expired_session_is_signed_out(
    app: Any, db: Engine, signed_in: httpx2.AsyncClient
) -> None:
    assert (await signed_in.get("/staff")).status_code == 200
    with db.begin() as conn:
        conn.execute(text("UPDATE admin_sessions SET expires_at = now() - interval '1 second'"))
    answer = await signed_in.get("/staff")
    assert answer.status_code == 303 and answer.headers["location"].startswith("/login?next=")


async def test_a_password_reset_signs_that_admin_out_everywhere(
    app: Any, db: Engine, database_url: str, acme_admin: str
) -> None:
    create_admin(db, "acme", "other@acme.test")
    async with browser(app) as laptop, browser(app) as phone, browser(app) as colleague:
        await sign_in(laptop, "acme", acme_admin)
        await sign_in(phone, "acme", acme_admin)
        await sign_in(colleague, "acme", "other@acme.test")

        reset = simpleams(
            database_url, "admin", "password", "acme", acme_admin, stdin="a brand new passphrase\n"
        )

        assert reset.returncode == 0, reset.stderr
        assert (await laptop.get("/staff")).status_code == 303
        assert (await phone.get("/staff")).status_code == 303
        assert (await colleague.get("/staff")).status_code == 200  # somebody else's session
        assert (await submit_login(laptop, "acme", acme_admin)).status_code == 400
        await sign_in(laptop, "acme", acme_admin, "a brand new passphrase")


async def test_set_password_of_an_unknown_admin_is_an_operator_error(
    db: Engine, tenant: TenantHandle
) -> None:
    with db.begin() as conn, pytest.raises(OperatorError, match="is not an admin"):
        accounts.set_password(conn, "acme", "ghost@acme.test", "long enough password")


# --- 4. throttling -----------------------------------------------------------


@pytest.fixture
async def strict_app(settings: Settings) -> AsyncIterator[Any]:
    """A gateway that allows 3 failed sign-ins per address and per account."""
    application = create_app(
        Settings(
            database_url=settings.database_url, base_domain="simpleams.test", sign_in_failures=3
        )
    )
    yield application
    await application.state.engine.dispose()


def assert_throttled(answer: httpx2.Response) -> None:
    assert answer.status_code == 429, answer.text[:300]
    assert 1 <= int(answer.headers["retry-after"]) <= 901
    assert "Too many failed sign-ins" in answer.text
    assert cookie_header(answer, SESSION_COOKIE) is None


async def test_failures_from_one_address_throttle_it_even_with_the_right_password(
    strict_app: Any, db: Engine, acme_admin: str
) -> None:
    create_admin(db, "acme", "second@acme.test")
    async with browser(strict_app, client=("10.0.0.1", 4000)) as attacker:
        for guess in ("guess one!", "guess two!", "guess three!"):
            assert (await submit_login(attacker, "acme", acme_admin, guess)).status_code == 400
        # Spread over other accounts, it is still one address.
        assert_throttled(await submit_login(attacker, "acme", "second@acme.test"))
        assert_throttled(await submit_login(attacker, "acme", acme_admin))

    async with browser(strict_app, client=("10.0.0.2", 4000)) as colleague:
        await sign_in(colleague, "acme", "second@acme.test")
    assert session_count(db) == 1


async def test_failures_on_one_account_throttle_the_addresses_that_failed_on_it(
    strict_app: Any, db: Engine, acme_admin: str
) -> None:
    """Past the account's limit, the addresses that failed on it are refused;
    the admin, from an address that has not failed, still signs in (strangers
    cannot lock an admin out)."""
    for number in range(3):
        async with browser(strict_app, client=(f"10.0.1.{number}", 4000)) as guesser:
            answer = await submit_login(guesser, "acme", acme_admin.upper(), "wrong password!")
            assert answer.status_code == 400

    async with browser(strict_app, client=("10.0.1.0", 4000)) as guesser:
        assert_throttled(await submit_login(guesser, "acme", acme_admin))
    async with browser(strict_app, client=("10.0.2.1", 4000)) as owner:
        await sign_in(owner, "acme", acme_admin)
    assert session_count(db) == 1


# --- 5. Settings → Integrations → SCIM 2.0 -------------------------------------


async def test_enabling_scim_shows_a_working_token_once_and_rotation_needs_confirming(
    app: Any, db: Engine
) -> None:
    make_tenant(db, "beta", enable=False)
    create_admin(db, "beta", "admin@beta.test")
    async with browser(app) as http:
        await sign_in(http, "beta", "admin@beta.test")
        card = await http.get(SCIM_PAGE)
        assert card.status_code == 200
        assert "Disabled" in card.text and not SHOWN_TOKEN.search(card.text)
        assert card.headers["cache-control"] == "no-store"
        assert "frame-ancestors 'none'" in card.headers["content-security-policy"]
        csrf = csrf_of(card.text)

        enabled = await http.post(SCIM_PAGE, data={"enabled": "on", "csrf_token": csrf})

        assert enabled.status_code == 200
        assert enabled.headers["cache-control"] == "no-store"
        assert "content-security-policy" in enabled.headers
        shown = SHOWN_TOKEN.findall(enabled.text)
        assert len(shown) == 1, enabled.text
        token = shown[0]
        assert "https://beta.simpleams.test/scim/v2" in enabled.text
        assert await scim_status(app, token) == 200
        prefix = scalar(db, "SELECT token_prefix FROM scim_credentials WHERE revoked_at IS NULL")
        assert token.startswith(prefix) and prefix != token
        assert token not in [
            r.token_hash for r in rows(db, "SELECT token_hash FROM scim_credentials")
        ]

        # Shown once: the page, asked again, has only the prefix.
        again = await http.get(SCIM_PAGE)
        assert token not in again.text and not SHOWN_TOKEN.search(again.text)
        assert f"<code>{prefix}…</code>" in again.text
        assert "Enabled" in again.text

        # Saving "enabled" again does not rotate the token the IdP holds.
        resaved = await http.post(SCIM_PAGE, data={"enabled": "on", "csrf_token": csrf})
        assert resaved.status_code == 303
        assert resaved.headers["location"] == f"{SCIM_PAGE}?notice=saved"
        assert await scim_status(app, token) == 200
        assert scalar(db, "SELECT count(*) FROM scim_credentials") == 1

        # Regenerating without the confirmation changes nothing.
        unconfirmed = await http.post(f"{SCIM_PAGE}/regenerate", data={"csrf_token": csrf})
        assert unconfirmed.status_code == 400
        assert "Tick the confirmation first" in unconfirmed.text
        assert not SHOWN_TOKEN.search(unconfirmed.text)
        assert await scim_status(app, token) == 200

        regenerated = await http.post(
            f"{SCIM_PAGE}/regenerate", data={"csrf_token": csrf, "confirm": "yes"}
        )
        assert regenerated.status_code == 200
        new_token = SHOWN_TOKEN.findall(regenerated.text)[0]
        assert new_token != token
        assert await scim_status(app, token) == 401
        assert await scim_status(app, new_token) == 200

        # Unticking "enabled" and saving disables it: the token stops working.
        disabled = await http.post(SCIM_PAGE, data={"csrf_token": csrf})
        assert disabled.status_code == 303
        assert disabled.headers["location"] == f"{SCIM_PAGE}?notice=disabled"
        assert await scim_status(app, new_token) == 401
        assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'beta'") is False
        after = await http.get(disabled.headers["location"])
        assert "the token no longer works" in after.text and "Disabled" in after.text

        # Regenerating while disabled issues nothing.
        idle = await http.post(
            f"{SCIM_PAGE}/regenerate", data={"csrf_token": csrf, "confirm": "yes"}
        )
        assert idle.status_code == 303 and not SHOWN_TOKEN.search(idle.text)
        assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'beta'") is False


def backends_waiting_on_a_lock(db: Engine) -> int:
    return int(
        scalar(
            db,
            "SELECT count(*) FROM pg_stat_activity "
            "WHERE datname = current_database() AND wait_event_type = 'Lock'",
        )
    )


async def until(condition: Any, timeout: float = 10.0) -> bool:
    """Poll ``condition`` while the event loop runs the app; False if it never held."""
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        if asyncio.get_running_loop().time() > deadline:
            return False
        await asyncio.sleep(0.02)  # polling interval while waiting on a condition
    return True


async def test_two_saves_at_once_hand_out_one_working_token(app: Any, db: Engine) -> None:
    """A double click on Save. Both requests read "disabled" before either has
    written (the test holds the tenant row until both are waiting on it); each
    answer must still be a page, and every token shown must be the one that works."""
    make_tenant(db, "beta", enable=False)
    create_admin(db, "beta", "admin@beta.test")
    async with browser(app) as http:
        await sign_in(http, "beta", "admin@beta.test")
        csrf = await page_csrf(http, SCIM_PAGE)
        with db.connect() as locker:
            hold = locker.begin()
            locker.execute(text("SELECT 1 FROM tenants WHERE slug = 'beta' FOR UPDATE"))
            saves = [
                asyncio.ensure_future(
                    http.post(SCIM_PAGE, data={"enabled": "on", "csrf_token": csrf})
                )
                for _ in range(2)
            ]
            # Both saves get as far as they can (an app that serialises them
            # elsewhere gets only one this far, and that is fine too).
            await until(lambda: backends_waiting_on_a_lock(db) >= 2)
            hold.rollback()
        answers = await asyncio.gather(*saves)

    assert sorted(a.status_code for a in answers) in ([200, 200], [200, 303]), [
        (a.status_code, a.text[-600:]) for a in answers
    ]
    shown = [m.group(1) for a in answers if (m := SHOWN_TOKEN.search(a.text))]
    assert shown
    for token in shown:
        assert await scim_status(app, token) == 200, "a token shown once that never works"
    assert scalar(db, "SELECT count(*) FROM scim_credentials WHERE revoked_at IS NULL") == 1


@pytest.mark.parametrize("plan", [Plan.free, Plan.pro])
async def test_free_and_pro_workspaces_cannot_enable_scim(app: Any, db: Engine, plan: Plan) -> None:
    make_tenant(db, "small", plan=plan, enable=False)
    create_admin(db, "small", "admin@small.test")
    async with browser(app) as http:
        await sign_in(http, "small", "admin@small.test")
        card = await http.get(SCIM_PAGE)
        assert card.status_code == 200
        assert "Business-plan integration" in card.text
        assert f"<strong>{plan.value.capitalize()}</strong> plan" in card.text
        assert re.search(
            r'<input type="checkbox" id="enabled" name="enabled"\s+disabled', card.text
        )
        csrf = csrf_of(card.text)

        refused = await http.post(SCIM_PAGE, data={"enabled": "on", "csrf_token": csrf})
        assert refused.status_code == 403
        assert "Upgrade to Business" in refused.text
        assert not SHOWN_TOKEN.search(refused.text)
        regenerate = await http.post(
            f"{SCIM_PAGE}/regenerate", data={"confirm": "yes", "csrf_token": csrf}
        )
        assert regenerate.status_code == 403 and not SHOWN_TOKEN.search(regenerate.text)
    assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'small'") is False
    assert scalar(db, "SELECT count(*) FROM scim_credentials") == 0


# --- 6. tenant isolation ----------------------------------------------------------


@pytest.fixture
async def globex_admin(app: Any, db: Engine) -> AsyncIterator[httpx2.AsyncClient]:
    """The signed-in browser of globex's admin; globex has one user of its own."""
    globex = make_tenant(db, "globex")
    create_admin(db, "globex", "admin@globex.test")
    async with scim_client(app, globex.headers) as their_idp:
        await provision(their_idp, "own@globex.test", displayName="Globex Own")
    async with browser(app) as http:
        await sign_in(http, "globex", "admin@globex.test")
        yield http


async def test_an_admin_never_sees_another_tenants_staff(
    db: Engine, idp: httpx2.AsyncClient, globex_admin: httpx2.AsyncClient
) -> None:
    await provision(idp, "vic@acme.test", displayName="Victoria Acme")
    victim = staff_id(db, "vic@acme.test")

    theirs = await globex_admin.get(f"/staff/{victim}")
    nobody = await globex_admin.get(f"/staff/{uuid.uuid4()}")

    assert theirs.status_code == nobody.status_code == 404
    assert theirs.text == nobody.text  # not even "exists elsewhere"
    assert "vic@acme.test" not in theirs.text
    for query in ("", "?status=all", "?q=vic", "?q=acme", "?status=active&q=victoria"):
        listed = await globex_admin.get(f"/staff{query}")
        assert listed.status_code == 200
        assert "vic@acme.test" not in listed.text and victim not in listed.text, query
    assert names_on((await globex_admin.get("/staff")).text) == ["Globex Own"]
    activity = await globex_admin.get("/activity")
    assert "vic@acme.test" not in activity.text and victim not in activity.text


async def test_a_session_is_signed_out_on_another_tenants_host(
    app: Any, db: Engine, acme_admin: str
) -> None:
    make_tenant(db, "b")
    async with browser(app, base_url="http://acme.simpleams.test") as http:
        value = await sign_in(http, None, acme_admin)
        csrf = await page_csrf(http, "/staff")
    cookie = {"Cookie": f"{SESSION_COOKIE}={value}"}

    async with browser(app, base_url="http://acme.simpleams.test", headers=cookie) as own:
        assert (await own.get("/staff")).status_code == 200
    async with browser(app, base_url="http://b.simpleams.test", headers=cookie) as elsewhere:
        assert (await elsewhere.get("/staff")).status_code == 303
        assert (await elsewhere.get(SCIM_PAGE)).status_code == 303
        posted = await elsewhere.post(
            SCIM_PAGE, data={"csrf_token": csrf}, headers={"Origin": "http://b.simpleams.test"}
        )
        assert posted.status_code == 401
    assert scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = 'acme'") is True


async def test_an_admin_cannot_retry_another_tenants_dead_letter(
    db: Engine, idp: httpx2.AsyncClient, globex_admin: httpx2.AsyncClient
) -> None:
    await provision(idp, "vic@acme.test")
    event_id = scalar(
        db,
        "SELECT e.id FROM provisioning_events e JOIN tenants t ON t.id = e.tenant_id "
        "WHERE t.slug = 'acme'",
    )
    with db.begin() as conn:
        conn.execute(
            insert(SideEffectRun).values(
                event_id=event_id, effect="notify", status="failed", attempts=5, error="SMTP 550"
            )
        )
        conn.execute(text("UPDATE provisioning_events SET published_at = now()"))
    before = rows(db, "SELECT * FROM side_effect_runs")
    csrf = await page_csrf(globex_admin, "/activity")

    one = await globex_admin.post(
        "/activity/retry", data={"id": f"{event_id}:notify", "csrf_token": csrf}
    )
    every = await globex_admin.post("/activity/retry", data={"id": "all", "csrf_token": csrf})

    assert one.status_code == 404 and "Nothing to retry" in one.text
    assert every.status_code == 303  # globex has none of its own
    assert rows(db, "SELECT * FROM side_effect_runs") == before
    assert scalar(db, "SELECT published_at FROM provisioning_events WHERE id = :i", i=event_id)
    assert "SMTP 550" not in (await globex_admin.get("/activity")).text


# --- 7. the staff list -----------------------------------------------------------


async def test_status_filters_list_the_right_people(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    await provision(idp, "ann@acme.test", displayName="Ann Active")
    bob = await provision(idp, "bob@acme.test", displayName="Bob Deactivated")
    cat = await provision(idp, "cat@acme.test", displayName="Cat Deleted")
    assert (await idp.patch(f"/Users/{bob['id']}", json=DEACTIVATE)).status_code == 200
    assert (await idp.delete(f"/Users/{cat['id']}")).status_code == 204

    expected = {
        "all": [
            ("active", "Ann Active"),
            ("deactivated", "Bob Deactivated"),
            ("deleted", "Cat Deleted"),
        ],
        "active": [("active", "Ann Active")],
        "deactivated": [("deactivated", "Bob Deactivated")],
        "deleted": [("deleted", "Cat Deleted")],
        "nonsense": [
            ("active", "Ann Active"),
            ("deactivated", "Bob Deactivated"),
            ("deleted", "Cat Deleted"),
        ],
    }
    for status, people in expected.items():
        page = await signed_in.get("/staff", params={"status": status})
        assert page.status_code == 200
        assert page.headers["cache-control"] == "no-store"
        assert [(s, n) for s, _, n in staff_rows(page.text)] == people, status
    # The tab counts agree.
    page = (await signed_in.get("/staff")).text
    for status, count in (("all", 3), ("active", 1), ("deactivated", 1), ("deleted", 1)):
        assert re.search(rf'status={status}"[^>]*>[^<]*<span class="count">{count}</span>', page)
    ids = {name: sid for _, sid, name in staff_rows(page)}
    assert ids["Cat Deleted"] == staff_id(db, "cat@acme.test")


async def test_search_matches_names_and_emails_case_insensitively_and_literally(
    idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    await provision(idp, "ann.lee@acme.test", displayName="Ann Lee")
    await provision(idp, "zed@acme.test", displayName="Zed Under_Score")
    await provision(idp, "xavier@acme.test", displayName="Zed UnderXScore")
    await provision(idp, "fifty@acme.test", displayName="Fifty 50% Off")
    await provision(idp, "room@acme.test", displayName="Room 501")
    await provision(idp, "slash@acme.test", displayName="Back\\Slash")
    await provision(idp, "quiet@acme.test", displayName="Quiet Deactivated")
    quiet = (await idp.get("/Users", params={"filter": 'userName eq "quiet@acme.test"'})).json()
    await idp.patch(f"/Users/{quiet['Resources'][0]['id']}", json=DEACTIVATE)

    async def search(q: str, status: str = "all") -> list[str]:
        page = await signed_in.get("/staff", params={"q": q, "status": status})
        assert page.status_code == 200, (q, page.text[:300])
        return names_on(page.text)

    assert await search("lee") == ["Ann Lee"]
    assert await search("ANN L") == ["Ann Lee"]  # across display name words
    assert await search("ANN.LEE@ACME") == ["Ann Lee"]  # part of an email
    assert await search("xavier@") == ["Zed UnderXScore"]
    assert await search("r_s") == ["Zed Under_Score"]  # "_" is not "any character"
    assert await search("50%") == ["Fifty 50% Off"]  # "%" is not "anything"
    assert await search("%") == ["Fifty 50% Off"]
    assert await search("_") == ["Zed Under_Score"]
    assert await search("k\\s") == ["Back\\Slash"]
    assert await search("quiet", "active") == []
    assert await search("quiet", "deactivated") == ["Quiet Deactivated"]
    assert await search("  lee  ") == ["Ann Lee"]
    nobody = await signed_in.get("/staff", params={"q": "no such person"})
    assert "Nobody matches" in nobody.text and not staff_rows(nobody.text)


async def test_keyset_paging_visits_everyone_once_in_order_both_ways(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    people = 120
    for number in range(people):
        await provision(idp, f"p{number:03d}@acme.test", displayName=f"Person {number:03d}")
    expected = [f"Person {number:03d}" for number in range(people)]

    forward: list[list[str]] = []
    cursors: list[str | None] = [None]
    page = await signed_in.get("/staff")
    while True:
        assert page.status_code == 200
        forward.append(names_on(page.text))
        found = NEXT_LINK.search(page.text)
        if found is None:
            break
        cursors.append(found.group(1))
        page = await signed_in.get("/staff", params={"status": "all", "after": found.group(1)})
        assert len(forward) < 10, "paging does not end"

    assert [len(p) for p in forward] == [50, 50, 20]
    assert [name for p in forward for name in p] == expected
    assert 'rel="prev"' not in (await signed_in.get("/staff")).text

    # Back from the last page, one page at a time, to the first.
    backward: list[list[str]] = [forward[-1]]
    found_prev = PREV_LINK.search(page.text)
    while found_prev is not None:
        page = await signed_in.get("/staff", params={"before": found_prev.group(1)})
        assert page.status_code == 200
        backward.append(names_on(page.text))
        assert NEXT_LINK.search(page.text), "a page reached going back has a next page"
        found_prev = PREV_LINK.search(page.text)
        assert len(backward) < 10, "paging back does not end"
    assert backward == forward[::-1]

    # Paging a filtered list stays in the filter.
    filtered = await signed_in.get("/staff", params={"q": "person 11"})
    assert names_on(filtered.text) == [f"Person {n}" for n in range(110, 120)]
    assert NEXT_LINK.search(filtered.text) is None


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


@pytest.mark.parametrize(
    "cursor",
    [
        "garbage",
        "!!!",
        "=",
        "x" * 3000,
        _b64(b"not json"),
        _b64(b"42"),
        _b64(b'"ab"'),
        _b64(b"[1, 2, 3]"),
        _b64(b'{"a": 1, "b": 2}'),
        _b64(b'["person", "not-a-uuid"]'),
        _b64(b"\xff\xfe"),
        _b64(b'[null, "00000000-0000-0000-0000-000000000000"]'),
        _b64(b'["\\u0000", "00000000-0000-0000-0000-000000000000"]'),
    ],
)
async def test_a_garbage_cursor_is_ignored_not_an_error(
    idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient, cursor: str
) -> None:
    await provision(idp, "ann@acme.test", displayName="Ann Active")
    for direction in ("after", "before"):
        page = await signed_in.get("/staff", params={direction: cursor})
        assert page.status_code == 200, (direction, page.status_code, page.text[:300])
        assert page.headers["content-type"].startswith("text/html")


@pytest.mark.parametrize("query", ["\x00", "ann\x00"])
async def test_a_search_postgresql_cannot_store_answers_an_html_page(
    signed_in: httpx2.AsyncClient, query: str
) -> None:
    """Characters PostgreSQL refuses in text must not turn the admin page into SCIM JSON."""
    page = await signed_in.get("/staff", params={"q": query})
    assert page.status_code in (200, 400), page.text[:300]
    assert page.headers["content-type"].startswith("text/html"), (
        page.headers["content-type"],
        page.text[:300],
    )


async def test_a_sign_in_postgresql_cannot_store_answers_the_sign_in_page(
    app: Any, acme_admin: str
) -> None:
    """A NUL in the email field (PostgreSQL refuses it) must get the sign-in page, not SCIM JSON."""
    async with browser(app) as http:
        answer = await submit_login(http, "acme", "admin\x00@acme.test")
    assert answer.status_code in (400, 403), answer.text[:300]
    assert answer.headers["content-type"].startswith("text/html"), (
        answer.headers["content-type"],
        answer.text[:300],
    )


async def test_names_are_escaped_in_the_pages(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    script = "<script>alert(1)</script>"
    await provision(idp, "xss@acme.test", displayName=f"Eve {script}")
    person = staff_id(db, "xss@acme.test")
    for path in ("/staff", f"/staff/{person}", "/staff?q=eve+%3Cscript"):
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        assert script not in page.text, path
        assert "Eve &lt;script&gt;alert(1)&lt;/script&gt;" in page.text, path


# --- 8. the staff detail ---------------------------------------------------------


async def test_detail_shows_checkout_history_and_audit_trail(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    created = await provision(idp, "dee@acme.test", displayName="Dee Tail", title="Engineer")
    person = staff_id(db, "dee@acme.test")
    with db.begin() as conn:
        staff_history.record_checkout(conn, "acme", "dee@acme.test", "MON-7")
        staff_history.record_checkin(conn, "acme", "MON-7")
    with db.begin() as conn:  # a later transaction: a later checked_out_at
        staff_history.record_checkout(conn, "acme", "dee@acme.test", "LAPTOP-1")

    page = await signed_in.get(f"/staff/{person}")
    assert page.status_code == 200
    assert page.headers["cache-control"] == "no-store"
    assert "<h1>Dee Tail</h1>" in page.text
    assert created["id"] in page.text  # the SCIM id, next to the staff id
    history = page.text.split('id="checkouts"', 1)[1].split("</table>", 1)[0]
    assert history.index("LAPTOP-1") < history.index("MON-7")  # newest first
    laptop_row = history.split("LAPTOP-1", 1)[1].split("</tr>", 1)[0]
    assert "Still out" in laptop_row
    monitor_row = history.split("MON-7", 1)[1].split("</tr>", 1)[0]
    assert "Still out" not in monitor_row
    assert monitor_row.count("UTC") == 2 and laptop_row.count("UTC") == 1  # out, returned
    assert "Nothing recorded yet" in page.text  # the audit worker has not run

    event_id = scalar(db, "SELECT id FROM provisioning_events WHERE user_id = :u", u=person)
    with db.begin() as conn:
        conn.execute(
            insert(AuditEntry).values(
                event_id=event_id,
                tenant_id=scalar(db, "SELECT id FROM tenants WHERE slug = 'acme'"),
                user_id=person,
                occurred_at=scalar(db, "SELECT now()"),
                action="created",
                actor_idp="okta",
                target_user_name="dee@acme.test",
                target_email="dee@acme.test",
                changes={"title": [None, "Engineer"]},
            )
        )
    page = await signed_in.get(f"/staff/{person}")
    trail = page.text.split('id="audit"', 1)[1].split("</ol>", 1)[0]
    assert "<strong>created</strong> by Okta" in trail
    assert "<code>title</code>: — → Engineer" in trail

    # Deactivated with a laptop still out: the page says it must be recovered.
    assert (await idp.patch(f"/Users/{created['id']}", json=DEACTIVATE)).status_code == 200
    page = await signed_in.get(f"/staff/{person}")
    assert "1 asset to recover." in page.text


@pytest.mark.parametrize(
    # A fixed unknown id: test ids must be the same in every pytest-xdist worker.
    "user_id",
    [
        "not-a-uuid",
        "123",
        "5f0c1a52-2b7e-4d7a-9c3e-0d6a1f2b3c4d",
        "00000000-0000-0000-0000-00000000000g",
    ],
)
async def test_detail_of_an_unknown_or_malformed_id_is_404(
    signed_in: httpx2.AsyncClient, user_id: str
) -> None:
    page = await signed_in.get(f"/staff/{user_id}")
    assert page.status_code == 404
    assert "No such person" in page.text
    assert page.headers["content-type"].startswith("text/html")


# --- 9. provisioning activity ----------------------------------------------------


async def test_activity_summarises_recent_changes_by_idp_with_pending_effects(
    app: Any, tenant: TenantHandle, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    for name in ("ann", "bob", "cat"):
        await provision(idp, f"{name}@acme.test")
    bob_id = (await idp.get("/Users", params={"filter": 'userName eq "bob@acme.test"'})).json()
    await idp.patch(f"/Users/{bob_id['Resources'][0]['id']}", json=DEACTIVATE)
    async with scim_client(app, {**tenant.headers, **ENTRA}) as entra:
        await provision(entra, "dan@acme.test")

    page = await signed_in.get("/activity")

    assert page.status_code == 200
    summary = page.text.split('id="summary-heading"', 1)[1].split("</ul>", 1)[0]
    by_idp = dict(re.findall(r"<li><strong>([^<]+):</strong>\s*([^<]*)</li>", summary))
    assert set(by_idp) == {"Okta", "Entra ID"}, summary
    assert sorted(by_idp["Okta"].split(", ")) == ["1 user deactivated", "3 users created"]
    assert by_idp["Entra ID"] == "1 user created"
    assert '<span class="stat-value">5</span> changes with side effects pending' in page.text
    recent = page.text.split('id="recent"', 1)[1].split("</table>", 1)[0]
    assert recent.count("<tr>") == 1 + 5  # the header and five changes
    assert "audit: pending" in recent and "checkout lock: pending" in recent
    assert "failed-heading" not in page.text

    live = await signed_in.get("/activity/live")
    assert live.status_code == 200 and "<html" not in live.text
    assert "3 users created" in live.text
    assert live.headers["cache-control"] == "no-store"


async def test_group_changes_are_on_the_activity_page_with_their_failed_side_effects(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    ann = await provision(idp, "ann@acme.test")
    group = "urn:ietf:params:scim:schemas:core:2.0:Group"
    ops = await idp.post(
        "/Groups",
        json={"schemas": [group], "displayName": "Ops", "members": [{"value": ann["id"]}]},
    )
    rename = {"Operations": [{"op": "replace", "value": {"displayName": "Operations"}}]}
    assert (await idp.patch(f"/Groups/{ops.json()['id']}", json=rename)).status_code == 204
    temp = await idp.post("/Groups", json={"schemas": [group], "displayName": "Temp"})
    join = {"Operations": [{"op": "add", "path": "members", "value": [{"value": ann["id"]}]}]}
    assert (await idp.patch(f"/Groups/{temp.json()['id']}", json=join)).status_code == 204
    assert (await idp.delete(f"/Groups/{temp.json()['id']}")).status_code == 204
    (deleted_event,) = (
        r.id for r in rows(db, "SELECT id FROM provisioning_events WHERE kind = 'group.deleted'")
    )
    with db.begin() as conn:
        conn.execute(text("UPDATE provisioning_events SET published_at = now()"))
        conn.execute(
            insert(SideEffectRun),
            [
                {
                    "event_id": deleted_event,
                    "effect": "audit",
                    "status": "failed",
                    "attempts": 8,
                    "error": "OperationalError: the database restarted",
                }
            ],
        )

    page = await signed_in.get("/activity")

    summary = page.text.split('id="summary-heading"', 1)[1].split("</ul>", 1)[0]
    by_idp = dict(re.findall(r"<li><strong>([^<]+):</strong>\s*([^<]*)</li>", summary))
    assert by_idp == {
        "Okta": "1 user created, 2 groups created, 2 groups updated, 1 group deleted"
    }, summary
    recent = page.text.split('id="recent"', 1)[1].split("</table>", 1)[0]
    assert recent.count("<tr>") == 1 + 6  # the header, ann and five group changes
    # A deleted group's events by the name each recorded (its delete keeps the
    # last one); a membership change recorded none. No link: groups have no page.
    assert re.search(r'Temp <span class="muted">\(group\)</span></td>\s*<td>Deleted</td>', recent)
    assert re.search(r'Temp <span class="muted">\(group\)</span></td>\s*<td>Created</td>', recent)
    deleted_group = r'A deleted group <span class="muted">\(group\)</span></td>\s*<td>Updated</td>'
    assert re.search(deleted_group, recent)
    assert "None" not in recent
    assert re.search(
        r'Operations <span class="muted">\(group\)</span></td>\s*<td>Updated</td>', recent
    )
    assert "audit: failed" in recent
    # The failed count includes the group's side effect, so the table lists it, retryable.
    assert '<span class="stat-value">1</span> side effect failed' in page.text
    failed = page.text.split('id="failed"', 1)[1].split("</table>", 1)[0]
    assert 'Temp <span class="muted">(group)</span>' in failed
    assert "the database restarted" in failed
    assert f'value="{deleted_event}:audit"' in failed


async def test_a_failed_side_effect_is_listed_and_retried(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    await provision(idp, "ann@acme.test")
    await provision(idp, "bob@acme.test")
    ann_event, bob_event = (
        r.id for r in rows(db, "SELECT id FROM provisioning_events ORDER BY id")
    )
    with db.begin() as conn:
        conn.execute(text("UPDATE provisioning_events SET published_at = now()"))
        conn.execute(
            insert(SideEffectRun),
            [
                {
                    "event_id": ann_event,
                    "effect": "audit",
                    "status": "done",
                    "attempts": 1,
                    "error": None,
                },
                {
                    "event_id": ann_event,
                    "effect": "notify",
                    "status": "failed",
                    "attempts": 5,
                    "error": "SMTP 550 mailbox unavailable",
                },
                {
                    "event_id": bob_event,
                    "effect": "notify",
                    "status": "failed",
                    "attempts": 5,
                    "error": "SMTP 451 try later",
                },
            ],
        )

    page = await signed_in.get("/activity")
    failed = page.text.split('id="failed"', 1)[1].split("</table>", 1)[0]
    assert "SMTP 550 mailbox unavailable" in failed and "ann@acme.test" in failed
    assert f'value="{ann_event}:notify"' in failed
    assert '<span class="stat-value">2</span> side effects failed' in page.text
    assert "audit: done" in page.text and "notify: failed" in page.text
    csrf = csrf_of(page.text)

    retried = await signed_in.post(
        "/activity/retry", data={"id": f"{ann_event}:notify", "csrf_token": csrf}
    )

    assert retried.status_code == 303
    assert retried.headers["location"] == "/activity?notice=retried"
    runs = {(r.event_id, r.effect): r.status for r in rows(db, "SELECT * FROM side_effect_runs")}
    assert runs == {(ann_event, "audit"): "done", (bob_event, "notify"): "failed"}
    published = dict(rows(db, "SELECT id, published_at FROM provisioning_events"))
    assert published[ann_event] is None and published[bob_event] is not None
    assert "Put back in the queue" in (await signed_in.get(retried.headers["location"])).text

    again = await signed_in.post(
        "/activity/retry", data={"id": f"{ann_event}:notify", "csrf_token": csrf}
    )
    assert again.status_code == 404
    for nonsense in ("x", "", f"{bob_event}:", f"{bob_event}:audit"):
        refused = await signed_in.post("/activity/retry", data={"id": nonsense, "csrf_token": csrf})
        assert refused.status_code == 404, nonsense

    every = await signed_in.post("/activity/retry", data={"id": "all", "csrf_token": csrf})
    assert every.status_code == 303
    assert rows(db, "SELECT event_id, effect FROM side_effect_runs") == [(ann_event, "audit")]
    assert (
        scalar(db, "SELECT published_at FROM provisioning_events WHERE id = :i", i=bob_event)
        is None
    )


async def test_every_dead_letter_can_be_retried_however_many_there_are(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    """An SMTP outage during a sync leaves one failed notify per change: 120 of them."""
    for number in range(120):
        await provision(idp, f"n{number:03d}@acme.test")
    with db.begin() as conn:
        conn.execute(
            text(
                "INSERT INTO side_effect_runs (event_id, effect, status, attempts, error, "
                "finished_at) SELECT id, 'notify', 'failed', 5, 'SMTP 421', now() - "
                "((SELECT max(id) FROM provisioning_events) - id) * interval '1 second' "
                "FROM provisioning_events"
            )
        )
    oldest = scalar(db, "SELECT min(event_id) FROM side_effect_runs")
    page = await signed_in.get("/activity")
    assert '<span class="stat-value">120</span> side effects failed' in page.text
    csrf = csrf_of(page.text)

    one = await signed_in.post(
        "/activity/retry", data={"id": f"{oldest}:notify", "csrf_token": csrf}
    )
    assert one.status_code == 303, "the oldest dead letter cannot be retried from the page"
    every = await signed_in.post("/activity/retry", data={"id": "all", "csrf_token": csrf})
    assert every.status_code == 303
    assert scalar(db, "SELECT count(*) FROM side_effect_runs WHERE status = 'failed'") == 0


async def test_releasing_the_guard_needs_confirming(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    await provision(idp, "ann@acme.test")
    event_id = scalar(db, "SELECT id FROM provisioning_events")
    with db.begin() as conn:
        conn.execute(text("UPDATE tenants SET guard_tripped_at = now() WHERE slug = 'acme'"))
    # Tripped, before the workers reached any of the deactivations: the banner
    # says nothing is held yet, not "holding 0".
    tripped = await signed_in.get("/activity")
    assert "Mass deactivation held" in tripped.text
    assert "holding 0" not in tripped.text and "Nothing is held yet" in tripped.text
    assert "Release held deactivations" in tripped.text
    with db.begin() as conn:
        conn.execute(
            insert(SideEffectRun).values(event_id=event_id, effect="checkout_lock", status="held")
        )
    page = await signed_in.get("/activity")
    assert "Mass deactivation held" in page.text
    assert "holding 1 lock and notification side effect</strong>" in page.text
    assert "Nothing is held yet" not in page.text
    csrf = csrf_of(page.text)

    unconfirmed = await signed_in.post("/activity/guard/release", data={"csrf_token": csrf})
    assert unconfirmed.status_code == 400 and "Not released" in unconfirmed.text
    assert scalar(db, "SELECT guard_tripped_at FROM tenants WHERE slug = 'acme'") is not None
    assert scalar(db, "SELECT count(*) FROM side_effect_runs") == 1

    released = await signed_in.post(
        "/activity/guard/release", data={"csrf_token": csrf, "confirm": "yes"}
    )
    assert released.status_code == 303
    assert released.headers["location"] == "/activity?notice=released"
    assert scalar(db, "SELECT guard_tripped_at FROM tenants WHERE slug = 'acme'") is None
    assert scalar(db, "SELECT count(*) FROM side_effect_runs") == 0
    after = await signed_in.get(released.headers["location"])
    assert "Mass deactivation held" not in after.text and "Released:" in after.text


# --- 10. the CLI -------------------------------------------------------------------


async def test_cli_creates_an_admin_who_can_sign_in(
    app: Any, db: Engine, database_url: str, tenant: TenantHandle
) -> None:
    password = "a passphrase from stdin"
    created = simpleams(
        database_url, "admin", "create", "acme", "ops@acme.test", stdin=f"{password}\n"
    )
    assert created.returncode == 0, created.stderr
    assert "ops@acme.test can now sign in" in created.stdout
    assert password not in created.stdout + created.stderr

    listed = simpleams(database_url, "admin", "list", "acme")
    assert listed.returncode == 0 and listed.stdout.split() == ["ops@acme.test"]
    stored = scalar(db, "SELECT password_hash FROM admins")
    assert stored.startswith("$argon2id$") and password not in stored

    async with browser(app) as http:
        await sign_in(http, "acme", "ops@acme.test", password)

    twice = simpleams(
        database_url, "admin", "create", "acme", "OPS@acme.test", stdin=f"{password}\n"
    )
    assert twice.returncode == 1
    assert "already an admin of 'acme'" in twice.stderr and "Traceback" not in twice.stderr


def test_cli_refuses_a_short_password_a_bad_email_and_an_unknown_tenant(
    db: Engine, database_url: str, tenant: TenantHandle
) -> None:
    short = simpleams(database_url, "admin", "create", "acme", "ops@acme.test", stdin="short\n")
    assert short.returncode == 1
    assert "Password refused: Use at least 12 characters" in short.stderr
    assert "Traceback" not in short.stderr

    empty = simpleams(database_url, "admin", "create", "acme", "ops@acme.test", stdin="")
    assert empty.returncode == 1 and "Password refused" in empty.stderr

    bad_email = simpleams(
        database_url, "admin", "create", "acme", "not-an-email", stdin="long enough password\n"
    )
    assert bad_email.returncode == 1 and "is not an email address" in bad_email.stderr

    unknown = simpleams(
        database_url, "admin", "create", "nosuchco", "a@b.test", stdin="long enough password\n"
    )
    assert unknown.returncode == 1 and "No tenant with the slug 'nosuchco'" in unknown.stderr
    assert scalar(db, "SELECT count(*) FROM admins") == 0


# --- 11. headers and error pages ----------------------------------------------------


def assert_security_headers(response: httpx2.Response) -> None:
    csp = response.headers["content-security-policy"]
    for directive in ("default-src 'none'", "script-src 'self'", "frame-ancestors 'none'"):
        assert directive in csp
    assert "unsafe-inline" not in csp
    assert response.headers["x-frame-options"] == "DENY"
    assert response.headers["x-content-type-options"] == "nosniff"
    assert response.headers["referrer-policy"] == "same-origin"


async def test_security_headers_and_html_errors_outside_scim(
    app: Any, db: Engine, tenant: TenantHandle, signed_in: httpx2.AsyncClient
) -> None:
    async with browser(app) as http:
        login = await http.get("/login")
        assert login.status_code == 200
        assert_security_headers(login)
        assert login.headers["cache-control"] == "no-store"
        assert "strict-transport-security" not in login.headers  # plain http

        # A browser (it asks for HTML) that strays gets a page, not SCIM JSON.
        missing = await http.get("/no/such/page", headers={"Accept": BROWSER_ACCEPT})
        assert missing.status_code == 404
        assert missing.headers["content-type"].startswith("text/html")
        assert "Page not found" in missing.text
        assert_security_headers(missing)
        for admin_path in ("/settings/nope", "/staff/x/y", "/static/nope.css"):
            stray = await http.get(admin_path)
            assert stray.status_code == 404, admin_path
            assert stray.headers["content-type"].startswith("text/html"), admin_path

        scim_missing = await http.get("/scim/v2/unknown", headers=tenant.headers)
        assert scim_missing.status_code == 404
        assert scim_missing.headers["content-type"].startswith(SCIM_JSON)
        assert scim_missing.json()["status"] == "404"
        assert "content-security-policy" not in scim_missing.headers

        static = await http.get("/static/admin.js")
        assert static.status_code == 200
        assert_security_headers(static)

    for path in ("/staff", "/activity", SCIM_PAGE, "/activity/live"):
        page = await signed_in.get(path)
        assert page.status_code == 200, path
        assert page.headers["cache-control"] == "no-store", path
        assert_security_headers(page)


async def test_an_admin_maps_an_idp_group_to_admin_on_the_scim_page(
    db: Engine, signed_in: httpx2.AsyncClient, idp: httpx2.AsyncClient
) -> None:
    user = (await idp.post("/Users", json=user_body("lee@acme.test"))).json()
    group = {
        "schemas": ["urn:ietf:params:scim:schemas:core:2.0:Group"],
        "displayName": "SimpleAMS Admins",
        "members": [{"value": user["id"]}],
    }
    assert (await idp.post("/Groups", json=group)).status_code == 201
    page = await signed_in.get(SCIM_PAGE)
    assert "No mappings yet" in page.text
    token = csrf_of(page.text)
    roles_path = f"{SCIM_PAGE}/roles"

    forged = await signed_in.post(
        roles_path, data={"action": "map", "group": "SimpleAMS Admins", "role": "admin"}
    )
    assert forged.status_code == 403
    assert scalar(db, "SELECT role FROM users") == "staff"

    mapped = await signed_in.post(
        roles_path,
        data={"csrf_token": token, "action": "map", "group": "simpleams admins", "role": "admin"},
    )
    assert mapped.status_code == 303
    assert mapped.headers["location"] == f"{SCIM_PAGE}?notice=mapped"
    assert scalar(db, "SELECT role FROM users") == "admin"
    assert scalar(
        db, "SELECT actor_user_agent FROM provisioning_events WHERE changes ? 'role'"
    ) == ("SimpleAMS admin pages")
    shown = (await signed_in.get(mapped.headers["location"])).text
    assert "<td>simpleams admins</td>" in shown and "<td>1</td>" in shown

    bad = await signed_in.post(
        roles_path, data={"csrf_token": token, "action": "map", "group": "X", "role": "owner"}
    )
    assert bad.status_code == 400 and "is not a role" in bad.text
    removed = await signed_in.post(
        roles_path, data={"csrf_token": token, "action": "unmap", "group": "simpleams admins"}
    )
    assert removed.status_code == 303
    assert scalar(db, "SELECT role FROM users") == "staff"
    assert "No mappings yet" in (await signed_in.get(SCIM_PAGE)).text


MINUTE_ROW = re.compile(
    r"<tr><th scope=\"row\">(\d\d:\d\d)</th><td>([\d,]+)</td><td>([\d,]+)</td>"
    r"<td>([\d,]+)</td><td>([\d,]+)</td></tr>"
)


async def test_the_chart_shows_the_last_hour_minute_by_minute_with_the_backlog(
    db: Engine, idp: httpx2.AsyncClient, signed_in: httpx2.AsyncClient
) -> None:
    """Events placed at known minutes; the chart's table (its text equivalent)
    gives each minute's changes and the side effects waiting at its end."""
    for n in range(6):
        await provision(idp, f"u{n}@acme.test")
    ids = [row.id for row in rows(db, "SELECT id FROM provisioning_events ORDER BY id")]
    base = scalar(db, "SELECT date_trunc('minute', now())")
    # (kind, occurred, settled), in minutes (and seconds) before the current minute.
    placed = [
        ("user.created", "5 min -10 s", "3 min -10 s"),
        ("user.created", "5 min -10 s", "3 min -10 s"),
        ("user.created", "5 min -10 s", None),
        ("user.created", "5 min -20 s", "5 min -30 s"),  # arrived and settled in one minute
        ("user.deactivated", "2 min -5 s", "1 min -5 s"),
        ("user.updated", "70 min", None),  # before the hour, still waiting
    ]
    with db.begin() as conn:
        for event_id, (kind, occurred, settled) in zip(ids, placed, strict=True):
            conn.execute(
                text(
                    "UPDATE provisioning_events SET kind = :kind, "
                    "occurred_at = :base - CAST(:occurred AS interval), "
                    "settled_at = :base - CAST(:settled AS interval) WHERE id = :id"
                ),
                {
                    "kind": kind,
                    "base": base,
                    "occurred": occurred,
                    "settled": settled,
                    "id": event_id,
                },
            )

    page = await signed_in.get("/activity")
    assert page.status_code == 200
    assert 'id="changes-chart"' in page.text and 'id="backlog-chart"' in page.text
    minutes = MINUTE_ROW.findall(page.text)
    assert len(minutes) == 60  # every minute has one side effect waiting (the old update)
    # The current minute is last (it may have turned since the events were placed).
    last = minutes[-1][0]
    table = {label: tuple(int(v.replace(",", "")) for v in values) for label, *values in minutes}

    def at(minutes_before: int) -> tuple[int, ...]:
        label = (base - timedelta(minutes=minutes_before)).astimezone(UTC).strftime("%H:%M")
        return table[label]

    assert at(5) == (4, 0, 0, 4)  # three waiting, one settled within the minute, plus the old one
    assert at(4) == (0, 0, 0, 4)
    assert at(3) == (0, 0, 0, 2)  # two settled
    assert at(2) == (0, 0, 1, 3)  # a leaver arrived
    assert at(1) == (0, 0, 0, 2)
    assert at(6) == (0, 0, 0, 1)  # before: only the old update waited
    assert table[last][3] == 2
    assert sum(values[0] for values in table.values()) == 4
    assert "Users created: 4, updated: 0, deactivated: 1." in page.text
    peak = (base - timedelta(minutes=4)).astimezone(UTC).strftime("%H:%M")
    assert f"Side effects waiting now: 2.\n    At most 4, at the end of {peak} UTC." in page.text
