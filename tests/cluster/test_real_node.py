"""The real node: a kubelet with containerd and runc beside the kwok nodes, running real containers.

Each test checks one promise of :mod:`stratarouter_dev.node` against the running system: the
node's identity, where pods land, what a real container reports, that pods reach the host only on the
bridge, and that stopping the node leaves nothing on the machine.
"""

from __future__ import annotations

import base64
import http.server
import ipaddress
import json
import os
import subprocess
import threading
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev import images
from stratarouter_dev.cluster import LocalCluster
from stratarouter_dev.kubeapi import KubeApiError
from stratarouter_dev.node import NETNS_DIR, NODE_LABEL, NODE_NAME, RealNode, pod_placement
from stratarouter_dev.processes import cmdline
from tests.cluster.waiting import wait_until

pytestmark = pytest.mark.cluster

Obj = dict[str, Any]


def real_pod(name: str, script: str, **container: Any) -> Obj:
    """A pod on the real node that runs ``script`` with the workload image's Python."""
    return {
        "apiVersion": "v1",
        "kind": "Pod",
        "metadata": {"name": name},
        "spec": {
            **pod_placement(),
            "restartPolicy": "Never",
            "terminationGracePeriodSeconds": 1,
            "containers": [
                {
                    "name": "main",
                    "image": images.WORKLOAD,
                    "imagePullPolicy": "Never",
                    "command": ["python3", "-c", script],
                    **container,
                }
            ],
        },
    }


def create(cluster: LocalCluster, namespace: str, pod: Obj) -> None:
    cluster.api.request("POST", f"/api/v1/namespaces/{namespace}/pods", pod)


def get_pod(cluster: LocalCluster, namespace: str, name: str) -> Obj:
    return cluster.api.get(f"/api/v1/namespaces/{namespace}/pods/{name}")


def terminated(cluster: LocalCluster, namespace: str, name: str, timeout: float = 90) -> Obj:
    """The container's terminated state, once the kubelet reports it."""

    def probe() -> Obj | None:
        statuses = get_pod(cluster, namespace, name).get("status", {}).get("containerStatuses") or []
        state = (statuses[0].get("state") or {}).get("terminated") if statuses else None
        return dict(state) if state else None

    found: Obj = wait_until(f"pod {name}'s container to terminate", probe, timeout)
    return found


def real_node(cluster: LocalCluster) -> RealNode:
    assert cluster.node is not None, "the session cluster starts with its real node"
    return cluster.node


def test_the_real_node_is_ready_beside_the_kwok_nodes(cluster: LocalCluster) -> None:
    table = cluster.kubectl("get", "nodes", "-o", "wide", "--no-headers").splitlines()
    rows = {line.split()[0]: line.split() for line in table}
    assert {"kwok-node-0", "kwok-node-1", NODE_NAME} <= set(rows), table
    _name, status, _roles, _age, version, internal_ip, *_rest = rows[NODE_NAME]
    assert status == "Ready"
    assert version == "v1.34.10"  # the kubelet built with the control plane
    assert ipaddress.ip_address(internal_ip) == ipaddress.ip_address(real_node(cluster).gateway)
    assert rows[NODE_NAME][-1] == "containerd://1.6.20"
    node = cluster.api.get(f"/api/v1/nodes/{NODE_NAME}")
    assert node["metadata"]["labels"][NODE_LABEL] == "true"
    assert {"key": NODE_LABEL, "value": "true", "effect": "NoSchedule"} in node["spec"]["taints"]


def test_pods_land_on_the_real_node_only_when_they_ask_for_it(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    for i in range(4):
        plain = {"apiVersion": "v1", "kind": "Pod", "metadata": {"name": f"plain-{i}"},
                 "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]}}  # fmt: skip
        create(cluster, cluster_namespace, plain)
    create(cluster, cluster_namespace, real_pod("asks", "import time; time.sleep(30)"))
    nodes = wait_until(
        "every pod scheduled",
        lambda: (
            found
            if all(
                (found := {
                    p["metadata"]["name"]: p["spec"].get("nodeName")
                    for p in cluster.api.get(f"/api/v1/namespaces/{cluster_namespace}/pods")["items"]
                }).values()
            )
            else None
        ),
    )  # fmt: skip
    assert nodes.pop("asks") == NODE_NAME
    assert set(nodes.values()) <= {"kwok-node-0", "kwok-node-1"}, nodes


def test_a_real_container_reports_its_exit_code_and_its_logs(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    create(
        cluster, cluster_namespace, real_pod("exits", "print('hello from a container'); raise SystemExit(3)")
    )
    state = terminated(cluster, cluster_namespace, "exits")
    assert state["exitCode"] == 3
    assert state["reason"] == "Error"
    assert state["containerID"].startswith("containerd://")
    wait_until(
        "phase Failed", lambda: get_pod(cluster, cluster_namespace, "exits")["status"]["phase"] == "Failed"
    )
    # through the API server and the kubelet's own server (its serving cert, the API server's client cert)
    assert cluster.kubectl("logs", "-n", cluster_namespace, "exits") == "hello from a container\n"


def test_a_container_over_its_memory_limit_is_oom_killed(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    hog = "chunks = []\nwhile True:\n    chunks.append(bytearray(16 << 20))"
    create(cluster, cluster_namespace, real_pod("hog", hog, resources={"limits": {"memory": "64Mi"}}))
    state = terminated(cluster, cluster_namespace, "hog")
    assert (state["reason"], state["exitCode"]) == ("OOMKilled", 137)


def test_a_pod_reaches_the_host_on_the_bridge_and_has_no_route_out(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    node = real_node(cluster)
    forwarding = Path("/proc/sys/net/ipv4/ip_forward").read_text()

    class Hello(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            self.send_response(200)
            self.end_headers()
            self.wfile.write(b"hello pod")

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.HTTPServer((node.gateway, 0), Hello)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    script = (
        "import json, urllib.request\n"
        "routes = [line.split()[1:3] for line in open('/proc/net/route').read().splitlines()[1:]]\n"
        f"body = urllib.request.urlopen('http://{node.gateway}:{server.server_port}/', timeout=10).read()\n"
        "print(json.dumps({'routes': routes, 'body': body.decode()}))\n"
    )
    try:
        create(cluster, cluster_namespace, real_pod("probe", script))
        assert terminated(cluster, cluster_namespace, "probe")["exitCode"] == 0
        report = json.loads(cluster.kubectl("logs", "-n", cluster_namespace, "probe"))
    finally:
        server.shutdown()
    assert report["body"] == "hello pod"
    # /proc/net/route: destination and gateway in little-endian hex. The bridge's /24 directly, the
    # Service range through the gateway (kube-proxy's, on this machine), and no default route.
    subnet = node.network.subnet

    def address(hex_le: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
        return ipaddress.ip_address(bytes(reversed(bytes.fromhex(hex_le))))

    routes = sorted((str(address(dest)), str(address(gateway))) for dest, gateway in report["routes"])
    assert routes == sorted([(str(subnet.network_address), "0.0.0.0"), ("10.96.0.0", node.gateway)]), routes
    pod_ip = ipaddress.ip_address(get_pod(cluster, cluster_namespace, "probe")["status"]["podIP"])
    assert pod_ip in subnet
    # ... and the host neither forwards nor masquerades for it.
    assert Path("/proc/sys/net/ipv4/ip_forward").read_text() == forwarding
    nat = subprocess.run(["iptables-save", "-t", "nat"], capture_output=True, text=True).stdout
    assert str(subnet) not in nat, nat
    assert "MASQUERADE" not in nat, nat


def test_the_kubelet_has_a_node_identity_of_its_own(cluster: LocalCluster, tmp_path: Path) -> None:
    node = real_node(cluster)
    kubeconfig = json.loads((node.root / "kubelet.kubeconfig").read_text())
    user = kubeconfig["users"][0]["user"]
    assert set(user) == {"client-certificate", "client-key"}  # a certificate, not the admin's token
    as_kubelet = ["--kubeconfig", str(node.root / "kubelet.kubeconfig")]
    whoami = json.loads(cluster.run("kubectl", *as_kubelet, "auth", "whoami", "-o", "json"))
    assert whoami["status"]["userInfo"]["username"] == f"system:node:{NODE_NAME}"
    assert "system:nodes" in whoami["status"]["userInfo"]["groups"]
    # The Node authorizer: no secrets of pods it does not run; NodeRestriction: no other node's object.
    for forbidden in (
        ("get", "secrets", "-n", "default"),
        ("label", "node", "kwok-node-0", "stolen=yes"),
    ):
        result = subprocess.run(
            [str(cluster.bin_dir / "kubectl"), *as_kubelet, *forbidden],
            capture_output=True, text=True, env=cluster.env,
        )  # fmt: skip
        assert result.returncode != 0, forbidden
        assert "forbidden" in result.stderr.lower(), (forbidden, result.stderr)


def test_the_kubelet_projects_a_token_bound_to_the_pod_for_the_stratarouter_audience(
    cluster: LocalCluster, cluster_namespace: str
) -> None:
    pod = real_pod("token", "print(open('/var/run/secrets/stratarouter/token').read())")
    pod["spec"]["volumes"] = [{"name": "token", "projected": {"sources": [{"serviceAccountToken": {
        "audience": "stratarouter", "expirationSeconds": 600, "path": "token"}}]}}]  # fmt: skip
    pod["spec"]["containers"][0]["volumeMounts"] = [
        {"name": "token", "mountPath": "/var/run/secrets/stratarouter"}
    ]
    create(cluster, cluster_namespace, pod)
    assert terminated(cluster, cluster_namespace, "token")["exitCode"] == 0
    token = cluster.kubectl("logs", "-n", cluster_namespace, "token").strip()
    claims = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    assert claims["aud"] == ["stratarouter"]
    uid = get_pod(cluster, cluster_namespace, "token")["metadata"]["uid"]
    assert claims["kubernetes.io"]["pod"] == {"name": "token", "uid": uid}
    assert claims["kubernetes.io"]["node"]["name"] == NODE_NAME
    review = cluster.api.request(
        "POST",
        "/apis/authentication.k8s.io/v1/tokenreviews",
        {"apiVersion": "authentication.k8s.io/v1", "kind": "TokenReview",
         "spec": {"token": token, "audiences": ["stratarouter"]}},
    )  # fmt: skip
    assert review["status"]["authenticated"] is True
    assert review["status"]["user"]["extra"]["authentication.kubernetes.io/pod-name"] == ["token"]


# -- teardown ---------------------------------------------------------------------------------------------


def machine_state() -> dict[str, set[str]]:
    """What a node could leave behind on this machine, as sets to compare before and after."""
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True, check=True).stdout
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    return {
        "links": {line.split(":")[1].strip().split("@")[0] for line in links.splitlines()},
        "netns": {p.name for p in NETNS_DIR.iterdir()} if NETNS_DIR.is_dir() else set(),
        "mounts": {line.split()[1] for line in mounts},
        "shims": {p for p in os.listdir("/proc") if p.isdigit() and _is_shim(p)},
    }


def _is_shim(pid: str) -> bool:
    try:
        return b"containerd-shim" in Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return False


def test_stopping_the_cluster_removes_every_container_shim_mount_netns_veth_and_the_bridge() -> None:
    before = machine_state()
    cluster = LocalCluster.start(die_with_parent=True, real_node=True)
    try:
        node = real_node(cluster)
        cluster.api.request("POST", "/api/v1/namespaces", {"metadata": {"name": "teardown"}})
        wait_until("the default ServiceAccount", lambda: cluster.api.exists(
            "/api/v1/namespaces/teardown/serviceaccounts/default"))  # fmt: skip
        for i in range(2):  # still running when the cluster stops
            create(cluster, "teardown", real_pod(f"sleeper-{i}", "import time; time.sleep(3600)"))
        for i in range(2):
            wait_until(f"sleeper-{i} running", lambda i=i: get_pod(cluster, "teardown", f"sleeper-{i}")
                       .get("status", {}).get("phase") == "Running")  # fmt: skip
        during = machine_state()
        assert node.network.bridge in during["links"]
        assert len(node.network.veths()) == 2
        assert len(during["netns"] - before["netns"]) == 2
        assert len(node.container_pids()) >= 4  # two pause and two workload processes
        assert any(m.startswith(str(node.root)) for m in during["mounts"])
    finally:
        cluster.stop()
    assert node.leftovers() == []
    after = machine_state()  # the session's own cluster may have changed meanwhile: only look for new things
    assert after["links"] - before["links"] == set()
    assert after["netns"] - before["netns"] == set()
    assert {m for m in after["mounts"] - before["mounts"] if str(cluster.root) in m} == set()
    assert {pid for pid in after["shims"] - before["shims"] if str(node.socket) in cmdline(int(pid))} == set()
    assert not cluster.root.exists()
    with pytest.raises((KubeApiError, OSError)):
        cluster.api.text("/readyz", timeout=2)


def test_pods_reach_cluster_ip_services_and_the_api_server_through_kube_proxy(
    cluster: LocalCluster, cluster_namespace: str, real_node_services: RealNode
) -> None:
    server = real_pod(
        "web", "import http.server as h; h.HTTPServer(('', 8000), h.SimpleHTTPRequestHandler).serve_forever()"
    )
    server["metadata"]["labels"] = {"app": "web"}
    server["spec"]["containers"][0]["workingDir"] = "/app"
    create(cluster, cluster_namespace, server)
    service = cluster.api.request(
        "POST", f"/api/v1/namespaces/{cluster_namespace}/services",
        {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "web"},
         "spec": {"selector": {"app": "web"}, "ports": [{"port": 80, "targetPort": 8000}]}},
    )  # fmt: skip
    cluster_ip = service["spec"]["clusterIP"]
    script = (
        "import json, ssl, time, urllib.request\n"
        "sa = '/var/run/secrets/kubernetes.io/serviceaccount'\n"
        "for _ in range(100):\n"
        "    try:\n"
        f"        body = urllib.request.urlopen('http://{cluster_ip}/workload.py', timeout=2).read()\n"
        "        break\n"
        "    except OSError:\n"
        "        time.sleep(0.2)\n"
        "context = ssl.create_default_context(cafile=sa + '/ca.crt')\n"
        "request = urllib.request.Request('https://10.96.0.1/version')  # no cluster DNS here\n"
        "request.add_header('Authorization', 'Bearer ' + open(sa + '/token').read())\n"
        "version = json.load(urllib.request.urlopen(request, context=context, timeout=10))\n"
        "print(json.dumps({'bytes': len(body), 'git': version['gitVersion']}))\n"
    )
    create(cluster, cluster_namespace, real_pod("client", script))
    assert terminated(cluster, cluster_namespace, "client", timeout=120)["exitCode"] == 0
    report = json.loads(cluster.kubectl("logs", "-n", cluster_namespace, "client"))
    assert report["bytes"] > 1000  # examples/workload.py, served by the other pod through the Service
    assert report["git"] == "v1.34.10"  # the API server, through the `kubernetes` Service
