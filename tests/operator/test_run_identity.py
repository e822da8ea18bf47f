"""A run belongs to one Execution (its uid), not to the name: a new Execution of a reused name starts
empty, whatever was stored under the name before, and the old run's pods can no longer write.

GitOps deletes and re-creates resources of the same name routinely; before, the new Execution read the
old run's state, mixed both histories, pruned against the old checkpoints and was fenced by the old
attempt number, and a pod writing during the deletion re-created a row that nothing ever cleaned.
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from stratarouter_dev.kubeapi import KubeApi
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import MERGE_PATCH, Executions, OperatorProcess, wait_until
from tests.operator.test_api import call, running_execution, token_for

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

HOLD = "tests.stratarouter.io/hold"


@pytest.fixture
async def store(pg_dsn: str) -> AsyncIterator[StateManager]:
    async with StateManager(backend="postgresql", db_url=pg_dsn) as manager:
        yield manager


def uid_of(executions: Executions, name: str) -> str:
    body = executions.get(name)
    assert body is not None
    uid: str = body["metadata"]["uid"]
    return uid


def checkpoint(operator: OperatorProcess, token: str, step: int) -> tuple[int, dict[str, object]]:
    return call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"step": step}})


async def test_a_recreated_execution_starts_empty_and_the_old_run_stays_readable(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, store: StateManager
) -> None:
    name, ns = "again", executions.namespace
    keep = {
        "retention": {"keepHistory": True},
        "checkpoint": {"retention": 3},
        "recovery": {"backoffSeconds": 0},
    }
    pod1, _ = running_execution(executions, name, **keep)
    old_uid = uid_of(executions, name)
    for step in (1, 2):
        assert checkpoint(operator, token_for(kube, executions, pod1), step)[0] == 200
    executions.fail(pod1)  # the old run reaches attempt 2: its number must not fence the new run
    executions.wait_status(name, "attempt 2 running", lambda s: s.get("podName") == f"{name}-a2")
    pod2 = executions.wait_pod_running(f"{name}-a2")["metadata"]["name"]
    for step in (3, 4, 5, 6):
        assert checkpoint(operator, token_for(kube, executions, pod2), step)[0] == 200
    executions.delete(name)
    wait_until("the old Execution gone", lambda: executions.get(name) is None)
    wait_until("its pods gone", lambda: executions.pods(name) == [])

    new_pod, _ = running_execution(executions, name, **keep)
    assert uid_of(executions, name) != old_uid
    status = executions.wait_status(name, "attempt 1", lambda s: s.get("attempt") == 1)
    assert status.get("resumeStep") is None
    assert executions.env(new_pod)["STRATA_RESUME_STEP"] == ""
    fresh = await store.get_execution(f"{ns}/{name}")
    assert fresh is not None
    assert (fresh.attempt, fresh.current_step, fresh.labels.get("uid")) == (1, None, uid_of(executions, name))
    assert await store.get_history(f"{ns}/{name}") == []
    code, answer = call(operator, "GET", "/v1/state", token_for(kube, executions, new_pod))
    assert code == 404, answer  # nothing of the old run reaches the new pod

    token = token_for(kube, executions, new_pod)
    for step in (1, 2):  # attempt 1 is accepted although the old run was at attempt 2
        code, answer = checkpoint(operator, token, step)
        assert code == 200, answer
    assert [c.step for c in await store.get_history(f"{ns}/{name}")] == [1, 2]  # retention 3: pruned alone

    archived = await store.get_execution(f"{ns}/{name}@{old_uid}")
    assert archived is not None
    assert (archived.status, archived.attempt, archived.current_step) == ("cancelled", 2, 6)
    assert [c.step for c in await store.get_history(f"{ns}/{name}@{old_uid}")] == [4, 5, 6]
    assert [e.kind for e in await store.get_audit(f"{ns}/{name}@{old_uid}")][-1] == "renamed"
    assert "EarlierRunArchived" in executions.event_reasons(name)


async def test_a_pod_writing_while_its_execution_is_deleted_is_refused_and_leaves_nothing(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, store: StateManager
) -> None:
    """A second finalizer holds the Execution in deletion after the operator dropped its stored run,
    so its pod (and the pod's token) still exist: a write then must not re-create the run."""
    name, ns = "dropped", executions.namespace
    pod, _ = running_execution(executions, name)
    token = token_for(kube, executions, pod)
    assert checkpoint(operator, token, 1)[0] == 200
    path = executions.path(name)
    operators = wait_until("the operator's finalizer", lambda: _finalizers(executions, name))
    kube.request("PATCH", path, {"metadata": {"finalizers": [*operators, HOLD]}}, content_type=MERGE_PATCH)
    try:
        executions.delete(name)
        wait_until("the operator dropped the stored run", lambda: _finalizers(executions, name) == [HOLD])
        assert await store.get_execution(f"{ns}/{name}") is None
        code, answer = checkpoint(operator, token, 2)
        assert (code, answer.get("error")) == (409, "StaleAttempt"), answer
        assert "being deleted" in str(answer.get("message"))
        assert await store.get_execution(f"{ns}/{name}") is None
    finally:
        kube.request("PATCH", path, {"metadata": {"finalizers": []}}, content_type=MERGE_PATCH)
    wait_until("the Execution gone", lambda: executions.get(name) is None)


def _finalizers(executions: Executions, name: str) -> list[str]:
    body = executions.get(name) or {}
    return list((body.get("metadata") or {}).get("finalizers") or [])


async def test_a_run_stored_under_the_name_by_someone_else_is_archived_not_inherited(
    operator: OperatorProcess, executions: Executions, kube: KubeApi, store: StateManager
) -> None:
    """E.g. left by an Execution whose finalizer was removed by hand while the operator was down."""
    name, ns = "inherit", executions.namespace
    await store.start_execution(f"{ns}/{name}", attempt=7, labels={"uid": "an-earlier-execution"})
    await store.checkpoint(f"{ns}/{name}", 41, {"theirs": True})
    pod, _ = running_execution(executions, name)
    assert (
        executions.wait_status(name, "attempt 1", lambda s: s.get("attempt") == 1).get("resumeStep") is None
    )
    code, answer = checkpoint(operator, token_for(kube, executions, pod), 1)
    assert code == 200, answer
    assert [c.state_data for c in await store.get_history(f"{ns}/{name}")] == [{"step": 1}]
    earlier = f"{ns}/{name}@an-earlier-execution"
    assert await store.load(earlier) == {"theirs": True}
    assert (await store.get_execution(earlier)).attempt == 7  # type: ignore[union-attr]
