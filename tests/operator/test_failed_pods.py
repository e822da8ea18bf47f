"""Failed attempts' pods are kept (``recovery.keepFailedPods``), terminated, for their logs; never a second
live pod; older ones are deleted, and all of them go with the Execution.

Most tests run on kwok pods (the test plays the kubelet); the last one reads a kept pod's logs on the
real node. The first tests are pure: which pods count as terminated.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_runtime.operator.lifecycle import Pass, attempt_of
from tests.operator.conftest import (
    Executions,
    OperatorProcess,
    dump,
    operator_environment,
    template,
    wait_until,
)

Obj = dict[str, Any]


def _pod(phase: str, *, node: str = "n1", deleting: bool = False, **status: Any) -> Obj:
    meta: Obj = {"name": "run-a1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    return {"metadata": meta, "spec": {"nodeName": node}, "status": {"phase": phase, **status}}


@pytest.mark.parametrize(
    ("pod", "lost", "terminated"),
    [
        (_pod("Failed"), set(), True),
        (_pod("Succeeded"), set(), True),
        (_pod("Failed", deleting=True), set(), True),  # not live, though going
        (_pod("Running"), set(), False),
        (_pod("Pending"), set(), False),
        (_pod("Running", deleting=True), set(), False),  # Terminating: its containers may still run
        (_pod("Failed"), {"n1"}, False),  # its node is gone: nobody saw the containers stop
        (_pod("Failed", reason="NodeLost"), set(), False),
        (
            _pod(
                "Failed",
                conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}],
            ),
            set(),
            False,
        ),
    ],
)
def test_only_pods_their_kubelet_saw_stop_are_terminated(pod: Obj, lost: set[str], terminated: bool) -> None:
    assert Pass.terminated(pod, lost) is terminated


def test_attempt_of_a_pod_name() -> None:
    assert attempt_of("run", "run-a12") == 12
    assert attempt_of("run", "run-a") is None
    assert attempt_of("run", "run-a01") is None
    assert attempt_of("run", "other-a1") is None
    assert attempt_of("run", "run-a1x") is None


def _phase(executions: Executions, pod: str) -> str | None:
    body = executions.pod(pod)
    return None if body is None else (body.get("status") or {}).get("phase")


@pytest.mark.cluster
@pytest.mark.postgres
def test_the_newest_failed_pods_are_kept_terminated(
    operator: OperatorProcess, executions: Executions
) -> None:
    executions.create("flaky", recovery={"backoffSeconds": 0, "maxRestarts": 10, "keepFailedPods": 2})
    for attempt in range(1, 5):
        executions.wait_pod_running(f"flaky-a{attempt}")
        executions.fail(f"flaky-a{attempt}", exit_code=attempt)
        executions.wait_status(
            "flaky", f"attempt {attempt + 1}", lambda s, n=attempt + 1: s.get("attempt") == n
        )
        # the failed pod stays, terminated, beside its replacement: never two live pods
        assert _phase(executions, f"flaky-a{attempt}") == "Failed"
        assert executions.live_pods("flaky") == [f"flaky-a{attempt + 1}"]
    executions.wait_phase("flaky", "Running")
    names = sorted(p["metadata"]["name"] for p in executions.pods("flaky"))
    assert names == ["flaky-a3", "flaky-a4", "flaky-a5"], "the 2 newest failed pods and the live one"
    for name in ("flaky-a3", "flaky-a4"):
        pod = executions.pod(name)
        assert pod is not None
        assert pod["status"]["phase"] == "Failed"
        assert not pod["metadata"].get("deletionTimestamp")
        terminated = pod["status"]["containerStatuses"][0]["state"]["terminated"]
        assert terminated["exitCode"] == int(name[-1]), "its exit code is still there to read"
    assert executions.live_pods("flaky") == ["flaky-a5"]

    # all of them go with the Execution (owner references: the garbage collector deletes them)
    for pod in executions.pods("flaky"):
        refs = pod["metadata"]["ownerReferences"]
        assert [(r["kind"], r["name"], r.get("controller")) for r in refs] == [("Execution", "flaky", True)]
    executions.delete("flaky")
    wait_until("the Execution gone", lambda: executions.get("flaky") is None)
    wait_until("every pod garbage-collected", lambda: executions.pods("flaky") == [])


@pytest.mark.cluster
@pytest.mark.postgres
def test_the_default_keeps_three_and_zero_keeps_none(
    operator: OperatorProcess, executions: Executions
) -> None:
    created = executions.create("dflt", recovery={"backoffSeconds": 0})
    assert created["spec"]["recovery"]["keepFailedPods"] == 3, "defaulted by the API server"
    executions.create("none", recovery={"backoffSeconds": 0, "keepFailedPods": 0})
    for name in ("dflt", "none"):
        executions.wait_pod_running(f"{name}-a1")
        executions.fail(f"{name}-a1")
    for name in ("dflt", "none"):
        executions.wait_status(name, "attempt 2", lambda s: s.get("attempt") == 2)
    assert _phase(executions, "dflt-a1") == "Failed"
    wait_until("none-a1 deleted", lambda: executions.pod("none-a1") is None)
    executions.wait_phase("none", "Running")
    assert [p["metadata"]["name"] for p in executions.pods("none")] == ["none-a2"]


@pytest.fixture
def silent_node(kube: KubeApi) -> Iterator[str]:
    """A node with no kubelet (not kwok's): a pod bound to it never runs, and a graceful deletion of it
    is never confirmed, like a pod on a node that stopped answering."""
    name = f"silent-{uuid.uuid4().hex[:8]}"
    kube.request("POST", "/api/v1/nodes", {"apiVersion": "v1", "kind": "Node", "metadata": {"name": name}})
    yield name
    if kube.exists(f"/api/v1/nodes/{name}"):
        kube.request("DELETE", f"/api/v1/nodes/{name}")


@pytest.mark.cluster
@pytest.mark.postgres
def test_a_pod_still_terminating_is_waited_for_and_not_kept(
    operator: OperatorProcess, executions: Executions, silent_node: str
) -> None:
    """A pod deleted by someone else that has not stopped (its kubelet never confirmed it) is live: no
    replacement until it is gone, and it is not counted among the kept ones."""
    pinned = template()
    pinned["spec"]["nodeName"] = silent_node
    executions.create("held", template=pinned, recovery={"backoffSeconds": 0})
    executions.wait_phase("held", "Pending")
    executions.patch_spec("held", {"template": {"spec": {"nodeName": None}}})  # the replacement runs
    path = executions.pod_path("held-a1")
    executions.kube.request("DELETE", path)
    executions.wait_status("held", "the deletion seen", lambda s: s.get("reason") == "PodDeleted")
    time.sleep(3)  # several of the operator's waits for the old pod (backoff 0: it would replace at once)
    pod = executions.pod("held-a1")
    assert pod is not None
    assert pod["metadata"].get("deletionTimestamp")
    assert pod["status"]["phase"] == "Pending", dump(pod)
    assert executions.pod("held-a2") is None, "no replacement while the old pod may still run"
    assert executions.status("held")["attempt"] == 1
    executions.kube.request("DELETE", path + "?gracePeriodSeconds=0")  # the node is declared dead
    executions.wait_status("held", "attempt 2", lambda s: s.get("attempt") == 2)
    executions.wait_phase("held", "Running")
    assert [p["metadata"]["name"] for p in executions.pods("held")] == ["held-a2"]


@pytest.mark.cluster
@pytest.mark.postgres
def test_a_running_pod_of_an_earlier_attempt_is_deleted_not_kept(
    operator: OperatorProcess, executions: Executions
) -> None:
    """A restore replaces a running attempt: its pod is stopped and gone before the next one starts,
    while a failed one before it is kept."""
    executions.create("old", recovery={"backoffSeconds": 0})
    executions.wait_pod_running("old-a1")
    executions.fail("old-a1")
    executions.wait_status("old", "attempt 2", lambda s: s.get("attempt") == 2)
    executions.wait_pod_running("old-a2")
    executions.wait_phase("old", "Running")
    executions.patch_spec("old", {"suspend": True})
    executions.wait_phase("old", "Suspended")
    wait_until("the running pod gone", lambda: executions.pod("old-a2") is None)
    assert _phase(executions, "old-a1") == "Failed", "the failed attempt's pod is kept while suspended"
    assert executions.live_pods("old") == []
    executions.patch_spec("old", {"suspend": False})
    executions.wait_status("old", "attempt 3", lambda s: s.get("attempt") == 3)
    executions.wait_phase("old", "Running")
    assert sorted(p["metadata"]["name"] for p in executions.pods("old")) == ["old-a1", "old-a3"]


# -- the real node -----------------------------------------------------------------------------------


@pytest.fixture
def real_operator_env(cluster: Any, pg_dsn: str, namespace: str) -> dict[str, str]:
    """The operator's API on the real node's bridge gateway (skipped without the real node)."""
    if cluster.node is None:
        pytest.skip("the cluster runs without its real node (STRATA_REAL_NODE=0)")
    return operator_environment(cluster.kubeconfig, pg_dsn, api_host=cluster.node.gateway)


@pytest.mark.cluster
@pytest.mark.postgres
@pytest.mark.timeout(240)
def test_a_kept_failed_pods_logs_are_readable_on_the_real_node(
    operator_process: OperatorProcess,
    real_operator_env: dict[str, str],
    executions: Executions,
    kube: KubeApi,
    cluster: Any,
) -> None:
    from tests.operator.test_real_failures import FAIL_AT, real_template

    operator_process.env.update(real_operator_env)
    operator_process.start()
    executions.post("logs", {"template": real_template("exit:3"), "recovery": {"backoffSeconds": 0}})
    executions.created.append("logs")
    status = executions.wait_phase("logs", "Succeeded", timeout=120)
    assert (status["attempt"], status["recovery"]["exitCode"]) == (2, 3)
    pod = executions.pod("logs-a1")
    assert pod is not None, "the failed attempt's pod is kept"
    assert pod["status"]["phase"] == "Failed"
    log = cluster.kubectl("logs", "-n", executions.namespace, "logs-a1")
    print(log)
    assert f"[workload] step {FAIL_AT}/" in log
    assert "[workload] failing on purpose: exit:3" in log
