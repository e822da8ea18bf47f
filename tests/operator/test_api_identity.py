"""Who a caller is comes only from facts it cannot change: its token's pod uid and the Execution's status.

A pod's labels can be patched by anyone allowed to patch pods, and a pod with the attempt's name and
a correct owner reference can be created by anyone allowed to create pods. Neither may change which
attempt the store fences on, nor which pod the checkpoint API accepts.
"""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_dev.pods import request_pod_token
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import MERGE_PATCH, Executions, OperatorProcess, template, wait_until
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]


async def stored_attempt(pg_dsn: str, execution_id: str) -> int:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        record = await store.get_execution(execution_id)
        assert record is not None
        return record.attempt


def impostor_pod(executions: Executions, execution: dict[str, Any], name: str) -> dict[str, Any]:
    """A pod named ``name`` with the operator's labels and an owner reference to ``execution``."""
    meta = execution["metadata"]
    owner = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "name": meta["name"],
        "uid": meta["uid"],
        "controller": True,
    }
    labels = {
        "app.kubernetes.io/managed-by": "stratarouter",
        "stratarouter.io/execution": meta["name"],
        "stratarouter.io/attempt": name.rsplit("-a", 1)[1],
    }
    body = {
        "metadata": {"name": name, "labels": labels, "ownerReferences": [owner]},
        "spec": template()["spec"],
    }
    path = f"/api/v1/namespaces/{executions.namespace}/pods"
    pod: dict[str, Any] = executions.kube.request("POST", path, body)
    return pod


async def test_a_forged_attempt_label_changes_nothing(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, pg_dsn: str
) -> None:
    """Label the current pod attempt 99: it keeps checkpointing as attempt 1, the store stays at 1, and
    the recovery's attempt 2 is accepted (were the store at 99, every later attempt would get 409)."""
    execution_id = f"{executions.namespace}/forged"
    pod1, _ = running_execution(executions, "forged", recovery={"backoffSeconds": 0})
    token = token_for(kube, executions, pod1)
    assert call(operator, "POST", "/v1/checkpoint", token, {"step": 1, "state": {"n": 1}})[0] == 200

    kube.request(
        "PATCH",
        executions.pod_path(pod1),
        {"metadata": {"labels": {"stratarouter.io/attempt": "99"}}},
        content_type=MERGE_PATCH,
    )
    # a token never reviewed before, so the API reads the (now forged) pod afresh
    fresh = token_for(kube, executions, pod1)
    for step, who in ((2, fresh), (3, token)):
        status, answer = call(operator, "POST", "/v1/checkpoint", who, {"step": step, "state": {"n": step}})
        assert (status, answer.get("attempt")) == (200, 1), answer
    status, answer = call(operator, "GET", "/v1/state", fresh)
    assert (status, answer["attempt"]) == (200, 1), answer
    assert await stored_attempt(pg_dsn, execution_id) == 1

    executions.fail(pod1, 1)
    pod2 = "forged-a2"
    executions.wait_status("forged", f"podName {pod2}", lambda s: s.get("podName") == pod2)
    executions.wait_pod_running(pod2)
    token2 = token_for(kube, executions, pod2)
    status, answer = call(operator, "POST", "/v1/checkpoint", token2, {"step": 4, "state": {"n": 4}})
    assert (status, answer.get("attempt")) == (200, 2), answer
    assert await stored_attempt(pg_dsn, execution_id) == 2
    async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
        history = await store.get_history(execution_id)
        assert [(cp.step, cp.attempt) for cp in history] == [(1, 1), (2, 1), (3, 1), (4, 2)]


def test_an_impostor_with_the_attempts_name_and_owner_is_not_adopted(
    operator_process: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    """A pod pre-created as ``<name>-a1`` with a correct owner reference and the operator's labels, before
    the operator makes its own: the operator deletes it (Event ``ForeignPod``), creates its own pod and
    records that pod's uid; the impostor's token never writes."""
    created = executions.create("lured")
    impostor = impostor_pod(executions, created, "lured-a1")
    impostor_uid = impostor["metadata"]["uid"]
    impostor_token = request_pod_token(kube, impostor)

    operator_process.start()
    status = executions.wait_status("lured", "podName lured-a1", lambda s: s.get("podName") == "lured-a1")
    pod = executions.wait_pod_running("lured-a1")
    assert pod["metadata"]["uid"] != impostor_uid
    assert status.get("podUID") == pod["metadata"]["uid"]
    wait_until("the ForeignPod event", lambda: "ForeignPod" in executions.event_reasons("lured"))
    foreign = next(e for e in executions.events("lured") if e["reason"] == "ForeignPod")
    assert impostor_uid in foreign["message"]

    code, answer = call(operator_process, "POST", "/v1/checkpoint", impostor_token, {"step": 1, "state": {}})
    assert code in (401, 403), answer
    own = token_for(kube, executions, "lured-a1")
    code, answer = call(operator_process, "POST", "/v1/checkpoint", own, {"step": 1, "state": {"ok": 1}})
    assert (code, answer.get("attempt")) == (200, 1), answer
    assert executions.status("lured")["attempt"] == 1


def test_a_pod_swapped_in_under_the_attempts_name_is_not_followed(
    operator_process: OperatorProcess, executions: Executions, kube: KubeApi
) -> None:
    """While the operator is down, its pod is deleted and an impostor created under the same name, labels
    and owner: the restarted operator takes the attempt's pod as gone (the uid is not status.podUID) and
    recovers with attempt 2; it neither follows the impostor's phase nor accepts its token."""
    operator_process.start()
    pod1, running = running_execution(executions, "swapped", recovery={"backoffSeconds": 0})
    assert executions.status("swapped")["podUID"] == running["metadata"]["uid"]
    operator_process.kill()
    kube.request("DELETE", executions.pod_path(pod1), {"gracePeriodSeconds": 0})
    wait_until("the operator's pod gone", lambda: executions.pod(pod1) is None)
    impostor = impostor_pod(executions, executions.get("swapped") or {}, pod1)
    impostor_token = request_pod_token(kube, impostor)

    operator_process.start()
    status = executions.wait_status("swapped", "attempt 2", lambda s: s.get("attempt") == 2)
    assert status["recovery"]["failedPod"] == pod1
    assert "ForeignPod" in executions.event_reasons("swapped")
    wait_until("the impostor deleted", lambda: executions.pod(pod1) is None)
    pod2 = executions.wait_pod_running("swapped-a2")
    assert executions.status("swapped")["podUID"] == pod2["metadata"]["uid"]
    code, answer = call(operator_process, "POST", "/v1/checkpoint", impostor_token, {"step": 1, "state": {}})
    assert code in (401, 403, 409), answer
