"""The kubelet rotates the workload's projected token, and checkpointing carries on across rotations.

Slow by nature: Kubernetes refuses projected tokens shorter than 600 s, and the kubelet replaces one at
80% of its life (~480 s), so two rotations and the expiry of the token before the last one take
~19 minutes. ``make test-slow`` runs it; ``make test``
does not. The http backend reads the token file on every request, so a rotated token is used at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from typing import Any

import pytest

from stratarouter_runtime.dev.node import RealNode
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, operator_environment
from tests.operator.test_real_failures import real_template

TOKEN_SECONDS = 600  # the shortest a projected token may live
ROTATIONS = 2
STEP_SECONDS = 2.0
#: Long enough to write with the last token after the one before it expired: the k-th token (from 0) is
#: issued at ~0.8 * k * TOKEN_SECONDS and expires TOKEN_SECONDS later; plus a minute of margin.
STEPS = int((TOKEN_SECONDS * (0.8 * (ROTATIONS - 1) + 1) + 60) / STEP_SECONDS)

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(1500)]


@pytest.fixture
def operator_env(cluster: Any, pg_dsn: str, namespace: str, node: RealNode) -> dict[str, str]:
    env = operator_environment(cluster.kubeconfig, pg_dsn, api_host=node.gateway)
    env["STRATA_POD_TOKEN_SECONDS"] = str(TOKEN_SECONDS)
    return env


def claims(token: str) -> dict[str, Any]:
    payload: dict[str, Any] = json.loads(base64.urlsafe_b64decode(token.split(".")[1] + "=="))
    return payload


def test_checkpoints_keep_flowing_across_token_rotations(
    executions: Executions, operator: OperatorProcess, node: RealNode, pg_dsn: str, namespace: str
) -> None:
    template = real_template(step_seconds=STEP_SECONDS)
    template["spec"]["containers"][0]["env"][0]["value"] = str(STEPS)
    executions.post("rotating", {"template": template, "recovery": {"backoffSeconds": 0, "maxRestarts": 0}})
    pod = executions.wait_pod_running("rotating-a1")
    volume = (
        node.root / "kubelet" / "pods" / pod["metadata"]["uid"] / "volumes"
        / "kubernetes.io~projected" / "stratarouter-token" / "token"
    )  # fmt: skip
    seen: dict[str, dict[str, Any]] = {}  # every token the kubelet projected, with its claims
    deadline = time.monotonic() + STEPS * STEP_SECONDS + 300
    while time.monotonic() < deadline:
        if volume.exists():
            token = volume.read_text().strip()
            seen.setdefault(token, claims(token))
        status = executions.status("rotating")
        if status.get("phase") in ("Succeeded", "Failed"):
            break
        time.sleep(5)
    assert status["phase"] == "Succeeded", status
    assert status["restarts"] == 0  # never refused, never recovered
    tokens = sorted(seen.values(), key=lambda c: c["iat"])
    assert len(tokens) >= ROTATIONS + 1, tokens
    assert all(c["exp"] - c["iat"] == TOKEN_SECONDS for c in tokens)
    # Every step was stored, and checkpoints kept being accepted after each token but the last expired.
    times = asyncio.run(checkpoint_times(pg_dsn, f"{namespace}/rotating"))
    assert len(times) == STEPS
    for expired in tokens[:-1]:
        assert any(at > expired["exp"] for at in times), (expired, times[-1])


async def checkpoint_times(dsn: str, execution_id: str) -> list[float]:
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        return [cp.timestamp.timestamp() for cp in await store.get_history(execution_id)]
