"""One real Kubernetes node beside the kwok nodes: a kubelet with containerd, runc and a CNI bridge.

Real containers run here, so real deaths (exit codes, OOM kills, SIGKILLs, evictions) reach the
operator the way they do on a production cluster. What is real and what is ours:

* **kubelet** from the same Kubernetes module as the control plane (the multi-call binary), with a
  client certificate of its own (``system:node:NAME`` in ``system:nodes``; the API server runs the
  Node authorizer and NodeRestriction) and a serving certificate the API server verifies.
* **containerd and runc** from Debian (``make deps``), with every directory and its socket under the
  node's root, so several local clusters never share one.
* **A pod network that exists only inside this machine**: a bridge of our own on a /24 out of
  ``10.89.0.0/16``, its gateway address on the bridge. Pods get an address on it and a route to it,
  nothing else: no default route, no masquerade, no forwarding (the host's ``ip_forward`` is left as it
  is), so nothing a pod sends can leave the machine. Servers the pods must reach (the checkpoint API,
  PostgreSQL) listen on :attr:`RealNode.gateway`. The node's own address is that gateway too, since the
  kubelet needs a non-loopback address for logs and exec.
* **Images** built without Docker (``hack/build-images.sh``) and imported into containerd; nothing is
  ever pulled (pods use ``imagePullPolicy: Never``).

The node is tainted and labelled :data:`NODE_LABEL` so that only pods that ask for it (a node selector
and a toleration, :func:`pod_placement`) land on it; the scale benchmarks stay on kwok.

:meth:`RealNode.stop` removes every container, shim, mount, network namespace, veth, cgroup and the
bridge; :func:`leftovers` lists whatever is still there (the teardown test asserts it is nothing).
"""

from __future__ import annotations

import contextlib
import fcntl
import ipaddress
import json
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

from stratarouter_dev.pki import KeyPair, Pki
from stratarouter_dev.ports import free_port
from stratarouter_dev.processes import (
    alive,
    cmdline,
    owned,
    pids_with,
    spawn,
    tail,
    terminate,
    wait_until,
)

NODE_NAME = "real-node"
NODE_LABEL = "stratarouter.io/real-node"
#: Every real node's bridge is one /24 of this range, found free at start (several clusters may run).
POD_NETWORKS = ipaddress.ip_network("10.89.0.0/16")
BRIDGE_PREFIX = "strata"
CNI_BIN_DIR = Path("/usr/lib/cni")
RUNC = Path("/usr/sbin/runc")
NETNS_DIR = Path("/run/netns")
CGROUP_ROOT = Path("/sys/fs/cgroup")
CONTAINER_LOG_LINKS = Path("/var/log/containers")
#: The kernel settings the kubelet rewrites at start (container_manager_linux); restored at stop.
KUBELET_SYSCTLS = (
    "vm/overcommit_memory",
    "vm/panic_on_oom",
    "kernel/panic",
    "kernel/panic_on_oops",
    "kernel/keys/root_maxkeys",
    "kernel/keys/root_maxbytes",
)
CTR_NAMESPACE = "k8s.io"
SERVICE_PROXY_LOCK = Path("/run/stratarouter-kube-proxy.lock")
KUBE_PROXY_TABLES = ("ip kube-proxy", "ip6 kube-proxy")
DEBIAN_PACKAGES = {
    "containerd": Path("/usr/bin/containerd"),
    "runc": RUNC,
    "CNI plugins": CNI_BIN_DIR / "bridge",
}


class NodeError(RuntimeError):
    """The real node could not start or stop cleanly; the message says what and where its logs are."""


def pod_placement() -> dict[str, Any]:
    """The pod-spec fields that put a pod on the real node (and only there)."""
    return {
        "nodeSelector": {NODE_LABEL: "true"},
        "tolerations": [{"key": NODE_LABEL, "operator": "Exists", "effect": "NoSchedule"}],
    }


@dataclass(frozen=True)
class PodNetwork:
    """The node's bridge and the /24 on it; :meth:`claim` creates the bridge, :meth:`release` deletes it."""

    index: int

    @property
    def bridge(self) -> str:
        return f"{BRIDGE_PREFIX}{self.index}"

    @property
    def subnet(self) -> ipaddress.IPv4Network:
        return list(POD_NETWORKS.subnets(new_prefix=24))[self.index]  # type: ignore[return-value]

    @property
    def gateway(self) -> str:
        return str(self.subnet.network_address + 1)

    @property
    def cni_name(self) -> str:
        return f"stratarouter-{self.bridge}"

    @classmethod
    def claim(cls) -> PodNetwork:
        """Create the first bridge whose name is free; ``ip link add`` is the atomic test-and-set."""
        for index in range(256):
            network = cls(index)
            created = subprocess.run(
                ["ip", "link", "add", "name", network.bridge, "type", "bridge"],
                capture_output=True,
                text=True,
            )
            if created.returncode != 0:
                if "File exists" in created.stderr:
                    continue
                raise NodeError(f"cannot create the pod bridge {network.bridge}: {created.stderr.strip()}")
            _ip("addr", "add", f"{network.gateway}/{network.subnet.prefixlen}", "dev", network.bridge)
            _ip("link", "set", network.bridge, "up")
            return network
        raise NodeError(f"no free bridge name {BRIDGE_PREFIX}0..255: are 256 local clusters running?")

    def veths(self) -> list[str]:
        """The host ends of the pods' veth pairs that are still on the bridge."""
        out = subprocess.run(
            ["ip", "-o", "link", "show", "master", self.bridge], capture_output=True, text=True
        ).stdout
        return [line.split(":")[1].strip().split("@")[0] for line in out.splitlines() if ":" in line]

    def exists(self) -> bool:
        return Path(f"/sys/class/net/{self.bridge}").exists()

    def release(self) -> None:
        for veth in self.veths():
            subprocess.run(["ip", "link", "delete", veth], capture_output=True)
        if self.exists():
            subprocess.run(["ip", "link", "delete", self.bridge], capture_output=True)

    def conflist(self, ipam_dir: Path, service_cidr: str) -> dict[str, Any]:
        """The CNI config: a bridge we made (so the plugin neither adds a gateway nor turns on
        forwarding) and host-local addresses. A pod's routes are the bridge's /24 and the Service
        range through the gateway (kube-proxy's, when it runs); no default route."""
        hosts = list(self.subnet.hosts())
        return {
            "cniVersion": "0.4.0",
            "name": self.cni_name,
            "plugins": [
                {
                    "type": "bridge",
                    "bridge": self.bridge,
                    "isGateway": False,
                    "isDefaultGateway": False,
                    "ipMasq": False,
                    "hairpinMode": True,
                    "ipam": {
                        "type": "host-local",
                        "dataDir": str(ipam_dir),
                        "ranges": [[{"subnet": str(self.subnet), "rangeStart": str(hosts[9]),
                                     "rangeEnd": str(hosts[-1])}]],
                        "routes": [{"dst": service_cidr, "gw": self.gateway}],
                    },
                }
            ],
        }  # fmt: skip


def _nft(ruleset: str) -> None:
    result = subprocess.run(["nft", "-f", "-"], input=ruleset, capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"nft refused {ruleset!r}: {result.stderr.strip()}")


def _ip(*args: str) -> None:
    result = subprocess.run(["ip", *args], capture_output=True, text=True)
    if result.returncode != 0:
        raise NodeError(f"`ip {' '.join(args)}` failed: {result.stderr.strip()}")


def check_requirements() -> None:
    """Raise naming what is missing: root, and Debian's containerd, runc and CNI plugins."""
    if os.geteuid() != 0:
        raise NodeError("the real node needs root (it runs containerd and a kubelet)")
    missing = [name for name, path in DEBIAN_PACKAGES.items() if not path.exists()]
    if missing:
        raise NodeError(f"{', '.join(missing)} not installed: run `make deps` (Debian packages)")


CONTAINERD_CONFIG = """\
version = 2
root = "{root}/containerd/root"
state = "{root}/containerd/state"
disabled_plugins = [
  "io.containerd.internal.v1.tracing",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.snapshotter.v1.devmapper",
]

[grpc]
  address = "{socket}"

[plugins."io.containerd.internal.v1.opt"]
  path = "{root}/containerd/opt"

[plugins."io.containerd.grpc.v1.cri"]
  sandbox_image = "{pause_image}"
  # No CAP_SYS_RESOURCE on these machines: a sandbox may not lower its oom_score_adj below ours.
  restrict_oom_score_adj = true
  enable_selinux = false
  [plugins."io.containerd.grpc.v1.cri".cni]
    bin_dir = "{cni_bin}"
    conf_dir = "{root}/cni"
    max_conf_num = 1
  [plugins."io.containerd.grpc.v1.cri".containerd]
    snapshotter = "overlayfs"
    default_runtime_name = "runc"
    [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc]
      runtime_type = "io.containerd.runc.v2"
      [plugins."io.containerd.grpc.v1.cri".containerd.runtimes.runc.options]
        BinaryName = "{runc}"
        SystemdCgroup = false
"""


@dataclass
class RealNode:
    """A running kubelet + containerd. Build one with :meth:`start`; :meth:`stop` leaves nothing behind."""

    root: Path
    bin_dir: Path
    network: PodNetwork
    name: str = NODE_NAME
    die_with_parent: bool = False
    ports: dict[str, int] = field(default_factory=dict)
    _proxy_lock: IO[str] | None = field(default=None, repr=False)
    pids: dict[str, int] = field(default_factory=dict)
    sysctls: dict[str, str] = field(default_factory=dict)
    _procs: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict, repr=False)

    @property
    def gateway(self) -> str:
        """The host's address on the pod bridge: where pods reach servers of the host."""
        return self.network.gateway

    @property
    def socket(self) -> Path:
        return self.root / "containerd.sock"

    @property
    def cgroup_parent(self) -> str:
        """The kubelet's cgroupRoot: one tree per node, so two nodes never share ``kubepods``."""
        return f"/stratarouter-{self.network.bridge}"

    def log(self, component: str) -> Path:
        return self.root / "logs" / f"{component}.log"

    # -- start ------------------------------------------------------------------------------------------

    @classmethod
    def start(
        cls,
        root: Path,
        bin_dir: Path,
        pki: Pki,
        server: str,
        network: PodNetwork,
        images: Iterable[Path],
        pause_image: str,
        *,
        service_cidr: str,
        lease_seconds: int = 40,
        die_with_parent: bool = False,
    ) -> RealNode:
        """Start containerd on ``network`` (a bridge the caller claimed), import ``images``, start the
        kubelet registered at ``server``. Pods get a route to ``service_cidr`` through the gateway, for
        when :meth:`start_service_proxy` runs.

        ``die_with_parent`` as for the cluster's own components. Waiting for the node to be Ready is the
        caller's job (it holds the API client). On failure everything started is removed.
        """
        check_requirements()
        node = cls(root=root, bin_dir=bin_dir, network=network, die_with_parent=die_with_parent)
        try:
            node._boot(pki, server, list(images), pause_image, service_cidr, lease_seconds)
        except BaseException:
            node.stop()
            raise
        return node

    def _boot(
        self,
        pki: Pki,
        server: str,
        images: list[Path],
        pause_image: str,
        service_cidr: str,
        lease_seconds: int,
    ) -> None:
        for sub in ("logs", "cni", "cni-ipam", "kubelet", "pod-logs", "containerd"):
            (self.root / sub).mkdir(parents=True, exist_ok=True)
        (self.root / "cni" / "10-strata.conflist").write_text(
            json.dumps(self.network.conflist(self.root / "cni-ipam", service_cidr), indent=2)
        )
        config = self.root / "containerd.toml"
        config.write_text(
            CONTAINERD_CONFIG.format(
                root=self.root, socket=self.socket, pause_image=pause_image, cni_bin=CNI_BIN_DIR, runc=RUNC
            )
        )
        self._spawn("containerd", [shutil.which("containerd") or "containerd", "--config", str(config)])
        self.wait_for(
            lambda: self._ctr("version", check=False).returncode == 0, "containerd", 30, log_of="containerd"
        )
        for image in images:
            self._ctr("images", "import", "--all-platforms", str(image))
        self._start_kubelet(pki, server, lease_seconds)

    def _start_kubelet(self, pki: Pki, server: str, lease_seconds: int) -> None:
        client = pki.issue("kubelet-client", f"/O=system:nodes/CN=system:node:{self.name}", client=True)
        serving = pki.issue("kubelet-serving", f"/CN={self.name}", sans=(f"IP:{self.gateway}",))
        kubeconfig = self._kubeconfig("kubelet", server, pki, client)
        self.ports = {"kubelet": free_port(), "healthz": free_port()}
        kubelet_config = self.root / "kubelet.yaml"
        kubelet_config.write_text(
            json.dumps(self._kubelet_configuration(pki, serving.cert, serving.key, lease_seconds))
        )
        self.sysctls = {key: Path("/proc/sys", key).read_text().strip() for key in KUBELET_SYSCTLS}
        self._make_cgroups()
        argv = [
            str(self.bin_dir / "kubelet"),
            f"--config={kubelet_config}",
            f"--kubeconfig={kubeconfig}",
            f"--hostname-override={self.name}",
            f"--node-ip={self.gateway}",
            f"--node-labels={NODE_LABEL}=true,type=real",
            f"--root-dir={self.root / 'kubelet'}",
            f"--cert-dir={self.root / 'kubelet' / 'pki'}",
            "--v=2",
        ]
        (self.root / "kubelet.argv").write_text(json.dumps(argv))
        self.start_kubelet()

    def _kubeconfig(self, component: str, server: str, pki: Pki, identity: KeyPair) -> Path:
        """A kubeconfig that logs in with ``identity``'s client certificate (no token)."""
        path = self.root / f"{component}.kubeconfig"
        path.write_text(json.dumps({
            "apiVersion": "v1",
            "kind": "Config",
            "clusters": [{"name": "local", "cluster": {"server": server,
                                                       "certificate-authority": str(pki.ca_cert)}}],
            "users": [{"name": component, "user": {"client-certificate": str(identity.cert),
                                                   "client-key": str(identity.key)}}],
            "contexts": [{"name": "local", "context": {"cluster": "local", "user": component}}],
            "current-context": "local",
        }))  # fmt: skip
        path.chmod(0o600)
        return path

    def _kubelet_configuration(self, pki: Pki, cert: Path, key: Path, lease_seconds: int) -> dict[str, Any]:
        endpoint = f"unix://{self.socket}"
        return {
            "apiVersion": "kubelet.config.k8s.io/v1beta1",
            "kind": "KubeletConfiguration",
            "address": self.gateway,
            "port": self.ports["kubelet"],
            "healthzBindAddress": "127.0.0.1",
            "healthzPort": self.ports["healthz"],
            "readOnlyPort": 0,
            "tlsCertFile": str(cert),
            "tlsPrivateKeyFile": str(key),
            "authentication": {
                "anonymous": {"enabled": False},
                "webhook": {"enabled": True},
                "x509": {"clientCAFile": str(pki.ca_cert)},
            },
            "authorization": {"mode": "Webhook"},
            "containerRuntimeEndpoint": endpoint,
            "imageServiceEndpoint": endpoint,
            # containerd 1.6 does not report its cgroup driver (RuntimeConfig is unimplemented): say it.
            "cgroupDriver": "cgroupfs",
            "cgroupRoot": self.cgroup_parent,
            "failCgroupV1": False,
            "failSwapOn": False,
            "resolvConf": "",
            "makeIPTablesUtilChains": False,
            "podLogsDir": str(self.root / "pod-logs"),
            "registerWithTaints": [{"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"}],
            "maxPods": 30,
            # Imported images cannot be pulled again: never collect them.
            "imageGCHighThresholdPercent": 100,
            "imageGCLowThresholdPercent": 99,
            "evictionHard": {"memory.available": "1Mi", "nodefs.available": "1%", "imagefs.available": "1%",
                             "nodefs.inodesFree": "1%"},
            "nodeStatusUpdateFrequency": "2s",
            "nodeLeaseDurationSeconds": lease_seconds,
            "nodeStatusReportFrequency": "10s",
            "syncFrequency": "10s",
            "serializeImagePulls": False,
            "shutdownGracePeriod": "0s",
        }  # fmt: skip

    def wait_for(self, ready: Callable[[], bool], what: str, timeout: float, *, log_of: str) -> None:
        """Poll ``ready``; raise at once if containerd or the kubelet exits, or at the deadline, with the
        last lines of ``log_of``'s log."""
        deadline = time.monotonic() + timeout
        while not ready():
            for name, proc in self._procs.items():
                if proc.poll() is not None:
                    log = self.log(name)
                    raise NodeError(
                        f"{name} exited with {proc.returncode}; last lines of {log}:\n{tail(log)}"
                    )
            if time.monotonic() > deadline:
                log = self.log(log_of)
                raise NodeError(
                    f"timed out after {timeout:.0f}s waiting for {what}; last lines of {log}:\n{tail(log)}"
                )
            time.sleep(0.1)

    # -- operating on it --------------------------------------------------------------------------------

    def _ctr(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        result = subprocess.run(
            ["ctr", "--address", str(self.socket), "-n", CTR_NAMESPACE, *args],
            capture_output=True, text=True, timeout=120,
        )  # fmt: skip
        if check and result.returncode != 0:
            raise NodeError(f"`ctr {' '.join(args)}` failed: {result.stderr.strip()}")
        return result

    def container_pids(self) -> list[int]:
        """Every process in the node's cgroup tree: the pods' pause and workload processes."""
        pids: set[int] = set()
        for procs in (CGROUP_ROOT / "pids" / self.cgroup_parent.lstrip("/")).rglob("cgroup.procs"):
            with contextlib.suppress(OSError):
                pids.update(int(line) for line in procs.read_text().split())
        return sorted(pids)

    def process_of(self, pod_uid: str, marker: bytes) -> int | None:
        """The host pid of the process in pod ``pod_uid`` whose command line contains ``marker`` (e.g.
        ``b"workload.py"``: not runc's init before its exec, not the pod's pause process), if any."""
        for pid in self.container_pids():
            try:
                cgroups = Path(f"/proc/{pid}/cgroup").read_text()
                argv = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            # The kubelet's cgroupfs driver names a pod's cgroup pod<uid>, with _ for - in some versions.
            if pod_uid in cgroups.replace("_", "-") and marker in argv:
                return pid
        return None

    def stop_kubelet(self) -> None:
        """Stop only the kubelet (containers keep running, as when a kubelet restarts or dies)."""
        self._terminate("kubelet")

    def start_kubelet(self) -> None:
        """Start the kubelet (again, after :meth:`stop_kubelet`) with the configuration written at boot."""
        self._spawn("kubelet", json.loads((self.root / "kubelet.argv").read_text()))

    def _spawn(self, name: str, argv: list[str]) -> None:
        proc = spawn(argv, self.log(name), self.root, die_with_parent=self.die_with_parent)
        self._procs[name] = proc
        self.pids[name] = proc.pid

    # -- Services: kube-proxy, one at a time on the machine -----------------------------------------------

    def start_service_proxy(self, pki: Pki, server: str, *, timeout: float = 120.0) -> None:
        """Start kube-proxy (nftables mode) so pods on this node reach ClusterIP Services.

        kube-proxy programs one machine-wide nftables table (``ip kube-proxy``), so only one local
        cluster's may run at a time: a machine-wide lock, waited for up to ``timeout`` seconds.
        Forwarding is turned on for the bridge alone, and a table of ours drops anything forwarded
        between the bridge and any other interface: Service traffic stays on the bridge.
        """
        if "kube-proxy" in self._procs:
            return
        lock = SERVICE_PROXY_LOCK.open("w")
        deadline = time.monotonic() + timeout
        while True:
            try:
                fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() > deadline:
                    lock.close()
                    raise NodeError(
                        f"another local cluster's kube-proxy holds {SERVICE_PROXY_LOCK}"
                    ) from None
                time.sleep(0.5)
        self._proxy_lock = lock
        _nft(self._forward_filter())
        Path(f"/proc/sys/net/ipv4/conf/{self.network.bridge}/forwarding").write_text("1")
        identity = pki.issue("kube-proxy", "/CN=system:kube-proxy", client=True)
        kubeconfig = self._kubeconfig("kube-proxy", server, pki, identity)
        config = self.root / "kube-proxy.yaml"
        config.write_text(json.dumps({
            "apiVersion": "kubeproxy.config.k8s.io/v1alpha1",
            "kind": "KubeProxyConfiguration",
            "mode": "nftables",
            "clientConnection": {"kubeconfig": str(kubeconfig)},
            "hostnameOverride": self.name,
            "clusterCIDR": str(self.network.subnet),
            "detectLocalMode": "ClusterCIDR",
            "nodePortAddresses": [f"{self.gateway}/32"],
            "healthzBindAddress": f"127.0.0.1:{free_port()}",
            "metricsBindAddress": f"127.0.0.1:{free_port()}",
            # Leave the host's conntrack settings as they are.
            "conntrack": {"maxPerCore": 0, "min": 0, "tcpEstablishedTimeout": "0s",
                          "tcpCloseWaitTimeout": "0s"},
        }))  # fmt: skip
        self._spawn("kube-proxy", [str(self.bin_dir / "kube-proxy"), f"--config={config}", "--v=2"])

    def stop_service_proxy(self) -> None:
        """Stop kube-proxy and remove its tables, our forward filter and the bridge's forwarding."""
        self._terminate("kube-proxy")
        self._procs.pop("kube-proxy", None)
        self.pids.pop("kube-proxy", None)
        forwarding = Path(f"/proc/sys/net/ipv4/conf/{self.network.bridge}/forwarding")
        with contextlib.suppress(OSError):
            forwarding.write_text("0")
        for table in (*KUBE_PROXY_TABLES, f"inet {self._filter_table}"):
            subprocess.run(["nft", "delete", "table", *table.split()], capture_output=True)
        if self._proxy_lock is not None:
            self._proxy_lock.close()  # releases the flock
            self._proxy_lock = None

    @property
    def _filter_table(self) -> str:
        return f"stratarouter-{self.network.bridge}"

    def _forward_filter(self) -> str:
        bridge = self.network.bridge
        return (
            f"table inet {self._filter_table} {{\n"
            "  chain forward {\n"
            "    type filter hook forward priority -10; policy accept;\n"
            f'    iifname "{bridge}" oifname != "{bridge}" drop\n'
            f'    oifname "{bridge}" iifname != "{bridge}" drop\n'
            "  }\n"
            "}\n"
        )

    # -- stop -------------------------------------------------------------------------------------------

    def stop(self, grace: float = 10.0) -> None:
        """Remove everything the node made. Pods should be deleted through the API first (the caller
        does, while the API server still runs), so the kubelet tears their sandboxes down itself; what
        is left after that is killed and removed here by brute force."""
        netns = self._our_netns()
        self.stop_service_proxy()
        self._terminate("kubelet", grace)
        self._kill_containers()
        self._terminate("containerd", grace)
        self._kill_shims()
        for pid in self.container_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not self.container_pids(), 10)
        for path in (*self._our_netns(), *netns):
            _unmount(path)
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        for mount in sorted(_mounts_under(self.root), key=len, reverse=True):
            _unmount(Path(mount))
        self.network.release()
        self._remove_cgroups()
        self._restore_sysctls()
        self._remove_host_files()
        shutil.rmtree(self.root, ignore_errors=True)

    def _terminate(self, name: str, grace: float = 10.0) -> None:
        pid, proc = self.pids.get(name), self._procs.get(name)
        if pid is not None and owned(pid, proc, self.root):
            terminate(pid, proc, grace)

    def _kill_containers(self) -> None:
        if self.pids.get("containerd") is None or not alive(
            self.pids["containerd"], self._procs.get("containerd")
        ):
            return
        for task in self._lines("tasks", "ls", "-q"):
            self._ctr("tasks", "kill", "-s", "SIGKILL", task, check=False)
        wait_until(lambda: not any("RUNNING" in line for line in self._lines("tasks", "ls")), 10)
        for task in self._lines("tasks", "ls", "-q"):
            self._ctr("tasks", "delete", "-f", task, check=False)
        for container in self._lines("containers", "ls", "-q"):
            self._ctr("containers", "delete", container, check=False)

    def _lines(self, *args: str) -> list[str]:
        return [line for line in self._ctr(*args, check=False).stdout.splitlines() if line.strip()]

    def _kill_shims(self) -> None:
        """containerd's shims outlive it by design (they re-parent to init): find ours by their socket."""
        for pid in pids_with(f"-address {self.socket}"):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not pids_with(f"-address {self.socket}"), 10)

    def _our_netns(self) -> list[Path]:
        """The named network namespaces our pods' processes live in, or that hold our pod subnet."""
        if not NETNS_DIR.is_dir():
            return []
        inodes = set()
        for pid in self.container_pids():
            with contextlib.suppress(OSError):
                inodes.add(os.stat(f"/proc/{pid}/ns/net").st_ino)
        ours = []
        for path in NETNS_DIR.iterdir():
            with contextlib.suppress(OSError):
                if path.stat().st_ino in inodes or self._holds_subnet(path.name):
                    ours.append(path)
        return ours

    def _holds_subnet(self, netns: str) -> bool:
        out = subprocess.run(["ip", "-n", netns, "-o", "-4", "addr"], capture_output=True, text=True).stdout
        return any(
            ipaddress.ip_address(addr) in self.network.subnet for addr in re.findall(r"inet (\S+)/", out)
        )

    def _make_cgroups(self) -> None:
        """The kubelet wants its cgroupRoot to exist in every hierarchy; a v1 cpuset starts empty, so it
        gets the CPUs and memory nodes of its parent, as cgroup v1 requires before any task joins."""
        for controller in CGROUP_ROOT.iterdir():
            if not (controller / "cgroup.procs").exists() or controller.name == "unified":
                continue
            top = controller / self.cgroup_parent.lstrip("/")
            top.mkdir(exist_ok=True)
            for name in ("cpuset.cpus", "cpuset.mems"):
                if (top / name).exists() and not (top / name).read_text().strip():
                    (top / name).write_text((controller / name).read_text())

    def _remove_cgroups(self) -> None:
        for controller in CGROUP_ROOT.iterdir():
            top = controller / self.cgroup_parent.lstrip("/")
            if not top.is_dir():
                continue
            for directory in sorted((p for p in top.rglob("*") if p.is_dir()), key=lambda p: len(p.parts),
                                    reverse=True):  # fmt: skip
                with contextlib.suppress(OSError):
                    directory.rmdir()
            with contextlib.suppress(OSError):
                top.rmdir()

    def _restore_sysctls(self) -> None:
        for key, value in self.sysctls.items():
            with contextlib.suppress(OSError):
                Path("/proc/sys", key).write_text(value)

    def _remove_host_files(self) -> None:
        """The two places outside its root that the kubelet and CNI always write to."""
        if CONTAINER_LOG_LINKS.is_dir():
            for link in CONTAINER_LOG_LINKS.iterdir():
                with contextlib.suppress(OSError):
                    if link.is_symlink() and str(self.root) in os.readlink(link):
                        link.unlink()
        results = Path("/var/lib/cni/results")
        for cached in results.glob(f"{self.network.cni_name}-*"):
            with contextlib.suppress(OSError):
                cached.unlink()
        for directory in (results, results.parent, CONTAINER_LOG_LINKS, NETNS_DIR):
            with contextlib.suppress(OSError):  # only if empty: another node may be using it
                directory.rmdir()

    # -- what is left (for `cluster-down` and the teardown test) ----------------------------------------

    def leftovers(self) -> list[str]:
        """Everything of this node still on the machine; empty after a clean :meth:`stop`."""
        found = [f"process {pid}: {cmdline(pid)[:120]}" for pid in pids_with(str(self.root))]
        found += [f"process {pid} in {self.cgroup_parent}" for pid in self.container_pids()]
        found += [f"mount {m}" for m in _mounts_under(self.root)]
        found += [f"network namespace {p}" for p in self._our_netns()]
        found += [f"veth {v}" for v in self.network.veths()]
        if self.network.exists():
            found.append(f"bridge {self.network.bridge}")
        tables = subprocess.run(["nft", "list", "tables"], capture_output=True, text=True).stdout
        if f"inet {self._filter_table}" in tables:
            found.append(f"nftables table inet {self._filter_table}")
        found += [f"cgroup {c}" for c in CGROUP_ROOT.glob(f"*/{self.cgroup_parent.lstrip('/')}")]
        if self.root.exists():
            found.append(f"directory {self.root}")
        return found

    # -- state file for `up` / `down` -------------------------------------------------------------------

    def to_state(self) -> dict[str, Any]:
        return {
            "root": str(self.root),
            "bin_dir": str(self.bin_dir),
            "network": self.network.index,
            "name": self.name,
            "ports": self.ports,
            "pids": self.pids,
            "sysctls": self.sysctls,
        }

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> RealNode:
        return cls(
            root=Path(state["root"]),
            bin_dir=Path(state["bin_dir"]),
            network=PodNetwork(int(state["network"])),
            name=state["name"],
            ports={k: int(v) for k, v in state["ports"].items()},
            pids={k: int(v) for k, v in state["pids"].items()},
            sysctls=dict(state["sysctls"]),
        )


def _mounts_under(root: Path) -> list[str]:
    prefix = str(root)
    mounts = []
    for line in Path("/proc/self/mounts").read_text().splitlines():
        target = line.split()[1].replace("\\040", " ")
        if target == prefix or target.startswith(prefix + "/"):
            mounts.append(target)
    return mounts


def _unmount(path: Path) -> None:
    """Unmount ``path`` as often as something is mounted there (the kubelet stacks bind mounts)."""
    for _ in range(8):
        unmounted = subprocess.run(["umount", str(path)], capture_output=True).returncode == 0
        if not unmounted and subprocess.run(["umount", "-l", str(path)], capture_output=True).returncode != 0:
            return
