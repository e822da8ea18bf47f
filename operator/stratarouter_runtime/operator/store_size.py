"""The store probe: how big the store is and whether this replica can reach it, sampled in the background.

Every ``interval`` seconds one catalog query on a connection of its own (never one of the store's pool,
never at scrape time) sums ``pg_total_relation_size`` over the tables in the store's schema: heap, TOAST
and indexes of every table and every partition (a partitioned parent has no storage of its own; its
partitions are tables in the same schema). PostgreSQL answers it from the catalog and the files' sizes,
without reading a row, so its cost grows with the number of relations (a few per monthly partition),
not with the data. Connect and query each have a timeout (a query past it is cancelled server-side);
a kept connection found dropped is replaced once within the probe, and a failed probe drops the
connection, so the next one reconnects.

What it sets (metrics.py): ``stratarouter_store_bytes``, ``stratarouter_store_up`` (1/0),
``stratarouter_store_probe_failures_total`` and ``stratarouter_store_probe_last_success_timestamp_seconds``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from typing import Any, Final

import asyncpg

from stratarouter_runtime.operator import metrics
from stratarouter_runtime.state.migrations import connect

log = logging.getLogger(__name__)

STORE_PROBE_INTERVAL_SECONDS: Final = 30.0
STORE_PROBE_TIMEOUT_SECONDS: Final = 5.0

STORE_BYTES_SQL: Final = """
SELECT coalesce(sum(pg_total_relation_size(c.oid)), 0)::bigint
FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
WHERE n.nspname = $1 AND c.relkind IN ('r', 'm')
"""


class StoreSize:
    """The background probe of one store (``db_url``, ``db_schema``); :meth:`start` it, :meth:`close` it."""

    def __init__(
        self,
        db_url: str,
        db_schema: str,
        *,
        interval: float = STORE_PROBE_INTERVAL_SECONDS,
        timeout: float = STORE_PROBE_TIMEOUT_SECONDS,
    ) -> None:
        self.db_url = db_url
        self.db_schema = db_schema
        self.interval = interval
        self.timeout = timeout
        self._conn: asyncpg.Connection[Any] | None = None
        self._task: asyncio.Task[None] | None = None

    def start(self) -> StoreSize:
        """Probe now and then every ``interval`` seconds, in a task of the running loop."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(self._loop(), name="store-size")
        return self

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._drop()

    async def sample(self) -> int | None:
        """One probe: the store's size in bytes (and the metrics set), or None when it failed."""
        try:
            size = await asyncio.wait_for(self._query(), self.timeout * 2)  # connect + query
        except Exception as exc:  # unreachable, refused, timed out, ...: the next probe tries again
            await self._drop()
            metrics.STORE_UP.set(0)
            metrics.STORE_PROBE_FAILURES_TOTAL.inc()
            log.warning("store probe failed: %s: %s", type(exc).__name__, exc)
            return None
        metrics.STORE_BYTES.set(size)
        metrics.STORE_UP.set(1)
        metrics.STORE_PROBE_SUCCESS_TIME.set(time.time())
        return size

    async def _query(self) -> int:
        reused = self._conn is not None and not self._conn.is_closed()
        try:
            return await self._fetch()
        except (asyncpg.PostgresConnectionError, asyncpg.InterfaceError, OSError):
            if not reused:
                raise
        # the kept connection was dropped since the last probe (server restart, idle timeout): once more
        await self._drop()
        return await self._fetch()

    async def _fetch(self) -> int:
        if self._conn is None or self._conn.is_closed():
            self._conn = await connect(
                self.db_url, self.db_schema, statement_cache_size=0, timeout=self.timeout
            )
        value = await self._conn.fetchval(STORE_BYTES_SQL, self.db_schema, timeout=self.timeout)
        return int(value or 0)

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(conn.close(), self.timeout)
            if not conn.is_closed():
                conn.terminate()

    async def _loop(self) -> None:
        while True:
            await self.sample()
            await asyncio.sleep(self.interval)


__all__ = ["STORE_BYTES_SQL", "STORE_PROBE_INTERVAL_SECONDS", "STORE_PROBE_TIMEOUT_SECONDS", "StoreSize"]
