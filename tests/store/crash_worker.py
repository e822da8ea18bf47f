"""A workload for the crash test: checkpoints step after step and prints each step once durable.

Run as ``python tests/store/crash_worker.py DSN EXECUTION_ID``; the test kills it with SIGKILL.
"""

from __future__ import annotations

import asyncio
import sys
from typing import Any

from stratarouter_runtime import StateManager


def state_for(step: int) -> dict[str, Any]:
    """The exact state a run has after ``step``: the test recomputes it to compare."""
    return {"step": step, "total": step * (step + 1) // 2, "tail": [step - i for i in range(min(step, 5))]}


async def main(dsn: str, execution_id: str) -> None:
    async with StateManager(db_url=dsn) as state:
        await state.start_execution(execution_id, attempt=1)
        step = 0
        while True:
            await state.checkpoint(execution_id, step, state_for(step), attempt=1)
            print(step, flush=True)  # only after the write is durable
            step += 1


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2]))
