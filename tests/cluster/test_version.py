"""The control plane is the pinned Kubernetes release, built with real version information."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.node import NODE_LABEL as REAL_NODE_LABEL

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


def test_two_kwok_nodes_and_the_real_node_are_ready(cluster: LocalCluster) -> None:
    nodes = json.loads(cluster.kubectl("get", "nodes", "-o", "json"))["items"]
    real = [n for n in nodes if n["metadata"]["labels"].get(REAL_NODE_LABEL) == "true"]
    assert [n["status"]["nodeInfo"]["kubeletVersion"] for n in real] == [pinned("KUBERNETES_VERSION")]
    kwok = [n for n in nodes if n not in real]
    assert len(kwok) == 2
    for node in nodes:
        ready = {c["type"]: c["status"] for c in node["status"]["conditions"]}["Ready"]
        assert ready == "True"
    for node in kwok:
        assert (
            node["status"]["nodeInfo"]["kubeletVersion"] == f"kwok-{pinned('KWOK_VERSION').removeprefix('v')}"
        )
        assert int(node["status"]["allocatable"]["pods"]) >= 500
