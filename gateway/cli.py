"""`simpleams`: the operator command.

    simpleams migrate
    simpleams tenant create SLUG [--name NAME] [--plan free|pro|business]
    simpleams tenant plan SLUG free|pro|business
    simpleams scim enable SLUG      # prints endpoint and token; token alone on the last line
    simpleams scim rotate SLUG
    simpleams scim disable SLUG
    simpleams demo [SLUG]           # business tenant + fresh token, for local bring-up

Exit status: 0 on success, 1 on an operator error (unknown tenant, wrong
plan, database unreachable), 2 on bad usage.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from importlib import resources

from sqlalchemy import Connection, create_engine, select
from sqlalchemy.engine import make_url
from sqlalchemy.exc import OperationalError

from gateway import tenancy
from gateway.settings import Settings
from models.tenants import Plan, Tenant

PLANS = [plan.value for plan in Plan]


def migrate(settings: Settings) -> None:
    """Apply the Alembic migrations (the only way the schema is ever created)."""
    from alembic import command
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(resources.files("models") / "migrations"))
    config.attributes["database_url"] = settings.database_url
    command.upgrade(config, "head")


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

    scim = commands.add_parser("scim", help="manage the SCIM integration").add_subparsers(
        dest="action", required=True
    )
    for action, text in (
        ("enable", "enable SCIM and print a new bearer token (shown once)"),
        ("rotate", "replace the bearer token; the old one stops working"),
        ("disable", "disable SCIM; the token stops working"),
    ):
        scim.add_parser(action, help=text).add_argument("slug")

    demo = commands.add_parser(
        "demo", help="create (or reuse) a Business demo tenant and print a fresh token"
    )
    demo.add_argument("slug", nargs="?", default="demo")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    settings = Settings.from_env()
    try:
        if args.command == "migrate":
            migrate(settings)
            print("Database migrated to the latest schema.")
            return 0
        return _in_transaction(settings, lambda conn: _dispatch(args, conn, settings))
    except tenancy.TenancyError as exc:
        print(f"simpleams: {exc}", file=sys.stderr)
        return 1
    except OperationalError as exc:
        url = make_url(settings.database_url)
        reason = str(exc.orig).strip().splitlines()[0] if exc.orig else type(exc).__name__
        print(
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
        print(f"Created tenant {args.slug!r} on the {args.plan} plan.")
    elif args.command == "tenant" and args.action == "plan":
        tenancy.set_plan(conn, args.slug, Plan(args.plan))
        print(f"Tenant {args.slug!r} is now on the {args.plan} plan.")
    elif args.command == "scim" and args.action in ("enable", "rotate"):
        issue = tenancy.issue_token if args.action == "enable" else tenancy.rotate_token
        _print_token(issue(conn, args.slug), settings)
    elif args.command == "scim" and args.action == "disable":
        tenancy.disable(conn, args.slug)
        print(f"SCIM disabled for {args.slug!r}; its token no longer works.")
    elif args.command == "demo":
        exists = conn.execute(select(Tenant.id).where(Tenant.slug == args.slug)).first()
        if exists is None:
            tenancy.create_tenant(conn, args.slug, "Demo Ltd", Plan.business)
        else:
            tenancy.set_plan(conn, args.slug, Plan.business)
        _print_token(tenancy.issue_token(conn, args.slug), settings)
    return 0


def _print_token(issued: tenancy.IssuedToken, settings: Settings) -> None:
    print(f"SCIM enabled for tenant {issued.tenant_slug!r}.")
    print(f"Endpoint URL: {settings.endpoint_for(issued.tenant_slug)}")
    print(
        "Bearer token (shown once; store it in your IdP now. Any previous token no longer works):"
    )
    print(issued.token)


if __name__ == "__main__":
    sys.exit(main())
