"""Restart recovery by worker identity (state/worker.py), on both backends: a restarted worker resumes
its own runs at once, other workers' runs wait for recovery_timeout, a live worker's run is never
claimed, and two live managers under one worker id are refused."""

from __future__ import annotations

import asyncio
import time

import pytest

from stratarouter_runtime import StateManager, WorkerIdInUseError
from tests.store.conftest import MakeState
from tests.store.test_state_crash import _run_until_killed


async def test_a_restarted_worker_resumes_its_own_run_at_once(make_state: MakeState) -> None:
    first = make_state(worker_id="etl-1")  # default recovery_timeout: 300 s
    await first.start_execution("nightly")
    await first.checkpoint("nightly", 4, {"rows": 400})
    await first.close()  # the process ends; its restart has the same worker id
    restarted = make_state(worker_id="etl-1")
    began = time.monotonic()
    claimed = await restarted.recover_all()
    took = time.monotonic() - began
    assert [(e.execution_id, e.attempt, e.resume_step) for e in claimed] == [("nightly", 2, 4)]
    assert await restarted.load("nightly") == {"rows": 400}
    assert took < 1.0, f"claiming its own run took {took:.3f}s"


@pytest.mark.postgres
async def test_a_sigkilled_worker_restarted_under_its_id_resumes_in_under_a_second(
    pg_dsn: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("STRATA_WORKER_ID", "crash-slot-1")  # the killed process's id, from the environment
    last = await _run_until_killed(pg_dsn, "killed-run", kill_after_step=5)
    killed_at = time.monotonic()
    async with StateManager(db_url=pg_dsn, worker_id="crash-slot-1") as restarted:  # recovery_timeout 300 s
        claimed = await restarted.recover_all()
        took = time.monotonic() - killed_at
        assert [(e.execution_id, e.attempt) for e in claimed] == [("killed-run", 2)]
        resumed_after = claimed[0].resume_step
        assert resumed_after is not None
        assert resumed_after >= last
    assert took < 1.0, f"the restart claimed its run {took:.3f}s after the kill"
    print(f"restart resumed its own run {took * 1000:.0f} ms after the SIGKILL")


async def test_another_workers_run_waits_for_the_recovery_timeout(make_state: MakeState) -> None:
    owner = make_state(worker_id="owner", recovery_timeout=0.4)
    other = make_state(worker_id="other", recovery_timeout=0.4)
    await owner.start_execution("report")
    await owner.checkpoint("report", 1, {"pages": 1})
    await owner.close()  # gone, but only its own restart knows that at once
    assert await other.recover_all() == []
    await asyncio.sleep(0.5)
    assert [e.execution_id for e in await other.recover_all()] == ["report"]


async def test_a_live_workers_run_is_never_claimed(make_state: MakeState) -> None:
    async def nothing_to_resume(_: object) -> None:
        return None

    live = make_state(
        worker_id="live", recovery_timeout=0.3, enable_auto_recovery=True, on_recover=nothing_to_resume
    )
    other = make_state(worker_id="other", recovery_timeout=0.3)
    async with live:  # its sweep renews its lease every recovery_timeout / 2
        await live.start_execution("long-step")
        await live.checkpoint("long-step", 1, {"done": 1})
        for _ in range(3):  # no write for well past recovery_timeout, but the worker is alive
            await asyncio.sleep(0.35)
            assert await other.recover_all() == []
    await asyncio.sleep(0.35)  # closed: its lease is given up and the run is idle
    assert [e.execution_id for e in await other.recover_all()] == ["long-step"]


async def test_two_live_managers_with_one_worker_id_are_refused(make_state: MakeState) -> None:
    first = make_state(worker_id="slot-7")
    twin = make_state(worker_id="slot-7")
    await first.start_execution("a")
    with pytest.raises(WorkerIdInUseError, match=r"'slot-7'.*worker_id= or STRATA_WORKER_ID") as refused:
        await twin.start_execution("b")
    assert refused.value.worker_id == "slot-7"
    with pytest.raises(WorkerIdInUseError):
        await twin.recover_all()
    assert (await first.get_execution("a")).attempt == 1  # type: ignore[union-attr]  # nothing claimed
    assert await twin.get_execution("b") is None  # nothing written
    await first.close()
    await twin.start_execution("b")  # the id is free once its holder is gone


async def test_managers_of_one_process_get_distinct_default_ids(make_state: MakeState) -> None:
    one, two = make_state(), make_state()
    assert one.worker.worker_id != two.worker.worker_id
    await one.start_execution("x")
    await two.start_execution("y")  # no refusal: two slots
