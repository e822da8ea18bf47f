"""Operator tests: the real local API server, a real PostgreSQL, and the operator as a real process.

Each test gets a namespace of its own and an operator subprocess watching only that namespace, started
exactly as a user would (``python -m stratarouter_runtime.cli operator --standalone -n NS``), with a
fresh database (``pg_dsn``). Helpers here read and poke the cluster synchronously through the foundation's
stdlib client; kwok pods run no containers, so a test plays the kubelet (``fail_pod``/``succeed_pod``).
"""

from __future__ import annotations

import contextlib
import json
import time
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, ClassVar

import pytest

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.node import RealNode
from stratarouter_dev.operator_process import OperatorProcess
from stratarouter_dev.operator_process import operator_environment as dev_operator_environment
from stratarouter_dev.pods import fail_pod, is_running, wait_for_pod
from stratarouter_runtime.operator.resources.base import GROUP_PATH, MERGE_PATCH

ROOT = Path(__file__).resolve().parents[2]
CRD_DIR = ROOT / "crds"

WAIT_SECONDS = 60.0

Obj = dict[str, Any]


def wait_until(what: str, probe: Callable[[], Any], timeout: float = WAIT_SECONDS, every: float = 0.1) -> Any:
    """Poll ``probe`` until it returns something truthy; fail the test naming ``what`` on timeout."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        last = probe()
        if last:
            return last
        time.sleep(every)
    raise AssertionError(f"timed out after {timeout}s waiting for {what} (last: {last!r})")


@pytest.fixture(scope="session")
def kube(cluster: Any) -> KubeApi:
    """The cluster's admin client."""
    api: KubeApi = cluster.api
    return api


@pytest.fixture(scope="session")
def crds(cluster: Any, kube: KubeApi) -> None:
    """The generated CRDs, applied and established."""
    for path in sorted(CRD_DIR.glob("*.yaml")):
        cluster.kubectl("apply", "--server-side", "--force-conflicts", "-f", str(path))
    for name in ("executions.stratarouter.io", "snapshots.stratarouter.io"):

        def established(name: str = name) -> bool:
            crd = kube.get(f"/apis/apiextensions.k8s.io/v1/customresourcedefinitions/{name}")
            return any(
                c["type"] == "Established" and c["status"] == "True"
                for c in (crd.get("status") or {}).get("conditions") or []  # null right after an apply
            )

        wait_until(f"CRD {name} established", established, timeout=30)


@pytest.fixture
def namespace(kube: KubeApi, crds: None, cluster_namespace: str) -> Iterator[str]:
    """The test's own namespace; Executions' finalizers are dropped once the operator is gone."""
    yield cluster_namespace
    with contextlib.suppress(KubeApiError):
        items = kube.get(f"{GROUP_PATH}/namespaces/{cluster_namespace}/executions").get("items", [])
        for item in items:
            kube.request(
                "PATCH",
                f"{GROUP_PATH}/namespaces/{cluster_namespace}/executions/{item['metadata']['name']}",
                {"metadata": {"finalizers": None}},
                content_type=MERGE_PATCH,
            )


#: What the tests' operators run with: retention sweeps every second, handler retries after 0.5 s.
TEST_SETTINGS = {"STRATA_RETENTION_INTERVAL_SECONDS": "1", "STRATA_HANDLER_BACKOFF_SECONDS": "0.5"}


def operator_environment(kubeconfig: Path, pg_dsn: str, api_host: str = "127.0.0.1") -> dict[str, str]:
    """An operator's environment (:func:`stratarouter_dev.operator_process.operator_environment`) with
    the tests' settings."""
    return dev_operator_environment(kubeconfig, pg_dsn, api_host=api_host, **TEST_SETTINGS)


@pytest.fixture
def node(cluster: Any) -> RealNode:
    """The session cluster's real node, where pods run in real containers."""
    assert cluster.node is not None, "the session cluster starts with its real node"
    real: RealNode = cluster.node
    return real


@pytest.fixture
def operator_env(cluster: Any, pg_dsn: str, namespace: str) -> dict[str, str]:
    """The operator's environment (the cluster admin's identity); tests may tweak it before ``start()``."""
    return operator_environment(cluster.kubeconfig, pg_dsn)


@pytest.fixture
def operator_process(
    operator_env: dict[str, str], namespace: str, tmp_path: Path
) -> Iterator[OperatorProcess]:
    """An operator process, not yet started (for tests that need to set things up first)."""
    op = OperatorProcess(operator_env, namespace, tmp_path / "operator.log")
    yield op
    op.stop()
    print(f"--- operator log ({op.log_path}) ---\n{op.logs()[-6000:]}")


@pytest.fixture
def operator(operator_process: OperatorProcess) -> OperatorProcess:
    """A running operator for the test's namespace."""
    operator_process.start()
    return operator_process


@dataclass
class CustomObjects:
    """Our custom objects of one kind in one namespace, read and changed the way kubectl would."""

    kind: ClassVar[str]
    plural: ClassVar[str]
    kube: KubeApi
    namespace: str

    def path(self, name: str = "") -> str:
        base = f"{GROUP_PATH}/namespaces/{self.namespace}/{self.plural}"
        return f"{base}/{name}" if name else base

    def post(self, name: str, spec: Obj) -> Obj:
        body = {
            "apiVersion": "stratarouter.io/v1alpha1",
            "kind": self.kind,
            "metadata": {"name": name},
            "spec": spec,
        }
        result: Obj = self.kube.request("POST", self.path(), body)
        return result

    def get(self, name: str) -> Obj | None:
        try:
            return self.kube.get(self.path(name))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def status(self, name: str) -> Obj:
        return (self.get(name) or {}).get("status") or {}

    def delete(self, name: str) -> None:
        self.kube.request("DELETE", self.path(name))

    def wait_phase(self, name: str, phase: str, timeout: float = WAIT_SECONDS) -> Obj:
        def probe() -> Obj | None:
            status = self.status(name)
            return status if status.get("phase") == phase else None

        result: Obj = wait_until(f"{self.kind} {name} phase {phase}", probe, timeout)
        return result


@dataclass
class Executions(CustomObjects):
    """Executions and their pods in one namespace."""

    kind = "Execution"
    plural = "executions"
    created: list[str] = field(default_factory=list)

    def create(self, name: str, **spec: Any) -> Obj:
        obj = self.post(name, {"template": template(), **spec})
        self.created.append(name)
        return obj

    def patch_spec(self, name: str, spec: Obj) -> Obj:
        return self.kube.request("PATCH", self.path(name), {"spec": spec}, content_type=MERGE_PATCH)

    def wait_status(
        self, name: str, what: str, check: Callable[[Obj], bool], timeout: float = WAIT_SECONDS
    ) -> Obj:
        def probe() -> Obj | None:
            status = self.status(name)
            return status if check(status) else None

        result: Obj = wait_until(f"{name}: {what}", probe, timeout)
        return result

    def condition(self, name: str, type_: str) -> Obj | None:
        return next((c for c in self.status(name).get("conditions", []) if c["type"] == type_), None)

    # -- pods ------------------------------------------------------------------------------------
    def pod_path(self, pod: str) -> str:
        return f"/api/v1/namespaces/{self.namespace}/pods/{pod}"

    def pods(self, name: str) -> list[Obj]:
        selector = f"app.kubernetes.io/managed-by=stratarouter,stratarouter.io/execution={name}"
        items = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/pods?labelSelector={urllib.parse.quote(selector)}"
        ).get("items", [])
        return list(items)

    def live_pods(self, name: str) -> list[str]:
        """Pods of the execution that are not finished and not being deleted."""
        return sorted(
            p["metadata"]["name"]
            for p in self.pods(name)
            if p.get("status", {}).get("phase") not in ("Succeeded", "Failed")
            and not p["metadata"].get("deletionTimestamp")
        )

    def pod(self, pod: str) -> Obj | None:
        try:
            return self.kube.get(self.pod_path(pod))
        except KubeApiError as exc:
            if exc.status == 404:
                return None
            raise

    def wait_pod_running(self, pod: str, timeout: float = WAIT_SECONDS) -> Obj:
        found = wait_for_pod(self.kube, self.namespace, pod, is_running, timeout=timeout, what="Running")
        assert found is not None
        return found

    def env(self, pod: str) -> dict[str, str]:
        body = self.pod(pod)
        assert body is not None, f"pod {pod} missing"
        return {e["name"]: e.get("value", "") for e in body["spec"]["containers"][0].get("env", [])}

    def fail(self, pod: str, exit_code: int = 1) -> None:
        fail_pod(self.kube, self.namespace, pod, exit_code)

    def succeed(self, pod: str) -> None:
        """Play the kubelet: every container exited 0."""
        fail_pod(self.kube, self.namespace, pod, 0, reason="Completed")
        self.kube.request(
            "PATCH",
            self.pod_path(pod) + "/status",
            {"status": {"phase": "Succeeded"}},
            content_type=MERGE_PATCH,
        )

    def evict(self, pod: str) -> None:
        """What the kubelet writes when it evicts a pod."""
        self.wait_pod_running(pod)
        self.kube.request(
            "PATCH",
            self.pod_path(pod) + "/status",
            {"status": {"phase": "Failed", "reason": "Evicted", "message": "The node was low on memory."}},
            content_type=MERGE_PATCH,
        )

    def events(self, name: str) -> list[Obj]:
        selector = f"involvedObject.name={name},involvedObject.kind=Execution"
        items = self.kube.get(
            f"/api/v1/namespaces/{self.namespace}/events?fieldSelector={urllib.parse.quote(selector)}"
        ).get("items", [])
        return list(items)

    def event_reasons(self, name: str) -> list[str]:
        return [
            e["reason"] for e in sorted(self.events(name), key=lambda e: e["metadata"]["creationTimestamp"])
        ]


def template(**container: Any) -> Obj:
    """A minimal pod template (kwok never runs the image)."""
    return {"spec": {"containers": [{"name": "work", "image": "example.invalid/work:1", **container}]}}


def parse_time(value: str) -> datetime:
    return datetime.fromisoformat(value.replace("Z", "+00:00")).astimezone(UTC)


@pytest.fixture
def executions(kube: KubeApi, namespace: str) -> Executions:
    return Executions(kube, namespace)


def dump(obj: Any) -> str:
    return json.dumps(obj, indent=1, sort_keys=True)
