"""A real, throwaway Kubernetes control plane on loopback ports, without Docker.

etcd, kube-apiserver, kube-controller-manager and kube-scheduler are the real
components (built from source by ``hack/build-tools.sh``); kwok plays the
kubelet for two fake nodes, so pods get scheduled, reach Running and are
deleted like on a real cluster, but no container ever runs. Everything lives in
one temporary directory (data, certificates, kubeconfig, one log per
component) that :meth:`LocalCluster.stop` removes.

``python -m stratarouter_dev.cluster up|down`` is the Makefile's
cluster-up/cluster-down: ``up`` leaves the processes running after it exits and
prints the shell lines that point ``kubectl`` at them.
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import functools
import json
import os
import secrets
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from stratarouter_dev import images
from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_dev.node import NodeError, PodNetwork, RealNode
from stratarouter_dev.pki import FRONT_PROXY_CLIENT, Pki, make_pki
from stratarouter_dev.ports import free_port
from stratarouter_dev.processes import alive, owned, spawn, tail
from stratarouter_dev.tools import tools_bin_dir

#: Start order; stop goes the other way round.
COMPONENTS = ("etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok")
KWOK_ANNOTATION = "kwok.x-k8s.io/node"
NODE_LABEL = "stratarouter.io/kwok-node"
SERVICE_CIDR = "10.96.0.0/16"
POD_CIDR = "10.244.0.0/16"
#: Per fake node; two of them hold the 1,000-Execution benchmark with room to spare.
NODE_ALLOCATABLE = {"cpu": "128", "memory": "512Gi", "pods": "1100", "ephemeral-storage": "1Ti"}
PORT_ATTEMPTS = 3
REAL_NODE_READY_SECONDS = 60
NODE_LEASE_SECONDS = 20
NODE_MONITOR_GRACE_SECONDS = 16
#: The API server's identity towards kubelets (logs, exec), bound to the built-in kubelet-api-admin role.
KUBELET_CLIENT_USER = "kube-apiserver-kubelet-client"


class ClusterStartError(RuntimeError):
    """A component died or did not become ready; the message carries the tail of its log."""


class KubectlError(RuntimeError):
    """A ``kubectl``/``helm`` invocation exited non-zero; the message carries its stderr."""


@dataclass
class LocalCluster:
    """A running local control plane. Build one with :meth:`start`; :meth:`stop` leaves nothing behind."""

    root: Path
    bin_dir: Path
    server: str
    token: str
    ports: dict[str, int]
    pids: dict[str, int] = field(default_factory=dict)
    network: PodNetwork | None = None
    node: RealNode | None = None
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)
    _argv: dict[str, tuple[list[str], bool]] = field(default_factory=dict, repr=False)

    # -- paths and clients ------------------------------------------------------------------------------

    @property
    def kubeconfig(self) -> Path:
        """Admin kubeconfig (JSON, which every YAML reader accepts)."""
        return self.root / "kubeconfig"

    @property
    def ca_file(self) -> Path:
        return self.root / "pki" / "ca.crt"

    @property
    def pki(self) -> Pki:
        """The cluster's CA and keys (made by :func:`make_pki` at start), to issue more identities."""
        return Pki.at(self.root / "pki")

    @property
    def log_dir(self) -> Path:
        return self.root / "logs"

    def log(self, component: str) -> Path:
        return self.log_dir / f"{component}.log"

    @functools.cached_property
    def api(self) -> KubeApi:
        """A small stdlib client authenticated as the cluster admin."""
        return KubeApi(self.server, self.token, self.ca_file.read_text())

    @property
    def env(self) -> dict[str, str]:
        """Environment for subprocesses: KUBECONFIG, the tools first on PATH, helm's dirs inside root."""
        helm = self.root / "helm"
        return {
            **os.environ,
            "KUBECONFIG": str(self.kubeconfig),
            "PATH": f"{self.bin_dir}{os.pathsep}{os.environ.get('PATH', '')}",
            "HELM_CACHE_HOME": str(helm / "cache"),
            "HELM_CONFIG_HOME": str(helm / "config"),
            "HELM_DATA_HOME": str(helm / "data"),
        }

    def run(self, tool: str, *args: str, input: str | None = None, timeout: float = 180.0) -> str:
        """Run ``tool`` (e.g. ``helm``) from the bin dir against this cluster; return stdout."""
        cmd = [str(self.bin_dir / tool), *args]
        result = subprocess.run(
            cmd, input=input, capture_output=True, text=True, env=self.env, timeout=timeout
        )
        if result.returncode != 0:
            raise KubectlError(
                f"`{tool} {' '.join(args)}` exited {result.returncode}: {result.stderr.strip()}"
            )
        return result.stdout

    def kubectl(self, *args: str, input: str | None = None, timeout: float = 180.0) -> str:
        """``kubectl --kubeconfig=<admin> ARGS``; raises :class:`KubectlError` with stderr on failure."""
        return self.run("kubectl", f"--kubeconfig={self.kubeconfig}", *args, input=input, timeout=timeout)

    # -- lifecycle --------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        bin_dir: Path | None = None,
        *,
        nodes: int = 2,
        real_node: bool | None = None,
        timeout: float = 90.0,
        die_with_parent: bool = False,
    ) -> LocalCluster:
        """Start every component, register ``nodes`` kwok nodes and the real node, wait until usable.

        Usable means: /readyz ok, every kwok node Ready without taints, the real node Ready, and the
        ``default`` ServiceAccount in ``default``. ``real_node`` defaults to :func:`real_node_wanted`.
        ``die_with_parent`` ties the processes to this one (for test sessions); leave it off when they
        must outlive it (``up``). On failure everything started is stopped and removed.
        """
        bin_dir = bin_dir or tools_bin_dir()
        image_dir = images.images_dir() if (real_node_wanted() if real_node is None else real_node) else None
        for attempt in range(1, PORT_ATTEMPTS + 1):
            ports = {name: free_port() for name in ("etcd", "etcd-peer", "apiserver")}
            # With a real node the API server listens on its bridge's gateway, where the node's pods
            # reach it (the `kubernetes` Service), and which is as local to this machine as loopback.
            network = PodNetwork.claim() if image_dir is not None else None
            host = network.gateway if network is not None else "127.0.0.1"
            cluster = cls(
                root=Path(tempfile.mkdtemp(prefix="strata-k8s-")),
                bin_dir=bin_dir,
                server=f"https://{host}:{ports['apiserver']}",
                token=secrets.token_urlsafe(32),
                ports=ports,
                network=network,
            )
            try:
                cluster._boot(nodes, image_dir, time.monotonic() + timeout, die_with_parent)
            except ClusterStartError as exc:
                cluster.stop()
                # Another process took a port between free_port() and the bind: pick new ones.
                if "address already in use" not in str(exc) or attempt == PORT_ATTEMPTS:
                    raise
            except BaseException:
                cluster.stop()
                raise
            else:
                return cluster
        raise AssertionError("unreachable")

    def _boot(self, nodes: int, image_dir: Path | None, deadline: float, die_with_parent: bool) -> None:
        self.log_dir.mkdir(parents=True)
        host = self.network.gateway if self.network is not None else "127.0.0.1"
        pki = make_pki(self.root / "pki", extra_sans=(f"IP:{host}",))
        kubelet_client = pki.issue("apiserver-kubelet-client", f"/CN={KUBELET_CLIENT_USER}", client=True)
        tokens = self.root / "tokens.csv"
        tokens.touch(mode=0o600)
        tokens.write_text(f'{self.token},admin,admin-uid,"system:masters"\n')
        self._write_kubeconfig()
        (self.root / "kwok.yaml").write_text(
            "apiVersion: config.kwok.x-k8s.io/v1alpha1\nkind: KwokConfiguration\noptions: {}\n"
        )
        kubeconfig = str(self.kubeconfig)
        etcd_url = f"http://127.0.0.1:{self.ports['etcd']}"
        peer_url = f"http://127.0.0.1:{self.ports['etcd-peer']}"
        commands: dict[str, list[str]] = {
            "etcd": [
                "--name=strata",
                f"--data-dir={self.root / 'etcd'}",
                f"--listen-client-urls={etcd_url}",
                f"--advertise-client-urls={etcd_url}",
                f"--listen-peer-urls={peer_url}",
                f"--initial-advertise-peer-urls={peer_url}",
                f"--initial-cluster=strata={peer_url}",
                "--unsafe-no-fsync=true",
                "--quota-backend-bytes=8589934592",
                "--log-level=warn",
            ],
            "kube-apiserver": [
                f"--etcd-servers={etcd_url}",
                f"--bind-address={host}",
                f"--advertise-address={host}",
                f"--secure-port={self.ports['apiserver']}",
                f"--tls-cert-file={pki.serving_cert}",
                f"--tls-private-key-file={pki.serving_key}",
                f"--token-auth-file={self.root / 'tokens.csv'}",
                # Client certificates for the real node's kubelet, which is authorized as a node is on a
                # real cluster: the Node authorizer, and NodeRestriction on what it may write.
                f"--client-ca-file={pki.ca_cert}",
                "--authorization-mode=Node,RBAC",
                "--enable-admission-plugins=NodeRestriction",
                f"--kubelet-client-certificate={kubelet_client.cert}",
                f"--kubelet-client-key={kubelet_client.key}",
                f"--kubelet-certificate-authority={pki.ca_cert}",
                # The front proxy: the API server's identity towards aggregated APIs (the operator's view
                # API), which trust the user it names in X-Remote-* headers on its certificate only.
                f"--requestheader-client-ca-file={pki.front_proxy_ca_cert}",
                f"--requestheader-allowed-names={FRONT_PROXY_CLIENT}",
                "--requestheader-username-headers=X-Remote-User",
                "--requestheader-group-headers=X-Remote-Group",
                "--requestheader-extra-headers-prefix=X-Remote-Extra-",
                f"--proxy-client-cert-file={pki.front_proxy_client.cert}",
                f"--proxy-client-key-file={pki.front_proxy_client.key}",
                # No --enable-aggregator-routing: an APIService's Service is dialled at its ClusterIP, or
                # at its name when it is an ExternalName Service, the only way to reach a process on this
                # machine's loopback (endpoint routing refuses ExternalName, and Endpoints refuse 127.0.0.1).
                "--kubelet-preferred-address-types=InternalIP",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--allow-privileged=true",
                f"--service-account-issuer={self.server}",
                f"--service-account-key-file={pki.service_account_pub}",
                f"--service-account-signing-key-file={pki.service_account_key}",
                # Only the issuer, as on a real cluster: a token for audience `stratarouter` is accepted by a
                # TokenReview that names that audience, never by the API server itself nor by a review
                # without audiences. Adding it here would hide exactly those bugs.
                f"--api-audiences={self.server}",
                # On loopback, the endpoints of the `kubernetes` Service would be 127.0.0.1, which
                # validation refuses; on the bridge's gateway they are real.
                f"--endpoint-reconciler-type={'lease' if self.network is not None else 'none'}",
                # /debug/pprof for `go tool pprof` (bench-operator's CPU profiles) only when asked for.
                f"--profiling={'true' if os.environ.get('STRATA_DEV_PROFILING') == '1' else 'false'}",
            ],
            "kube-controller-manager": [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                f"--service-account-private-key-file={pki.service_account_key}",
                f"--root-ca-file={pki.ca_cert}",
                f"--service-cluster-ip-range={SERVICE_CIDR}",
                "--controllers=*",
                # Defaults (20 qps) make 1,000-pod runs crawl through the GC and ReplicaSet controllers.
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--node-monitor-period=1s",
                # A node whose heartbeats stop is NotReady after 16 s (default 50 s), so the node-loss
                # tests wait seconds, not a minute; every node renews its lease each 5 s (20 s / 4).
                f"--node-monitor-grace-period={NODE_MONITOR_GRACE_SECONDS}s",
                "--profiling=false",
            ],
            "kube-scheduler": [
                f"--kubeconfig={kubeconfig}",
                f"--authentication-kubeconfig={kubeconfig}",
                f"--authorization-kubeconfig={kubeconfig}",
                "--leader-elect=false",
                "--bind-address=127.0.0.1",
                "--secure-port=0",
                "--kube-api-qps=200",
                "--kube-api-burst=400",
                "--profiling=false",
            ],
            "kwok": [
                f"--kubeconfig={kubeconfig}",
                f"--config={self.root / 'kwok.yaml'}",
                "--manage-all-nodes=false",
                f"--manage-nodes-with-annotation-selector={KWOK_ANNOTATION}=fake",
                f"--node-lease-duration-seconds={NODE_LEASE_SECONDS}",
                f"--cidr={POD_CIDR}",
                "--node-ip=10.0.0.1",
            ],
        }
        self._spawn("etcd", commands["etcd"], die_with_parent)
        self._wait("etcd", deadline, self._etcd_healthy, "etcd to answer /health")
        self._spawn("kube-apiserver", commands["kube-apiserver"], die_with_parent)
        self._wait("kube-apiserver", deadline, self._apiserver_ready, "kube-apiserver /readyz")
        for name in ("kube-controller-manager", "kube-scheduler", "kwok"):
            self._spawn(name, commands[name], die_with_parent)
        for i in range(nodes):
            self.api.request("POST", "/api/v1/nodes", _node_manifest(f"kwok-node-{i}"))
        self._wait("kwok", deadline, lambda: self._nodes_ready(nodes), f"{nodes} kwok nodes to be Ready")
        if self.network is not None and image_dir is not None:
            self._start_real_node(pki, self.network, image_dir, die_with_parent)
        self._wait(
            "kube-controller-manager",
            deadline,
            lambda: self.api.exists("/api/v1/namespaces/default/serviceaccounts/default"),
            "the default ServiceAccount in namespace default",
        )

    def _write_kubeconfig(self) -> None:
        ca_data = base64.b64encode(self.ca_file.read_bytes()).decode()
        config = {
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [
                {
                    "name": "stratarouter-local",
                    "cluster": {"server": self.server, "certificate-authority-data": ca_data},
                }
            ],
            "users": [{"name": "admin", "user": {"token": self.token}}],
            "contexts": [
                {
                    "name": "stratarouter-local",
                    "context": {"cluster": "stratarouter-local", "user": "admin", "namespace": "default"},
                }
            ],
            "current-context": "stratarouter-local",
        }
        self.kubeconfig.write_text(json.dumps(config, indent=2) + "\n")
        self.kubeconfig.chmod(0o600)

    def _start_real_node(self, pki: Pki, network: PodNetwork, image_dir: Path, die_with_parent: bool) -> None:
        """The kubelet + containerd node; the API server may call its kubelet as kubelet-api-admin."""
        self.api.request(
            "POST",
            "/apis/rbac.authorization.k8s.io/v1/clusterrolebindings",
            {
                "apiVersion": "rbac.authorization.k8s.io/v1",
                "kind": "ClusterRoleBinding",
                "metadata": {"name": KUBELET_CLIENT_USER},
                "roleRef": {"apiGroup": "rbac.authorization.k8s.io", "kind": "ClusterRole",
                            "name": "system:kubelet-api-admin"},
                "subjects": [{"apiGroup": "rbac.authorization.k8s.io", "kind": "User",
                              "name": KUBELET_CLIENT_USER}],
            },
        )  # fmt: skip
        try:
            self.node = RealNode.start(
                self.root / "node",
                self.bin_dir,
                pki,
                self.server,
                network,
                images.tarballs(image_dir),
                images.PAUSE,
                service_cidr=SERVICE_CIDR,
                lease_seconds=NODE_LEASE_SECONDS,
                die_with_parent=die_with_parent,
            )
        except NodeError as exc:
            raise ClusterStartError(f"the real node did not start: {exc}") from exc
        node = self.node
        try:
            node.wait_for(
                lambda: self._real_node_ready(node.name),
                f"node {node.name} to be Ready",
                REAL_NODE_READY_SECONDS,
                log_of="kubelet",
            )
        except NodeError as exc:
            raise ClusterStartError(str(exc)) from exc

    def _real_node_ready(self, name: str) -> bool:
        try:
            status = self.api.get(f"/api/v1/nodes/{name}").get("status", {})
        except KubeApiError:
            return False
        return any(
            c.get("type") == "Ready" and c.get("status") == "True" for c in status.get("conditions", [])
        )

    def _spawn(self, name: str, args: list[str], die_with_parent: bool) -> None:
        proc = spawn(
            [str(self.bin_dir / name), *args], self.log(name), self.root, die_with_parent=die_with_parent
        )
        self._procs[name] = proc
        self.pids[name] = proc.pid
        self._argv[name] = (args, die_with_parent)

    def restart(
        self,
        component: str,
        *,
        grace: float = 10.0,
        timeout: float = 60.0,
        while_down: Callable[[], None] | None = None,
    ) -> None:
        """Stop ``component`` (SIGTERM, SIGKILL after ``grace``) and start it again with the arguments it was
        started with, on the same ports and data; for kube-apiserver, wait until /readyz answers again.
        ``while_down`` runs once it is gone and before it starts again (to see what clients get then).

        For fault-injection runs (``dev.chaos``): clients see the component go away and come back. With
        ``die_with_parent`` the new process is tied to the calling *thread* (the kernel's parent-death
        signal follows the thread that forked it), so call this from a thread that outlives the cluster.
        """
        if component not in self._argv:
            raise ValueError(f"{component} was not started by this process (known: {sorted(self._argv)})")
        args, die_with_parent = self._argv[component]
        self._signal(component, signal.SIGTERM)
        deadline = time.monotonic() + grace
        while self._running(component) and time.monotonic() < deadline:
            time.sleep(0.05)
        if self._running(component):
            self._signal(component, signal.SIGKILL)
        self._procs[component].wait(timeout=10)
        try:
            if while_down is not None:
                while_down()
        finally:
            self._spawn(component, args, die_with_parent)
        if component == "kube-apiserver":
            self._wait(component, time.monotonic() + timeout, self._apiserver_ready, "kube-apiserver /readyz")

    def _wait(self, component: str, deadline: float, ready: Callable[[], bool], what: str) -> None:
        """Poll ``ready`` until true; fail early if any component exits, else at the deadline."""
        while True:
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    raise ClusterStartError(
                        f"{name} exited with code {proc.returncode} while waiting for {what}; "
                        f"last lines of {self.log(name)}:\n{tail(self.log(name))}"
                    )
            try:
                if ready():
                    return
            except (OSError, KubeApiError, ValueError):
                pass
            if time.monotonic() > deadline:
                raise ClusterStartError(
                    f"timed out waiting for {what}; last lines of {self.log(component)}:\n"
                    f"{tail(self.log(component))}"
                )
            time.sleep(0.1)

    def _etcd_healthy(self) -> bool:
        import urllib.request

        with urllib.request.urlopen(f"http://127.0.0.1:{self.ports['etcd']}/health", timeout=2) as resp:
            return bool(json.loads(resp.read()).get("health") == "true")

    def _apiserver_ready(self) -> bool:
        try:
            return self.api.text("/readyz", timeout=2).strip() == "ok"
        except urllib.error.URLError:
            return False

    def _nodes_ready(self, count: int) -> bool:
        items: list[dict[str, Any]] = self.api.get(f"/api/v1/nodes?labelSelector={NODE_LABEL}")["items"]
        ready = [
            node
            for node in items
            if any(
                c.get("type") == "Ready" and c.get("status") == "True"
                for c in (node.get("status") or {}).get("conditions") or []
            )
            and not node.get("spec", {}).get("taints")
        ]
        return len(ready) >= count

    def stop(self, grace: float = 10.0) -> None:
        """Stop the real node (its pods first, while the API server still runs), then SIGTERM every
        component's process group (last started first), SIGKILL stragglers, delete root."""
        if self.node is not None:
            if self._running("kube-apiserver"):
                self._delete_real_node_pods(grace)
            self.node.stop()  # releases the network too
            self.node = None
        elif self.network is not None:
            self.network.release()
        self.network = None
        order = [name for name in reversed(COMPONENTS) if name in self.pids]
        for name in order:
            self._signal(name, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for name in order:
            while self._running(name) and time.monotonic() < deadline:
                time.sleep(0.05)
            if self._running(name):
                self._signal(name, signal.SIGKILL)
                proc = self._procs.get(name)
                if proc is not None:
                    proc.wait(timeout=5)
                else:
                    while alive(self.pids[name]):
                        time.sleep(0.05)
        self._procs.clear()
        self.pids.clear()
        shutil.rmtree(self.root, ignore_errors=True)

    def _delete_real_node_pods(self, grace: float) -> None:
        """Let the kubelet stop the real node's pods itself, so it tears their sandboxes down cleanly."""
        assert self.node is not None
        node = self.node
        try:
            pods = self.api.get(f"/api/v1/pods?fieldSelector=spec.nodeName={node.name}")["items"]
            for pod in pods:
                meta = pod["metadata"]
                with contextlib.suppress(KubeApiError):
                    self.api.request(
                        "DELETE",
                        f"/api/v1/namespaces/{meta['namespace']}/pods/{meta['name']}",
                        {"apiVersion": "v1", "kind": "DeleteOptions", "gracePeriodSeconds": 1},
                    )
        except (OSError, KubeApiError):
            return
        deadline = time.monotonic() + grace
        while node.container_pids() and time.monotonic() < deadline:
            time.sleep(0.1)

    def _running(self, name: str) -> bool:
        proc = self._procs.get(name)
        if proc is not None:
            return proc.poll() is None
        return alive(self.pids[name])

    def _signal(self, name: str, sig: signal.Signals) -> None:
        pid = self.pids[name]
        if not owned(pid, self._procs.get(name), self.root):
            return
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(pid, sig)

    # -- state file for `up` / `down` -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "bin_dir": str(self.bin_dir),
            "server": self.server,
            "token": self.token,
            "ports": self.ports,
            "pids": self.pids,
            "network": self.network.index if self.network is not None else None,
            "node": self.node.to_state() if self.node is not None else None,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> LocalCluster:
        """Re-attach to a cluster started by another process (no Popen handles: pids only)."""
        return cls(
            root=Path(state["root"]),
            bin_dir=Path(state["bin_dir"]),
            server=state["server"],
            token=state["token"],
            ports={k: int(v) for k, v in state["ports"].items()},
            pids={k: int(v) for k, v in state["pids"].items()},
            network=PodNetwork(int(state["network"])) if state.get("network") is not None else None,
            node=RealNode.from_state(state["node"]) if state.get("node") else None,
        )


def _node_manifest(name: str) -> dict[str, Any]:
    """A Node that kwok manages (by annotation) and that fits well over 1,000 small pods."""
    return {
        "apiVersion": "v1",
        "kind": "Node",
        "metadata": {
            "name": name,
            "annotations": {KWOK_ANNOTATION: "fake", "node.alpha.kubernetes.io/ttl": "0"},
            "labels": {
                NODE_LABEL: "true",
                "type": "kwok",
                "kubernetes.io/hostname": name,
                "kubernetes.io/os": "linux",
                "kubernetes.io/arch": "amd64",
            },
        },
        "status": {"allocatable": NODE_ALLOCATABLE, "capacity": NODE_ALLOCATABLE},
    }


def real_node_wanted() -> bool:
    """The real node starts with the cluster unless ``STRATA_REAL_NODE=0`` (e.g. on a machine without
    root or containerd: then only kwok pods run, and the tests that need real containers fail)."""
    return os.environ.get("STRATA_REAL_NODE", "1") != "0"


def state_file() -> Path:
    """Where ``up`` records the running cluster for ``down``; ``$STRATA_CLUSTER_STATE`` overrides it."""
    override = os.environ.get("STRATA_CLUSTER_STATE")
    return Path(override) if override else Path(tempfile.gettempdir()) / "stratarouter-cluster.json"


def _exports(cluster: LocalCluster) -> str:
    return f"export KUBECONFIG={cluster.kubeconfig}\nexport PATH={cluster.bin_dir}:$PATH"


def main(argv: list[str] | None = None) -> int:
    """``python -m stratarouter_dev.cluster up|down``: the Makefile's cluster-up/cluster-down."""
    parser = argparse.ArgumentParser(prog="stratarouter-dev-cluster")
    parser.add_argument("action", choices=["up", "down"])
    args = parser.parse_args(argv)
    path = state_file()
    existing = LocalCluster.from_state(json.loads(path.read_text())) if path.exists() else None
    if args.action == "up":
        if existing is not None and existing._running("kube-apiserver"):
            print(_exports(existing))
            return 0
        if existing is not None:  # a stale record: clean up whatever is left of it
            existing.stop()
        started = time.monotonic()
        cluster = LocalCluster.start()
        path.write_text(json.dumps(cluster.to_state(), indent=2) + "\n")
        print(
            f"local cluster up in {time.monotonic() - started:.1f}s at {cluster.server} "
            f"(logs: {cluster.log_dir}); stop it with `make cluster-down`",
            file=sys.stderr,
        )
        print(_exports(cluster))
        return 0
    if existing is None:
        print("no local cluster is running", file=sys.stderr)
        return 0
    existing.stop()
    path.unlink()
    print("local cluster stopped and its data removed", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
