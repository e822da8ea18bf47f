"""What one reconcile pass writes about its Execution: the typed status in one patch, Events, a terminal
failure (also in the store)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from stratarouter_runtime.operator import metrics
from stratarouter_runtime.operator.context import CheckpointMirror, Lifecycle
from stratarouter_runtime.operator.events import EventType, post_event
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.resources.conditions import (
    ConditionStatus,
    ConditionType,
    Reason,
    now_utc,
    with_condition,
)
from stratarouter_runtime.operator.resources.execution import ExecutionStatus, LastCheckpoint, Phase
from stratarouter_runtime.state.errors import StateError

if TYPE_CHECKING:
    from stratarouter_runtime.state.models import Checkpoint

log = logging.getLogger(__name__)


def wire(status: ExecutionStatus) -> dict[str, Any]:
    """``status`` as the API server holds it: camelCase, every field (None for an absent one)."""
    return status.model_dump(by_alias=True, mode="json")


def readable(exc: ValidationError) -> str:
    """A pydantic error as one line naming the spec fields."""
    parts = []
    for err in exc.errors():
        where = ".".join(str(p) for p in err["loc"])
        parts.append(f"spec.{where}: {err['msg']}")
    return "; ".join(parts)


class PassRecord:
    """What one reconcile pass writes about its Execution: the typed status, sent in ONE patch by
    :meth:`flush` (only what changed), its Events, and a terminal failure."""

    def __init__(self, lc: Lifecycle, obj: dict[str, Any], mirror: CheckpointMirror | None = None) -> None:
        self.lc = lc
        self.mirror = mirror
        self.kube = lc.kube
        self.store = lc.store
        self.obj = obj
        meta = obj["metadata"]
        self.namespace: str = meta["namespace"]
        self.name: str = meta["name"]
        self.uid: str = meta["uid"]
        self.generation: int | None = meta.get("generation")
        self.id = execution_id(self.namespace, self.name)
        self.status = ExecutionStatus.model_validate(obj.get("status") or {})
        self.sent = wire(self.status)
        """The status as the API server has it (the last patch's fields included)."""
        self.checkpoint_rewritten = False
        lc.track_phase(self.namespace, self.name, self.status.phase)

    def cond(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str = "") -> None:
        self.status.conditions = with_condition(
            self.status.conditions, type_, status, reason, message, generation=self.generation
        )

    def has_condition(self, type_: ConditionType) -> bool:
        return any(cond.type == type_ for cond in self.status.conditions)

    async def flush(self) -> None:
        """Merge-patch the status fields the pass changed (None deletes) and observedGeneration; no patch
        when nothing changed. A ``lastCheckpoint`` the pass set from the store is always sent, and the
        checkpoint API's mirror told, so no pending checkpoint of an older attempt lands after it."""
        self.status.observed_generation = self.generation
        now = wire(self.status)
        changed = {key: value for key, value in now.items() if value != self.sent.get(key)}
        if self.checkpoint_rewritten:
            changed["lastCheckpoint"] = now["lastCheckpoint"]
        if not changed:
            return
        before = self.sent["phase"]
        self.obj = await self.kube.patch_execution_status(self.namespace, self.name, changed)
        metrics.note_phase(before, self.obj.get("status") or {})  # stratarouter_executions_finished_total
        self.sent = now
        self.lc.track_phase(self.namespace, self.name, self.status.phase)
        if self.checkpoint_rewritten and self.mirror is not None:
            self.mirror.rewound(self.namespace, self.name, self.status.attempt)
        self.checkpoint_rewritten = False

    def rewrite_checkpoint(self, checkpoint: Checkpoint) -> None:
        """``status.lastCheckpoint`` from the store (the coalescer's shape: time to the second)."""
        self.status.last_checkpoint = LastCheckpoint(
            step=checkpoint.step,
            time=checkpoint.timestamp.replace(microsecond=0),
            size_bytes=checkpoint.size_bytes,
        )
        self.checkpoint_rewritten = True

    def event(self, reason: str, message: str, type_: EventType = "Normal") -> None:
        self.lc.spawn(post_event(self.kube, self.obj, reason, message, type_))

    async def give_up(self, reason: Reason, message: str) -> None:
        """Terminal failure: Failed with ``reason``, patched at once and only then recorded in the store
        (a crash in between repeats the give-up, never starts a run the store calls failed)."""
        status = self.status
        self.cond(ConditionType.FAILED, "True", reason, message)
        self.cond(ConditionType.RUNNING, "False", Reason.FINISHED, "the execution failed")
        if self.has_condition(ConditionType.RECOVERING):
            self.cond(ConditionType.RECOVERING, "False", reason, message)
        status.phase, status.reason, status.message = Phase.FAILED, reason, message
        status.completion_time = now_utc()
        await self.flush()
        try:
            await self.store.fail(self.id, f"{reason}: {message}", attempt=status.attempt or None)
        except StateError as exc:  # never started in the store (invalid spec), or already final
            log.debug("store fail(%s): %s", self.id, exc)
        self.event(reason, message, "Warning")

    async def refuse(self, exc: ValidationError) -> None:
        """An invalid spec: Failed/InvalidSpec once. Nothing is retried; a spec change starts a new pass."""
        if self.status.phase != Phase.FAILED:
            await self.give_up(Reason.INVALID_SPEC, f"invalid spec: {readable(exc)}")
        await self.flush()
