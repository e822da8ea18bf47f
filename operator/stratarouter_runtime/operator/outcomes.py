"""What an attempt's pod says about the run, and what to do about a failure (pure, no I/O).

Kept apart from the handlers so every cause and every terminal reason is unit-tested without a cluster.
"""

from __future__ import annotations

import dataclasses
from typing import Any, Literal

from stratarouter_runtime.operator.resources.conditions import Reason
from stratarouter_runtime.operator.resources.execution import RecoverySpec

PodKind = Literal["pending", "running", "succeeded", "failed"]
_EVICTION_REASONS = {"EvictionByEvictionAPI", "PreemptionByScheduler", "TerminationByKubelet"}
_NODE_REASONS = {"DeletionByPodGC", "DeletionByTaintManager"}


@dataclasses.dataclass(frozen=True)
class PodState:
    """The attempt's pod, reduced to what the lifecycle needs."""

    kind: PodKind
    reason: Reason | None = None
    exit_code: int | None = None
    message: str = ""


@dataclasses.dataclass(frozen=True)
class Retry:
    """Replace the attempt after ``backoff_seconds``."""

    backoff_seconds: float


@dataclasses.dataclass(frozen=True)
class GiveUp:
    """Stop: the execution ends Failed with ``reason``."""

    reason: Reason
    message: str


def _termination(pod: dict[str, Any]) -> dict[str, Any] | None:
    """The terminated state of the first container that failed (in spec order), else of the first that
    ended: its ``exitCode`` and the kubelet's ``reason`` (``OOMKilled``, ``Error``, ...)."""
    statuses = (pod.get("status") or {}).get("containerStatuses") or []
    ended: list[dict[str, Any]] = []
    for status in statuses:
        terminated = (status.get("state") or {}).get("terminated") or (status.get("lastState") or {}).get(
            "terminated"
        )
        if terminated and terminated.get("exitCode") is not None:
            ended.append(terminated)
    failed = [t for t in ended if int(t["exitCode"]) != 0]
    candidates = failed or ended
    return candidates[0] if candidates else None


def _exit_code(pod: dict[str, Any]) -> int | None:
    terminated = _termination(pod)
    return None if terminated is None else int(terminated["exitCode"])


def _disruption(pod: dict[str, Any]) -> str | None:
    for cond in (pod.get("status") or {}).get("conditions") or []:
        if cond.get("type") == "DisruptionTarget" and cond.get("status") == "True":
            return str(cond.get("reason") or "")
    return None


def classify_pod(pod: dict[str, Any] | None, *, node_gone: bool = False) -> PodState:
    """Reduce the current attempt's pod (None = it no longer exists) to a :class:`PodState`.

    Exit code 0 is a success only for a pod nobody stopped: a workload that handles SIGTERM exits 0
    when someone else deletes or evicts its pod (the operator never classifies pods it stopped
    itself), and that is a run stopped before its end, recovered like any other deletion or eviction.
    """
    if pod is None:
        return PodState("failed", Reason.POD_DELETED, message="the pod no longer exists")
    meta = pod.get("metadata") or {}
    name = meta.get("name", "?")
    status = pod.get("status") or {}
    phase = status.get("phase")
    disruption = _disruption(pod)
    deleted = bool(meta.get("deletionTimestamp"))
    if phase == "Succeeded" and not (deleted or disruption is not None):
        return PodState("succeeded", exit_code=0)
    stopped = phase == "Succeeded"  # exited 0 on the SIGTERM of a deletion or an eviction
    if node_gone or status.get("reason") == "NodeLost" or disruption in _NODE_REASONS:
        node = (pod.get("spec") or {}).get("nodeName")
        return PodState("failed", Reason.NODE_LOST, message=f"node {node} of pod {name} is gone")
    evicted = status.get("reason") == "Evicted" or disruption in _EVICTION_REASONS
    if (phase == "Failed" or stopped) and evicted:
        detail = status.get("message") or disruption or "evicted"
        ended = "; it stopped cleanly (exit code 0) before the end" if stopped else ""
        return PodState("failed", Reason.EVICTED, _exit_code(pod), f"pod {name} was evicted: {detail}{ended}")
    if phase == "Failed":
        terminated = _termination(pod) or {}
        code = None if terminated.get("exitCode") is None else int(terminated["exitCode"])
        if terminated.get("reason") == "OOMKilled":
            message = f"pod {name} was OOM-killed (exit code {code}): a container overran its memory limit"
            return PodState("failed", Reason.OOM_KILLED, code, message)
        return PodState("failed", Reason.EXIT_CODE, code, f"pod {name} failed with exit code {code}")
    if stopped:
        return PodState(
            "failed",
            Reason.POD_DELETED,
            0,
            f"pod {name} was deleted by someone else; it stopped cleanly (exit code 0) before the end",
        )
    if deleted:
        return PodState("failed", Reason.POD_DELETED, message=f"pod {name} was deleted by someone else")
    if phase == "Running":
        return PodState("running")
    return PodState("pending")


def backoff_seconds(recovery: RecoverySpec, restarts: int) -> float:
    """Exponential, capped: ``backoffSeconds * 2**restarts``, at most ``maxBackoffSeconds``."""
    if recovery.backoff_seconds == 0:
        return 0.0
    exponent = min(restarts, 32)
    return float(min(recovery.backoff_seconds * (2**exponent), recovery.max_backoff_seconds))


def decide(recovery: RecoverySpec, restarts: int, state: PodState) -> Retry | GiveUp:
    """Retry the failed attempt, or give up with the terminal reason."""
    exited = state.reason in (Reason.EXIT_CODE, Reason.OOM_KILLED)
    if exited and state.exit_code in recovery.non_retryable_exit_codes:
        return GiveUp(
            Reason.NON_RETRYABLE_EXIT_CODE,
            f"{state.message}; exit code {state.exit_code} is listed in recovery.nonRetryableExitCodes",
        )
    if restarts >= recovery.max_restarts:
        return GiveUp(
            Reason.BACKOFF_LIMIT_EXCEEDED,
            f"{state.message}; recovery.maxRestarts ({recovery.max_restarts}) reached",
        )
    return Retry(backoff_seconds(recovery, restarts))
