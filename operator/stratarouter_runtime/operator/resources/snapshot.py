"""The Snapshot resource: a named, immutable copy of an execution's checkpoint (handled by operator-api)."""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar, Literal

from pydantic import Field

from stratarouter_runtime.operator.resources.base import (
    DNS_SUBDOMAIN,
    SNAPSHOTS,
    CamelModel,
    CrdInfo,
    PrinterColumn,
    Resource,
)
from stratarouter_runtime.operator.resources.conditions import Condition

SnapshotPhase = Literal["Pending", "Ready", "Failed"]


class SnapshotSpec(CamelModel):
    """Which checkpoint to copy; immutable once created."""

    execution_name: str = Field(
        min_length=1, max_length=253, pattern=DNS_SUBDOMAIN, description="Execution in the same namespace."
    )
    step: int | None = Field(default=None, ge=0, description="Checkpoint step (default: the latest).")
    deletion_policy: Literal["Delete", "Retain"] = Field(
        default="Delete", description="Delete removes the stored snapshot with the resource; Retain keeps it."
    )


class SnapshotStatus(CamelModel):
    """What the operator stored."""

    phase: SnapshotPhase | None = None
    step: int | None = None
    size_bytes: int | None = Field(default=None, ge=0)
    created_at: datetime | None = None
    message: str | None = None
    observed_generation: int | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class Snapshot(Resource):
    """A named, immutable copy of an Execution's checkpoint; outlives checkpoint retention."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Snapshot",
        plural=SNAPSHOTS,
        singular="snapshot",
        short_names=("esnap",),
        printer_columns=(
            PrinterColumn("Execution", "string", ".spec.executionName"),
            PrinterColumn("Step", "integer", ".status.step"),
            PrinterColumn("Phase", "string", ".status.phase"),
            PrinterColumn("Size", "integer", ".status.sizeBytes", "Stored size in bytes"),
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
            PrinterColumn("Policy", "string", ".spec.deletionPolicy", priority=1),
        ),
    )

    spec: SnapshotSpec = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "self == oldSelf", "message": "Snapshot spec is immutable: create a new Snapshot"}
            ]
        }
    )
    status: SnapshotStatus | None = None
