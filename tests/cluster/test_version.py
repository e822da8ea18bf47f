"""The control plane is the pinned Kubernetes release, built with real version information."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratarouter_runtime.dev.cluster import LocalCluster

pytestmark = pytest.mark.cluster

VERSIONS = Path(__file__).resolve().parents[2] / "hack" / "versions.env"


def pinned(name: str) -> str:
    for line in VERSIONS.read_text().splitlines():
        if line.startswith(f"{name}="):
            return line.split("=", 1)[1].strip()
    raise AssertionError(f"{name} not pinned in {VERSIONS}")


def test_kubectl_version_reports_the_pinned_server_and_client(cluster: LocalCluster) -> None:
    expected = pinned("KUBERNETES_VERSION")
    versions = json.loads(cluster.kubectl("version", "-o", "json"))
    assert versions["serverVersion"]["gitVersion"] == expected
    assert versions["clientVersion"]["gitVersion"] == expected
    assert f"Server Version: {expected}" in cluster.kubectl("version")


def test_nodes_are_kwok_nodes_and_ready(cluster: LocalCluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    assert len(nodes) == 2
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
        assert (
            node["status"]["nodeInfo"]["kubeletVersion"] == f"kwok-{pinned('KWOK_VERSION').removeprefix('v')}"
        )
        assert int(node["status"]["allocatable"]["pods"]) >= 500
