"""Forks on the real control plane: an Execution applied with ``spec.startFrom`` starts from another run's
checkpoint (or Snapshot), the source untouched; missing and pruned sources; startFrom is immutable."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path
from typing import Any

import pytest

from stratarouter_dev.kubeapi import KubeApi, KubeApiError
from stratarouter_runtime.plugin import exits
from stratarouter_runtime.plugin import main as plugin
from stratarouter_runtime.state import StateManager
from tests.operator.conftest import Executions, OperatorProcess, dump, template
from tests.operator.test_api import call, pod_sdk, running_execution, token_for
from tests.operator.test_plugin import Strata, strata  # noqa: F401 - fixtures
from tests.operator.test_snapshots import Snapshots, checkpointed, snapshots  # noqa: F401 - fixtures
from tests.operator.test_view_rbac import kwok_run, role, view, view_env, view_gate  # noqa: F401 - fixtures

pytestmark = [pytest.mark.cluster, pytest.mark.postgres]

CREATE_EXECUTIONS = {
    "apiGroups": ["stratarouter.io"],
    "resources": ["executions"],
    "verbs": ["get", "create"],
}


def fork_yaml(namespace: str, name: str, start_from: dict[str, Any], image: str) -> str:
    """The manifest a user (or GitOps) applies: a JSON document is YAML too."""
    manifest = {
        "apiVersion": "stratarouter.io/v1alpha1",
        "kind": "Execution",
        "metadata": {"name": name, "namespace": namespace},
        "spec": {"template": template(image=image), "startFrom": start_from},
    }
    return json.dumps(manifest, indent=2)


def store_record(pg_dsn: str, execution_id: str) -> dict[str, Any]:
    """A run as the store has it: attempt, state, history steps, audit kinds."""

    async def read() -> dict[str, Any]:
        async with StateManager(backend="postgresql", db_url=pg_dsn) as store:
            execution = await store.get_execution(execution_id)
            assert execution is not None
            return {
                "attempt": execution.attempt,
                "status": str(execution.status),
                "state": await store.load(execution_id),
                "history": [(cp.step, cp.state_data) for cp in await store.get_history(execution_id)],
                "audit": [(e.kind, e.step, e.detail) for e in await store.get_audit(execution_id)],
            }

    return asyncio.run(read())


async def test_a_fork_applied_with_kubectl_starts_from_step_3_and_leaves_its_source_alone(
    checkpointed: str,  # noqa: F811 - the imported fixture
    snapshots: Snapshots,  # noqa: F811
    executions: Executions,
    kube: KubeApi,
    operator: OperatorProcess,
    cluster: Any,
    pg_dsn: str,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    tmp_path: Path,
) -> None:
    source_before = await asyncio.to_thread(store_record, pg_dsn, f"{namespace}/{checkpointed}")
    transcript: list[str] = []
    manifest = fork_yaml(namespace, "fork", {"execution": checkpointed, "step": 3}, "example.invalid/work:2")
    transcript.append(f"$ kubectl apply -f fork.yaml\n{manifest}")
    transcript.append(cluster.kubectl("apply", "-f", "-", input=manifest))
    executions.created.append("fork")

    status = executions.wait_status("fork", "pod fork-a1", lambda s: s.get("podName") == "fork-a1")
    env = executions.env("fork-a1")
    assert (env["STRATA_ATTEMPT"], env["STRATA_RESUME_STEP"]) == ("1", "3")
    assert executions.pod("fork-a1")["spec"]["containers"][0]["image"] == "example.invalid/work:2"  # type: ignore[index]
    started = status["startedFrom"]
    assert (started["execution"], started["step"], started.get("snapshot")) == (checkpointed, 3, None)
    forked = executions.condition("fork", "Forked")
    assert forked is not None
    assert (forked["status"], forked["reason"]) == ("True", "Forked")
    assert "Forked" in executions.event_reasons("fork")

    # the pod loads step 3's state through the checkpoint API with its own token, and goes on from there
    executions.wait_pod_running("fork-a1")
    token_file = tmp_path / "token"
    token_file.write_text(token_for(kube, executions, "fork-a1"))
    pod = pod_sdk(monkeypatch, operator, env, token_file)
    assert (pod.execution_id, pod.resume_step) == (f"{namespace}/fork", 3)
    assert await pod.load(f"{namespace}/fork") == {"step": 3}
    await pod.checkpoint(f"{namespace}/fork", 4, {"step": 4, "forked": True})
    await pod.close()

    record = await asyncio.to_thread(store_record, pg_dsn, f"{namespace}/fork")
    assert record["history"] == [(3, {"step": 3}), (4, {"step": 4, "forked": True})]
    assert record["audit"][0] == ("forked", 3, {"execution": f"{namespace}/{checkpointed}", "step": 3})
    assert await asyncio.to_thread(store_record, pg_dsn, f"{namespace}/{checkpointed}") == source_before
    status, answer = call(operator, "GET", "/v1/history", token_file.read_text())
    assert status == 200
    assert [c["step"] for c in answer["checkpoints"]] == [3, 4]

    transcript.append("$ kubectl get execution fork -o jsonpath='{.status.startedFrom}'")
    transcript.append(cluster.kubectl("get", "execution", "fork", "-n", namespace, "-o",
                                      "jsonpath={.status.startedFrom}"))  # fmt: skip
    transcript.append(f"# the new run's history and audit trail in the store\n{dump(record)}")

    # from a Snapshot: its stored copy, its step
    snapshots.create("at-4", executionName=checkpointed, step=4)
    snapshots.wait_phase("at-4", "Ready")
    manifest = fork_yaml(namespace, "from-snap", {"snapshot": "at-4"}, "example.invalid/work:1")
    cluster.kubectl("apply", "-f", "-", input=manifest)
    executions.created.append("from-snap")
    status = executions.wait_status("from-snap", "pod", lambda s: s.get("podName") == "from-snap-a1")
    assert executions.env("from-snap-a1")["STRATA_RESUME_STEP"] == "4"
    started = status["startedFrom"]
    assert (started["execution"], started["step"], started["snapshot"]) == (checkpointed, 4, "at-4")
    print("\n".join(transcript))  # the transcript of docs/fork.md (pytest -s shows it)


def test_a_missing_source_waits_with_a_condition_until_it_appears(
    executions: Executions, kube: KubeApi, operator: OperatorProcess
) -> None:
    executions.create("early", startFrom={"execution": "late", "step": 2})
    status = executions.wait_status(
        "early", "Forked False", lambda s: s.get("reason") == "ForkSourceNotFound"
    )
    forked = executions.condition("early", "Forked")
    assert forked is not None
    assert forked["status"] == "False"
    assert "Execution late not found in namespace" in forked["message"]
    assert "retried in 5s" in forked["message"]
    assert status["phase"] == "Pending"
    assert not executions.pods("early")
    assert "ForkSourceNotFound" in executions.event_reasons("early")

    pod, _ = running_execution(executions, "late")
    token = token_for(kube, executions, pod)
    for step in (1, 2):
        answer = call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"late": step}})
        assert answer[0] == 200
    status = executions.wait_status("early", "forked", lambda s: s.get("podName") == "early-a1", timeout=60)
    assert status["startedFrom"]["step"] == 2
    assert executions.env("early-a1")["STRATA_RESUME_STEP"] == "2"


def test_a_step_pruned_by_retention_fails_at_once(
    executions: Executions, kube: KubeApi, operator: OperatorProcess
) -> None:
    pod, _ = running_execution(executions, "kept", checkpoint={"retention": 2})
    token = token_for(kube, executions, pod)
    for step in range(1, 5):
        assert call(operator, "POST", "/v1/checkpoint", token, {"step": step, "state": {"n": step}})[0] == 200
    executions.create("too-old", startFrom={"execution": "kept", "step": 1})
    status = executions.wait_phase("too-old", "Failed")
    assert status["reason"] == "ForkCheckpointNotFound"
    assert "no checkpoint at step 1 (never written, or pruned by checkpoint retention" in status["message"]
    forked = executions.condition("too-old", "Forked")
    assert forked is not None
    assert (forked["status"], forked["reason"]) == ("False", "ForkCheckpointNotFound")
    assert not executions.pods("too-old")


def test_start_from_is_validated_and_immutable(
    checkpointed: str,  # noqa: F811 - the imported fixture
    executions: Executions,
) -> None:
    with pytest.raises(KubeApiError) as refused:
        executions.create("both", startFrom={"execution": checkpointed, "snapshot": "s"})
    assert refused.value.status == 422
    assert "exactly one of snapshot and execution" in str(refused.value)
    with pytest.raises(KubeApiError) as refused:
        executions.create("stepless", startFrom={"snapshot": "s", "step": 1})
    assert "startFrom.step needs startFrom.execution" in str(refused.value)

    executions.create("child", startFrom={"execution": checkpointed, "step": 2})
    executions.wait_status("child", "pod", lambda s: s.get("podName") == "child-a1")
    for change in ({"startFrom": {"execution": checkpointed, "step": 4}}, {"startFrom": None}):
        with pytest.raises(KubeApiError) as refused:
            executions.patch_spec("child", change)
        assert refused.value.status == 422
        assert "spec.startFrom is immutable" in str(refused.value)
    assert executions.status("child")["startedFrom"]["step"] == 2


def test_kubectl_strata_fork_creates_the_new_execution(
    checkpointed: str,  # noqa: F811 - the imported fixture
    executions: Executions,
    cluster: Any,
    namespace: str,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.setenv("PATH", f"{cluster.bin_dir}:{os.environ['PATH']}")
    argv = ["--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "fork", checkpointed, "by-plugin"]
    assert plugin.main([*argv, "--step", "2", "--image", "example.invalid/work:3"]) == 0
    assert "execution.stratarouter.io/by-plugin created" in capsys.readouterr().out
    executions.created.append("by-plugin")
    status = executions.wait_status("by-plugin", "pod", lambda s: s.get("podName") == "by-plugin-a1")
    assert executions.env("by-plugin-a1")["STRATA_RESUME_STEP"] == "2"
    pod = executions.pod("by-plugin-a1")
    assert pod is not None
    assert pod["spec"]["containers"][0]["image"] == "example.invalid/work:3"
    assert status["startedFrom"]["step"] == 2
    assert plugin.main([*argv, "--step", "1"]) == 1  # the name is taken: kubectl's AlreadyExists
    assert "already exists" in capsys.readouterr().err
    assert plugin.main(["--kubeconfig", str(cluster.kubeconfig), "-n", namespace, "fork", "nope", "x"]) == 3


def test_the_forks_history_says_where_it_came_from(
    strata: Strata,  # noqa: F811 - the imported fixture
    executions: Executions,
    pg_dsn: str,
) -> None:
    """``kubectl strata`` as users with their own certificates: a fork needs get and create on
    executions; the new run's history shows its lineage (the forked audit event, the Forked Event)."""
    kwok_run(executions, pg_dsn, "train")  # steps 1-3 by attempt 1, 4 and 5 by attempt 2
    strata.user("forker")
    role(strata.view, "forker", [CREATE_EXECUTIONS], "forker")
    done = strata("reader", "fork", "train", "train-fork", "--step", "3", code=exits.FORBIDDEN)
    assert "create" in done.stderr
    strata("forker", "fork", "train", "train-fork", "--step", "3", "--image", "example.invalid/work:2")
    executions.created.append("train-fork")
    executions.wait_status("train-fork", "pod", lambda s: s.get("podName") == "train-fork-a1")
    done = strata("reader", "history", "train-fork")
    rows = [line.split() for line in done.stdout.splitlines()]
    assert [row[1] for row in rows if "checkpoint" in row] == ["3"]  # time, step, attempt, ...
    forked = next(row for row in rows if "forked" in row)
    assert forked[1] == "3"
    assert {"step=3,", f"execution={executions.namespace}/train"} <= set(forked)
    assert "Normal Forked: started from Execution train at step 3" in done.stdout
