"""The admin pages in a real browser: what an IT admin does, click by click.

Chromium talks to a real gateway process; SCIM calls go over the network to
the same process, as an IdP's would. See conftest.py for the fixtures and the
artifacts a failure leaves behind.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Page, expect
from sqlalchemy import Engine

from gateway import staff_history
from models.tenants import Plan
from tests.browser.conftest import (
    ADMIN_EMAIL,
    BASE_DOMAIN,
    OKTA,
    Site,
    add_admin,
    safe_name,
    sign_in,
)
from tests.conftest import make_tenant, user_body
from tests.db import scalar
from tests.integration.pipeline import pipeline_processes, smtp_sink, wait_for

SCIM_PATH = "/settings/integrations/scim"
DEACTIVATE = {
    "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
    "Operations": [{"op": "replace", "value": {"active": False}}],
}


def scim_enabled(db: Engine, slug: str = "acme") -> bool:
    return bool(scalar(db, "SELECT scim_enabled FROM tenants WHERE slug = :slug", slug=slug))


def on_path(site: Site, path: str, host: str | None = "acme") -> re.Pattern[str]:
    """The page's URL is exactly this path (and any query string) on this host."""
    return re.compile("^" + re.escape(site.url(path, host)) + r"(\?.*)?$")


# 1 -------------------------------------------------------------------------


@pytest.mark.parametrize("via_tenant_host", [True, False], ids=["tenant-host", "workspace-field"])
def test_enabling_scim_shows_the_token_once_and_it_works(
    page: Page, site: Site, db: Engine, shot: Any, via_tenant_host: bool
) -> None:
    tenant = make_tenant(db, "acme", enable=False)  # Business plan, SCIM off
    add_admin(db, tenant)
    host = "acme" if via_tenant_host else None

    page.goto(site.url("/login", host))
    if via_tenant_host:
        expect(page.get_by_label("Workspace", exact=True)).to_have_count(0)
        expect(page.locator(".sign-in")).to_contain_text("Workspace acme")
    shot(page, "1-login")
    sign_in(page, site, via_tenant_host=via_tenant_host)
    expect(page).to_have_url(on_path(site, "/staff", host))
    expect(page.get_by_role("heading", name="Staff", exact=True)).to_be_visible()
    expect(page.locator(".topbar")).to_contain_text(ADMIN_EMAIL)

    page.get_by_role("navigation", name="Main").get_by_role("link", name="Settings").click()
    expect(page).to_have_url(on_path(site, SCIM_PATH, host))
    expect(page.get_by_role("heading", name="SCIM 2.0", exact=True)).to_be_visible()
    expect(page.locator(".card-head .badge")).to_have_text("Disabled")
    shot(page, "2-disabled")

    page.get_by_label("Enable this integration").check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Save").click()
    assert posted.value.status == 200
    expect(page.get_by_text("will not be shown again")).to_be_visible()
    token = page.locator("#bearer-token").input_value()
    assert token.startswith("sams_scim_"), token
    expect(page.locator("#endpoint-url")).to_have_value(f"https://acme.{BASE_DOMAIN}/scim/v2")
    expect(page.locator(".card-head .badge")).to_have_text("Enabled")
    assert scim_enabled(db)
    # The Copy button copies (or falls back to execCommand on http://) and says so.
    page.locator("[data-copy=bearer-token]").click()
    expect(page.locator("[data-copy=bearer-token]")).to_have_text("Copied")
    shot(page, "3-token-shown")

    # admin.js turned the POST answer into a plain GET history entry: a reload
    # asks the server again (GET, no resubmission) and the token is gone.
    expect(page).to_have_url(site.url(SCIM_PATH, host))
    with page.expect_response(lambda r: r.url.startswith(site.url(SCIM_PATH, host))) as again:
        page.reload()
    assert again.value.request.method == "GET"
    assert again.value.status == 200
    expect(page.locator("#bearer-token")).to_have_count(0)
    expect(page.get_by_text("will not be shown again")).to_have_count(0)
    assert token not in page.content()
    assert token[14:] not in page.content()
    expect(page.locator(".facts code")).to_have_text(f"{token[:14]}…")
    expect(page.locator("#endpoint-url-card")).to_have_value(f"https://acme.{BASE_DOMAIN}/scim/v2")
    shot(page, "4-after-reload")

    with site.scim(token) as idp:
        users = idp.get("/Users")
    assert users.status_code == 200, users.text
    assert users.json()["totalResults"] == 0
    page.reload()
    expect(page.locator(".facts dd").nth(3)).to_contain_text("just now")


def test_regenerating_needs_the_confirmation_and_retires_the_old_token(
    page: Page, site: Site, db: Engine, shot: Any
) -> None:
    tenant = make_tenant(db, "acme")  # enabled, with a token the IdP already has
    add_admin(db, tenant)
    sign_in(page, site, path=SCIM_PATH)
    expect(page).to_have_url(site.url(SCIM_PATH))
    posts: list[str] = []
    page.on("request", lambda r: posts.append(r.url) if r.method == "POST" else None)

    danger = page.locator("details.danger-zone")
    danger.locator("summary").click()
    regenerate = danger.get_by_role("button", name="Regenerate token")
    confirm = danger.get_by_label("I understand the current token stops working now")
    expect(regenerate).to_be_visible()
    # Unticked, the browser refuses to send the form (the checkbox is required).
    regenerate.click()
    assert confirm.evaluate("box => box.validity.valueMissing") is True
    shot(page, "1-confirmation-required")
    confirm.check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        regenerate.click()
    assert posted.value.status == 200
    assert posts == [site.url(f"{SCIM_PATH}/regenerate")]
    new_token = page.locator("#bearer-token").input_value()
    assert new_token.startswith("sams_scim_")
    assert new_token != tenant.token
    shot(page, "2-new-token")

    with site.scim(tenant.token) as old, site.scim(new_token) as new:
        assert old.get("/Users").status_code == 401
        assert new.get("/Users").status_code == 200


# 2 -------------------------------------------------------------------------


def test_provisioned_people_appear_and_a_leaver_keeps_their_checkout_history(
    page: Page, site: Site, db: Engine, database_url: str, artifacts: Path, shot: Any
) -> None:
    tenant = make_tenant(db, "acme")
    add_admin(db, tenant)
    log_dir = artifacts / "logs" / safe_name("test_provisioned_people_pipeline")
    log_dir.mkdir(parents=True, exist_ok=True)
    with (
        smtp_sink() as smtp,
        pipeline_processes(database_url, log_dir, smtp) as pipeline,
        site.scim(tenant.token, OKTA) as idp,
    ):
        pipeline.start("relay")
        pipeline.start("worker")
        ids = {}
        for email in ("lee@acme.test", "ana@acme.test", "sam@acme.test"):
            created = idp.post("/Users", json=user_body(email))
            assert created.status_code == 201, created.text
            ids[email] = created.json()["id"]

        sign_in(page, site, path="/staff")
        expect(page).to_have_url(on_path(site, "/staff"))
        table = page.locator("table.data")
        for name, email in (
            ("Lee Example", "lee@acme.test"),
            ("Ana Example", "ana@acme.test"),
            ("Sam Example", "sam@acme.test"),
        ):
            row = table.locator("tbody tr", has=page.get_by_role("link", name=name))
            expect(row).to_contain_text(email)
            expect(row.locator(".status")).to_have_text("active")
            expect(row).to_contain_text("Okta")
        expect(page.get_by_text("3 people in this workspace")).to_be_visible()
        shot(page, "1-staff")

        page.get_by_role("searchbox", name="Search by name or email").fill("ana@")
        page.get_by_role("searchbox").press("Enter")
        expect(page).to_have_url(re.compile(r"[?&]q=ana%40"))
        expect(table.locator("tbody tr")).to_have_count(1)
        expect(table.locator("tbody tr")).to_contain_text("ana@acme.test")
        shot(page, "2-search")

        with db.begin() as conn:
            staff_history.record_checkout(conn, "acme", "lee@acme.test", "LAPTOP-7")
        deactivated = idp.patch(f"/Users/{ids['lee@acme.test']}", json=DEACTIVATE)
        assert deactivated.status_code == 200, deactivated.text
        assert deactivated.json()["active"] is False

        page.goto(site.url("/staff"))
        lee = table.locator("tbody tr", has=page.get_by_role("link", name="Lee Example"))
        expect(lee.locator(".status")).to_have_text("deactivated")
        expect(lee).to_have_attribute("data-status", "deactivated")
        for other in ("Ana Example", "Sam Example"):
            row = table.locator("tbody tr", has=page.get_by_role("link", name=other))
            expect(row.locator(".status")).to_have_text("active")
        page.get_by_role("link", name=re.compile(r"^Deactivated")).click()
        expect(table.locator("tbody tr")).to_have_count(1)
        expect(table.locator("tbody tr")).to_contain_text("lee@acme.test")
        shot(page, "3-deactivated-tab")

        page.get_by_role("link", name="Lee Example").click()
        staff_id = scalar(db, "SELECT id FROM users WHERE email = 'lee@acme.test'")
        expect(page).to_have_url(site.url(f"/staff/{staff_id}"))
        expect(page.locator(".page-head .status")).to_have_text("deactivated")
        expect(page.locator("#checkouts tbody tr")).to_have_count(1)
        expect(page.locator("#checkouts")).to_contain_text("LAPTOP-7")
        expect(page.get_by_text("1 asset to recover.")).to_be_visible()

        # The worker locks Lee out and flags the open checkout for recovery;
        # the audit worker writes both changes to the trail.
        wait_for(
            lambda: scalar(db, "SELECT bool_and(recovery_flagged_at IS NOT NULL) FROM checkouts"),
            "the worker to flag the leaver's open checkout",
        )
        wait_for(
            lambda: (
                scalar(db, "SELECT count(*) FROM audit_log WHERE user_id = :u", u=staff_id) == 2
            ),
            "the audit worker to record the creation and the deactivation",
        )
        page.reload()
        flagged = page.locator("#checkouts tbody tr", has_text="LAPTOP-7")
        expect(flagged).to_have_class(re.compile(r"\bflagged\b"))
        expect(flagged.locator(".status-flagged")).to_have_text("Not returned: recover")
        expect(page.locator("#audit > li")).to_have_count(2)
        expect(page.locator("#audit > li").first).to_contain_text("deactivated by Okta")
        expect(page.locator("#audit > li").last).to_contain_text("created by Okta")
        expect(page.get_by_text("Locked (cannot check out assets)")).to_be_visible()
        shot(page, "4-leaver-detail")


# 3 -------------------------------------------------------------------------


def test_a_pro_tenant_cannot_enable_scim_even_by_forcing_the_form(
    page: Page, site: Site, db: Engine, shot: Any
) -> None:
    tenant = make_tenant(db, "acme", plan=Plan.pro, enable=False)
    add_admin(db, tenant)
    sign_in(page, site, path=SCIM_PATH)
    expect(page).to_have_url(site.url(SCIM_PATH))

    checkbox = page.get_by_label("Enable this integration")
    save = page.get_by_role("button", name="Save")
    expect(checkbox).to_be_disabled()
    expect(checkbox).not_to_be_checked()
    expect(save).to_be_disabled()
    expect(page.locator(".upsell")).to_contain_text("SCIM is a Business-plan integration")
    expect(page.locator(".upsell")).to_contain_text("Pro plan")
    expect(page.locator(".card-head .badge")).to_have_text("Business plan")
    shot(page, "1-upsell")

    # A hand-edited form (DevTools) is refused by the server too.
    page.evaluate(
        """() => {
            const box = document.getElementById("enabled");
            box.disabled = false;
            box.checked = true;
            document.querySelector("form[action='/settings/integrations/scim'] button")
                .disabled = false;
        }"""
    )
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        save.click()
    assert posted.value.status == 403
    expect(page.get_by_role("alert")).to_contain_text("Business-plan integration")
    expect(page.locator("#bearer-token")).to_have_count(0)
    assert "sams_scim_" not in page.content()
    shot(page, "2-forced-post-refused")
    assert not scim_enabled(db)
    assert scalar(db, "SELECT count(*) FROM scim_credentials") == 0


# 4 -------------------------------------------------------------------------


@pytest.mark.parametrize(
    "wanted", ["/staff", SCIM_PATH, "/staff?status=deactivated&q=lee"], ids=["staff", "scim", "q"]
)
def test_signed_out_visitors_sign_in_and_land_where_they_were_going(
    page: Page, site: Site, db: Engine, shot: Any, wanted: str
) -> None:
    add_admin(db, make_tenant(db, "acme", enable=False))

    page.goto(site.url(wanted))
    expect(page).to_have_url(on_path(site, "/login"))
    expect(page.get_by_role("heading", name="Sign in to SimpleAMS")).to_be_visible()
    expect(page.locator(".topbar nav")).to_have_count(0)
    shot(page, "1-sent-to-login")

    page.get_by_label("Email", exact=True).fill(ADMIN_EMAIL)
    page.get_by_label("Password", exact=True).fill("correct horse battery staple")
    page.get_by_role("button", name="Sign in").click()
    expect(page).to_have_url(site.url(wanted))
    expect(page.locator(".topbar")).to_contain_text("Sign out")
    shot(page, "2-landed")


# 5 -------------------------------------------------------------------------


def test_a_form_without_its_csrf_token_is_refused(
    page: Page, site: Site, db: Engine, shot: Any
) -> None:
    add_admin(db, make_tenant(db, "acme", enable=False))
    sign_in(page, site, path=SCIM_PATH)
    expect(page).to_have_url(site.url(SCIM_PATH))

    page.evaluate(
        """() => document
            .querySelector("form[action='/settings/integrations/scim'] input[name=csrf_token]")
            .remove()"""
    )
    page.get_by_label("Enable this integration").check()
    with page.expect_response(lambda r: r.request.method == "POST") as posted:
        page.get_by_role("button", name="Save").click()
    assert posted.value.status == 403
    expect(page.get_by_role("heading", name="Form refused")).to_be_visible()
    expect(page.locator("#bearer-token")).to_have_count(0)
    shot(page, "1-form-refused")
    assert not scim_enabled(db)
    assert scalar(db, "SELECT count(*) FROM scim_credentials") == 0


# 6 -------------------------------------------------------------------------


def test_the_activity_page_counts_okta_creates_and_refreshes_itself(
    page: Page, site: Site, db: Engine, shot: Any
) -> None:
    tenant = make_tenant(db, "acme")
    add_admin(db, tenant)
    with site.scim(tenant.token, OKTA) as okta:
        for n in range(3):
            assert okta.post("/Users", json=user_body(f"u{n}@acme.test")).status_code == 201

        sign_in(page, site, path="/activity")
        expect(page).to_have_url(site.url("/activity"))
        live = page.locator("#live")
        expect(live.locator(".summary")).to_have_text(
            re.compile(r"^\s*Okta:\s+3 users created\s*$")
        )
        expect(live.locator("#recent tbody tr")).to_have_count(3)
        expect(live.locator("#recent tbody tr").first).to_contain_text("Okta")
        shot(page, "1-three-created")

        page.evaluate("() => { window.stillTheSamePage = true; }")
        for n in range(3, 5):
            assert okta.post("/Users", json=user_body(f"u{n}@acme.test")).status_code == 201
        # No reload: the page fetches /activity/live every 5 s by itself.
        expect(live.locator(".summary")).to_have_text(
            re.compile(r"^\s*Okta:\s+5 users created\s*$"), timeout=15_000
        )
        expect(live.locator("#recent tbody tr")).to_have_count(5)
        expect(live.locator("#recent")).to_contain_text("u4@acme.test")
        assert page.evaluate("() => window.stillTheSamePage") is True
        shot(page, "2-five-created-live")


# 7 -------------------------------------------------------------------------


def test_signing_out_ends_the_session(page: Page, site: Site, db: Engine, shot: Any) -> None:
    add_admin(db, make_tenant(db, "acme", enable=False))
    sign_in(page, site, path="/staff")
    expect(page).to_have_url(site.url("/staff"))
    assert scalar(db, "SELECT count(*) FROM admin_sessions") == 1

    page.get_by_role("button", name="Sign out").click()
    expect(page).to_have_url(site.url("/login?signed_out=1"))
    expect(page.get_by_role("status")).to_have_text("You are signed out.")
    shot(page, "1-signed-out")
    assert scalar(db, "SELECT count(*) FROM admin_sessions") == 0

    page.goto(site.url("/staff"))
    expect(page).to_have_url(on_path(site, "/login"))
    expect(page.get_by_role("heading", name="Sign in to SimpleAMS")).to_be_visible()


# 8 -------------------------------------------------------------------------


def focused(page: Page) -> str:
    """The focused element: its id, else its link target, else its text."""
    return str(
        page.evaluate(
            """() => {
                const el = document.activeElement;
                return el.id || el.getAttribute("href") || el.textContent.trim();
            }"""
        )
    )


def test_sign_in_works_with_the_keyboard_alone(
    page: Page, site: Site, db: Engine, shot: Any
) -> None:
    add_admin(db, make_tenant(db, "acme", enable=False))
    page.goto(site.url("/login", None))  # no tenant host: the workspace field is shown

    order = []
    typed = {"workspace": "acme", "email": ADMIN_EMAIL, "password": "correct horse battery staple"}
    for _ in range(6):
        page.keyboard.press("Tab")
        order.append(focused(page))
        if order[-1] == "#main":
            # The skip link is hidden until focused, then on screen.
            expect(page.get_by_role("link", name="Skip to content")).to_be_in_viewport()
            shot(page, "1-skip-link")
        if order[-1] in typed:
            page.keyboard.type(typed[order[-1]])
    assert order == ["#main", "/staff", "workspace", "email", "password", "Sign in"]
    shot(page, "2-filled")
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url("/staff", None))
    expect(page.locator(".topbar")).to_contain_text(ADMIN_EMAIL)


def test_on_the_tenant_host_the_cursor_starts_in_the_email_field(
    page: Page, site: Site, db: Engine
) -> None:
    add_admin(db, make_tenant(db, "acme", enable=False))
    page.goto(site.url("/login"))
    expect(page.get_by_label("Email", exact=True)).to_be_focused()
    page.keyboard.type(ADMIN_EMAIL)
    page.keyboard.press("Tab")
    page.keyboard.type("correct horse battery staple")
    page.keyboard.press("Enter")
    expect(page).to_have_url(site.url("/staff"))


def test_the_workspace_field_refuses_what_is_not_a_workspace_name(page: Page, site: Site) -> None:
    """Browsers compile ``pattern`` with the ``v`` flag, where a literal ``-`` in a class
    must be escaped: ``[a-z0-9-]{1,63}`` made Chromium log "Pattern attribute value ... is
    not a valid regular expression" and validate nothing (the page fixture fails on that
    console error too)."""
    page.goto(site.url("/login", None))
    workspace = page.get_by_label("Workspace", exact=True)
    workspace.fill("Acme Corp!")
    assert workspace.evaluate("field => field.validity.patternMismatch") is True
    workspace.fill("acme-2")
    assert workspace.evaluate("field => field.validity.valid") is True


# 2b ------------------------------------------------------------------------


def test_the_activity_chart_shows_a_sync_as_it_happens(
    page: Page, site: Site, db: Engine, database_url: str, artifacts: Path, shot: Any
) -> None:
    """A few hundred users: the chart fills while the side effects wait for
    the workers, then the backlog drains to nothing once they run."""
    tenant = make_tenant(db, "acme")
    add_admin(db, tenant)
    log_dir = artifacts / "logs" / safe_name("test_the_activity_chart")
    log_dir.mkdir(parents=True, exist_ok=True)
    summary = page.locator("#chart-summary")
    with (
        smtp_sink() as smtp,
        pipeline_processes(database_url, log_dir, smtp) as pipeline,
        site.scim(tenant.token, OKTA) as okta,
    ):
        for n in range(150):
            assert okta.post("/Users", json=user_body(f"s{n}@acme.test")).status_code == 201
        sign_in(page, site, path="/activity")
        expect(summary).to_contain_text("Users created: 150, updated: 0, deactivated: 0.")
        # No worker yet: every change waits for its side effects.
        expect(summary).to_contain_text("Side effects waiting now: 150.")
        expect(page.locator("#changes-chart rect.series-created").first).to_be_visible()
        expect(page.locator("#backlog-chart polyline.series-backlog")).to_have_count(1)
        shot(page, "1-sync-waiting-for-workers")

        pipeline.start("relay")
        pipeline.start("worker")
        for n in range(150, 300):
            assert okta.post("/Users", json=user_body(f"s{n}@acme.test")).status_code == 201
        # The page refreshes itself; the workers catch up.
        expect(summary).to_contain_text("Users created: 300,", timeout=30_000)
        shot(page, "2-sync-running")
        expect(summary).to_contain_text("Side effects waiting now: 0.", timeout=60_000)
        page.locator("summary", has_text="The minutes as a table").click()
        created = page.locator("#minutes tbody tr td:nth-child(2)").all_inner_texts()
        assert sum(int(value.replace(",", "")) for value in created) == 300
        shot(page, "3-sync-settled")
