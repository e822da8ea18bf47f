"""The newest write is the current state, whatever mix of saves, new and rewound checkpoints made it.

On PostgreSQL the current state sits in the execution row or in the checkpoint row it points at
(the view current_states); these sequences pin down that it is the newest write exactly as the
memory backend's plain model has it.
"""

from __future__ import annotations

import asyncio

import pytest

from stratarouter_runtime import StaleAttemptError, StateManager
from tests.store.conftest import MakeState


async def steps(state: StateManager, execution_id: str) -> tuple[int | None, int | None]:
    execution = await state.get_execution(execution_id)
    assert execution is not None
    return execution.current_step, execution.last_checkpoint_step


async def test_a_checkpoint_after_a_later_save_is_the_newest_write(state: StateManager) -> None:
    await state.checkpoint("a", 10, {"at": 10})
    await state.save("a", 15, {"at": 15})
    await state.checkpoint("a", 12, {"at": 12})
    assert await state.load("a") == {"at": 12}
    assert await steps(state, "a") == (12, 12)
    latest = await state.get_latest_checkpoint("a")
    assert latest is not None
    assert latest.state_data == {"at": 12}


async def test_a_save_after_new_checkpoints_keeps_their_last_step(state: StateManager) -> None:
    await state.checkpoint("b", 10, {"at": 10})
    for step in (11, 12, 13):
        await state.checkpoint("b", step, {"at": step})
    assert await steps(state, "b") == (13, 13)
    await state.save("b", 14, {"at": 14})
    assert await state.load("b") == {"at": 14}
    assert await steps(state, "b") == (14, 13)
    await state.save("b", 11, {"at": "rewound"})  # a save may go back too
    assert await state.load("b") == {"at": "rewound"}
    assert await steps(state, "b") == (11, 13)


async def test_checkpoints_below_the_highest_step_rewind(state: StateManager) -> None:
    for step in range(10, 13):
        await state.checkpoint("c", step, {"at": step})
    await state.checkpoint("c", 5, {"at": 5})  # rewound below every stored step
    assert await state.load("c") == {"at": 5}
    assert await steps(state, "c") == (5, 5)
    await state.checkpoint("c", 6, {"at": 6})  # a new step, but not the highest
    assert await state.load("c") == {"at": 6}
    await state.checkpoint("c", 11, {"at": "again"})  # a stored step written again
    assert await state.load("c") == {"at": "again"}
    assert await steps(state, "c") == (11, 11)
    await state.checkpoint("c", 13, {"at": 13})  # above everything again
    assert await state.load("c") == {"at": 13}
    assert [c.step for c in await state.get_history("c")] == [5, 6, 10, 11, 12, 13]


async def test_snapshot_metrics_and_query_see_new_checkpoints(state: StateManager) -> None:
    await state.save("d", 1, {"at": 1})
    await state.checkpoint("d", 2, {"at": 2})
    await state.checkpoint("d", 3, {"at": 3})
    snapshot = await state.create_snapshot("d", "now")
    assert snapshot.step == 3
    await state.checkpoint("d", 4, {"at": 4})
    await state.restore_snapshot("d", "now")
    assert await state.load("d") == {"at": 3}
    assert (await state.get_metrics()).total_checkpoints == 4  # 2, 3, 4, and the restore's entry at 3
    [execution] = await state.query(limit=10)
    assert (execution.current_step, execution.last_checkpoint_step) == (3, 3)


async def test_retention_prunes_behind_new_checkpoints(make_state: MakeState) -> None:
    state = make_state(checkpoint_retention=3)
    for step in range(1, 9):
        await state.checkpoint("e", step, {"at": step})
    assert [c.step for c in await state.get_history("e")] == [6, 7, 8]
    assert [e.step for e in await state.get_audit("e") if e.kind == "checkpoint"] == list(range(1, 9))


async def test_a_new_checkpoint_is_liveness_for_recovery(make_state: MakeState) -> None:
    state = make_state(recovery_timeout=0.5)
    await state.checkpoint("f", 1, {"at": 1})
    await asyncio.sleep(0.7)  # the execution row's own write is now older than the timeout
    await state.checkpoint("f", 2, {"at": 2})
    assert await state.recover_all() == []  # the checkpoint just made keeps it alive
    await asyncio.sleep(0.7)
    [claimed] = await state.recover_all()
    assert (claimed.execution_id, claimed.attempt, claimed.last_checkpoint_step) == ("f", 2, 2)


async def test_an_old_attempt_cannot_add_new_checkpoints(state: StateManager) -> None:
    await state.checkpoint("g", 1, {"at": 1}, attempt=1)
    await state.checkpoint("g", 2, {"at": 2}, attempt=1)
    await state.start_execution("g", attempt=2)  # the replacement takes over
    with pytest.raises(StaleAttemptError):
        await state.checkpoint("g", 3, {"zombie": True}, attempt=1)
    await state.checkpoint("g", 3, {"at": 3}, attempt=2)
    await state.checkpoint("g", 4, {"at": 4}, attempt=2)
    with pytest.raises(StaleAttemptError):
        await state.checkpoint("g", 5, {"zombie": True}, attempt=1)
    assert await state.load("g") == {"at": 4}
    assert [c.attempt for c in await state.get_history("g")] == [1, 1, 2, 2]


async def test_a_completed_execution_stays_completed(state: StateManager) -> None:
    await state.checkpoint("h", 1, {"at": 1})
    await state.checkpoint("h", 2, {"at": 2})
    finished = await state.complete("h")
    assert (finished.status.value, finished.current_step) == ("completed", 2)
    await state.checkpoint("h", 3, {"late": True})
    execution = await state.get_execution("h")
    assert execution is not None
    assert (execution.status.value, execution.current_step) == ("completed", 3)
