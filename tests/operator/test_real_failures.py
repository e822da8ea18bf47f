"""Recovery from real deaths: the workload runs in real containers on the real node.

Nothing here plays the kubelet. ``examples/workload.py`` (the example image) checkpoints through the
operator's API with the token the kubelet projected; its first attempt dies the way each test says
(``FAIL_AT_STEP``/``FAIL_HOW``), or is killed from outside. Each test asserts the recorded cause, that
the run resumed after its last checkpoint (history: steps 1..K by attempt 1, K+1.. by attempt 2,
nothing run twice), the final state, and that no two live pods of the run existed at any time.
"""

from __future__ import annotations

import asyncio
import os
import signal
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from stratarouter_runtime.dev import images
from stratarouter_runtime.dev.kubeapi import KubeApi
from stratarouter_runtime.dev.node import RealNode, pod_placement
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, operator_environment, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(240)]

STEPS = 8
FAIL_AT = 3
Obj = dict[str, Any]


@pytest.fixture
def node(cluster: Any) -> RealNode:
    assert cluster.node is not None, "the session cluster starts with its real node"
    real: RealNode = cluster.node
    return real


@pytest.fixture
def operator_env(cluster: Any, pg_dsn: str, namespace: str, node: RealNode) -> dict[str, str]:
    """The operator's API on the bridge's gateway, where the real node's pods reach it."""
    return operator_environment(cluster.kubeconfig, pg_dsn, api_host=node.gateway)


def real_template(fail_how: str | None = None, *, memory: str = "128Mi", step_seconds: float = 0.2) -> Obj:
    env = [{"name": "STEPS", "value": str(STEPS)}, {"name": "STEP_SECONDS", "value": str(step_seconds)}]
    if fail_how is not None:
        env += [{"name": "FAIL_AT_STEP", "value": str(FAIL_AT)}, {"name": "FAIL_HOW", "value": fail_how}]
    container = {"name": "workload", "image": images.WORKLOAD, "imagePullPolicy": "Never", "env": env,
                 "resources": {"limits": {"memory": memory}}}  # fmt: skip
    return {"spec": {**pod_placement(), "terminationGracePeriodSeconds": 5, "containers": [container]}}


class LivePods:
    """Watches (by polling every 50 ms) that no two live pods of one Execution ever exist at once."""

    def __init__(self, executions: Executions, name: str) -> None:
        self.executions, self.name = executions, name
        self.most = 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            running = [
                p for p in self.executions.pods(self.name)
                if p.get("status", {}).get("phase") in ("Pending", "Running")
                and not p["metadata"].get("deletionTimestamp")
            ]  # fmt: skip
            self.most = max(self.most, len(running))
            time.sleep(0.05)

    def __enter__(self) -> LivePods:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=5)


@pytest.fixture
def run(executions: Executions, operator: OperatorProcess) -> Callable[..., LivePods]:
    """``run(name, template, **spec)``: create the Execution; use the result as ``with`` to watch its pods."""

    def start(name: str, template: Obj, **spec: Any) -> LivePods:
        executions.post(name, {"template": template, "recovery": {"backoffSeconds": 0}, **spec})
        executions.created.append(name)
        return LivePods(executions, name)

    return start


async def history(dsn: str, execution_id: str) -> list[tuple[int, int, int]]:
    """(step, attempt, total) of every checkpoint of the run, oldest first."""
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        return [(cp.step, cp.attempt, cp.state_data["total"]) for cp in await store.get_history(execution_id)]


def assert_resumed_after(dsn: str, execution_id: str, last_step_of_attempt_1: int) -> None:
    rows = asyncio.run(history(dsn, execution_id))
    assert [step for step, _a, _t in rows] == list(range(1, STEPS + 1)), rows  # every step once
    assert all(a == 1 for s, a, _t in rows if s <= last_step_of_attempt_1), rows
    assert all(a == 2 for s, a, _t in rows if s > last_step_of_attempt_1), rows
    assert rows[-1][2] == STEPS * (STEPS + 1) // 2  # the state a crash-free run ends with


def wait_step(executions: Executions, name: str, step: int) -> None:
    executions.wait_status(
        name,
        f"step {step} checkpointed",
        lambda s: ((s.get("lastCheckpoint") or {}).get("step") or 0) >= step,
    )


def workload_pid(node: RealNode, pod_uid: str) -> int:
    """The workload's process on the host: in the node's cgroup tree, under the pod's cgroup."""

    def find() -> int | None:
        for pid in node.container_pids():
            try:
                cgroups = Path(f"/proc/{pid}/cgroup").read_text()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if pod_uid in cgroups.replace("_", "-") and b"workload.py" in cmdline:
                return pid
        return None

    found: int = wait_until("the workload's process", find, timeout=30)
    return found


def test_a_retryable_exit_code_resumes_after_the_last_checkpoint(
    run: Callable[..., LivePods], executions: Executions, pg_dsn: str, namespace: str
) -> None:
    with run("exit", real_template("exit:3")) as pods:
        status = executions.wait_phase("exit", "Succeeded", timeout=120)
    assert (status["attempt"], status["restarts"]) == (2, 1)
    assert status["recovery"]["reason"] == "ExitCode"
    assert status["recovery"]["exitCode"] == 3
    assert status["recovery"]["resumeStep"] == FAIL_AT
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/exit", FAIL_AT)


def test_a_non_retryable_exit_code_fails_the_run_without_a_second_pod(
    run: Callable[..., LivePods], executions: Executions, namespace: str
) -> None:
    with run("usage", real_template("exit:2"), recovery={"backoffSeconds": 0, "nonRetryableExitCodes": [2]}):
        status = executions.wait_phase("usage", "Failed", timeout=120)
    assert executions.condition("usage", "Failed") is not None or status.get("reason")
    assert "NonRetryableExitCode" in (
        status.get("reason"),
        *(c["reason"] for c in status.get("conditions", [])),
    )
    assert "exit code 2" in status["message"]
    assert [p["metadata"]["name"] for p in executions.pods("usage")] in ([], ["usage-a1"])
    assert status["attempt"] == 1


def test_an_oom_killed_container_is_recovered_with_its_cause(
    run: Callable[..., LivePods], executions: Executions, pg_dsn: str, namespace: str
) -> None:
    with run("hog", real_template("oom", memory="64Mi")) as pods:
        status = executions.wait_phase("hog", "Succeeded", timeout=120)
    assert status["recovery"]["reason"] == "OOMKilled"
    assert status["recovery"]["exitCode"] == 137
    assert "Recovering" in executions.event_reasons("hog")
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/hog", FAIL_AT)


def test_a_container_process_sigkilled_from_the_host_is_recovered(
    run: Callable[..., LivePods], executions: Executions, node: RealNode, pg_dsn: str, namespace: str
) -> None:
    with run("killed", real_template("hang")) as pods:
        wait_step(executions, "killed", FAIL_AT)
        pod = executions.wait_pod_running("killed-a1")
        os.kill(workload_pid(node, pod["metadata"]["uid"]), signal.SIGKILL)
        status = executions.wait_phase("killed", "Succeeded", timeout=120)
    assert status["recovery"]["reason"] == "ExitCode"
    assert status["recovery"]["exitCode"] == 137
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/killed", FAIL_AT)


def test_an_eviction_through_the_eviction_api_is_recovered(
    run: Callable[..., LivePods], executions: Executions, kube: KubeApi, pg_dsn: str, namespace: str
) -> None:
    with run("evicted", real_template("hang")) as pods:
        wait_step(executions, "evicted", FAIL_AT)
        kube.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/evicted-a1/eviction",
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": "evicted-a1"}},
        )
        status = executions.wait_phase("evicted", "Succeeded", timeout=120)
    assert status["recovery"]["reason"] in ("Evicted", "PodDeleted"), status["recovery"]
    assert status["recovery"]["failedPod"] == "evicted-a1"
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/evicted", FAIL_AT)


def test_a_kubelet_restart_under_a_running_container_is_not_a_failure(
    run: Callable[..., LivePods], executions: Executions, node: RealNode, pg_dsn: str, namespace: str
) -> None:
    with run("steady", real_template(step_seconds=0.5)) as pods:
        wait_step(executions, "steady", 2)
        pod = executions.wait_pod_running("steady-a1")
        pid = workload_pid(node, pod["metadata"]["uid"])
        node.stop_kubelet()
        time.sleep(3)
        node.start_kubelet()
        status = executions.wait_phase("steady", "Succeeded", timeout=120)
    assert (status["attempt"], status["restarts"]) == (1, 0)
    assert "recovery" not in status or not status["recovery"]
    assert "Recovering" not in executions.event_reasons("steady")
    assert pods.most == 1
    assert not Path(f"/proc/{pid}").exists()  # the same process ran to the end, and then exited
    rows = asyncio.run(history(pg_dsn, f"{namespace}/steady"))
    assert [(s, a) for s, a, _t in rows] == [(s, 1) for s in range(1, STEPS + 1)]


def test_a_lost_node_is_recovered_and_no_second_pod_runs_when_it_comes_back(
    run: Callable[..., LivePods], executions: Executions, node: RealNode, kube: KubeApi, pg_dsn: str,
    namespace: str,
) -> None:  # fmt: skip
    """The node stops answering (kubelet gone, its containers frozen): NotReady, the taint manager evicts
    the pod, and the replacement runs only once the node is back and the old container is gone."""
    template = real_template("hang")
    template["spec"]["tolerations"] += [
        {
            "key": f"node.kubernetes.io/{taint}",
            "operator": "Exists",
            "effect": "NoExecute",
            "tolerationSeconds": 2,
        }
        for taint in ("unreachable", "not-ready")
    ]
    with run("lost", template) as pods:
        wait_step(executions, "lost", FAIL_AT)
        pod = executions.wait_pod_running("lost-a1")
        old = workload_pid(node, pod["metadata"]["uid"])
        node.stop_kubelet()
        os.kill(old, signal.SIGSTOP)  # a hung node: the process neither runs nor dies
        try:
            wait_until(
                "the node NotReady",
                lambda: any(
                    c["type"] == "Ready" and c["status"] != "True"
                    for c in kube.get(f"/api/v1/nodes/{node.name}")["status"]["conditions"]
                ),
                timeout=60,
            )
            status = executions.wait_status(
                "lost", "recovering from NodeLost",
                lambda s: (s.get("recovery") or {}).get("reason") == "NodeLost", timeout=60,
            )  # fmt: skip
            assert status["recovery"]["failedPod"] == "lost-a1"
            time.sleep(3)  # while the node is away, the replacement cannot run anywhere
            assert executions.live_pods("lost") == []
        finally:
            node.start_kubelet()
        status = executions.wait_phase("lost", "Succeeded", timeout=120)
    assert (status["attempt"], status["restarts"]) == (2, 1)
    assert not Path(f"/proc/{old}").exists()  # the kubelet stopped the old container when it came back
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/lost", FAIL_AT)
