"""The samples of shared/seed/state-management.md, as written, on both backends.

``seed_state(**kwargs)`` builds the StateManager the sample builds; on the memory leg the
``backend``/``db_url`` arguments are dropped, on the PostgreSQL leg ``db_url`` points at the test's
database. ``{...}`` placeholders of the page are filled with real dicts.
"""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from datetime import datetime
from typing import Any

import pytest

from stratarouter_runtime import StateManager

SeedState = Callable[..., StateManager]


@pytest.fixture
async def seed_state(backend: tuple[str, str | None]) -> AsyncIterator[SeedState]:
    name, dsn = backend
    made: list[StateManager] = []

    def factory(**kwargs: Any) -> StateManager:
        if name == "memory":
            kwargs.pop("backend", None)
            kwargs.pop("db_url", None)
        else:
            kwargs["backend"] = "postgresql"
            kwargs["db_url"] = dsn
        manager = StateManager(**kwargs)
        made.append(manager)
        return manager

    yield factory
    for manager in made:
        await manager.close()


async def test_quick_start(seed_state: SeedState) -> None:
    state = seed_state(backend="postgresql", db_url="postgresql://localhost/stratarouter")
    # Save state
    await state.save(execution_id="exec-123", step=5, state_data={"status": "processing", "progress": 50})
    # Load state
    state_data = await state.load("exec-123")
    assert state_data == {"status": "processing", "progress": 50}


async def test_configuration_and_automatic_checkpoints(seed_state: SeedState) -> None:
    state = seed_state(
        # Backend
        backend="postgresql",  # "postgresql" or "memory"
        db_url="postgresql://localhost/stratarouter",
        # Checkpointing
        checkpoint_interval=10,  # Steps between checkpoints
        checkpoint_retention=100,  # Max checkpoints to keep
        # Recovery
        enable_auto_recovery=True,
        recovery_timeout=300,
        # Optimization
        enable_compression=True,
        batch_writes=True,
    )
    ids = (f"wf-{n}" for n in itertools.count())

    def generate_id() -> str:
        return next(ids)

    async def execute_step(step: str) -> str:
        return step.upper()

    class Workflow:
        steps = [f"step-{n}" for n in range(25)]

    async def execute_workflow(workflow: Workflow) -> str:
        execution_id = generate_id()
        for step_num, step in enumerate(workflow.steps):
            # Execute step
            result = await execute_step(step)
            # Auto-checkpoint every 10 steps
            if step_num % 10 == 0:
                await state.checkpoint(
                    execution_id=execution_id,
                    step=step_num,
                    state_data={"current_step": step_num, "results": result, "status": "in_progress"},
                )
        return execution_id

    execution_id = await execute_workflow(Workflow())
    history = await state.get_history(execution_id)
    assert [c.step for c in history] == [0, 10, 20]
    assert history[-1].state_data == {"current_step": 20, "results": "STEP-20", "status": "in_progress"}


async def test_manual_checkpoints_and_best_practice(seed_state: SeedState) -> None:
    state = seed_state()
    initial_state = {"phase": "init"}
    updated_state = {"phase": "done"}

    async def critical_operation() -> str:
        return "ok"

    # Checkpoint at critical points
    await state.checkpoint("exec-manual", step=0, state_data=initial_state)
    # Execute critical operation
    result = await critical_operation()
    assert result == "ok"
    # Checkpoint after success
    await state.checkpoint("exec-manual", step=1, state_data=updated_state)

    exec_id, step, data = "exec-bp", 7, {"input": [1, 2, 3]}

    async def expensive_operation() -> int:
        return 42

    # Checkpoint before expensive operations
    await state.checkpoint(exec_id, step, data)
    expensive_result = await expensive_operation()
    await state.checkpoint(exec_id, step + 1, {**data, "result": expensive_result})
    assert await state.load(exec_id) == {"input": [1, 2, 3], "result": 42}
    assert [c.step for c in await state.get_history("exec-manual")] == [0, 1]


async def test_crash_recovery_samples(seed_state: SeedState) -> None:
    # On restart, automatically resume
    state_manager = seed_state(enable_auto_recovery=True)
    # Finds incomplete executions and resumes
    assert await state_manager.recover_all() == []

    state = state_manager
    await state.checkpoint("exec-123", step=3, state_data={"done": 3})
    await state.fail("exec-123", error="worker died")
    resumed: list[tuple[str, int | None]] = []

    async def resume_execution(execution_id: str, from_step: int | None) -> None:
        resumed.append((execution_id, from_step))

    # Get execution state
    execution = await state.get_execution("exec-123")
    assert execution is not None
    if execution.status == "failed":
        # Resume from last checkpoint
        await resume_execution(execution_id="exec-123", from_step=execution.last_checkpoint_step)
    assert resumed == [("exec-123", 3)]


async def test_audit_trail_samples(seed_state: SeedState, capsys: pytest.CaptureFixture[str]) -> None:
    state = seed_state()
    for step in range(2):
        await state.checkpoint("exec-123", step, {"n": step})
    await state.complete("exec-123")
    # Get complete execution history
    history = await state.get_history("exec-123")
    for checkpoint in history:
        print(f"Step {checkpoint.step}: {checkpoint.state_data}")
        print(f"Timestamp: {checkpoint.timestamp}")
    out = capsys.readouterr().out
    assert "Step 0: {'n': 0}" in out
    assert "Step 1: {'n': 1}" in out
    # Find executions by criteria
    executions = await state.query(
        status="completed", start_time=datetime(2026, 1, 1), end_time=datetime(2026, 1, 31)
    )
    assert executions == []  # created now, not in January 2026
    assert [
        e.execution_id for e in await state.query(status="completed", start_time=datetime(2026, 1, 1))
    ] == ["exec-123"]


async def test_transaction_samples(seed_state: SeedState) -> None:
    state = seed_state()
    async with state.transaction() as txn:
        # All or nothing
        await txn.save("exec-1", step=1, data={"a": 1})
        await txn.save("exec-2", step=1, data={"b": 1})
        # Automatically committed
    assert await state.load("exec-1") == {"a": 1}
    assert await state.load("exec-2") == {"b": 1}

    error = True
    async with state.transaction() as txn:
        await txn.save("exec-123", step=5, data={"c": 5})
        if error:
            await txn.rollback()
    assert await state.get_execution("exec-123") is None


async def test_snapshot_samples(seed_state: SeedState) -> None:
    state = seed_state()
    await state.save("exec-123", 4, {"before": True})
    # Save complete state snapshot
    await state.create_snapshot(execution_id="exec-123", snapshot_name="before_critical_step")
    await state.save("exec-123", 5, {"before": False})
    # Restore from snapshot
    await state.restore_snapshot(execution_id="exec-123", snapshot_name="before_critical_step")
    assert await state.load("exec-123") == {"before": True}


async def test_performance_and_monitoring_samples(seed_state: SeedState) -> None:
    # Buffer writes and flush periodically
    state = seed_state(batch_writes=True, batch_size=100, flush_interval_ms=1000)
    # Partition by date for better performance
    partitioned = seed_state(enable_partitioning=True, partition_by="month")
    for step in range(3):
        await state.checkpoint("exec-p", step, {"s": step})
    await partitioned.checkpoint("exec-q", 0, {"s": 0})

    metrics = await state.get_metrics()
    print(f"Total executions: {metrics.total_executions}")
    print(f"Active executions: {metrics.active_executions}")
    print(f"Checkpoints: {metrics.total_checkpoints}")
    print(f"Storage used: {metrics.storage_mb}MB")
    print(f"Avg checkpoint time: {metrics.avg_checkpoint_ms}ms")
    assert metrics.total_checkpoints >= 3
    alerts: list[str] = []

    def alert(message: str) -> None:
        alerts.append(message)

    # Alert if state storage grows too large
    if metrics.storage_mb > 10_000:
        alert("State storage exceeds 10GB")
    assert alerts == []

    await state.complete("exec-p")
    # Delete completed executions older than 30 days
    assert await state.cleanup(older_than_days=30, status="completed") == 0
