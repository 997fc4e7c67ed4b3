"""The links in notification emails are the tenant's public URLs
(models/tenant_addresses.py), with the public scheme the gateway uses."""

from __future__ import annotations

import uuid

import pytest
from sqlalchemy import Engine
from sqlalchemy.orm import Session

from models.tenants import Tenant
from workers import notify
from workers.settings import WorkerSettings


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_a_digest_links_the_staff_list_with_the_public_scheme(
    scheme: str, db: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SIMPLEAMS_PUBLIC_SCHEME", scheme)
    monkeypatch.setenv("SIMPLEAMS_BASE_DOMAIN", "simpleams.test")
    monkeypatch.setattr(notify, "settings", WorkerSettings.from_env())
    tenant = Tenant(slug="acme", name="Acme", notify_email="it-admins@acme.test")
    with Session(db) as session:
        email = notify._digest_for(session, tenant, uuid.uuid4())
    assert f"\nStaff list: {scheme}://acme.simpleams.test/staff\n" in email.body
