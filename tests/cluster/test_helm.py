"""helm renders and installs a chart against the local cluster."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratarouter_dev.cluster import KubectlError, LocalCluster

pytestmark = pytest.mark.cluster

CHART = Path(__file__).parent / "testdata" / "smoke-chart"


def test_helm_template_renders_values(cluster: LocalCluster) -> None:
    out = cluster.run("helm", "template", "demo", str(CHART), "--set", "message=rendered")
    assert 'message: "rendered"' in out
    assert "kind: Deployment" in out
    with pytest.raises(KubectlError, match="incompatible with Kubernetes"):
        cluster.run("helm", "template", "demo", str(CHART), "--kube-version", "1.20.0")


def test_helm_install_and_uninstall(cluster: LocalCluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    cluster.run(
        "helm",
        "install",
        "demo",
        str(CHART),
        "-n",
        ns,
        "--set",
        "message=installed",
        "--wait",
        "--timeout",
        "90s",
    )
    cm = json.loads(cluster.kubectl("get", "configmap", "demo-smoke", "-n", ns, "-o", "json"))
    assert cm["data"]["message"] == "installed"
    deployment = json.loads(cluster.kubectl("get", "deployment", "demo-smoke", "-n", ns, "-o", "json"))
    assert deployment["status"]["readyReplicas"] == 1
    releases = json.loads(cluster.run("helm", "list", "-n", ns, "-o", "json"))
    assert [(r["name"], r["status"]) for r in releases] == [("demo", "deployed")]

    cluster.run("helm", "uninstall", "demo", "-n", ns, "--wait", "--timeout", "60s")
    assert not cluster.api.exists(f"/api/v1/namespaces/{ns}/configmaps/demo-smoke")
