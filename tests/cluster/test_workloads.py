"""Pods, Deployments and garbage collection behave as on a real cluster (kwok plays the kubelet)."""

from __future__ import annotations

import ipaddress
import json
import subprocess
import sys
import time
from typing import Any

import pytest

from stratarouter_dev.cluster import POD_CIDR, LocalCluster
from stratarouter_dev.pods import fail_pod, is_running, succeed_pod, wait_for_pod
from stratarouter_runtime.operator.resources.base import MERGE_PATCH
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster


def pod_manifest(name: str, **spec: Any) -> dict[str, Any]:
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name, "labels": {"smoke": name}},
        "spec": {
            "restartPolicy": "Never",
            "containers": [{"name": "main", "image": "registry.invalid/smoke:1"}],
            **spec,
        },
    }


def create_pod(cluster: LocalCluster, namespace: str, name: str, **spec: Any) -> dict[str, Any]:
    return cluster.api.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod_manifest(name, **spec))


def test_pod_is_scheduled_on_a_kwok_node_and_runs(cluster: LocalCluster, cluster_namespace: str) -> None:
    create_pod(cluster, cluster_namespace, "runner")
    pod = wait_for_pod(cluster.api, cluster_namespace, "runner", is_running, what="Running")
    assert pod is not None
    assert pod["spec"]["nodeName"] in {"kwok-node-0", "kwok-node-1"}
    assert ipaddress.ip_address(pod["status"]["podIP"]) in ipaddress.ip_network(POD_CIDR)
    assert pod["status"]["containerStatuses"][0]["state"]["running"]["startedAt"]


def test_deployment_runs_pods_and_deleting_it_cascades(cluster: LocalCluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    cluster.kubectl("create", "deployment", "web", "-n", ns, "--image=registry.invalid/web:1", "--replicas=2")
    cluster.kubectl("rollout", "status", "deployment/web", "-n", ns, "--timeout=60s")

    def web_pods() -> list[dict[str, Any]]:
        items: list[dict[str, Any]] = json.loads(
            cluster.kubectl("get", "pods", "-n", ns, "-l", "app=web", "-o", "json")
        )["items"]
        return items

    pods = wait_until("2 running web pods", lambda: [p for p in web_pods() if is_running(p)][:2] or None)
    assert len(pods) == 2
    owner = pods[0]["metadata"]["ownerReferences"][0]
    assert owner["kind"] == "ReplicaSet"
    # kubectl deletes in the background: the garbage collector removes the ReplicaSet, then its pods,
    # and kwok completes each pod's graceful deletion.
    cluster.kubectl("delete", "deployment", "web", "-n", ns)
    wait_until(
        "ReplicaSet and pods to be garbage-collected",
        lambda: not web_pods() and not cluster.kubectl("get", "rs", "-n", ns, "-o", "name").strip(),
    )


def test_garbage_collector_follows_owner_references(cluster: LocalCluster, cluster_namespace: str) -> None:
    base = f"/api/v1/namespaces/{cluster_namespace}/configmaps"
    owner = cluster.api.request("POST", base, {"metadata": {"name": "owner"}, "data": {}})
    ref = {"apiVersion": "v1", "kind": "ConfigMap", "name": "owner", "uid": owner["metadata"]["uid"]}
    cluster.api.request("POST", base, {"metadata": {"name": "dependent", "ownerReferences": [ref]}})
    cluster.api.request("POST", base, {"metadata": {"name": "bystander"}})
    cluster.api.request("DELETE", f"{base}/owner")
    wait_until("the dependent to be collected", lambda: not cluster.api.exists(f"{base}/dependent"))
    assert cluster.api.exists(f"{base}/bystander")


def test_deleting_a_running_pod_completes(cluster: LocalCluster, cluster_namespace: str) -> None:
    create_pod(cluster, cluster_namespace, "doomed")
    wait_for_pod(cluster.api, cluster_namespace, "doomed", is_running, what="Running")
    # Graceful deletion (the default 30 s grace period): kwok, as the kubelet, finishes it.
    cluster.kubectl("delete", "pod", "doomed", "-n", cluster_namespace, "--wait=true", "--timeout=60s")
    assert not cluster.api.exists(f"/api/v1/namespaces/{cluster_namespace}/pods/doomed")


def test_failed_pod_keeps_its_exit_code_and_kwok_leaves_it_alone(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    ns = cluster_namespace
    create_pod(cluster, ns, "crasher")
    failed = fail_pod(cluster.api, ns, "crasher", 137, reason="OOMKilled", message="out of memory")
    assert failed["status"]["phase"] == "Failed"
    terminated = failed["status"]["containerStatuses"][0]["state"]["terminated"]
    assert (terminated["exitCode"], terminated["reason"]) == (137, "OOMKilled")
    # Give kwok events to react to (a label change), then watch for a while: it must not restart the pod.
    cluster.api.request(
        "PATCH", f"/api/v1/namespaces/{ns}/pods/crasher", {"metadata": {"labels": {"poke": "1"}}},
        content_type=MERGE_PATCH,
    )  # fmt: skip
    deadline = time.monotonic() + 3
    while time.monotonic() < deadline:
        pod = cluster.api.get(f"/api/v1/namespaces/{ns}/pods/crasher")
        assert pod["status"]["phase"] == "Failed"
        assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 137
        time.sleep(0.2)
    # A failed pod is deleted like any other.
    cluster.kubectl("delete", "pod", "crasher", "-n", ns, "--wait=true", "--timeout=60s")


def test_succeeded_pod(cluster: LocalCluster, cluster_namespace: str) -> None:
    create_pod(cluster, cluster_namespace, "done")
    pod = succeed_pod(cluster.api, cluster_namespace, "done")
    assert pod["status"]["phase"] == "Succeeded"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 0


def test_fail_from_the_shell(cluster: LocalCluster, cluster_namespace: str) -> None:
    create_pod(cluster, cluster_namespace, "shell")
    subprocess.run(
        [sys.executable, "-m", "stratarouter_dev.pods", "fail", "shell", "-n", cluster_namespace,
         "--exit-code", "42"],
        env=cluster.env, check=True, capture_output=True, timeout=60,
    )  # fmt: skip
    pod = cluster.api.get(f"/api/v1/namespaces/{cluster_namespace}/pods/shell")
    assert pod["status"]["phase"] == "Failed"
    assert pod["status"]["containerStatuses"][0]["state"]["terminated"]["exitCode"] == 42
