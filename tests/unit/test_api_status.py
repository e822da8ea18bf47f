"""The status coalescer: at most one patch per interval per Execution, newest values win, and at most
a budget of patches a second for the whole process, shared fairly (lag ≈ Executions / budget).

The coalescer itself runs on a simulated clock (an event loop whose sleeps take no real time) with a
fake API that records each patch: no I/O.
"""

from __future__ import annotations

import asyncio
import bisect
import itertools
import selectors
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import orjson
import pytest

from stratarouter_runtime.operator.api.status import (
    CoalescePlan,
    Key,
    LastCheckpoint,
    StatusCoalescer,
    TokenBucket,
)
from stratarouter_runtime.operator.metrics import REGISTRY

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


def test_a_newer_attempts_checkpoint_replaces_a_pending_higher_step_and_an_older_ones_is_dropped() -> None:
    """A restore or recovery rewinds the run: attempt 2 at step 6 is what status must show, not the
    step 20 that attempt 1 left pending; and attempt 1's late checkpoints are never mirrored."""
    plan = CoalescePlan(interval=1.0)
    plan.note(A, LastCheckpoint(20, AT, 200, attempt=1), 0.0)
    plan.note(A, LastCheckpoint(6, AT, 60, attempt=2), 0.0)
    plan.note(A, LastCheckpoint(21, AT, 210, attempt=1), 0.0)
    assert plan.take_due(0.0) == [(A, LastCheckpoint(6, AT, 60, attempt=2))]


def test_what_the_operator_wrote_for_a_new_attempt_drops_the_older_attempts_pending_value() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(A, LastCheckpoint(20, AT, 200, attempt=1), 0.0)
    plan.rewound(A, attempt=2)  # the restore's own status patch set lastCheckpoint to step 5
    assert plan.take_due(10.0) == []
    plan.note(A, LastCheckpoint(19, AT, 190, attempt=1), 10.0)  # attempt 1, late: never mirrored
    assert plan.take_due(20.0) == []
    plan.note(A, LastCheckpoint(6, AT, 60, attempt=2), 20.0)
    assert plan.take_due(20.0) == [(A, LastCheckpoint(6, AT, 60, attempt=2))]


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


def test_token_bucket_spends_a_burst_then_the_rate() -> None:
    bucket = TokenBucket(rate=10.0, burst=10.0, now=0.0)
    assert sum(bucket.take(0.0) for _ in range(50)) == 10
    assert bucket.wait(0.0) == pytest.approx(0.1)
    assert not bucket.take(0.05)
    assert bucket.take(0.1)
    assert sum(bucket.take(100.0) for _ in range(50)) == 10  # never more than the burst saved up


def test_patch_bodies_carry_only_what_changed() -> None:
    plan = CoalescePlan(interval=1.0)
    first = LastCheckpoint(step=1, at=AT, size_bytes=30)
    assert plan.body(A, first) == first.to_status()  # nothing acknowledged yet: the whole object
    plan.confirm(A, first.to_status())
    later = LastCheckpoint(step=2, at=AT + timedelta(seconds=3), size_bytes=30)
    assert plan.body(A, later) == {"step": 2, "time": "2026-01-02T03:04:08Z"}
    assert plan.body(A, LastCheckpoint(step=1, at=AT + timedelta(seconds=9), size_bytes=30)) is None
    plan.forget(A)  # deleted: a new Execution of that name gets the whole object again
    assert plan.body(A, later) == later.to_status()


def test_the_execution_stale_longest_goes_first() -> None:
    plan = CoalescePlan(interval=1.0)
    plan.note(B, cp(1), 0.0)
    plan.note(A, cp(1), 0.3)
    plan.note(B, cp(2), 0.5)  # B's newer checkpoint does not make its status any less stale
    assert plan.oldest_wait(2.0) == pytest.approx(2.0)
    assert plan.take_one(2.0) == (B, cp(2))
    assert plan.take_one(2.0) == (A, cp(1))
    assert plan.oldest_wait(2.0) == 0.0


class _VirtualSelector(selectors.DefaultSelector):
    """Never blocks: when nothing is ready, the loop's clock jumps to its next timer instead."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        super().__init__()
        self._loop = loop

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        events = super().select(0)
        if not events and timeout:
            self._loop.now += timeout
        elif not events and timeout is None:
            raise RuntimeError("deadlock: nothing scheduled and nothing ready")
        return events


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """An event loop on simulated time: sleeps and timeouts take no real time."""

    def __init__(self) -> None:
        self.now = 0.0
        super().__init__(_VirtualSelector(self))

    def time(self) -> float:
        return self.now


def run_simulated(main: Callable[[VirtualTimeLoop], Awaitable[None]]) -> None:
    loop = VirtualTimeLoop()
    try:
        loop.run_until_complete(main(loop))
    finally:
        loop.close()


class FakeApi:
    """Records every patch (simulated time, Execution, lastCheckpoint fields); each takes 7.5 ms."""

    def __init__(self, loop: VirtualTimeLoop) -> None:
        self.loop = loop
        self.sent: list[tuple[float, Key, dict[str, Any]]] = []

    async def __call__(self, key: Key, body: bytes) -> tuple[int, str]:
        self.sent.append((self.loop.time(), key, orjson.loads(body)["status"]["lastCheckpoint"]))
        await asyncio.sleep(0.0075)
        return 200, ""


def test_a_budget_of_ten_a_second_shares_fresh_status_fairly_between_a_hundred_executions() -> None:
    executions, budget, period, duration = 100, 10.0, 0.1, 10.0
    keys = [("ns", f"e{i}") for i in range(executions)]
    ticks = round(duration / period)
    api: FakeApi

    async def main(loop: VirtualTimeLoop) -> None:
        nonlocal api
        api = FakeApi(loop)
        co = StatusCoalescer(None, 1.0, budget_per_second=budget, clock=loop.time, send=api)
        for tick in range(ticks):  # every Execution checkpoints every 0.1 s for 10 s
            await asyncio.sleep(max(0.0, tick * period - loop.time()))
            for key in keys:
                co.note_checkpoint(*key, step=tick, at=AT + timedelta(seconds=loop.time()), size_bytes=100)
            assert len(co._plan.pending) <= executions  # memory: one pending value per Execution
        await asyncio.sleep(duration - loop.time())
        lag = REGISTRY.get_sample_value("stratarouter_status_lag_seconds")
        assert lag is not None
        assert executions / budget - 2 <= lag <= executions / budget + 0.5
        for _ in range(60):  # no more checkpoints: the last ones still reach status
            if co.lag_seconds() == 0:
                break
            await asyncio.sleep(0.5)
        assert co.lag_seconds() == 0
        await co.close()

    run_simulated(main)
    times = [t for t, _, _ in api.sent]
    # the budget holds in every one-second window (burst + rate), not just on average
    assert max(bisect.bisect_left(times, t + 1.0) - i for i, t in enumerate(times)) <= 2 * budget
    assert len([t for t in times if t < duration]) <= budget + budget * duration + 1
    # nobody starves: every Execution got a patch within the 10 s of checkpoints
    assert {key for t, key, _ in api.sent if t < duration} == set(keys)
    # freshness: each status is stale for at most about Executions / budget seconds
    status: dict[Key, dict[str, Any]] = {}
    worst = 0.0
    for t, key, fields in api.sent:
        previous = status.get(key, {}).get("step", -1)
        worst = max(worst, t - (previous + 1) * period)  # since the first checkpoint it did not show
        status[key] = status.get(key, {}) | fields
    assert worst <= executions / budget + 0.5, worst
    # the trimmed patches still add up to the newest checkpoint, for every Execution
    last = ticks - 1
    assert all(status[key]["step"] == last and status[key]["sizeBytes"] == 100 for key in keys)
    assert sum(1 for _, _, fields in api.sent if "sizeBytes" in fields) == executions  # sent once each


def test_one_execution_is_patched_every_interval_when_the_budget_is_idle() -> None:
    api: FakeApi

    async def main(loop: VirtualTimeLoop) -> None:
        nonlocal api
        api = FakeApi(loop)
        co = StatusCoalescer(None, 1.0, budget_per_second=10.0, clock=loop.time, send=api)
        for step in range(500):  # 100 checkpoints a second for 5 s
            await asyncio.sleep(max(0.0, step * 0.01 - loop.time()))
            co.note_checkpoint(
                "ns", "solo", step=step, at=AT + timedelta(seconds=loop.time()), size_bytes=step
            )
            assert co.lag_seconds() <= 1.0 + 1e-6  # never stale for longer than the interval
        await asyncio.sleep(2.0)
        await co.close()

    run_simulated(main)
    times = [t for t, _, _ in api.sent]
    assert times[0] == 0.0  # the first checkpoint goes out at once
    assert all(1.0 - 1e-6 <= b - a <= 1.0 + 0.02 for a, b in itertools.pairwise(times))
    assert api.sent[-1][2]["step"] == 499
