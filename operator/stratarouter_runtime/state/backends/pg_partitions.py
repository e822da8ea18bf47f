"""Monthly partitions of ``checkpoints`` and ``events`` on PostgreSQL: made ahead, dropped whole.

DDL cannot take bind parameters; the only values spliced in are partition names and bounds
generated from integers and UTC datetimes by :mod:`stratarouter_runtime.state.partitions`.
Both operations hold a transaction-level advisory lock so concurrent managers do not collide.
"""

from __future__ import annotations

import logging
from datetime import UTC, datetime

import asyncpg

from stratarouter_runtime.state import partitions
from stratarouter_runtime.state.backends import postgres_sql as sql
from stratarouter_runtime.state.migrations import LOCK_KEY, Conn

log = logging.getLogger(__name__)
PARTITION_LOCK_KEY = LOCK_KEY + 1


async def create_ahead(conn: Conn, ahead: int, now: datetime | None = None) -> list[str]:
    """Create this month's and the next ``ahead`` months' partitions if missing; returns those made.

    A month whose rows already sit in the DEFAULT partition (partitioning switched on late) is
    skipped with a warning; its rows stay where they are.
    """
    now = now or datetime.now(UTC)
    made: list[str] = []
    async with conn.transaction():
        await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
        for table in partitions.PARTITIONED_TABLES:
            existing = {r["relname"] for r in await conn.fetch(sql.LIST_PARTITIONS, table)}
            for part in partitions.partitions_ahead(now, ahead, table):
                if part.name in existing:
                    continue
                try:
                    async with conn.transaction():  # a savepoint: one refusal does not undo the rest
                        await conn.execute(
                            f"CREATE TABLE {part.name} PARTITION OF {table} "
                            f"FOR VALUES FROM ('{part.start.isoformat()}') TO ('{part.end.isoformat()}')"
                        )
                    made.append(part.name)
                except asyncpg.PostgresError as exc:
                    log.warning("cannot create partition %s yet: %s", part.name, exc)
    return made


async def drop_due_months(conn: Conn, cutoff: datetime, statuses: list[str]) -> int:
    """Drop whole months whose executions are all finished (in ``statuses``) before ``cutoff``.

    Returns how many executions went with them. A month still holding any other execution is left
    to row-by-row cleanup.
    """
    removed = 0
    names = {r["relname"] for r in await conn.fetch(sql.LIST_PARTITIONS, "checkpoints")}
    months = sorted(p.start for n in names if (p := partitions.MonthPartition.parse(n)) is not None)
    for start in months:
        part = partitions.MonthPartition("checkpoints", start)
        if not partitions.droppable(part, cutoff):
            continue
        async with conn.transaction():
            await conn.execute("SELECT pg_advisory_xact_lock($1)", PARTITION_LOCK_KEY)
            blockers = await conn.fetchval(sql.MONTH_BLOCKERS, part.start, part.end, statuses, cutoff)
            if blockers:
                continue
            removed += int(await conn.fetchval(sql.DELETE_MONTH, part.start, part.end))
            for table in partitions.PARTITIONED_TABLES:
                await conn.execute(f"DROP TABLE IF EXISTS {partitions.MonthPartition(table, start).name}")
            log.info("cleanup dropped the partitions of %s", part.start.strftime("%Y-%m"))
    return removed
