"""Kill this process and run it again: it resumes after its last checkpoint. No Kubernetes involved.

    eval "$(make -s db-up)"              # a throwaway PostgreSQL; exports STRATA_DB_URL
    python examples/resume_local.py      # counts 1..30, one checkpoint per step
    kill -9 <its pid>                    # or Ctrl-\\ (SIGQUIT), any time
    python examples/resume_local.py      # attempt 2 picks up after the last checkpoint
    python examples/resume_local.py --fresh   # forget the run and start over

The state is a running total, so a lost or repeated step would show in the final figure: it must be
the sum of 1..steps. ``docs/sdk.md`` ("Kill the process and resume") walks through it, and
``tests/docs/test_resume_walkthrough.py`` SIGKILLs it mid-run and checks the resumed run.

This script is the only worker of its run (a supervisor such as systemd restarts it after a crash).
On start it takes the run over with the next attempt number: from then on a write of the older
attempt, say from a process that was only frozen and wakes up later, is refused (StaleAttemptError).
A pool of workers that share many runs would call ``state.recover_all()`` instead (see docs/sdk.md).
"""

from __future__ import annotations

import argparse
import asyncio
import os
from typing import Any

from stratarouter_runtime import ExecutionStatus, InvalidArgumentError, StateManager

FINISHED = {ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED}


def do_step(step: int, state: dict[str, Any]) -> dict[str, Any]:
    """One unit of work: add the step number to the running total."""
    return {"total": state["total"] + step, "last_step": step}


async def run(run_id: str, steps: int, pause: float, fresh: bool) -> int:
    # backend="postgresql" without db_url= reads STRATA_DB_URL (and says so if it is not set)
    async with StateManager(backend="postgresql") as state:
        if fresh:
            await state.delete_execution(run_id)
        stored = await state.get_execution(run_id)
        if stored is not None and stored.status in FINISHED:
            total = (await state.load(run_id))["total"]
            print(f"{run_id} is already {stored.status.value} (total={total}); --fresh starts it over")
            return 0
        attempt = 1 if stored is None else stored.attempt + 1
        # Raising the attempt fences every writer of the older one; the manager remembers it, so
        # the checkpoints below carry it without attempt=.
        await state.start_execution(run_id, attempt=attempt)
        resume_after = None if stored is None else stored.resume_step
        if resume_after is None:
            current: dict[str, Any] = {"total": 0, "last_step": 0}
            print(f"attempt {attempt}: starting {run_id} at step 1 (pid {os.getpid()})", flush=True)
        else:
            current = await state.load(run_id)
            print(
                f"attempt {attempt}: resuming {run_id} after step {resume_after} "
                f"(total={current['total']}, pid {os.getpid()})",
                flush=True,
            )
        for step in range((resume_after or 0) + 1, steps + 1):
            await asyncio.sleep(pause)  # the "work" of the step
            current = do_step(step, current)
            await state.checkpoint(run_id, step, current)  # durable when it returns
            print(f"step {step}/{steps}: total={current['total']} (checkpointed)", flush=True)
        await state.complete(run_id)
        expected = steps * (steps + 1) // 2
        print(f"done: {run_id} completed, total={current['total']} (expected {expected})", flush=True)
        return 0 if current["total"] == expected else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n", 1)[0])
    parser.add_argument("--run-id", default="count-local", help="the execution id in the store")
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--step-seconds", type=float, default=0.5, help="pause per step")
    parser.add_argument("--fresh", action="store_true", help="delete the stored run first")
    args = parser.parse_args()
    if not os.environ.get("STRATA_DB_URL"):
        parser.exit(2, 'STRATA_DB_URL is not set: run eval "$(make -s db-up)" first\n')
    try:
        return asyncio.run(run(args.run_id, args.steps, args.step_seconds, args.fresh))
    except InvalidArgumentError as exc:
        parser.exit(2, f"{exc}\n")


if __name__ == "__main__":
    raise SystemExit(main())
