"""What both cluster benchmarks read off the machine: percentiles, the API server's request counts, the
CPU time of a process tree, and the Execution template they create."""

from __future__ import annotations

import os
from pathlib import Path

from stratarouter_dev.kubeapi import KubeApi

#: A kwok Execution: its pod is scheduled and Running, no container runs.
TEMPLATE = {"spec": {"containers": [{"name": "work", "image": "example.invalid/work:1"}]}}


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * len(ordered)) - 1))]


def apiserver_counts(api: KubeApi) -> dict[str, float]:
    """apiserver_request_total summed for the verbs the checkpoint path uses."""
    wanted = {
        ("POST", "tokenreviews", ""),
        ("GET", "pods", ""),
        ("GET", "executions", ""),
        ("PATCH", "executions", "status"),
    }
    totals: dict[str, float] = {}
    for line in api.text("/metrics", timeout=30).splitlines():
        if not line.startswith("apiserver_request_total{"):
            continue
        labels_text, value = line[len("apiserver_request_total{") :].rsplit("} ", 1)
        labels = dict(kv.split("=", 1) for kv in labels_text.split('",') if "=" in kv)
        labels = {k: v.strip('"') for k, v in labels.items()}
        key = (labels.get("verb", ""), labels.get("resource", ""), labels.get("subresource", ""))
        if key in wanted:
            name = "/".join(k for k in key if k)
            totals[name] = totals.get(name, 0.0) + float(value)
    return totals


def _cpu_seconds(pid: int) -> float:
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return 0.0
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                ppid = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            if ppid == pid:
                found.append(int(entry.name))
    return found
