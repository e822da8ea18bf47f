"""Typed records returned by :class:`~stratarouter_runtime.state.StateManager`.

They are plain, frozen pydantic models. Backends build them with ``model_construct`` from
trusted rows (no re-validation of large payloads on the read path).
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class ExecutionStatus(StrEnum):
    """Lifecycle of an execution. ``completed``, ``failed`` and ``cancelled`` are final."""

    PENDING = "pending"
    RUNNING = "running"
    RECOVERING = "recovering"
    COMPLETED = "completed"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_active(self) -> bool:
        return self in ACTIVE_STATUSES


FINAL_STATUSES = frozenset({ExecutionStatus.COMPLETED, ExecutionStatus.FAILED, ExecutionStatus.CANCELLED})
ACTIVE_STATUSES = frozenset({ExecutionStatus.PENDING, ExecutionStatus.RUNNING, ExecutionStatus.RECOVERING})


class _Model(BaseModel):
    model_config = ConfigDict(frozen=True)


class Execution(_Model):
    """One run: its status, progress and attempt (the fencing token)."""

    execution_id: str
    status: ExecutionStatus
    current_step: int | None = None
    """Step of the current state (the last ``save``/``checkpoint``), None before the first write."""
    last_checkpoint_step: int | None = None
    """Step of the last history checkpoint (``get_latest_checkpoint``)."""
    attempt: int = 1
    created_at: datetime
    updated_at: datetime
    finished_at: datetime | None = None
    error: str | None = None
    labels: dict[str, str] = Field(default_factory=dict)
    checkpoint_retention: int | None = None
    """Per-execution override of the manager's ``checkpoint_retention`` (None: manager default)."""

    @property
    def resume_step(self) -> int | None:
        """The step a resumed run continues after: its newest durable write's, save or checkpoint,
        which is the state ``load()`` returns (so the two never disagree). None: start from scratch.
        The operator hands it to a replacement pod as ``STRATA_RESUME_STEP``."""
        return self.current_step


class Checkpoint(_Model):
    """A history entry: the state as it was at ``step``."""

    execution_id: str
    step: int
    state_data: Any
    timestamp: datetime
    attempt: int
    size_bytes: int
    """Size of the state as JSON, before compression."""


class Snapshot(_Model):
    """A named copy of an execution's state; it outlives checkpoint retention."""

    name: str
    execution_id: str
    step: int
    size_bytes: int
    created_at: datetime


class AuditEvent(_Model):
    """One row of the audit trail (kept even after retention prunes the checkpoint's state)."""

    execution_id: str
    seq: int
    kind: str
    """checkpoint, started, completed, failed, cancelled, recovering, snapshot, restore, snapshot_deleted."""
    step: int | None
    attempt: int | None
    at: datetime
    size_bytes: int | None = None
    hash: str | None = None
    """sha256 (hex) of the checkpoint's JSON, for ``checkpoint`` and ``restore`` events."""
    detail: dict[str, Any] = Field(default_factory=dict)


class Metrics(_Model):
    """Store-wide numbers; ``avg_checkpoint_ms`` is measured by this StateManager since it started."""

    total_executions: int
    active_executions: int
    total_checkpoints: int
    """History checkpoints ever written for the executions still stored."""
    storage_mb: float
    avg_checkpoint_ms: float
