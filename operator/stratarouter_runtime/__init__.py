"""StrataRouter Runtime: keep the execution state of long-running workloads safe.

The SDK's entry point is :class:`StateManager`; the Kubernetes operator lives in
``stratarouter_runtime.operator`` and needs the ``[operator]`` extra.
"""

from stratarouter_runtime.state import (
    AuditEvent,
    Checkpoint,
    CheckpointNotFound,
    CorruptCheckpointError,
    Execution,
    ExecutionGoneError,
    ExecutionNotFound,
    ExecutionStatus,
    InvalidArgumentError,
    InvalidStateError,
    Metrics,
    SchemaTooNewError,
    SchemaVersionError,
    Snapshot,
    SnapshotNotFound,
    StaleAttemptError,
    StateError,
    StateManager,
    StateTooLargeError,
    StoreUnavailableError,
    Transaction,
    WorkerIdInUseError,
)

__all__ = [
    "AuditEvent",
    "Checkpoint",
    "CheckpointNotFound",
    "CorruptCheckpointError",
    "Execution",
    "ExecutionGoneError",
    "ExecutionNotFound",
    "ExecutionStatus",
    "InvalidArgumentError",
    "InvalidStateError",
    "Metrics",
    "SchemaTooNewError",
    "SchemaVersionError",
    "Snapshot",
    "SnapshotNotFound",
    "StaleAttemptError",
    "StateError",
    "StateManager",
    "StateTooLargeError",
    "StoreUnavailableError",
    "Transaction",
    "WorkerIdInUseError",
]
