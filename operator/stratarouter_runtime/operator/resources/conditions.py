"""Conditions in the ``metav1.Condition`` shape, with a fixed vocabulary of types and reasons.

``with_condition`` is the only way conditions change: it moves ``lastTransitionTime`` only when the status
flips (so ``kubectl wait`` and dashboards see real transitions) and always records ``observedGeneration``.
"""

from __future__ import annotations

from collections.abc import Sequence
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
    FORKED = "Forked"
    """True once the run started from ``spec.startFrom``; False while its source is missing (or why not)."""


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
    SNAPSHOT_NOT_FOUND = "SnapshotNotFound"
    """spec.restoreFrom names a snapshot the store does not have (yet)."""
    # Snapshots (conditions and Events)
    SNAPSHOT_STORED = "SnapshotStored"
    SNAPSHOT_CREATED = "SnapshotCreated"
    SNAPSHOT_DELETED = "SnapshotDeleted"
    SNAPSHOT_FAILED = "SnapshotFailed"
    WAITING_FOR_CHECKPOINT = "WaitingForCheckpoint"
    NO_CHECKPOINT = "NoCheckpoint"
    """A Snapshot waited for a checkpoint as long as it may and none came."""
    # forks (spec.startFrom)
    FORKED = "Forked"
    FORK_SOURCE_NOT_FOUND = "ForkSourceNotFound"
    """The source Execution or Snapshot is not there (yet), or has not reached the step (yet)."""
    FORK_CHECKPOINT_NOT_FOUND = "ForkCheckpointNotFound"
    """The source has no checkpoint at the step: never written, or pruned by retention (terminal)."""
    START_FROM_IMMUTABLE = "StartFromImmutable"
    """spec.startFrom changed after the run started: not acted on."""


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


def with_condition(
    conditions: Sequence[Condition],
    type_: str,
    status: ConditionStatus,
    reason: str,
    message: str,
    *,
    generation: int | None,
    now: datetime | None = None,
) -> list[Condition]:
    """A new conditions list with ``type_`` set (appended if new); other types keep their order and values."""
    at = now or now_utc()
    result: list[Condition] = []
    found = False
    for cond in conditions:
        if cond.type != type_:
            result.append(cond)
            continue
        found = True
        transition = cond.last_transition_time if cond.status == status else at
        result.append(_condition(type_, status, reason, message, generation, transition))
    if not found:
        result.append(_condition(type_, status, reason, message, generation, at))
    return result


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
    """:func:`with_condition` on conditions as the API server sends them (camelCase dicts)."""
    typed = [Condition.model_validate(cond) for cond in conditions]
    updated = with_condition(typed, type_, status, reason, message, generation=generation, now=now)
    return [cond.model_dump(by_alias=True, mode="json", exclude_none=True) for cond in updated]


def _condition(
    type_: str, status: ConditionStatus, reason: str, message: str, generation: int | None, at: datetime
) -> Condition:
    return Condition(
        type=type_,
        status=status,
        observed_generation=generation,
        last_transition_time=at,
        reason=reason,
        message=message,
    )
