"""The view API (view.stratarouter.io) on the real control plane: who may read a run, and who may not.

The operator serves the view API over TLS on loopback; an APIService registers it with the local API
server, through an ExternalName Service that names 127.0.0.1 (what the API server's aggregator dials).
Users are impersonated (``kubectl --as``) or hold client certificates made by the cluster's CA, with
Roles and RoleBindings of their own, and every request goes through the API server, as a user's would.

The fixtures here are shared with the plugin's tests (tests/operator/test_plugin.py imports them).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.ports import free_port
from stratarouter_runtime import StateManager
from stratarouter_runtime.operator.view.paths import API_PATH, APISERVICE_NAME, GROUP, VERSION, execution_path
from tests.operator.conftest import ROOT, Executions, OperatorProcess, wait_until

VIEW_SERVICE = "strata-view"
CHART = ROOT / "charts" / "stratarouter-operator"
APIREG = "/apis/apiregistration.k8s.io/v1/apiservices"
RBAC = "/apis/rbac.authorization.k8s.io/v1"


@dataclass
class View:
    """A view API registered for one test's operator."""

    cluster: Any
    namespace: str
    port: int

    def kubectl(self, *args: str, user: str | None = None, groups: tuple[str, ...] = (),
                input: str | None = None) -> subprocess.CompletedProcess[str]:  # fmt: skip
        """``kubectl`` as the admin, or impersonating ``user`` (with ``groups``); never raises."""
        cmd = [str(self.cluster.bin_dir / "kubectl"), f"--kubeconfig={self.cluster.kubeconfig}"]
        if user:
            cmd.append(f"--as={user}")
            cmd += [f"--as-group={g}" for g in groups]
        return subprocess.run(
            [*cmd, *args], input=input, capture_output=True, text=True, env=self.cluster.env, timeout=60
        )

    def raw(self, path: str, user: str | None = None) -> tuple[int, Any]:
        """``kubectl get --raw PATH`` as ``user``: (exit code, parsed JSON answer or stderr)."""
        done = self.kubectl("get", "--raw", path, user=user)
        if done.returncode == 0:
            return 0, json.loads(done.stdout)
        return done.returncode, done.stderr.strip()


def serving_cert(cluster: Any, namespace: str) -> tuple[Path, Path]:
    """The view API's serving certificate, for the name the aggregator verifies (``svc.ns.svc``)."""
    pair = cluster.pki.issue(
        f"view-{namespace}",
        "/CN=strata-view",
        sans=(f"DNS:{VIEW_SERVICE}.{namespace}.svc", "IP:127.0.0.1", "DNS:localhost"),
    )
    return pair.cert, pair.key


def chart_gate_objects(cluster: Any) -> list[dict[str, Any]]:
    """The chart's gate ClusterRole and its binding to system:authenticated, rendered by helm."""
    out = cluster.run(
        "helm", "template", "strata", str(CHART), "--namespace", "strata-system",
        "--set", "view.enabled=true", "--show-only", "templates/view-rbac.yaml",
    )  # fmt: skip
    docs = [d for d in yaml.safe_load_all(out) if d]
    gate = [d for d in docs if d["metadata"]["name"].endswith("-view-gate")]
    assert {d["kind"] for d in gate} == {"ClusterRole", "ClusterRoleBinding"}, docs
    return gate


@pytest.fixture(scope="session")
def view_gate(cluster: Any) -> None:
    """The chart's gate: every authenticated user may reach view.stratarouter.io's paths (the view API
    then asks whether they may ``get`` the Execution itself)."""
    for obj in chart_gate_objects(cluster):
        cluster.kubectl("apply", "-f", "-", input=json.dumps(obj))


@pytest.fixture
def view_env(operator_env: dict[str, str], cluster: Any, namespace: str) -> dict[str, str]:
    cert, key = serving_cert(cluster, namespace)
    operator_env.update(
        STRATA_VIEW_ENABLED="true",
        STRATA_VIEW_HOST="127.0.0.1",
        STRATA_VIEW_PORT=str(free_port()),
        STRATA_VIEW_TLS_CERT_FILE=str(cert),
        STRATA_VIEW_TLS_KEY_FILE=str(key),
        # RBAC changes made by a test apply at once (the cache is the same code either way)
        STRATA_VIEW_AUTHZ_CACHE_SECONDS="0",
        STRATA_API_HEADER_TIMEOUT_SECONDS="2",  # both ports' header deadline, short for the test of it
    )
    return operator_env


def apiservice(namespace: str, port: int, ca_bundle: bytes) -> dict[str, Any]:
    import base64

    return {
        "apiVersion": "apiregistration.k8s.io/v1",
        "kind": "APIService",
        "metadata": {"name": APISERVICE_NAME},
        "spec": {
            "group": GROUP,
            "version": VERSION,
            "service": {"namespace": namespace, "name": VIEW_SERVICE, "port": port},
            "caBundle": base64.b64encode(ca_bundle).decode(),
            "groupPriorityMinimum": 1000,
            "versionPriority": 15,
        },
    }


def available(kube: KubeApi) -> Any:
    found = kube.get(f"{APIREG}/{APISERVICE_NAME}")
    for c in (found.get("status") or {}).get("conditions") or []:
        if c["type"] == "Available":
            return c if c["status"] == "True" else None
    return None


@pytest.fixture
def view(
    cluster: Any, kube: KubeApi, view_env: dict[str, str], view_gate: None, operator: OperatorProcess
) -> Iterator[View]:
    """The running operator's view API, registered with the API server as an APIService."""
    namespace = operator.namespace
    port = int(view_env["STRATA_VIEW_PORT"])
    kube.request(
        "POST",
        f"/api/v1/namespaces/{namespace}/services",
        {
            "apiVersion": "v1",
            "kind": "Service",
            "metadata": {"name": VIEW_SERVICE},
            "spec": {"type": "ExternalName", "externalName": "127.0.0.1", "ports": [{"port": port}]},
        },
    )
    with contextlib.suppress(KubeApiError):
        kube.request("DELETE", f"{APIREG}/{APISERVICE_NAME}")
    kube.request("POST", APIREG, apiservice(namespace, port, cluster.ca_file.read_bytes()))
    try:
        wait_until("the view APIService to be Available", lambda: available(kube), timeout=60, every=0.3)
        yield View(cluster, namespace, port)
    finally:
        with contextlib.suppress(KubeApiError):
            print("APIService at the end:", json.dumps(kube.get(f"{APIREG}/{APISERVICE_NAME}").get("status")))
            kube.request("DELETE", f"{APIREG}/{APISERVICE_NAME}")


def role(view: View, name: str, rules: list[dict[str, Any]], user: str) -> None:
    """A Role with ``rules`` in the test's namespace, bound to ``user``."""
    ns = view.namespace
    view.cluster.kubectl("apply", "-f", "-", input=json.dumps({
        "apiVersion": "v1", "kind": "List", "items": [
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "Role",
             "metadata": {"name": name, "namespace": ns}, "rules": rules},
            {"apiVersion": "rbac.authorization.k8s.io/v1", "kind": "RoleBinding",
             "metadata": {"name": name, "namespace": ns},
             "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "Role", "name": name},
             "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User", "name": user}]},
        ]}))  # fmt: skip


GET_EXECUTIONS = {"apiGroups": ["stratarouter.io"], "resources": ["executions"], "verbs": ["get"]}
WRITE_EXECUTIONS = {"apiGroups": ["stratarouter.io"], "resources": ["executions"], "verbs": ["get", "patch"]}
CREATE_SNAPSHOTS = {"apiGroups": ["stratarouter.io"], "resources": ["snapshots"], "verbs": ["create", "get"]}


def checkpoints(pg_dsn: str, execution_id: str, states: dict[int, Any], attempt: int) -> None:
    """Write history checkpoints through the store, as the run's pod would (attempt-fenced)."""

    async def write() -> None:
        async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
            for step, state in states.items():
                await store.checkpoint(execution_id, step, state, attempt=attempt)

    asyncio.run(write())


def kwok_run(executions: Executions, pg_dsn: str, name: str) -> None:
    """A kwok Execution whose first attempt checkpoints steps 1-3 and fails (exit 137), and whose second
    attempt checkpoints 4 and 5: a run with history, a failure between attempts, and an audit trail."""
    executions.create(name)
    executions.wait_status(name, "attempt 1's pod", lambda s: s.get("podName") == f"{name}-a1")
    executions.wait_pod_running(f"{name}-a1")
    eid = f"{executions.namespace}/{name}"
    checkpoints(pg_dsn, eid, {1: {"loss": 1.0, "seen": [1]}, 2: {"loss": 0.8, "seen": [1, 2]},
                              3: {"loss": 0.7, "seen": [1, 2, 3]}}, attempt=1)  # fmt: skip
    executions.fail(f"{name}-a1", 137)
    executions.wait_status(name, "attempt 2's pod", lambda s: s.get("podName") == f"{name}-a2")
    executions.wait_pod_running(f"{name}-a2")
    last = {4: {"loss": 0.6, "seen": [1, 2, 3, 4]}, 5: {"loss": 0.5, "seen": [1, 2, 3, 4, 5], "done": True}}
    checkpoints(pg_dsn, eid, last, attempt=2)


# -- tests ---------------------------------------------------------------------------------------------


def test_discovery_and_who_may_read(view: View, executions: Executions, pg_dsn: str) -> None:
    """Discovery answers anyone; a user without ``get`` on the Execution is refused (403 naming the
    permission); a user with it reads status, history, state, diff and audit."""
    kwok_run(executions, pg_dsn, "train")
    ns = view.namespace

    code, found = view.raw(API_PATH, user="nobody")
    assert code == 0, found
    assert found["groupVersion"] == f"{GROUP}/{VERSION}"
    assert {r["name"] for r in found["resources"]} >= {"executions/history", "executions/state"}
    # kubectl's own discovery sees the group too
    groups = view.kubectl("api-versions").stdout.split()
    assert f"{GROUP}/{VERSION}" in groups

    for sub in ("status", "history", "state", "diff?from=1&to=2", "audit"):
        code, err = view.raw(execution_path(ns, "train", sub), user="nobody")
        assert code != 0
        assert "Forbidden" in err, err
        assert 'User "nobody" cannot get resource "executions" in API group "stratarouter.io"' in err, err
        assert f'in the namespace "{ns}"' in err

    role(view, "reader", [GET_EXECUTIONS], "reader")
    code, status = view.raw(execution_path(ns, "train", "status"), user="reader")
    assert code == 0, status
    assert (status["lastCheckpointStep"], status["attempt"], status["status"]) == (5, 2, "running")

    code, history = view.raw(execution_path(ns, "train", "history"), user="reader")
    assert code == 0, history
    assert [(i["step"], i["attempt"]) for i in history["items"]] == [(1, 1), (2, 1), (3, 1), (4, 2), (5, 2)]
    assert "state" not in history["items"][0]
    assert "continue" not in history["metadata"]

    code, state = view.raw(execution_path(ns, "train", "state?step=2"), user="reader")
    assert code == 0, state
    assert (state["step"], state["attempt"], state["state"]) == (2, 1, {"loss": 0.8, "seen": [1, 2]})
    code, latest = view.raw(execution_path(ns, "train", "state"), user="reader")
    assert (latest["step"], latest["state"]["done"]) == (5, True)

    code, diff = view.raw(execution_path(ns, "train", "diff?from=2&to=3"), user="reader")
    assert code == 0, diff
    assert diff["operations"] == [
        {"op": "replace", "path": "/loss", "value": 0.7},
        {"op": "add", "path": "/seen/-", "value": 3},
    ]

    code, audit = view.raw(execution_path(ns, "train", "audit"), user="reader")
    assert code == 0, audit
    kinds = [e["kind"] for e in audit["items"]]
    assert kinds.count("checkpoint") == 5
    starts = [(e["kind"], e["attempt"]) for e in audit["items"] if e["kind"] == "started"]
    assert starts == [("started", 1), ("started", 2)], audit["items"]

    # the same user, another Execution they may get but that has no stored run: 404 with the store's code
    code, err = view.raw(execution_path(ns, "absent", "status"), user="reader")
    assert code != 0
    assert "NotFound" in err, err


def test_pages(view: View, executions: Executions, pg_dsn: str) -> None:
    """History and audit come in pages of ``limit``, continued with ``continue``; no page is unbounded."""
    executions.create("long")
    executions.wait_status("long", "attempt 1's pod", lambda s: s.get("podName") == "long-a1")
    eid = f"{view.namespace}/long"
    checkpoints(pg_dsn, eid, {step: {"n": step} for step in range(1, 2502)}, attempt=1)
    path = execution_path(view.namespace, "long", "history")

    steps: list[int] = []
    token = ""
    pages = 0
    while True:
        code, page = view.raw(f"{path}?limit=700" + (f"&continue={token}" if token else ""))
        assert code == 0, page
        pages += 1
        steps += [i["step"] for i in page["items"]]
        token = page["metadata"].get("continue", "")
        if not token:
            break
    assert steps == list(range(1, 2502))
    assert pages == 4
    # without limit: the default page (100), never the whole history; a huge limit is capped at 1000
    code, page = view.raw(path)
    assert (len(page["items"]), bool(page["metadata"].get("continue"))) == (100, True)
    code, page = view.raw(f"{path}?limit=100000")
    assert len(page["items"]) == 1000
    code, audit = view.raw(execution_path(view.namespace, "long", "audit") + "?limit=10")
    assert len(audit["items"]) == 10
    assert audit["metadata"]["continue"]
    # a token from another list is refused, not misread
    code, err = view.raw(f"{execution_path(view.namespace, 'long', 'audit')}?continue={token or 'x'}")
    assert code != 0
    assert "BadRequest" in err, err
    code, err = view.raw(f"{path}?continue={audit['metadata']['continue']}")
    assert code != 0
    assert "not a token from a page of this history list" in err, err


def test_get_alone_cannot_write(view: View, executions: Executions, pg_dsn: str) -> None:
    """Reading needs ``get``; restore, snapshot and suspend are resource writes, which RBAC refuses to a
    user with ``get`` only, and allows to one with ``patch`` on the Execution / ``create`` on Snapshots."""
    kwok_run(executions, pg_dsn, "guarded")
    ns = view.namespace
    role(view, "reader", [GET_EXECUTIONS], "reader")
    role(view, "operator", [WRITE_EXECUTIONS, CREATE_SNAPSHOTS], "writer")
    snapshot = json.dumps({"apiVersion": "stratarouter.io/v1alpha1", "kind": "Snapshot",
                           "metadata": {"name": "s1", "namespace": ns},
                           "spec": {"executionName": "guarded", "step": 3}})  # fmt: skip
    writes = {
        "snapshot": ("create", "-f", "-"),
        "suspend": ("patch", "execution", "guarded", "-n", ns, "--type=merge",
                    "-p", '{"spec":{"suspend":true}}'),
        "restore": ("patch", "execution", "guarded", "-n", ns, "--type=merge",
                    "-p", '{"spec":{"restoreFrom":{"snapshot":"s1"}}}'),
    }  # fmt: skip
    for what, args in writes.items():
        done = view.kubectl(*args, user="reader", input=snapshot if what == "snapshot" else None)
        assert done.returncode != 0, f"{what} as a get-only user succeeded: {done.stdout}"
        verb, resource = ("create", "snapshots") if what == "snapshot" else ("patch", "executions")
        denied = f'User "reader" cannot {verb} resource "{resource}" in API group "stratarouter.io"'
        assert denied in done.stderr, done.stderr
    assert executions.get("guarded")["spec"].get("suspend") in (None, False)
    # ... while reading works for the same user
    assert view.raw(execution_path(ns, "guarded", "status"), user="reader")[0] == 0

    # the writer may do each of them
    done = view.kubectl(*writes["snapshot"], user="writer", input=snapshot)
    assert done.returncode == 0, done.stderr
    done = view.kubectl(*writes["suspend"], user="writer")
    assert done.returncode == 0, done.stderr
    assert executions.get("guarded")["spec"]["suspend"] is True


def test_only_the_front_proxy_is_believed(view: View, executions: Executions, pg_dsn: str) -> None:
    """Straight to the view port: no client certificate -> 401 whatever X-Remote-User says; a client
    certificate of the cluster's ordinary CA does not pass for the front proxy either."""
    kwok_run(executions, pg_dsn, "direct")
    url = f"https://127.0.0.1:{view.port}{execution_path(view.namespace, 'direct', 'state')}"
    context = ssl.create_default_context(cafile=str(view.cluster.ca_file))
    headers = {"X-Remote-User": "admin", "X-Remote-Group": "system:masters"}
    with pytest.raises(urllib.error.HTTPError) as refused:
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=10)
    assert refused.value.code == 401
    assert json.loads(refused.value.read())["kind"] == "Status"

    # a connection that never completes a request's head is closed (the checkpoint API's deadline)
    with (
        socket.create_connection(("127.0.0.1", view.port), timeout=10) as raw,
        context.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
    ):
        tls.sendall(b"GET /apis HTTP/1.1\r\nHost: x\r\n")
        started = time.monotonic()
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            assert tls.recv(1) == b""
        assert time.monotonic() - started < 8

    pair = view.cluster.pki.issue("view-impostor", "/CN=front-proxy-client/O=system:masters", client=True)
    context.load_cert_chain(str(pair.cert), str(pair.key))
    with pytest.raises((ssl.SSLError, urllib.error.URLError, ConnectionError)):
        urllib.request.urlopen(urllib.request.Request(url, headers=headers), context=context, timeout=10)


def test_a_certificate_user_reads_with_their_own_identity(
    view: View, executions: Executions, pg_dsn: str, tmp_path: Path
) -> None:
    """A user authenticated by a client certificate (CN = user, O = group) and bound by group reads."""
    kwok_run(executions, pg_dsn, "certs")
    pair = view.cluster.pki.issue("view-carol", "/O=ml-team/CN=carol", client=True)
    config = json.loads(view.cluster.kubeconfig.read_text())
    config["users"] = [{"name": "carol", "user": {"client-certificate": str(pair.cert),
                                                  "client-key": str(pair.key)}}]  # fmt: skip
    config["contexts"][0]["context"]["user"] = "carol"
    kubeconfig = tmp_path / "carol.kubeconfig"
    kubeconfig.write_text(json.dumps(config))
    path = execution_path(view.namespace, "certs", "history")

    def as_carol() -> subprocess.CompletedProcess[str]:
        return view.kubectl(f"--kubeconfig={kubeconfig}", "get", "--raw", path)

    refused = as_carol()
    assert refused.returncode != 0
    assert 'User "carol" cannot get resource "executions"' in refused.stderr
    view.cluster.kubectl("create", "role", "ml-read", "-n", view.namespace, "--verb=get",
                         "--resource=executions.stratarouter.io")  # fmt: skip
    view.cluster.kubectl("create", "rolebinding", "ml-read", "-n", view.namespace, "--role=ml-read",
                         "--group=ml-team")  # fmt: skip
    done = as_carol()
    assert done.returncode == 0, done.stderr
    assert [i["step"] for i in json.loads(done.stdout)["items"]] == [1, 2, 3, 4, 5]
