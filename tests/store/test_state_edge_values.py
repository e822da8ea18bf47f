"""Edge values on both backends: the highest attempt, NUL characters and lone surrogates in text.

Every bad input gets an InvalidArgumentError naming the field, and writes nothing; both backends
answer alike (PostgreSQL used to answer with raw asyncpg errors, memory by storing the value).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

import pytest

from stratarouter_runtime import ExecutionStatus, InvalidArgumentError, StateManager
from stratarouter_runtime.state.validation import MAX_ATTEMPT
from tests.store.conftest import MakeState

Call = Callable[[StateManager], Awaitable[Any]]
TOO_HIGH = "attempt must be a positive int of at most 2147483647"


async def footprint(state: StateManager, execution_id: str = "run") -> tuple[Any, ...]:
    """Everything a refused call could have changed."""
    executions = await state.query(limit=100)
    known = {e.execution_id for e in executions}
    audit = await state.get_audit(execution_id) if execution_id in known else []
    history = await state.get_history(execution_id) if execution_id in known else []
    snapshots = await state.list_snapshots(execution_id)
    counts = await state.get_metrics()
    return executions, audit, history, snapshots, counts.total_checkpoints


async def in_transaction(state: StateManager, attempt: int) -> None:
    async with state.transaction() as txn:
        await txn.save("run", 2, {"s": 2}, attempt=attempt)


@pytest.mark.parametrize(
    "call",
    [
        pytest.param(lambda s: s.start_execution("new", attempt=MAX_ATTEMPT + 1), id="start"),
        pytest.param(lambda s: s.start_execution("run", attempt=MAX_ATTEMPT + 1), id="restart"),
        pytest.param(lambda s: s.save("run", 2, {"s": 2}, attempt=MAX_ATTEMPT + 1), id="save"),
        pytest.param(lambda s: s.checkpoint("new", 1, {"s": 1}, attempt=2**40), id="checkpoint"),
        pytest.param(lambda s: s.write("run", 2, {}, history=True, attempt=MAX_ATTEMPT + 1), id="write"),
        pytest.param(lambda s: in_transaction(s, MAX_ATTEMPT + 1), id="transaction"),
        pytest.param(lambda s: s.fail("run", "x", attempt=MAX_ATTEMPT + 1), id="fail"),
        pytest.param(lambda s: s.restore_snapshot("run", "snap", attempt=MAX_ATTEMPT + 1), id="restore"),
    ],
)
async def test_an_attempt_above_the_highest_is_refused_and_writes_nothing(
    make_state: MakeState, call: Call
) -> None:
    state = make_state()
    await state.checkpoint("run", 1, {"s": 1}, attempt=1)
    await state.create_snapshot("run", "snap")
    before = await footprint(state)
    with pytest.raises(InvalidArgumentError, match=TOO_HIGH):
        await call(state)
    assert await footprint(state) == before
    with pytest.raises(InvalidArgumentError, match=TOO_HIGH):
        make_state(attempt=MAX_ATTEMPT + 1)


async def test_the_highest_attempt_itself_is_usable(state: StateManager) -> None:
    started = await state.start_execution("top", attempt=MAX_ATTEMPT)
    assert started.attempt == MAX_ATTEMPT
    await state.checkpoint("top", 1, {"s": 1}, attempt=MAX_ATTEMPT)
    await state.save("top", 2, {"s": 2}, attempt=MAX_ATTEMPT)
    assert await state.load("top") == {"s": 2}
    assert (await state.complete("top", attempt=MAX_ATTEMPT)).attempt == MAX_ATTEMPT


async def test_recovery_fails_a_run_at_the_highest_attempt_and_still_claims_the_others(
    make_state: MakeState,
) -> None:
    state = make_state(recovery_timeout=0.2)
    await state.start_execution("top", attempt=MAX_ATTEMPT)
    await state.checkpoint("top", 3, {"s": 3}, attempt=MAX_ATTEMPT)
    for name in ("a", "b"):
        await state.checkpoint(name, 1, {"s": 1}, attempt=1)
    await asyncio.sleep(0.3)
    resumed: list[str] = []
    claimed = await state.recover_all(resume=lambda e: resumed.append(e.execution_id))
    assert sorted((e.execution_id, e.attempt, e.status) for e in claimed) == [
        ("a", 2, ExecutionStatus.RECOVERING),
        ("b", 2, ExecutionStatus.RECOVERING),
    ]
    assert sorted(resumed) == ["a", "b"]
    top = await state.get_execution("top")
    assert top is not None
    assert (top.status, top.attempt, top.current_step) == (ExecutionStatus.FAILED, MAX_ATTEMPT, 3)
    assert top.error is not None
    assert f"attempt {MAX_ATTEMPT} is the highest" in top.error
    assert top.finished_at is not None
    failed = [e for e in await state.get_audit("top") if e.kind == "failed"]
    assert [(e.step, e.attempt, e.detail) for e in failed] == [(3, MAX_ATTEMPT, {"error": top.error})]
    await asyncio.sleep(0.3)
    assert sorted(e.execution_id for e in await state.recover_all()) == ["a", "b"]  # not "top" again


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda s: s.fail("run", error="boom\x00tail"), r"error contains a NUL character \(\\x00\)"),
        (lambda s: s.fail("run", error="\udcff"), "error is not valid Unicode: a lone surrogate"),
        (lambda s: s.start_execution("new", labels={"k": "v\x00"}), r"labels\['k'\] contains a NUL"),
        (lambda s: s.start_execution("run", labels={"k\x00": "v"}), r"labels key 'k\\x00' contains a NUL"),
        (lambda s: s.start_execution("run", labels={"k": "\ud800"}), r"labels\['k'\] is not valid Unicode"),
        (lambda s: s.save("a\x00b", 1, {}), r"execution_id 'a\\x00b' contains control characters"),
        (lambda s: s.checkpoint("run\x00", 2, {}), "execution_id .* contains control characters"),
        (lambda s: s.create_snapshot("run", "s\x00"), "snapshot_name .* contains control characters"),
    ],
)
async def test_text_postgresql_cannot_store_is_refused_and_writes_nothing(
    state: StateManager, call: Call, message: str
) -> None:
    await state.start_execution("run", labels={"team": "ml"})
    await state.checkpoint("run", 1, {"s": 1})
    before = await footprint(state)
    with pytest.raises(InvalidArgumentError, match=message):
        await call(state)
    assert await footprint(state) == before


@pytest.mark.parametrize("compression", [False, True])
async def test_states_with_nul_characters_are_stored_faithfully(
    make_state: MakeState, compression: bool
) -> None:
    """States are stored as bytes, not jsonb: "\\u0000" in a state is data like any other."""
    state = make_state(enable_compression=compression, compression_threshold=64)
    value = {"k\x00ey": "v\x00al", "pad": "\x00" * 200, "list": ["\x00", 1]}
    await state.checkpoint("nul", 1, value)
    await state.save("nul", 2, {**value, "step": 2})  # a delta against step 1 with compression on
    assert await state.load("nul") == {**value, "step": 2}
    assert (await state.get_checkpoint("nul", 1)).state_data == value
    await state.create_snapshot("nul", "with-nul")
    assert await state.load_snapshot("nul", "with-nul") == {**value, "step": 2}
    restored = await state.restore_snapshot("nul", "with-nul")
    assert restored.state_data == {**value, "step": 2}
