"""An example workload: the code a user puts in the container image of an Execution.

It counts to ``STEPS`` (default 20), one step every ``STEP_SECONDS``, keeping a running total in its
state and checkpointing after each step. Started by the StrataRouter operator, the pod's environment
tells it everything: ``StateManager.from_env()`` talks to the operator's checkpoint API, and
``STRATA_RESUME_STEP`` says where a recovered attempt continues (empty on the first run). When the
pod dies mid-run, the replacement pod loads the last state and carries on at the next step.

Run it outside Kubernetes too (in-memory store): ``STRATA_EXECUTION_ID=demo python examples/workload.py``.

It stops cleanly when asked to: ``state.handle_signals()`` turns the SIGTERM Kubernetes sends (suspend,
eviction, drain) into ``state.stop_requested``; the loop then stops after the step it checkpointed
last and exits 0 at once, well within the pod's grace period; the next attempt resumes after it.

To show a recovery, its first attempt can be made to die for real after step ``FAIL_AT_STEP``, the way
``FAIL_HOW`` says: ``oom`` (allocate memory until the container's memory limit OOM-kills it),
``exit:N`` (exit with code N), or ``hang`` (stop making progress, SIGTERM included, for a kill or an
eviction from outside). Later attempts never fail on purpose.
"""

from __future__ import annotations

import asyncio
import os
import sys
import time
from typing import Any

from stratarouter_runtime import StateManager


def do_step(step: int, state: dict[str, Any]) -> dict[str, Any]:
    """The actual work of one step (here: add the step number to a running total)."""
    return {"total": state["total"] + step, "done": [*state["done"], step][-10:]}


def fail_for_real(how: str) -> None:
    """Die the way ``how`` says (see the module docstring); returns only for an unknown ``how``."""
    print(f"[workload] failing on purpose: {how}", flush=True)
    if how == "oom":
        hog = []
        while True:  # the kernel's OOM killer ends this once the memory limit is reached
            hog.append(bytearray(16 << 20))
            time.sleep(0.01)
    if how.startswith("exit:"):
        sys.exit(int(how.removeprefix("exit:")))
    if how == "hang":
        while True:
            time.sleep(60)
    print(f"[workload] unknown FAIL_HOW={how!r}; carrying on", flush=True)


async def main() -> int:
    steps = int(os.environ.get("STEPS", "20"))
    pause = float(os.environ.get("STEP_SECONDS", "0.5"))
    fail_at = int(os.environ.get("FAIL_AT_STEP", "0"))
    async with StateManager.from_env() as state:
        state.handle_signals()  # SIGTERM/SIGINT: finish the step, checkpoint, exit 0
        execution_id = state.execution_id or "local-run"
        if state.resume_step is None:
            first, current = 1, {"total": 0, "done": []}
            print(f"[workload] attempt {state.attempt}: starting {execution_id} from step 1", flush=True)
        else:
            current = await state.load(execution_id)
            first = state.resume_step + 1
            print(
                f"[workload] attempt {state.attempt}: resuming {execution_id} at step {first} "
                f"with total={current['total']}",
                flush=True,
            )
        done = first - 1  # the last step computed (and checkpointed: each step is, as it ends)
        for step in range(first, steps + 1):
            if state.stop_requested:
                break
            current, done = do_step(step, current), step
            await state.checkpoint(execution_id, step, current)
            print(f"[workload] step {step}/{steps}: total={current['total']} (checkpointed)", flush=True)
            if step == fail_at and state.attempt in (None, 1):
                fail_for_real(os.environ.get("FAIL_HOW", "exit:1"))
            if step < steps:
                await state.wait_for_stop(pause)  # a sleep that a stop request cuts short
        if state.stop_requested and done < steps:
            # Step `done` is in the store already; leaving `async with` flushes anything buffered.
            print(f"[workload] stop requested after step {done}: checkpointed, exiting", flush=True)
            return 0
    print(f"[workload] done: total={current['total']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
