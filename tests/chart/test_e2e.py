"""End to end: the chart's operator runs from its image as a pod, the example workload in real containers.

Two targets run the same tests:

* **the local cluster's real node** (``make test``): ``helm install`` of the chart with the locally built
  operator image (``make images``), on the real node; its Service (a fixed ClusterIP through kube-proxy:
  there is no cluster DNS here) is the checkpoint API URL; a throwaway PostgreSQL on the node's bridge
  gateway is the store, reached from the operator's pod.
* **kind** (``make kind-e2e``, needs Docker): ``hack/kind-e2e.sh`` points ``STRATA_E2E_KUBECONFIG`` at
  the cluster that ``hack/kind-up.sh`` made and installed the chart into.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from kubernetes_asyncio import client, config

from stratarouter_dev import images
from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_dev.postgres import PostgresServer
from stratarouter_dev.processes import tail
from stratarouter_runtime.state import StateManager
from tests.chart.identity import cluster_helm, delete_namespaces, install

KIND_KUBECONFIG = os.environ.get("STRATA_E2E_KUBECONFIG", "")
GROUP, VERSION, PLURAL = "stratarouter.io", "v1alpha1", "executions"
WAIT_SECONDS = 300.0

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]


@dataclass
class Target:
    """Where the chart runs: a kubeconfig, how pods get onto real containers, and the store (if ours)."""

    kubeconfig: Path
    release_namespace: str
    example_image: str
    placement: dict[str, Any] = field(default_factory=dict)
    db_url: str | None = None


@pytest.fixture(scope="module")
def target(request: pytest.FixtureRequest, helm_binary: Path) -> Iterator[Target]:
    if KIND_KUBECONFIG:
        yield Target(
            kubeconfig=Path(KIND_KUBECONFIG),
            release_namespace=os.environ.get("STRATA_E2E_RELEASE_NAMESPACE", "stratarouter-system"),
            example_image=os.environ.get("STRATA_E2E_EXAMPLE_IMAGE", images.WORKLOAD),
        )
        return
    cluster: LocalCluster = request.getfixturevalue("cluster")
    node: RealNode = request.getfixturevalue("real_node_services")
    yield from _on_the_real_node(cluster, node, helm_binary)


def _on_the_real_node(cluster: LocalCluster, node: RealNode, helm_binary: Path) -> Iterator[Target]:
    """Install the chart on the local cluster's real node against a PostgreSQL its pods can reach."""
    postgres = PostgresServer.start(hosts=("127.0.0.1", node.gateway), trusted=(str(node.network.subnet),))
    namespace = f"e2e-system-{uuid.uuid4().hex[:6]}"
    # No cluster DNS here: the Service gets a fixed ClusterIP, and pods are told it.
    cluster_ip = f"10.96.{secrets.randbelow(200) + 50}.{secrets.randbelow(200) + 10}"
    try:
        cluster.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": namespace}})
        db_url = f"postgresql://{postgres.user}@{node.gateway}:{postgres.port}/{postgres.database}"
        secret = {
            "apiVersion": "v1",
            "kind": "Secret",
            "metadata": {"name": "store"},
            "stringData": {"url": db_url},
        }
        cluster.api.request("POST", f"/api/v1/namespaces/{namespace}/secrets", secret)
        repository, tag = images.OPERATOR.split(":")
        values = {
            "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
            "postgresql": {"enabled": False},
            "database": {"existingSecret": "store"},
            "service": {"clusterIP": cluster_ip},
            "operator": {"apiUrlForPods": f"http://{cluster_ip}:8080", "extraArgs": ["--verbose"]},
            **pod_placement(),
        }
        install(cluster, cluster_helm(cluster, helm_binary), "e2e", namespace, values)
        yield Target(
            kubeconfig=cluster.kubeconfig,
            release_namespace=namespace,
            example_image=images.WORKLOAD,
            placement=pod_placement(),
            db_url=postgres.dsn,
        )
    finally:  # shown when a test fails: the operator's last lines, and what kube-proxy saw
        print(cluster.kubectl("logs", "-n", namespace, "deployment/e2e-stratarouter-operator", "--tail=60"))
        print(cluster.kubectl("get", "pods,endpointslices", "-A", "-o", "wide"))
        print(tail(node.log("kube-proxy")))
        cluster_helm(cluster, helm_binary).run("uninstall", "e2e", "--namespace", namespace, "--wait")
        delete_namespaces(cluster, namespace)
        postgres.stop()


@pytest.fixture
async def api(target: Target) -> AsyncIterator[client.ApiClient]:
    configuration = client.Configuration()
    await config.load_kube_config(config_file=str(target.kubeconfig), client_configuration=configuration)
    async with client.ApiClient(configuration) as api_client:
        yield api_client


@pytest.fixture
async def namespace(api: client.ApiClient) -> AsyncIterator[str]:
    name = f"e2e-{uuid.uuid4().hex[:6]}"
    core = client.CoreV1Api(api)
    await core.create_namespace(client.V1Namespace(metadata=client.V1ObjectMeta(name=name)))
    yield name
    await core.delete_namespace(name)


def _execution(target: Target, name: str, steps: int, step_seconds: float) -> dict[str, Any]:
    env = [{"name": "STEPS", "value": str(steps)}, {"name": "STEP_SECONDS", "value": str(step_seconds)}]
    container = {"name": "workload", "image": target.example_image, "imagePullPolicy": "Never", "env": env}
    return {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Execution",
        "metadata": {"name": name},
        "spec": {
            "template": {"spec": {**target.placement, "containers": [container]}},
            "recovery": {"maxRestarts": 3, "backoffSeconds": 1},
        },
    }


async def _status(api: client.ApiClient, namespace: str, name: str) -> dict[str, Any]:
    obj = await client.CustomObjectsApi(api).get_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, name
    )
    status: dict[str, Any] = obj.get("status") or {}
    return status


async def _wait_for(
    api: client.ApiClient, namespace: str, name: str, what: str, check: Any
) -> dict[str, Any]:
    """Poll the Execution's status until ``check(status)``; fail with the last status after WAIT_SECONDS."""
    deadline = time.monotonic() + WAIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        status = await _status(api, namespace, name)
        if check(status):
            return status
        assert status.get("phase") != "Failed", status
        await asyncio.sleep(1)
    raise AssertionError(f"{namespace}/{name} never reached {what}; last status: {status}")


async def _steps(target: Target, execution_id: str) -> list[int]:
    """Every step the store holds for the run, oldest first (only where the store is ours)."""
    assert target.db_url is not None
    async with StateManager(backend="postgresql", db_url=target.db_url) as store:
        return [cp.step for cp in await store.get_history(execution_id)]


async def test_example_workload_runs_to_success(
    api: client.ApiClient, target: Target, namespace: str
) -> None:
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _execution(target, "count", steps=5, step_seconds=0.2)
    )
    status = await _wait_for(api, namespace, "count", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert status["lastCheckpoint"]["step"] == 5
    assert status.get("restarts", 0) == 0
    if target.db_url is not None:
        assert await _steps(target, f"{namespace}/count") == [1, 2, 3, 4, 5]


async def test_killed_pod_resumes_from_its_last_checkpoint(
    api: client.ApiClient, target: Target, namespace: str
) -> None:
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _execution(target, "resume", steps=30, step_seconds=0.3)
    )
    running = await _wait_for(
        api, namespace, "resume", "step 3", lambda s: (s.get("lastCheckpoint") or {}).get("step", 0) >= 3
    )
    await client.CoreV1Api(api).delete_namespaced_pod(running["podName"], namespace, grace_period_seconds=0)
    status = await _wait_for(api, namespace, "resume", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert status["restarts"] >= 1
    assert status["attempt"] >= 2
    assert status["lastCheckpoint"]["step"] == 30
    pod = await client.CoreV1Api(api).read_namespaced_pod(status["podName"], namespace)
    env = {e.name: e.value for e in pod.spec.containers[0].env}
    assert int(env["STRATA_RESUME_STEP"]) >= 3, env
    if target.db_url is not None:
        assert await _steps(target, f"{namespace}/resume") == list(range(1, 31))


async def test_the_operators_own_pod_killed_is_replaced_and_loses_nothing(
    api: client.ApiClient, target: Target, namespace: str
) -> None:
    await client.CustomObjectsApi(api).create_namespaced_custom_object(
        GROUP, VERSION, namespace, PLURAL, _execution(target, "steady", steps=40, step_seconds=0.3)
    )
    await _wait_for(
        api, namespace, "steady", "step 5", lambda s: (s.get("lastCheckpoint") or {}).get("step", 0) >= 5
    )
    core = client.CoreV1Api(api)
    selector = "app.kubernetes.io/component=operator"
    old = (await core.list_namespaced_pod(target.release_namespace, label_selector=selector)).items
    assert len(old) == 1
    await core.delete_namespaced_pod(old[0].metadata.name, target.release_namespace, grace_period_seconds=0)
    status = await _wait_for(api, namespace, "steady", "Succeeded", lambda s: s.get("phase") == "Succeeded")
    assert status["lastCheckpoint"]["step"] == 40
    new = (await core.list_namespaced_pod(target.release_namespace, label_selector=selector)).items
    assert [p.metadata.uid for p in new] != [old[0].metadata.uid]
    if target.db_url is not None:  # every acknowledged checkpoint is there, each step exactly once
        assert await _steps(target, f"{namespace}/steady") == list(range(1, 41))
