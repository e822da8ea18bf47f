"""Raw asyncpg: the physical limit. One INSERT per durable write, COPY for batches, a PK SELECT to read.

The client still does what any user must: ``json.dumps`` the state before writing and ``json.loads``
it after reading, so every contender pays for serialisation.
"""

from __future__ import annotations

import asyncio
import json
from typing import Any

import asyncpg

from bench.sdk_harness import WRITERS, Contender
from bench.sdk_workload import make_state

SCHEMA = """
CREATE TABLE checkpoints (
    execution_id text NOT NULL,
    step integer NOT NULL,
    state jsonb NOT NULL,
    created_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (execution_id, step)
)
"""
INSERT = "INSERT INTO checkpoints (execution_id, step, state) VALUES ($1, $2, $3)"


class RawAsyncpg(Contender):
    name = "raw"
    label = "raw asyncpg"

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._conn: asyncpg.Connection | None = None
        self._pool: asyncpg.Pool | None = None
        self._state = make_state(0)

    @property
    def conn(self) -> asyncpg.Connection:
        assert self._conn is not None, "open() first"
        return self._conn

    async def open(self, dsn: str) -> None:
        self._conn = await asyncpg.connect(dsn)
        await self.conn.execute(SCHEMA)
        self._pool = await asyncpg.create_pool(dsn, min_size=WRITERS, max_size=WRITERS)

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
        if self._conn is not None:
            await self._conn.close()

    async def seq_writes(self, key: str, n: int) -> None:
        for step in range(n):
            await self.conn.execute(INSERT, key, step, json.dumps(self._state))

    async def concurrent_writes(self, key: str, writers: int, per_writer: int) -> None:
        assert self._pool is not None

        async def writer(idx: int) -> None:
            assert self._pool is not None
            async with self._pool.acquire() as conn:
                for step in range(per_writer):
                    await conn.execute(INSERT, f"{key}-{idx}", step, json.dumps(self._state))

        await asyncio.gather(*(writer(i) for i in range(writers)))

    async def batched_writes(self, key: str, n: int) -> None:
        # One COPY (one round trip, one commit) per batch of the SDK's batch size.
        for start in range(0, n, self.batch_size):
            records = [
                (key, step, json.dumps(self._state)) for step in range(start, min(n, start + self.batch_size))
            ]
            await self.conn.copy_records_to_table(
                "checkpoints", records=records, columns=["execution_id", "step", "state"]
            )

    async def prepare_load(self, key: str) -> dict[str, object]:
        for step in range(10):
            await self.conn.execute(INSERT, key, step, json.dumps(make_state(step)))
        return make_state(9)

    async def loads(self, key: str, n: int) -> dict[str, object]:
        # A primary-key lookup of the newest step (the executions row would say which; here we know it).
        state: dict[str, Any] = {}
        for _ in range(n):
            raw = await self.conn.fetchval(
                "SELECT state FROM checkpoints WHERE execution_id = $1 AND step = $2", key, 9
            )
            state = json.loads(raw)
        return state

    async def prepare_history(self, key: str, rows: int) -> None:
        records = [(key, step, json.dumps(make_state(step))) for step in range(rows)]
        await self.conn.copy_records_to_table(
            "checkpoints", records=records, columns=["execution_id", "step", "state"]
        )

    async def history(self, key: str) -> int:
        rows = await self.conn.fetch(
            "SELECT step, state, created_at FROM checkpoints WHERE execution_id = $1 ORDER BY step", key
        )
        decoded = [(r["step"], json.loads(r["state"]), r["created_at"]) for r in rows]
        return len(decoded)
