"""gateway/db.py: one classification of database failures, for every caller."""

from __future__ import annotations

import pytest
from sqlalchemy.exc import (
    DataError,
    DBAPIError,
    IntegrityError,
    OperationalError,
    ProgrammingError,
)
from sqlalchemy.exc import TimeoutError as PoolTimeoutError

from gateway.db import Failure, classify, sqlstate


class Orig(Exception):
    """What psycopg raises: an error carrying PostgreSQL's SQLSTATE (or None)."""

    def __init__(self, state: str | None) -> None:
        super().__init__("from the driver")
        self.sqlstate = state


def failed(kind: type[DBAPIError], state: str | None, invalidated: bool = False) -> DBAPIError:
    return kind("SELECT 1", {}, Orig(state), connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("exc", "expected"),
    [
        # The database is away, busy, or rolled the write back: retry shortly.
        (failed(OperationalError, "08006"), "unavailable"),  # connection failure
        (failed(DBAPIError, "08001"), "unavailable"),
        (failed(DBAPIError, "40P01"), "unavailable"),  # deadlock victim
        (failed(DBAPIError, "40001"), "unavailable"),  # serialization failure
        (failed(OperationalError, "53300"), "unavailable"),  # too many connections
        (failed(OperationalError, "57014"), "unavailable"),  # statement timeout
        (failed(OperationalError, "57P01"), "unavailable"),  # administrator shutdown
        (failed(OperationalError, None), "unavailable"),  # no answer at all
        (failed(IntegrityError, "23505", invalidated=True), "unavailable"),
        (PoolTimeoutError("QueuePool limit reached"), "unavailable"),
        # A value of the request that PostgreSQL refuses: the client's to correct.
        (failed(DataError, "22021"), "refused"),  # not in the encoding (a NUL)
        (failed(DataError, "22001"), "refused"),  # too long for the column
        (failed(DBAPIError, "22P02"), "refused"),
        (failed(OperationalError, "54000"), "refused"),  # too long to index
        (failed(DataError, None), "refused"),  # refused by the driver itself
        # Anything else is a fault of ours.
        (failed(IntegrityError, "23505"), "other"),
        (failed(ProgrammingError, "42P01"), "other"),
        (failed(OperationalError, "XX000"), "other"),
        (failed(DBAPIError, None), "other"),
    ],
)
def test_classify(exc: BaseException, expected: Failure) -> None:
    assert classify(exc) == expected


def test_sqlstate_is_empty_without_one() -> None:
    assert sqlstate(failed(DBAPIError, "40P01")) == "40P01"
    assert sqlstate(failed(DBAPIError, None)) == ""
    assert sqlstate(PoolTimeoutError("QueuePool limit reached")) == ""
    assert sqlstate(RuntimeError("not a database error")) == ""
