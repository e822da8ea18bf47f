"""An operator killed at any moment (SIGKILL) and restarted: no duplicate pod, no lost checkpoint, the
recovery continues where it was (its recorded failure time and backoff are kept)."""

from __future__ import annotations

import asyncio
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.ports import free_port
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import ROOT, Executions, OperatorProcess, parse_time, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


@pytest.fixture
async def workload(pg_dsn: str) -> AsyncIterator[StateManager]:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        yield store


async def test_killed_during_recovery_backoff(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    ns = executions.namespace
    executions.create("crash", recovery={"backoffSeconds": 4, "maxBackoffSeconds": 4})
    executions.wait_phase("crash", "Running")
    for step in range(7):
        await workload.checkpoint(f"{ns}/crash", step, {"step": step}, attempt=1)
    executions.fail("crash-a1", exit_code=137)
    seen = executions.wait_phase("crash", "Recovering")
    failed_at = seen["recovery"]["failedAt"]
    operator.kill()  # SIGKILL in the middle of the backoff
    assert executions.status("crash")["attempt"] == 1
    operator.start()

    status = executions.wait_status("crash", "attempt 2", lambda s: s.get("attempt") == 2, timeout=60)
    assert status["restarts"] == 1, "the recovery is counted once"
    assert status["recovery"]["failedAt"] == failed_at, "the restarted operator kept the recorded failure"
    waited = (parse_time(status["recovery"]["replacedAt"]) - parse_time(failed_at)).total_seconds()
    assert waited >= 4
    executions.wait_phase("crash", "Running")
    assert executions.live_pods("crash") == ["crash-a2"]
    assert sorted(p["metadata"]["name"] for p in executions.pods("crash")) == [
        "crash-a1",
        "crash-a2",
    ]  # a1 kept
    assert executions.env("crash-a2")["STRATA_RESUME_STEP"] == "6"
    history = await workload.get_history(f"{ns}/crash")
    assert [c.step for c in history] == list(range(7)), "no acknowledged checkpoint lost"
    assert operator.generation == 2


async def test_killed_right_after_failure_seen_repeatedly(
    operator: OperatorProcess, executions: Executions, workload: StateManager
) -> None:
    """Kill the operator again and again while it replaces a pod (backoff 0): still exactly one new pod."""
    ns = executions.namespace
    executions.create("flap", recovery={"backoffSeconds": 0})
    executions.wait_phase("flap", "Running")
    await workload.checkpoint(f"{ns}/flap", 0, {"step": 0}, attempt=1)
    executions.fail("flap-a1")
    for delay in (0.0, 0.05, 0.2):
        await asyncio.sleep(delay)
        operator.kill()
        operator.start()
    status = executions.wait_status("flap", "attempt 2", lambda s: s.get("attempt") == 2)
    executions.wait_phase("flap", "Running")
    assert status["restarts"] == 1
    assert sorted(p["metadata"]["name"] for p in executions.pods("flap")) == ["flap-a1", "flap-a2"]
    assert executions.live_pods("flap") == ["flap-a2"]


def test_restart_resumes_running_executions_without_duplicates(
    operator: OperatorProcess, executions: Executions
) -> None:
    names = [f"run{i}" for i in range(5)]
    for name in names:
        executions.create(name)
    for name in names:
        executions.wait_phase(name, "Running")
    operator.kill()
    operator.start()
    # give the restarted operator a chance to do something wrong, then check nothing changed
    wait_until("restart settled", lambda: all(executions.status(n).get("phase") == "Running" for n in names))
    time.sleep(2)
    for name in names:
        assert [p["metadata"]["name"] for p in executions.pods(name)] == [f"{name}-a1"]
        assert executions.status(name)["attempt"] == 1
    # and it still acts: a failure after the restart is recovered
    executions.fail("run0-a1")
    executions.wait_status("run0", "attempt 2", lambda s: s.get("attempt") == 2)


@pytest.fixture
def peering(cluster: Any, kube: KubeApi, namespace: str) -> str:
    """kopf's peering CRDs (from the chart) and a KopfPeering object in the test's namespace."""
    cluster.kubectl("apply", "-f", str(ROOT / "charts/stratarouter-operator/crds/kopf-peering.yaml"))

    def served() -> bool:
        try:
            return kube.exists(f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings")
        except KubeApiError:  # 429 "storage is (re)initializing" right after the CRD is created
            return False

    wait_until("KopfPeering CRD served", served, timeout=30)
    kube.request(
        "POST",
        f"/apis/kopf.dev/v1/namespaces/{namespace}/kopfpeerings",
        {"apiVersion": "kopf.dev/v1", "kind": "KopfPeering", "metadata": {"name": "stratarouter"}},
    )
    return "stratarouter"


def second_replica(first: OperatorProcess, tmp_path: Path, **env: str) -> OperatorProcess:
    """Another replica next to ``first``: same settings and peering, its own API port and log."""
    port = free_port()
    return OperatorProcess(
        env={
            **first.env,
            "STRATA_API_PORT": str(port),
            "STRATA_API_URL_FOR_PODS": f"http://127.0.0.1:{port}",
            **env,
        },
        namespace=first.namespace,
        log_path=tmp_path / "operator-2.log",
    )


@contextmanager
def two_replicas(
    first: OperatorProcess, second: OperatorProcess, kube: KubeApi, peering: str
) -> Iterator[None]:
    """Both replicas running and registered in the peering object; the survivor stopped afterwards."""
    first.start()
    second.start()
    try:
        path = f"/apis/kopf.dev/v1/namespaces/{first.namespace}/kopfpeerings/{peering}"
        wait_until("both replicas in the peering object", lambda: len(kube.get(path).get("status", {})) == 2)
        yield
    finally:
        second.stop()
        print(f"--- second operator log ---\n{second.logs()[-4000:]}")


def test_two_replicas_one_handles_and_the_other_takes_over(
    operator_process: OperatorProcess, executions: Executions, peering: str, tmp_path: Path, kube: KubeApi
) -> None:
    first = operator_process
    first.env["STRATA_PEERING"] = peering
    second = second_replica(first, tmp_path)
    with two_replicas(first, second, kube, peering):
        executions.create("ha", recovery={"backoffSeconds": 0})
        executions.wait_phase("ha", "Running")
        executions.fail("ha-a1")
        status = executions.wait_status("ha", "attempt 2", lambda s: s.get("attempt") == 2)
        executions.wait_phase("ha", "Running")
        assert status["restarts"] == 1, "handled by exactly one replica"
        assert sorted(p["metadata"]["name"] for p in executions.pods("ha")) == ["ha-a1", "ha-a2"]
        assert executions.live_pods("ha") == ["ha-a2"]

        first.kill(signal.SIGTERM)  # whichever was active, the survivor must handle what comes next
        executions.fail("ha-a2")
        status = executions.wait_status("ha", "attempt 3", lambda s: s.get("attempt") == 3, timeout=90)
        assert status["restarts"] == 2
        executions.wait_phase("ha", "Running")
        assert sorted(p["metadata"]["name"] for p in executions.pods("ha")) == ["ha-a1", "ha-a2", "ha-a3"]
        assert executions.live_pods("ha") == ["ha-a3"]


def test_a_standby_takes_over_from_a_replica_killed_without_leaving(
    operator_process: OperatorProcess, executions: Executions, peering: str, tmp_path: Path, kube: KubeApi
) -> None:
    """SIGKILL leaves the active replica's peering record behind: the standby waits for it to expire
    (STRATA_PEERING_LIFETIME_SECONDS, here the minimum, 15 s), then handles what the dead one left."""
    first = operator_process
    first.env.update(
        STRATA_PEERING=peering, STRATA_PEERING_PRIORITY="200", STRATA_PEERING_LIFETIME_SECONDS="15"
    )
    second = second_replica(first, tmp_path, STRATA_PEERING_PRIORITY="100")
    with two_replicas(first, second, kube, peering):
        executions.create("orphan", recovery={"backoffSeconds": 0})
        executions.wait_phase("orphan", "Running")  # the first replica (priority 200) handles
        first.kill(signal.SIGKILL)
        executions.fail("orphan-a1")
        # well within kopf's own default of 60 s: the test fails if the lifetime is not applied
        status = executions.wait_status("orphan", "attempt 2", lambda s: s.get("attempt") == 2, timeout=45)
        assert status["restarts"] == 1
        executions.wait_phase("orphan", "Running")
        assert sorted(p["metadata"]["name"] for p in executions.pods("orphan")) == ["orphan-a1", "orphan-a2"]
        assert executions.live_pods("orphan") == ["orphan-a2"]
