"""One behaviour, two backends: every test here runs against memory and a real PostgreSQL."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta

import pytest

from stratarouter_runtime import (
    CheckpointNotFound,
    ExecutionNotFound,
    ExecutionStatus,
    InvalidArgumentError,
    InvalidStateError,
    SnapshotNotFound,
    StaleAttemptError,
    StateManager,
    StateTooLargeError,
)
from stratarouter_runtime.state.validation import MAX_LIMIT
from tests.store.conftest import MakeState


async def test_save_then_load_returns_the_newest_state(state: StateManager) -> None:
    await state.save("exec-1", 1, {"progress": 10})
    await state.save("exec-1", 2, {"progress": 20, "nested": {"list": [1, 2.5, None, True, "x"]}})
    assert await state.load("exec-1") == {"progress": 20, "nested": {"list": [1, 2.5, None, True, "x"]}}


async def test_unknown_execution_is_a_clear_error(state: StateManager) -> None:
    with pytest.raises(ExecutionNotFound, match="exec-missing"):
        await state.load("exec-missing")
    assert await state.get_execution("exec-missing") is None
    with pytest.raises(ExecutionNotFound):
        await state.get_history("exec-missing")
    with pytest.raises(ExecutionNotFound):
        await state.complete("exec-missing")


async def test_save_upserts_and_writes_history_every_interval(make_state: MakeState) -> None:
    state = make_state(checkpoint_interval=10)
    for step in range(25):
        await state.save("e", step, {"step": step})
    execution = await state.get_execution("e")
    assert execution is not None
    assert execution.status == ExecutionStatus.RUNNING
    assert (execution.current_step, execution.last_checkpoint_step, execution.attempt) == (24, 20, 1)
    assert [c.step for c in await state.get_history("e")] == [0, 10, 20]
    assert await state.load("e") == {"step": 24}


async def test_write_takes_the_callers_history_choice_over_the_interval(make_state: MakeState) -> None:
    state = make_state(checkpoint_interval=10)
    await state.write("w", 10, {"step": 10}, history=False)  # a save at an interval step: no history
    await state.write("w", 11, {"step": 11}, history=True)
    await state.write("w", 20, {"step": 20}, history=False)
    assert [c.step for c in await state.get_history("w")] == [11]
    assert await state.load("w") == {"step": 20}
    with pytest.raises(InvalidArgumentError):
        await state.write("w", -1, {}, history=True)


async def test_checkpoint_always_writes_history(state: StateManager) -> None:
    for step in (3, 7, 8):
        await state.checkpoint("e", step, {"s": step})
    history = await state.get_history("e")
    assert [(c.step, c.state_data, c.attempt) for c in history] == [
        (3, {"s": 3}, 1),
        (7, {"s": 7}, 1),
        (8, {"s": 8}, 1),
    ]
    assert all(c.size_bytes == len(b'{"s":3}') and c.timestamp.tzinfo for c in history)
    latest = await state.get_latest_checkpoint("e")
    assert latest is not None
    assert latest.step == 8
    assert (await state.get_checkpoint("e", 7)).state_data == {"s": 7}
    with pytest.raises(CheckpointNotFound):
        await state.get_checkpoint("e", 5)


async def test_rewriting_a_step_is_idempotent(state: StateManager) -> None:
    await state.checkpoint("e", 1, {"v": "first"})
    await state.checkpoint("e", 1, {"v": "second"})
    history = await state.get_history("e")
    assert [(c.step, c.state_data) for c in history] == [(1, {"v": "second"})]


async def test_history_keyset_pagination(state: StateManager) -> None:
    for step in range(25):
        await state.checkpoint("e", step, {"s": step})
    pages, after = [], None
    while page := await state.get_history("e", after_step=after, limit=10):
        pages.append([c.step for c in page])
        after = page[-1].step
    assert pages == [list(range(10)), list(range(10, 20)), list(range(20, 25))]


async def test_history_without_limit_is_complete(make_state: MakeState) -> None:
    """The seed's ``get_history(id)`` is the *complete* history, even past one page of the backend."""
    state = make_state(batch_writes=True, batch_size=1000)
    steps = range(MAX_LIMIT + 5)
    for step in steps:
        await state.checkpoint("long", step, {"s": step})
    history = await state.get_history("long")
    assert [c.step for c in history] == list(steps)
    assert len(await state.get_history("long", limit=7)) == 7


async def test_lifecycle_statuses(state: StateManager) -> None:
    started = await state.start_execution("a", labels={"team": "ml"})
    assert started.status == ExecutionStatus.RUNNING
    assert started.labels == {"team": "ml"}
    await state.save("a", 1, {})
    done = await state.complete("a")
    assert done.status == ExecutionStatus.COMPLETED
    assert done.finished_at is not None
    await state.save("b", 1, {})
    failed = await state.fail("b", error="boom")
    assert (failed.status, failed.error) == (ExecutionStatus.FAILED, "boom")
    await state.save("c", 1, {})
    assert (await state.cancel("c")).status == ExecutionStatus.CANCELLED
    restarted = await state.start_execution("b", attempt=2)
    assert (restarted.status, restarted.attempt, restarted.error, restarted.finished_at) == (
        ExecutionStatus.RUNNING,
        2,
        None,
        None,
    )
    kinds = [e.kind for e in await state.get_audit("b")]
    assert kinds == ["failed", "started"]


async def test_query_by_status_and_time(state: StateManager) -> None:
    for name in ("q1", "q2", "q3"):
        await state.save(name, 1, {})
    await state.complete("q2")
    running = await state.query(status="running")
    assert [e.execution_id for e in running] == ["q1", "q3"]
    assert [e.execution_id for e in await state.query(status=ExecutionStatus.COMPLETED)] == ["q2"]
    assert [e.execution_id for e in await state.query(status=["completed", "running"], limit=2)] == [
        "q1",
        "q2",
    ]
    now = datetime.now(UTC)
    naive_future = (now + timedelta(days=1)).replace(tzinfo=None)
    assert len(await state.query(start_time=now - timedelta(hours=1), end_time=naive_future)) == 3
    assert await state.query(start_time=naive_future) == []
    assert await state.query(end_time=datetime(2000, 1, 1)) == []
    with pytest.raises(InvalidArgumentError, match="unknown status 'finished'"):
        await state.query(status="finished")
    with pytest.raises(ValueError, match="limit"):
        await state.query(limit=0)


async def test_transaction_commits_all(state: StateManager) -> None:
    async with state.transaction() as txn:
        await txn.save("t1", step=1, data={"a": 1})
        await txn.save("t2", step=1, state_data={"b": 2})
        await txn.checkpoint("t2", 2, {"b": 3})
    assert await state.load("t1") == {"a": 1}
    assert await state.load("t2") == {"b": 3}
    assert [c.step for c in await state.get_history("t2")] == [2]


async def test_transaction_rollback_and_exception_discard_everything(state: StateManager) -> None:
    async with state.transaction() as txn:
        await txn.save("r1", step=5, data={"x": 1})
        await txn.rollback()
    with pytest.raises(RuntimeError, match="inside"):  # noqa: PT012  # the block is the subject
        async with state.transaction() as txn:
            await txn.save("r2", step=1, data={"x": 1})
            raise RuntimeError("inside")
    assert await state.get_execution("r1") is None
    assert await state.get_execution("r2") is None


async def test_transaction_is_all_or_nothing_when_one_write_is_fenced(state: StateManager) -> None:
    await state.start_execution("fenced", attempt=3)
    await state.save("other", 1, {"v": "before"})
    with pytest.raises(StaleAttemptError):  # noqa: PT012  # fencing surfaces at commit
        async with state.transaction() as txn:
            await txn.save("other", 2, {"v": "after"})
            await txn.save("fenced", 1, {"v": 1}, attempt=2)
    assert await state.load("other") == {"v": "before"}
    with pytest.raises(ExecutionNotFound):
        await state.load("fenced")


async def test_transaction_refuses_bad_state_at_once(state: StateManager) -> None:
    async with state.transaction() as txn:
        with pytest.raises(InvalidStateError, match=r'state_data\["when"\]'):
            await txn.save("bad", 1, {"when": datetime.now()})
        with pytest.raises(InvalidArgumentError, match="not both"):
            await txn.save("bad", 1, {"a": 1}, state_data={"a": 2})
    assert await state.get_execution("bad") is None


async def test_fencing_refuses_stale_attempts(state: StateManager) -> None:
    await state.start_execution("f")
    await state.save("f", 1, {"by": "attempt-1"}, attempt=1)
    bumped = await state.start_execution("f", attempt=2)
    assert bumped.attempt == 2
    with pytest.raises(StaleAttemptError, match="attempt 1 is stale, the current attempt is 2") as info:
        await state.checkpoint("f", 2, {"by": "zombie"}, attempt=1)
    assert (info.value.attempt, info.value.current_attempt) == (1, 2)
    assert await state.load("f") == {"by": "attempt-1"}
    await state.save("f", 2, {"by": "attempt-2"}, attempt=2)
    await state.save("f", 3, {"by": "attempt-2"})  # no attempt: the one this manager started (2)
    assert (await state.start_execution("f", attempt=1)).attempt == 2  # never lowers
    await state.save("f", 4, {"by": "attempt-5"}, attempt=5)  # a newer attempt raises it
    assert (await state.get_execution("f")).attempt == 5  # type: ignore[union-attr]
    with pytest.raises(StaleAttemptError):
        await state.complete("f", attempt=4)


async def test_writes_use_the_managers_attempt(make_state: MakeState) -> None:
    first = make_state()
    await first.start_execution("m", attempt=2)
    zombie = make_state(attempt=1)
    zombie.attempt = 1
    with pytest.raises(StaleAttemptError):
        await zombie.save("m", 1, {})


async def test_snapshots_copy_restore_and_outlive_retention(make_state: MakeState) -> None:
    state = make_state(checkpoint_retention=2)
    for step in range(3):
        await state.checkpoint("s", step, {"s": step})
    snap = await state.create_snapshot("s", "before_critical_step")
    assert (snap.name, snap.execution_id, snap.step) == ("before_critical_step", "s", 2)
    by_step = await state.create_snapshot("s", "at-1", step=1)
    assert by_step.step == 1
    for step in range(3, 8):
        await state.checkpoint("s", step, {"s": step})
    assert [c.step for c in await state.get_history("s")] == [6, 7]
    assert [s.name for s in await state.list_snapshots("s")] == ["before_critical_step", "at-1"]
    restored = await state.restore_snapshot("s", "before_critical_step")
    assert (restored.step, restored.state_data) == (2, {"s": 2})
    assert await state.load("s") == {"s": 2}
    assert [c.step for c in await state.get_history("s")] == [2]
    assert (await state.get_execution("s")).last_checkpoint_step == 2  # type: ignore[union-attr]
    kinds = [e.kind for e in await state.get_audit("s")]
    assert kinds[-2:] == ["checkpoint", "restore"]
    assert kinds.count("snapshot") == 2
    assert (await state.get_snapshot("s", "at-1")).step == 1  # type: ignore[union-attr]
    assert await state.load_snapshot("s", "at-1") == {"s": 1}
    assert await state.delete_snapshot("s", "at-1") is True
    assert await state.delete_snapshot("s", "at-1") is False
    assert await state.get_snapshot("s", "at-1") is None
    with pytest.raises(SnapshotNotFound):
        await state.restore_snapshot("s", "at-1")
    with pytest.raises(CheckpointNotFound):
        await state.create_snapshot("s", "pruned", step=0)


async def test_retention_prunes_state_but_the_audit_keeps_every_checkpoint(make_state: MakeState) -> None:
    state = make_state(checkpoint_retention=3)
    for step in range(10):
        await state.checkpoint("r", step, {"s": step, "pad": "x" * step})
    assert [c.step for c in await state.get_history("r")] == [7, 8, 9]
    audit = [e for e in await state.get_audit("r") if e.kind == "checkpoint"]
    assert [e.step for e in audit] == list(range(10))
    assert all(e.size_bytes and e.hash and len(e.hash) == 64 for e in audit)
    assert audit[0].size_bytes == len(b'{"s":0,"pad":""}')
    custom = await state.start_execution("r2", checkpoint_retention=1)
    assert custom.checkpoint_retention == 1
    for step in range(4):
        await state.checkpoint("r2", step, {})
    assert [c.step for c in await state.get_history("r2")] == [3]


async def test_a_retention_set_by_another_manager_is_honoured(make_state: MakeState) -> None:
    operator_side = make_state()
    await operator_side.start_execution("pod-run", checkpoint_retention=2)
    pod_side = make_state()  # knows nothing about that retention
    for step in range(6):
        await pod_side.checkpoint("pod-run", step, {"s": step})
    assert [c.step for c in await pod_side.get_history("pod-run")] == [4, 5]
    batched = make_state(batch_writes=True, batch_size=3)
    for step in range(6, 12):
        await batched.checkpoint("pod-run", step, {"s": step})
    await batched.flush()
    assert [c.step for c in await batched.get_history("pod-run")] == [10, 11]


async def test_batch_writes_are_buffered_and_flushed(make_state: MakeState) -> None:
    state = make_state(batch_writes=True, batch_size=5, flush_interval_ms=60_000)
    observer = make_state()
    for step in range(3):
        await state.checkpoint("b", step, {"s": step})
    assert await observer.get_execution("b") is None  # buffered, not yet written
    await state.flush()
    assert await observer.load("b") == {"s": 2}
    for step in range(3, 8):  # the 5th buffered write fills the batch and flushes it
        await state.checkpoint("b", step, {"s": step})
    assert (await observer.get_execution("b")).current_step == 7  # type: ignore[union-attr]
    await state.save("b", 8, {"s": 8})
    assert await state.load("b") == {"s": 8}  # reads see the manager's own buffered writes
    await state.save("b", 9, {"s": 9})
    await state.close()  # a clean close loses nothing
    assert await observer.load("b") == {"s": 9}
    assert [c.step for c in await observer.get_history("b")] == list(range(8))


async def test_a_flushed_batch_keeps_retention_audit_and_fencing(make_state: MakeState) -> None:
    state = make_state(batch_writes=True, batch_size=100, flush_interval_ms=60_000, checkpoint_retention=3)
    await state.start_execution("old", attempt=2)
    for step in range(10):
        await state.checkpoint("kept", step, {"s": step})
        await state.save("saved", step, {"s": step})
    await state.checkpoint("kept", 9, {"s": "9 again"})
    await state.flush()
    assert [c.step for c in await state.get_history("kept")] == [7, 8, 9]
    assert (await state.get_history("kept"))[-1].state_data == {"s": "9 again"}
    audit = [e.step for e in await state.get_audit("kept") if e.kind == "checkpoint"]
    assert audit == [*range(10), 9]
    assert await state.load("saved") == {"s": 9}
    assert [c.step for c in await state.get_history("saved")] == [0]
    execution = await state.get_execution("kept")
    assert execution is not None
    assert (execution.current_step, execution.last_checkpoint_step) == (9, 9)
    await state.save("saved", 10, {"s": 10}, attempt=1)
    await state.save("old", 1, {"zombie": True}, attempt=1)
    with pytest.raises(StaleAttemptError):
        await state.flush()
    assert await state.load("saved") == {"s": 10}  # only the fenced write was refused
    with pytest.raises(ExecutionNotFound):
        await state.load("old")


async def test_a_transaction_of_many_writes_to_one_execution(make_state: MakeState) -> None:
    state = make_state(checkpoint_retention=2)
    async with state.transaction() as txn:
        for step in range(5):
            await txn.checkpoint("many", step, {"s": step})
    assert await state.load("many") == {"s": 4}
    assert [c.step for c in await state.get_history("many")] == [3, 4]
    assert len([e for e in await state.get_audit("many") if e.kind == "checkpoint"]) == 5


async def test_batch_writes_flush_on_the_interval(make_state: MakeState) -> None:
    state = make_state(batch_writes=True, batch_size=1000, flush_interval_ms=50)
    observer = make_state()
    await state.save("timed", 1, {"v": 1})
    for _ in range(100):
        if await observer.get_execution("timed") is not None:
            break
        await asyncio.sleep(0.05)
    assert await observer.load("timed") == {"v": 1}


async def test_batched_writes_are_concurrency_safe(make_state: MakeState) -> None:
    state = make_state(batch_writes=True, batch_size=7, flush_interval_ms=20)

    async def writer(n: int) -> None:
        for step in range(20):
            await state.checkpoint(f"w{n}", step, {"n": n, "step": step})

    await asyncio.gather(*(writer(n) for n in range(10)))
    await state.flush()
    for n in range(10):
        assert await state.load(f"w{n}") == {"n": n, "step": 19}
        assert len(await state.get_history(f"w{n}")) == 20


async def test_concurrent_durable_writers(state: StateManager) -> None:
    async def writer(n: int) -> None:
        for step in range(10):
            await state.checkpoint(f"c{n % 8}", n * 10 + step, {"n": n, "step": step})

    await asyncio.gather(*(writer(n) for n in range(32)))
    total = sum([len(await state.get_history(f"c{i}")) for i in range(8)])
    assert total == 320
    metrics = await state.get_metrics()
    assert metrics.total_checkpoints == 320
    assert metrics.total_executions == 8


async def test_compression_is_transparent(make_state: MakeState) -> None:
    state = make_state(enable_compression=True, compression_threshold=100)
    big = {"rows": [{"id": i, "text": "the same words again " * 5} for i in range(200)]}
    await state.checkpoint("z", 1, big)
    await state.checkpoint("z", 2, {"small": True})
    assert await state.load("z") == {"small": True}
    history = await state.get_history("z")
    assert history[0].state_data == big
    assert history[0].size_bytes > 20_000  # size is the JSON's, before compression
    snap = await state.create_snapshot("z", "big", step=1)
    await state.restore_snapshot("z", "big")
    assert await state.load("z") == big
    assert snap.size_bytes == history[0].size_bytes


async def test_metrics(state: StateManager) -> None:
    for step in range(3):
        await state.checkpoint("m1", step, {"s": step})
    await state.save("m2", 1, {})
    await state.complete("m2")
    metrics = await state.get_metrics()
    assert (metrics.total_executions, metrics.active_executions, metrics.total_checkpoints) == (2, 1, 3)
    assert metrics.storage_mb >= 0
    assert metrics.avg_checkpoint_ms > 0


async def test_cleanup_removes_old_finished_executions(state: StateManager) -> None:
    for name in ("done", "failed", "live"):
        await state.checkpoint(name, 1, {})
    await state.create_snapshot("done", "keep-me-not")
    await state.complete("done")
    await state.fail("failed", error="x")
    assert await state.cleanup(older_than_days=30, status="completed") == 0  # too recent
    assert await state.cleanup(older_than_days=0, status="completed") == 1
    assert await state.get_execution("done") is None
    assert await state.list_snapshots("done") == []
    assert await state.get_execution("failed") is not None
    assert await state.cleanup(older_than_days=0) == 1  # every final status by default
    assert [e.execution_id for e in await state.query()] == ["live"]
    with pytest.raises(InvalidArgumentError, match="not final"):
        await state.cleanup(older_than_days=0, status="running")


async def test_delete_execution(state: StateManager) -> None:
    await state.checkpoint("d", 1, {"v": 1})
    await state.create_snapshot("d", "snap")
    assert await state.delete_execution("d", keep_snapshots=True) is True
    assert await state.get_execution("d") is None
    assert [s.name for s in await state.list_snapshots("d")] == ["snap"]
    restored = await state.restore_snapshot("d", "snap")  # a kept snapshot brings the execution back
    assert restored.state_data == {"v": 1}
    assert await state.delete_execution("d") is True
    assert await state.list_snapshots("d") == []
    assert await state.delete_execution("d") is False


async def test_recover_all_claims_stalled_runs_and_fences_them(make_state: MakeState) -> None:
    state = make_state(recovery_timeout=0.2)
    patient = make_state(recovery_timeout=3600)  # same store, an hour's patience: sees nothing stalled
    await state.checkpoint("stalled", 4, {"at": 4}, attempt=1)
    await state.checkpoint("finished", 1, {})
    await state.complete("finished")
    assert await patient.recover_all() == []
    await asyncio.sleep(0.3)
    seen: list[str] = []

    async def resume(execution: object) -> None:
        seen.append(execution.execution_id)  # type: ignore[attr-defined]

    recovered = await state.recover_all(resume=resume)
    assert [(e.execution_id, e.status, e.attempt, e.last_checkpoint_step) for e in recovered] == [
        ("stalled", ExecutionStatus.RECOVERING, 2, 4)
    ]
    assert seen == ["stalled"]
    assert await patient.recover_all(resume=seen.append) == []  # claimed just now: not idle any more
    with pytest.raises(StaleAttemptError):
        await state.save("stalled", 5, {"at": "zombie"}, attempt=1)
    await state.save("stalled", 5, {"at": 5}, attempt=2)
    assert (await state.get_execution("stalled")).status == ExecutionStatus.RUNNING  # type: ignore[union-attr]
    assert "recovering" in [e.kind for e in await state.get_audit("stalled")]


async def test_auto_recovery_sweeps_in_the_background(make_state: MakeState) -> None:
    seen: list[tuple[str, int]] = []
    writer = make_state()
    await writer.checkpoint("swept", 1, {"v": 1})
    sweeper = make_state(
        enable_auto_recovery=True,
        recovery_timeout=0.2,
        on_recover=lambda e: seen.append((e.execution_id, e.attempt)),
    )
    async with sweeper:
        for _ in range(100):
            if seen:
                break
            await asyncio.sleep(0.05)
    assert seen[0] == ("swept", 2)


@pytest.mark.parametrize(
    ("call", "error", "message"),
    [
        (lambda s: s.save("", 1, {}), InvalidArgumentError, "execution_id must be 1 to 253"),
        (lambda s: s.save("x" * 254, 1, {}), InvalidArgumentError, "execution_id must be 1 to 253"),
        (lambda s: s.save(42, 1, {}), InvalidArgumentError, "execution_id must be a str"),
        (lambda s: s.save("ok", -1, {}), InvalidArgumentError, "step must be between 0"),
        (lambda s: s.save("ok", 1.5, {}), InvalidArgumentError, "step must be an int"),
        (lambda s: s.save("ok", 1, {}, attempt=0), InvalidArgumentError, "attempt must be a positive int"),
        (
            lambda s: s.save("ok", 1, {"items": [1, 2, 3, {"when": datetime.now()}]}),
            InvalidStateError,
            r'state_data\["items"\]\[3\]\["when"\]: value of type datetime',
        ),
        (lambda s: s.save("ok", 1, {"x": float("nan")}), InvalidStateError, r'state_data\["x"\]: nan'),
        (lambda s: s.save("ok", 1, {1: "int key"}), InvalidStateError, "JSON keys must be str"),
        (lambda s: s.save("ok", 1, {"blob": "x" * 2000}), StateTooLargeError, "over the limit of 1000"),
        (lambda s: s.create_snapshot("ok", ""), InvalidArgumentError, "snapshot_name"),
        (lambda s: s.get_history("ok", after_step=-5), InvalidArgumentError, "after_step"),
    ],
)
async def test_bad_input_is_refused_and_nothing_is_written(
    make_state: MakeState, call: object, error: type[Exception], message: str
) -> None:
    state = make_state(max_state_bytes=1000)
    with pytest.raises(error, match=message):
        await call(state)  # type: ignore[operator]
    assert await state.query() == []


def test_unknown_backend_and_options_are_refused() -> None:
    with pytest.raises(InvalidArgumentError, match="unknown backend 'mongo'"):
        StateManager(backend="mongo")
    with pytest.raises(InvalidArgumentError, match="unknown StateManager option"):
        StateManager(checkpoint_intervall=3)
    with pytest.raises(InvalidArgumentError, match="checkpoint_interval"):
        StateManager(checkpoint_interval=0)
