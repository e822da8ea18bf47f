"""Monthly partition names and bounds."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

from stratarouter_runtime.state.partitions import (
    MonthPartition,
    add_months,
    droppable,
    month_start,
    partitions_ahead,
)


def test_month_start_is_utc() -> None:
    local = datetime(2026, 3, 1, 0, 30, tzinfo=timezone(timedelta(hours=2)))  # still February in UTC
    assert month_start(local) == datetime(2026, 2, 1, tzinfo=UTC)
    assert month_start(datetime(2026, 12, 31, 23, 59)) == datetime(2026, 12, 1, tzinfo=UTC)


def test_add_months_crosses_years() -> None:
    dec = datetime(2026, 12, 1, tzinfo=UTC)
    assert add_months(dec, 1) == datetime(2027, 1, 1, tzinfo=UTC)
    assert add_months(dec, -12) == datetime(2025, 12, 1, tzinfo=UTC)
    assert add_months(dec, 25) == datetime(2029, 1, 1, tzinfo=UTC)


def test_names_and_bounds() -> None:
    part = MonthPartition("checkpoints", datetime(2026, 11, 1, tzinfo=UTC))
    assert part.name == "checkpoints_p202611"
    assert part.end == datetime(2026, 12, 1, tzinfo=UTC)
    assert MonthPartition.parse("checkpoints_p202611") == part
    assert MonthPartition.parse("events_p202001") == MonthPartition(
        "events", datetime(2020, 1, 1, tzinfo=UTC)
    )
    assert MonthPartition.parse("checkpoints_default") is None
    assert MonthPartition.parse("checkpoints_p202613") is None
    assert MonthPartition.parse("other_p202601") is None


def test_partitions_ahead() -> None:
    names = [p.name for p in partitions_ahead(datetime(2026, 11, 28, tzinfo=UTC), 3, "events")]
    assert names == ["events_p202611", "events_p202612", "events_p202701", "events_p202702"]
    behind = partitions_ahead(datetime(2026, 1, 5, tzinfo=UTC), 0, "checkpoints", behind=1)
    assert [p.name for p in behind] == ["checkpoints_p202512", "checkpoints_p202601"]


def test_droppable_only_when_the_whole_month_is_older_than_the_cutoff() -> None:
    part = MonthPartition("checkpoints", datetime(2026, 1, 1, tzinfo=UTC))
    assert droppable(part, datetime(2026, 2, 1, tzinfo=UTC))
    assert not droppable(part, datetime(2026, 1, 31, tzinfo=UTC))
