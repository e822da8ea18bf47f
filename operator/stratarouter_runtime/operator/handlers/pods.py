"""Pod and node watches: poke the owning Execution's loop when one of our pods changes phase, is deleted,
or its node disappears. The pod watch is filtered server-side to our label (main.configure_kopf)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import kopf

from stratarouter_runtime.operator.context import Lifecycle
from stratarouter_runtime.operator.pods import EXECUTION_LABEL, MANAGED_BY, MANAGED_BY_LABEL


@kopf.on.event("v1", "pods", labels={MANAGED_BY_LABEL: MANAGED_BY, EXECUTION_LABEL: kopf.PRESENT})
async def pod_event(
    *,
    type: str,
    body: kopf.Body,
    namespace: str | None,
    name: str,
    labels: Mapping[str, str],
    memo: Any,
    **_: Any,
) -> None:
    """Phase changes, deletions and deletion marks are what the lifecycle cares about."""
    assert namespace is not None, "pods are namespaced"
    lc: Lifecycle = memo.lifecycle
    execution = labels[EXECUTION_LABEL]
    if type == "DELETED":
        lc.view.pod_gone(namespace, name)
        memo.wakeups.poke(namespace, execution)
        return
    changed = lc.view.pod_seen(
        namespace,
        name,
        execution,
        phase=str((body.get("status") or {}).get("phase") or ""),
        terminating=bool(body.get("metadata", {}).get("deletionTimestamp")),
        node=(body.get("spec") or {}).get("nodeName"),
    )
    if changed:
        memo.wakeups.poke(namespace, execution)


@kopf.on.event("v1", "nodes")
async def node_event(*, type: str, name: str, memo: Any, **_: Any) -> None:
    """A deleted node takes its pods with it: their Executions recover with reason NodeLost."""
    lc: Lifecycle = memo.lifecycle
    if type == "DELETED":
        for namespace, execution in lc.view.node_deleted(name):
            memo.wakeups.poke(namespace, execution)
    else:
        lc.view.node_present(name)
