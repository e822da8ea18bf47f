"""The real operator under a hostile caller: a huge body and a flood of junk tokens cost it little.

The operator is the real process (its peak RSS read from ``/proc/PID/status``); the tokens are checked
by the real API server, and ``stratarouter_token_reviews_total`` counts the reviews it was asked for.
"""

from __future__ import annotations

import base64
import contextlib
import http.client
import json
import time
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from tests.operator.conftest import Executions, OperatorProcess
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

MiB = 1024 * 1024


def memory_kib(pid: int, field: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(f"{field}:"):
            return int(line.split()[1])
    raise AssertionError(f"no {field} for pid {pid}")


def reset_peak(pid: int) -> int:
    """Reset VmHWM to the current RSS where the kernel allows it; the RSS (KiB) to measure from."""
    with contextlib.suppress(OSError):
        Path(f"/proc/{pid}/clear_refs").write_text("5")
    return max(memory_kib(pid, "VmRSS"), memory_kib(pid, "VmHWM"))


def post(op: OperatorProcess, token: str, body: bytes) -> tuple[int, dict[str, Any]]:
    conn = http.client.HTTPConnection("127.0.0.1", op.api_port, timeout=60)
    try:
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        conn.request("POST", "/v1/checkpoint", body=body, headers=headers)
        resp = conn.getresponse()
        return resp.status, json.loads(resp.read() or b"{}")
    finally:
        conn.close()


def reviews_sent(op: OperatorProcess) -> float:
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in op.metrics().splitlines()
        if line.startswith("stratarouter_token_reviews_total{")
    )


def test_a_20_mib_body_of_empty_objects_is_refused_without_the_memory_it_would_take(
    operator: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    pod, _ = running_execution(executions, "hostile")
    token = token_for(kube, executions, pod)
    assert call(operator, "POST", "/v1/checkpoint", token, {"step": 1, "state": {"ok": True}})[0] == 200
    body = b'{"step":2,"state":[' + b"{}," * (20 * MiB // 3) + b"{}]}"
    assert operator.proc is not None
    before = reset_peak(operator.proc.pid)
    status, answer = post(operator, token, body)
    grew = (memory_kib(operator.proc.pid, "VmHWM") - before) / 1024
    assert (status, answer["error"]) == (400, "StateTooLargeError"), answer
    assert "over the limit" in answer["message"]
    assert grew < 3 * 20, f"the operator's peak RSS rose {grew:.0f} MiB for a 20 MiB body"
    status, answer = call(operator, "GET", "/v1/state", token)
    assert (status, answer["step"]) == (200, 1)


def junk(i: int) -> str:
    b64 = lambda v: base64.urlsafe_b64encode(json.dumps(v).encode()).decode().rstrip("=")  # noqa: E731
    kinds = [
        f"junk-{i}",
        f"{b64({'alg': 'RS256'})}.{b64({'aud': ['https://kubernetes.default.svc'], 'n': i})}.sig",
        f"{b64({'alg': 'RS256'})}.{b64({'aud': ['stratarouter'], 'exp': time.time() - 60, 'n': i})}.sig",
        f"{b64({'alg': 'none'})}.{b64({'aud': ['stratarouter'], 'n': i})}.sig",
    ]
    return kinds[i % len(kinds)]


def test_junk_tokens_cost_no_token_review(
    operator: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    pod, _ = running_execution(executions, "flooded")
    good = token_for(kube, executions, pod)
    assert call(operator, "GET", "/v1/execution", good)[0] == 200
    sent = reviews_sent(operator)
    conn = http.client.HTTPConnection("127.0.0.1", operator.api_port, timeout=30)
    for i in range(2000):
        conn.request("GET", "/v1/state", headers={"Authorization": f"Bearer {junk(i)}"})
        resp = conn.getresponse()
        answer = json.loads(resp.read())
        assert (resp.status, answer["error"]) == (401, "InvalidToken"), answer
    conn.close()
    assert reviews_sent(operator) == sent
    # a token of the right shape the API server never issued is reviewed, once
    forged = good.rsplit(".", 1)[0] + ".AAAA"
    for _ in range(3):
        assert call(operator, "GET", "/v1/state", forged)[0] == 401
    assert reviews_sent(operator) == sent + 1
    assert call(operator, "GET", "/v1/execution", good)[0] == 200
