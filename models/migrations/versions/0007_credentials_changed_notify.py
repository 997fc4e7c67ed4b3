"""credentials changed notify

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-29 16:00:00

The gateway caches which tenant a bearer token belongs to
(gateway/credentials.py). Anything that could change that answer NOTIFYs
``scim_credentials_changed`` at commit, and every web process drops its
cache: a new, rotated or revoked credential, and a tenant's slug, plan or
SCIM switch. last_used_at (written once a minute) does not.
"""

from collections.abc import Sequence

from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def upgrade() -> None:
    op.execute(
        """
        CREATE FUNCTION scim_credentials_changed_notify() RETURNS trigger LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('scim_credentials_changed', '');
            RETURN NULL;
        END $$
        """
    )
    op.execute(
        """
        CREATE TRIGGER scim_credentials_changed
        AFTER INSERT OR DELETE OR UPDATE OF token_hash, tenant_id, revoked_at
        ON scim_credentials
        FOR EACH STATEMENT EXECUTE FUNCTION scim_credentials_changed_notify()
        """
    )
    op.execute(
        """
        CREATE TRIGGER tenants_credentials_changed
        AFTER DELETE OR UPDATE OF slug, plan, scim_enabled
        ON tenants
        FOR EACH STATEMENT EXECUTE FUNCTION scim_credentials_changed_notify()
        """
    )
    for table in ("scim_credentials", "tenants"):
        op.execute(
            f"""
            CREATE TRIGGER {table}_truncated_credentials_changed
            AFTER TRUNCATE ON {table}
            FOR EACH STATEMENT EXECUTE FUNCTION scim_credentials_changed_notify()
            """
        )


def downgrade() -> None:
    for table in ("scim_credentials", "tenants"):
        op.execute(f"DROP TRIGGER {table}_truncated_credentials_changed ON {table}")
    op.execute("DROP TRIGGER tenants_credentials_changed ON tenants")
    op.execute("DROP TRIGGER scim_credentials_changed ON scim_credentials")
    op.execute("DROP FUNCTION scim_credentials_changed_notify()")
