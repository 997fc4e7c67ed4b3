"""Tenant and SCIM-credential operations and tenant settings (notification
address, guard thresholds), shared by the CLI and the admin pages, and the
one reading of a Host header (which tenant a request's host names).

The operations are synchronous on purpose: they run from the operator
command, not on the IdP's request path.
"""

from __future__ import annotations

import ipaddress
import re
import uuid
from collections.abc import Iterable
from dataclasses import dataclass

from sqlalchemy import Connection, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from gateway.addresses import is_email_address
from gateway.tokens import display_prefix, generate_token, hash_token
from models.tenants import Plan, ScimCredential, Tenant


class OperatorError(Exception):
    """An operator mistake with a message that says how to fix it."""


# -- Host headers -------------------------------------------------------------
#
# Every reading of a Host header goes through parse_host(): the host binding
# of SCIM tokens and admin sessions (gateway/auth.py, gateway/admin), the
# URLs we answer with (gateway/scim/http.py), and the refusal of malformed
# hosts before any of them (gateway/app.py). Which tenant a parsed host
# names is models/tenant_addresses.py's to say. A Host header is a DNS name or
# an IP literal and an optional numeric port (RFC 9110 §7.2), nothing else:
# no userinfo, path, second colon or percent-encoding, so that no two
# readers can see two different hosts in one header.

_LABEL = r"[a-z0-9_](?:[a-z0-9_-]{0,61}[a-z0-9_])?"
_HOST_RE = re.compile(
    rf"(?:\[(?P<ipv6>[0-9a-f:.]+)\]|(?P<name>{_LABEL}(?:\.{_LABEL})*)\.?)(?::(?P<port>[0-9]{{1,5}}))?"
)
_MAX_NAME = 253


class MalformedHost(ValueError):
    """A Host header that is not a host name or IP literal with an optional port."""

    def __init__(self, problem: str = "The Host header is malformed") -> None:
        # Never echoes the header: it is whatever the client chose to send.
        super().__init__(
            f"{problem}. Send one Host header naming a DNS name or an IP address, optionally "
            "followed by ':' and a port number (such as acme.simpleams.co.uk or 10.0.0.5:8000)."
        )


@dataclass(frozen=True)
class Host:
    """A parsed Host header.

    :param name: lower case, without a trailing dot; an IPv6 address without brackets.
    :param port: the port, when one was given.
    :param ip: whether ``name`` is an IP address.
    """

    name: str
    port: int | None
    ip: bool

    @property
    def netloc(self) -> str:
        """Rebuilt from the parsed parts, never copied from the header."""
        shown = f"[{self.name}]" if ":" in self.name else self.name
        return shown if self.port is None else f"{shown}:{self.port}"

    @property
    def local(self) -> bool:
        """localhost or an IP literal: a developer, or a load balancer's health check."""
        return self.ip or self.name == "localhost"


def parse_host(value: str) -> Host | None:
    """The host a Host header value names; None for an empty one.

    :raises MalformedHost: for anything but a DNS name or an IP literal with an optional port.
    """
    if not value:
        return None
    found = _HOST_RE.fullmatch(value.lower()) if value.isascii() else None
    if found is None:
        raise MalformedHost()
    port = None
    if found["port"] is not None:
        port = int(found["port"])
        if not 0 < port < 65536:
            raise MalformedHost("The Host header names a port outside 1-65535")
    if found["ipv6"] is not None:
        try:
            return Host(str(ipaddress.IPv6Address(found["ipv6"])), port, ip=True)
        except ValueError:
            raise MalformedHost() from None
    name: str = found["name"]
    try:
        return Host(str(ipaddress.IPv4Address(name)), port, ip=True)
    except ValueError:
        pass
    # A numeric last label is an IPv4 address in some spelling (127.1, 0x7f.1,
    # 010.0.0.1): browsers and resolvers disagree about which one.
    if len(name) > _MAX_NAME or name.rsplit(".", 1)[-1].isdigit():
        raise MalformedHost()
    return Host(name, port, ip=False)


def request_host(headers: Iterable[tuple[bytes, bytes]]) -> Host | None:
    """The host of a request, from its ASGI headers; None when it sent none.

    :raises MalformedHost: for a malformed Host header, or more than one.
    """
    values = [value for name, value in headers if name.lower() == b"host"]
    if len(values) > 1:
        raise MalformedHost("The request sent more than one Host header")
    return parse_host(values[0].decode("latin-1")) if values else None


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


# -- Tenant settings -----------------------------------------------------------


def set_notify_email(conn: Connection, slug: str, address: str | None) -> None:
    if address is not None and not is_email_address(address):
        raise OperatorError(f"{address!r} is not an email address.")
    tenant_id = tenant_id_for(conn, slug)
    conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(notify_email=address))


def set_guard(
    conn: Connection,
    slug: str,
    guard_percent: int | None = None,
    guard_min_users: int | None = None,
    guard_window_minutes: int | None = None,
) -> None:
    values = {
        name: value
        for name, value in (
            ("guard_percent", guard_percent),
            ("guard_min_users", guard_min_users),
            ("guard_window_minutes", guard_window_minutes),
        )
        if value is not None
    }
    if any(value < 1 for value in values.values()) or values.get("guard_percent", 1) > 100:
        raise OperatorError("Guard settings are positive whole numbers; the percent is 1-100.")
    tenant_id = tenant_id_for(conn, slug)
    conn.execute(update(Tenant).where(Tenant.id == tenant_id).values(**values))
