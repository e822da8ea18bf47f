"""The chart installed into the local cluster, and its ServiceAccount as a client identity.

Reusable outside tests/chart: the operator tests can run as the operator would in its pod, with exactly the
chart's RBAC instead of cluster-admin::

    from tests.chart.identity import operator_identity  # in a conftest: registers the session fixture

    def test_recovery(operator_identity: ServiceAccountIdentity) -> None:
        ...  # point the operator at operator_identity.kubeconfig

``operator_identity`` installs the chart (cluster-wide mode, no bundled PostgreSQL, CRDs left to whoever
applies them) and writes a kubeconfig holding a token from the TokenRequest API for its ServiceAccount.
``granted_rules`` asks the API server (SelfSubjectRulesReview) what a token may do.
"""

from __future__ import annotations

import dataclasses
import json
import uuid
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple

import pytest
import yaml

from stratarouter_dev.cluster import KubectlError, LocalCluster
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from tests.chart.helm import CHART, Helm, values_file

CRD_NAMES = ("executions.stratarouter.io", "snapshots.stratarouter.io")
HELM_OWNER_ANNOTATIONS = ("meta.helm.sh/release-name", "meta.helm.sh/release-namespace")


class Grant(NamedTuple):
    """One (API group, resource, verb, resourceName) a subject may use; resource_name "" means any."""

    group: str
    resource: str
    verb: str
    resource_name: str = ""


@dataclass(frozen=True)
class ServiceAccountIdentity:
    """A ServiceAccount with a bound token and a kubeconfig that authenticates with it."""

    namespace: str
    name: str
    token: str
    kubeconfig: Path

    @property
    def username(self) -> str:
        return f"system:serviceaccount:{self.namespace}:{self.name}"


def cluster_helm(cluster: LocalCluster, binary: Path) -> Helm:
    """helm pointed at the local cluster (admin kubeconfig, helm's dirs inside the cluster's root)."""
    return Helm(binary, cluster.env)


def adopt_crds(cluster: LocalCluster, release: str, namespace: str) -> None:
    """Hand existing stratarouter CRDs to ``release`` so ``helm install`` may take them over.

    The same steps a user runs after applying crds/ by hand (or after uninstalling another release, whose
    CRDs the keep policy left behind): Helm adopts an object carrying its release annotations and label.
    """
    for name in CRD_NAMES:
        try:
            cluster.kubectl("get", "crd", name)
        except KubectlError:
            continue
        cluster.kubectl("label", "--overwrite", "crd", name, "app.kubernetes.io/managed-by=Helm")
        cluster.kubectl(
            "annotate", "--overwrite", "crd", name,
            f"meta.helm.sh/release-name={release}", f"meta.helm.sh/release-namespace={namespace}",
        )  # fmt: skip


def install(
    cluster: LocalCluster,
    helm: Helm,
    release: str,
    namespace: str,
    values: Mapping[str, Any],
    *,
    chart: Path = CHART,
    upgrade: bool = False,
) -> None:
    """``helm install`` (or ``upgrade``) and wait until the Deployment and StatefulSet are ready."""
    if values.get("crds", {}).get("install", True):
        adopt_crds(cluster, release, namespace)
    with values_file(values) as path:
        helm.run(
            "upgrade" if upgrade else "install", release, str(chart),
            "--namespace", namespace, "--create-namespace",
            "--values", str(path), "--wait", "--timeout", "180s",
        )  # fmt: skip


def request_token(cluster: LocalCluster, namespace: str, name: str, seconds: int = 6 * 3600) -> str:
    """A bound token for the ServiceAccount from the TokenRequest API (``kubectl create token``)."""
    return cluster.kubectl("create", "token", name, "-n", namespace, f"--duration={seconds}s").strip()


def write_kubeconfig(cluster: LocalCluster, token: str, path: Path) -> Path:
    """A copy of the admin kubeconfig whose only user authenticates with ``token``."""
    config = yaml.safe_load(cluster.kubeconfig.read_text())
    for entry in config["users"]:
        entry["user"] = {"token": token}
    path.write_text(json.dumps(config, indent=2))
    path.chmod(0o600)
    return path


def identity_for(cluster: LocalCluster, namespace: str, name: str, directory: Path) -> ServiceAccountIdentity:
    token = request_token(cluster, namespace, name)
    kubeconfig = write_kubeconfig(cluster, token, directory / f"{namespace}-{name}.kubeconfig")
    return ServiceAccountIdentity(namespace=namespace, name=name, token=token, kubeconfig=kubeconfig)


def api_as(cluster: LocalCluster, token: str) -> KubeApi:
    """The stdlib client of the cluster, authenticated with ``token`` instead of the admin's."""
    return dataclasses.replace(cluster.api, token=token)


def granted_rules(cluster: LocalCluster, token: str, namespace: str) -> set[Grant]:
    """What ``token`` may do in ``namespace`` (namespaced and cluster-wide rules), per the API server."""
    review = api_as(cluster, token).request(
        "POST",
        "/apis/authorization.k8s.io/v1/selfsubjectrulesreviews",
        {
            "apiVersion": "authorization.k8s.io/v1",
            "kind": "SelfSubjectRulesReview",
            "spec": {"namespace": namespace},
        },
    )
    status = review["status"]
    if status.get("incomplete"):
        raise AssertionError(f"rules review incomplete: {status.get('evaluationError')}")
    grants: set[Grant] = set()
    for rule in status.get("resourceRules", []):
        for group in rule.get("apiGroups", [""]):
            for resource in rule.get("resources", []):
                for verb in rule["verbs"]:
                    for name in rule.get("resourceNames") or [""]:
                        grants.add(Grant(group, resource, verb, name))
    for rule in status.get("nonResourceRules", []):
        for url in rule.get("nonResourceURLs", []):
            for verb in rule["verbs"]:
                grants.add(Grant("<non-resource>", url, verb))
    return grants


def baseline_rules(cluster: LocalCluster, namespace: str) -> set[Grant]:
    """What any ServiceAccount may do with no binding of its own (system:basic-user, discovery, ...)."""
    name = f"bare-{uuid.uuid4().hex[:6]}"
    cluster.kubectl("create", "serviceaccount", name, "-n", namespace)
    try:
        return granted_rules(cluster, request_token(cluster, namespace, name, 600), namespace)
    finally:
        cluster.kubectl("delete", "serviceaccount", name, "-n", namespace, "--wait=false")


def delete_namespaces(cluster: LocalCluster, *names: str) -> None:
    for name in names:
        try:
            cluster.api.request("DELETE", f"/api/v1/namespaces/{name}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise


#: Values of the identity-only install: the chart's RBAC and ServiceAccount, no database, no CRDs.
IDENTITY_VALUES: dict[str, Any] = {
    "postgresql": {"enabled": False},
    "database": {"existingSecret": "unused-by-the-identity-fixture"},
    "crds": {"install": False},
}


@pytest.fixture(scope="session")
def operator_identity(
    cluster: LocalCluster, helm_binary: Path, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[ServiceAccountIdentity]:
    """The chart's operator identity (cluster-wide mode) with a kubeconfig, for tests that run the operator.

    The chart's Deployment is installed too; on kwok nodes its pod is Running but no container runs, so it
    never competes with an operator the tests start themselves.
    """
    release = namespace = f"strata-rbac-{uuid.uuid4().hex[:6]}"
    helm = cluster_helm(cluster, helm_binary)
    install(cluster, helm, release, namespace, IDENTITY_VALUES)
    try:
        yield identity_for(
            cluster, namespace, f"{release}-stratarouter-operator", tmp_path_factory.mktemp("identity")
        )
    finally:
        helm.run("uninstall", release, "--namespace", namespace, "--wait")
        delete_namespaces(cluster, namespace)
