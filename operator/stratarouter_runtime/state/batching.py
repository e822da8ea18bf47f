"""Two ways of sending many writes in one round trip.

* :class:`GroupCommitter` (durable mode, always on for backends that batch well): a write with
  nothing else in flight goes out at once, in its caller's task (no added latency when writes are
  sequential). Writes that arrive while others are in flight are collected until the end of the
  current event-loop pass (writers woken by one commit resubmit in the same pass) and leave
  together as one batch, at once if fewer than ``max_inflight`` batches are in flight (several
  batches are pipelined on several connections), else when one completes. Every caller is released
  only after *its* batch committed, so nothing is reported done before it is durable. Writes of one
  execution are never in flight in two round trips at once: they commit in the order submitted, and
  a retention prunes exactly (a statement cannot see a concurrent one's new checkpoints).
* :class:`WriteBuffer` (``batch_writes=True``): writes return as soon as they are buffered and are
  flushed when ``batch_size`` is reached, ``flush_interval_ms`` passes, or on ``flush()``/``close()``.

  **Loss window**: a write acknowledged by ``save``/``checkpoint`` in batch mode is *not yet
  durable*. One thing loses it: the process dying (SIGKILL, OOM, power loss) before a flush has
  committed it, which is up to ``batch_size`` writes, or ``flush_interval_ms`` of them (more if
  they piled up while the store was down). Nothing else does. A flush that raises (store
  unavailable, any other exception) or is cancelled (e.g. a read under ``asyncio.wait_for``: reads
  flush first) keeps every write it did not see committed, in order and ahead of writes buffered
  meanwhile, and the next flush or ``close()`` sends them again; such a write may be applied twice,
  which is harmless (writes are idempotent on ``(execution, step)``; the audit trail may list the
  checkpoint twice). One flush runs at a time. A background (interval) flush that fails logs a
  warning and tries again an interval later; a ``save`` whose write filled the batch raises its
  flush's error, and that write stays buffered too. A clean ``close()`` (or leaving
  ``async with``) flushes and loses nothing; a ``close()`` that raises keeps the writes, and
  calling it again retries them.

  **Refused writes**: a write the store refused for good (fenced, :class:`StaleAttemptError`; or
  invalid) is dropped from the buffer, not retried forever, and reported: the next ``flush()``,
  ``close()`` or buffered write raises the first refusal's error, with a note naming the execution
  and step of every write refused since the last report.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable, Sequence
from typing import Final

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.errors import StateError, StoreUnavailableError

log = logging.getLogger(__name__)

WriteMany = Callable[[Sequence[WriteOp]], Awaitable[list[StateError | None]]]
WriteOne = Callable[[WriteOp], Awaitable[None]]


class GroupCommitter:
    """Coalesces concurrent durable writes; see the module docstring."""

    def __init__(self, write_one: WriteOne, write_many: WriteMany, max_inflight: int) -> None:
        self._write_one = write_one
        self._write_many = write_many
        self._max_inflight = max_inflight
        self._inflight = 0
        self._busy: dict[str, int] = {}
        """Execution id -> how many of its writes are in flight (in one round trip at a time)."""
        self._queue: list[tuple[WriteOp, asyncio.Future[None]]] = []
        self._scheduled = False
        self._tasks: set[asyncio.Task[None]] = set()

    async def submit(self, op: WriteOp) -> None:
        if not self._inflight and not self._queue:
            self._inflight += 1
            self._hold([op])
            try:
                await self._write_one(op)
            finally:
                self._inflight -= 1
                self._release([op])
                self._kick()
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        self._queue.append((op, future))
        if not self._scheduled:  # runs after every task already woken in this pass has submitted
            self._scheduled = True
            loop.call_soon(self._flush)
        await future

    def _hold(self, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            self._busy[op.execution_id] = self._busy.get(op.execution_id, 0) + 1

    def _release(self, ops: Sequence[WriteOp]) -> None:
        for op in ops:
            left = self._busy[op.execution_id] - 1
            if left:
                self._busy[op.execution_id] = left
            else:
                del self._busy[op.execution_id]

    def _flush(self) -> None:
        self._scheduled = False
        self._kick()

    def _kick(self) -> None:
        """Send every queued write whose execution has none in flight (the rest wait, in order)."""
        if not self._queue or self._inflight >= self._max_inflight:
            return
        batch = [queued for queued in self._queue if queued[0].execution_id not in self._busy]
        if not batch:
            return
        self._queue = [queued for queued in self._queue if queued[0].execution_id in self._busy]
        self._inflight += 1
        self._hold([op for op, _ in batch])
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
            self._release([op for op, _ in batch])
            self._kick()

    async def drain(self) -> None:
        while self._tasks or self._queue:
            if self._tasks:
                await asyncio.gather(*self._tasks, return_exceptions=True)
            else:
                # the scheduled flush sends what is queued, or a direct write in flight ends
                await asyncio.sleep(0 if self._scheduled else 0.001)


MAX_NAMED_REFUSALS: Final = 20
"""How many refused writes a refusal's note lists one by one."""


def _refusal(refused: Sequence[tuple[WriteOp, StateError]]) -> StateError:
    """The first refused write's own error (so ``except StaleAttemptError`` still works), with a note
    naming every refused write: the error alone may not say which buffered step it was."""
    error = refused[0][1]
    count = len(refused)
    lines = [
        f"  execution {op.execution_id!r} step {op.step}: {exc}" for op, exc in refused[:MAX_NAMED_REFUSALS]
    ]
    if count > MAX_NAMED_REFUSALS:
        lines.append(f"  ... and {count - MAX_NAMED_REFUSALS} more")
    what = "1 buffered write was" if count == 1 else f"{count} buffered writes were"
    error.add_note(f"{what} refused by the store and dropped (not retried):\n" + "\n".join(lines))
    return error


class WriteBuffer:
    """Buffered (non-durable until flushed) writes; see the module docstring for the loss window.

    ``_ops`` holds every write not yet answered by the store, oldest first. A flush sends a copy of
    them and removes only those the store answered, so an exception or a cancellation anywhere in
    the round trip leaves them where they were.
    """

    def __init__(self, write_many: WriteMany, batch_size: int, flush_interval_ms: int) -> None:
        self._write_many = write_many
        self._batch_size = batch_size
        self._interval = flush_interval_ms / 1000
        self._ops: list[WriteOp] = []
        self._inflight = 0
        """How many of ``_ops`` (the oldest) the running flush is sending."""
        self._lock = asyncio.Lock()
        self._timer: asyncio.Task[None] | None = None
        self._refused: list[tuple[WriteOp, StateError]] = []

    def __len__(self) -> int:
        """Writes not yet committed, including those a running flush is sending."""
        return len(self._ops)

    def _raise_refused(self) -> None:
        if self._refused:
            refused, self._refused = self._refused, []
            raise _refusal(refused)

    async def add(self, op: WriteOp) -> None:
        """Buffer ``op``; first raises writes refused by a background flush (then ``op`` is not taken)."""
        self._raise_refused()
        self._ops.append(op)
        if len(self._ops) - self._inflight >= self._batch_size:
            await self.flush()
        elif self._timer is None:
            self._timer = asyncio.create_task(self._flush_later())

    async def _flush_later(self) -> None:
        await asyncio.sleep(self._interval)
        self._timer = None  # from here on close() waits for this flush instead of cancelling it
        try:
            await self._flush()
        except Exception as exc:  # the writes stay buffered: try again after another interval
            log.warning("background flush of %d buffered write(s) failed, retrying: %r", len(self), exc)
            if self._timer is None:
                self._timer = asyncio.create_task(self._flush_later())

    async def flush(self) -> None:
        """Write everything buffered; raises a refused write (see the module docstring) or why the
        flush failed (then everything not committed stays buffered)."""
        await self._flush()
        self._raise_refused()

    async def _flush(self) -> None:
        async with self._lock:  # one flush at a time: no write is sent twice at once or out of order
            ops = self._ops[:]
            if not ops:
                return
            self._inflight = len(ops)
            try:
                results = await self._write_many(ops)
            finally:
                self._inflight = 0
            self._settle(ops, results)

    def _settle(self, ops: list[WriteOp], results: Sequence[StateError | None]) -> None:
        """Drop the answered writes from the buffer: all up to the first one the store was unavailable
        for (that one and the rest stay, in order, and its error is raised); remember refusals."""
        done = next((i for i, r in enumerate(results) if isinstance(r, StoreUnavailableError)), len(ops))
        refused = [(op, r) for op, r in zip(ops[:done], results[:done], strict=True) if r is not None]
        del self._ops[:done]
        self._refused += refused
        if done < len(ops):
            error = results[done]
            assert error is not None
            raise error

    async def close(self) -> None:
        await self._stop_timer()
        try:
            await self.flush()
        finally:
            await self._stop_timer()  # re-armed by a background flush that failed meanwhile

    async def _stop_timer(self) -> None:
        timer, self._timer = self._timer, None
        if timer is not None:  # still sleeping: a timer that flushes has cleared _timer
            timer.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await timer
