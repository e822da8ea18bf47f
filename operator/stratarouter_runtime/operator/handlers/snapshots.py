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
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException
from pydantic import ValidationError

from stratarouter_runtime.operator.events import EventType, post_event
from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP, SNAPSHOTS, VERSION
from stratarouter_runtime.operator.resources.conditions import ConditionType, format_time, set_condition
from stratarouter_runtime.operator.resources.snapshot import SnapshotSpec
from stratarouter_runtime.state import errors
from stratarouter_runtime.state.models import ExecutionStatus

WAIT_RETRIES = 30
WAIT_DELAY_SECONDS = 10.0


class SnapshotWaiting(Exception):
    """The Execution has nothing to copy yet."""


async def _event(memo: Any, body: kopf.Body, reason: str, message: str, type_: EventType = "Normal") -> None:
    """A Kubernetes Event on the Snapshot (posted directly: kopf's poster only forwards warnings)."""
    obj = {
        "apiVersion": f"{GROUP}/{VERSION}",
        "kind": "Snapshot",
        "metadata": dict(body.get("metadata") or {}),
    }
    await post_event(Kube(memo.k8s), obj, reason, message, type_)


def _deletion_policy(spec: Any, **_: Any) -> bool:
    return bool((spec or {}).get("deletionPolicy", "Delete") == "Delete")


async def _execution_exists(api: client.ApiClient, namespace: str, name: str) -> bool:
    try:
        await client.CustomObjectsApi(api).get_namespaced_custom_object(
            GROUP, VERSION, namespace, EXECUTIONS, name
        )
    except ApiException as exc:
        if exc.status == 404:
            return False
        raise kopf.TemporaryError(
            f"reading Execution {namespace}/{name} failed: {exc.reason}", delay=5
        ) from exc
    return True


def _status(
    body: Any, phase: str, cond_status: str, reason: str, message: str, **fields: Any
) -> dict[str, Any]:
    generation = (body.get("metadata") or {}).get("generation")
    conditions = list((body.get("status") or {}).get("conditions") or [])
    conditions = set_condition(
        conditions,
        ConditionType.READY,
        "True" if cond_status == "True" else "False",
        reason,
        message,
        generation=generation,
    )
    if phase == "Failed":
        conditions = set_condition(conditions, "Failed", "True", reason, message, generation=generation)
    return {
        "phase": phase,
        "message": message,
        "observedGeneration": generation,
        "conditions": conditions,
        **fields,
    }


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
        if await _execution_exists(memo.k8s, namespace, spec.execution_name):
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
        patch.status.update(_status(body, "Failed", "False", "InvalidSpec", message))
        raise kopf.PermanentError(message) from exc
    try:
        snap = await _copy(memo, namespace or "", name, parsed)
    except SnapshotWaiting as exc:
        if retry >= WAIT_RETRIES:
            message = f"{exc} gave up after {retry} tries"
            patch.status.update(_status(body, "Failed", "False", "NoCheckpoint", message))
            await _event(memo, body, "SnapshotFailed", message, "Warning")
            raise kopf.PermanentError(message) from exc
        patch.status.update(_status(body, "Pending", "False", "WaitingForCheckpoint", str(exc)))
        raise kopf.TemporaryError(str(exc), delay=WAIT_DELAY_SECONDS) from exc
    except kopf.PermanentError as exc:
        message = str(exc)
        patch.status.update(_status(body, "Failed", "False", "SnapshotFailed", message))
        await _event(memo, body, "SnapshotFailed", message, "Warning")
        raise
    except errors.StoreUnavailableError as exc:
        raise kopf.TemporaryError(f"store unavailable: {exc}", delay=5) from exc
    message = f"copied step {snap.step} of Execution {parsed.execution_name} ({snap.size_bytes} bytes)"
    patch.status.update(
        _status(
            body,
            "Ready",
            "True",
            "SnapshotStored",
            message,
            step=snap.step,
            sizeBytes=snap.size_bytes,
            createdAt=format_time(snap.created_at),
        )
    )
    await _event(memo, body, "SnapshotCreated", message)
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
        await _event(memo, body, "SnapshotDeleted", f"deleted the stored snapshot {name}")
    logger.info("snapshot %s/%s deleted from the store: %s", namespace, name, bool(deleted))
