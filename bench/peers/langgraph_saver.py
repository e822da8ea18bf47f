"""LangGraph's AsyncPostgresSaver, called the way LangGraph's own graph loop calls it.

Each write is one ``aput`` of a checkpoint whose channel ``state`` holds the ~1 KiB dict (non-primitive
channel values go to ``checkpoint_blobs``, the checkpoint itself to ``checkpoints``), chained to its
parent through the config ``aput`` returned. Sequential use goes through ``from_conn_string`` (one
connection, as the docs show); concurrent writers share one saver over an ``AsyncConnectionPool`` with
the kwargs the docs give (autocommit, prepare_threshold=0, dict_row). ``setup()`` creates the schema.
"""

from __future__ import annotations

import asyncio
from contextlib import AsyncExitStack
from typing import Any

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import Checkpoint, CheckpointMetadata, create_checkpoint, empty_checkpoint
from langgraph.checkpoint.postgres.aio import AsyncPostgresSaver
from psycopg import AsyncConnection
from psycopg.rows import DictRow, dict_row
from psycopg_pool import AsyncConnectionPool

from bench.peers.langgraph_graph import run_graph
from bench.sdk_harness import WRITERS, Contender, transcript_steps
from bench.sdk_workload import make_state

CHANNEL = "state"


class _Thread:
    """The checkpoint chain of one thread, advanced one step at a time like the Pregel loop does."""

    def __init__(self, saver: AsyncPostgresSaver, thread_id: str, channel: str = CHANNEL) -> None:
        self.saver = saver
        self.channel = channel
        self.config: RunnableConfig = {"configurable": {"thread_id": thread_id, "checkpoint_ns": ""}}
        self.checkpoint: Checkpoint = empty_checkpoint()

    async def put(self, step: int, value: Any) -> None:
        current = self.checkpoint["channel_versions"].get(self.channel)
        version = self.saver.get_next_version(None if current is None else str(current), None)
        self.checkpoint["channel_values"] = {self.channel: value}
        self.checkpoint["channel_versions"] = {**self.checkpoint["channel_versions"], self.channel: version}
        self.checkpoint = create_checkpoint(self.checkpoint, None, step)
        metadata: CheckpointMetadata = {"source": "loop", "step": step, "parents": {}}
        self.config = await self.saver.aput(self.config, self.checkpoint, metadata, {self.channel: version})


class LangGraphSaver(Contender):
    name = "langgraph"
    label = "LangGraph AsyncPostgresSaver"

    def __init__(self) -> None:
        self._stack = AsyncExitStack()
        self._saver: AsyncPostgresSaver | None = None
        self._pooled: AsyncPostgresSaver | None = None
        self._state = make_state(0)

    @property
    def saver(self) -> AsyncPostgresSaver:
        assert self._saver is not None, "open() first"
        return self._saver

    async def open(self, dsn: str) -> None:
        self._saver = await self._stack.enter_async_context(AsyncPostgresSaver.from_conn_string(dsn))
        await self.saver.setup()
        pool: AsyncConnectionPool[AsyncConnection[DictRow]] = AsyncConnectionPool(
            conninfo=dsn,
            min_size=WRITERS,
            max_size=WRITERS,
            kwargs={"autocommit": True, "prepare_threshold": 0, "row_factory": dict_row},
            open=False,
        )
        await pool.open()
        self._stack.push_async_callback(pool.close)
        self._pooled = AsyncPostgresSaver(pool)

    async def close(self) -> None:
        await self._stack.aclose()

    async def seq_writes(self, key: str, n: int) -> None:
        thread = _Thread(self.saver, key)
        for step in range(n):
            await thread.put(step, self._state)

    async def concurrent_writes(self, key: str, writers: int, per_writer: int) -> None:
        assert self._pooled is not None
        saver = self._pooled

        async def writer(idx: int) -> None:
            thread = _Thread(saver, f"{key}-{idx}")
            for step in range(per_writer):
                await thread.put(step, self._state)

        await asyncio.gather(*(writer(i) for i in range(writers)))

    async def prepare_load(self, key: str) -> dict[str, object]:
        thread = _Thread(self.saver, key)
        for step in range(10):
            await thread.put(step, make_state(step))
        return make_state(9)

    async def loads(self, key: str, n: int) -> dict[str, object]:
        config: RunnableConfig = {"configurable": {"thread_id": key, "checkpoint_ns": ""}}
        state: dict[str, object] = {}
        for _ in range(n):
            found = await self.saver.aget_tuple(config)
            assert found is not None
            state = found.checkpoint["channel_values"][CHANNEL]
        return state

    async def prepare_history(self, key: str, rows: int) -> None:
        thread = _Thread(self.saver, key)
        for step in range(rows):
            await thread.put(step, make_state(step))

    async def history(self, key: str) -> int:
        config: RunnableConfig = {"configurable": {"thread_id": key, "checkpoint_ns": ""}}
        return len([t async for t in self.saver.alist(config)])

    async def storage_run(self, key: str, steps: int) -> str:
        thread = _Thread(self.saver, key, channel="messages")
        for step, state in transcript_steps(steps):
            await thread.put(step, state["messages"])
        return f"{steps} aput() calls, the messages channel written at each"

    async def graph_run(self, key: str, steps: int) -> float:
        return await run_graph(self.saver, key, steps)
