"""The resume contract: a resumed run continues after ``Execution.resume_step`` and loads the state of
that same write, its newest durable one, save or checkpoint (the operator gives a replacement pod
``STRATA_RESUME_STEP`` from it).

Before, the resume step was the last *checkpoint's* while ``load()`` returned the newest *save*: a
workload saving every step (checkpoint_interval 10) crashed after step 13 came back at step 11 with
the state of step 13, and ran 11-13 twice (a total of 246 for 210).

Every workload here adds its steps to a running total and lists them: whatever crash it survives, it
must end exactly as a crash-free run, every step applied once. A crash is the process stopping right
after a write returned (writes are durable then; the state it computed next is lost with it).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import pytest

from stratarouter_runtime import StateManager
from tests.fixtures.api_child import TOKEN, Child
from tests.store.conftest import MakeState

STEPS = 12
CRASH_FREE = {"total": sum(range(1, STEPS + 1)), "steps": list(range(1, STEPS + 1))}

#: name -> (manager options, the write of each step)
WORKLOADS: dict[str, tuple[dict[str, Any], Callable[[StateManager, str, int, Any], Awaitable[None]]]] = {
    "saves every step": ({}, lambda s, run, step, value: s.save(run, step, value)),
    "checkpoints every step": ({}, lambda s, run, step, value: s.checkpoint(run, step, value)),
    "saves, every 3rd a checkpoint, and checkpoints every 5th": (
        {"checkpoint_interval": 3},
        lambda s, run, step, value: (s.checkpoint if step % 5 == 0 else s.save)(run, step, value),
    ),
}


class Crash(Exception):
    """The process dies right after this step's write returned."""


async def run_once(
    state: StateManager, run: str, how: str, resume_step: int | None, crash_after: set[int]
) -> None:
    """One process of the workload: from the start, or after ``resume_step`` with what ``load()`` gives."""
    write = WORKLOADS[how][1]
    value: Any = {"total": 0, "steps": []} if resume_step is None else await state.load(run)
    for step in range((resume_step or 0) + 1, STEPS + 1):
        value = {"total": value["total"] + step, "steps": [*value["steps"], step]}
        await write(state, run, step, value)
        if step in crash_after:
            raise Crash(step)
    await state.complete(run)


async def run_to_the_end(
    start: Callable[[int], Awaitable[tuple[StateManager, int | None]]],
    run: str,
    how: str,
    crash_after: set[int],
) -> Any:
    """Start processes, each resumed as the operator resumes a pod, until one finishes."""
    pending = set(crash_after)
    for attempt in range(1, len(crash_after) + 2):
        state, resume_step = await start(attempt)
        try:
            await run_once(state, run, how, resume_step, pending)
        except Crash as crash:
            pending.discard(crash.args[0])
            continue
        finally:
            await state.close()
        return await _final(start, run)
    raise AssertionError("the workload never finished")


async def _final(start: Callable[[int], Awaitable[tuple[StateManager, int | None]]], run: str) -> Any:
    state, _ = await start(0)
    try:
        return await state.load(run)
    finally:
        await state.close()


def sdk_processes(
    make_state: MakeState, how: str, run: str
) -> Callable[[int], Awaitable[tuple[StateManager, int | None]]]:
    """Processes on the SDK's own backend: each starts its attempt as the operator does, and resumes
    after the started execution's ``resume_step`` (attempt 0: a reader of the outcome)."""

    async def start(attempt: int) -> tuple[StateManager, int | None]:
        state = make_state(**WORKLOADS[how][0])
        if not attempt:
            return state, None
        started = await state.start_execution(run, attempt=attempt)
        return state, started.resume_step

    return start


@pytest.mark.parametrize("how", list(WORKLOADS))
@pytest.mark.parametrize("crash_after", range(1, STEPS))
async def test_a_crash_after_any_step_ends_as_a_crash_free_run(
    make_state: MakeState, how: str, crash_after: int
) -> None:
    run = f"crash-after-{crash_after}"
    assert await run_to_the_end(sdk_processes(make_state, how, run), run, how, {crash_after}) == CRASH_FREE


@pytest.mark.parametrize("how", list(WORKLOADS))
async def test_a_crash_after_every_step_ends_as_a_crash_free_run(make_state: MakeState, how: str) -> None:
    run = "crash-every-step"
    assert (
        await run_to_the_end(sdk_processes(make_state, how, run), run, how, set(range(1, STEPS)))
        == CRASH_FREE
    )


@pytest.mark.parametrize("how", list(WORKLOADS))
async def test_through_the_checkpoint_api_a_crash_after_every_step_ends_as_a_crash_free_run(
    start_child: Callable[..., Child], tmp_path: Path, how: str
) -> None:
    """The pod's SDK on the checkpoint API (its own process, the operator's code on the memory store):
    each process resumes after the ``resume_step`` of the stored execution, as the operator's
    ``STRATA_RESUME_STEP`` says (the API's one run, ``ns/run``, is started by the operator)."""
    child = start_child()
    token = tmp_path / "token"
    token.write_text(TOKEN)

    async def start(attempt: int) -> tuple[StateManager, int | None]:
        options = WORKLOADS[how][0]
        state = StateManager(
            backend="http",
            api_url=f"http://127.0.0.1:{child.port}",
            extra={"token_file": str(token), "execution_id": "ns/run"},
            **options,
        )
        execution = await state.get_execution("ns/run")
        assert execution is not None
        return state, execution.resume_step

    assert await run_to_the_end(start, "ns/run", how, set(range(1, STEPS))) == CRASH_FREE
