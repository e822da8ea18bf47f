"""The bundled PostgreSQL survives ``helm uninstall`` and ``helm install`` again: data, password, operator.

On the local cluster's real node, since the point is a real PostgreSQL writing a real data directory:
the chart's StatefulSet runs :mod:`tests.chart.postgres_image` (the official image's entrypoint
semantics: ``POSTGRES_PASSWORD`` is read only when the data directory is empty) on a hostPath
PersistentVolume made for the test, and the chart's operator runs from ``make images``' image. The node
has no cluster DNS, so the PostgreSQL Service gets a fixed ClusterIP (``postgresql.service.clusterIP``),
which the operator's pod reaches through the node's kube-proxy.

1. install; write checkpoints through the SDK with the password from the chart's Secret, over TCP
   (scram-sha-256) to the PostgreSQL pod;
2. uninstall: the claim and the Secret stay (the StatefulSet's Retain policy, ``resource-policy: keep``);
3. install again: the same password, a new PostgreSQL pod on the old data directory, an operator that
   connects to it (its startup migration finds the schema up to date) and the checkpoints still there.
"""

from __future__ import annotations

import base64
import os
import secrets
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev import images
from stratarouter_dev.cluster import KubectlError, LocalCluster
from stratarouter_dev.kubeapi import KubeApiError
from stratarouter_dev.node import RealNode, pod_placement
from stratarouter_runtime.state import StateManager
from tests.chart import postgres_image
from tests.chart.helm import CHART, Helm, values_file
from tests.chart.identity import cluster_helm, delete_namespaces, install

pytestmark = [pytest.mark.cluster, pytest.mark.timeout(900)]

RELEASE = "reinstall"
FULLNAME = f"{RELEASE}-stratarouter-operator"
POSTGRES = f"{FULLNAME}-postgresql"
CLAIM = f"data-{POSTGRES}-0"
EXECUTION = "reinstall/keep-me"


@dataclass(frozen=True)
class Setup:
    cluster: LocalCluster
    helm: Helm
    namespace: str
    values: dict[str, Any]
    data_dir: Path


def _import_image(node: RealNode, tarball: Path) -> None:
    ctr = ["ctr", "--address", str(node.socket), "-n", "k8s.io"]
    subprocess.run(
        [*ctr, "images", "import", "--all-platforms", str(tarball)],
        check=True, capture_output=True, text=True, timeout=300,
    )  # fmt: skip


def _persistent_volume(name: str, storage_class: str, namespace: str, path: Path) -> dict[str, Any]:
    """A hostPath volume on the real node, pre-bound to the StatefulSet's claim."""
    return {
        "apiVersion": "v1",
        "kind": "PersistentVolume",
        "metadata": {"name": name},
        "spec": {
            "capacity": {"storage": "1Gi"},
            "accessModes": ["ReadWriteOnce"],
            "persistentVolumeReclaimPolicy": "Retain",
            "storageClassName": storage_class,
            "claimRef": {"namespace": namespace, "name": CLAIM},
            "hostPath": {"path": str(path), "type": "Directory"},
        },
    }


@pytest.fixture(scope="module")
def node_with_postgres(real_node_services: RealNode) -> RealNode:
    """The real node (with kube-proxy) whose containerd holds the PostgreSQL stand-in."""
    _import_image(real_node_services, postgres_image.image_tarball())
    return real_node_services


@pytest.fixture
def setup(
    cluster: LocalCluster, node_with_postgres: RealNode, helm_binary: Path, tmp_path: Path
) -> Iterator[Setup]:
    """A namespace for the release and an empty volume for its PostgreSQL claim; all removed afterwards."""
    suffix = uuid.uuid4().hex[:6]
    namespace, volume = f"strata-re-{suffix}", f"strata-re-{suffix}"
    data_dir = tmp_path / "pgdata"
    data_dir.mkdir()
    os.chown(data_dir, postgres_image.UID, postgres_image.UID)
    data_dir.chmod(0o700)
    repository, tag = images.OPERATOR.split(":")
    pg_repository, pg_tag = postgres_image.REFERENCE.rsplit(":", 1)
    placement = pod_placement()
    values: dict[str, Any] = {
        "image": {"repository": repository, "tag": tag, "pullPolicy": "Never"},
        # Info lines too: the operator logs how many migrations its startup applied.
        "operator": {"extraArgs": ["--verbose"]},
        "postgresql": {
            "image": {"repository": pg_repository, "tag": pg_tag, "pullPolicy": "Never"},
            "persistence": {"enabled": True, "storageClass": volume, "size": "1Gi"},
            # No DNS on the local cluster: the operator reaches PostgreSQL at a fixed ClusterIP.
            "service": {"clusterIP": f"10.96.{secrets.randbelow(200) + 50}.{secrets.randbelow(200) + 10}"},
            **placement,
        },
        **placement,
    }
    cluster.api.request(
        "POST", "/api/v1/persistentvolumes", _persistent_volume(volume, volume, namespace, data_dir)
    )
    helm = cluster_helm(cluster, helm_binary)
    try:
        yield Setup(cluster, helm, namespace, values, data_dir)
    finally:
        print(cluster.kubectl("get", "pods,pvc,pv,secrets", "-n", namespace, "-o", "wide"))
        helm.run("uninstall", RELEASE, "--namespace", namespace, "--ignore-not-found", "--wait")
        delete_namespaces(cluster, namespace)
        try:
            cluster.api.request("DELETE", f"/api/v1/persistentvolumes/{volume}")
        except KubeApiError as exc:
            if exc.status != 404:
                raise


def _secret(setup: Setup) -> dict[str, str]:
    data = setup.cluster.api.get(f"/api/v1/namespaces/{setup.namespace}/secrets/{POSTGRES}")["data"]
    return {key: base64.b64decode(value).decode() for key, value in data.items()}


def _pods(setup: Setup, component: str) -> list[dict[str, Any]]:
    selector = f"app.kubernetes.io/instance={RELEASE},app.kubernetes.io/component={component}"
    items: list[dict[str, Any]] = setup.cluster.api.get(
        f"/api/v1/namespaces/{setup.namespace}/pods?labelSelector={selector}"
    )["items"]
    return items


def _install_without_waiting(setup: Setup) -> None:
    with values_file(setup.values) as path:
        setup.helm.run(
            "install", RELEASE, str(CHART), "--namespace", setup.namespace, "--values", str(path),
        )  # fmt: skip


def _uninstall(setup: Setup) -> None:
    [pod] = _pods(setup, "postgresql")
    setup.helm.run("uninstall", RELEASE, "--namespace", setup.namespace, "--wait")
    setup.cluster.kubectl(
        "wait", "--for=delete", "-n", setup.namespace, f"pod/{pod['metadata']['name']}", "--timeout=120s"
    )


def _wait_for_log(setup: Setup, pod: str, text: str, timeout: float = 180.0) -> str:
    deadline = time.monotonic() + timeout
    log = ""
    while time.monotonic() < deadline:
        try:
            log = setup.cluster.kubectl("logs", "-n", setup.namespace, pod)
        except KubectlError:  # not started yet
            log = ""
        if text in log:
            return log
        time.sleep(2)
    raise AssertionError(f"{pod} never logged {text!r}; last lines:\n{log[-3000:]}")


def _direct_url(setup: Setup, password: str) -> str:
    """The database at the PostgreSQL pod's own address (the host is the pod network's gateway)."""
    [pod] = _pods(setup, "postgresql")
    return f"postgresql://stratarouter:{password}@{pod['status']['podIP']}:5432/stratarouter"


def _operator_log(setup: Setup) -> str:
    return setup.cluster.kubectl("logs", "-n", setup.namespace, f"deployment/{FULLNAME}", "-c", "operator")


def _operator_started(setup: Setup) -> str:
    """The running operator's log, once it is Ready (it exits at startup if the store refuses it)."""
    [pod] = _pods(setup, "operator")
    [status] = [s for s in pod["status"]["containerStatuses"] if s["name"] == "operator"]
    assert status["ready"], status
    print(f"operator container restarts: {status['restartCount']}")
    log = _operator_log(setup)
    assert "store schema up to date (" in log, log[-3000:]
    return log


async def test_data_and_password_survive_uninstall_and_reinstall(setup: Setup) -> None:
    cluster = setup.cluster
    install(cluster, setup.helm, RELEASE, setup.namespace, setup.values)
    first = _secret(setup)
    [first_pod] = _pods(setup, "postgresql")
    assert (setup.data_dir / "pgdata" / "PG_VERSION").is_file(), "PostgreSQL did not use the volume"
    assert "(0 migration(s) applied)" not in _operator_started(setup), "a fresh database has no schema"

    async with StateManager(backend="postgresql", db_url=_direct_url(setup, first["password"])) as store:
        await store.start_execution(EXECUTION)
        for step in (1, 2, 3):
            await store.checkpoint(EXECUTION, step, {"count": step})

    _uninstall(setup)
    base = f"/api/v1/namespaces/{setup.namespace}"
    assert not cluster.api.exists(f"/apis/apps/v1/namespaces/{setup.namespace}/statefulsets/{POSTGRES}")
    assert not cluster.api.exists(f"/apis/apps/v1/namespaces/{setup.namespace}/deployments/{FULLNAME}")
    assert cluster.api.get(f"{base}/persistentvolumeclaims/{CLAIM}")["status"]["phase"] == "Bound"
    assert _secret(setup) == first, "the Secret with the password must outlive helm uninstall"

    install(cluster, setup.helm, RELEASE, setup.namespace, setup.values)
    assert _secret(setup)["password"] == first["password"]
    [second_pod] = _pods(setup, "postgresql")
    assert second_pod["metadata"]["uid"] != first_pod["metadata"]["uid"]
    # The operator started against the old database: its schema was already there, nothing to migrate.
    assert "(0 migration(s) applied)" in _operator_started(setup)
    async with StateManager(backend="postgresql", db_url=_direct_url(setup, first["password"])) as store:
        assert [cp.step for cp in await store.get_history(EXECUTION)] == [1, 2, 3]
        latest = await store.get_latest_checkpoint(EXECUTION)
        assert latest is not None
        assert latest.step == 3


async def test_a_deleted_password_secret_locks_the_operator_out_until_the_role_gets_the_new_one(
    setup: Setup,
) -> None:
    """What the kept Secret prevents, and the chart README's way out: the claim kept, the Secret not."""
    cluster = setup.cluster
    install(cluster, setup.helm, RELEASE, setup.namespace, setup.values)
    old = _secret(setup)["password"]
    async with StateManager(backend="postgresql", db_url=_direct_url(setup, old)) as store:
        await store.start_execution(EXECUTION)
        await store.checkpoint(EXECUTION, 1, {"count": 1})
    _uninstall(setup)
    cluster.api.request("DELETE", f"/api/v1/namespaces/{setup.namespace}/secrets/{POSTGRES}")

    _install_without_waiting(setup)
    new = _secret(setup)["password"]
    assert new != old
    # The old data directory keeps the old password: every connection of the operator is refused.
    _wait_for_log(setup, f"pod/{POSTGRES}-0", 'password authentication failed for user "stratarouter"')
    [locked_out] = _pods(setup, "operator")
    assert not all(s["ready"] for s in locked_out["status"].get("containerStatuses", [])), locked_out[
        "status"
    ]

    # The way out: give the role the Secret's password over the pod's Unix socket (trusted), restart.
    sql = f"ALTER ROLE stratarouter PASSWORD '{new}'"
    cluster.kubectl(
        "exec", "-n", setup.namespace, f"{POSTGRES}-0", "--", "psql", "-U", "stratarouter", "-c", sql
    )
    cluster.kubectl("delete", "pod", "-n", setup.namespace, locked_out["metadata"]["name"])
    cluster.kubectl("rollout", "status", "-n", setup.namespace, f"deployment/{FULLNAME}", "--timeout=180s")
    assert "(0 migration(s) applied)" in _operator_started(setup)
    async with StateManager(backend="postgresql", db_url=_direct_url(setup, new)) as store:
        assert [cp.step for cp in await store.get_history(EXECUTION)] == [1]
