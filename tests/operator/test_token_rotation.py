"""The kubelet rotates the workload's projected token, and checkpointing carries on across rotations.

Slow by nature: Kubernetes refuses projected tokens shorter than 600 s, and the kubelet replaces one at
80% of its life (~480 s), so two rotations and the expiry of the token before the last one take
about 19-20 minutes. ``make test-slow`` runs it; ``make test``
does not. The http backend reads the token file on every request, so a rotated token is used at once.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from datetime import datetime
from typing import Any

import pytest

from stratarouter_dev.node import RealNode
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, operator_environment
from tests.operator.test_real_failures import real_template

TOKEN_SECONDS = 600  # the shortest a projected token may live
ROTATIONS = 2
STEP_SECONDS = 2.0
#: More steps than the test needs: it stops watching once a checkpoint was accepted after the token
#: before the last one expired (the kubelet rotates at ~80% of a token's life, sometimes a minute later).
STEPS = 1200
WATCH_SECONDS = TOKEN_SECONDS * (0.8 * ROTATIONS + 1) + 300

pytestmark = [pytest.mark.cluster, pytest.mark.postgres, pytest.mark.slow, pytest.mark.timeout(2400)]


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
    deadline = time.monotonic() + WATCH_SECONDS
    tokens: list[dict[str, Any]] = []
    while time.monotonic() < deadline:
        if volume.exists():
            token = volume.read_text().strip()
            seen.setdefault(token, claims(token))
        tokens = sorted(seen.values(), key=lambda c: c["iat"])
        status = executions.status("rotating")
        assert status.get("phase") in ("Pending", "Running"), status
        checkpoint = status.get("lastCheckpoint") or {}
        if len(tokens) > ROTATIONS and checkpoint.get("time"):
            written = datetime.fromisoformat(checkpoint["time"].replace("Z", "+00:00")).timestamp()
            if written > tokens[ROTATIONS - 1]["exp"] + 5:
                break
        time.sleep(5)
    assert status["restarts"] == 0, status  # never refused, never recovered
    assert len(tokens) >= ROTATIONS + 1, tokens
    assert all(c["exp"] - c["iat"] == TOKEN_SECONDS for c in tokens)
    # Every step so far was stored, and checkpoints kept being accepted after each token but the last
    # had expired: the workload used each new token as the kubelet projected it.
    rows = asyncio.run(checkpoints(pg_dsn, f"{namespace}/rotating"))
    steps, times = [step for step, _at in rows], [at for _step, at in rows]
    assert steps == list(range(1, len(steps) + 1))
    assert len(steps) >= status["lastCheckpoint"]["step"]
    for expired in tokens[:ROTATIONS]:
        assert any(at > expired["exp"] for at in times), (expired, times[-1])


async def checkpoints(dsn: str, execution_id: str) -> list[tuple[int, float]]:
    """(step, when it was written) of every checkpoint of the run, oldest first."""
    async with StateManager(backend="postgresql", db_url=dsn) as store:
        return [(cp.step, cp.timestamp.timestamp()) for cp in await store.get_history(execution_id)]
