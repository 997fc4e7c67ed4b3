"""Every admin page state passes axe-core's WCAG 2.1 A and AA rules in Chromium.

axe-core (bundled by axe-playwright-python) runs inside the page as the
browser rendered it: labels, names of buttons and links, contrast, landmarks,
headings, ARIA. A violation fails the test with the rule, its help text and
the offending elements.
"""

from __future__ import annotations

from collections.abc import Callable

import pytest
from axe_playwright_python.sync_playwright import Axe
from playwright.sync_api import Page
from sqlalchemy import Engine, insert, text, update

from gateway import staff_history
from models.outbox import SideEffectRun
from models.tenants import Plan, Tenant
from tests.browser.conftest import OKTA, Site, add_admin, sign_in
from tests.conftest import make_tenant, user_body

WCAG = {"runOnly": {"type": "tag", "values": ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa"]}}
_axe = Axe()


def assert_accessible(page: Page, what: str) -> None:
    results = _axe.run(page, options=WCAG)
    problems = [
        f"{violation['id']} ({violation['impact']}): {violation['help']}\n    "
        + "\n    ".join(node["html"][:160] for node in violation["nodes"][:5])
        for violation in results.response["violations"]
    ]
    assert not problems, f"{what}:\n" + "\n".join(problems)


def test_axe_itself_finds_a_violation(page: Page) -> None:
    """The check can fail: an unlabelled input and low-contrast text are reported."""
    page.set_content(
        '<!doctype html><html lang="en"><title>x</title><main><input id="q">'
        '<p style="color:#ccc;background:#fff">faint</p></main></html>'
    )
    ids = {violation["id"] for violation in _axe.run(page, options=WCAG).response["violations"]}
    assert {"label", "color-contrast"} <= ids


def test_sign_in_pages(page: Page, site: Site) -> None:
    page.goto(site.url("/login", None))
    assert_accessible(page, "/login with the workspace field")
    page.goto(site.url("/login"))
    assert_accessible(page, "/login on the tenant host")
    page.get_by_label("Email", exact=True).fill("nobody@acme.test")
    page.get_by_label("Password", exact=True).fill("not the password")
    page.get_by_role("button", name="Sign in").click()
    assert_accessible(page, "/login with an error")


@pytest.mark.parametrize("plan", [Plan.business, Plan.pro])
def test_the_scim_card_in_each_state(page: Page, site: Site, db: Engine, plan: Plan) -> None:
    add_admin(db, make_tenant(db, "acme", plan=plan, enable=False))
    sign_in(page, site, path="/settings/integrations/scim")
    assert_accessible(page, f"SCIM card, {plan.value}, disabled")
    if plan is not Plan.business:
        return
    page.get_by_label("Enable this integration").check()
    page.get_by_role("button", name="Save").click()
    assert_accessible(page, "SCIM card with the one-time token")
    page.reload()
    page.locator("summary", has_text="Regenerate token").click()  # open the <details>
    assert_accessible(page, "SCIM card enabled, regenerate open")


def test_staff_pages_activity_and_errors(
    page: Page, site: Site, db: Engine, shot: Callable[[Page, str], None]
) -> None:
    tenant = make_tenant(db, "acme")
    add_admin(db, tenant)
    with site.scim(tenant.token, OKTA) as idp:
        ids = []
        for name in ("ana", "ben", "cy"):
            created = idp.post("/Users", json=user_body(f"{name}@acme.test"))
            assert created.status_code == 201
            ids.append(created.json()["id"])
        with db.begin() as conn:
            staff_history.record_checkout(conn, "acme", "ben@acme.test", "LAPTOP-1")
        patch = {
            "schemas": ["urn:ietf:params:scim:api:messages:2.0:PatchOp"],
            "Operations": [{"op": "replace", "value": {"active": False}}],
        }
        assert idp.patch(f"/Users/{ids[1]}", json=patch).status_code == 200
        assert idp.delete(f"/Users/{ids[2]}").status_code == 204
    with db.begin() as conn:
        event_id = conn.execute(text("SELECT min(id) FROM provisioning_events")).scalar_one()
        conn.execute(
            insert(SideEffectRun).values(
                event_id=event_id, effect="notify", status="failed", error="SMTP 550"
            )
        )
        conn.execute(update(Tenant).values(guard_tripped_at=text("now()")))
        ben = conn.execute(text("SELECT id FROM users WHERE email = 'ben@acme.test'")).scalar_one()

    sign_in(page, site)
    assert_accessible(page, "/staff")
    page.goto(site.url("/staff?status=deleted"))
    assert_accessible(page, "/staff, deleted tab")
    page.goto(site.url("/staff?q=nobody-matches"))
    assert_accessible(page, "/staff, a search with no match")
    page.goto(site.url(f"/staff/{ben}"))
    assert_accessible(page, "/staff/{id} of a leaver with a checkout")
    page.goto(site.url("/activity"))
    shot(page, "activity-failed-and-guard")
    assert_accessible(page, "/activity with a failed effect and the guard tripped")
    page.goto(site.url("/staff/not-an-id"))
    assert_accessible(page, "the 404 page")
