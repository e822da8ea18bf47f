"""The StrataRouter state SDK: :class:`StateManager` and its records and errors."""

from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    CorruptCheckpointError,
    ExecutionGoneError,
    ExecutionNotFound,
    InvalidArgumentError,
    InvalidStateError,
    SchemaTooNewError,
    SchemaVersionError,
    SnapshotNotFound,
    StaleAttemptError,
    StateError,
    StateTooLargeError,
    StoreUnavailableError,
    WorkerIdInUseError,
)
from stratarouter_runtime.state.manager import StateManager
from stratarouter_runtime.state.models import (
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Metrics,
    Snapshot,
)
from stratarouter_runtime.state.transaction import Transaction

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
