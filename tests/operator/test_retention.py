"""Retention declared on the resource: TTL after finish (with and without keepHistory), operator-wide
default TTL, and checkpoint retention handed to the store."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.fixture
async def workload(pg_dsn: str) -> AsyncIterator[StateManager]:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        yield store


async def _finish(executions: Executions, workload: StateManager, name: str, *, wait: bool = True) -> None:
    executions.wait_phase(name, "Running")
    await workload.checkpoint(f"{executions.namespace}/{name}", 0, {"done": True}, attempt=1)
    executions.succeed(f"{name}-a1")
    if wait:
        executions.wait_phase(name, "Succeeded")


async def test_ttl_deletes_execution_and_state(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("gone", retention={"ttlSecondsAfterFinished": 1})
    await _finish(executions, workload, "gone", wait=False)  # a 1 s TTL may delete it before a poll sees it
    wait_until("the Execution deleted by its TTL", lambda: executions.get("gone") is None, timeout=30)
    stored = await wait_until_async(lambda: workload.get_execution(f"{executions.namespace}/gone"), None)
    assert stored is None


async def test_ttl_with_keep_history_keeps_state(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("kept", retention={"ttlSecondsAfterFinished": 1, "keepHistory": True})
    await _finish(executions, workload, "kept", wait=False)  # the store's "completed" below says it finished
    wait_until("the Execution deleted by its TTL", lambda: executions.get("kept") is None, timeout=30)
    stored = await workload.get_execution(f"{executions.namespace}/kept")
    assert stored is not None
    assert stored.status == "completed"
    assert await workload.load(f"{executions.namespace}/kept") == {"done": True}


async def test_no_ttl_keeps_finished_execution(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("stay")
    await _finish(executions, workload, "stay")
    executions.create("marker", retention={"ttlSecondsAfterFinished": 0})
    await _finish(executions, workload, "marker", wait=False)  # TTL 0: it may vanish at once
    # the timer has run for "marker" (deleted) while "stay" (no TTL, no default) is still there
    wait_until("marker deleted", lambda: executions.get("marker") is None, timeout=30)
    assert executions.get("stay") is not None


async def test_operator_default_ttl(
    operator_process: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    operator_process.env["STRATA_DEFAULT_TTL_SECONDS_AFTER_FINISHED"] = "1"
    operator_process.start()
    executions.create("dflt")
    await _finish(executions, workload, "dflt", wait=False)  # a 1 s TTL may delete it before a poll sees it
    wait_until("deleted by the operator-wide default TTL", lambda: executions.get("dflt") is None, timeout=30)


async def test_checkpoint_retention_keeps_last_n(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("short", checkpoint={"retention": 2})
    executions.wait_phase("short", "Running")
    ident = f"{executions.namespace}/short"
    for step in range(6):
        await workload.checkpoint(ident, step, {"step": step}, attempt=1)
    stored = await workload.get_execution(ident)
    assert stored is not None
    assert stored.checkpoint_retention == 2
    history = await workload.get_history(ident)
    assert [c.step for c in history] == [4, 5]


async def wait_until_async(
    probe: Callable[[], Awaitable[object]], expected: object, seconds: float = 20.0
) -> object:
    """Await ``probe()`` until it returns ``expected`` (or ``seconds`` pass); returns the last value."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    value = await probe()
    while value != expected and loop.time() < deadline:
        await asyncio.sleep(0.2)
        value = await probe()
    return value


async def test_deleting_a_running_execution(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("keep", retention={"keepHistory": True})
    executions.create("drop")
    for name in ("keep", "drop"):
        executions.wait_phase(name, "Running")
        await workload.checkpoint(f"{ns}/{name}", 0, {"n": name}, attempt=1)
        executions.delete(name)
    for name in ("keep", "drop"):
        wait_until(f"{name} deleted (finalizer released)", lambda name=name: executions.get(name) is None)
        wait_until(f"{name}'s pod garbage-collected", lambda name=name: executions.pods(name) == [])
    kept = await workload.get_execution(f"{ns}/keep")
    assert kept is not None
    assert kept.status == "cancelled"
    assert await workload.load(f"{ns}/keep") == {"n": "keep"}
    assert await workload.get_execution(f"{ns}/drop") is None
