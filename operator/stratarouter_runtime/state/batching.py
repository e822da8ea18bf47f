"""Two ways of sending many writes in one round trip.

* :class:`GroupCommitter` (durable mode, always on for backends that batch well): a write with
  nothing else in flight goes out at once, in its caller's task (no added latency when writes are
  sequential). Writes that arrive while others are in flight are collected until the end of the
  current event-loop pass (writers woken by one commit resubmit in the same pass) and leave
  together as one batch, at once if fewer than ``max_inflight`` batches are in flight (several
  batches are pipelined on several connections), else when one completes. Every caller is released
  only after *its* batch committed, so nothing is reported done before it is durable.
* :class:`WriteBuffer` (``batch_writes=True``): writes return as soon as they are buffered and are
  flushed when ``batch_size`` is reached, ``flush_interval_ms`` passes, or on ``flush()``/``close()``.

  **Loss window**: a write acknowledged by ``save``/``checkpoint`` in batch mode is *not yet
  durable*. If the process dies (SIGKILL, OOM, power loss) before the next flush, up to
  ``batch_size`` writes, or up to ``flush_interval_ms`` of writes, are lost. A clean ``close()`` (or
  leaving ``async with``) flushes and loses nothing. A failed flush keeps the writes buffered and
  raises; they are retried by the next flush.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, Sequence

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.errors import StateError, StoreUnavailableError

WriteMany = Callable[[Sequence[WriteOp]], Awaitable[list[StateError | None]]]
WriteOne = Callable[[WriteOp], Awaitable[None]]


class GroupCommitter:
    """Coalesces concurrent durable writes; see the module docstring."""

    def __init__(self, write_one: WriteOne, write_many: WriteMany, max_inflight: int) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._max_inflight = max_inflight
        self._inflight = 0
        self._queue: list[tuple[WriteOp, asyncio.Future[None]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, op: WriteOp) -> None:
        if not self._inflight and not self._queue:
            self._inflight += 1
            try:
                await self._write_one(op)
            finally:
                self._inflight -= 1
                self._kick()
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((op, future))
        if not self._scheduled:  # runs after every task already woken in this pass has submitted
            self._scheduled = True
            loop.call_soon(self._flush)
        await future

    def _flush(self) -> None:
        self._scheduled = False
        self._kick()

    def _kick(self) -> None:
        if self._queue and self._inflight < self._max_inflight:
            batch, self._queue = self._queue, []
            self._inflight += 1
            task = asyncio.create_task(self._send(batch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def _send(self, batch: list[tuple[WriteOp, asyncio.Future[None]]]) -> None:
        try:
            results = await self._write_many([op for op, _ in batch])
        except BaseException as exc:  # the whole round trip failed: every caller hears it
            for _, future in batch:
                if not future.done():
                    future.set_exception(exc)
            if not isinstance(exc, Exception):
                raise
        else:
            for (_, future), result in zip(batch, results, strict=True):
                if future.done():
                    continue
                if result is None:
                    future.set_result(None)
                else:
                    future.set_exception(result)
        finally:
            self._inflight -= 1
            self._kick()

    async def drain(self) -> None:
        while self._tasks or self._queue:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                # the scheduled flush sends what is queued, or a direct write in flight ends
                await asyncio.sleep(0 if self._scheduled else 0.001)


class WriteBuffer:
    """Buffered (non-durable until flushed) writes; see the module docstring for the loss window."""

    def __init__(self, write_many: WriteMany, batch_size: int, flush_interval_ms: int) -> None:
        self._write_many = write_many
        self._batch_size = batch_size
        self._interval = flush_interval_ms / 1000
        self._ops: list[WriteOp] = []
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._error: StateError | None = None

    def __len__(self) -> int:
        return len(self._ops)

    def _raise_deferred(self) -> None:
        if self._error is not None:
            error, self._error = self._error, None
            raise error

    async def add(self, op: WriteOp) -> None:
        self._raise_deferred()
        self._ops.append(op)
        if len(self._ops) >= self._batch_size:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        try:
            await asyncio.sleep(self._interval)
            self._timer = None
            await self._flush()
        except StateError as exc:  # reported by the next add/flush
            self._error = exc

    async def flush(self) -> None:
        """Write everything buffered; raises the first refused write (or a deferred timer error)."""
        await self._flush()
        self._raise_deferred()

    async def _flush(self) -> None:
        async with self._lock:
            ops, self._ops = self._ops, []
            if not ops:
                return
            try:
                results = await self._write_many(ops)
            except StoreUnavailableError:
                self._ops[:0] = ops  # keep them for the next flush
                raise
        errors = [r for r in results if r is not None]
        if errors:
            raise errors[0]

    async def close(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._timer
            self._timer = None
        await self.flush()
