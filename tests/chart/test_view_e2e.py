"""End to end: the chart with ``view.enabled`` serves the view API from the operator's pod on the real node.

``helm install --set view.enabled=true`` with the locally built operator image, on the local cluster's
real node, against a throwaway PostgreSQL on the node's bridge gateway (as in test_e2e.py). The API
server, a process of this machine, reaches the operator's pod through the view Service's ClusterIP: the
real node's kube-proxy turns it into the pod's address on the bridge and masquerades the connection as
the gateway (the pod has no route to the host's other addresses). The example workload runs in a real
container; its history is then read through the aggregated API (``kubectl get --raw``), refused with 403
to a user without get on the Execution, and printed by ``kubectl strata history`` and ``kubectl strata
logs`` (the real container's log, through the kubelet).
"""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev import images
from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_dev.postgres import PostgresServer
from stratarouter_dev.processes import tail
from tests.chart.identity import cluster_helm, delete_namespaces, install

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(600)]

RELEASE = "view"
FULLNAME = f"{RELEASE}-stratarouter-operator"
APISERVICE = "v1alpha1.view.stratarouter.io"
VIEW = "/apis/view.stratarouter.io/v1alpha1"
WAIT_SECONDS = 180.0
STEPS = 40
#: Where `kubectl-strata` is: the project's virtualenv, beside this interpreter.
VENV_BIN = Path(sys.executable).parent


@dataclass
class Installed:
    cluster: LocalCluster
    namespace: str  # the release's
    db_url: str


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, real_node_services: RealNode, helm_binary: Path) -> Iterator[Installed]:
    node = real_node_services
    postgres = PostgresServer.start(hosts=("127.0.0.1", node.gateway), trusted=(str(node.network.subnet),))
    namespace = f"view-system-{uuid.uuid4().hex[:6]}"
    # No cluster DNS here: the checkpoint API's Service gets a fixed ClusterIP, and pods are told it.
    cluster_ip = f"10.96.{secrets.randbelow(200) + 50}.{secrets.randbelow(200) + 10}"
    helm = cluster_helm(cluster, helm_binary)
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
            "view": {"enabled": True},
            **pod_placement(),
        }
        install(cluster, helm, RELEASE, namespace, values)
        yield Installed(cluster, namespace, postgres.dsn)
    finally:  # shown when a test fails: the operator's last lines, the APIService, what kube-proxy saw
        for args in (
            ("logs", "-n", namespace, f"deployment/{FULLNAME}", "--tail=80"),
            ("get", "apiservice", APISERVICE, "-o", "yaml"),
            ("get", "pods,services,endpointslices", "-A", "-o", "wide"),
        ):
            try:
                print(cluster.kubectl(*args))
            except Exception as exc:  # diagnostics only
                print(f"kubectl {' '.join(args)}: {exc}")
        print(tail(node.log("kube-proxy")))
        try:
            helm.run("uninstall", RELEASE, "--namespace", namespace, "--wait")
        finally:
            delete_namespaces(cluster, namespace)
            postgres.stop()


def _env(cluster: LocalCluster) -> dict[str, str]:
    """The user's shell: kubectl-strata and the cluster's kubectl on PATH, KUBECONFIG the cluster's."""
    path = os.pathsep.join([str(VENV_BIN), str(cluster.bin_dir), os.environ.get("PATH", "")])
    return {**os.environ, "PATH": path, "KUBECONFIG": str(cluster.kubeconfig)}


def _run(cluster: LocalCluster, *argv: str) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(argv, capture_output=True, text=True, env=_env(cluster), timeout=120)
    print(f"$ {' '.join(argv)}  (exit {done.returncode})\n{done.stdout}{done.stderr}")
    return done


def _wait_available(cluster: LocalCluster) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    conditions: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        apiservice = cluster.api.get(f"/apis/apiregistration.k8s.io/v1/apiservices/{APISERVICE}")
        conditions = (apiservice.get("status") or {}).get("conditions") or []
        if any(c["type"] == "Available" and c["status"] == "True" for c in conditions):
            return
        time.sleep(1)
    raise AssertionError(f"{APISERVICE} never became Available: {conditions}")


def _execution(name: str) -> dict[str, Any]:
    env = [{"name": "STEPS", "value": str(STEPS)}, {"name": "STEP_SECONDS", "value": "1"}]
    container = {"name": "workload", "image": images.WORKLOAD, "imagePullPolicy": "Never", "env": env}
    return {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {**pod_placement(), "containers": [container]}}},
    }


def _wait_for_step(cluster: LocalCluster, namespace: str, name: str, step: int) -> dict[str, Any]:
    deadline = time.monotonic() + WAIT_SECONDS
    status: dict[str, Any] = {}
    while time.monotonic() < deadline:
        obj = cluster.api.get(f"/apis/stratarouter.io/v1alpha1/namespaces/{namespace}/executions/{name}")
        status = obj.get("status") or {}
        if (status.get("lastCheckpoint") or {}).get("step", 0) >= step:
            return status
        assert status.get("phase") not in ("Failed", "Succeeded"), status
        time.sleep(1)
    raise AssertionError(f"{namespace}/{name} never checkpointed step {step}; last status: {status}")


def _grant_get(cluster: LocalCluster, namespace: str, user: str) -> None:
    role = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "Role",
        "metadata": {"name": "read-executions"},
        "rules": [{"apiGroups": ["stratarouter.io"], "resources": ["executions"], "verbs": ["get"]}],
    }
    binding = {
        "apiVersion": "rbac.authorization.k8s.io/v1",
        "kind": "RoleBinding",
        "metadata": {"name": "read-executions"},
        "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": "read-executions"},
        "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}],
    }
    rbac = f"/apis/rbac.authorization.k8s.io/v1/namespaces/{namespace}"
    cluster.api.request("POST", f"{rbac}/roles", role)
    cluster.api.request("POST", f"{rbac}/rolebindings", binding)


@pytest.fixture
def namespace(installed: Installed) -> Iterator[str]:
    name = f"view-e2e-{uuid.uuid4().hex[:6]}"
    installed.cluster.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": name}})
    try:
        yield name
    finally:
        delete_namespaces(installed.cluster, name)


def test_the_view_api_serves_a_real_runs_history_and_logs(installed: Installed, namespace: str) -> None:
    cluster, name = installed.cluster, "count"
    started = time.monotonic()
    _wait_available(cluster)
    print(f"{APISERVICE} Available after {time.monotonic() - started:.1f}s")
    apiservice = cluster.kubectl("get", "apiservice", APISERVICE)
    print(apiservice)
    assert f"{installed.namespace}/{FULLNAME}-view" in apiservice

    cluster.api.request(
        "POST", f"/apis/stratarouter.io/v1alpha1/namespaces/{namespace}/executions", _execution(name)
    )
    status = _wait_for_step(cluster, namespace, name, 3)
    assert status["attempt"] == 1
    pod = cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}-a1")
    assert pod["spec"]["nodeName"] == "real-node"
    assert pod["status"]["phase"] == "Running"

    # The aggregated API, as the admin: the run's checkpoints from the store, oldest first.
    path = f"{VIEW}/namespaces/{namespace}/executions/{name}/history"
    raw = _run(cluster, "kubectl", "get", "--raw", path)
    assert raw.returncode == 0, raw.stderr
    history = json.loads(raw.stdout)
    assert history["kind"] == "ExecutionHistory"
    assert history["metadata"]["name"] == name
    assert history["metadata"]["namespace"] == namespace
    steps = [item["step"] for item in history["items"]]
    assert len(steps) >= 3
    assert steps == list(range(1, len(steps) + 1)), steps
    assert {item["attempt"] for item in history["items"]} == {1}
    assert all(item["sizeBytes"] > 0 for item in history["items"])

    # A user with get on the Execution reads it; one without gets 403 from the view API's own check.
    _grant_get(cluster, namespace, "viewer")
    allowed = _run(cluster, "kubectl", "get", "--raw", path, "--as=viewer")
    assert allowed.returncode == 0, allowed.stderr
    assert [item["step"] for item in json.loads(allowed.stdout)["items"]][:3] == [1, 2, 3]
    refused = _run(cluster, "kubectl", "get", "--raw", path, "--as=stranger")
    assert refused.returncode != 0
    assert "Error from server (Forbidden)" in refused.stderr, refused.stderr
    assert "stranger" in refused.stderr, refused.stderr
    assert refused.stdout == ""

    # kubectl strata history: the same checkpoints, from the plugin on PATH.
    plugin_history = _run(cluster, "kubectl", "strata", "history", name, "-n", namespace)
    assert plugin_history.returncode == 0, plugin_history.stderr
    lines = plugin_history.stdout.splitlines()
    assert lines[0].split() == ["TIME", "STEP", "ATTEMPT", "SIZE", "WHAT", "DETAIL"], lines[0]
    checkpoint_rows = [line.split() for line in lines[1:] if " checkpoint " in f" {line} "]
    assert [int(row[1]) for row in checkpoint_rows][:3] == [1, 2, 3], lines
    assert all(row[2] == "1" for row in checkpoint_rows), lines
    as_json = _run(cluster, "kubectl", "strata", "history", name, "-n", namespace, "-o", "json")
    assert as_json.returncode == 0, as_json.stderr
    assert [cp["step"] for cp in json.loads(as_json.stdout)["checkpoints"]][:3] == [1, 2, 3]

    # kubectl strata logs --attempt 1: the real container's own output, through the kubelet.
    logs = _run(cluster, "kubectl", "strata", "logs", name, "--attempt", "1", "-n", namespace)
    assert logs.returncode == 0, logs.stderr
    log_lines = logs.stdout.splitlines()
    assert f"[workload] attempt 1: starting {namespace}/{name} from step 1" in log_lines, log_lines
    for step in (1, 2):
        assert any(line.startswith(f"[workload] step {step}/{STEPS}: ") for line in log_lines), log_lines
    missing = _run(cluster, "kubectl", "strata", "logs", name, "--attempt", "2", "-n", namespace)
    assert missing.returncode != 0
    assert f'pod "{name}-a2" of attempt 2 not found' in missing.stderr, missing.stderr
    print(f"view e2e checks took {time.monotonic() - started:.1f}s")
