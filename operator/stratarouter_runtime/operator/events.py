"""Kubernetes Events on an Execution (recoveries, restores, suspends, corrupt checkpoints skipped):
best effort, never raised."""

from __future__ import annotations

import logging
import socket
from typing import Any, Literal

from stratarouter_runtime.operator.kube import Kube
from stratarouter_runtime.operator.resources.base import API_VERSION, KIND_EXECUTION
from stratarouter_runtime.operator.resources.conditions import format_time, now_utc

log = logging.getLogger(__name__)

COMPONENT = "stratarouter-operator"
EventType = Literal["Normal", "Warning"]

CORRUPT_CHECKPOINT_SKIPPED = "CorruptCheckpointSkipped"
"""The Warning of a pod's load that skipped a corrupt state for an older checkpoint (onCorrupt: Previous)."""


def build_event(
    obj: dict[str, Any], reason: str, message: str, type_: EventType = "Normal"
) -> dict[str, Any]:
    """A core/v1 Event about ``obj`` (any namespaced object as the API server returned it)."""
    meta = obj.get("metadata") or {}
    at = format_time(now_utc())
    return {
        "apiVersion": "v1",
        "kind": "Event",
        "metadata": {"generateName": f"{meta.get('name', 'object')}.", "namespace": meta.get("namespace")},
        "involvedObject": {
            "apiVersion": obj.get("apiVersion"),
            "kind": obj.get("kind"),
            "name": meta.get("name"),
            "namespace": meta.get("namespace"),
            "uid": meta.get("uid"),
        },
        "reason": reason,
        "message": message[:1024],
        "type": type_,
        "firstTimestamp": at,
        "lastTimestamp": at,
        "count": 1,
        "source": {"component": COMPONENT},
        "reportingComponent": COMPONENT,
        "reportingInstance": socket.gethostname(),
    }


async def post_event(
    kube: Kube, obj: dict[str, Any], reason: str, message: str, type_: EventType = "Normal"
) -> None:
    """Post an Event; a failure is logged (an Event is never worth failing a reconcile for)."""
    event = build_event(obj, reason, message, type_)
    try:
        await kube.post_event(event["metadata"]["namespace"], event)
    except Exception as exc:
        log.warning("could not post event %s on %s: %s", reason, event["involvedObject"]["name"], exc)


async def post_execution_event(
    kube: Kube, namespace: str, name: str, reason: str, message: str, type_: EventType = "Normal"
) -> None:
    """:func:`post_event` on the Execution ``namespace/name``, for a caller that has only its name
    (the checkpoint API: the pod's identity names it)."""
    execution = {
        "apiVersion": API_VERSION,
        "kind": KIND_EXECUTION,
        "metadata": {"namespace": namespace, "name": name},
    }
    await post_event(kube, execution, reason, message, type_)
