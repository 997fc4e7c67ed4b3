"""Reading the test database in one line: a statement's first value, or its rows.

A plain module rather than fixtures, so that helpers outside a test (pipeline.py,
soak.py) use the same two functions.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Engine, text


def scalar(db: Engine, sql: str, **params: Any) -> Any:
    """The first column of the first row of ``sql`` (None when there is no row)."""
    with db.connect() as conn:
        return conn.execute(text(sql), params).scalar()


def rows(db: Engine, sql: str, **params: Any) -> list[Any]:
    """Every row of ``sql``."""
    with db.connect() as conn:
        return list(conn.execute(text(sql), params).all())
