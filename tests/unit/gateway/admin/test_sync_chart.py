"""The activity chart's drawing (gateway/admin/sync_chart.py); its numbers are
tested against PostgreSQL in tests/integration/test_admin_pages.py."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from itertools import pairwise

import pytest

from gateway.admin.sync_chart import MINUTES, PLOT_HEIGHT, PLOT_TOP, Chart, Minute, _nice


@pytest.mark.parametrize(
    ("peak", "axis"), [(0, 1), (1, 1), (2, 2), (3, 5), (7, 10), (10, 10), (11, 20), (480, 500)]
)
def test_the_axis_ends_at_a_round_number_at_or_above_the_peak(peak: int, axis: int) -> None:
    assert _nice(peak) == axis


def test_bars_stack_within_the_plot_and_the_peak_fills_it() -> None:
    start = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    minutes = [Minute(start + timedelta(minutes=n)) for n in range(MINUTES)]
    minutes[10].counts.update(created=300, updated=150, deactivated=50)
    minutes[11].counts.update(created=5)
    chart = Chart(minutes)
    bars = chart.bars()
    assert [bar.series for bar in bars] == ["created", "updated", "deactivated", "created"]
    bottom = PLOT_TOP + PLOT_HEIGHT
    peak = bars[:3]
    assert peak[0].y + peak[0].height == pytest.approx(bottom, abs=0.2)
    assert peak[2].y == pytest.approx(PLOT_TOP, abs=0.2)  # 500 of an axis of 500
    for lower, upper in pairwise(peak):
        assert upper.y + upper.height == pytest.approx(lower.y, abs=0.2)
    assert bars[3].x > bars[0].x and bars[3].height < bars[0].height


def test_an_empty_hour_draws_no_bars_and_a_flat_backlog() -> None:
    start = datetime(2026, 12, 5, 9, 0, tzinfo=UTC)
    chart = Chart([Minute(start + timedelta(minutes=n)) for n in range(MINUTES)])
    assert chart.bars() == []
    heights = {point.split(",")[1] for point in chart.backlog_points().split()}
    assert heights == {f"{PLOT_TOP + PLOT_HEIGHT:.1f}"}
