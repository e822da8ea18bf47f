"""pydantic models of the operator's custom resources (the single source of the CRDs in ``crds/``)."""

from stratarouter_runtime.operator.resources.base import API_VERSION, FINALIZER, GROUP, VERSION
from stratarouter_runtime.operator.resources.execution import Execution, ExecutionSpec, ExecutionStatus
from stratarouter_runtime.operator.resources.snapshot import Snapshot, SnapshotSpec, SnapshotStatus

__all__ = [
    "API_VERSION",
    "FINALIZER",
    "GROUP",
    "VERSION",
    "Execution",
    "ExecutionSpec",
    "ExecutionStatus",
    "Snapshot",
    "SnapshotSpec",
    "SnapshotStatus",
]
