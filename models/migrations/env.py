"""Alembic environment: synchronous, reads DATABASE_URL (one URL for every engine)."""

from __future__ import annotations

import os

from alembic import context
from sqlalchemy import create_engine, pool

from models import Base

DEFAULT_DATABASE_URL = "postgresql+psycopg://root@127.0.0.1:5432/test"

# Expression indexes with an operator class that autogenerate cannot compare
# (it reports them as changed on every run); their migration is hand-written.
UNCOMPARABLE_INDEXES = frozenset({"ix_users_staff_search"})


def include_object(
    obj: object, name: str | None, type_: str, reflected: bool, compare_to: object
) -> bool:
    return not (type_ == "index" and name in UNCOMPARABLE_INDEXES)


def _url() -> str:
    configured = context.config.attributes.get("database_url")
    return str(configured or os.environ.get("DATABASE_URL", DEFAULT_DATABASE_URL))


def run_migrations_offline() -> None:
    context.configure(
        url=_url(),
        target_metadata=Base.metadata,
        literal_binds=True,
        include_object=include_object,
    )
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    engine = create_engine(_url(), poolclass=pool.NullPool)
    with engine.connect() as connection:
        context.configure(
            connection=connection, target_metadata=Base.metadata, include_object=include_object
        )
        with context.begin_transaction():
            context.run_migrations()
    engine.dispose()


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
