"""Snapshot resources on the real API server: copy, Ready/Failed/Pending, Delete vs Retain."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import CustomObjects, Executions, OperatorProcess, wait_until
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


class Snapshots(CustomObjects):
    kind = "Snapshot"
    plural = "snapshots"

    def create(self, name: str, **spec: Any) -> None:
        self.post(name, spec)

    def delete_and_wait(self, name: str) -> None:
        self.delete(name)
        wait_until(f"snapshot {name} gone", lambda: self.get(name) is None)

    def events(self, name: str) -> list[str]:
        items = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/events?fieldSelector=involvedObject.name%3D{name}"
        ).get("items", [])
        return [e["reason"] for e in items]


def stored(pg_dsn: str, execution_id: str, name: str) -> Any:
    async def read() -> Any:
        async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
            return await store.get_snapshot(execution_id, name)

    return asyncio.run(read())


@pytest.fixture
def snapshots(kube: KubeApi, namespace: str) -> Snapshots:
    return Snapshots(kube, namespace)


@pytest.fixture
def checkpointed(operator: OperatorProcess, executions: Executions, kube: KubeApi) -> str:
    """A running Execution "src" with checkpoints at steps 1..5 (state {"step": n})."""
    pod, _ = running_execution(executions, "src")
    token = token_for(kube, executions, pod)
    for step in range(1, 6):
        status, answer = call(
            operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"step": step}}
        )
        assert status == 200, answer
    return "src"


def test_snapshot_of_latest_and_of_a_step_then_delete_policies(
    checkpointed: str, snapshots: Snapshots, namespace: str, pg_dsn: str
) -> None:
    execution_id = f"{namespace}/{checkpointed}"
    snapshots.create("latest", executionName=checkpointed)
    status = snapshots.wait_phase("latest", "Ready")
    assert (status["step"], status["sizeBytes"]) == (5, len(b'{"step":5}'))
    assert status["createdAt"]
    ready = next(c for c in status["conditions"] if c["type"] == "Ready")
    assert ready["status"] == "True"
    assert "SnapshotCreated" in snapshots.events("latest")

    snapshots.create("at-3", executionName=checkpointed, step=3, deletionPolicy="Retain")
    assert snapshots.wait_phase("at-3", "Ready")["step"] == 3
    assert stored(pg_dsn, execution_id, "at-3").step == 3

    # Delete (default): the stored copy goes with the resource
    assert stored(pg_dsn, execution_id, "latest") is not None
    snapshots.delete_and_wait("latest")
    assert stored(pg_dsn, execution_id, "latest") is None
    # Retain: the stored copy stays
    snapshots.delete_and_wait("at-3")
    kept = stored(pg_dsn, execution_id, "at-3")
    assert kept is not None
    assert kept.step == 3


def test_snapshot_fails_clearly_without_a_retry_loop(
    checkpointed: str, snapshots: Snapshots, kube: KubeApi
) -> None:
    snapshots.create("ghost", executionName="no-such-execution")
    status = snapshots.wait_phase("ghost", "Failed")
    assert "no-such-execution not found" in status["message"]

    snapshots.create("step-zero", executionName=checkpointed, step=0)
    status = snapshots.wait_phase("step-zero", "Failed")
    assert "no checkpoint at step 0" in status["message"]
    assert "SnapshotFailed" in snapshots.events("step-zero")

    # a Failed snapshot is final: a Failed resource can be deleted (no stored copy to remove)
    snapshots.delete_and_wait("ghost")


def test_snapshot_waits_for_the_first_checkpoint(
    operator: OperatorProcess, executions: Executions, snapshots: Snapshots, kube: KubeApi
) -> None:
    """Applied together with its Execution (GitOps), a Snapshot is Pending until there is a checkpoint."""
    pod, _ = running_execution(executions, "fresh")
    snapshots.create("early", executionName="fresh")
    status = snapshots.wait_phase("early", "Pending")
    assert "waiting" in status["message"]
    token = token_for(kube, executions, pod)
    assert call(operator, "POST", "/v1/checkpoint", token, {"step": 7, "state": {"x": 1}})[0] == 200
    status = snapshots.wait_phase("early", "Ready", timeout=60)
    assert status["step"] == 7


def test_snapshot_spec_is_immutable(checkpointed: str, snapshots: Snapshots, kube: KubeApi) -> None:
    snapshots.create("fixed", executionName=checkpointed)
    snapshots.wait_phase("fixed", "Ready")
    with pytest.raises(KubeApiError) as err:
        kube.request(
            "PATCH",
            snapshots.path("fixed"),
            {"spec": {"step": 1}},
            content_type="application/merge-patch+json",
        )
    assert err.value.status == 422
    assert "immutable" in str(err.value)
