"""Batched writes through a failed or cancelled flush, on both backends: nothing acknowledged is lost."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from dataclasses import dataclass

import pytest

from stratarouter_runtime import StaleAttemptError, StateManager
from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.backends.memory import MemoryBackend
from stratarouter_runtime.state.backends.postgres import PostgresBackend
from stratarouter_runtime.state.errors import StateError
from stratarouter_runtime.state.migrations import connect
from tests.store.conftest import MakeState

BATCHED = {"batch_writes": True, "batch_size": 1000, "flush_interval_ms": 60_000}


@dataclass
class Faults:
    """What the backend's batch write does around the real one: raise first, or stall before/after."""

    error: Exception | None = None
    stall_before: float = 0.0
    stall_after: float = 0.0


@pytest.fixture
def faults(backend: tuple[str, str | None], monkeypatch: pytest.MonkeyPatch) -> Faults:
    """Wraps the test backend's ``write_many`` (managers made after this fixture use the wrapper)."""
    cls = MemoryBackend if backend[0] == "memory" else PostgresBackend
    real = cls.write_many
    found = Faults()

    async def write_many(
        self: MemoryBackend | PostgresBackend, ops: Sequence[WriteOp]
    ) -> list[StateError | None]:
        if found.error is not None:
            raise found.error
        await asyncio.sleep(found.stall_before)
        results = await real(self, ops)  # type: ignore[arg-type]
        await asyncio.sleep(found.stall_after)
        return results

    monkeypatch.setattr(cls, "write_many", write_many)
    return found


@pytest.mark.parametrize("stall", ["stall_before", "stall_after"])
async def test_acknowledged_checkpoints_survive_an_error_and_a_cancelled_read(
    make_state: MakeState, faults: Faults, stall: str
) -> None:
    state = make_state(**BATCHED)
    assert await state.get_execution("run") is None  # connected before the faults start
    for step in range(25):
        await state.checkpoint("run", step, {"step": step})
    faults.error = RuntimeError("injected: not an outage")
    with pytest.raises(RuntimeError, match="injected"):
        await state.flush()
    faults.error = None
    for step in range(25, 50):
        await state.checkpoint("run", step, {"step": step})
    setattr(faults, stall, 5.0)  # stall_after: the batch is written, then the flush is cancelled
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(state.load("run"), timeout=0.05)
    setattr(faults, stall, 0.0)
    await state.close()
    observer = make_state()
    assert [c.step for c in await observer.get_history("run")] == list(range(50))
    assert await observer.load("run") == {"step": 49}


async def test_a_refused_write_is_reported_and_the_rest_of_the_batch_is_stored(make_state: MakeState) -> None:
    state = make_state(**BATCHED)
    await state.start_execution("fenced", attempt=2)
    for step in range(10):
        await state.checkpoint("run", step, {"step": step})
    await state.checkpoint("fenced", 1, {"zombie": True}, attempt=1)
    with pytest.raises(StaleAttemptError, match="execution 'fenced' step 1"):
        await state.close()
    observer = make_state()
    assert [c.step for c in await observer.get_history("run")] == list(range(10))
    assert await observer.get_history("fenced") == []


@pytest.mark.postgres
async def test_a_flush_cancelled_while_postgres_waits_on_a_lock_loses_nothing(pg_dsn: str) -> None:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as setup:
        await setup.checkpoint("locked", 0, {"step": 0})
    state = StateManager(backend="postgresql", db_url=pg_dsn, **BATCHED)
    for step in range(1, 50):
        await state.checkpoint("locked", step, {"step": step})
    blocker = await connect(pg_dsn)
    try:
        lock = blocker.transaction()
        await lock.start()
        await blocker.execute("SELECT 1 FROM executions WHERE id = 'locked' FOR UPDATE")
        with pytest.raises(TimeoutError):  # the batch statement waits on the row lock in the server
            await asyncio.wait_for(state.load("locked"), timeout=0.3)
        # The client hung up; make the server drop the orphaned statement too (as it does with
        # client_connection_check_interval), so the batch is really not written.
        ended = await blocker.fetchval(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity"
            " WHERE datname = current_database() AND pid <> pg_backend_pid() AND wait_event_type = 'Lock'"
        )
        assert ended == 1
        await lock.rollback()
    finally:
        await blocker.close()
    await state.close()
    async with StateManager(backend="postgresql", db_url=pg_dsn) as observer:
        assert [c.step for c in await observer.get_history("locked")] == list(range(50))
        assert await observer.load("locked") == {"step": 49}
