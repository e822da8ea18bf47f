"""An example workload: the code a user puts in the container image of an Execution.

It counts to ``STEPS`` (default 20), one step every ``STEP_SECONDS``, keeping a running total in its
state and checkpointing after each step. Started by the StrataRouter operator, the pod's environment
tells it everything: ``StateManager.from_env()`` talks to the operator's checkpoint API, and
``STRATA_RESUME_STEP`` says where a recovered attempt continues (empty on the first run). When the
pod dies mid-run, the replacement pod loads the last state and carries on at the next step.

Run it outside Kubernetes too (in-memory store): ``STRATA_EXECUTION_ID=demo python examples/workload.py``.
"""

from __future__ import annotations

import asyncio
import os
import sys
from typing import Any

from stratarouter_runtime import StateManager


def do_step(step: int, state: dict[str, Any]) -> dict[str, Any]:
    """The actual work of one step (here: add the step number to a running total)."""
    return {"total": state["total"] + step, "done": [*state["done"], step][-10:]}


async def main() -> int:
    steps = int(os.environ.get("STEPS", "20"))
    pause = float(os.environ.get("STEP_SECONDS", "0.5"))
    async with StateManager.from_env() as state:
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
        for step in range(first, steps + 1):
            current = do_step(step, current)
            await state.checkpoint(execution_id, step, current)
            print(f"[workload] step {step}/{steps}: total={current['total']} (checkpointed)", flush=True)
            await asyncio.sleep(pause)
    print(f"[workload] done: total={current['total']}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
