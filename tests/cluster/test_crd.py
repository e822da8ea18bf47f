"""CRDs are served by a real API server: structural schema, CEL validation, the status subresource."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from stratarouter_dev.cluster import KubectlError, LocalCluster
from stratarouter_runtime.operator.resources.base import MERGE_PATCH

pytestmark = pytest.mark.cluster

CRD = Path(__file__).parent / "testdata" / "widgets-crd.yaml"
GROUP = "/apis/smoke.stratarouter.io/v1"


@pytest.fixture(scope="module")
def widgets(cluster: LocalCluster) -> None:
    cluster.kubectl("apply", "-f", str(CRD))
    cluster.kubectl(
        "wait", "--for=condition=Established", "--timeout=30s", "crd/widgets.smoke.stratarouter.io"
    )


def widget(name: str, min_replicas: int, max_replicas: int, **extra: int) -> str:
    spec = {"minReplicas": min_replicas, "maxReplicas": max_replicas, **extra}
    return json.dumps(
        {"apiVersion": "smoke.stratarouter.io/v1", "kind": "Widget", "metadata": {"name": name}, "spec": spec}
    )


def test_valid_object_is_stored_and_listed_by_short_name(
    cluster: LocalCluster, widgets: None, cluster_namespace: str
) -> None:
    cluster.kubectl("create", "-n", cluster_namespace, "-f", "-", input=widget("ok", 1, 3))
    got = json.loads(cluster.kubectl("get", "wdg", "ok", "-n", cluster_namespace, "-o", "json"))
    assert got["spec"] == {"minReplicas": 1, "maxReplicas": 3}


def test_cel_rule_rejects_invalid_object_with_its_message(
    cluster: LocalCluster, widgets: None, cluster_namespace: str
) -> None:
    with pytest.raises(KubectlError, match="minReplicas must not exceed maxReplicas"):
        cluster.kubectl("create", "-n", cluster_namespace, "-f", "-", input=widget("bad", 5, 2))
    assert "bad" not in cluster.kubectl("get", "widgets", "-n", cluster_namespace, "-o", "name")


def test_structural_schema_rejects_unknown_and_mistyped_fields(
    cluster: LocalCluster, widgets: None, cluster_namespace: str
) -> None:
    with pytest.raises(KubectlError, match=r"unknown field \"spec.bogus\""):
        cluster.kubectl("create", "-n", cluster_namespace, "-f", "-", input=widget("extra", 1, 2, bogus=1))
    with pytest.raises(KubectlError, match="should be greater than or equal to 0"):
        cluster.kubectl("create", "-n", cluster_namespace, "-f", "-", input=widget("neg", -1, 2))


def test_status_only_changes_through_the_status_subresource(
    cluster: LocalCluster, widgets: None, cluster_namespace: str
) -> None:
    cluster.kubectl("create", "-n", cluster_namespace, "-f", "-", input=widget("st", 0, 1))
    path = f"{GROUP}/namespaces/{cluster_namespace}/widgets/st"
    main = cluster.api.request("PATCH", path, {"status": {"phase": "Ignored"}}, content_type=MERGE_PATCH)
    assert "status" not in main or main["status"].get("phase") != "Ignored"
    sub = cluster.api.request(
        "PATCH", path + "/status", {"status": {"phase": "Ready"}}, content_type=MERGE_PATCH
    )
    assert sub["status"]["phase"] == "Ready"
    assert sub["metadata"]["generation"] == 1  # a status write is not a spec change
    assert "Ready" in cluster.kubectl("get", "widgets", "st", "-n", cluster_namespace)
