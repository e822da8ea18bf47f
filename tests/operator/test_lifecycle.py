"""The full loop on a real API server and PostgreSQL: create -> Running -> pod fails -> attempt 2 resumes
from the last checkpoint -> Succeeded; suspend/resume; declarative restore."""

from __future__ import annotations

from collections.abc import AsyncIterator
from typing import Any

import pytest

from stratarouter_runtime.state import StateManager
from stratarouter_runtime.state.errors import StaleAttemptError
from tests.operator.conftest import Executions, OperatorProcess, parse_time, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.fixture
async def workload(pg_dsn: str) -> AsyncIterator[StateManager]:
    """The test's stand-in for the pod's process: writes checkpoints straight into the same store."""
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        yield store


async def test_full_loop_resumes_from_last_checkpoint(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("train", recovery={"backoffSeconds": 1, "maxRestarts": 3})
    executions.wait_pod_running("train-a1")
    env = executions.env("train-a1")
    assert env["STRATA_EXECUTION_ID"] == f"{ns}/train"
    assert env["STRATA_ATTEMPT"] == "1"
    assert env["STRATA_RESUME_STEP"] == ""
    assert env["STRATA_API_URL"] == operator.env["STRATA_API_URL_FOR_PODS"]
    assert env["STRATA_TOKEN_FILE"] == "/var/run/secrets/stratarouter/token"
    pod = executions.pod("train-a1")
    assert pod is not None
    assert pod["metadata"]["ownerReferences"][0]["kind"] == "Execution"
    status = executions.wait_phase("train", "Running")
    assert status["podName"] == "train-a1"
    assert status["attempt"] == 1
    assert status["restarts"] == 0
    assert status["startTime"]

    for step in range(5):
        await workload.checkpoint(f"{ns}/train", step, {"step": step, "loss": 1.0 / (step + 1)}, attempt=1)
    executions.fail("train-a1", exit_code=1)

    status = executions.wait_status("train", "attempt 2", lambda s: s.get("attempt") == 2)
    assert status["restarts"] == 1
    assert status["podName"] == "train-a2"
    env = executions.env("train-a2")
    assert env["STRATA_ATTEMPT"] == "2"
    assert env["STRATA_RESUME_STEP"] == "4"
    failed = executions.pod("train-a1")
    assert failed is not None, "the failed attempt's pod is kept (recovery.keepFailedPods) for its logs"
    assert failed["status"]["phase"] == "Failed"
    assert executions.live_pods("train") == ["train-a2"]
    recovery = status["recovery"]
    assert recovery["reason"] == "ExitCode"
    assert recovery["exitCode"] == 1
    assert recovery["resumeStep"] == 4
    assert recovery["backoffSeconds"] == 1
    # the recorded wait is at least the configured backoff (both times come from the operator's clock)
    waited = (parse_time(recovery["replacedAt"]) - parse_time(recovery["failedAt"])).total_seconds()
    assert waited >= 1.0

    executions.wait_phase("train", "Running")
    recovering = executions.condition("train", "Recovering")
    assert recovering is not None
    assert recovering["status"] == "False"
    # the zombie attempt 1 is fenced off
    with pytest.raises(StaleAttemptError):
        await workload.checkpoint(f"{ns}/train", 99, {"zombie": True}, attempt=1)
    await workload.checkpoint(f"{ns}/train", 5, {"step": 5}, attempt=2)

    executions.succeed("train-a2")
    status = executions.wait_phase("train", "Succeeded")
    assert status["completionTime"]
    complete = executions.condition("train", "Complete")
    assert complete is not None
    assert complete["status"] == "True"
    assert complete["observedGeneration"] == 1
    stored = await workload.get_execution(f"{ns}/train")
    assert stored is not None
    assert stored.status == "completed"
    assert stored.attempt == 2
    history = await workload.get_history(f"{ns}/train")
    assert [c.step for c in history] == [0, 1, 2, 3, 4, 5]
    reasons = wait_until(
        "Recovering and Recovered events",
        lambda: (r := executions.event_reasons("train")) and {"Recovering", "Recovered"} <= set(r) and r,
    )
    assert reasons.index("Recovering") < reasons.index("Recovered")
    metrics = operator.metrics()
    assert 'stratarouter_recoveries_total{reason="ExitCode"} 1.0' in metrics
    assert 'stratarouter_executions{phase="Succeeded"} 1.0' in metrics
    assert "stratarouter_recovery_seconds_count 1.0" in metrics


def test_kubectl_get_executions_columns(
    operator: OperatorProcess, executions: Executions, cluster: Any
) -> None:
    ns = executions.namespace
    executions.create("train")
    executions.create("etl", recovery={"backoffSeconds": 0})
    executions.create("report")
    executions.create("held", suspend=True)
    for name in ("train", "etl", "report"):
        executions.wait_phase(name, "Running")
    # what the checkpoint API's status coalescer writes
    executions.kube.request(
        "PATCH",
        executions.path("train") + "/status",
        {"status": {"lastCheckpoint": {"step": 1200, "time": "2026-01-01T00:00:00Z", "sizeBytes": 5120}}},
        content_type="application/merge-patch+json",
    )
    executions.fail("etl-a1")
    executions.wait_status("etl", "attempt 2 running", lambda s: s.get("attempt") == 2)
    executions.wait_phase("etl", "Running")
    executions.succeed("report-a1")
    executions.wait_phase("report", "Succeeded")
    executions.wait_phase("held", "Suspended")

    out = cluster.kubectl("get", "executions", "-n", ns, "--sort-by=.metadata.name")
    print(out)
    lines = out.splitlines()
    assert lines[0].split() == ["NAME", "PHASE", "STEP", "RESTARTS", "POD", "AGE"]
    rows = {line.split()[0]: line.split() for line in lines[1:]}
    assert rows["train"][1:5] == ["Running", "1200", "0", "train-a1"]
    assert rows["etl"][1:2] == ["Running"]
    assert rows["etl"][2:4] == ["1", "etl-a2"], "STEP is empty: nothing checkpointed through the API"
    assert rows["report"][1] == "Succeeded"
    assert rows["held"][1] == "Suspended"
    wide = cluster.kubectl("get", "executions", "-n", ns, "-o", "wide", "--sort-by=.metadata.name")
    print(wide)
    assert wide.splitlines()[0].split()[-3:] == ["ATTEMPT", "REASON", "MESSAGE"]
    # short name and category work too
    assert "train" in cluster.kubectl("get", "exec", "-n", ns)
    assert "train" in cluster.kubectl("get", "stratarouter", "-n", ns)


async def test_suspend_keeps_state_and_resume_continues(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("job")
    executions.wait_phase("job", "Running")
    for step in range(4):
        await workload.checkpoint(f"{ns}/job", step, {"step": step}, attempt=1)

    executions.patch_spec("job", {"suspend": True})
    executions.wait_phase("job", "Suspended")
    wait_until("no pods while suspended", lambda: executions.pods("job") == [])
    suspended = executions.condition("job", "Suspended")
    assert suspended is not None
    assert suspended["status"] == "True"
    assert await workload.load(f"{ns}/job") == {"step": 3}
    # the stopping pod stays status.podName (its last checkpoint is accepted) until it is gone
    status = executions.wait_status("job", "podName cleared", lambda s: "podName" not in s)
    assert status["phase"] == "Suspended"
    assert status["message"] == "suspended; state kept"

    executions.patch_spec("job", {"suspend": False})
    status = executions.wait_status("job", "attempt 2 after resume", lambda s: s.get("attempt") == 2)
    assert status["restarts"] == 0, "a resume is not a recovery"
    assert executions.env("job-a2")["STRATA_RESUME_STEP"] == "3"
    executions.wait_phase("job", "Running")
    assert executions.live_pods("job") == ["job-a2"]
    assert {"Suspended", "Resumed"} <= set(executions.event_reasons("job"))


async def test_restore_from_snapshot_once_per_change(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("model")
    executions.wait_phase("model", "Running")
    for step in range(6):
        await workload.checkpoint(f"{ns}/model", step, {"step": step}, attempt=1)
        if step == 2:
            await workload.create_snapshot(f"{ns}/model", "model-s2")

    executions.patch_spec("model", {"restoreFrom": {"snapshot": "model-s2"}})
    status = executions.wait_status("model", "restored", lambda s: s.get("restoredFrom") is not None)
    assert status["restoredFrom"]["snapshot"] == "model-s2"
    assert status["restoredFrom"]["step"] == 2
    assert status["attempt"] == 2
    assert status["restarts"] == 0
    assert executions.env("model-a2")["STRATA_RESUME_STEP"] == "2"
    assert await workload.load(f"{ns}/model") == {"step": 2}
    executions.wait_phase("model", "Running")
    assert executions.live_pods("model") == ["model-a2"]
    restored = executions.condition("model", "Restored")
    assert restored is not None
    assert restored["status"] == "True"

    # another spec change does not restore again
    changed = executions.patch_spec("model", {"recovery": {"maxRestarts": 5}})
    generation = changed["metadata"]["generation"]
    executions.wait_status(
        "model", "the spec change observed", lambda s: s.get("observedGeneration") == generation
    )
    await workload.checkpoint(f"{ns}/model", 3, {"step": 3}, attempt=2)
    executions.wait_phase("model", "Running")
    assert executions.status("model")["attempt"] == 2
    assert await workload.load(f"{ns}/model") == {"step": 3}
    assert "Restored" in executions.event_reasons("model")


async def test_restore_waits_for_a_missing_snapshot(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("late")
    executions.wait_phase("late", "Running")
    await workload.checkpoint(f"{ns}/late", 0, {"step": 0}, attempt=1)
    executions.patch_spec("late", {"restoreFrom": {"snapshot": "not-yet"}})
    wait_until(
        "Restored=False SnapshotNotFound",
        lambda: (c := executions.condition("late", "Restored")) and c["reason"] == "SnapshotNotFound",
    )
    status = executions.status("late")
    assert status["phase"] == "Running", "the running attempt is left alone"
    assert status["attempt"] == 1
    assert "not-yet" in status["message"]
    # the snapshot appears later (GitOps applied both at once): the restore then happens by itself
    await workload.create_snapshot(f"{ns}/late", "not-yet")
    status = executions.wait_status(
        "late", "restored", lambda s: (s.get("restoredFrom") or {}).get("snapshot") == "not-yet", timeout=30
    )
    assert status["attempt"] == 2
    assert executions.env("late-a2")["STRATA_RESUME_STEP"] == "0"


def test_suspended_from_creation_starts_on_unsuspend(
    operator: OperatorProcess, executions: Executions
) -> None:
    executions.create("held", suspend=True)
    status = executions.wait_phase("held", "Suspended")
    assert status.get("attempt", 0) == 0
    assert executions.pods("held") == []
    executions.patch_spec("held", {"suspend": False})
    status = executions.wait_status("held", "first attempt", lambda s: s.get("attempt") == 1)
    assert executions.env("held-a1")["STRATA_RESUME_STEP"] == ""
    executions.wait_phase("held", "Running")
