"""Recovery from real deaths: the workload runs in real containers on the real node.

Nothing here plays the kubelet. ``examples/workload.py`` (the example image) checkpoints through the
operator's API with the token the kubelet projected; its first attempt dies the way each test says
(``FAIL_AT_STEP``/``FAIL_HOW``), or is killed from outside. Each test asserts the recorded cause, that
the run resumed after its last checkpoint (history: steps 1..K by attempt 1, K+1.. by attempt 2,
nothing run twice), the final state, and that no two live pods of the run existed at any time.

The workload handles SIGTERM (``StateManager.handle_signals``): a suspend or an eviction asks it to stop,
and it exits 0 right after its last checkpoint instead of being killed.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import signal
import socket
import ssl
import threading
import time
import urllib.parse
import urllib.request
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev import images
from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, operator_environment, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.timeout(240)]

STEPS = 8
FAIL_AT = 3
Obj = dict[str, Any]


@pytest.fixture
def operator_env(cluster: Any, pg_dsn: str, namespace: str, node: RealNode) -> dict[str, str]:
    """The operator's API on the bridge's gateway, where the real node's pods reach it."""
    return operator_environment(cluster.kubeconfig, pg_dsn, api_host=node.gateway)


def real_template(
    fail_how: str | None = None,
    *,
    memory: str = "128Mi",
    step_seconds: float = 0.2,
    steps: int = STEPS,
    grace_seconds: int = 5,
) -> Obj:
    env = [{"name": "STEPS", "value": str(steps)}, {"name": "STEP_SECONDS", "value": str(step_seconds)}]
    if fail_how is not None:
        env += [{"name": "FAIL_AT_STEP", "value": str(FAIL_AT)}, {"name": "FAIL_HOW", "value": fail_how}]
    container = {"name": "workload", "image": images.WORKLOAD, "imagePullPolicy": "Never", "env": env,
                 "resources": {"limits": {"memory": memory}}}  # fmt: skip
    spec = {**pod_placement(), "terminationGracePeriodSeconds": grace_seconds, "containers": [container]}
    return {"spec": spec}


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


def assert_resumed_after(
    dsn: str, execution_id: str, last_step_of_attempt_1: int, steps: int = STEPS
) -> None:
    rows = asyncio.run(history(dsn, execution_id))
    assert [step for step, _a, _t in rows] == list(range(1, steps + 1)), rows  # every step once
    assert all(a == 1 for s, a, _t in rows if s <= last_step_of_attempt_1), rows
    assert all(a == 2 for s, a, _t in rows if s > last_step_of_attempt_1), rows
    assert rows[-1][2] == steps * (steps + 1) // 2  # the state a crash-free run ends with


async def last_checkpoint(dsn: str, execution_id: str) -> tuple[int | None, int | None]:
    """(step, attempt) of the run's newest checkpoint in the store."""
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        found = await store.get_latest_checkpoint(execution_id)
        return (None, None) if found is None else (found.step, found.attempt)


class Stream:
    """A streaming GET (a watch, a followed log) read line by line in a thread, until it ends or is closed.

    Nothing is missed the way polling can miss it: a pod that exits and is removed within 100 ms still
    shows every version of itself on a watch, and a followed log has every line the container wrote.
    """

    def __init__(self, kube: KubeApi, path: str) -> None:
        request = urllib.request.Request(
            kube.server + path, headers={"Authorization": f"Bearer {kube.token}"}
        )
        context = ssl.create_default_context(cadata=kube.ca_pem)
        self._response = urllib.request.urlopen(request, context=context)  # open now: nothing before is lost
        self.lines: list[str] = []
        self.ended = threading.Event()
        self._thread = threading.Thread(target=self._read, daemon=True)
        self._thread.start()

    def _read(self) -> None:
        try:
            for line in self._response:
                self.lines.append(line.decode(errors="replace").rstrip("\n"))
        except (OSError, ValueError):
            pass  # closed by close()
        finally:
            self.ended.set()

    def close(self) -> None:
        if not self.ended.is_set():  # unblock the reader: shut the connection down under it
            with socket.socket(fileno=os.dup(self._response.fileno())) as sock:
                sock.shutdown(socket.SHUT_RDWR)
        self._thread.join(timeout=10)
        self._response.close()

    def __enter__(self) -> Stream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def watch_pods(kube: KubeApi, namespace: str, execution: str) -> Stream:
    """A watch of the Execution's pods from now on; each line is one event (``type``, ``object``)."""
    selector = f"app.kubernetes.io/managed-by=stratarouter,stratarouter.io/execution={execution}"
    query = urllib.parse.urlencode({"watch": "1", "timeoutSeconds": "220", "labelSelector": selector})
    return Stream(kube, f"/api/v1/namespaces/{namespace}/pods?{query}")


def versions_of(watch: Stream, pod: str) -> list[Obj]:
    """Every version of ``pod`` the watch saw, oldest first."""
    objects = [json.loads(line)["object"] for line in watch.lines if line.strip()]
    return [o for o in objects if o.get("metadata", {}).get("name") == pod]


def terminated_state(versions: list[Obj]) -> Obj | None:
    """The workload container's terminated state, as the kubelet first reported it."""
    for version in versions:
        for status in version.get("status", {}).get("containerStatuses") or []:
            terminated = (status.get("state") or {}).get("terminated")
            if status.get("name") == "workload" and terminated:
                found: Obj = terminated
                return found
    return None


def timestamp(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00"))


def stopped_after(lines: list[str]) -> int:
    """K of the workload's ``stop requested after step K`` line (its SIGTERM handler ran)."""
    found = [m for line in lines if (m := re.search(r"stop requested after step (\d+): checkpointed", line))]
    assert len(found) == 1, "the workload did not report a clean stop; its log:\n" + "\n".join(lines)
    return int(found[0].group(1))


def wait_step(executions: Executions, name: str, step: int) -> None:
    executions.wait_status(
        name,
        f"step {step} checkpointed",
        lambda s: ((s.get("lastCheckpoint") or {}).get("step") or 0) >= step,
    )


def workload_pid(node: RealNode, pod_uid: str) -> int:
    """The workload's process on the host."""
    found: int = wait_until("the workload's process", lambda: node.process_of(pod_uid, b"workload.py"), 30)
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


SUSPEND_STEPS = 40
GRACE_SECONDS = 10


def test_suspend_sends_sigterm_and_the_workload_checkpoints_before_it_exits(
    run: Callable[..., LivePods], executions: Executions, kube: KubeApi, pg_dsn: str, namespace: str
) -> None:
    """Suspend deletes the pod gracefully: the kubelet sends SIGTERM, the workload's handler lets it leave
    its loop after the step it checkpointed last and exit 0 well before the grace period runs out; the
    resume starts attempt 2 right after that step."""
    name, first_pod = "pausable", "pausable-a1"
    template = real_template(steps=SUSPEND_STEPS, step_seconds=0.3, grace_seconds=GRACE_SECONDS)
    with watch_pods(kube, namespace, name) as watch, run(name, template) as pods:
        wait_step(executions, name, 3)
        executions.wait_pod_running(first_pod)
        log_path = f"/api/v1/namespaces/{namespace}/pods/{first_pod}/log?container=workload&follow=true"
        with Stream(kube, log_path) as log:
            executions.patch_spec(name, {"suspend": True})
            suspending = executions.wait_phase(name, "Suspended")
            wait_until("the workload's log to end", log.ended.is_set, timeout=GRACE_SECONDS + 20)
        wait_until("no pod while suspended", lambda: executions.pods(name) == [], timeout=30)
        status = executions.wait_status(name, "podName cleared", lambda s: "podName" not in s)

        # The container exited 0 on its own, long before the grace period ran out: without a handler,
        # Python as the container's PID 1 ignores SIGTERM and is SIGKILLed at the deadline (137).
        versions = versions_of(watch, first_pod)
        terminated = terminated_state(versions)
        assert terminated is not None, versions
        assert (terminated["exitCode"], terminated["reason"]) == (0, "Completed"), terminated
        deadline = next(
            v["metadata"]["deletionTimestamp"] for v in versions if v["metadata"].get("deletionTimestamp")
        )
        left_early = (timestamp(deadline) - timestamp(terminated["finishedAt"])).total_seconds()
        assert left_early >= GRACE_SECONDS / 2, (deadline, terminated)  # the grace period was not needed
        step = stopped_after(log.lines)  # and it was the stop handler that ended it
        assert step >= 3
        assert suspending["attempt"] == 1

        # What the handler stood on is in the store: its step is the run's newest checkpoint.
        assert asyncio.run(last_checkpoint(pg_dsn, f"{namespace}/{name}")) == (step, 1)
        assert (status["phase"], status["attempt"]) == ("Suspended", 1)
        assert status["message"] == "suspended; state kept"
        time.sleep(1)
        assert executions.pods(name) == [], "no pod while suspended"

        executions.patch_spec(name, {"suspend": False})
        final = executions.wait_phase(name, "Succeeded", timeout=120)
    assert (final["attempt"], final["restarts"], final["resumeStep"]) == (2, 0, step)
    assert executions.env(f"{name}-a2")["STRATA_RESUME_STEP"] == str(step)
    second = kube.text(f"/api/v1/namespaces/{namespace}/pods/{name}-a2/log?container=workload")
    assert f"resuming {namespace}/{name} at step {step + 1} " in second, second
    assert {"Suspended", "Resumed"} <= set(executions.event_reasons(name))
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/{name}", step, steps=SUSPEND_STEPS)


def test_an_evicted_workload_that_stops_cleanly_is_resumed_not_finished(
    run: Callable[..., LivePods], executions: Executions, kube: KubeApi, pg_dsn: str, namespace: str
) -> None:
    """An eviction sends the same SIGTERM: the workload exits 0, yet the run is not done. Exit code 0 of a
    pod someone else stopped is a recovery, never Succeeded."""
    name = "drained"
    steps = 20
    with (
        watch_pods(kube, namespace, name) as watch,
        run(name, real_template(steps=steps, step_seconds=0.3)) as pods,
    ):
        wait_step(executions, name, 3)
        executions.wait_pod_running(f"{name}-a1")
        kube.request(
            "POST",
            f"/api/v1/namespaces/{namespace}/pods/{name}-a1/eviction",
            {"apiVersion": "policy/v1", "kind": "Eviction", "metadata": {"name": f"{name}-a1"}},
        )
        status = executions.wait_phase(name, "Succeeded", timeout=120)
    terminated = terminated_state(versions_of(watch, f"{name}-a1"))
    assert terminated is not None, "the kubelet reported no end of the evicted container"
    assert terminated["exitCode"] == 0, terminated  # it handled SIGTERM
    recovery = status["recovery"]
    # Evicted if the operator first saw the pod after its container ended, PodDeleted if before.
    assert recovery["reason"] in ("Evicted", "PodDeleted"), recovery
    assert recovery["failedPod"] == f"{name}-a1"
    assert (status["attempt"], status["restarts"]) == (2, 1)
    assert recovery["resumeStep"] >= 3
    assert pods.most == 1
    assert_resumed_after(pg_dsn, f"{namespace}/{name}", recovery["resumeStep"], steps=steps)
