"""DBOS Transact: a durable workflow whose steps each return the state, so DBOS records every output.

Configured programmatically (``DBOS(config=...)``, ``DBOS.launch()``) with its Postgres system database
in the contender's own database on the shared server, as DBOS's configuration docs show. Workflows and
steps are ``async def`` so they run on the benchmark's event loop (``DBOS.start_workflow_async`` docs);
DBOS itself does its database work in worker threads.
"""

from __future__ import annotations

import asyncio
from typing import Any

from dbos import DBOS, DBOSConfig

from bench.sdk_harness import Contender
from bench.sdk_workload import make_state, transcript_message

_STATE = make_state(0)


@DBOS.step()
async def produce_state(step: int) -> dict[str, Any]:
    """A unit of work whose output (the state) DBOS checkpoints before the workflow moves on."""
    return _STATE


@DBOS.workflow()
async def checkpointing_workflow(steps: int) -> int:
    for step in range(steps):
        await produce_state(step)
    return steps


@DBOS.step()
async def agent_turn(step: int) -> dict[str, str]:
    """One turn of an agent: returns the new message, the only thing DBOS records for it."""
    return transcript_message(step)


@DBOS.workflow()
async def agent_run(steps: int) -> int:
    messages: list[dict[str, str]] = []
    for step in range(steps):
        messages.append(await agent_turn(step))
    return len(messages)


class DbosSteps(Contender):
    name = "dbos"
    label = "DBOS Transact steps"

    def __init__(self) -> None:
        self._launched = False

    async def open(self, dsn: str) -> None:
        config: DBOSConfig = {
            "name": "strata-bench",
            "system_database_url": dsn,
            "log_level": "WARNING",
        }
        DBOS(config=config)
        DBOS.launch()
        self._launched = True

    async def close(self) -> None:
        if self._launched:
            DBOS.destroy()
            self._launched = False

    async def seq_writes(self, key: str, n: int) -> None:
        await checkpointing_workflow(n)

    async def concurrent_writes(self, key: str, writers: int, per_writer: int) -> None:
        await asyncio.gather(*(checkpointing_workflow(per_writer) for _ in range(writers)))

    async def storage_run(self, key: str, steps: int) -> str:
        await agent_run(steps)
        return f"{steps} steps, each recording only its new message (DBOS rebuilds the transcript by replay)"
