"""Group commit and the write buffer, driven by in-process stand-ins for a backend's write calls."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence

import pytest

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.batching import GroupCommitter, WriteBuffer
from stratarouter_runtime.state.codec import StateCodec
from stratarouter_runtime.state.errors import StaleAttemptError, StateError, StoreUnavailableError

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
