"""Group commit and the write buffer, driven by in-process stand-ins for a backend's write calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.batching import GroupCommitter, WriteBuffer
from stratarouter_runtime.state.codec import StateCodec
from stratarouter_runtime.state.errors import (
    InvalidArgumentError,
    StaleAttemptError,
    StateError,
    StoreUnavailableError,
)

ENC = StateCodec().encode({})


def op(n: int) -> WriteOp:
    return WriteOp(f"e{n}", n, ENC, None, False)


class Recorder:
    def __init__(self) -> None:
        self.singles: list[int] = []
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()
        self.refuse: set[int] = set()
        self.down = False

    async def write_one(self, o: WriteOp) -> None:
        await self.gate.wait()
        self.singles.append(o.step)

    async def write_many(self, ops: Sequence[WriteOp]) -> list[StateError | None]:
        if self.down:
            raise StoreUnavailableError("down")
        self.batches.append([o.step for o in ops])
        return [StaleAttemptError(o.execution_id, 1, 2) if o.step in self.refuse else None for o in ops]


async def test_writes_arriving_during_a_round_trip_leave_together() -> None:
    rec = Recorder()
    committer = GroupCommitter(rec.write_one, rec.write_many, max_inflight=1)
    rec.refuse = {3}
    tasks = [asyncio.create_task(committer.submit(op(n))) for n in range(5)]
    await asyncio.sleep(0)
    assert rec.batches == []  # the first write holds the only slot
    rec.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert rec.singles == [0]
    assert rec.batches == [[1, 2, 3, 4]]
    assert [type(r).__name__ for r in results] == [
        "NoneType",
        "NoneType",
        "NoneType",
        "StaleAttemptError",
        "NoneType",
    ]
    await committer.drain()


async def test_writes_arriving_together_leave_at_once_as_one_batch_beside_a_write_in_flight() -> None:
    rec = Recorder()
    committer = GroupCommitter(rec.write_one, rec.write_many, max_inflight=4)
    tasks = [asyncio.create_task(committer.submit(op(n))) for n in range(5)]
    for _ in range(5):  # a few loop passes, no waiting on time
        await asyncio.sleep(0)
    # write 0 holds a connection; 1..4 came in the same loop pass and did not wait for it
    assert rec.singles == []
    assert rec.batches == [[1, 2, 3, 4]]
    rec.gate.set()
    assert await asyncio.gather(*tasks) == [None] * 5
    assert rec.singles == [0]
    await committer.drain()


async def test_writes_of_an_execution_in_flight_wait_for_it_and_keep_their_order() -> None:
    """Two round trips of one execution at once would each prune its history without seeing the
    other's new checkpoints (and could commit out of order)."""
    rec = Recorder()
    committer = GroupCommitter(rec.write_one, rec.write_many, max_inflight=4)
    same = [WriteOp("x", n, ENC, None, True) for n in range(3)]
    tasks = [asyncio.create_task(committer.submit(o)) for o in [same[0], op(7), same[1], op(8), same[2]]]
    for _ in range(5):
        await asyncio.sleep(0)
    assert rec.batches == [[7, 8]]  # x's writes wait behind x's write in flight
    rec.gate.set()
    assert await asyncio.gather(*tasks) == [None] * 5
    assert rec.singles == [0]
    assert rec.batches == [[7, 8], [1, 2]]
    await committer.drain()


async def test_a_lone_write_goes_out_in_its_callers_task() -> None:
    rec = Recorder()
    rec.gate.set()
    committer = GroupCommitter(rec.write_one, rec.write_many, max_inflight=4)
    for n in range(3):
        await committer.submit(op(n))
    assert rec.singles == [0, 1, 2]
    assert rec.batches == []


async def test_a_failed_round_trip_reaches_every_waiter() -> None:
    rec = Recorder()
    committer = GroupCommitter(rec.write_one, rec.write_many, max_inflight=1)
    rec.down = True
    tasks = [asyncio.create_task(committer.submit(op(n))) for n in range(3)]
    await asyncio.sleep(0)
    rec.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert results[0] is None
    assert all(isinstance(r, StoreUnavailableError) for r in results[1:])


async def test_buffer_flushes_when_full_and_keeps_writes_when_the_store_is_down() -> None:
    rec = Recorder()
    buffer = WriteBuffer(rec.write_many, batch_size=3, flush_interval_ms=60_000)
    await buffer.add(op(0))
    await buffer.add(op(1))
    assert rec.batches == []
    assert len(buffer) == 2
    await buffer.add(op(2))
    assert rec.batches == [[0, 1, 2]]
    rec.down = True
    await buffer.add(op(3))
    with pytest.raises(StoreUnavailableError):
        await buffer.flush()
    assert len(buffer) == 1  # kept for the next flush
    rec.down = False
    await buffer.close()
    assert rec.batches == [[0, 1, 2], [3]]


async def test_buffer_reports_a_refused_write_on_flush() -> None:
    rec = Recorder()
    rec.refuse = {1}
    buffer = WriteBuffer(rec.write_many, batch_size=10, flush_interval_ms=60_000)
    await buffer.add(op(0))
    await buffer.add(op(1))
    with pytest.raises(StaleAttemptError):
        await buffer.flush()
    await buffer.close()


class Flaky:
    """A batch write that raises, stalls until released, or refuses single writes, as told."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.raise_next: BaseException | None = None
        self.stall = False
        self.released = asyncio.Event()
        self.started = asyncio.Event()
        self.results: dict[int, StateError] = {}

    async def write_many(self, ops: Sequence[WriteOp]) -> list[StateError | None]:
        if self.raise_next is not None:
            error, self.raise_next = self.raise_next, None
            raise error
        self.started.set()
        if self.stall:
            await self.released.wait()
        self.batches.append([o.step for o in ops])
        return [self.results.get(o.step) for o in ops]


async def fill(buffer: WriteBuffer, steps: range) -> None:
    for n in steps:
        await buffer.add(op(n))


async def test_a_round_trip_that_raises_keeps_every_write_for_the_next_flush() -> None:
    flaky = Flaky()
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(3))
    flaky.raise_next = RuntimeError("connection reset by a bug")
    with pytest.raises(RuntimeError, match="connection reset"):
        await buffer.flush()
    assert len(buffer) == 3
    await buffer.add(op(3))
    await buffer.close()
    assert flaky.batches == [[0, 1, 2, 3]]
    assert len(buffer) == 0


async def test_a_cancelled_flush_keeps_its_writes_ahead_of_those_buffered_meanwhile() -> None:
    flaky = Flaky()
    flaky.stall = True
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(3))
    flushing = asyncio.create_task(buffer.flush())
    await flaky.started.wait()
    await fill(buffer, range(3, 5))  # buffered while the flush is in flight
    flushing.cancel()
    with pytest.raises(asyncio.CancelledError):
        await flushing
    assert len(buffer) == 5
    flaky.stall = False
    await buffer.close()
    assert flaky.batches == [[0, 1, 2, 3, 4]]


async def test_a_read_timing_out_on_a_slow_flush_loses_nothing() -> None:
    flaky = Flaky()
    flaky.stall = True
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(50))
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(buffer.flush(), timeout=0.01)
    flaky.stall = False
    await buffer.close()
    assert flaky.batches == [list(range(50))]


async def test_concurrent_flushes_send_each_write_once_and_in_order() -> None:
    flaky = Flaky()
    flaky.stall = True
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(2))
    first = asyncio.create_task(buffer.flush())
    await flaky.started.wait()
    await buffer.add(op(2))
    second = asyncio.create_task(buffer.flush())
    await asyncio.sleep(0)
    flaky.released.set()
    await asyncio.gather(first, second)
    assert flaky.batches == [[0, 1], [2]]
    assert len(buffer) == 0


async def test_per_write_unavailability_keeps_that_write_and_the_ones_after_it() -> None:
    flaky = Flaky()
    flaky.results = {1: StoreUnavailableError("api down")}
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(3))
    with pytest.raises(StoreUnavailableError):
        await buffer.flush()
    assert len(buffer) == 2
    flaky.results = {}
    await buffer.close()
    assert flaky.batches == [[0, 1, 2], [1, 2]]


async def test_a_refused_write_is_reported_with_its_step_and_not_retried() -> None:
    flaky = Flaky()
    flaky.results = {1: StaleAttemptError("e1", 1, 2), 2: InvalidArgumentError("bad")}
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=60_000)
    await fill(buffer, range(4))
    with pytest.raises(StaleAttemptError) as refused:
        await buffer.flush()
    assert "2 buffered writes were refused by the store and dropped" in str(refused.value.__notes__)
    assert "execution 'e1' step 1: " in refused.value.__notes__[0]
    assert "execution 'e2' step 2: bad" in refused.value.__notes__[0]
    assert len(buffer) == 0
    flaky.results = {}
    await buffer.close()  # reported once; nothing is sent again
    assert flaky.batches == [[0, 1, 2, 3]]


async def test_a_failed_timer_flush_keeps_the_writes_and_tries_again(
    caplog: pytest.LogCaptureFixture,
) -> None:
    flaky = Flaky()
    flaky.raise_next = RuntimeError("not an outage")
    flaky.results = {0: StaleAttemptError("e0", 1, 2)}
    buffer = WriteBuffer(flaky.write_many, batch_size=100, flush_interval_ms=10)
    await fill(buffer, range(2))
    for _ in range(100):  # the first timer flush raises, the next one writes
        if flaky.batches:
            break
        await asyncio.sleep(0.01)
    assert flaky.batches == [[0, 1]]
    assert "background flush of 2 buffered write(s) failed, retrying" in caplog.text
    assert len(buffer) == 0
    with pytest.raises(StaleAttemptError, match="execution 'e0' step 0"):  # reported by the next write
        await buffer.add(op(2))
    await buffer.close()
    assert flaky.batches == [[0, 1]]
