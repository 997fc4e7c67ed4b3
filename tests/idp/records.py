"""What the IdP scripts check in PostgreSQL after each step."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text


def staff_row(db: Engine, scim_id: str) -> Any:
    with db.connect() as conn:
        return conn.execute(text("SELECT * FROM users WHERE scim_id = :id"), {"id": scim_id}).one()


def event_kinds(db: Engine) -> list[str]:
    with db.connect() as conn:
        return list(
            conn.execute(text("SELECT kind FROM provisioning_events ORDER BY id")).scalars()
        )
