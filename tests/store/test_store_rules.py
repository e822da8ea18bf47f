"""The rules every backend applies in several places, one test each, over memory and PostgreSQL.

Each rule is defined once (backends/base.py, state/retention.py; PostgreSQL's statements call the
same rules as SQL functions, checked against the Python ones below). Each test drives the rule
through every write path a backend has: a single write, a rewrite of a step, a batch flush, a
transaction, a restore, and PostgreSQL's delta save.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import pytest

from stratarouter_runtime import ExecutionStatus, StaleAttemptError
from stratarouter_runtime.state import retention
from stratarouter_runtime.state.backends.base import admits, status_after_write
from stratarouter_runtime.state.migrations import connect, migrate
from tests.store.conftest import MakeState

Write = Callable[[MakeState, str, int, int | None], Awaitable[None]]
BIG = {"transcript": ["a message of some length " * 8 for _ in range(40)]}


async def _checkpoint(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    await make_state().checkpoint(key, step, {"at": step}, attempt=attempt)


async def _save(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    await make_state().save(key, step, {"at": step}, attempt=attempt)


async def _delta_save(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    """A large save after a checkpoint by the same manager (PostgreSQL stores it as a delta)."""
    state = make_state(enable_compression=True, compression_threshold=64, group_commit=False)
    await state.checkpoint(key, step, BIG, attempt=attempt)
    await state.save(key, step + 1, {**BIG, "at": step + 1}, attempt=attempt)


async def _batch(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    state = make_state(batch_writes=True, batch_size=100, flush_interval_ms=60_000)
    await state.save(key, step, {"at": step}, attempt=attempt)
    await state.checkpoint(key, step + 1, {"at": step + 1}, attempt=attempt)
    await state.flush()


async def _transaction(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    async with make_state().transaction() as txn:
        await txn.checkpoint(key, step, {"at": step}, attempt=attempt)
        await txn.save(key, step + 1, {"at": step + 1}, attempt=attempt)


async def _rewrite(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    """A checkpoint at a step stored already (the execution's first step, 0)."""
    await make_state().checkpoint(key, 0, {"at": 0, "again": step}, attempt=attempt)


async def _restore(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    state = make_state()
    await state.create_snapshot(key, f"snap-{step}", step=0)
    await state.restore_snapshot(key, f"snap-{step}", attempt=attempt)


async def _finish(make_state: MakeState, key: str, step: int, attempt: int | None) -> None:
    await make_state().fail(key, "stopped", attempt=attempt)


WRITES: dict[str, Write] = {
    "checkpoint": _checkpoint,
    "save": _save,
    "delta save": _delta_save,
    "batch": _batch,
    "transaction": _transaction,
    "rewrite": _rewrite,
    "restore": _restore,
}


@pytest.mark.parametrize("how", [*WRITES, "finish"])
async def test_fencing_admits_the_stored_attempt_and_newer_ones_and_refuses_older(
    make_state: MakeState, how: str
) -> None:
    call = WRITES.get(how, _finish)
    await make_state().checkpoint("fenced", 0, {"at": 0}, attempt=2)
    with pytest.raises(StaleAttemptError) as refused:
        await call(make_state, "fenced", 10, 1)
    assert (refused.value.attempt, refused.value.current_attempt) == (1, 2)
    observer = make_state()
    assert await observer.load("fenced") == {"at": 0}  # a refused call changed nothing
    assert [c.step for c in await observer.get_history("fenced")] == [0]
    await call(make_state, "fenced", 20, 2)  # the stored attempt
    await call(make_state, "fenced", 30, 3)  # a newer one, which a write then makes the stored one
    newest = 2 if how == "finish" else 3
    assert (await observer.get_execution("fenced")).attempt == newest  # type: ignore[union-attr]
    with pytest.raises(StaleAttemptError):
        await call(make_state, "fenced", 40, newest - 1)


@pytest.mark.parametrize("how", WRITES)
async def test_a_write_makes_a_recovering_execution_running_and_leaves_a_final_status(
    make_state: MakeState, how: str
) -> None:
    sweeper = make_state(recovery_timeout=0.1)
    await sweeper.checkpoint("claimed", 0, {"at": 0})
    await asyncio.sleep(0.2)
    [claimed] = await sweeper.recover_all()
    assert claimed.status == ExecutionStatus.RECOVERING
    await WRITES[how](make_state, "claimed", 10, claimed.attempt)
    observer = make_state()
    assert (await observer.get_execution("claimed")).status == ExecutionStatus.RUNNING  # type: ignore[union-attr]
    await observer.complete("claimed")
    await WRITES[how](make_state, "claimed", 20, None)
    assert (await observer.get_execution("claimed")).status == ExecutionStatus.COMPLETED  # type: ignore[union-attr]


def _kept(steps: list[int], keep: int) -> list[int]:
    """The history the retention rule leaves after writing ``steps`` in order."""
    kept: set[int] = set()
    for step in steps:
        kept.add(step)
        kept -= set(retention.steps_to_prune(kept, step, keep))
    return sorted(kept)


STEPS = [0, 1, 2, 3, 4, 5, 2, 7, 7, 3, 8]
"""New steps, a rewind (2, then 3), a rewrite (7)."""


@pytest.mark.parametrize("how", ["one by one", "batch", "transaction", "own retention", "restore"])
async def test_retention_keeps_the_written_checkpoint_and_the_newest_others(
    make_state: MakeState, how: str
) -> None:
    keep = 3
    if how == "own retention":  # the execution's own retention wins over the manager's (none)
        await make_state().start_execution("kept", checkpoint_retention=keep)
    state = make_state(
        checkpoint_retention=None if how == "own retention" else keep,
        batch_writes=how == "batch",
        batch_size=1000,
        flush_interval_ms=60_000,
    )
    if how == "transaction":
        async with state.transaction() as txn:
            for step in STEPS:
                await txn.checkpoint("kept", step, {"at": step})
    else:
        for step in STEPS:
            await state.checkpoint("kept", step, {"at": step})
        await state.flush()
    expected = _kept(STEPS, keep)
    if how == "restore":
        await state.create_snapshot("kept", "low", step=expected[0])
        await state.restore_snapshot("kept", "low")
        expected = expected[:1]  # a rewind: the steps after the snapshot's are dropped
    assert [c.step for c in await state.get_history("kept")] == expected


async def test_the_audit_trail_has_one_checkpoint_event_per_checkpoint_ever_written(
    make_state: MakeState,
) -> None:
    state = make_state(checkpoint_retention=2)
    batched = make_state(checkpoint_retention=2, batch_writes=True, batch_size=1000, flush_interval_ms=60_000)
    written: list[int] = []
    for step in STEPS:  # pruned, rewritten and rewound checkpoints
        await state.checkpoint("audited", step, {"at": step})
        written.append(step)
    for step in (9, 9, 10):  # a batch rewriting its own step
        await batched.checkpoint("audited", step, {"at": step})
        written.append(step)
    await batched.flush()
    await state.create_snapshot("audited", "s")
    await state.restore_snapshot("audited", "s")
    written.append(10)
    audit = await state.get_audit("audited")
    assert [e.step for e in audit if e.kind == "checkpoint"] == written
    assert [e.seq for e in audit] == sorted({e.seq for e in audit})  # one order, no duplicates


async def test_the_checkpoint_count_is_the_number_of_checkpoints_ever_written(make_state: MakeState) -> None:
    state = make_state(checkpoint_retention=2)
    for step in STEPS:
        await state.checkpoint("counted", step, {"at": step})
    await state.save("counted", 21, {"at": 21})  # a save (off the interval) is no checkpoint
    await state.checkpoint("other", 0, {})
    assert (await state.get_metrics()).total_checkpoints == len(STEPS) + 1
    await state.delete_execution("other")
    assert (await state.get_metrics()).total_checkpoints == len(STEPS)


@pytest.mark.postgres
async def test_the_sql_rules_are_the_python_rules(pg_dsn: str) -> None:
    conn = await connect(pg_dsn)
    try:
        await migrate(conn)
        for stored in (1, 2, 3):
            for writer in (None, 1, 2, 3):
                sql = await conn.fetchval("SELECT strata_admits($1, $2)", stored, writer)
                assert sql is admits(stored, writer), (stored, writer)
        for status in ExecutionStatus:
            sql = await conn.fetchval("SELECT strata_status_after_write($1)", status.value)
            assert sql == status_after_write(status).value, status
    finally:
        await conn.close()


def test_the_python_rules() -> None:
    assert [admits(2, w) for w in (None, 1, 2, 3)] == [True, False, True, True]
    assert status_after_write(ExecutionStatus.PENDING) == ExecutionStatus.RUNNING
    assert status_after_write(ExecutionStatus.RECOVERING) == ExecutionStatus.RUNNING
    assert status_after_write(ExecutionStatus.FAILED) == ExecutionStatus.FAILED
