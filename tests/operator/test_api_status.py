"""Status coalescing on the real API server: a burst of checkpoints costs about one patch per interval.

The patches are counted from the API server's own record: a watch replayed from the resourceVersion
before the burst lists every change of the Execution, and we count those that changed
``status.lastCheckpoint``.
"""

from __future__ import annotations

import json
import math
import ssl
import time
import urllib.parse
import urllib.request
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from tests.operator.conftest import GROUP_PATH, Executions, OperatorProcess
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


def replay_changes(kube: KubeApi, namespace: str, name: str, since: str) -> list[dict[str, Any]]:
    """Every version of the Execution written after resourceVersion ``since``, oldest first."""
    query = urllib.parse.urlencode(
        {
            "watch": "1",
            "fieldSelector": f"metadata.name={name}",
            "resourceVersion": since,
            "timeoutSeconds": "2",
            "allowWatchBookmarks": "false",
        }
    )
    req = urllib.request.Request(f"{kube.server}{GROUP_PATH}/namespaces/{namespace}/executions?{query}")
    req.add_header("Authorization", f"Bearer {kube.token}")
    ctx = ssl.create_default_context(cadata=kube.ca_pem)
    objects = []
    with urllib.request.urlopen(req, timeout=30, context=ctx) as resp:
        for line in resp:
            event = json.loads(line)
            if event["type"] in ("ADDED", "MODIFIED"):
                objects.append(event["object"])
    return objects


def test_a_burst_of_checkpoints_costs_about_one_patch_per_interval(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, namespace: str
) -> None:
    pod, _ = running_execution(executions, "busy")
    token = token_for(kube, executions, pod)
    executions.wait_phase("busy", "Running")
    since = executions.get("busy")["metadata"]["resourceVersion"]  # type: ignore[index]

    checkpoints = 300
    started = time.monotonic()
    for step in range(1, checkpoints + 1):
        status, answer = call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"i": step}})
        assert status == 200, answer
    elapsed = time.monotonic() - started
    # the newest checkpoint always ends up in status (the coalescer's trailing patch)
    executions.wait_status(
        "busy",
        "the last step in status",
        lambda s: (s.get("lastCheckpoint") or {}).get("step") == checkpoints,
    )

    versions = replay_changes(kube, namespace, "busy", since)
    seen: list[int] = []
    previous: Any = None
    for obj in versions:
        last = (obj.get("status") or {}).get("lastCheckpoint")
        if last != previous and last is not None:
            seen.append(last["step"])
        previous = last
    interval = 1.0  # STRATA_STATUS_PATCH_INTERVAL_SECONDS default
    allowed = math.ceil((elapsed + 2.0) / interval) + 1
    assert seen, "no lastCheckpoint change recorded"
    assert seen[-1] == checkpoints
    assert seen == sorted(seen), "status went backwards"
    assert len(seen) <= allowed, f"{len(seen)} patches for {checkpoints} checkpoints in {elapsed:.1f}s"
    assert len(seen) < checkpoints / 5
