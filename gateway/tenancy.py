"""Tenant and SCIM-credential operations shared by the CLI (and, later, the admin pages).

Synchronous on purpose: these run from the operator command, not on the
IdP's request path.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.tokens import display_prefix, generate_token, hash_token
from models.tenants import Plan, ScimCredential, Tenant


class OperatorError(Exception):
    """An operator mistake with a message that says how to fix it."""


@dataclass(frozen=True)
class IssuedToken:
    tenant_slug: str
    token: str
    prefix: str


def create_tenant(conn: Connection, slug: str, name: str | None, plan: Plan) -> None:
    try:
        with conn.begin_nested():
            conn.execute(insert(Tenant).values(slug=slug, name=name or slug, plan=plan.value))
    except IntegrityError as exc:
        constraint = getattr(getattr(exc.orig, "diag", None), "constraint_name", "") or ""
        if "slug_is_dns_label" in constraint:
            raise OperatorError(
                f"{slug!r} is not a valid tenant slug: use 1-63 lowercase letters, digits and "
                "hyphens, not starting or ending with a hyphen (it becomes SLUG.<base domain>)."
            ) from None
        raise OperatorError(f"A tenant with the slug {slug!r} already exists.") from None


def tenant_id_for(conn: Connection, slug: str) -> uuid.UUID:
    tenant_id: uuid.UUID = _tenant(conn, slug).id
    return tenant_id


def _tenant(conn: Connection, slug: str, lock: bool = False) -> Tenant:
    query = select(Tenant.id, Tenant.slug, Tenant.plan, Tenant.scim_enabled).where(
        Tenant.slug == slug
    )
    row = conn.execute(query.with_for_update() if lock else query).first()
    if row is None:
        raise OperatorError(
            f"No tenant with the slug {slug!r}. Create it with `simpleams tenant create {slug}`."
        )
    return row  # type: ignore[return-value]


def issue_token(conn: Connection, slug: str) -> IssuedToken:
    """Enable SCIM (or rotate): a new token; any previous one stops working now.

    The tenant row is locked first, so two at once (a double-clicked Save)
    take turns instead of colliding on the one-live-token index.
    """
    tenant = _tenant(conn, slug, lock=True)
    if not Plan(tenant.plan).includes_scim:
        raise OperatorError(
            f"Tenant {slug!r} is on the {tenant.plan} plan; SCIM is a Business-plan integration. "
            f"Upgrade it first (`simpleams tenant plan {slug} business`)."
        )
    token = generate_token()
    _revoke(conn, tenant.id)
    conn.execute(
        insert(ScimCredential).values(
            tenant_id=tenant.id, token_hash=hash_token(token), token_prefix=display_prefix(token)
        )
    )
    conn.execute(update(Tenant).where(Tenant.id == tenant.id).values(scim_enabled=True))
    return IssuedToken(tenant_slug=slug, token=token, prefix=display_prefix(token))


def enable(conn: Connection, slug: str) -> IssuedToken | None:
    """Enable SCIM unless it already is (then None: the working token stays)."""
    tenant = _tenant(conn, slug, lock=True)
    live = conn.execute(
        select(ScimCredential.id).where(
            ScimCredential.tenant_id == tenant.id, ScimCredential.revoked_at.is_(None)
        )
    ).first()
    if tenant.scim_enabled and live is not None:
        return None
    return issue_token(conn, slug)


def rotate_token(conn: Connection, slug: str) -> IssuedToken:
    tenant = _tenant(conn, slug, lock=True)
    if not tenant.scim_enabled:
        raise OperatorError(
            f"SCIM is not enabled for {slug!r}; use `simpleams scim enable {slug}`."
        )
    return issue_token(conn, slug)


def disable(conn: Connection, slug: str) -> None:
    tenant = _tenant(conn, slug)
    _revoke(conn, tenant.id)
    conn.execute(update(Tenant).where(Tenant.id == tenant.id).values(scim_enabled=False))


def set_plan(conn: Connection, slug: str, plan: Plan) -> None:
    tenant = _tenant(conn, slug)
    conn.execute(update(Tenant).where(Tenant.id == tenant.id).values(plan=plan.value))


def _revoke(conn: Connection, tenant_id: object) -> None:
    conn.execute(
        update(ScimCredential)
        .where(ScimCredential.tenant_id == tenant_id, ScimCredential.revoked_at.is_(None))
        .values(revoked_at=func.now())
    )
