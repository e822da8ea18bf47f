"""Retention math: which checkpoints a write prunes, and which saves are history steps."""

from __future__ import annotations

import pytest

from stratarouter_runtime.state.retention import is_history_step, steps_to_prune


def test_keep_none_keeps_everything() -> None:
    assert steps_to_prune(range(100), 100, None) == []


def test_keeps_the_new_step_and_the_highest_others() -> None:
    assert steps_to_prune([0, 1, 2, 3], 4, 3) == [0, 1]
    assert steps_to_prune([0, 1, 2, 3, 4], 4, 3) == [0, 1]  # rewriting step 4 counts once
    assert steps_to_prune([5, 6, 7], 2, 2) == [5, 6]  # a step going back still stays itself
    assert steps_to_prune([0, 1], 2, 1) == [0, 1]
    assert steps_to_prune([], 0, 1) == []


def test_keep_must_be_positive() -> None:
    with pytest.raises(ValueError, match="at least one"):
        steps_to_prune([1], 2, 0)


@pytest.mark.parametrize(
    ("step", "interval", "expected"), [(0, 10, True), (9, 10, False), (20, 10, True), (3, 1, True)]
)
def test_history_steps(step: int, interval: int, expected: bool) -> None:
    assert is_history_step(step, interval) is expected
