"""The Execution resource: one long-running workload run as a pod, recreated from its last checkpoint.

The pydantic models are the single source of the CRD schema (``crds.py`` generates ``crds/``) and of the
operator's parsing of what the API server hands it.
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Annotated, Any, ClassVar, Literal

from pydantic import Field, field_validator, model_validator

from stratarouter_runtime.operator.resources.base import (
    DNS_LABEL,
    DNS_SUBDOMAIN,
    EXECUTIONS,
    LABEL_VALUE_MAX,
    CamelModel,
    CrdInfo,
    PrinterColumn,
    Resource,
)
from stratarouter_runtime.operator.resources.conditions import Condition


# No docstring on Phase: pydantic would copy it into the CRD as the description of status.phase.
class Phase(StrEnum):
    PENDING = "Pending"
    RUNNING = "Running"
    RECOVERING = "Recovering"
    SUCCEEDED = "Succeeded"
    FAILED = "Failed"
    SUSPENDED = "Suspended"


TERMINAL_PHASES: frozenset[Phase] = frozenset({Phase.SUCCEEDED, Phase.FAILED})

ExitCode = Annotated[int, Field(ge=1, le=255)]


class Container(CamelModel):
    """A container of the pod template; only the fields the operator checks are declared."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    name: str = Field(
        min_length=1, max_length=LABEL_VALUE_MAX, pattern=DNS_LABEL, description="Container name."
    )
    image: str = Field(min_length=1, description="Container image.")


class PodSpecTemplate(CamelModel):
    """``template.spec``: a core/v1 PodSpec; fields beyond these are passed through untouched."""

    model_config = CamelModel.model_config | {"extra": "allow"}

    containers: list[Container] = Field(
        min_length=1,
        max_length=64,
        description="The workload's containers (at least one). Every container gets the pod contract env.",
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["name"]},
    )
    restart_policy: Literal["Never"] | None = Field(
        default=None,
        description="Always Never: the operator itself restarts a failed pod from the last checkpoint.",
    )


class PodTemplate(CamelModel):
    """A core/v1 PodTemplateSpec."""

    metadata: dict[str, Any] | None = Field(
        default=None, description="Labels and annotations copied onto every attempt's pod."
    )
    spec: PodSpecTemplate


class CheckpointSpec(CamelModel):
    """How the workload's SDK checkpoints (interval and compression reach it through the pod's
    environment) and how many checkpoints the store keeps."""

    interval: int | None = Field(
        default=None,
        ge=1,
        le=86400,
        description="Every N-th save() of the workload's SDK also writes a history checkpoint "
        "(STRATA_CHECKPOINT_INTERVAL; the SDK's default is 10).",
    )
    retention: int | None = Field(
        default=None,
        ge=1,
        le=1_000_000,
        description="Keep the last N checkpoints in the store (default: the operator-wide default).",
    )
    compression: Literal["none", "zstd"] | None = Field(
        default=None,
        description="zstd: the store compresses this Execution's large states "
        "(STRATA_ENABLE_COMPRESSION in the pod; default: the store's setting).",
    )


class RecoverySpec(CamelModel):
    """When and how fast a failed attempt is replaced."""

    max_restarts: int = Field(
        default=3, ge=0, le=1000, description="Recoveries allowed before Failed/BackoffLimitExceeded."
    )
    backoff_seconds: int = Field(
        default=10, ge=0, le=3600, description="Wait before the first recovery; doubles each restart."
    )
    max_backoff_seconds: int = Field(default=300, ge=0, le=86400, description="Cap of the doubling wait.")
    non_retryable_exit_codes: list[ExitCode] = Field(
        default_factory=list,
        max_length=64,
        description="Exit codes that mean the workload cannot succeed: Failed/NonRetryableExitCode at once.",
        json_schema_extra={"x-kubernetes-list-type": "set"},
    )
    keep_failed_pods: int = Field(
        default=3,
        ge=0,
        le=100,
        description="Keep the pods of this many most recent replaced attempts once their containers have "
        "exited (phase Failed or Succeeded), so their logs, exit codes and events stay readable "
        "(kubectl logs <name>-a<n>); older ones are deleted when the next attempt starts. 0 deletes each "
        "one when it is replaced. A pod that still runs, is being deleted or whose node is gone is never "
        "kept: it is deleted and the next attempt waits until it is gone or has terminated. Kept pods are "
        "garbage-collected with the Execution (they name it as their owner).",
    )
    on_corrupt: Literal["Raise", "Previous"] = Field(
        default="Raise",
        description="A current state that fails its sha256 when the pod loads it: Raise (the load fails "
        "with CorruptCheckpoint), or Previous: the newest checkpoint that verifies becomes the current "
        "state and the pod resumes after it, with a CorruptCheckpointSkipped Warning Event "
        "(STRATA_ON_CORRUPT in the pod).",
    )


class RetentionSpec(CamelModel):
    """What happens after the execution finished."""

    ttl_seconds_after_finished: int | None = Field(
        default=None,
        ge=0,
        le=31_536_000,
        description="Delete the Execution this long after it finished (default: the operator-wide default).",
    )
    keep_history: bool = Field(
        default=False,
        description="Keep the stored checkpoints and history when the Execution is deleted.",
    )


class RestoreFrom(CamelModel):
    """A declarative restore: set (or change) the snapshot name to restore it once."""

    snapshot: str = Field(
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="Name of a Snapshot of this execution.",
    )


class StartFrom(CamelModel):
    """Where a new run starts (a fork): a Snapshot, or a checkpoint of another Execution, both in this
    namespace. Read once, at the first start; immutable (a CEL rule on spec)."""

    snapshot: str | None = Field(
        default=None,
        min_length=1,
        max_length=253,
        pattern=DNS_SUBDOMAIN,
        description="A Snapshot: the run starts from its stored copy (kept when the checkpoint is pruned).",
    )
    execution: str | None = Field(
        default=None,
        min_length=1,
        max_length=LABEL_VALUE_MAX,
        pattern=DNS_SUBDOMAIN,
        description="Another Execution: the run starts from its checkpoint at step.",
    )
    step: int | None = Field(
        default=None,
        ge=0,
        description="The checkpoint of execution to start from (default: its newest when this run starts).",
    )

    @model_validator(mode="after")
    def _one_source(self) -> StartFrom:
        if (self.snapshot is None) == (self.execution is None):
            raise ValueError(ONE_SOURCE)
        if self.step is not None and self.execution is None:
            raise ValueError(STEP_NEEDS_EXECUTION)
        return self


ONE_SOURCE = "startFrom takes exactly one of snapshot and execution"
STEP_NEEDS_EXECUTION = "startFrom.step needs startFrom.execution"
START_FROM_IMMUTABLE = "spec.startFrom is immutable: apply a new Execution to fork again"


class ExecutionSpec(CamelModel):
    """The desired run."""

    template: PodTemplate = Field(description="The pod each attempt runs (a core/v1 PodTemplateSpec).")
    checkpoint: CheckpointSpec = Field(default_factory=CheckpointSpec, json_schema_extra={"default": {}})
    recovery: RecoverySpec = Field(
        default_factory=RecoverySpec,
        json_schema_extra={
            # the full default, not {}: the API server checks the CEL rule against the default as written
            "default": RecoverySpec().model_dump(by_alias=True, mode="json"),
            "x-kubernetes-validations": [
                {
                    "rule": "self.maxBackoffSeconds >= self.backoffSeconds",
                    "message": "recovery.maxBackoffSeconds must be >= recovery.backoffSeconds",
                }
            ],
        },
    )
    retention: RetentionSpec = Field(default_factory=RetentionSpec, json_schema_extra={"default": {}})
    restore_from: RestoreFrom | None = Field(
        default=None, description="Restore this snapshot (once per change of the field) and restart from it."
    )
    suspend: bool = Field(default=False, description="Delete the pod and keep the state; false resumes.")
    start_from: StartFrom | None = Field(
        default=None,
        description="Fork: the first pod starts from this state (STRATA_RESUME_STEP is its step) instead of "
        "from scratch; the source is only read.",
        json_schema_extra={
            "x-kubernetes-validations": [
                {"rule": "has(self.snapshot) != has(self.execution)", "message": ONE_SOURCE},
                {"rule": "!has(self.step) || has(self.execution)", "message": STEP_NEEDS_EXECUTION},
            ]
        },
    )

    @field_validator("recovery")
    @classmethod
    def _backoff_cap(cls, value: RecoverySpec) -> RecoverySpec:
        if value.max_backoff_seconds < value.backoff_seconds:
            raise ValueError("recovery.maxBackoffSeconds must be >= recovery.backoffSeconds")
        return value


class LastCheckpoint(CamelModel):
    """A summary of the store's last checkpoint (the store is the record; this may lag it, never lead
    it). The checkpoint API mirrors each checkpoint it accepted here, coalesced: at most one patch per
    STRATA_STATUS_PATCH_INTERVAL_SECONDS (1 s) per Execution, and STRATA_STATUS_PATCH_BUDGET (50) a
    second for all Executions, so it lags by about max(interval, Executions / budget) seconds (1,000
    Executions: about 20 s). Saves (no history entry) and checkpoints written straight to the store are
    not mirrored. When a failure is seen, a replacement is made or a snapshot is restored, the operator
    sets it from the store in the same patch, so it agrees with what the next attempt resumes from."""

    step: int = Field(ge=0, description="The checkpoint's step (the STEP column).")
    time: datetime | None = Field(default=None, description="When the store wrote the checkpoint.")
    size_bytes: int | None = Field(default=None, ge=0, description="Size of its state as JSON.")


class RecoveryStatus(CamelModel):
    """The last failure seen and the replacement made for it (a record, kept after the recovery)."""

    reason: str = Field(description="ExitCode, OOMKilled, Evicted, PodDeleted or NodeLost.")
    exit_code: int | None = None
    failed_pod: str | None = None
    failed_attempt: int | None = Field(default=None, ge=0)
    failed_at: datetime | None = Field(default=None, description="When the operator saw the failure.")
    backoff_seconds: float | None = Field(
        default=None, ge=0, description="Wait chosen before the replacement."
    )
    replaced_at: datetime | None = Field(default=None, description="When the replacement pod was created.")
    resume_step: int | None = Field(
        default=None,
        description="STRATA_RESUME_STEP of the replacement: the step of the run's newest durable write "
        "(save or checkpoint) once the failed attempt was fenced off (empty until the replacement is made).",
    )


class RestoredFrom(CamelModel):
    """The last restore done for spec.restoreFrom (a record, kept until the next restore)."""

    snapshot: str = Field(description="The Snapshot restored.")
    step: int | None = Field(default=None, description="Its step: where the run continued from.")
    time: datetime | None = Field(default=None, description="When the operator restored it.")


class StartedFrom(CamelModel):
    """Where this run started (spec.startFrom, resolved by the fork): a record, also in the store's audit
    trail as the run's forked event."""

    execution: str = Field(description="The Execution whose state the run started from.")
    step: int = Field(ge=0, description="The step it started from (its first pod's STRATA_RESUME_STEP).")
    snapshot: str | None = Field(default=None, description="The Snapshot it started from, if one.")
    time: datetime | None = Field(default=None, description="When the operator forked it.")


class ExecutionStatus(CamelModel):
    """What the operator observed; written only by the operator. The store holds the run's state and
    history; status summarises it. phase, attempt, podName, podUID and resumeStep are written by the
    Execution's reconcile pass as it acts (status names a pod only after the pod exists); lastCheckpoint
    is a coalesced mirror of the store that may lag it (see its description)."""

    phase: Phase | None = None
    reason: str | None = Field(default=None, description="Why the execution is in its phase.")
    message: str | None = None
    attempt: int = Field(default=0, ge=0, description="Current attempt number (1 = first pod).")
    restarts: int = Field(default=0, ge=0, description="Recoveries done so far.")
    pod_name: str | None = None
    pod_uid: str | None = Field(
        default=None,
        alias="podUID",
        description=(
            "uid of the current attempt's pod, recorded by the operator when it created the pod: the only "
            "pod the checkpoint API accepts for this Execution (a pod's name and labels are not proof)."
        ),
    )
    resume_step: int | None = Field(
        default=None,
        description="STRATA_RESUME_STEP given to the current pod: the step of the run's newest durable "
        "write, save or checkpoint (or the restored snapshot's), when the pod was created; empty on a "
        "first run.",
    )
    last_checkpoint: LastCheckpoint | None = None
    start_time: datetime | None = None
    completion_time: datetime | None = None
    observed_generation: int | None = None
    recovery: RecoveryStatus | None = None
    restored_from: RestoredFrom | None = None
    restore_from_observed: str | None = Field(
        default=None, description="spec.restoreFrom.snapshot as last acted on (empty when unset)."
    )
    started_from: StartedFrom | None = None
    conditions: list[Condition] = Field(
        default_factory=list,
        json_schema_extra={"x-kubernetes-list-type": "map", "x-kubernetes-list-map-keys": ["type"]},
    )


class Execution(Resource):
    """A long-running workload run as a pod, recreated from its last checkpoint when the pod fails."""

    crd: ClassVar[CrdInfo] = CrdInfo(
        kind="Execution",
        plural=EXECUTIONS,
        singular="execution",
        short_names=("exec",),
        printer_columns=(
            PrinterColumn("Phase", "string", ".status.phase", "Pending, Running, Recovering, ..."),
            PrinterColumn(
                "Step",
                "integer",
                ".status.lastCheckpoint.step",
                "Last durable checkpoint step (coalesced: may lag the store by the status patch budget)",
            ),
            PrinterColumn("Restarts", "integer", ".status.restarts", "Recoveries so far"),
            PrinterColumn("Pod", "string", ".status.podName", "Current attempt's pod"),
            PrinterColumn("Age", "date", ".metadata.creationTimestamp"),
            PrinterColumn("Attempt", "integer", ".status.attempt", priority=1),
            PrinterColumn("Reason", "string", ".status.reason", priority=1),
            PrinterColumn("Message", "string", ".status.message", priority=1),
        ),
        # The name is the value of its pods' stratarouter.io/execution label, and label values are at
        # most 63 characters: a longer name is refused at admission instead of failing every pod create.
        max_name_length=LABEL_VALUE_MAX,
    )

    spec: ExecutionSpec = Field(
        json_schema_extra={
            "x-kubernetes-validations": [
                {
                    "rule": "has(self.startFrom) == has(oldSelf.startFrom) && "
                    "(!has(self.startFrom) || self.startFrom == oldSelf.startFrom)",
                    "message": START_FROM_IMMUTABLE,
                }
            ]
        }
    )
    status: ExecutionStatus | None = None
