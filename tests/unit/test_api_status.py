"""The status coalescer's plan: at most one patch per interval per Execution, newest values win."""

from __future__ import annotations

import itertools
from datetime import UTC, datetime

from stratarouter_runtime.operator.api.status import CoalescePlan, LastCheckpoint

AT = datetime(2026, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
A = ("ns", "a")
B = ("ns", "b")


def cp(step: int) -> LastCheckpoint:
    return LastCheckpoint(step=step, at=AT, size_bytes=10 * step)


def test_status_shape() -> None:
    assert cp(3).to_status() == {"step": 3, "time": "2026-01-02T03:04:05Z", "sizeBytes": 30}


def test_first_checkpoint_goes_out_at_once() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, cp(1), now=100.0)
    assert plan.next_due() == 100.0
    assert plan.take_due(100.0) == [(A, cp(1))]
    assert plan.next_due() is None


def test_a_hundred_checkpoints_a_second_make_one_patch_a_second() -> None:
    plan = CoalescePlan(interval=1.0)
    sent: list[tuple[float, int]] = []
    now = 0.0
    for i in range(500):  # 5 s at 100 checkpoints/s, the flusher waking every 10 ms
        now = i / 100
        plan.note(A, cp(i), now)
        sent += [(now, v.step) for _, v in plan.take_due(now)]
    now = 10.0
    sent += [(now, v.step) for _, v in plan.take_due(now)]
    assert len(sent) <= 6
    assert sent[-1][1] == 499  # the newest step is what ends up in status
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(sent)]
    assert all(g >= 1.0 - 1e-9 for g in gaps)


def test_lower_step_never_replaces_a_pending_higher_one() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, cp(5), 0.0)
    plan.note(A, cp(4), 0.0)
    assert plan.take_due(0.0) == [(A, cp(5))]


def test_executions_are_independent() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, cp(1), 0.0)
    plan.take_due(0.0)
    plan.note(A, cp(2), 0.1)
    plan.note(B, cp(7), 0.1)
    assert plan.take_due(0.1) == [(B, cp(7))]
    assert plan.next_due() == 1.0
    assert plan.take_due(1.0) == [(A, cp(2))]


def test_take_all_flushes_everything() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, cp(1), 0.0)
    plan.take_due(0.0)
    plan.note(A, cp(2), 0.1)
    plan.note(B, cp(3), 0.1)
    assert sorted(plan.take_all()) == sorted([(A, cp(2)), (B, cp(3))])
    assert plan.next_due() is None


def test_take_one_serves_the_longest_due_with_its_newest_value() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, cp(1), 0.0)
    plan.note(B, cp(1), 0.5)
    plan.note(A, cp(9), 0.7)  # newer value while A waits for a free slot
    assert plan.take_one(0.8) == (A, cp(9))
    assert plan.take_one(0.8) == (B, cp(1))
    assert plan.take_one(0.8) is None
    plan.note(A, cp(10), 0.9)
    assert plan.take_one(1.5) is None  # A was sent at 0.8: not before 1.8
    assert plan.take_one(1.8) == (A, cp(10))


def test_sent_times_stay_bounded() -> None:
    plan = CoalescePlan(interval=1.0)
    for i in range(5000):
        plan.note(("ns", str(i)), cp(1), float(i))
        plan.take_due(float(i))
    assert len(plan._last_sent) <= 4 * 256 + 1
