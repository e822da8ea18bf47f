"""examples/langgraph-execution.yaml on the real node: a LangGraph graph as an Execution survives a SIGKILL.

The manifest is applied with kubectl as written, plus what puts its pod on the real node (node selector
and toleration) and ``FAIL_AT_STEP``/``FAIL_HOW=hang``: attempt 1 of ``examples/langgraph_agent.py``
(the example image) checkpoints items 1..FAIL_AT through the operator's checkpoint API, then stops
making progress as it starts the next item, and the test SIGKILLs its process from the host. The test
asserts that attempt 2 resumed the graph from the stored checkpoint (its log and the thread's history:
checkpoints up to item FAIL_AT by attempt 1, the rest by attempt 2), that the run Succeeded, and that
the final state holds every item once and the total a crash-free run ends with. No model, no network.
"""

from __future__ import annotations

import asyncio
import os
import re
import signal
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_dev.operator_process import OperatorProcess
from stratarouter_runtime.integrations.langgraph import StrataCheckpointSaver, entries
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, operator_environment, wait_until
from tests.operator.test_real_failures import LivePods, Stream

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(300)]

MANIFEST = Path(__file__).resolve().parents[2] / "examples" / "langgraph-execution.yaml"
FAIL_AT = 5
Obj = dict[str, Any]


@pytest.fixture
def operator_env(cluster: Any, pg_dsn: str, namespace: str, node: RealNode) -> dict[str, str]:
    """The operator's API on the bridge's gateway, where the real node's pods reach it."""
    return operator_environment(cluster.kubeconfig, pg_dsn, api_host=node.gateway)


def on_the_real_node(manifest: Obj) -> Obj:
    """The manifest with its pod placed on the real node and a first attempt that hangs after FAIL_AT."""
    pod = manifest["spec"]["template"]["spec"]
    pod.update(pod_placement())
    pod["containers"][0]["env"] += [
        {"name": "FAIL_AT_STEP", "value": str(FAIL_AT)},
        {"name": "FAIL_HOW", "value": "hang"},
    ]
    return manifest


async def thread_history(dsn: str, run: str) -> list[tuple[int, int, int, list[int]]]:
    """(store step, attempt, LangGraph's step, the graph's ``done`` items) of every checkpoint of the
    thread, oldest first."""
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        saver = StrataCheckpointSaver(store, run_prefix="")
        graph = {
            t.config["configurable"]["checkpoint_id"]: (
                t.metadata["step"],
                t.checkpoint["channel_values"].get("done", []),
            )
            async for t in saver.alist({"configurable": {"thread_id": run}})
        }
        return [(c.step, c.attempt, *graph[c.state_data[entries.ID]]) for c in await store.get_history(run)]


async def final_values(dsn: str, run: str) -> Obj:
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        latest = await StrataCheckpointSaver(store, run_prefix="").aget_tuple(
            {"configurable": {"thread_id": run}}
        )
        assert latest is not None, f"no checkpoint of {run}"
        values: Obj = latest.checkpoint["channel_values"]
        return values


def item_lines(lines: list[str]) -> list[tuple[int, int, int]]:
    """(item, of, total) of each ``item N/M: total=T`` line of the agent's log."""
    found = [re.fullmatch(r"item (\d+)/(\d+): total=(\d+)", line) for line in lines]
    return [(int(m[1]), int(m[2]), int(m[3])) for m in found if m]


def running_totals(items: range, steps: int) -> list[tuple[int, int, int]]:
    return [(i, steps, i * (i + 1) // 2) for i in items]


def test_a_sigkilled_langgraph_execution_resumes_from_its_checkpoint(
    cluster: Any,
    operator: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
    node: RealNode,
    pg_dsn: str,
    namespace: str,
) -> None:
    started = time.monotonic()
    execution = on_the_real_node(yaml.safe_load(MANIFEST.read_text()))
    name = execution["metadata"]["name"]
    env = {e["name"]: e["value"] for e in execution["spec"]["template"]["spec"]["containers"][0]["env"]}
    steps = int(env["STEPS"])
    assert steps > FAIL_AT
    run, first_pod, second_pod = f"{namespace}/{name}", f"{name}-a1", f"{name}-a2"
    cluster.kubectl("apply", "-n", namespace, "-f", "-", input=yaml.safe_dump(execution))

    with LivePods(executions, name) as pods:
        pod = executions.wait_pod_running(first_pod, timeout=90)
        log_path = f"/api/v1/namespaces/{namespace}/pods/{first_pod}/log?container=agent&follow=true"
        with Stream(kube, log_path) as first_log:
            # The agent prints this once item FAIL_AT's checkpoint is stored (durability="sync"), as it
            # starts the next item, and then makes no progress: the kill lands mid-item FAIL_AT + 1.
            wait_until(
                "attempt 1 to hang after its checkpoint of item FAIL_AT",
                lambda: "failing on purpose: hang" in first_log.lines,
                timeout=90,
            )
            pid = wait_until(
                "the agent's process", lambda: node.process_of(pod["metadata"]["uid"], b"langgraph_agent.py")
            )
            os.kill(pid, signal.SIGKILL)
            wait_until("attempt 1's log to end", first_log.ended.is_set, timeout=30)
        status = executions.wait_phase(name, "Succeeded", timeout=120)
    print(f"--- {first_pod} ---", *first_log.lines, sep="\n")

    # The operator saw a SIGKILLed container and started attempt 2 from the last checkpoint.
    assert (status["attempt"], status["restarts"]) == (2, 1), status
    assert status["recovery"]["reason"] == "ExitCode", status["recovery"]
    assert status["recovery"]["exitCode"] == 137, status["recovery"]
    assert status["recovery"]["failedPod"] == first_pod, status["recovery"]
    assert pods.most == 1

    # Attempt 1 did items 1..FAIL_AT and no more.
    assert first_log.lines[0] == f"attempt 1: starting {run}", first_log.lines
    assert item_lines(first_log.lines) == running_totals(range(1, FAIL_AT + 1), steps), first_log.lines

    # Attempt 2 continued the graph after item FAIL_AT (not from zero) and did each later item once.
    second = kube.text(f"/api/v1/namespaces/{namespace}/pods/{second_pod}/log?container=agent").splitlines()
    print(f"--- {second_pod} ---", *second, sep="\n")
    assert second[0] == f"attempt 2: resuming {run} after item {FAIL_AT}", second
    assert item_lines(second) == running_totals(range(FAIL_AT + 1, steps + 1), steps), second
    expected = steps * (steps + 1) // 2
    assert second[-1] == f"done: {steps} items, total={expected} (expected total={expected})", second
    assert not any("failing on purpose" in line for line in second), second

    # The thread in the store: one checkpoint per super-step, none lost or repeated (LangGraph's steps -1
    # the input, 0 its start, 1 plan, 2..steps+1 the items, steps+2 summarize), every item once; those up
    # to item FAIL_AT's written by attempt 1, the ones after by attempt 2.
    rows = asyncio.run(thread_history(pg_dsn, run))
    for step, attempt, graph_step, done in rows:
        print(f"checkpoint step={step} attempt={attempt} graph step={graph_step} done={done}")
    assert [step for step, *_ in rows] == list(range(steps + 4)), rows
    assert [graph_step for _s, _a, graph_step, _d in rows] == list(range(-1, steps + 3)), rows
    assert [done for *_, done in rows] == [
        [],
        [],
        [],
        *(list(range(1, n + 1)) for n in range(1, steps + 1)),
        list(range(1, steps + 1)),
    ], rows
    assert [attempt for _s, attempt, *_ in rows] == [1] * (FAIL_AT + 3) + [2] * (steps - FAIL_AT + 1), rows
    assert status["resumeStep"] == FAIL_AT + 2, status  # the store step of item FAIL_AT's checkpoint

    final = asyncio.run(final_values(pg_dsn, run))
    assert final["done"] == final["todo"] == list(range(1, steps + 1)), final
    assert final["total"] == expected, final
    assert final["summary"] == f"{steps} items, total={expected}", final
    took = time.monotonic() - started
    print(f"attempt 2 resumed after item {FAIL_AT}; total={final['total']}; {took:.1f}s from the apply")
