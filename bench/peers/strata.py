"""This SDK: ``StateManager(backend="postgresql")`` used exactly as the seed document shows.

Throughput runs use the defaults plus the options each row names (``batch_writes=True`` for the
batched row, a pool as large as raw asyncpg's 16 connections for the concurrent row). The storage run
uses ``save`` at every step with ``checkpoint_interval=10`` and ``enable_compression=True``; the
LangGraph graph runs on ``StrataCheckpointSaver`` over a manager with ``enable_compression=True``.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack

from bench.peers.langgraph_graph import run_graph
from bench.sdk_harness import WRITERS, Contender, transcript_steps
from bench.sdk_workload import make_state
from stratarouter_runtime import StateManager
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver

PAGE = 1000  # get_history's default page size


class StrataSdk(Contender):
    name = "strata"
    label = "StrataRouter StateManager"

    def __init__(self, batch_size: int) -> None:
        self.batch_size = batch_size
        self._stack = AsyncExitStack()
        self._dsn = ""
        self._sm: StateManager | None = None
        self._batched: StateManager | None = None
        self._state = make_state(0)

    @property
    def sm(self) -> StateManager:
        assert self._sm is not None, "open() first"
        return self._sm

    async def open(self, dsn: str) -> None:
        self._dsn = dsn
        self._sm = await self._stack.enter_async_context(
            StateManager(backend="postgresql", db_url=dsn, pool_max_size=WRITERS)
        )
        self._batched = await self._stack.enter_async_context(
            StateManager(
                backend="postgresql",
                db_url=dsn,
                batch_writes=True,
                batch_size=self.batch_size,
                flush_interval_ms=1000,
            )
        )
        # The SDK connects (and migrates) lazily: do it now, so the schema is not counted as growth.
        await self.sm.get_execution("bench-connect")

    async def close(self) -> None:
        await self._stack.aclose()

    async def seq_writes(self, key: str, n: int) -> None:
        for step in range(n):
            await self.sm.checkpoint(key, step, self._state)

    async def concurrent_writes(self, key: str, writers: int, per_writer: int) -> None:
        async def writer(idx: int) -> None:
            execution_id = f"{key}-{idx}"
            for step in range(per_writer):
                await self.sm.checkpoint(execution_id, step, self._state)

        await asyncio.gather(*(writer(i) for i in range(writers)))

    async def batched_writes(self, key: str, n: int) -> None:
        assert self._batched is not None
        for step in range(n):
            await self._batched.checkpoint(key, step, self._state)
        await self._batched.flush()

    async def prepare_load(self, key: str) -> dict[str, object]:
        for step in range(10):
            await self.sm.checkpoint(key, step, make_state(step))
        return make_state(9)

    async def loads(self, key: str, n: int) -> dict[str, object]:
        state: dict[str, object] = {}
        for _ in range(n):
            state = await self.sm.load(key)
        return state

    async def prepare_history(self, key: str, rows: int) -> None:
        # Untimed: the batched manager writes the 2,000 checkpoints quickly.
        assert self._batched is not None
        for step in range(rows):
            await self._batched.checkpoint(key, step, make_state(step))
        await self._batched.flush()

    async def history(self, key: str) -> int:
        # get_history pages (default limit 1000): read pages with keyset pagination, as a user would.
        total, after = 0, None
        while True:
            page = await self.sm.get_history(key, after_step=after)
            total += len(page)
            if not page or len(page) < PAGE:
                return total
            after = page[-1].step

    async def storage_run(self, key: str, steps: int) -> str:
        async with StateManager(
            backend="postgresql", db_url=self._dsn, checkpoint_interval=10, enable_compression=True
        ) as sm:
            for step, state in transcript_steps(steps):
                await sm.save(key, step, state)
            kept = len(await sm.get_history(key, limit=PAGE))
        return f"{steps} save() calls, {kept} history checkpoints (interval 10), zstd compression"

    async def graph_run(self, key: str, steps: int) -> float:
        async with StateManager(backend="postgresql", db_url=self._dsn, enable_compression=True) as sm:
            return await run_graph(StrataCheckpointSaver(sm), key, steps)
