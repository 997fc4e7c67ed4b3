"""Real-browser tests of the admin pages: Debian's Chromium driven by Playwright.

One gateway process (uvicorn, as the Procfile starts it) and one Chromium
serve all the tests of this directory; every test gets a fresh browser context (no
cookies carried over). Tenant hosts (``acme.<base domain>``) resolve to
127.0.0.1 inside Chromium through ``--host-resolver-rules``, so the pages are
visited exactly as an admin would visit them.

Everything needed to diagnose a failure lands in the artifacts directory
(``$TEST_ARTIFACTS_DIR``, else ``test-artifacts/`` at the repository root):
``screenshots/<test>-<step>.png`` of each important page state, and on
failure ``screenshots/<test>-failure.png``, ``traces/<test>.zip`` (open with
``playwright show-trace``) and ``logs/<test>-gateway.log``, the gateway's
log lines written during that test. ``logs/browser-gateway-gwN.log`` is the
gateway log of the whole session of pytest-xdist process gwN (``-main`` without xdist).

Playwright's sync API is used from plain (non-async) tests and fixtures: the
session's asyncio loop (pytest-asyncio) is not running while they run. While
Playwright is started it marks its own loop as the thread's running loop, and
an async test would then fail with "cannot be called from a running event
loop"; so Playwright, Chromium and the gateway are package-scoped, stopped as
soon as the tests of this directory are done.
"""

from __future__ import annotations

import os
import re
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx2
import pytest
from playwright.sync_api import (
    Browser,
    BrowserContext,
    ConsoleMessage,
    Page,
    Playwright,
    Response,
    sync_playwright,
)
from sqlalchemy import Engine

from gateway.admin.accounts import create_admin
from gateway.settings import Settings
from tests.conftest import SCIM_JSON, TenantHandle
from tests.integration.live_server import running_gateway

ROOT = Path(__file__).resolve().parents[2]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
# The gateway reads SIMPLEAMS_BASE_DOMAIN from the environment it inherits.
BASE_DOMAIN = Settings.from_env().base_domain
ADMIN_EMAIL = "it-admin@acme.test"
ADMIN_PASSWORD = "correct horse battery staple"
OKTA = "Okta SCIM Client 1.0.0"
DEFAULT_TIMEOUT_MS = 10_000
EXPECTED_CONSOLE_ERRORS = (
    # Chromium's note for every non-2xx answer (the 403 pages, /favicon.ico);
    # failed subresources are caught from the responses themselves.
    "Failed to load resource",
    # COOP needs HTTPS; tenant hosts are visited over plain http here.
    "The Cross-Origin-Opener-Policy header has been ignored",
)


def artifacts_root() -> Path:
    return Path(os.environ.get("TEST_ARTIFACTS_DIR") or ROOT / "test-artifacts")


def safe_name(value: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", value).strip("_")


@dataclass
class Site:
    """The running gateway, as the browser and an IdP see it."""

    base_url: str  # http://127.0.0.1:PORT
    log_path: Path

    @property
    def port(self) -> int:
        return int(self.base_url.rsplit(":", 1)[1])

    def url(self, path: str, host: str | None = "acme") -> str:
        """``http://SLUG.<base domain>:PORT/path``, or the bare address when host is None."""
        if host is None:
            return f"{self.base_url}{path}"
        return f"http://{host}.{BASE_DOMAIN}:{self.port}{path}"

    def scim(self, token: str, user_agent: str | None = None) -> httpx2.Client:
        """An IdP's HTTP client for /scim/v2 (over the network, to the real process)."""
        headers = {"Authorization": f"Bearer {token}", "Content-Type": SCIM_JSON}
        if user_agent:
            headers["User-Agent"] = user_agent
        return httpx2.Client(base_url=f"{self.base_url}/scim/v2", headers=headers, timeout=10)


@pytest.fixture(scope="session")
def artifacts() -> Path:
    root = artifacts_root()
    for sub in ("screenshots", "logs", "traces"):
        (root / sub).mkdir(parents=True, exist_ok=True)
    return root


@pytest.fixture(scope="package")
def site(database_url: str, artifacts: Path) -> Iterator[Site]:
    # One log per pytest-xdist process (gw0, gw1, ...): each runs its own gateway.
    worker = os.environ.get("PYTEST_XDIST_WORKER", "main")
    log_path = artifacts / "logs" / f"browser-gateway-{worker}.log"
    with running_gateway(database_url, log_path) as url:
        yield Site(url, log_path)


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with sync_playwright() as p:
        yield p


@pytest.fixture(scope="package")
def browser(playwright: Playwright) -> Iterator[Browser]:
    browser = playwright.chromium.launch(
        executable_path=CHROMIUM,
        args=[
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            f"--host-resolver-rules=MAP *.{BASE_DOMAIN} 127.0.0.1",
        ],
    )
    yield browser
    browser.close()


@pytest.hookimpl(wrapper=True, tryfirst=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Any:
    """Keep each phase's report on the item; a failure's report shows the gateway log."""
    report = yield
    setattr(item, f"report_{report.when}", report)
    gateway_log = getattr(item, "gateway_log", None)
    if report.failed and gateway_log is not None:
        report.sections.append(("gateway log (this test)", gateway_log()[-20_000:]))
    return report


def _failed(request: pytest.FixtureRequest) -> bool:
    return any(
        getattr(getattr(request.node, f"report_{when}", None), "failed", False)
        for when in ("setup", "call")
    )


@pytest.fixture
def context(
    browser: Browser, site: Site, artifacts: Path, request: pytest.FixtureRequest
) -> Iterator[BrowserContext]:
    """A fresh browser profile for one test; on failure, screenshots, trace and gateway log."""
    name = safe_name(request.node.name)
    log_start = site.log_path.stat().st_size if site.log_path.exists() else 0

    def gateway_log() -> str:
        with site.log_path.open("rb") as whole:
            whole.seek(log_start)
            return whole.read().decode(errors="replace")

    request.node.gateway_log = gateway_log
    ctx = browser.new_context(viewport={"width": 1280, "height": 800}, locale="en-GB")
    ctx.set_default_timeout(DEFAULT_TIMEOUT_MS)
    ctx.tracing.start(screenshots=True, snapshots=True)
    yield ctx
    if _failed(request):
        for n, open_page in enumerate(ctx.pages):
            try:
                open_page.screenshot(
                    path=artifacts / "screenshots" / f"{name}-failure{n or ''}.png", full_page=True
                )
            except Exception as exc:  # a crashed page must not hide the real failure
                print(f"no failure screenshot of page {n}: {exc}")
        ctx.tracing.stop(path=artifacts / "traces" / f"{name}.zip")
        (artifacts / "logs" / f"{name}-gateway.log").write_text(gateway_log())
    else:
        ctx.tracing.stop()
    ctx.close()


@pytest.fixture
def page(context: BrowserContext, request: pytest.FixtureRequest) -> Iterator[Page]:
    """A tab that must raise no JavaScript error, break no Content-Security-Policy rule
    and load every stylesheet, script and fetch it asks for."""
    page = context.new_page()
    problems: list[str] = []

    def on_console(message: ConsoleMessage) -> None:
        if message.type == "error" and not message.text.startswith(EXPECTED_CONSOLE_ERRORS):
            problems.append(f"console error: {message.text} ({message.location.get('url')})")

    def on_response(response: Response) -> None:
        # A missing stylesheet or script, or a failing /activity/live fetch.
        if (
            response.status >= 400
            and response.request.resource_type != "document"
            and not response.url.endswith("/favicon.ico")
        ):
            problems.append(f"{response.status} for {response.url}")

    page.on("pageerror", lambda error: problems.append(f"uncaught: {error}"))
    page.on("console", on_console)
    page.on("response", on_response)
    yield page
    if not _failed(request):
        assert not problems, f"the page reported errors: {problems}"


@pytest.fixture
def shot(artifacts: Path, request: pytest.FixtureRequest) -> Any:
    """shot(page, "step"): a full-page PNG at screenshots/<test>-<step>.png."""
    name = safe_name(request.node.name)

    def take(page: Page, step: str) -> Path:
        path = artifacts / "screenshots" / f"{name}-{safe_name(step)}.png"
        page.screenshot(path=path, full_page=True)
        return path

    return take


def add_admin(db: Engine, tenant: TenantHandle, email: str = ADMIN_EMAIL) -> str:
    with db.begin() as conn:
        create_admin(conn, tenant.slug, email, ADMIN_PASSWORD)
    return email


def sign_in(
    page: Page,
    site: Site,
    slug: str = "acme",
    *,
    via_tenant_host: bool = True,
    path: str = "/login",
    email: str = ADMIN_EMAIL,
    password: str = ADMIN_PASSWORD,
) -> None:
    """Open ``path`` (or land on /login from it) and fill in the sign-in form like a person."""
    page.goto(site.url(path, slug if via_tenant_host else None))
    if not via_tenant_host:
        page.get_by_label("Workspace", exact=True).fill(slug)
    page.get_by_label("Email", exact=True).fill(email)
    page.get_by_label("Password", exact=True).fill(password)
    page.get_by_role("button", name="Sign in").click()
