"""How a batch of writes is folded into the arrays of the set-based PostgreSQL statement (no I/O)."""

from __future__ import annotations

from stratarouter_runtime.state.backends.base import WriteOp
from stratarouter_runtime.state.backends.postgres import _batch_args
from stratarouter_runtime.state.codec import StateCodec

CODEC = StateCodec()


def op(
    execution_id: str,
    step: int,
    *,
    history: bool = True,
    attempt: int | None = None,
    must_exist: bool = False,
) -> WriteOp:
    return WriteOp(execution_id, step, CODEC.encode({"s": step}), attempt, history, 5, must_exist)


def test_one_row_per_execution_with_its_last_write_and_every_history_write() -> None:
    args = _batch_args([op("a", 1), op("b", 1, history=False), op("a", 2, history=False), op("a", 3)])
    assert args is not None
    ids, steps, attempts, _, _, _, _, hist_steps = args[:8]
    assert (ids, steps, attempts) == (["a", "b"], [3, 1], [None, None])
    assert hist_steps == [3, None]
    h_ids, h_steps = args[8], args[9]
    assert (h_ids, h_steps) == (["a", "a"], [1, 3])
    assert args[14] == 5  # the manager's retention
    assert args[15] == [False, False]  # must_exist, per execution


def test_mixed_attempts_of_one_execution_fall_back_to_write_by_write() -> None:
    assert _batch_args([op("a", 1, attempt=1), op("a", 2, attempt=2)]) is None
    assert _batch_args([op("a", 1), op("a", 2, attempt=2)]) is None
    assert _batch_args([op("a", 1, attempt=1), op("b", 2, attempt=2)]) is not None
    assert _batch_args([op("a", 1, must_exist=True), op("a", 2)]) is None  # one by one, each its own rule
    folded = _batch_args([op("a", 1, must_exist=True), op("b", 2)])
    assert folded is not None
    assert folded[15] == [True, False]
