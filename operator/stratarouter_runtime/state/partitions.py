"""Monthly range partitions of the history tables (names and bounds; no I/O here).

History rows are partitioned on the *execution's* creation time (``execution_created_at``):
all checkpoints and audit rows of one execution live in one partition, so the primary key
``(execution_id, step, execution_created_at)`` still makes a step unique per execution (writes stay
idempotent with ``ON CONFLICT``), and ``cleanup`` can drop a month once every execution created in it
is finished and old enough.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

PARTITIONED_TABLES: Final = ("checkpoints", "events")
_NAME = re.compile(r"^(?P<table>[a-z_]+)_p(?P<year>\d{4})(?P<month>\d{2})$")


def month_start(when: datetime) -> datetime:
    when = when.astimezone(UTC) if when.tzinfo else when.replace(tzinfo=UTC)
    return datetime(when.year, when.month, 1, tzinfo=UTC)


def add_months(month: datetime, n: int) -> datetime:
    index = month.year * 12 + (month.month - 1) + n
    return datetime(index // 12, index % 12 + 1, 1, tzinfo=UTC)


@dataclass(frozen=True, slots=True)
class MonthPartition:
    table: str
    start: datetime
    """Inclusive lower bound (first instant of the month, UTC)."""

    @property
    def end(self) -> datetime:
        return add_months(self.start, 1)

    @property
    def name(self) -> str:
        return f"{self.table}_p{self.start.year:04d}{self.start.month:02d}"

    @classmethod
    def parse(cls, name: str) -> MonthPartition | None:
        """The partition a table name stands for, or None if it is not one of ours."""
        m = _NAME.match(name)
        if m is None or m["table"] not in PARTITIONED_TABLES or not 1 <= int(m["month"]) <= 12:
            return None
        return cls(m["table"], datetime(int(m["year"]), int(m["month"]), 1, tzinfo=UTC))


def partitions_ahead(now: datetime, ahead: int, table: str, behind: int = 0) -> list[MonthPartition]:
    """The partitions of ``table`` from ``behind`` months ago to ``ahead`` months after ``now``'s month."""
    first = month_start(now)
    return [MonthPartition(table, add_months(first, n)) for n in range(-behind, ahead + 1)]


def droppable(partition: MonthPartition, cutoff: datetime) -> bool:
    """A month may be dropped only if it ended before ``cutoff`` (every execution in it is older)."""
    return partition.end <= cutoff
