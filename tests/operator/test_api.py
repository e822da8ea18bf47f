"""The checkpoint API against the real API server, PostgreSQL and operator process.

Pods are kwok pods (no containers run): the test gets a pod its bound token with a TokenRequest,
exactly what the kubelet projects into the pod, and calls the API as the pod's process would:
raw HTTP for the status codes, the SDK's http backend (``StateManager.from_env()``) for the rest.
"""

from __future__ import annotations

import json
import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.pods import request_pod_token
from stratarouter_runtime.state import StateManager
from stratarouter_runtime.state.errors import StaleAttemptError, StateError
from stratarouter_runtime.state.migrations import connect
from tests.operator.conftest import Executions, OperatorProcess, wait_until

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


def call(
    op: OperatorProcess, method: str, path: str, token: str | None, body: Any = None, raw: bytes | None = None
) -> tuple[int, dict[str, Any]]:
    """One request to the operator's API; returns (status, JSON answer)."""
    data = raw if raw is not None else (json.dumps(body).encode() if body is not None else None)
    req = urllib.request.Request(f"http://127.0.0.1:{op.api_port}{path}", data=data, method=method)
    if token is not None:
        req.add_header("Authorization", f"Bearer {token}")
    if data is not None:
        req.add_header("Content-Type", "application/json")
    try:
        with urllib.request.urlopen(req, timeout=30) as resp:
            return resp.status, json.loads(resp.read() or b"{}")
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


def running_execution(executions: Executions, name: str, **spec: Any) -> tuple[str, dict[str, Any]]:
    """Create an Execution and wait until its first pod runs and is named in status."""
    executions.create(name, **spec)
    pod = f"{name}-a1"
    executions.wait_status(name, f"podName {pod}", lambda s: s.get("podName") == pod)
    return pod, executions.wait_pod_running(pod)


def last_step(status: dict[str, Any]) -> int | None:
    step: int | None = (status.get("lastCheckpoint") or {}).get("step")
    return step


def token_for(kube: KubeApi, executions: Executions, pod: str) -> str:
    body = executions.pod(pod)
    assert body is not None
    return request_pod_token(kube, body)


def pod_sdk(
    monkeypatch: pytest.MonkeyPatch, op: OperatorProcess, env: dict[str, str], token_file: Path
) -> StateManager:
    """``StateManager.from_env()`` as inside the pod: its contract env, the API on loopback."""
    for key, value in env.items():
        if key.startswith("STRATA_"):
            monkeypatch.setenv(key, value)
    monkeypatch.setenv("STRATA_API_URL", f"http://127.0.0.1:{op.api_port}")
    monkeypatch.setenv("STRATA_TOKEN_FILE", str(token_file))
    monkeypatch.setenv("STRATA_RETRY_TIMEOUT", "5")
    return StateManager.from_env()


async def test_pod_checkpoints_resumes_and_is_fenced(
    operator: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Attempt 1 checkpoints through the SDK's http backend; attempt 2 loads it; attempt 1 is fenced."""
    pod1, _ = running_execution(executions, "run", recovery={"backoffSeconds": 0})
    token_file = tmp_path / "token"
    token_file.write_text(token_for(kube, executions, pod1))
    env1 = executions.env(pod1)
    assert env1["STRATA_ATTEMPT"] == "1"
    assert env1["STRATA_RESUME_STEP"] == ""

    state = pod_sdk(monkeypatch, operator, env1, token_file)
    assert state.backend_name == "http"
    execution_id = f"{executions.namespace}/run"
    assert state.execution_id == execution_id
    for step in range(1, 6):
        if step == 3:  # the kubelet rotates the projected token: the backend reads the file every time
            token_file.write_text(token_for(kube, executions, pod1))
        await state.checkpoint(execution_id, step, {"total": step * 10, "note": "é✓"})
    assert await state.load(execution_id) == {"total": 50, "note": "é✓"}
    history = await state.get_history(execution_id)
    assert [cp.step for cp in history] == [1, 2, 3, 4, 5]
    assert all(cp.attempt == 1 for cp in history)
    with pytest.raises(StateError, match="only use its own execution"):
        await state.checkpoint(f"{executions.namespace}/other", 1, {})

    # the store (read directly, as the operator does) has it, and the Execution's status mirrors it
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        record = await store.get_execution(execution_id)
        assert record is not None
        assert (record.last_checkpoint_step, record.attempt) == (5, 1)
    executions.wait_status("run", "lastCheckpoint 5", lambda s: last_step(s) == 5)
    last = executions.status("run")["lastCheckpoint"]
    compact = json.dumps({"total": 50, "note": "é✓"}, separators=(",", ":"), ensure_ascii=False)
    assert last["sizeBytes"] == len(compact.encode())

    # the pod dies; the operator replaces it with attempt 2 resuming at step 5
    executions.fail(pod1, 137)
    pod2 = "run-a2"
    executions.wait_status("run", f"podName {pod2}", lambda s: s.get("podName") == pod2)
    executions.wait_pod_running(pod2)
    env2 = executions.env(pod2)
    assert (env2["STRATA_ATTEMPT"], env2["STRATA_RESUME_STEP"]) == ("2", "5")

    # the zombie attempt 1 (its token review still cached by the API) is refused: 409 StaleAttempt
    with pytest.raises(StaleAttemptError):
        await state.checkpoint(execution_id, 6, {"total": -1})
    await state.close()

    token2 = tmp_path / "token2"
    token2.write_text(token_for(kube, executions, pod2))
    state2 = pod_sdk(monkeypatch, operator, env2, token2)
    assert state2.resume_step == 5
    assert await state2.load(execution_id) == {"total": 50, "note": "é✓"}
    await state2.checkpoint(execution_id, 6, {"total": 60})
    await state2.complete(execution_id)
    await state2.close()
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        history = await store.get_history(execution_id)
        assert [(cp.step, cp.attempt) for cp in history] == [(1, 1), (2, 1), (3, 1), (4, 1), (5, 1), (6, 2)]
        assert (await store.load(execution_id)) == {"total": 60}


def test_tokens_that_are_not_the_current_pods_are_refused(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, namespace: str
) -> None:
    """Garbage -> 401; a pod of another namespace, an impostor pod, a pod of no Execution -> 403."""
    pod1, _ = running_execution(executions, "guarded")
    good = token_for(kube, executions, pod1)
    assert call(operator, "POST", "/v1/checkpoint", good, {"step": 1, "state": {"ok": True}})[0] == 200

    status, answer = call(operator, "POST", "/v1/checkpoint", "not-a-token", {"step": 2, "state": {}})
    assert (status, answer["error"]) == (401, "InvalidToken")
    status, answer = call(operator, "POST", "/v1/checkpoint", None, {"step": 2, "state": {}})
    assert (status, answer["error"]) == (401, "MissingToken")

    labels = {"stratarouter.io/execution": "guarded", "stratarouter.io/attempt": "1"}

    def plain_pod(ns: str, name: str, pod_labels: dict[str, str]) -> str:
        body = {
            "metadata": {"name": name, "labels": pod_labels},
            "spec": {"containers": [{"name": "c", "image": "example.invalid/x:1"}]},
        }
        created = kube.request("POST", f"/api/v1/namespaces/{ns}/pods", body)
        return request_pod_token(kube, created)

    # a pod in another namespace carrying the same labels (its namespace has no such Execution)
    other_ns = f"t-{uuid.uuid4().hex[:10]}"
    kube.request("POST", "/api/v1/namespaces", {"metadata": {"name": other_ns}})
    try:
        wait_until(
            "default service account",
            lambda: kube.exists(f"/api/v1/namespaces/{other_ns}/serviceaccounts/default"),
        )
        foreign = plain_pod(other_ns, "guarded-a1", labels)
        status, answer = call(operator, "POST", "/v1/checkpoint", foreign, {"step": 2, "state": {}})
        assert (status, answer["error"]) == (403, "NoExecution")
    finally:
        kube.request("DELETE", f"/api/v1/namespaces/{other_ns}")

    # an impostor in the same namespace with the Execution's labels, but not its current pod
    impostor = plain_pod(namespace, "guarded-impostor", labels)
    status, answer = call(operator, "POST", "/v1/checkpoint", impostor, {"step": 2, "state": {}})
    assert (status, answer["error"]) == (403, "NotCurrentPod")
    assert "guarded-a1" in answer["message"]

    # a pod that is no Execution's
    stranger = plain_pod(namespace, "stranger", {})
    status, answer = call(operator, "GET", "/v1/state", stranger)
    assert (status, answer["error"]) == (403, "NotManaged")

    # nothing the refused callers sent was stored
    status, answer = call(operator, "GET", "/v1/state", good)
    assert (status, answer["step"], answer["state"]) == (200, 1, {"ok": True})


def test_old_pods_token_is_refused_once_replaced(
    operator_process: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
) -> None:
    """With the token cache off, attempt 1's token is refused outright after the replacement (401/403)."""
    operator_process.env["STRATA_TOKEN_CACHE_SECONDS"] = "0"
    operator_process.start()
    pod1, _ = running_execution(executions, "old", recovery={"backoffSeconds": 0})
    old = token_for(kube, executions, pod1)
    assert call(operator_process, "POST", "/v1/checkpoint", old, {"step": 1, "state": {}})[0] == 200
    executions.fail(pod1, 1)
    executions.wait_status("old", "attempt 2", lambda s: s.get("podName") == "old-a2")
    status, answer = call(operator_process, "POST", "/v1/checkpoint", old, {"step": 2, "state": {}})
    # the operator deletes the failed pod before creating its replacement, which voids its bound token
    # (401); were the old pod still there, its attempt would be a replaced one (409)
    assert status in (401, 409), answer
    assert answer["error"] in ("InvalidToken", "PodGone", "StaleAttempt")
    pod2 = "old-a2"
    executions.wait_pod_running(pod2)
    new = token_for(kube, executions, pod2)
    status, answer = call(operator_process, "GET", "/v1/state", new)
    # the new pod sees the state attempt 1 left; "attempt" is the execution's current attempt
    assert (status, answer["step"], answer["state"], answer["attempt"]) == (200, 1, {}, 2)


def test_a_cached_token_is_refused_once_its_pod_is_replaced(
    operator: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    """With the default (long) token cache: the old pod's token, reviewed and cached while its pod was
    current, is refused as soon as status names the replacement; reads included, not only fenced writes."""
    pod1, _ = running_execution(executions, "cached", recovery={"backoffSeconds": 0})
    old = token_for(kube, executions, pod1)
    assert call(operator, "POST", "/v1/checkpoint", old, {"step": 1, "state": {"n": 1}})[0] == 200
    assert call(operator, "GET", "/v1/state", old)[0] == 200  # answered from the cached review
    executions.fail(pod1, 1)
    executions.wait_status("cached", "attempt 2", lambda s: s.get("podName") == "cached-a2")

    def refused() -> tuple[int, dict[str, Any]] | None:
        status, answer = call(operator, "GET", "/v1/state", old)
        return (status, answer) if status != 200 else None

    status, answer = wait_until("the old pod's cached token refused", refused, timeout=10)
    assert (status, answer["error"]) == (409, "StaleAttempt"), answer
    assert "replaced by attempt 2" in answer["message"]
    executions.wait_pod_running("cached-a2")
    new = token_for(kube, executions, "cached-a2")
    assert call(operator, "GET", "/v1/state", new)[0] == 200


def test_bad_requests_get_400_with_a_reason(
    operator: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    pod1, _ = running_execution(executions, "strict")
    token = token_for(kube, executions, pod1)
    cases: list[tuple[bytes, str]] = [
        (b"{not json", "not valid JSON"),
        (b"[1, 2]", "JSON object"),
        (json.dumps({"state": {}}).encode(), "missing 'step'"),
        (json.dumps({"step": -1, "state": {}}).encode(), "non-negative"),
        (json.dumps({"step": "7", "state": {}}).encode(), "non-negative integer"),
        (json.dumps({"step": 1}).encode(), "missing 'state'"),
    ]
    for raw, needle in cases:
        status, answer = call(operator, "POST", "/v1/checkpoint", token, raw=raw)
        assert status == 400, (raw, answer)
        assert needle in answer["message"], (raw, answer)
    huge = b'{"step": 1, "state": "' + b"x" * (17 * 1024 * 1024) + b'"}'
    status, answer = call(operator, "POST", "/v1/checkpoint", token, raw=huge)
    assert status == 400
    assert answer["error"] == "StateTooLargeError"
    assert "over the limit" in answer["message"]
    status, answer = call(operator, "GET", "/v1/history?limit=zero", token)
    assert status == 400
    status, answer = call(operator, "POST", "/v1/fail", token, {"error": ""})
    assert status == 400
    # none of it was stored
    status, answer = call(operator, "GET", "/v1/state", token)
    assert (status, answer["error"]) == (404, "CheckpointNotFound")


def test_health_and_metrics(operator: OperatorProcess, executions: Executions, kube: KubeApi) -> None:
    pod1, _ = running_execution(executions, "metered")
    token = token_for(kube, executions, pod1)
    for step in range(3):
        assert call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": [step]})[0] == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.api_port}/healthz", timeout=5) as resp:
        assert resp.status == 200
    with urllib.request.urlopen(f"http://127.0.0.1:{operator.api_port}/metrics", timeout=5) as resp:
        text = resp.read().decode()
    metrics = {
        line.split(" ")[0]: float(line.split(" ")[1])
        for line in text.splitlines()
        if line and not line.startswith("#")
    }
    assert metrics["stratarouter_checkpoints_total"] >= 3
    assert metrics["stratarouter_checkpoint_seconds_count"] >= 3
    assert any(
        k.startswith("stratarouter_api_requests_total{")
        and 'route="/v1/checkpoint"' in k
        and 'code="200"' in k
        for k in metrics
    )
    for name in ("stratarouter_executions", "stratarouter_recoveries_total", "stratarouter_recovery_seconds"):
        assert f"# TYPE {name.removesuffix('_total')}" in text


async def test_the_checkpoint_spec_reaches_the_pods_sdk_and_the_store(
    operator: OperatorProcess,
    executions: Executions,
    kube: KubeApi,
    pg_dsn: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """spec.checkpoint.interval decides which of the pod's saves are checkpoints (not the operator's
    own default of 10), and compression: zstd makes the store compress what the pod sends."""
    pod, _ = running_execution(executions, "tuned", checkpoint={"interval": 7, "compression": "zstd"})
    env = executions.env(pod)
    assert (env["STRATA_CHECKPOINT_INTERVAL"], env["STRATA_ENABLE_COMPRESSION"]) == ("7", "true")
    token_file = tmp_path / "token"
    token_file.write_text(token_for(kube, executions, pod))
    state = pod_sdk(monkeypatch, operator, env, token_file)
    execution_id = f"{executions.namespace}/tuned"
    notes = ["the same long line of a growing agent transcript"] * 200
    for step in range(1, 16):
        await state.save(execution_id, step, {"step": step, "notes": notes})
    assert [cp.step for cp in await state.get_history(execution_id)] == [7, 14]
    assert await state.load(execution_id) == {"step": 15, "notes": notes}
    await state.close()
    conn = await connect(pg_dsn)
    try:
        codecs = await conn.fetch(
            "SELECT step, codec FROM checkpoints WHERE execution_id = $1 ORDER BY step", execution_id
        )
        assert [(r["step"], r["codec"]) for r in codecs] == [(7, "zstd"), (14, "zstd")]
    finally:
        await conn.close()
    executions.wait_status("tuned", "lastCheckpoint 14", lambda s: last_step(s) == 14)
