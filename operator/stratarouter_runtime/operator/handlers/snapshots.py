"""Snapshot resources: a declarative, named copy of an Execution's checkpoint in the store.

Create: copy the Execution's latest state (or the history checkpoint at ``spec.step``) into a store
snapshot named after the Snapshot resource -> phase Ready with step, size and time; a Kubernetes
Event says so. The spec is immutable (a CEL rule), so there is no update handler.

When the copy cannot be made:

* the Execution resource does not exist, or the requested step is gone (never written or pruned by
  retention) -> phase Failed at once with a message saying which, no retry loop;
* the Execution exists but has no checkpoint yet (or not yet the requested step while it still
  runs) -> phase Pending with a message, retried every ``WAIT_DELAY_SECONDS`` up to
  ``WAIT_RETRIES`` times (about five minutes), then Failed. A Snapshot applied by GitOps together
  with its Execution is thereby taken once the run has something to copy.

Delete: with ``deletionPolicy: Delete`` (the default) a finalizer holds the resource until the
stored snapshot is deleted; ``Retain`` adds no finalizer and leaves the stored copy in place (the
SDK's ``restore_snapshot`` and ``list_snapshots`` still see it).
"""

from __future__ import annotations

from typing import Any

import kopf
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stratarouter_runtime.operator.events import EventType, post_event
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.resources.base import GROUP, SNAPSHOTS, VERSION
from stratarouter_runtime.operator.resources.conditions import (
    ConditionStatus,
    ConditionType,
    Reason,
    with_condition,
)
from stratarouter_runtime.operator.resources.snapshot import SnapshotPhase, SnapshotSpec, SnapshotStatus
from stratarouter_runtime.state import errors
from stratarouter_runtime.state.models import ExecutionStatus

WAIT_RETRIES = 30
WAIT_DELAY_SECONDS = 10.0


class SnapshotWaiting(Exception):
    """The Execution has nothing to copy yet."""


def _kube(memo: Any) -> Kube:
    """The operator's one wrapper over its one API client (memo.lifecycle)."""
    kube: Kube = memo.lifecycle.kube
    return kube


async def _event(
    memo: Any, body: kopf.Body, reason: Reason, message: str, type_: EventType = "Normal"
) -> None:
    """A Kubernetes Event on the Snapshot (posted directly: kopf's poster only forwards warnings)."""
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Snapshot",
        "metadata": dict(body.get("metadata") or {}),
    }
    await post_event(_kube(memo), obj, reason, message, type_)


def _deletion_policy(spec: Any, **_: Any) -> bool:
    return bool((spec or {}).get("deletionPolicy", "Delete") == "Delete")


async def _execution_exists(memo: Any, namespace: str, name: str) -> bool:
    try:
        return await _kube(memo).get_execution(namespace, name) is not None
    except ApiException as exc:
        raise kopf.TemporaryError(
            f"reading Execution {namespace}/{name} failed: {exc.reason}", delay=5
        ) from exc


def _status(body: Any, phase: SnapshotPhase, reason: Reason, message: str, **fields: Any) -> dict[str, Any]:
    """The status patch of a Snapshot in ``phase``: Ready is True only in phase Ready, and a Failed
    Snapshot also gets a Failed condition; ``fields`` are more ``SnapshotStatus`` fields."""
    generation = (body.get("metadata") or {}).get("generation")
    conditions = SnapshotStatus.model_validate(body.get("status") or {}).conditions
    ready: ConditionStatus = "True" if phase == "Ready" else "False"
    conditions = with_condition(
        conditions, ConditionType.READY, ready, reason, message, generation=generation
    )
    if phase == "Failed":
        conditions = with_condition(
            conditions, ConditionType.FAILED, "True", reason, message, generation=generation
        )
    status = SnapshotStatus(
        phase=phase, message=message, observed_generation=generation, conditions=conditions, **fields
    )
    return status.model_dump(by_alias=True, mode="json", exclude_unset=True)


def not_reached(execution: str, step: int, last: int | None) -> str:
    """The Pending message of a Snapshot of a step its running Execution has not checkpointed yet."""
    so_far = "no checkpoint yet" if last is None else f"its last checkpoint is step {last}"
    return f"Execution {execution} has not reached step {step} yet ({so_far}); waiting"


async def _copy(memo: Any, namespace: str, name: str, spec: SnapshotSpec) -> Any:
    """Make the store snapshot; raises SnapshotWaiting or a message-carrying PermanentError."""
    stored_id = execution_id(namespace, spec.execution_name)
    store = memo.store
    try:
        return await store.create_snapshot(stored_id, name, step=spec.step)
    except errors.ExecutionNotFound:
        if await _execution_exists(memo, namespace, spec.execution_name):
            raise SnapshotWaiting(
                f"Execution {spec.execution_name} has not stored a checkpoint yet; waiting"
            ) from None
        raise kopf.PermanentError(
            f"Execution {spec.execution_name} not found in namespace {namespace}"
        ) from None
    except errors.CheckpointNotFound:
        execution = await store.get_execution(stored_id)
        active = execution is not None and ExecutionStatus(execution.status).is_active
        last = execution.last_checkpoint_step if execution is not None else None
        if spec.step is None and active:
            raise SnapshotWaiting(f"Execution {spec.execution_name} has no checkpoint yet; waiting") from None
        if spec.step is not None and active and (last is None or spec.step > last):
            raise SnapshotWaiting(not_reached(spec.execution_name, spec.step, last)) from None
        what = "no checkpoint" if spec.step is None else f"no checkpoint at step {spec.step}"
        hint = "" if spec.step is None else " (never written, or pruned by checkpoint retention)"
        raise kopf.PermanentError(f"Execution {spec.execution_name} has {what}{hint}") from None


@kopf.on.create(GROUP, VERSION, SNAPSHOTS, retries=WAIT_RETRIES + 1, backoff=WAIT_DELAY_SECONDS)
async def create_snapshot(
    body: kopf.Body,
    spec: kopf.Spec,
    name: str,
    namespace: str | None,
    memo: Any,
    patch: kopf.Patch,
    retry: int,
    logger: Any,
    **_: Any,
) -> None:
    """Copy the checkpoint into the store and report Ready (or Pending/Failed with the reason)."""
    try:
        parsed = SnapshotSpec.model_validate(dict(spec))
    except ValidationError as exc:
        message = f"invalid Snapshot spec: {exc.errors()[0]['msg']}"
        patch.status.update(_status(body, "Failed", Reason.INVALID_SPEC, message))
        raise kopf.PermanentError(message) from exc
    try:
        snap = await _copy(memo, namespace or "", name, parsed)
    except SnapshotWaiting as exc:
        if retry >= WAIT_RETRIES:
            message = f"{exc} gave up after {retry} tries"
            patch.status.update(_status(body, "Failed", Reason.NO_CHECKPOINT, message))
            await _event(memo, body, Reason.SNAPSHOT_FAILED, message, "Warning")
            raise kopf.PermanentError(message) from exc
        patch.status.update(_status(body, "Pending", Reason.WAITING_FOR_CHECKPOINT, str(exc)))
        raise kopf.TemporaryError(str(exc), delay=WAIT_DELAY_SECONDS) from exc
    except kopf.PermanentError as exc:
        message = str(exc)
        patch.status.update(_status(body, "Failed", Reason.SNAPSHOT_FAILED, message))
        await _event(memo, body, Reason.SNAPSHOT_FAILED, message, "Warning")
        raise
    except errors.StoreUnavailableError as exc:
        raise kopf.TemporaryError(f"store unavailable: {exc}", delay=5) from exc
    message = f"copied step {snap.step} of Execution {parsed.execution_name} ({snap.size_bytes} bytes)"
    patch.status.update(
        _status(
            body,
            "Ready",
            Reason.SNAPSHOT_STORED,
            message,
            step=snap.step,
            size_bytes=snap.size_bytes,
            created_at=snap.created_at,
        )
    )
    await _event(memo, body, Reason.SNAPSHOT_CREATED, message)
    logger.info("snapshot %s/%s: %s", namespace, name, message)


@kopf.on.delete(GROUP, VERSION, SNAPSHOTS, when=_deletion_policy)
async def delete_snapshot(
    body: kopf.Body, spec: kopf.Spec, name: str, namespace: str | None, memo: Any, logger: Any, **_: Any
) -> None:
    """deletionPolicy Delete: remove the stored copy before the resource goes."""
    execution_name = str(spec.get("executionName", ""))
    try:
        deleted = await memo.store.delete_snapshot(execution_id(namespace or "", execution_name), name)
    except (errors.SnapshotNotFound, errors.ExecutionNotFound):
        deleted = False
    except errors.StoreUnavailableError as exc:
        raise kopf.TemporaryError(f"store unavailable: {exc}", delay=5) from exc
    if deleted:
        await _event(memo, body, Reason.SNAPSHOT_DELETED, f"deleted the stored snapshot {name}")
    logger.info("snapshot %s/%s deleted from the store: %s", namespace, name, bool(deleted))
