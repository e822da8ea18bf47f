"""Crash recovery on a real PostgreSQL: a process killed mid-run is resumed from its last durable step."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from stratarouter_runtime import Execution, ExecutionStatus, StaleAttemptError, StateManager
from tests.store.crash_worker import state_for

pytestmark = pytest.mark.postgres
WORKER = Path(__file__).with_name("crash_worker.py")
ROOT = Path(__file__).parents[2]


async def _run_until_killed(dsn: str, execution_id: str, kill_after_step: int) -> int:
    """Start the worker, SIGKILL it once it reported ``kill_after_step``; return the last step it reported."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "operator")])}
    proc = subprocess.Popen(  # noqa: ASYNC220  # asyncio's child watcher loses this pid under pytest
        [sys.executable, str(WORKER), dsn, execution_id],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        env=env,
    )
    assert proc.stdout is not None
    last = -1
    try:
        while last < kill_after_step:
            line = await asyncio.wait_for(asyncio.to_thread(proc.stdout.readline), timeout=60)
            if not line:
                err = proc.stderr.read() if proc.stderr else b""
                raise AssertionError(f"worker exited early: {err.decode()}")
            last = int(line)
        os.kill(proc.pid, signal.SIGKILL)  # mid-run: it is writing the next checkpoint right now
        # what it reported before it died, including lines still in the pipe (on a loaded machine
        # it runs on for a few steps while this reads line 40)
        rest = await asyncio.to_thread(proc.stdout.read)
        last = max([last, *(int(line) for line in rest.split())])
    finally:
        if proc.poll() is None:
            proc.kill()
        await asyncio.to_thread(proc.wait, 30)
    assert proc.returncode == -signal.SIGKILL
    return last


async def test_killed_run_resumes_from_its_last_durable_checkpoint(pg_dsn: str) -> None:
    last_reported = await _run_until_killed(pg_dsn, "crashy", kill_after_step=40)
    resumed: list[Execution] = []

    async with StateManager(db_url=pg_dsn, recovery_timeout=0.5) as state:

        async def resume(execution: Execution) -> None:
            resumed.append(execution)
            assert execution.last_checkpoint_step is not None
            step = execution.last_checkpoint_step
            assert await state.load(execution.execution_id) == state_for(step)  # its exact state
            for nxt in range(step + 1, 60):
                await state.checkpoint(execution.execution_id, nxt, state_for(nxt), attempt=execution.attempt)
            await state.complete(execution.execution_id, attempt=execution.attempt)

        await asyncio.sleep(0.6)
        recovered = await state.recover_all(resume=resume)
        assert [e.execution_id for e in recovered] == ["crashy"]
        crashed = resumed[0]
        assert crashed.attempt == 2
        assert crashed.status == ExecutionStatus.RECOVERING
        durable = crashed.last_checkpoint_step
        assert durable is not None
        # Everything reported was durable; at most the one write in flight got committed unreported.
        assert last_reported <= durable <= last_reported + 1

        final = await state.get_execution("crashy")
        assert final is not None
        assert (final.status, final.current_step, final.attempt) == (ExecutionStatus.COMPLETED, 59, 2)
        history = await state.get_history("crashy", limit=1000)
        assert [c.step for c in history] == list(range(60))
        assert all(c.state_data == state_for(c.step) for c in history)
        assert {c.attempt for c in history if c.step <= durable} == {1}
        assert {c.attempt for c in history if c.step > durable} == {2}
        with pytest.raises(StaleAttemptError):  # the killed attempt could not write any more
            await state.checkpoint("crashy", 61, {}, attempt=1)


async def test_concurrent_recover_all_never_claims_an_execution_twice(pg_dsn: str) -> None:
    setup = StateManager(db_url=pg_dsn)
    managers = [StateManager(db_url=pg_dsn, recovery_timeout=0.3, pool_max_size=4) for _ in range(3)]
    try:
        for round_ in range(3):
            ids = [f"r{round_}-{n}" for n in range(30)]
            await asyncio.gather(*(setup.checkpoint(i, 0, {"i": i}) for i in ids))
            await asyncio.sleep(0.4)
            calls = [m.recover_all(limit=20) for m in managers for _ in range(2)]
            results = await asyncio.gather(*calls)
            claimed = [e.execution_id for batch in results for e in batch]
            assert sorted(claimed) == sorted(ids), f"round {round_}: {sorted(claimed)}"
            assert all(e.attempt == 2 for batch in results for e in batch)
            for i in ids:
                await setup.complete(i)
    finally:
        for m in [setup, *managers]:
            await m.close()
