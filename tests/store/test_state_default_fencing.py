"""Fencing by default: a manager writes as the attempt it started or claimed, without ``attempt=``.

Both legs share one store between two managers (memory: one in-process backend, as a second process
would share a database), standing for the zombie process and the one that took its run over.
"""

from __future__ import annotations

import asyncio

import pytest

from stratarouter_runtime import ExecutionStatus, StaleAttemptError, StateManager
from tests.store.conftest import MakeState


async def _replaced(make_state: MakeState, how: str) -> tuple[StateManager, StateManager]:
    """Manager A starts run X and checkpoints; manager B takes X over (``how``) and checkpoints."""
    a = make_state(recovery_timeout=0.05)
    b = make_state(recovery_timeout=0.05)
    started = await a.start_execution("X")
    assert started.attempt == 1
    await a.checkpoint("X", 1, {"by": "A"})
    if how == "recover_all":
        await asyncio.sleep(0.2)
        claimed = await b.recover_all()
        assert [(e.execution_id, e.attempt) for e in claimed] == [("X", 2)]
    else:
        assert (await b.start_execution("X", attempt=2)).attempt == 2
    await b.checkpoint("X", 2, {"by": "B"})
    return a, b


@pytest.mark.parametrize("how", ["recover_all", "start_execution"])
async def test_a_replaced_process_is_fenced_without_passing_attempt(make_state: MakeState, how: str) -> None:
    a, b = await _replaced(make_state, how)
    with pytest.raises(StaleAttemptError, match="attempt 1 is stale, the current attempt is 2"):
        await a.checkpoint("X", 3, {"by": "zombie A"})
    with pytest.raises(StaleAttemptError):
        await a.save("X", 3, {"by": "zombie A"})
    with pytest.raises(StaleAttemptError):
        await a.write("X", 3, {"by": "zombie A"}, history=False)
    with pytest.raises(StaleAttemptError):
        async with a.transaction() as txn:
            await txn.save("X", 3, data={"by": "zombie A"})
    with pytest.raises(StaleAttemptError):
        await a.complete("X")
    assert await b.load("X") == {"by": "B"}
    execution = await b.get_execution("X")
    assert execution is not None
    assert (execution.attempt, execution.current_step, execution.status) == (2, 2, ExecutionStatus.RUNNING)
    assert [(c.step, c.attempt, c.state_data) for c in await b.get_history("X")] == [
        (1, 1, {"by": "A"}),
        (2, 2, {"by": "B"}),
    ]
    await b.checkpoint("X", 3, {"by": "B"})  # the process that took over writes on, attempt= not needed
    await b.complete("X")
    assert (await b.get_execution("X")).status == ExecutionStatus.COMPLETED  # type: ignore[union-attr]


async def test_batched_writes_of_a_replaced_process_are_fenced(make_state: MakeState) -> None:
    a = make_state(batch_writes=True, batch_size=100, flush_interval_ms=60_000)
    b = make_state()
    await a.start_execution("X")
    await a.checkpoint("X", 1, {"by": "A"})
    await a.flush()
    await b.start_execution("X", attempt=2)
    await a.checkpoint("X", 2, {"by": "zombie A"})  # buffered: refused at the flush
    with pytest.raises(StaleAttemptError):
        await a.flush()
    assert await b.load("X") == {"by": "A"}


async def test_an_explicit_attempt_still_wins(make_state: MakeState) -> None:
    a, b = await _replaced(make_state, "start_execution")
    await a.checkpoint("X", 3, {"by": "A as attempt 2"}, attempt=2)  # wins over the remembered 1
    assert await b.load("X") == {"by": "A as attempt 2"}
    with pytest.raises(StaleAttemptError):
        await b.save("X", 4, {"by": "B"}, attempt=1)
    await a.save("X", 4, {"by": "A as attempt 3"}, attempt=3)  # raises the stored attempt, and A's own
    await a.save("X", 5, {"by": "A"})
    with pytest.raises(StaleAttemptError, match="attempt 2 is stale, the current attempt is 3"):
        await b.save("X", 5, {"by": "B"})
    assert await a.load("X") == {"by": "A"}


async def test_runs_a_manager_never_started_stay_unfenced_and_attempts_are_per_run(
    make_state: MakeState,
) -> None:
    a = make_state()
    b = make_state()
    await a.start_execution("X")
    await a.start_execution("Y", attempt=3)
    await b.start_execution("X", attempt=2)
    await a.save("Y", 1, {"y": 1})  # A's attempt of Y is 3: still current
    assert (await a.get_execution("Y")).attempt == 3  # type: ignore[union-attr]
    await b.save("Z", 1, {"z": 1})  # never started nor claimed here: no attempt, not fenced
    await a.save("Z", 2, {"z": 2})
    with pytest.raises(StaleAttemptError):
        await a.save("X", 1, {})
    assert await a.delete_execution("X")
    await a.save("X", 1, {"x": "new run"})  # a deleted run is forgotten: a new one is not fenced
    assert (await a.get_execution("X")).attempt == 1  # type: ignore[union-attr]
