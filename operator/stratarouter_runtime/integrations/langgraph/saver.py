"""``StrataCheckpointSaver``: LangGraph's checkpointer interface on the store, async only.

A thread is one run of the store (``run_prefix + thread_id``); each checkpoint is one history entry
of it (:mod:`.entries`), at the next step; a task's pending writes are added to their checkpoint's
entry by rewriting it (writes are idempotent on ``(run, step)``). Everything goes through
``StateManager``'s public API, so the run keeps the store's properties: retention prunes old
checkpoints, attempts fence a stale writer, snapshots copy a checkpoint and restore it, and
compression applies to large ones. Inside an Execution's pod the same calls go through the
checkpoint API (``StateManager.from_env()``), for the Execution's own run: ``run_prefix=""`` and
``thread_id=state.execution_id``.

One process writes a thread at a time (LangGraph runs a thread's steps one after another; attempts
fence any other writer). Reading a thread's newest checkpoint refreshes what this saver knows of it,
so call ``aget_tuple`` (any graph invocation does) after restoring a snapshot from elsewhere.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator, Sequence
from typing import Any, NoReturn

from langchain_core.runnables import RunnableConfig
from langgraph.checkpoint.base import (
    BaseCheckpointSaver,
    ChannelVersions,
    Checkpoint,
    CheckpointMetadata,
    CheckpointTuple,
    get_checkpoint_id,
    get_checkpoint_metadata,
)
from langgraph.checkpoint.serde.base import SerializerProtocol

from stratarouter_runtime.integrations.langgraph import entries
from stratarouter_runtime.integrations.langgraph.entries import Entry
from stratarouter_runtime.integrations.langgraph.index import ThreadIndex
from stratarouter_runtime.state import Checkpoint as StoredCheckpoint
from stratarouter_runtime.state import Execution, StateManager
from stratarouter_runtime.state.errors import CheckpointNotFound, ExecutionNotFound, InvalidArgumentError

DEFAULT_RUN_PREFIX = "langgraph/"


class StrataCheckpointSaver(BaseCheckpointSaver[int]):
    """A LangGraph checkpointer whose threads are runs of ``state``; use the async graph API
    (``ainvoke``, ``astream``): the sync methods raise ``NotImplementedError``."""

    def __init__(
        self,
        state: StateManager,
        *,
        run_prefix: str = DEFAULT_RUN_PREFIX,
        serde: SerializerProtocol | None = None,
    ) -> None:
        super().__init__(serde=serde)
        self.state = state
        self.run_prefix = run_prefix
        self._threads: dict[str, ThreadIndex] = {}
        self._locks: dict[str, asyncio.Lock] = {}
        self._early_writes: dict[tuple[str, str, str], list[tuple[list[tuple[str, Any]], str, str]]] = {}
        """Writes that came before their checkpoint's put, by (thread, namespace, checkpoint id)."""

    def run_id(self, thread_id: str) -> str:
        """The store's execution id of a thread: for ``get_history``, snapshots, ``complete`` ..."""
        return self.run_prefix + thread_id

    async def start_thread(
        self, thread_id: str, *, attempt: int = 1, checkpoint_retention: int | None = None
    ) -> Execution:
        """Start (or take over) a thread's run: ``attempt`` fences older writers, and
        ``checkpoint_retention`` keeps only that many newest checkpoints of the thread."""
        started = await self.state.start_execution(
            self.run_id(thread_id), attempt=attempt, checkpoint_retention=checkpoint_retention
        )
        self._threads.pop(thread_id, None)
        return started

    # -- reading --------------------------------------------------------------------------------
    async def _refresh(self, thread_id: str) -> ThreadIndex:
        try:
            current = await self.state.load(self.run_id(thread_id))
        except ExecutionNotFound:
            current = None
        index = ThreadIndex() if current is None else ThreadIndex.from_current(current)
        self._threads[thread_id] = index
        return index

    async def _index(self, thread_id: str) -> ThreadIndex:
        return self._threads.get(thread_id) or await self._refresh(thread_id)

    async def _read(self, thread_id: str, index: ThreadIndex, step: int) -> Entry | None:
        """The history entry at ``step`` (or the newest checkpoint's open entry), None if absent."""
        if (entry := index.cached(step)) is not None:
            return entry
        try:
            found = await self.state.get_checkpoint(self.run_id(thread_id), step)
        except (CheckpointNotFound, ExecutionNotFound):
            return None
        index.note(step, found.state_data)
        return found.state_data  # type: ignore[no-any-return]

    async def _complete(self, thread_id: str, index: ThreadIndex, step: int, entry: Entry) -> Entry:
        """``entry`` with all its writes: the open entry if it is the newest, else its child's share."""
        if index.open is not None and index.open[entries.STEP] == step:
            return index.open
        if step == index.top:
            return entry
        child = await self._read(thread_id, index, step + 1)
        index.note(step, entry)
        return entries.with_child(entry, child)

    async def _find(self, thread_id: str, ns: str, checkpoint_id: str) -> tuple[int, Entry] | None:
        """The step and complete entry of a checkpoint: from the index, else by scanning the history."""
        index = await self._index(thread_id)
        step = index.steps.get((ns, checkpoint_id))
        if step is not None:
            entry = await self._read(thread_id, index, step)
            if entry is not None and entry[entries.ID] == checkpoint_id and entry[entries.NS] == ns:
                return step, await self._complete(thread_id, index, step, entry)
        async for step, entry in self._history(thread_id, index):
            if entry[entries.ID] == checkpoint_id and entry[entries.NS] == ns:
                index.note(step, entry)
                return step, entry
        return None

    async def _history(self, thread_id: str, index: ThreadIndex) -> AsyncIterator[tuple[int, Entry]]:
        """The thread's complete entries, newest first, noting every id's step on the way."""
        history = await self._stored_history(thread_id)
        for checkpoint in history:
            index.steps[(checkpoint.state_data[entries.NS], checkpoint.state_data[entries.ID])] = (
                checkpoint.step
            )
        newer: tuple[int, Entry] | None = None
        for checkpoint in reversed(history):
            step, entry = checkpoint.step, checkpoint.state_data
            if index.open is not None and index.open[entries.STEP] == step:
                yield step, index.open
            else:
                yield step, entries.with_child(entry, newer[1] if newer and newer[0] == step + 1 else None)
            newer = step, entry

    async def aget_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        thread_id, ns = _thread_and_ns(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is not None:
            found = await self._find(thread_id, ns, checkpoint_id)
            return None if found is None else entries.to_tuple(thread_id, found[1], self.serde)
        index = await self._refresh(thread_id)
        step = index.heads.get(ns)
        entry = None if step is None else await self._read(thread_id, index, step)
        if step is None or entry is None:
            return None
        return entries.to_tuple(thread_id, await self._complete(thread_id, index, step, entry), self.serde)

    async def alist(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> AsyncIterator[CheckpointTuple]:
        """A thread's checkpoints, newest first (the order they were put), optionally of one
        namespace (``checkpoint_ns`` in ``config``) or one checkpoint (``checkpoint_id``)."""
        if config is None:
            raise NotImplementedError(
                "listing checkpoints across threads is not supported: the store has no index of runs "
                "by id prefix; pass a config with a thread_id"
            )
        thread_id = config["configurable"]["thread_id"]
        ns: str | None = config["configurable"].get("checkpoint_ns")
        only_id = get_checkpoint_id(config)
        index = await self._refresh(thread_id)
        before_step: int | None = None
        if before is not None and (before_id := get_checkpoint_id(before)) is not None:
            before_ns = before["configurable"].get("checkpoint_ns", ns or "")
            found = await self._find(thread_id, before_ns, before_id)
            if found is None:
                return
            before_step = found[0]
        left = limit
        async for step, entry in self._history(thread_id, index):
            if left is not None and left <= 0:
                return
            if before_step is not None and step >= before_step:
                continue
            if (ns is not None and entry[entries.NS] != ns) or (
                only_id is not None and entry[entries.ID] != only_id
            ):
                continue
            if filter and not _matches(entries.metadata_of(entry, self.serde), filter):
                continue
            yield entries.to_tuple(thread_id, entry, self.serde)
            if left is not None:
                left -= 1

    # -- writing --------------------------------------------------------------------------------
    def _lock(self, thread_id: str) -> asyncio.Lock:
        return self._locks.setdefault(thread_id, asyncio.Lock())

    async def _write(self, thread_id: str, index: ThreadIndex, step: int, entry: Entry) -> None:
        """Write ``entry`` into the history at ``step`` (and as the run's current state)."""
        await self.state.checkpoint(self.run_id(thread_id), step, entry)
        index.note(step, entry)

    async def _close_open(self, thread_id: str, index: ThreadIndex) -> None:
        """Put the newest checkpoint's saved writes into its history entry (before another entry
        becomes the current state, which would lose them)."""
        if index.open is not None:
            entry = {k: v for k, v in index.open.items() if k != entries.OPEN}
            index.open = None
            await self._write(thread_id, index, entry[entries.STEP], entry)

    async def aput(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        thread_id, ns = _thread_and_ns(config)
        parent_id = get_checkpoint_id(config)
        async with self._lock(thread_id):
            index = await self._index(thread_id)
            step = index.steps.get((ns, checkpoint["id"]), index.top + 1)
            heads = {**index.heads, ns: step}
            entry = entries.new_entry(
                step, ns, checkpoint, get_checkpoint_metadata(config, metadata), parent_id, heads, self.serde
            )
            for writes, task_id, task_path in self._early_writes.pop((thread_id, ns, checkpoint["id"]), []):
                entry = entries.with_writes(entry, writes, task_id, task_path, self.serde) or entry
            opened = index.open
            if (
                opened is not None
                and step == index.top + 1
                and (opened[entries.ID], opened[entries.NS])
                == (
                    parent_id,
                    ns,
                )
            ):
                entry[entries.PARENT_WRITES] = opened[entries.WRITES]
                index.open = None
            await self._close_open(thread_id, index)
            await self._write(thread_id, index, step, entry)
            index.heads = heads
        return entries.config_of(thread_id, ns, checkpoint["id"])

    async def aput_writes(
        self,
        config: RunnableConfig,
        writes: Sequence[tuple[str, Any]],
        task_id: str,
        task_path: str = "",
    ) -> None:
        """Add a task's writes to their checkpoint's entry.

        LangGraph submits a step's writes without waiting for the put of its checkpoint (puts are
        chained one after another, writes are not), so writes may arrive first: those for a
        checkpoint newer than any this thread has are held until its ``aput`` and stored with it.
        The newest checkpoint's writes are saved as the run's current state (see :mod:`.entries`);
        an older one's entry is written again with them.
        """
        thread_id, ns = _thread_and_ns(config)
        checkpoint_id = get_checkpoint_id(config)
        if checkpoint_id is None:
            raise InvalidArgumentError(f"aput_writes needs a checkpoint_id (thread {thread_id!r})")
        async with self._lock(thread_id):
            index = await self._index(thread_id)
            known = (ns, checkpoint_id) in index.steps
            found = None
            if known or not index.is_newer(checkpoint_id):
                found = await self._find(thread_id, ns, checkpoint_id)
            if found is None:
                self._early_writes.setdefault((thread_id, ns, checkpoint_id), []).append(
                    (list(writes), task_id, task_path)
                )
                return
            step, entry = found
            updated = entries.with_writes(entry, writes, task_id, task_path, self.serde)
            if updated is None:
                return
            # This entry becomes the run's current state: it must carry the current heads.
            updated[entries.HEADS] = dict(index.heads)
            if step == index.top:
                opened = {**updated, entries.OPEN: True}
                await self.state.write(self.run_id(thread_id), step, opened, history=False)
                index.open = opened
                index.note(step, opened)
                return
            await self._close_open(thread_id, index)
            await self._write(thread_id, index, step, updated)

    async def adelete_thread(self, thread_id: str) -> None:
        async with self._lock(thread_id):
            await self.state.delete_execution(self.run_id(thread_id))
            self._threads.pop(thread_id, None)

    async def acopy_thread(self, source_thread_id: str, target_thread_id: str) -> None:
        """Copy every checkpoint, with its writes, to a thread with none, at the same steps (so the
        copy lists in the same order and its last-written entry carries the same heads)."""
        target = self.run_id(target_thread_id)
        source = await self._refresh(source_thread_id)
        async with self._lock(target_thread_id):
            for checkpoint in await self._stored_history(source_thread_id):
                await self.state.checkpoint(target, checkpoint.step, checkpoint.state_data)
            if source.open is not None:  # the newest checkpoint's writes, into the copy's history
                closed = {k: v for k, v in source.open.items() if k != entries.OPEN}
                await self.state.checkpoint(target, closed[entries.STEP], closed)
            self._threads.pop(target_thread_id, None)

    async def _stored_history(self, thread_id: str) -> list[StoredCheckpoint]:
        """The run's history entries, oldest first (none for a thread never written)."""
        try:
            return await self.state.get_history(self.run_id(thread_id))
        except ExecutionNotFound:
            return []

    # -- the sync interface ---------------------------------------------------------------------
    def get_tuple(self, config: RunnableConfig) -> CheckpointTuple | None:
        _async_only()

    def list(
        self,
        config: RunnableConfig | None,
        *,
        filter: dict[str, Any] | None = None,
        before: RunnableConfig | None = None,
        limit: int | None = None,
    ) -> Iterator[CheckpointTuple]:
        _async_only()

    def put(
        self,
        config: RunnableConfig,
        checkpoint: Checkpoint,
        metadata: CheckpointMetadata,
        new_versions: ChannelVersions,
    ) -> RunnableConfig:
        _async_only()

    def put_writes(
        self, config: RunnableConfig, writes: Sequence[tuple[str, Any]], task_id: str, task_path: str = ""
    ) -> None:
        _async_only()

    def delete_thread(self, thread_id: str) -> None:
        _async_only()


def _async_only() -> NoReturn:
    raise NotImplementedError(
        "StrataCheckpointSaver is async (StateManager is): run the graph with ainvoke/astream"
    )


def _thread_and_ns(config: RunnableConfig) -> tuple[str, str]:
    configurable = config["configurable"]
    return str(configurable["thread_id"]), configurable.get("checkpoint_ns", "")


def _matches(metadata: CheckpointMetadata, wanted: dict[str, Any]) -> bool:
    return all(metadata.get(key) == value for key, value in wanted.items())
