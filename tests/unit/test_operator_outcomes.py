"""Each failure cause and each terminal reason, decided from the pod alone."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.outcomes import GiveUp, Retry, backoff_seconds, classify_pod, decide
from stratarouter_runtime.operator.resources.conditions import Reason
from stratarouter_runtime.operator.resources.execution import RecoverySpec


def _pod(phase: str, **status: Any) -> dict[str, Any]:
    return {"metadata": {"name": "x-a1"}, "spec": {"nodeName": "n1"}, "status": {"phase": phase, **status}}


def _terminated(*codes: int) -> list[dict[str, Any]]:
    return [{"name": f"c{i}", "state": {"terminated": {"exitCode": c}}} for i, c in enumerate(codes)]


def test_an_oom_killed_container_is_its_own_cause_and_its_exit_code_still_counts() -> None:
    statuses = [{"name": "c0", "state": {"terminated": {"exitCode": 137, "reason": "OOMKilled"}}}]
    state = classify_pod(_pod("Failed", containerStatuses=statuses))
    assert (state.kind, state.reason, state.exit_code) == ("failed", Reason.OOM_KILLED, 137)
    assert "OOM-killed" in state.message
    assert isinstance(decide(RecoverySpec(max_restarts=1), 0, state), Retry)
    refused = decide(RecoverySpec(max_restarts=1, non_retryable_exit_codes=[137]), 0, state)
    assert isinstance(refused, GiveUp)
    assert refused.reason == Reason.NON_RETRYABLE_EXIT_CODE
    killed = [{"name": "c0", "state": {"terminated": {"exitCode": 137, "reason": "Error"}}}]
    assert classify_pod(_pod("Failed", containerStatuses=killed)).reason == Reason.EXIT_CODE


def test_running_pending_succeeded() -> None:
    assert classify_pod(_pod("Running")).kind == "running"
    assert classify_pod(_pod("Pending")).kind == "pending"
    assert classify_pod(_pod("Succeeded")).kind == "succeeded"


def test_exit_code_picks_first_nonzero() -> None:
    state = classify_pod(_pod("Failed", containerStatuses=_terminated(0, 3, 4)))
    assert (state.kind, state.reason, state.exit_code) == ("failed", Reason.EXIT_CODE, 3)


def test_evicted() -> None:
    state = classify_pod(_pod("Failed", reason="Evicted", message="low on memory"))
    assert state.reason == Reason.EVICTED
    assert "low on memory" in state.message
    disrupted = _pod(
        "Failed",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
    )
    assert classify_pod(disrupted).reason == Reason.EVICTED


def test_deleted_and_terminating() -> None:
    assert classify_pod(None).reason == Reason.POD_DELETED
    pod = _pod("Running")
    pod["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    assert classify_pod(pod).reason == Reason.POD_DELETED


def test_exit_code_0_of_a_pod_someone_else_stopped_is_not_a_success() -> None:
    """A workload that handles SIGTERM exits 0 when its pod is deleted or evicted: stopped, not done."""
    deleted = _pod("Succeeded", containerStatuses=_terminated(0))
    deleted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    state = classify_pod(deleted)
    assert (state.kind, state.reason, state.exit_code) == ("failed", Reason.POD_DELETED, 0)
    assert "deleted by someone else" in state.message
    assert "exit code 0" in state.message
    evicted = _pod(
        "Succeeded",
        containerStatuses=_terminated(0),
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "EvictionByEvictionAPI"}],
    )
    evicted["metadata"]["deletionTimestamp"] = "2026-01-01T00:00:00Z"
    state = classify_pod(evicted)
    assert (state.kind, state.reason, state.exit_code) == ("failed", Reason.EVICTED, 0)
    assert "evicted" in state.message
    assert "exit code 0" in state.message
    drained = _pod(
        "Succeeded",
        conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByTaintManager"}],
    )
    assert classify_pod(drained).reason == Reason.NODE_LOST
    assert isinstance(decide(RecoverySpec(max_restarts=1), 0, state), Retry)
    undisturbed = _pod("Succeeded", conditions=[{"type": "DisruptionTarget", "status": "False"}])
    assert classify_pod(undisturbed).kind == "succeeded"


def test_node_lost() -> None:
    assert classify_pod(_pod("Running"), node_gone=True).reason == Reason.NODE_LOST
    gc = _pod(
        "Failed", conditions=[{"type": "DisruptionTarget", "status": "True", "reason": "DeletionByPodGC"}]
    )
    assert classify_pod(gc).reason == Reason.NODE_LOST


def test_backoff_is_exponential_and_capped() -> None:
    spec = RecoverySpec(backoff_seconds=2, max_backoff_seconds=10)
    assert [backoff_seconds(spec, n) for n in range(5)] == [2, 4, 8, 10, 10]
    assert backoff_seconds(RecoverySpec(backoff_seconds=0, max_backoff_seconds=0), 3) == 0
    assert backoff_seconds(RecoverySpec(backoff_seconds=1, max_backoff_seconds=60), 10_000) == 60


def test_decide_terminal_reasons() -> None:
    spec = RecoverySpec(max_restarts=2, backoff_seconds=1, non_retryable_exit_codes=[42])
    failed = classify_pod(_pod("Failed", containerStatuses=_terminated(42)))
    outcome = decide(spec, 0, failed)
    assert isinstance(outcome, GiveUp)
    assert outcome.reason == Reason.NON_RETRYABLE_EXIT_CODE
    other = classify_pod(_pod("Failed", containerStatuses=_terminated(1)))
    assert decide(spec, 1, other) == Retry(2.0)
    limit = decide(spec, 2, other)
    assert isinstance(limit, GiveUp)
    assert limit.reason == Reason.BACKOFF_LIMIT_EXCEEDED
    # a non-retryable code only matters for exit codes, not for evictions
    evicted = classify_pod(_pod("Failed", reason="Evicted", containerStatuses=_terminated(42)))
    assert isinstance(decide(spec, 0, evicted), Retry)


@pytest.mark.parametrize("restarts", [0, 1])
def test_max_restarts_zero_never_retries(restarts: int) -> None:
    outcome = decide(RecoverySpec(max_restarts=0), restarts, classify_pod(None))
    assert isinstance(outcome, GiveUp)
