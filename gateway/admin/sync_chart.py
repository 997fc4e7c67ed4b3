"""The activity page's chart: a sync as it happens, minute by minute.

Over the last hour, per minute: the users the IdP created, updated and
deactivated (each event kind's ``series``, models/event_kinds.py), and the
side-effect backlog, the changes whose side effects had not all finished
at the end of that minute. An admin watching an initial sync sees its rate
and whether the workers keep up; an ops engineer sees a backlog that grows.

The backlog is exact, without reading the tenant's history. At a moment T:

    backlog(T) = unsettled now - arrived after T + settled after T

Three index range reads, in one statement and so one snapshot: the
events of the hour (``ix_provisioning_events_tenant_time``), those settled
in it (``ix_provisioning_events_tenant_settled``) and those unsettled now
(``ix_provisioning_events_tenant_unsettled``).

Drawn on the server as SVG (no JavaScript chart library; the page's
Content-Security-Policy allows no inline script or style, so colours are
classes of admin.css), with a text equivalent: a summary that is the
chart's accessible name, and the minutes as a table.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import text
from sqlalchemy.ext.asyncio import AsyncConnection

from models.event_kinds import EVENT_KINDS

MINUTES = 60
SERIES = ("created", "updated", "deactivated")
# Drawing, in SVG user units; the SVG scales to the card's width.
WIDTH = 600
PLOT_LEFT = 44
PLOT_WIDTH = WIDTH - PLOT_LEFT - 8
BAR_GAP = 1
HEIGHT = 110
PLOT_TOP = 8
PLOT_HEIGHT = HEIGHT - PLOT_TOP - 20

_READ = text(
    """
    WITH bounds AS (
        SELECT date_trunc('minute', now()) - make_interval(mins => :minutes - 1) AS first
    ),
    arrived AS (
        SELECT date_trunc('minute', occurred_at) AS minute, kind, count(*) AS n
        FROM provisioning_events, bounds
        WHERE tenant_id = :tenant_id AND occurred_at >= bounds.first
        GROUP BY 1, 2
    ),
    settled AS (
        SELECT date_trunc('minute', settled_at) AS minute, count(*) AS n
        FROM provisioning_events, bounds
        WHERE tenant_id = :tenant_id AND settled_at IS NOT NULL AND settled_at >= bounds.first
        GROUP BY 1
    )
    SELECT 'first' AS what, first AS minute, NULL AS kind, 0 AS n FROM bounds
    UNION ALL SELECT 'arrived', minute, kind, n FROM arrived
    UNION ALL SELECT 'settled', minute, NULL, n FROM settled
    UNION ALL
    SELECT 'unsettled', NULL, NULL, count(*) FROM provisioning_events
    WHERE tenant_id = :tenant_id AND settled_at IS NULL
    """
)


@dataclass
class Minute:
    """One minute of the chart: its start and what happened in it."""

    start: datetime
    counts: dict[str, int] = field(default_factory=lambda: dict.fromkeys(SERIES, 0))
    backlog: int = 0  # at the minute's end (now, for the current minute)

    @property
    def changes(self) -> int:
        return sum(self.counts.values())


@dataclass(frozen=True)
class Bar:
    series: str
    x: float
    y: float
    width: float
    height: float


@dataclass(frozen=True)
class Chart:
    """The last hour, drawn: stacked bars of changes, and the backlog as a line."""

    minutes: list[Minute]

    @property
    def totals(self) -> dict[str, int]:
        return {name: sum(minute.counts[name] for minute in self.minutes) for name in SERIES}

    @property
    def busiest(self) -> Minute:
        return max(self.minutes, key=lambda minute: (minute.changes, minute.start))

    @property
    def backlog_now(self) -> int:
        return self.minutes[-1].backlog

    @property
    def backlog_peak(self) -> Minute:
        return max(self.minutes, key=lambda minute: (minute.backlog, minute.start))

    @property
    def changes_scale(self) -> int:
        return _nice(max(minute.changes for minute in self.minutes))

    @property
    def backlog_scale(self) -> int:
        return _nice(self.backlog_peak.backlog)

    @property
    def active(self) -> list[Minute]:
        """The minutes with anything to say, for the table."""
        return [minute for minute in self.minutes if minute.changes or minute.backlog]

    def bars(self) -> list[Bar]:
        slot = PLOT_WIDTH / len(self.minutes)
        scale = PLOT_HEIGHT / self.changes_scale
        bars = []
        for n, minute in enumerate(self.minutes):
            bottom: float = PLOT_TOP + PLOT_HEIGHT
            for name in SERIES:
                height = minute.counts[name] * scale
                if height:
                    x = PLOT_LEFT + n * slot + BAR_GAP / 2
                    bars.append(Bar(name, x, bottom - height, slot - BAR_GAP, height))
                    bottom -= height
        return [_rounded(bar) for bar in bars]

    def backlog_points(self) -> str:
        """The backlog line's points (SVG ``points``), one per minute's end."""
        slot = PLOT_WIDTH / len(self.minutes)
        scale = PLOT_HEIGHT / self.backlog_scale
        points = [
            (PLOT_LEFT + (n + 1) * slot, PLOT_TOP + PLOT_HEIGHT - minute.backlog * scale)
            for n, minute in enumerate(self.minutes)
        ]
        start = (PLOT_LEFT, PLOT_TOP + PLOT_HEIGHT - self.minutes[0].backlog * scale)
        return " ".join(f"{x:.1f},{y:.1f}" for x, y in [start, *points])


def _rounded(bar: Bar) -> Bar:
    return Bar(
        bar.series, round(bar.x, 1), round(bar.y, 1), round(bar.width, 1), round(bar.height, 1)
    )


def _nice(peak: int) -> int:
    """The axis maximum: the peak rounded up to 1, 2 or 5 times a power of ten."""
    if peak <= 0:
        return 1
    step = 1
    while True:
        for factor in (1, 2, 5):
            if peak <= factor * step:
                return factor * step
        step *= 10


async def last_hour(conn: AsyncConnection, tenant_id: uuid.UUID) -> Chart:
    """The tenant's last hour, minute by minute (the current minute last)."""
    rows = (await conn.execute(_READ, {"tenant_id": tenant_id, "minutes": MINUTES})).all()
    first = next(row.minute for row in rows if row.what == "first")
    minutes = [Minute(first + timedelta(minutes=n)) for n in range(MINUTES)]

    def index(moment: datetime) -> int:
        return min(MINUTES - 1, max(0, int((moment - first) / timedelta(minutes=1))))

    arrived, settled = [0] * MINUTES, [0] * MINUTES
    unsettled = 0
    for row in rows:
        if row.what == "arrived":
            arrived[index(row.minute)] += row.n
            names = EVENT_KINDS.get(row.kind)
            if names is not None and names.series is not None:
                minutes[index(row.minute)].counts[names.series] += row.n
        elif row.what == "settled":
            settled[index(row.minute)] += row.n
        elif row.what == "unsettled":
            unsettled = row.n
    # From the end of the hour back: each minute's end is before the arrivals
    # and settlements of the minutes after it.
    arrived_after = settled_after = 0
    for n in reversed(range(MINUTES)):
        minutes[n].backlog = max(0, unsettled - arrived_after + settled_after)
        arrived_after += arrived[n]
        settled_after += settled[n]
    return Chart(minutes)
