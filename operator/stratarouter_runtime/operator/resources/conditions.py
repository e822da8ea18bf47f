"""Conditions in the ``metav1.Condition`` shape, with a fixed vocabulary of types and reasons.

``set_condition`` is the only way conditions change: it moves ``lastTransitionTime`` only when the status
flips (so ``kubectl wait`` and dashboards see real transitions) and always records ``observedGeneration``.
"""

from __future__ import annotations

from datetime import UTC, datetime
from enum import StrEnum
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field
from pydantic.alias_generators import to_camel

ConditionStatus = Literal["True", "False", "Unknown"]


class ConditionType(StrEnum):
    """Condition types on an Execution (Snapshots use ``Ready`` and ``Failed``)."""

    RUNNING = "Running"
    """True while the current attempt's pod runs; False with the reason why it does not."""
    RECOVERING = "Recovering"
    """True from the moment a failed attempt is seen until its replacement runs; reason = failure cause."""
    SUSPENDED = "Suspended"
    """True while ``spec.suspend`` holds the execution with no pod; state is kept."""
    COMPLETE = "Complete"
    """True once the workload exited 0 (terminal)."""
    FAILED = "Failed"
    """True once the execution will not be retried (terminal); reason says why."""
    RESTORED = "Restored"
    """True after ``spec.restoreFrom.snapshot`` was restored; message names the snapshot and step."""
    READY = "Ready"
    """Snapshots: True once the snapshot is stored."""


class Reason(StrEnum):
    """Reasons used on conditions and Kubernetes Events (CamelCase, as metav1.Condition requires)."""

    POD_PENDING = "PodPending"
    POD_RUNNING = "PodRunning"
    SUSPENDED = "Suspended"
    RESUMED = "Resumed"
    FINISHED = "Finished"
    SUCCEEDED = "Succeeded"
    # failure causes (Recovering reasons)
    EXIT_CODE = "ExitCode"
    OOM_KILLED = "OOMKilled"
    EVICTED = "Evicted"
    POD_DELETED = "PodDeleted"
    NODE_LOST = "NodeLost"
    RECOVERED = "Recovered"
    FOREIGN_POD = "ForeignPod"
    """A pod with the attempt's name that the operator did not create (its uid is not status.podUID)."""
    # terminal failure reasons
    BACKOFF_LIMIT_EXCEEDED = "BackoffLimitExceeded"
    NON_RETRYABLE_EXIT_CODE = "NonRetryableExitCode"
    INVALID_TEMPLATE = "InvalidTemplate"
    INVALID_SPEC = "InvalidSpec"
    # restore
    SNAPSHOT_RESTORED = "SnapshotRestored"


class Condition(BaseModel):
    """One ``metav1.Condition``."""

    model_config = ConfigDict(alias_generator=to_camel, populate_by_name=True, extra="ignore")

    type: str = Field(
        min_length=1, max_length=316, description="Condition type, e.g. Running, Recovering, Failed."
    )
    status: ConditionStatus
    observed_generation: int | None = Field(
        default=None, ge=0, description="metadata.generation the condition was set for."
    )
    last_transition_time: datetime = Field(description="When status last changed.")
    reason: str = Field(
        min_length=1,
        max_length=1024,
        pattern=r"^[A-Za-z]([A-Za-z0-9_,:]*[A-Za-z0-9_])?$",
        description="CamelCase reason for the last transition.",
    )
    message: str = Field(default="", max_length=32768, description="Human-readable details.")


def now_utc() -> datetime:
    """The current time in UTC with second precision (what the API server stores for date-time fields)."""
    return datetime.now(UTC).replace(microsecond=0)


def format_time(at: datetime) -> str:
    """RFC 3339 with a ``Z`` suffix, as Kubernetes writes it."""
    return at.astimezone(UTC).isoformat().replace("+00:00", "Z")


def set_condition(
    conditions: list[dict[str, Any]],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime | None = None,
) -> list[dict[str, Any]]:
    """Return a new conditions list with ``type_`` set; other types keep their order and values."""
    at = format_time(now or now_utc())
    result: list[dict[str, Any]] = []
    found = False
    for cond in conditions:
        if cond.get("type") != type_:
            result.append(dict(cond))
            continue
        found = True
        transition = cond.get("lastTransitionTime") if cond.get("status") == status else at
        result.append(_condition(type_, status, reason, message, generation, transition or at))
    if not found:
        result.append(_condition(type_, status, reason, message, generation, at))
    return result


def _condition(
    type_: str, status: str, reason: str, message: str, generation: int | None, at: str
) -> dict[str, Any]:
    cond: dict[str, Any] = {"type": type_, "status": status}
    if generation is not None:
        cond["observedGeneration"] = generation
    cond.update({"lastTransitionTime": at, "reason": reason, "message": message})
    return cond
