"""examples/langgraph_agent.py is SIGKILLed mid-graph, run again, and resumes at the first item it had
not checkpointed: no item lost or done twice in the thread's state, and the total comes out right."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from stratarouter_runtime import StateManager
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver

pytestmark = pytest.mark.postgres

SCRIPT = Path(__file__).resolve().parents[2] / "examples" / "langgraph_agent.py"
STEPS = 10
THREAD = "langgraph-agent"


def agent(dsn: str) -> subprocess.Popen[str]:
    env = {key: value for key, value in os.environ.items() if not key.startswith("STRATA_")}
    env.update(STRATA_DB_URL=dsn, STEPS=str(STEPS), STEP_SECONDS="0.05")
    return subprocess.Popen(
        [sys.executable, str(SCRIPT)], env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True
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


async def test_a_killed_graph_resumes_where_its_checkpoints_end(pg_dsn: str) -> None:
    first = agent(pg_dsn)
    try:
        before = read_until(first, "item 5/")
        first.send_signal(signal.SIGKILL)
        assert first.wait(30) == -signal.SIGKILL
    finally:
        first.kill()
    assert before[0] == f"attempt 1: starting {THREAD}", before

    second = agent(pg_dsn)
    out, _ = second.communicate(timeout=120)
    lines = out.splitlines()
    assert second.returncode == 0, out
    head = lines[0]
    assert head.startswith(f"attempt 2: resuming {THREAD} after item "), out
    resumed_after = int(head.rsplit(" ", 1)[1])
    # Item 5 was printed, so item 4's checkpoint was durable (sync durability); a few more may be.
    assert 4 <= resumed_after < STEPS, out
    assert lines[1].startswith(f"item {resumed_after + 1}/{STEPS}: "), out
    expected = STEPS * (STEPS + 1) // 2
    assert lines[-1] == f"done: {STEPS} items, total={expected} (expected total={expected})", out

    async with StateManager(backend="postgresql", db_url=pg_dsn) as state:
        saver = StrataCheckpointSaver(state, run_prefix="")
        latest = await saver.aget_tuple({"configurable": {"thread_id": THREAD}})
        assert latest is not None
        assert latest.checkpoint["channel_values"]["done"] == list(range(1, STEPS + 1))
        run = await state.get_execution(THREAD)
        assert run is not None
        assert (run.status.value, run.attempt) == ("completed", 2)
        attempts = {c.attempt for c in await state.get_history(THREAD)}
        assert attempts == {1, 2}  # the first attempt's checkpoints are the second's starting point

    third = agent(pg_dsn)
    out, _ = third.communicate(timeout=60)
    assert third.returncode == 0, out
    assert f"{THREAD} is done already: {STEPS} items, total={expected}" in out, out
    async with StateManager(backend="postgresql", db_url=pg_dsn) as state:
        left = await state.get_execution(THREAD)
        assert left is not None
        assert (left.status.value, left.attempt) == ("completed", 2)  # a finished run is left alone
