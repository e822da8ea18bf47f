"""Every failure cause recovers from the last checkpoint; every terminal reason ends Failed with a clear
condition; the backoff is exponential and capped as recorded in status."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from stratarouter_dev.cluster import _node_manifest
from stratarouter_dev.kubeapi import KubeApi
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, parse_time, template, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.fixture
async def workload(pg_dsn: str) -> AsyncIterator[StateManager]:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        yield store


@pytest.fixture
def own_node(kube: KubeApi) -> Any:
    """A kwok node of the test's own (deleting a shared node would hurt other tests)."""
    name = f"lost-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/nodes", _node_manifest(name))

    def ready() -> bool:
        node = kube.get(f"/api/v1/nodes/{name}")
        conditions = (node.get("status") or {}).get("conditions") or []
        return any(c["type"] == "Ready" and c["status"] == "True" for c in conditions)

    wait_until(f"node {name} Ready", ready, timeout=30)
    yield name
    if kube.exists(f"/api/v1/nodes/{name}"):
        kube.request("DELETE", f"/api/v1/nodes/{name}")


async def _running_with_checkpoints(executions: Executions, workload: StateManager, name: str) -> None:
    """Wait for Running, then checkpoint steps 0..2 as attempt 1 (before the failure is caused)."""
    executions.wait_phase(name, "Running")
    for step in range(3):
        await workload.checkpoint(f"{executions.namespace}/{name}", step, {"step": step}, attempt=1)


def _recovers(executions: Executions, name: str, cause: str) -> dict[str, Any]:
    """Wait for attempt 2 resuming at step 2, the only live pod."""
    status = executions.wait_status(name, "attempt 2", lambda s: s.get("attempt") == 2)
    assert status["recovery"]["reason"] == cause
    assert status["restarts"] == 1
    assert executions.env(f"{name}-a2")["STRATA_RESUME_STEP"] == "2"
    executions.wait_phase(name, "Running")
    assert executions.live_pods(name) == [f"{name}-a2"]
    return status


async def test_exit_code_failure_recovers(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("ec", recovery={"backoffSeconds": 0})
    await _running_with_checkpoints(executions, workload, "ec")
    executions.fail("ec-a1", exit_code=3)
    status = _recovers(executions, "ec", "ExitCode")
    assert status["recovery"]["exitCode"] == 3


async def test_eviction_recovers(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("ev", recovery={"backoffSeconds": 0})
    await _running_with_checkpoints(executions, workload, "ev")
    executions.evict("ev-a1")
    _recovers(executions, "ev", "Evicted")


async def test_pod_deleted_by_someone_else_recovers(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("del", recovery={"backoffSeconds": 0})
    await _running_with_checkpoints(executions, workload, "del")
    executions.kube.request("DELETE", executions.pod_path("del-a1"))
    _recovers(executions, "del", "PodDeleted")


async def test_node_deleted_recovers(
    operator: OperatorProcess, executions: Executions, workload: StateManager, own_node: str
) -> None:
    pinned = template()
    pinned["spec"]["nodeName"] = own_node
    executions.create("node", template=pinned, recovery={"backoffSeconds": 0})
    await _running_with_checkpoints(executions, workload, "node")
    # the replacement must not be pinned to the dead node: unpin before the node goes
    executions.patch_spec("node", {"template": {"spec": {"nodeName": None}}})
    executions.kube.request("DELETE", f"/api/v1/nodes/{own_node}")
    _recovers(executions, "node", "NodeLost")


def test_non_retryable_exit_code_fails(operator: OperatorProcess, executions: Executions) -> None:
    executions.create("fatal", recovery={"nonRetryableExitCodes": [42], "backoffSeconds": 0})
    executions.wait_phase("fatal", "Running")
    executions.fail("fatal-a1", exit_code=42)
    status = executions.wait_phase("fatal", "Failed")
    assert status["reason"] == "NonRetryableExitCode"
    assert status["attempt"] == 1
    failed = executions.condition("fatal", "Failed")
    assert failed is not None
    assert failed["status"] == "True"
    assert failed["reason"] == "NonRetryableExitCode"
    assert "42" in failed["message"]
    assert executions.pods("fatal")[0]["metadata"]["name"] == "fatal-a1", "no new attempt"


async def test_backoff_limit_exceeded(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    executions.create("limit", recovery={"maxRestarts": 1, "backoffSeconds": 0})
    executions.wait_phase("limit", "Running")
    executions.fail("limit-a1")
    executions.wait_status("limit", "attempt 2", lambda s: s.get("attempt") == 2)
    executions.fail("limit-a2")
    status = executions.wait_phase("limit", "Failed")
    assert status["reason"] == "BackoffLimitExceeded"
    assert status["restarts"] == 1
    assert "maxRestarts (1)" in status["message"]
    stored = await workload.get_execution(f"{executions.namespace}/limit")
    assert stored is not None
    assert stored.status == "failed"
    assert "BackoffLimitExceeded" in (stored.error or "")
    assert "BackoffLimitExceeded" in executions.event_reasons("limit")


def test_invalid_template_fails_without_retry_loop(operator: OperatorProcess, executions: Executions) -> None:
    # passes the CRD schema (resources are passed through) but the API server refuses the pod
    bad = template(resources={"limits": {"cpu": "a lot"}})
    executions.create("bad", template=bad)
    status = executions.wait_phase("bad", "Failed")
    assert status["reason"] == "InvalidTemplate"
    assert "the pod was rejected" in status["message"]
    assert "quantities must match" in status["message"]
    failed = executions.condition("bad", "Failed")
    assert failed is not None
    assert failed["reason"] == "InvalidTemplate"
    assert executions.pods("bad") == []
    first = status["completionTime"]
    # no retry loop: nothing changes afterwards
    executions.patch_spec("bad", {"suspend": False})
    assert executions.status("bad")["completionTime"] == first
    assert executions.status("bad")["phase"] == "Failed"


def test_backoff_is_exponential_and_capped(operator: OperatorProcess, executions: Executions) -> None:
    executions.create("slow", recovery={"backoffSeconds": 1, "maxBackoffSeconds": 1, "maxRestarts": 3})
    executions.wait_phase("slow", "Running")
    executions.fail("slow-a1")
    first = executions.wait_status("slow", "attempt 2", lambda s: s.get("attempt") == 2)["recovery"]
    executions.wait_phase("slow", "Running")
    executions.fail("slow-a2")
    second = executions.wait_status("slow", "attempt 3", lambda s: s.get("attempt") == 3)["recovery"]
    assert first["backoffSeconds"] == 1
    assert second["backoffSeconds"] == 1, "2 * 1s capped at maxBackoffSeconds=1"
    for rec in (first, second):
        waited = (parse_time(rec["replacedAt"]) - parse_time(rec["failedAt"])).total_seconds()
        assert waited >= rec["backoffSeconds"]


def test_backoff_doubles(operator: OperatorProcess, executions: Executions) -> None:
    executions.create("dbl", recovery={"backoffSeconds": 1, "maxBackoffSeconds": 10, "maxRestarts": 3})
    executions.wait_phase("dbl", "Running")
    executions.fail("dbl-a1")
    executions.wait_status("dbl", "attempt 2", lambda s: s.get("attempt") == 2)
    executions.wait_phase("dbl", "Running")
    executions.fail("dbl-a2")
    recovering = executions.wait_status(
        "dbl", "second failure seen", lambda s: (s.get("recovery") or {}).get("failedAttempt") == 2
    )
    assert recovering["recovery"]["backoffSeconds"] == 2
    assert recovering["phase"] == "Recovering"
    done = executions.wait_status("dbl", "attempt 3", lambda s: s.get("attempt") == 3)["recovery"]
    waited = (parse_time(done["replacedAt"]) - parse_time(done["failedAt"])).total_seconds()
    assert waited >= 2


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"template": {"spec": {"containers": []}}}, "spec.template.spec.containers"),
        (
            {"template": {"spec": {"containers": [{"name": "a", "image": "i"}], "restartPolicy": "Always"}}},
            'Unsupported value: "Always"',
        ),
        ({"recovery": {"backoffSeconds": 100, "maxBackoffSeconds": 10}}, "maxBackoffSeconds must be >="),
        ({"recovery": {"maxRestarts": -1}}, "spec.recovery.maxRestarts"),
        ({"recovery": {"nonRetryableExitCodes": [0]}}, "nonRetryableExitCodes"),
        ({"recovery": {"keepFailedPods": -1}}, "spec.recovery.keepFailedPods"),
        ({"recovery": {"keepFailedPods": 101}}, "spec.recovery.keepFailedPods"),
        ({"checkpoint": {"retention": 0}}, "spec.checkpoint.retention"),
        ({"restoreFrom": {"snapshot": "Not_A_Name"}}, "spec.restoreFrom.snapshot"),
    ],
)
def test_schema_rejects_invalid_executions(
    executions: Executions, spec: dict[str, Any], message: str
) -> None:
    from stratarouter_dev.kubeapi import KubeApiError

    body = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": "invalid"},
        "spec": {"template": template(), **spec},
    }
    with pytest.raises(KubeApiError) as err:
        executions.kube.request("POST", executions.path(), body)
    assert err.value.status == 422
    assert message in str(err.value), str(err.value)


def test_snapshot_spec_is_immutable(executions: Executions) -> None:
    from stratarouter_dev.kubeapi import KubeApiError

    path = f"/apis/stratarouter.io/v1alpha1/namespaces/{executions.namespace}/snapshots"
    executions.kube.request(
        "POST",
        path,
        {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": "Snapshot",
            "metadata": {"name": "s"},
            "spec": {"executionName": "train"},
        },
    )
    with pytest.raises(KubeApiError) as err:
        executions.kube.request(
            "PATCH", f"{path}/s", {"spec": {"step": 3}}, content_type="application/merge-patch+json"
        )
    assert "Snapshot spec is immutable" in str(err.value)
    wait_until("snapshot still there", lambda: executions.kube.exists(f"{path}/s"))
