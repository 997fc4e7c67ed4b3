"""Keep PostgreSQL's planner statistics in step with a directory that grows fast.

During an initial sync the users table can grow by tens of thousands of rows
in minutes. The planner picks indexes from the statistics of the last
ANALYZE; until one runs, it believes the tenant has a handful of users and
may read the whole tenant for every lookup through the wrong index
(docs/performance.md, "Planner statistics during a sync"). Autovacuum
analyses eventually (once a minute at best, and not at all where it is
turned off); this task, run by every gateway process, analyses the tables the
IdPs grow as soon as enough of them changed. Harmless with several processes:
the first ANALYZE resets the counter the others read.
"""

from __future__ import annotations

import asyncio
import logging

from sqlalchemy import text
from sqlalchemy.exc import DBAPIError
from sqlalchemy.exc import TimeoutError as PoolTimeoutError
from sqlalchemy.ext.asyncio import AsyncEngine

log = logging.getLogger("simpleams.gateway.statistics")

# Tables the IdPs grow; names are constants, never input.
TABLES = ("users", "provisioning_events")
MIN_CHANGES = 1_000
CHANGED_FRACTION = 0.1
CHECK_EVERY_SECONDS = 10.0


async def analyze_if_stale(engine: AsyncEngine) -> list[str]:
    """ANALYZE each table with at least max(1,000, 10 % of its rows) changes since the
    last ANALYZE; returns the tables analysed."""
    async with engine.connect() as conn:
        await conn.execution_options(isolation_level="AUTOCOMMIT")
        rows = await conn.execute(
            text(
                "SELECT relname, n_mod_since_analyze, n_live_tup FROM pg_stat_user_tables "
                "WHERE relname = ANY(:tables)"
            ),
            {"tables": list(TABLES)},
        )
        stale = [
            row.relname
            for row in rows
            if row.relname in TABLES
            and row.n_mod_since_analyze >= max(MIN_CHANGES, CHANGED_FRACTION * row.n_live_tup)
        ]
        for table in stale:
            await conn.execute(text(f"ANALYZE {table}"))
    return stale


async def keep_fresh(engine: AsyncEngine, every: float = CHECK_EVERY_SECONDS) -> None:
    """Run until cancelled (the gateway's lifespan)."""
    while True:
        await asyncio.sleep(every)  # the check interval is the point of this loop
        try:
            analysed = await analyze_if_stale(engine)
        except (DBAPIError, PoolTimeoutError, OSError) as exc:
            # The database is away, or ANALYZE is not allowed to this role:
            # the requests will say so; try again next time.
            log.warning("could not refresh planner statistics: %s", type(exc).__name__)
            continue
        if analysed:
            log.info("refreshed planner statistics of %s", ", ".join(analysed))
