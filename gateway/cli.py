"""`simpleams`: the operator command.

    simpleams migrate
    simpleams tenant create SLUG [--name NAME] [--plan free|pro|business]
    simpleams tenant plan SLUG free|pro|business
    simpleams scim enable SLUG      # prints endpoint and token; token alone on the last line
    simpleams scim rotate SLUG
    simpleams scim disable SLUG
    simpleams tenant set SLUG --notify-email ADDRESS
    simpleams demo [SLUG]           # business tenant + fresh token, for local bring-up
    simpleams audit SLUG [--user EMAIL] [--since ISO] [--json]
    simpleams events failed         # dead letters: side effects that failed for good
    simpleams events retry ID|--all # put them back in the outbox
    simpleams checkout SLUG EMAIL ASSET_TAG
    simpleams checkin SLUG ASSET_TAG
    simpleams guard release SLUG    # apply deactivations held by the mass-deprovision guard
    simpleams admin create SLUG EMAIL    # password prompted, or read from stdin when piped
    simpleams admin password SLUG EMAIL  # set a new one; signs that admin out everywhere
    simpleams admin list SLUG

Exit status: 0 on success, 1 on an operator error (unknown tenant, wrong
plan, database unreachable), 2 on bad usage.

Everything it prints goes through ``_say``: a control character in stored data
(an ESC in an email written before SCIM input refused it, a newline in an
error) is shown escaped, ``\\x1b`` or ``\\n``, and never reaches the terminal.
"""

from __future__ import annotations

import argparse
import getpass
import json
import logging
import secrets
import sys
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime
from typing import Any, TextIO

from sqlalchemy import Connection, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gateway import role_mappings, side_effects, staff_history, tenancy
from gateway.addresses import is_control_character
from gateway.admin import accounts
from gateway.settings import Settings
from models.tenants import Plan, Tenant
from models.users import Role
from observability import logs

PLANS = [plan.value for plan in Plan]


def migrate(settings: Settings) -> None:
    """Apply the Alembic migrations (the only way the schema is ever created)."""
    from alembic import command

    from models import migrations

    command.upgrade(migrations.config(settings.database_url), "head")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="simpleams", description="SimpleAMS provisioning operations"
    )
    commands = parser.add_subparsers(dest="command", required=True)

    commands.add_parser("migrate", help="apply database migrations")

    tenant = commands.add_parser("tenant", help="manage tenants").add_subparsers(
        dest="action", required=True
    )
    create = tenant.add_parser("create", help="create a tenant")
    create.add_argument("slug")
    create.add_argument("--name")
    create.add_argument("--plan", choices=PLANS, default=Plan.free.value)
    plan = tenant.add_parser("plan", help="change a tenant's plan")
    plan.add_argument("slug")
    plan.add_argument("plan", choices=PLANS)
    settings = tenant.add_parser("set", help="change a tenant's settings")
    settings.add_argument("slug")
    settings.add_argument("--notify-email", help="where leaver alerts and digests go ('' to stop)")
    settings.add_argument(
        "--guard-percent", type=int, help="mass-deprovision guard: share of users (default 10)"
    )
    settings.add_argument(
        "--guard-min-users", type=int, help="mass-deprovision guard: at least this many (10)"
    )
    settings.add_argument(
        "--guard-window-minutes", type=int, help="mass-deprovision guard: window (60)"
    )

    audit = commands.add_parser("audit", help="read a tenant's audit log")
    audit.add_argument("slug")
    audit.add_argument("--user", metavar="EMAIL", help="only this user's entries")
    audit.add_argument("--since", metavar="ISO", type=_timestamp, help="e.g. 2026-11-01T00:00Z")
    audit.add_argument("--json", action="store_true", help="one JSON object per line")

    events = commands.add_parser("events", help="side effects that failed").add_subparsers(
        dest="action", required=True
    )
    events.add_parser("failed", help="list dead letters")
    retry = events.add_parser("retry", help="replay dead letters")
    retry.add_argument("ids", nargs="*", metavar="ID", help="EVENT_ID:EFFECT")
    retry.add_argument("--all", action="store_true", help="every dead letter")

    checkout = commands.add_parser("checkout", help="record an asset checkout")
    checkout.add_argument("slug")
    checkout.add_argument("email")
    checkout.add_argument("asset_tag")
    guard = commands.add_parser("guard", help="the mass-deprovision guard").add_subparsers(
        dest="action", required=True
    )
    guard.add_parser("release", help="apply the deactivations it held").add_argument("slug")

    roles = commands.add_parser("roles", help="map IdP groups to SimpleAMS roles").add_subparsers(
        dest="action", required=True
    )
    role_map = roles.add_parser("map", help="members of the IdP group GROUP get ROLE")
    role_map.add_argument("slug")
    role_map.add_argument(
        "group", metavar="GROUP", help='the group\'s name, e.g. "SimpleAMS Admins"'
    )
    role_map.add_argument("role", choices=[role.value for role in Role])
    unmap = roles.add_parser("unmap", help="remove a mapping; its members go back to staff")
    unmap.add_argument("slug")
    unmap.add_argument("group", metavar="GROUP")
    roles.add_parser("list", help="a tenant's mappings").add_argument("slug")

    checkin = commands.add_parser("checkin", help="record an asset check-in")
    checkin.add_argument("slug")
    checkin.add_argument("asset_tag")

    scim = commands.add_parser("scim", help="manage the SCIM integration").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("enable", "enable SCIM and print a new bearer token (shown once)"),
        ("rotate", "replace the bearer token; the old one stops working"),
        ("disable", "disable SCIM; the token stops working"),
    ):
        scim.add_parser(action, help=text).add_argument("slug")

    admin = commands.add_parser("admin", help="tenant admins of the admin pages").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("create", "create an admin (password prompted, or read from stdin)"),
        ("password", "set an admin's password and sign them out everywhere"),
    ):
        one = admin.add_parser(action, help=text)
        one.add_argument("slug")
        one.add_argument("email")
    admin.add_parser("list", help="list a tenant's admins").add_argument("slug")

    demo = commands.add_parser(
        "demo", help="create (or reuse) a Business demo tenant and print a fresh token"
    )
    demo.add_argument("slug", nargs="?", default="demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if (
        args.command == "tenant"
        and args.action == "set"
        and all(
            getattr(args, name) is None
            for name in ("notify_email", "guard_percent", "guard_min_users", "guard_window_minutes")
        )
    ):
        parser.error("tenant set: give --notify-email and/or a --guard-* setting")
    if args.command == "events" and args.action == "retry" and bool(args.ids) == args.all:
        parser.error("events retry: give dead-letter IDs or --all (not both)")
    try:
        # What it has to tell goes to standard output (_say); the log, on
        # standard error, is for warnings and errors, in SIMPLEAMS_LOG_FORMAT.
        logs.configure(logging.WARNING)
    except ValueError as exc:
        parser.error(str(exc))
    settings = Settings.from_env()
    if args.command == "admin" and args.action in ("create", "password"):
        args.password = _read_password()
        if args.password is None:
            _say("simpleams: the two passwords differ; nothing changed.", file=sys.stderr)
            return 1
    try:
        if args.command == "migrate":
            migrate(settings)
            _say("Database migrated to the latest schema.")
            return 0
        return _in_transaction(settings, lambda conn: _dispatch(args, conn, settings))
    except tenancy.OperatorError as exc:
        _say(f"simpleams: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        url = make_url(settings.database_url)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        _say(
            f"simpleams: cannot reach the database at {url.host}:{url.port or 5432}/{url.database} "
            f"({reason}). Is PostgreSQL running, and is DATABASE_URL right?",
            file=sys.stderr,
        )
        return 1


def _in_transaction(settings: Settings, work: Callable[[Connection], int]) -> int:
    engine = create_engine(settings.database_url, connect_args={"connect_timeout": 5})
    try:
        with engine.begin() as conn:
            return work(conn)
    finally:
        engine.dispose()


def _dispatch(args: argparse.Namespace, conn: Connection, settings: Settings) -> int:
    if args.command == "tenant" and args.action == "create":
        tenancy.create_tenant(conn, args.slug, args.name, Plan(args.plan))
        _say(f"Created tenant {args.slug!r} on the {args.plan} plan.")
    elif args.command == "tenant" and args.action == "plan":
        tenancy.set_plan(conn, args.slug, Plan(args.plan))
        _say(f"Tenant {args.slug!r} is now on the {args.plan} plan.")
    elif args.command == "tenant" and args.action == "set":
        if args.notify_email is not None:
            tenancy.set_notify_email(conn, args.slug, args.notify_email or None)
            _say(f"Notifications for {args.slug!r} go to {args.notify_email or 'nobody'}.")
        guard = {
            "guard_percent": args.guard_percent,
            "guard_min_users": args.guard_min_users,
            "guard_window_minutes": args.guard_window_minutes,
        }
        if any(value is not None for value in guard.values()):
            tenancy.set_guard(conn, args.slug, **guard)
            _say(f"Mass-deprovision guard for {args.slug!r} updated.")
    elif args.command == "audit":
        _print_audit(staff_history.audit_entries(conn, args.slug, args.user, args.since), args.json)
    elif args.command == "events" and args.action == "failed":
        _print_dead_letters(side_effects.failed_side_effects(conn))
    elif args.command == "events" and args.action == "retry":
        count = side_effects.retry_side_effects(conn, None if args.all else args.ids)
        _say(f"{count} failed side effect(s) put back in the outbox; the relay will retry them.")
    elif args.command == "checkout":
        staff_history.record_checkout(conn, args.slug, args.email, args.asset_tag)
        _say(f"{args.asset_tag} checked out to {args.email}.")
    elif args.command == "guard" and args.action == "release":
        count = side_effects.release_guard(conn, args.slug)
        _say(f"Released {count} held deactivation(s) for {args.slug!r}; their effects run now.")
    elif args.command == "roles" and args.action == "map":
        changed = role_mappings.map_group(conn, args.slug, args.group, args.role)
        _say(f"Members of {args.group!r} are now {args.role}s; {changed} users' roles changed.")
    elif args.command == "roles" and args.action == "unmap":
        changed = role_mappings.unmap_group(conn, args.slug, args.group)
        _say(f"{args.group!r} no longer sets a role; {changed} users' roles changed.")
    elif args.command == "roles" and args.action == "list":
        mappings = role_mappings.list_mappings(conn, args.slug)
        if not mappings:
            _say("No role mappings: every provisioned user is staff.")
        for mapping in mappings:
            _say(mapping.group_name, mapping.role, f"{mapping.members} members", sep="\t")
    elif args.command == "checkin":
        staff_history.record_checkin(conn, args.slug, args.asset_tag)
        _say(f"{args.asset_tag} checked in.")
    elif args.command == "scim" and args.action in ("enable", "rotate"):
        issue = tenancy.issue_token if args.action == "enable" else tenancy.rotate_token
        _print_token(issue(conn, args.slug), settings)
    elif args.command == "scim" and args.action == "disable":
        tenancy.disable(conn, args.slug)
        _say(f"SCIM disabled for {args.slug!r}; its token no longer works.")
    elif args.command == "admin" and args.action == "create":
        accounts.create_admin(conn, args.slug, args.email, args.password)
        _say(f"{args.email} can now sign in to {args.slug!r} at /login.")
    elif args.command == "admin" and args.action == "password":
        accounts.set_password(conn, args.slug, args.email, args.password)
        _say(f"Password changed for {args.email}; their sessions are signed out.")
    elif args.command == "admin" and args.action == "list":
        for email in accounts.admin_emails(conn, args.slug):
            _say(email)
    elif args.command == "demo":
        exists = conn.execute(select(Tenant.id).where(Tenant.slug == args.slug)).first()
        if exists is None:
            tenancy.create_tenant(conn, args.slug, "Demo Ltd", Plan.business)
        else:
            tenancy.set_plan(conn, args.slug, Plan.business)
        _print_demo_admin(conn, args.slug)
        _print_demo_notifications(conn, args.slug)
        _print_token(tenancy.issue_token(conn, args.slug), settings)
    return 0


def _read_password() -> str | None:
    """Prompted twice on a terminal; otherwise the first line of stdin (scripts, CI)."""
    if not sys.stdin.isatty():
        return sys.stdin.readline().rstrip("\r\n")
    first = getpass.getpass("Password: ")
    return first if getpass.getpass("Same password again: ") == first else None


def _print_demo_admin(conn: Connection, slug: str) -> None:
    email = f"admin@{slug}.example"
    password = secrets.token_urlsafe(12)
    if email in accounts.admin_emails(conn, slug):
        accounts.set_password(conn, slug, email, password)
    else:
        accounts.create_admin(conn, slug, email, password)
    _say(
        f"Admin pages: sign in at /login as workspace {slug!r}, email {email}, "
        f"password {password} (new each run)"
    )


def _print_demo_notifications(conn: Connection, slug: str) -> None:
    # A demo shows what provisioning sends (leaver alerts, digests): to the
    # demo admin, unless someone chose another address already.
    address = conn.scalar(select(Tenant.notify_email).where(Tenant.slug == slug))
    if address is None:
        address = f"admin@{slug}.example"
        tenancy.set_notify_email(conn, slug, address)
    _say(f"Notifications (leaver alerts, digests) go to {address}")


def _timestamp(value: str) -> datetime:
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"{value!r} is not an ISO 8601 time") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def _print_audit(entries: Iterable[dict[str, Any]], as_json: bool) -> None:
    for entry in entries:
        if as_json:
            _say(_printable(json.dumps(entry, ensure_ascii=False, sort_keys=True), in_json=True))
            continue
        changed = ", ".join(_change_text(name, change) for name, change in entry["changes"].items())
        target = entry["user"] or f"group {entry['group']!r}"
        who = f"{target}  by {entry['actor']}"
        _say(f"{entry['time']}  {entry['action']:<11}  {who}  {changed}")


def _change_text(name: str, change: Any) -> str:
    if isinstance(change, dict):  # a group's members: {"added": [ids], "removed": [ids]}
        moved = ", ".join(f"{len(ids)} {how}" for how, ids in change.items())
        return f"{name}: {moved}"
    before, after = change
    return f"{name}: {before!r} -> {after!r}"


def _print_dead_letters(letters: list[side_effects.DeadLetter]) -> None:
    if not letters:
        _say("No failed side effects.")
        return
    for letter in letters:
        _say(
            f"{letter.id:<24} {letter.tenant:<16} {letter.kind:<18} attempts={letter.attempts} "
            f"failed={letter.failed_at:%Y-%m-%d %H:%M:%S} {letter.error or ''}"
        )


def _print_token(issued: tenancy.IssuedToken, settings: Settings) -> None:
    _say(f"SCIM enabled for tenant {issued.tenant_slug!r}.")
    _say(f"Endpoint URL: {settings.endpoint_for(issued.tenant_slug)}")
    _say("Bearer token (shown once; store it in your IdP now. Any previous token no longer works):")
    _say(issued.token)


# --- output: everything the command prints goes through _say ---------------------

_NAMED_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}


def _printable(text: str, *, in_json: bool = False) -> str:
    """``text`` with each control character written as an escape, never emitted.

    Control characters are the ones gateway/addresses.py names (C0, DEL, C1,
    format characters such as bidi overrides, U+2028/U+2029): the set SCIM
    input refuses in userName and emails. Values stored before that rule, and
    every other stored text (display names, group names, errors), may still
    hold them, and ESC or CSI printed raw would drive the operator's terminal.
    ESC shows as ``\\x1b``, a newline as ``\\n``, U+2028 as ``\\u2028``; a
    backslash already in the data is left as it is. With ``in_json``, the
    escapes are JSON's (``\\u009b``; json.dumps writes C0 that way already), so
    the line still parses to exactly the stored values.
    """
    if text.isprintable():  # the common case; no control character is printable
        return text
    return "".join(_escape(char, in_json) if is_control_character(char) else char for char in text)


def _escape(char: str, in_json: bool) -> str:
    code = ord(char)
    if in_json:
        if code > 0xFFFF:  # JSON spells a character beyond the BMP as a surrogate pair
            code -= 0x10000
            return f"\\u{0xD800 + (code >> 10):04x}\\u{0xDC00 + (code & 0x3FF):04x}"
        return f"\\u{code:04x}"
    if char in _NAMED_ESCAPES:
        return _NAMED_ESCAPES[char]
    if code < 0x100:
        return f"\\x{code:02x}"
    return f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def _say(*parts: object, sep: str = " ", file: TextIO | None = None) -> None:
    """print(), for this command: each part is made printable, ``sep`` is ours."""
    print(sep.join(_printable(str(part)) for part in parts), file=file or sys.stdout)


if __name__ == "__main__":
    sys.exit(main())
