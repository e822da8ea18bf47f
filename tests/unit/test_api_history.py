"""How the history page reads the store: many small checkpoints in few calls, large ones one at a time."""

from __future__ import annotations

from typing import Any

from stratarouter_runtime import Checkpoint, StateManager
from stratarouter_runtime.operator.api.history import BATCH_JSON_BYTES, MAX_BATCH, Page, batches, next_batch


class Counting(StateManager):
    """The memory store, counting get_history calls and the most checkpoints one returned."""

    calls = 0
    largest_batch = 0

    async def get_history(self, execution_id: str, **kwargs: Any) -> list[Checkpoint]:
        found = await super().get_history(execution_id, **kwargs)
        self.calls += 1
        self.largest_batch = max(self.largest_batch, len(found))
        return found


async def read_all(store: StateManager, limit: int = 1000) -> list[int]:
    return [cp.step for batch in [b async for b in batches(store, "e", None, limit)] for cp in batch]


async def test_small_checkpoints_come_in_few_calls() -> None:
    async with Counting() as store:
        for step in range(1000):
            await store.checkpoint("e", step, {"s": step})
        assert await read_all(store) == list(range(1000))
        assert store.calls <= 12  # 1, 2, 4, ... 256, then 256 at a time
        assert store.largest_batch == MAX_BATCH


async def test_large_checkpoints_come_one_at_a_time() -> None:
    async with Counting() as store:
        for step in range(6):
            await store.checkpoint("e", step, "x" * BATCH_JSON_BYTES)
        assert await read_all(store, limit=5) == [0, 1, 2, 3, 4]
        assert store.largest_batch == 1


def test_batch_sizes() -> None:
    assert next_batch(previous=1, largest=10, left=1000) == 2
    assert next_batch(previous=128, largest=10, left=1000) == MAX_BATCH
    assert next_batch(previous=64, largest=10, left=3) == 3
    assert next_batch(previous=64, largest=BATCH_JSON_BYTES // 4, left=1000) == 4
    assert next_batch(previous=64, largest=10 * BATCH_JSON_BYTES, left=1000) == 1


def test_a_page_takes_the_first_checkpoint_whatever_its_size_then_stops_at_the_cap() -> None:
    class Cp:
        def __init__(self, step: int, size: int) -> None:
            self.step, self.size_bytes = step, size

    page = Page(limit=10, max_bytes=100)
    for cp in (Cp(0, 150), Cp(1, 1)):
        if not page.admits(cp):
            break
        page.add(cp)
    assert (page.count, page.next_after_step) == (1, 0)
    full = Page(limit=2, max_bytes=100)
    for cp in (Cp(0, 1), Cp(1, 1)):
        assert full.admits(cp)
        full.add(cp)
    assert full.next_after_step == 1
    done = Page(limit=10, max_bytes=100)
    done.add(Cp(0, 1))
    assert done.next_after_step is None
