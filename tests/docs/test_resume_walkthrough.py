"""docs/sdk.md's walkthrough, for real: examples/resume_local.py is SIGKILLed mid-run, run again, and
resumes right after its last checkpoint with the exact state (the running total comes out right)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

import pytest

from stratarouter_runtime import StateManager
from tests.docs.samples import ROOT

pytestmark = pytest.mark.postgres

SCRIPT = ROOT / "examples" / "resume_local.py"
STEPS = 12
RUN = "count-local"


def script(dsn: str, *args: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRATA_")}
    env["STRATA_DB_URL"] = dsn
    return subprocess.Popen(
        [sys.executable, str(SCRIPT), "--steps", str(STEPS), "--step-seconds", "0.05", *args],
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )


def read_until(proc: subprocess.Popen[str], prefix: str, timeout: float = 60.0) -> list[str]:
    assert proc.stdout is not None
    lines: list[str] = []
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        line = proc.stdout.readline()
        if not line:
            break
        lines.append(line.rstrip("\n"))
        if line.startswith(prefix):
            return lines
    proc.kill()
    pytest.fail(f"no line starting {prefix!r}; got {lines}")


async def test_killed_run_resumes_after_its_last_checkpoint(pg_dsn: str) -> None:
    first = script(pg_dsn)
    try:
        before = read_until(first, "step 4/")
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        first.kill()
    assert before[0].startswith(f"attempt 1: starting {RUN} at step 1"), before

    second = script(pg_dsn)
    out, _ = second.communicate(timeout=60)
    lines = out.splitlines()
    assert second.returncode == 0, out
    # It may have checkpointed a step or two more after the line we saw, before the SIGKILL landed.
    head = lines[0]
    assert head.startswith(f"attempt 2: resuming {RUN} after step "), out
    resumed_after = int(head.split("after step ")[1].split()[0])
    assert 4 <= resumed_after < STEPS, out
    assert f"total={resumed_after * (resumed_after + 1) // 2}," in head, out
    assert lines[1].startswith(f"step {resumed_after + 1}/{STEPS}:"), out
    expected = STEPS * (STEPS + 1) // 2
    assert lines[-1] == f"done: {RUN} completed, total={expected} (expected {expected})", out

    async with StateManager(backend="postgresql", db_url=pg_dsn) as state:
        history = await state.get_history(RUN)
        assert [c.step for c in history] == list(range(1, STEPS + 1))
        assert {c.step: c.attempt for c in history} == {
            step: 1 if step <= resumed_after else 2 for step in range(1, STEPS + 1)
        }
        assert [c.state_data["total"] for c in history] == [s * (s + 1) // 2 for s in range(1, STEPS + 1)]

    third = script(pg_dsn)  # a finished run is left alone; --fresh starts over
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0, out
    assert f"{RUN} is already completed (total={expected})" in out, out
