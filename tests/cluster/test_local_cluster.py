"""The cluster's own lifecycle: `up` outlives its process, `down` and stop() leave nothing, errors explain."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from stratarouter_dev.cluster import ClusterStartError, LocalCluster
from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.tools import REQUIRED, tools_bin_dir

pytestmark = pytest.mark.cluster


def alive(pid: int) -> bool:
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"


def dev_cluster(action: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "stratarouter_dev.cluster", action],
        env=env, capture_output=True, text=True, timeout=180, check=True,
    )  # fmt: skip


def test_up_survives_its_process_and_down_removes_everything(tmp_path: Path) -> None:
    bin_dir = tools_bin_dir()
    env = {
        **os.environ,
        "STRATA_TOOLS_BIN": str(bin_dir),
        "STRATA_CLUSTER_STATE": str(tmp_path / "state.json"),
    }
    up = dev_cluster("up", env)
    exports = dict(
        line.removeprefix("export ").split("=", 1)
        for line in up.stdout.splitlines()
        if line.startswith("export ")
    )
    assert exports["PATH"] == f"{bin_dir}:$PATH"
    state = json.loads((tmp_path / "state.json").read_text())
    pids = state["pids"]
    try:
        assert set(pids) == {"etcd", "kube-apiserver", "kube-controller-manager", "kube-scheduler", "kwok"}
        node_pids = state["node"]["pids"]
        assert set(node_pids) == {"containerd", "kubelet"}
        pids.update({f"node-{name}": pid for name, pid in node_pids.items()})
        assert all(alive(pid) for pid in pids.values())  # the `up` process is gone, the cluster is not
        nodes = subprocess.run(
            [str(bin_dir / "kubectl"), "get", "nodes", "--no-headers"],
            env={**os.environ, "KUBECONFIG": exports["KUBECONFIG"]},
            capture_output=True, text=True, check=True,
        ).stdout  # fmt: skip
        assert nodes.count(" Ready ") == 3, nodes  # two kwok nodes and the real one
        assert "real-node" in nodes
        # A second `up` reuses the running cluster.
        assert dev_cluster("up", env).stdout == up.stdout
    finally:
        dev_cluster("down", env)
    assert not any(alive(pid) for pid in pids.values())
    assert not Path(state["root"]).exists()
    assert not Path(f"/sys/class/net/strata{state['node']['network']}").exists()  # the bridge
    assert not (tmp_path / "state.json").exists()


def test_stop_leaves_no_process_and_no_files() -> None:
    cluster = LocalCluster.start(die_with_parent=True)
    pids = dict(cluster.pids)
    root = cluster.root
    assert cluster.kubectl("get", "namespace", "default", "-o", "name").strip() == "namespace/default"
    cluster.stop()
    assert not any(alive(pid) for pid in pids.values())
    assert not root.exists()


def test_start_failure_names_the_component_and_shows_its_log(tmp_path: Path) -> None:
    real = tools_bin_dir()
    for name in REQUIRED:
        (tmp_path / name).symlink_to(real / name)
    (tmp_path / "kube-apiserver").unlink()
    broken = tmp_path / "kube-apiserver"
    # The real binary with a flag it refuses: the error must carry the API server's own complaint.
    broken.write_text(f'#!/bin/sh\nexec "{real / "kube-apiserver"}" "$@" --no-such-flag\n')
    broken.chmod(0o755)
    with pytest.raises(ClusterStartError) as err:
        LocalCluster.start(tmp_path, timeout=60)
    message = str(err.value)
    assert "kube-apiserver exited" in message
    assert "unknown flag: --no-such-flag" in message
    leftovers = subprocess.run(["pgrep", "-f", str(tmp_path)], capture_output=True, text=True).stdout
    assert leftovers == ""


def test_kubeconfig_serves_kubectl_and_the_stdlib_client_even_after_kubectl_rewrites_it(
    cluster: LocalCluster, tmp_path: Path
) -> None:
    copy = tmp_path / "kubeconfig"
    shutil.copy(cluster.kubeconfig, copy)
    assert KubeApi.from_kubeconfig(copy).get("/version")["gitVersion"].startswith("v1.")
    # kubectl rewrites the file as YAML; TLS is still verified against the cluster's own CA.
    cluster.kubectl(f"--kubeconfig={copy}", "config", "set-context", "--current", "--namespace=kube-system")
    assert not copy.read_text().lstrip().startswith("{")
    api = KubeApi.from_kubeconfig(copy)
    assert api.server == cluster.server
    assert api.get("/api/v1/namespaces/kube-system")["metadata"]["name"] == "kube-system"
