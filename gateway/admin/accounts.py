"""Creating tenant admins and resetting their passwords (the `simpleams admin` CLI)."""

from __future__ import annotations

from sqlalchemy import Connection, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.addresses import is_email_address
from gateway.admin.passwords import WeakPassword, check_strength, hash_password
from gateway.tenancy import OperatorError, tenant_id_for
from models.admins import Admin, AdminSession


def create_admin(conn: Connection, slug: str, email: str, password: str) -> None:
    tenant_id = tenant_id_for(conn, slug)
    _check(email, password)
    try:
        with conn.begin_nested():
            conn.execute(
                insert(Admin).values(
                    tenant_id=tenant_id, email=email, password_hash=hash_password(password)
                )
            )
    except IntegrityError:
        raise OperatorError(
            f"{email} is already an admin of {slug!r}; to change the password use "
            f"`simpleams admin password {slug} {email}`."
        ) from None


def set_password(conn: Connection, slug: str, email: str, password: str) -> None:
    """A new password; every session of that admin is signed out."""
    tenant_id = tenant_id_for(conn, slug)
    _check(email, password)
    admin_id = conn.execute(
        update(Admin)
        .where(Admin.tenant_id == tenant_id, func.lower(Admin.email) == email.lower())
        .values(password_hash=hash_password(password))
        .returning(Admin.id)
    ).scalar()
    if admin_id is None:
        raise OperatorError(
            f"{email} is not an admin of {slug!r}; create one with "
            f"`simpleams admin create {slug} {email}`."
        )
    conn.execute(delete(AdminSession).where(AdminSession.admin_id == admin_id))


def admin_emails(conn: Connection, slug: str) -> list[str]:
    tenant_id = tenant_id_for(conn, slug)
    return list(
        conn.execute(select(Admin.email).where(Admin.tenant_id == tenant_id).order_by(Admin.email))
        .scalars()
        .all()
    )


def _check(email: str, password: str) -> None:
    if not is_email_address(email):
        raise OperatorError(f"{email!r} is not an email address.")
    try:
        check_strength(password)
    except WeakPassword as exc:
        raise OperatorError(f"Password refused: {exc}") from None
