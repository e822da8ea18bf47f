"""TTL after finish: a kopf timer on finished Executions deletes them ``ttlSecondsAfterFinished`` after
``status.completionTime`` (so it survives operator restarts); the delete handler then drops the stored
state unless ``retention.keepHistory``. Checkpoint retention (keep last N) is applied by the store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import kopf

from stratarouter_runtime.operator.context import Lifecycle
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP, VERSION
from stratarouter_runtime.operator.resources.execution import TERMINAL_PHASES
from stratarouter_runtime.operator.settings import retention_interval_from_env


def parse_time(value: Any) -> datetime | None:
    """An RFC 3339 time from status (``Z`` or an offset) in UTC; None when empty."""
    if not value:
        return None
    return datetime.fromisoformat(str(value).replace("Z", "+00:00")).astimezone(UTC)


def _finished(status: Any, **_: Any) -> bool:
    return (status or {}).get("phase") in TERMINAL_PHASES


@kopf.timer(GROUP, VERSION, EXECUTIONS, id="ttl", interval=retention_interval_from_env(), when=_finished)
async def ttl_after_finished(
    *,
    namespace: str | None,
    name: str,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Delete the Execution once its TTL after completion has passed."""
    assert namespace is not None, "Executions are namespaced"
    lc: Lifecycle = memo.lifecycle
    ttl = (spec.get("retention") or {}).get("ttlSecondsAfterFinished")
    if ttl is None:
        ttl = lc.settings.default_ttl_seconds_after_finished
    finished = parse_time(status.get("completionTime"))
    if ttl is None or finished is None:
        return
    if datetime.now(UTC) >= finished + timedelta(seconds=int(ttl)):
        logger.info(f"ttlSecondsAfterFinished={ttl} passed since {finished.isoformat()}: deleting")
        await lc.kube.delete_execution(namespace, name)
