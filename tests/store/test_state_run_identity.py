"""A run is what a start (or claim) began, not whatever is stored under its id.

A fenced write (one that carries an attempt, given or remembered) never creates an execution: the
run it belongs to was deleted or renamed, and re-creating it would leave an orphan nothing cleans,
or hand a new run the old one's state. ``rename_execution`` archives a run so its id can start anew,
empty, while the old run stays readable under the new id.
"""

from __future__ import annotations

import pytest

from stratarouter_runtime import (
    ExecutionGoneError,
    ExecutionNotFound,
    InvalidArgumentError,
    StaleAttemptError,
    StateManager,
)
from tests.store.conftest import MakeState

WRITES = ["checkpoint", "save", "write", "batched", "transaction", "explicit attempt"]


async def _write(manager: StateManager, how: str, execution_id: str, step: int) -> None:
    """One write of ``step`` by a manager that started the run, through each write path."""
    state = {"step": step}
    if how == "checkpoint":
        await manager.checkpoint(execution_id, step, state)
    elif how == "save":
        await manager.save(execution_id, step, state)
    elif how == "write":
        await manager.write(execution_id, step, state, history=True)
    elif how == "batched":
        await manager.checkpoint(execution_id, step, state)
        await manager.flush()
    elif how == "explicit attempt":
        await manager.checkpoint(execution_id, step, state, attempt=1)
    else:
        async with manager.transaction() as txn:
            await txn.checkpoint(execution_id, step, data=state)
            await txn.save("other", 1, data={"unfenced": True})


@pytest.mark.parametrize("how", WRITES)
async def test_a_run_deleted_under_its_writer_is_never_recreated_by_it(
    make_state: MakeState, how: str
) -> None:
    worker = make_state(batch_writes=True, batch_size=10) if how == "batched" else make_state()
    admin = make_state()
    await worker.start_execution("ns/run")
    await worker.checkpoint("ns/run", 1, {"step": 1})
    await worker.flush()
    assert await admin.delete_execution("ns/run")
    with pytest.raises(ExecutionGoneError) as err:
        await _write(worker, how, "ns/run", 2)
    assert isinstance(err.value, StaleAttemptError)  # the zombie stops, as for any replaced attempt
    assert isinstance(err.value, ExecutionNotFound)
    assert await admin.get_execution("ns/run") is None
    if how == "transaction":  # all or nothing: the transaction's other write is not there either
        assert await admin.get_execution("other") is None


async def test_must_exist_refuses_for_a_writer_that_never_started_the_run(make_state: MakeState) -> None:
    """The checkpoint API's writes: the operator started the run, another manager writes for the pod."""
    operator, api = make_state(), make_state()
    await operator.start_execution("ns/run")
    await api.write("ns/run", 1, {"step": 1}, history=True, attempt=1, must_exist=True)
    await operator.delete_execution("ns/run")
    with pytest.raises(ExecutionGoneError, match="deleted or renamed"):
        await api.write("ns/run", 2, {"step": 2}, history=True, attempt=1, must_exist=True)
    assert await operator.get_execution("ns/run") is None
    await api.write("fresh", 1, {"created": True}, history=False, attempt=1)  # without it: created
    assert await operator.load("fresh") == {"created": True}


async def test_deleting_a_run_it_started_lets_the_same_manager_start_over(make_state: MakeState) -> None:
    state = make_state()
    await state.start_execution("run")
    await state.checkpoint("run", 1, {"n": 1})
    await state.delete_execution("run")  # its own delete: a new run under this id, written unfenced
    await state.checkpoint("run", 1, {"fresh": True})
    assert await state.load("run") == {"fresh": True}


async def test_a_renamed_run_keeps_its_state_history_and_audit_and_its_id_starts_empty(
    make_state: MakeState,
) -> None:
    state = make_state()
    await state.start_execution("ns/run", labels={"uid": "old"}, checkpoint_retention=2)
    for step in (1, 2, 3):
        await state.checkpoint("ns/run", step, {"old": step})
    await state.save("ns/run", 4, {"old": 4})
    await state.create_snapshot("ns/run", "keep")
    renamed = await state.rename_execution("ns/run", "ns/run@old")
    assert (renamed.execution_id, renamed.current_step, renamed.last_checkpoint_step) == ("ns/run@old", 4, 3)
    assert renamed.labels == {"uid": "old"}
    assert await state.load("ns/run@old") == {"old": 4}
    assert [c.step for c in await state.get_history("ns/run@old")] == [2, 3]
    audit = await state.get_audit("ns/run@old")
    assert [e.kind for e in audit][-2:] == ["snapshot", "renamed"]
    assert audit[-1].detail == {"from": "ns/run"}
    assert {e.execution_id for e in audit} == {"ns/run@old"}
    assert await state.get_execution("ns/run") is None

    fresh = await state.start_execution("ns/run", labels={"uid": "new"})
    assert (fresh.attempt, fresh.current_step, fresh.last_checkpoint_step) == (1, None, None)
    await state.checkpoint("ns/run", 1, {"new": 1})
    assert [c.state_data for c in await state.get_history("ns/run")] == [{"new": 1}]
    assert [c.state_data for c in await state.get_history("ns/run@old")] == [{"old": 2}, {"old": 3}]
    assert [e.kind for e in await state.get_audit("ns/run")] == ["started", "checkpoint"]
    # snapshots are named by the id: a new run under it may restore them
    assert [s.name for s in await state.list_snapshots("ns/run")] == ["keep"]


async def test_a_zombie_of_a_renamed_run_cannot_write_into_it_or_the_new_run(make_state: MakeState) -> None:
    operator, zombie = make_state(), make_state()
    await zombie.start_execution("run", attempt=3)
    await zombie.checkpoint("run", 1, {"zombie": 1})
    await operator.rename_execution("run", "run@old")
    with pytest.raises(ExecutionGoneError):
        await zombie.checkpoint("run", 2, {"zombie": 2})
    assert await operator.get_execution("run") is None
    assert await operator.load("run@old") == {"zombie": 1}


@pytest.mark.parametrize(
    ("old", "new", "error", "match"),
    [
        ("missing", "elsewhere", ExecutionNotFound, "missing"),
        ("run", "taken", InvalidArgumentError, "exists already"),
        ("run", "run", InvalidArgumentError, "must differ"),
        ("run", "", InvalidArgumentError, "new_id"),
        ("run", "x" * 254, InvalidArgumentError, "new_id"),
    ],
)
async def test_a_refused_rename_changes_nothing(
    make_state: MakeState, old: str, new: str, error: type[Exception], match: str
) -> None:
    state = make_state()
    await state.checkpoint("run", 1, {"run": 1})
    await state.checkpoint("taken", 1, {"taken": 1})
    with pytest.raises(error, match=match):
        await state.rename_execution(old, new)
    assert await state.load("run") == {"run": 1}
    assert await state.load("taken") == {"taken": 1}
    assert [e.kind for e in await state.get_audit("run")] == ["checkpoint"]
