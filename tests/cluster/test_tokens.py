"""Bound service-account tokens: what the operator's checkpoint API uses to know which pod is calling."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.pods import is_running, wait_for_pod
from stratarouter_runtime.state.pod_contract import TOKEN_AUDIENCE
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

AUDIENCE = TOKEN_AUDIENCE


def review(cluster: LocalCluster, token: str, audiences: list[str]) -> dict[str, Any]:
    body = {
        "apiVersion": "authentication.k8s.io/v1",
        "kind": "TokenReview",
        "spec": {"token": token, "audiences": audiences},
    }
    status: dict[str, Any] = cluster.api.request("POST", "/apis/authentication.k8s.io/v1/tokenreviews", body)[
        "status"
    ]
    return status


def test_pod_bound_token_is_reviewed_with_its_audience(cluster: LocalCluster, cluster_namespace: str) -> None:
    ns = cluster_namespace
    api = cluster.api
    api.request("POST", f"/api/v1/namespaces/{ns}/serviceaccounts", {"metadata": {"name": "worker"}})
    pod = api.request(
        "POST",
        f"/api/v1/namespaces/{ns}/pods",
        {
            "metadata": {"name": "bound"},
            "spec": {
                "serviceAccountName": "worker",
                "containers": [{"name": "main", "image": "registry.invalid/smoke:1"}],
            },
        },
    )
    # The ServiceAccount admission plugin is on: it mounted the API token volume into the pod.
    assert any(v["name"].startswith("kube-api-access-") for v in pod["spec"]["volumes"])
    wait_for_pod(api, ns, "bound", is_running, what="Running")
    uid = pod["metadata"]["uid"]

    issued = api.request(
        "POST",
        f"/api/v1/namespaces/{ns}/serviceaccounts/worker/token",
        {
            "apiVersion": "authentication.k8s.io/v1",
            "kind": "TokenRequest",
            "spec": {
                "audiences": [AUDIENCE],
                "expirationSeconds": 600,
                "boundObjectRef": {"apiVersion": "v1", "kind": "Pod", "name": "bound", "uid": uid},
            },
        },
    )
    token = issued["status"]["token"]

    status = review(cluster, token, [AUDIENCE])
    assert status["authenticated"] is True, status
    assert status["audiences"] == [AUDIENCE]
    user = status["user"]
    assert user["username"] == f"system:serviceaccount:{ns}:worker"
    assert user["extra"]["authentication.kubernetes.io/pod-name"] == ["bound"]
    assert user["extra"]["authentication.kubernetes.io/pod-uid"] == [uid]

    # As on a real cluster: another audience, a review without audiences (the API server's own audience)
    # and the API server itself all refuse it.
    assert review(cluster, token, ["someone-else"]).get("authenticated") is not True
    assert review(cluster, token, []).get("authenticated") is not True
    with pytest.raises(KubeApiError) as err:
        KubeApi(cluster.server, token, cluster.ca_file.read_text()).get(f"/api/v1/namespaces/{ns}/pods")
    assert err.value.status == 401
    # A token for the API server's audience is not a `stratarouter` token either.
    plain = api.request(
        "POST", f"/api/v1/namespaces/{ns}/serviceaccounts/worker/token", {"spec": {"expirationSeconds": 600}}
    )["status"]["token"]
    assert review(cluster, plain, []).get("authenticated") is True
    assert review(cluster, plain, [AUDIENCE]).get("authenticated") is not True
    # The token dies with its pod.
    api.request("DELETE", f"/api/v1/namespaces/{ns}/pods/bound")
    wait_until(
        "the bound token to stop authenticating",
        lambda: not review(cluster, token, [AUDIENCE]).get("authenticated"),
    )


def test_token_request_for_a_missing_service_account_is_refused(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    with pytest.raises(KubeApiError) as err:
        cluster.api.request(
            "POST",
            f"/api/v1/namespaces/{cluster_namespace}/serviceaccounts/nobody/token",
            {"spec": {"audiences": [AUDIENCE]}},
        )
    assert err.value.status == 404
