"""The chart against the local control plane: install, what the operator identity may do, upgrade, uninstall.

kwok plays the kubelet, so the operator's pod is scheduled and Running on a fake node but no container runs:
these tests prove what Helm and the API server do with the chart (CRDs served, objects created, RBAC
granted, upgrades and uninstalls keeping user data), not the operator's behaviour.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_dev.cluster import KWOK_ANNOTATION, LocalCluster
from stratarouter_runtime.operator.resources.base import MERGE_PATCH
from tests.chart.helm import CHART, Helm, HelmError
from tests.chart.identity import (
    CRD_NAMES,
    Grant,
    baseline_rules,
    cluster_helm,
    delete_namespaces,
    granted_rules,
    install,
    request_token,
)

pytestmark = pytest.mark.cluster

TESTDATA = Path(__file__).parent / "testdata"
GROUP_PATH = "/apis/stratarouter.io/v1alpha1"
#: Values for the local cluster: no storage provisioner there, so the bundled PostgreSQL uses an emptyDir.
LOCAL_VALUES: dict[str, Any] = {"postgresql": {"persistence": {"enabled": False}}}


def _grants(group: str, resource: str, *verbs: str, name: str = "") -> set[Grant]:
    return {Grant(group, resource, verb, name) for verb in verbs}


#: Granted cluster-wide in every mode: kopf's CRD watch, the checkpoint API's TokenReviews, the node watch.
CLUSTER_GRANTS = (
    _grants("apiextensions.k8s.io", "customresourcedefinitions", "list", "watch")
    | _grants("authentication.k8s.io", "tokenreviews", "create")
    | _grants("", "nodes", "get", "list", "watch")
)
#: Granted where Executions live (everywhere, or per watched namespace).
WORKLOAD_GRANTS = (
    _grants("stratarouter.io", "executions", "get", "list", "watch", "patch", "delete")
    | _grants("stratarouter.io", "snapshots", "get", "list", "watch", "patch")
    | _grants("stratarouter.io", "executions/status", "patch")
    | _grants("stratarouter.io", "snapshots/status", "patch")
    | _grants("stratarouter.io", "executions/finalizers", "update")
    | _grants("", "pods", "get", "list", "watch", "create", "delete")
    | _grants("", "events", "create")
)


def _suffix() -> str:
    return uuid.uuid4().hex[:6]


def _execution(name: str) -> dict[str, Any]:
    return {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name},
        "spec": {"template": {"spec": {"containers": [{"name": "main", "image": "example.com/workload:1"}]}}},
    }


def _pods(cluster: LocalCluster, namespace: str, selector: str) -> list[dict[str, Any]]:
    items: list[dict[str, Any]] = cluster.api.get(
        f"/api/v1/namespaces/{namespace}/pods?labelSelector={selector}"
    )["items"]
    return items


def _chart_granted(cluster: LocalCluster, token: str, namespace: str) -> set[Grant]:
    """What the token may do in ``namespace`` beyond what any ServiceAccount may do."""
    return granted_rules(cluster, token, namespace) - baseline_rules(cluster, namespace)


@pytest.fixture(scope="module")
def cluster_helm_client(cluster: LocalCluster, helm_binary: Path) -> Helm:
    return cluster_helm(cluster, helm_binary)


@pytest.fixture(scope="module")
def installed(cluster: LocalCluster, cluster_helm_client: Helm) -> Iterator[str]:
    """The chart's defaults (cluster-wide, bundled PostgreSQL) as release "strata"; yields its namespace."""
    namespace = f"strata-{_suffix()}"
    install(cluster, cluster_helm_client, "strata", namespace, LOCAL_VALUES)
    yield namespace
    cluster_helm_client.run("uninstall", "strata", "--namespace", namespace, "--wait")
    delete_namespaces(cluster, namespace)


# -- helm install ------------------------------------------------------------------------------------------


def test_crds_are_served(cluster: LocalCluster, installed: str) -> None:
    for name in CRD_NAMES:
        crd = cluster.api.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
        conditions = {c["type"]: c["status"] for c in crd["status"]["conditions"]}
        assert conditions["Established"] == "True", conditions
        assert crd["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
    served = {r["name"] for r in cluster.api.get(GROUP_PATH)["resources"]}
    assert {"executions", "executions/status", "snapshots", "snapshots/status"} <= served
    # kubectl resolves the plural and the short name through discovery (an error would raise).
    cluster.kubectl("get", "executions", "-n", installed)
    cluster.kubectl("get", "exec,esnap", "-n", installed)


def test_operator_pod_is_running_on_a_kwok_node(cluster: LocalCluster, installed: str) -> None:
    pods = _pods(cluster, installed, "app.kubernetes.io/instance=strata,app.kubernetes.io/component=operator")
    assert len(pods) == 1
    pod = pods[0]
    assert pod["status"]["phase"] == "Running"
    node = cluster.api.get(f"/api/v1/nodes/{pod['spec']['nodeName']}")
    assert KWOK_ANNOTATION in node["metadata"].get("annotations", {})
    ready = {c["type"]: c["status"] for c in pod["status"]["conditions"]}
    assert ready["Ready"] == "True"
    assert pod["spec"]["serviceAccountName"] == "strata-stratarouter-operator"
    container = pod["spec"]["containers"][0]
    assert container["securityContext"]["readOnlyRootFilesystem"] is True


def test_bundled_postgresql_is_running(cluster: LocalCluster, installed: str) -> None:
    pods = _pods(
        cluster, installed, "app.kubernetes.io/instance=strata,app.kubernetes.io/component=postgresql"
    )
    assert [p["status"]["phase"] for p in pods] == ["Running"]
    secret = cluster.api.get(
        f"/api/v1/namespaces/{installed}/secrets/strata-stratarouter-operator-postgresql"
    )
    assert {"url", "password"} <= secret["data"].keys()


def test_service_selects_the_operator_pod(cluster: LocalCluster, installed: str) -> None:
    service = cluster.api.get(f"/api/v1/namespaces/{installed}/services/strata-stratarouter-operator")
    assert [p["port"] for p in service["spec"]["ports"]] == [8080]
    selector = ",".join(f"{k}={v}" for k, v in service["spec"]["selector"].items())
    assert len(_pods(cluster, installed, selector)) == 1


def test_rbac_objects_are_present(cluster: LocalCluster, installed: str) -> None:
    rbac = "/apis/rbac.authorization.k8s.io/v1"
    for kind in ("clusterroles", "clusterrolebindings"):
        for suffix in ("cluster", "workloads"):
            assert cluster.api.exists(f"{rbac}/{kind}/strata-stratarouter-operator-{suffix}"), (kind, suffix)
    assert cluster.api.exists(f"/api/v1/namespaces/{installed}/serviceaccounts/strata-stratarouter-operator")


def test_the_operator_identity_may_do_exactly_the_chart_rules(cluster: LocalCluster, installed: str) -> None:
    """SelfSubjectRulesReview with a TokenRequest token of the chart's ServiceAccount: no more, no less."""
    token = request_token(cluster, installed, "strata-stratarouter-operator", 600)
    for namespace in (installed, "default"):
        assert _chart_granted(cluster, token, namespace) == CLUSTER_GRANTS | WORKLOAD_GRANTS, namespace


# -- namespaced mode ---------------------------------------------------------------------------------------


def test_namespaced_mode_grants_workload_rights_only_in_watched_namespaces(
    cluster: LocalCluster, cluster_helm_client: Helm
) -> None:
    suffix = _suffix()
    namespace, watched, other = f"strata-ns-{suffix}", f"team-a-{suffix}", f"team-b-{suffix}"
    for name in (watched, other):
        cluster.kubectl("create", "namespace", name)
    values = {**LOCAL_VALUES, "watchNamespaces": [watched], "replicas": 2, "crds": {"install": False}}
    try:
        install(cluster, cluster_helm_client, "strata-ns", namespace, values)
        token = request_token(cluster, namespace, "strata-ns-stratarouter-operator", 600)
        peering = _grants("kopf.dev", "kopfpeerings", "list", "watch") | _grants(
            "kopf.dev", "kopfpeerings", "patch", name="stratarouter"
        )
        assert _chart_granted(cluster, token, watched) == CLUSTER_GRANTS | WORKLOAD_GRANTS | peering
        assert _chart_granted(cluster, token, other) == CLUSTER_GRANTS
        assert _chart_granted(cluster, token, namespace) == CLUSTER_GRANTS
        assert cluster.api.exists(f"/apis/kopf.dev/v1/namespaces/{watched}/kopfpeerings/stratarouter")
        pods = _pods(cluster, namespace, "app.kubernetes.io/component=operator")
        assert [p["status"]["phase"] for p in pods] == ["Running", "Running"]
        assert cluster.api.exists(
            f"/apis/policy/v1/namespaces/{namespace}/poddisruptionbudgets/strata-ns-stratarouter-operator"
        )
    finally:
        cluster_helm_client.run("uninstall", "strata-ns", "--namespace", namespace, "--wait")
        delete_namespaces(cluster, namespace, watched, other)


def _releases(helm: Helm, namespace: str) -> list[dict[str, Any]]:
    """Every release in ``namespace``, failed and pending ones included."""
    listed: list[dict[str, Any]] = yaml.safe_load(
        helm.run("list", "--all", "--namespace", namespace, "--output", "yaml")
    )
    return listed or []


def test_a_missing_watch_namespace_fails_the_install_before_anything_is_created(
    cluster: LocalCluster, cluster_helm_client: Helm
) -> None:
    helm = cluster_helm_client
    suffix = _suffix()
    namespace, watched, missing = f"strata-miss-{suffix}", f"team-a-{suffix}", f"team-gone-{suffix}"
    release = "strata-miss"
    cluster.kubectl("create", "namespace", watched)
    values = {**LOCAL_VALUES, "watchNamespaces": [watched, missing], "crds": {"install": False}}
    try:
        with pytest.raises(HelmError) as failed:
            install(cluster, helm, release, namespace, values)
        message = failed.value.stderr
        print(message)
        assert (
            f"watchNamespaces: namespace {missing} not found in the cluster; create it first "
            f"(kubectl create namespace {missing}) or remove it from watchNamespaces. "
            "Nothing was installed or changed."
        ) in message
        assert watched not in message
        # No release at all (not a failed one), and none of its objects.
        if cluster.api.exists(f"/api/v1/namespaces/{namespace}"):
            assert _releases(helm, namespace) == []
        fullname = f"{release}-stratarouter-operator"
        assert not cluster.api.exists(f"/apis/apps/v1/namespaces/{namespace}/deployments/{fullname}")
        assert not cluster.api.exists(f"/api/v1/namespaces/{namespace}/serviceaccounts/{fullname}")
        rbac = "/apis/rbac.authorization.k8s.io/v1"
        assert not cluster.api.exists(f"{rbac}/namespaces/{watched}/rolebindings/{fullname}")
        assert not cluster.api.exists(f"{rbac}/clusterroles/{fullname}-cluster")

        # Create it and the very same install goes through; an upgrade naming another missing one fails
        # the same way and leaves the release as it was.
        cluster.kubectl("create", "namespace", missing)
        install(cluster, helm, release, namespace, values)
        assert cluster.api.exists(f"{rbac}/namespaces/{missing}/rolebindings/{fullname}")
        gone = f"team-never-{suffix}"
        with pytest.raises(HelmError) as refused:
            install(
                cluster,
                helm,
                release,
                namespace,
                {**values, "watchNamespaces": [watched, gone]},
                upgrade=True,
            )
        assert f"watchNamespaces: namespace {gone} not found in the cluster" in refused.value.stderr
        [deployed] = _releases(helm, namespace)
        assert (deployed["revision"], deployed["status"]) == ("1", "deployed")
        assert cluster.api.exists(f"{rbac}/namespaces/{missing}/rolebindings/{fullname}")
    finally:
        helm.run("uninstall", release, "--namespace", namespace, "--ignore-not-found", "--wait")
        delete_namespaces(cluster, namespace, watched, missing)


# -- helm upgrade and uninstall ----------------------------------------------------------------------------


def _previous_chart() -> Path:
    packages = sorted(TESTDATA.glob("stratarouter-operator-*.tgz"))
    assert len(packages) == 1, f"expected one packaged previous chart in {TESTDATA}, found {packages}"
    return packages[0]


def test_upgrade_from_the_previous_chart_keeps_executions_and_uninstall_keeps_crds(
    cluster: LocalCluster, cluster_helm_client: Helm
) -> None:
    helm = cluster_helm_client
    suffix = _suffix()
    namespace, work = f"strata-up-{suffix}", f"work-{suffix}"
    release = "strata-up"
    current_version = yaml.safe_load((CHART / "Chart.yaml").read_text())["version"]
    previous = _previous_chart()
    assert current_version not in previous.name, "bump Chart.yaml's version past the packaged previous one"
    try:
        install(cluster, helm, release, namespace, LOCAL_VALUES, chart=previous)
        db_secret = f"/api/v1/namespaces/{namespace}/secrets/{release}-stratarouter-operator-postgresql"
        password = cluster.api.get(db_secret)["data"]["password"]
        cluster.kubectl("create", "namespace", work)
        path = f"{GROUP_PATH}/namespaces/{work}/executions"
        created = cluster.api.request("POST", path, _execution("keep-me"))
        status = {"phase": "Running", "attempt": 2, "restarts": 1}
        cluster.api.request("PATCH", f"{path}/keep-me/status", {"status": status}, content_type=MERGE_PATCH)

        install(cluster, helm, release, namespace, LOCAL_VALUES, upgrade=True)
        # The bundled PostgreSQL's password is read back, not regenerated, and now outlives uninstall.
        upgraded = cluster.api.get(db_secret)
        assert upgraded["data"]["password"] == password
        assert upgraded["metadata"]["annotations"]["helm.sh/resource-policy"] == "keep"
        history = yaml.safe_load(helm.run("history", release, "--namespace", namespace, "-o", "yaml"))
        assert [h["chart"] for h in history] == [
            previous.name.removesuffix(".tgz"),
            f"stratarouter-operator-{current_version}",
        ]
        after = cluster.api.get(f"{path}/keep-me")
        assert after["metadata"]["uid"] == created["metadata"]["uid"]
        assert after["status"].items() >= status.items()
        for crd_file in sorted((CHART / "files" / "crds").glob("*.yaml")):
            want = yaml.safe_load(crd_file.read_text())
            got = cluster.api.get(
                f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{want['metadata']['name']}"
            )
            assert got["spec"]["versions"][0]["schema"] == want["spec"]["versions"][0]["schema"], (
                "CRD not upgraded"
            )

        helm.run("uninstall", release, "--namespace", namespace, "--wait")
        assert cluster.api.get(db_secret)["data"]["password"] == password
        for name in CRD_NAMES:
            assert cluster.api.exists(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}"), name
        kept = cluster.api.get(f"{path}/keep-me")
        assert kept["metadata"]["uid"] == created["metadata"]["uid"]
        assert kept["status"].items() >= status.items()
        assert not cluster.api.exists(
            f"/apis/apps/v1/namespaces/{namespace}/deployments/strata-up-stratarouter-operator"
        )
        assert not cluster.api.exists(
            "/apis/rbac.authorization.k8s.io/v1/clusterroles/strata-up-stratarouter-operator-workloads"
        )
    finally:
        helm.run("uninstall", release, "--namespace", namespace, "--ignore-not-found", "--wait")
        delete_namespaces(cluster, namespace, work)
