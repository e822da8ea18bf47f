"""A reconcile pass patches an Execution's status at most once, against an in-memory API server and store.

Each scenario drives real passes (``lifecycle.reconcile``) over a fake of the operator's Kube wrapper that
applies merge patches as the API server does, and over the SDK's memory store.
"""

from __future__ import annotations

import copy
from typing import Any

import pytest
from kubernetes_asyncio.client.exceptions import ApiException

from stratarouter_runtime.operator.context import Lifecycle
from stratarouter_runtime.operator.lifecycle import reconcile
from stratarouter_runtime.operator.settings import OperatorSettings
from stratarouter_runtime.state import StateManager

NS, NAME = "team", "job"


def merge(target: dict[str, Any], patch: dict[str, Any]) -> dict[str, Any]:
    """RFC 7386 merge patch."""
    out = dict(target)
    for key, value in patch.items():
        if value is None:
            out.pop(key, None)
        elif isinstance(value, dict) and isinstance(out.get(key), dict):
            out[key] = merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


class FakeKube:
    """The Kube wrapper's calls, on one Execution and its pods held in memory."""

    def __init__(self, spec: dict[str, Any]) -> None:
        self.execution: dict[str, Any] = {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": "Execution",
            "metadata": {"namespace": NS, "name": NAME, "uid": "u-1", "generation": 1},
            "spec": spec,
        }
        self.pods: dict[str, dict[str, Any]] = {}
        self.patches: list[dict[str, Any]] = []
        self.uids = 0

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.execution)

    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        self.patches.append(status)
        self.execution["status"] = merge(self.execution.get("status") or {}, status)
        return copy.deepcopy(self.execution)

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return copy.deepcopy(self.pods.get(name))

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        return [copy.deepcopy(pod) for pod in self.pods.values()]

    async def create_pod(self, namespace: str, pod: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        name = pod["metadata"]["name"]
        if name in self.pods:
            return copy.deepcopy(self.pods[name]), False
        self.uids += 1
        created = merge(pod, {"metadata": {**pod["metadata"], "uid": f"pod-{self.uids}"}})
        self.pods[name] = merge(created, {"status": {"phase": "Pending"}})
        return copy.deepcopy(self.pods[name]), True

    async def delete_pod(
        self, namespace: str, name: str, *, grace_seconds: int | None = None, uid: str | None = None
    ) -> bool:
        return self.pods.pop(name, None) is not None

    async def wait_pods_gone(self, namespace: str, names: list[str], *, seconds: float) -> list[str]:
        return [name for name in names if name in self.pods]

    async def node_exists(self, name: str) -> bool:
        return True

    async def post_event(self, namespace: str, event: dict[str, Any]) -> None:
        return None

    def set_pod_phase(self, name: str, phase: str, exit_code: int | None = None) -> None:
        status: dict[str, Any] = {"phase": phase}
        if exit_code is not None:
            terminated = {"exitCode": exit_code, "reason": "Error"}
            status["containerStatuses"] = [{"name": "main", "state": {"terminated": terminated}}]
        self.pods[name]["status"] = status


SPEC: dict[str, Any] = {
    "template": {"spec": {"containers": [{"name": "main", "image": "busybox"}]}},
    "recovery": {"backoffSeconds": 0},
}


@pytest.fixture
async def world() -> Any:
    store = StateManager(backend="memory")
    kube = FakeKube(copy.deepcopy(SPEC))
    settings = OperatorSettings.from_env({"STRATA_DB_URL": "postgresql://unused/db"})
    lc = Lifecycle(kube=kube, store=store, settings=settings)  # type: ignore[arg-type]
    yield kube, lc, store
    await store.close()


async def one_pass(kube: FakeKube, lc: Lifecycle) -> tuple[float | None, list[dict[str, Any]]]:
    """Run one pass; its due time and the status patches it sent."""
    before = len(kube.patches)
    due = await reconcile(lc, NS, NAME)
    return due, kube.patches[before:]


async def test_each_pass_of_a_run_with_a_recovery_patches_status_once(world: Any) -> None:
    kube, lc, _ = world
    due, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    (first,) = patches
    assert (first["phase"], first["attempt"], first["podName"]) == ("Pending", 1, "job-a1")
    assert (first["podUID"], first["observedGeneration"]) == ("pod-1", 1)
    assert [c["type"] for c in first["conditions"]] == ["Running"]

    assert await one_pass(kube, lc) == (None, []), "nothing changed: no patch"

    kube.set_pod_phase("job-a1", "Running")
    _, patches = await one_pass(kube, lc)
    assert [p["phase"] for p in patches] == ["Running"]

    kube.set_pod_phase("job-a1", "Failed", exit_code=3)
    due, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    assert patches[0]["phase"] == "Recovering"
    assert patches[0]["recovery"]["failedAttempt"] == 1
    assert due == 0.0, "the replacement is made by the next pass, once the failure is in status"
    assert set(kube.pods) == {"job-a1"}

    _, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    assert (patches[0]["attempt"], patches[0]["restarts"], patches[0]["podName"]) == (2, 1, "job-a2")
    assert patches[0]["recovery"]["replacedAt"]
    assert "job-a2" in kube.pods

    kube.set_pod_phase("job-a2", "Succeeded", exit_code=0)
    _, patches = await one_pass(kube, lc)
    assert [p["phase"] for p in patches] == ["Succeeded"]
    assert await one_pass(kube, lc) == (None, [])


async def test_suspend_records_first_then_stops_the_pod_in_the_next_pass(world: Any) -> None:
    kube, lc, _ = world
    await one_pass(kube, lc)
    kube.set_pod_phase("job-a1", "Running")
    await one_pass(kube, lc)
    kube.execution["spec"]["suspend"] = True
    kube.execution["metadata"]["generation"] = 2

    due, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    assert (patches[0]["phase"], patches[0]["observedGeneration"]) == ("Suspended", 2)
    assert "job-a1" in kube.pods, "status says Suspended before the pod is stopped"
    assert due == 0.0

    _, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    assert (patches[0]["podName"], patches[0]["message"]) == (None, "suspended; state kept")
    assert kube.pods == {}


async def test_a_restore_and_an_invalid_spec_patch_once(world: Any) -> None:
    kube, lc, store = world
    await one_pass(kube, lc)
    kube.set_pod_phase("job-a1", "Running")
    await one_pass(kube, lc)
    for step in range(3):
        await store.checkpoint(f"{NS}/{NAME}", step, {"step": step}, attempt=1)
    await store.flush()
    await store.create_snapshot(f"{NS}/{NAME}", "s1")
    kube.execution["spec"]["restoreFrom"] = {"snapshot": "s1"}

    _, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    restored = patches[0]
    assert (restored["phase"], restored["attempt"], restored["resumeStep"]) == ("Pending", 2, 2)
    assert (restored["restoredFrom"]["snapshot"], restored["lastCheckpoint"]["step"]) == ("s1", 2)

    kube.execution["spec"]["recovery"] = {"backoffSeconds": 10, "maxBackoffSeconds": 1}
    _, patches = await one_pass(kube, lc)
    assert len(patches) == 1
    assert (patches[0]["phase"], patches[0]["reason"]) == ("Failed", "InvalidSpec")
    assert await one_pass(kube, lc) == (None, [])


async def test_a_pod_the_api_server_rejects_fails_the_run_in_one_patch(world: Any) -> None:
    kube, lc, store = world

    async def rejected(namespace: str, pod: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        raise ApiException(status=422, reason="Unprocessable Entity")

    kube.create_pod = rejected
    due, patches = await one_pass(kube, lc)
    assert due is None
    assert len(patches) == 1
    assert (patches[0]["phase"], patches[0]["reason"]) == ("Failed", "InvalidTemplate")
    stored = await store.get_execution(f"{NS}/{NAME}")
    assert stored is not None
    assert stored.status == "failed"
    assert await one_pass(kube, lc) == (None, [])
