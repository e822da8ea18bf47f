"""Status never contradicts the store: after a restore STEP is the snapshot's step, and while a recovery
waits its STEP and message say the step the next attempt resumes from (not what a lagging coalesced
patch last wrote)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import MERGE_PATCH, Executions, OperatorProcess
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[StateManager]:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as manager:
        yield manager


def step_column(cluster: Any, namespace: str, name: str) -> tuple[str, str]:
    """(PHASE, STEP) as ``kubectl get executions`` prints them."""
    out = cluster.kubectl("get", "executions", "-n", namespace, name)
    header, row = out.splitlines()[:2]
    cells = dict(zip(header.split(), row.split(), strict=False))
    return cells["PHASE"], cells["STEP"]


async def test_after_a_restore_status_shows_the_restored_step(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, store: StateManager, cluster: Any
) -> None:
    ns = executions.namespace
    pod, _ = running_execution(executions, "model")
    token = token_for(kube, executions, pod)
    for step in range(1, 21):
        answer = call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"step": step}})
        assert answer[0] == 200, answer
        if step == 5:
            await store.create_snapshot(f"{ns}/model", "model-s5")
    executions.wait_status(
        "model", "step 20 mirrored", lambda s: (s.get("lastCheckpoint") or {}).get("step") == 20
    )

    executions.patch_spec("model", {"restoreFrom": {"snapshot": "model-s5"}})
    status = executions.wait_status("model", "restored", lambda s: s.get("restoredFrom") is not None)
    # the same patch that says "restored" says where the run now is
    assert status["restoredFrom"]["step"] == 5
    assert status["lastCheckpoint"]["step"] == 5, status
    latest = await store.get_latest_checkpoint(f"{ns}/model")
    assert latest is not None
    assert latest.step == 5
    assert status["lastCheckpoint"]["sizeBytes"] == latest.size_bytes
    assert step_column(cluster, ns, "model")[1] == "5"
    await asyncio.sleep(2.5)  # longer than the coalescer's interval: no late patch of the rewound step
    assert executions.status("model")["lastCheckpoint"]["step"] == 5

    # the next attempt's checkpoints are mirrored again, every field of them
    executions.wait_pod_running("model-a2")
    token = token_for(kube, executions, "model-a2")
    state = {"step": 6, "pad": "x" * 100}
    assert call(operator, "POST", "/v1/checkpoint", token, {"step": 6, "state": state})[0] == 200
    status = executions.wait_status(
        "model", "step 6 mirrored", lambda s: (s.get("lastCheckpoint") or {}).get("step") == 6
    )
    latest = await store.get_latest_checkpoint(f"{ns}/model")
    assert latest is not None
    assert status["lastCheckpoint"]["sizeBytes"] == latest.size_bytes


async def test_while_recovering_status_shows_the_step_the_next_attempt_resumes_from(
    operator: OperatorProcess, executions: Executions, store: StateManager, cluster: Any
) -> None:
    ns = executions.namespace
    executions.create("train", recovery={"backoffSeconds": 3, "maxBackoffSeconds": 3})
    executions.wait_phase("train", "Running")
    for step in range(7):
        await store.checkpoint(f"{ns}/train", step, {"step": step}, attempt=1)
    # the coalescer's last patch was step 4; steps 5 and 6 were still on their way when the pod died
    executions.kube.request(
        "PATCH",
        executions.path("train") + "/status",
        {"status": {"lastCheckpoint": {"step": 4, "time": "2026-01-01T00:00:00Z", "sizeBytes": 10}}},
        content_type=MERGE_PATCH,
    )
    executions.wait_status(
        "train", "step 4 in status", lambda s: s.get("lastCheckpoint", {}).get("step") == 4
    )
    executions.fail("train-a1", exit_code=137)

    status = executions.wait_phase("train", "Recovering")
    assert status["lastCheckpoint"]["step"] == 6, status
    assert status["message"].endswith("attempt 2 in 3s, from step 6"), status["message"]
    phase, step = step_column(cluster, ns, "train")
    assert step == "6", (phase, step)

    status = executions.wait_status("train", "attempt 2", lambda s: s.get("attempt") == 2)
    assert executions.env("train-a2")["STRATA_RESUME_STEP"] == "6"
    assert status["recovery"]["resumeStep"] == 6
    assert status["lastCheckpoint"]["step"] == 6
    latest = await store.get_latest_checkpoint(f"{ns}/train")
    assert latest is not None
    assert status["lastCheckpoint"]["sizeBytes"] == latest.size_bytes


async def test_a_checkpoint_pending_in_the_coalescer_is_not_mirrored_over_a_restore(
    operator_process: OperatorProcess, executions: Executions, kube: KubeApi, store: StateManager
) -> None:
    """The old attempt's last checkpoints are still waiting for their status patch (a long interval here;
    under the patch budget, any lag) when the restore rewinds the run: they must not land afterwards."""
    operator_process.env["STRATA_STATUS_PATCH_INTERVAL_SECONDS"] = "6"
    operator_process.start()
    ns = executions.namespace
    pod, _ = running_execution(executions, "rewind")
    token = token_for(kube, executions, pod)
    assert (
        call(operator_process, "POST", "/v1/checkpoint", token, {"step": 1, "state": {"step": 1}})[0] == 200
    )
    executions.wait_status(
        "rewind", "step 1 mirrored", lambda s: (s.get("lastCheckpoint") or {}).get("step") == 1
    )
    for step in range(2, 21):  # pending in the coalescer for the rest of its interval
        assert (
            call(operator_process, "POST", "/v1/checkpoint", token, {"step": step, "state": {"step": step}})[
                0
            ]
            == 200
        )
    await store.create_snapshot(f"{ns}/rewind", "rewind-s5", step=5)
    executions.patch_spec("rewind", {"restoreFrom": {"snapshot": "rewind-s5"}})
    status = executions.wait_status("rewind", "restored", lambda s: s.get("restoredFrom") is not None)
    assert status["lastCheckpoint"]["step"] == 5
    executions.wait_pod_running("rewind-a2")
    token = token_for(kube, executions, "rewind-a2")
    assert (
        call(operator_process, "POST", "/v1/checkpoint", token, {"step": 6, "state": {"step": 6}})[0] == 200
    )
    await asyncio.sleep(8)  # past the interval: whatever was pending has been sent
    latest = await store.get_latest_checkpoint(f"{ns}/rewind")
    assert latest is not None
    assert latest.step == 6
    assert executions.status("rewind")["lastCheckpoint"]["step"] == 6
