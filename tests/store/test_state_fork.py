"""``StateManager.fork``: a new run from any checkpoint (or snapshot) of another, in one store call.

The new run's current state and first history checkpoint are the source's state at the fork step, its
audit trail opens with a ``forked`` event naming the source and step, and the source is only read.
"""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime import (
    CheckpointNotFound,
    ExecutionNotFound,
    InvalidArgumentError,
    SnapshotNotFound,
    StaleAttemptError,
    StateManager,
)
from tests.store.conftest import MakeState


async def _source(state: StateManager, steps: int = 5, **start: Any) -> None:
    """Run ``src`` that checkpointed steps 1..steps (state {"step": n}) and saved one more step."""
    await state.start_execution("src", **start)
    for step in range(1, steps + 1):
        await state.checkpoint("src", step, {"step": step, "items": list(range(step))})
    await state.save("src", steps + 1, {"step": steps + 1, "saved": True})


async def _record(state: StateManager, execution_id: str) -> tuple[Any, ...]:
    """Everything of a run a fork must leave alone."""
    execution = await state.get_execution(execution_id)
    assert execution is not None
    history = [(cp.step, cp.state_data, cp.attempt) for cp in await state.get_history(execution_id)]
    audit = [(e.seq, e.kind, e.step) for e in await state.get_audit(execution_id)]
    fields = (execution.status, execution.attempt, execution.current_step, execution.last_checkpoint_step)
    return fields, await state.load(execution_id), history, audit


async def test_a_fork_at_a_step_starts_from_that_state_and_leaves_the_source_alone(
    state: StateManager,
) -> None:
    await _source(state)
    before = await _record(state, "src")
    forked = await state.fork("src", "copy", step=3)
    assert (forked.execution_id, forked.status, forked.attempt) == ("copy", "running", 1)
    assert (forked.current_step, forked.last_checkpoint_step, forked.resume_step) == (3, 3, 3)
    assert await state.load("copy") == {"step": 3, "items": [0, 1, 2]}
    assert [cp.step for cp in await state.get_history("copy")] == [3]
    await state.checkpoint("copy", 4, {"step": 4, "forked": True})
    assert [cp.step for cp in await state.get_history("copy")] == [3, 4]
    assert await _record(state, "src") == before


async def test_a_fork_without_a_step_takes_the_newest_checkpoint(state: StateManager) -> None:
    await _source(state)
    forked = await state.fork("src", "copy")
    assert forked.current_step == 5  # the newest checkpoint, not the later save (no history entry)
    assert await state.load("copy") == {"step": 5, "items": [0, 1, 2, 3, 4]}


async def test_a_fork_from_a_snapshot_uses_its_stored_copy(state: StateManager) -> None:
    await _source(state, checkpoint_retention=2)
    await state.create_snapshot("src", "at-2", step=4)
    for step in range(6, 9):  # retention prunes step 4 from the source's history
        await state.checkpoint("src", step, {"step": step})
    with pytest.raises(CheckpointNotFound):
        await state.get_checkpoint("src", 4)
    forked = await state.fork("src", "copy", snapshot="at-2")
    assert forked.current_step == 4
    assert await state.load("copy") == {"step": 4, "items": [0, 1, 2, 3]}
    audit = await state.get_audit("copy")
    assert audit[0].detail == {"execution": "src", "step": 4, "snapshot": "at-2"}


async def test_the_audit_trail_shows_where_the_run_came_from(state: StateManager) -> None:
    await _source(state)
    await state.fork("src", "copy", step=2)
    await state.checkpoint("copy", 3, {"step": 3})
    audit = await state.get_audit("copy")
    assert [(e.kind, e.step) for e in audit] == [("forked", 2), ("checkpoint", 2), ("checkpoint", 3)]
    forked = audit[0]
    assert forked.detail == {"execution": "src", "step": 2}
    assert (forked.hash, forked.size_bytes) == (audit[1].hash, audit[1].size_bytes)
    assert "forked" not in [e.kind for e in await state.get_audit("src")]


async def test_refused_forks_change_nothing(state: StateManager) -> None:
    await _source(state, checkpoint_retention=3)  # keeps steps 3..5
    await state.start_execution("taken")
    before = await _record(state, "src")
    with pytest.raises(InvalidArgumentError, match="exists already"):
        await state.fork("src", "taken", step=3)
    with pytest.raises(ExecutionNotFound):
        await state.fork("missing", "copy")
    with pytest.raises(CheckpointNotFound, match="step 1"):  # pruned by retention
        await state.fork("src", "copy", step=1)
    with pytest.raises(CheckpointNotFound, match="step 9"):  # never written
        await state.fork("src", "copy", step=9)
    with pytest.raises(SnapshotNotFound):
        await state.fork("src", "copy", snapshot="none")
    with pytest.raises(InvalidArgumentError, match="not both"):
        await state.fork("src", "copy", 3, snapshot="none")
    await state.start_execution("empty")
    with pytest.raises(CheckpointNotFound):  # no checkpoint yet
        await state.fork("empty", "copy")
    assert await state.get_execution("copy") is None
    assert await _record(state, "src") == before


async def test_the_new_runs_retention_is_its_own(make_state: MakeState) -> None:
    state = make_state()
    await _source(state, checkpoint_retention=2)
    forked = await state.fork("src", "copy", checkpoint_retention=3, labels={"team": "a"})
    assert (forked.checkpoint_retention, forked.labels) == (3, {"team": "a"})
    for step in range(6, 10):
        await state.checkpoint("copy", step, {"step": step})
    assert [cp.step for cp in await state.get_history("copy")] == [7, 8, 9]
    assert [cp.step for cp in await state.get_history("src")] == [4, 5]
    unlimited = await state.fork("src", "unlimited", step=4)
    assert unlimited.checkpoint_retention is None
    for step in range(5, 10):
        await state.checkpoint("unlimited", step, {"step": step})
    assert [cp.step for cp in await state.get_history("unlimited")] == list(range(4, 10))


async def test_the_forking_manager_fences_the_new_run_on_its_attempt(make_state: MakeState) -> None:
    state, other = make_state(), make_state()
    await _source(state)
    await state.fork("src", "copy", attempt=2)
    with pytest.raises(StaleAttemptError):
        await other.checkpoint("copy", 6, {"step": 6}, attempt=1)
    await other.start_execution("copy", attempt=3)
    with pytest.raises(StaleAttemptError):  # the fork's manager writes as attempt 2, now replaced
        await state.checkpoint("copy", 6, {"step": 6})


async def test_a_forked_run_is_its_forking_workers_own(make_state: MakeState) -> None:
    """As after start_execution: the forking worker's restart claims the new run at once."""
    first = make_state(worker_id="forker-1")  # default recovery_timeout: 300 s
    await _source(first)
    await first.complete("src")
    await first.fork("src", "copy", step=2)
    await first.close()
    restarted = make_state(worker_id="forker-1")
    claimed = await restarted.recover_all()
    assert [(e.execution_id, e.attempt, e.resume_step) for e in claimed] == [("copy", 2, 2)]
