"""Execution handlers: a reconcile loop per Execution (a kopf daemon), spec changes poke it, deletion
cleans the store.

The loop is the only writer of an Execution's pods and status (besides the checkpoint API's
``status.lastCheckpoint``), so passes never race. It sleeps until poked (a spec change, one of its pods
changing phase, its node vanishing) or until a pass asked to come back (a backoff running out), and
re-checks every ``RESYNC_SECONDS`` as a safety net. Errors are retried with a capped exponential backoff.
"""

from __future__ import annotations

import asyncio
from typing import Any

import kopf

from stratarouter_runtime.operator.context import Lifecycle
from stratarouter_runtime.operator.lifecycle import reconcile
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP, VERSION
from stratarouter_runtime.operator.resources.execution import TERMINAL_PHASES
from stratarouter_runtime.state.errors import StateError

RESYNC_SECONDS = 300.0
MAX_ERROR_BACKOFF_SECONDS = 60.0
HANDLER_RETRIES = 10
HANDLER_BACKOFF_SECONDS = 5.0


@kopf.on.update(GROUP, VERSION, EXECUTIONS, field="spec", retries=HANDLER_RETRIES, backoff=1.0)
async def spec_changed(*, namespace: str | None, name: str, memo: Any, **_: Any) -> None:
    """suspend, restoreFrom, recovery settings...: let the loop look now."""
    memo.wakeups.poke(namespace or "", name)


@kopf.daemon(GROUP, VERSION, EXECUTIONS, id="lifecycle", cancellation_timeout=15.0)
async def lifecycle(
    *,
    stopped: kopf.DaemonStopped,
    namespace: str | None,
    name: str,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """The Execution's reconcile loop (create, run, recover, suspend, restore, finish)."""
    assert namespace is not None, "Executions are namespaced"
    lc: Lifecycle = memo.lifecycle
    settings = lc.settings
    due: float | None = 0.0
    errors = 0
    stop = asyncio.ensure_future(stopped.wait())
    try:
        while not stopped:
            if due is None or due > 0:
                await _sleep(memo, namespace, name, RESYNC_SECONDS if due is None else due, stop)
            if stopped:
                break
            try:
                due = await reconcile(lc, namespace, name, mirror=memo.get("status"))
                errors = 0
            except Exception as exc:  # any error: retried with a capped backoff, never a hot loop
                errors += 1
                due = min(
                    settings.handler_backoff_seconds * 2 ** min(errors - 1, 10), MAX_ERROR_BACKOFF_SECONDS
                )
                log = logger.error if errors >= settings.handler_retries else logger.warning
                log(
                    f"reconcile failed ({errors} in a row), retrying in {due:g}s: {exc!r}",
                    exc_info=errors == 1,
                )
    finally:
        stop.cancel()


async def _sleep(memo: Any, namespace: str, name: str, seconds: float, stop: asyncio.Future[Any]) -> None:
    """Until poked, ``seconds`` pass, or the daemon is asked to stop (then it exits between passes)."""
    wake = asyncio.ensure_future(memo.wakeups.wait(namespace, name, seconds))
    try:
        await asyncio.wait({wake, stop}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        wake.cancel()


@kopf.on.delete(GROUP, VERSION, EXECUTIONS, retries=HANDLER_RETRIES, backoff=HANDLER_BACKOFF_SECONDS)
async def forget_execution(
    *,
    namespace: str | None,
    name: str,
    uid: str,
    spec: kopf.Spec,
    status: kopf.Status,
    memo: Any,
    logger: kopf.Logger,
    **_: Any,
) -> None:
    """Deleted (by a user or the TTL): cancel a run still going, and drop its stored run unless
    keepHistory. A kept run stays under its id, readable as before, until a new Execution of this name
    starts: that one archives it first (``Pass.archive_earlier_run``) and starts empty. Snapshots stay."""
    assert namespace is not None, "Executions are namespaced"
    lc: Lifecycle = memo.lifecycle
    memo.wakeups.forget(namespace, name)
    if (status_patches := memo.get("status")) is not None:
        status_patches.forget(namespace, name)  # a new Execution of this name gets a full first patch
    lc.view.forget_execution(namespace, name)
    lc.track_phase(namespace, name, None)
    store_id = execution_id(namespace, name)
    stored = await lc.store.get_execution(store_id)
    if stored is None or stored.labels.get("uid") != uid:
        return  # never started (what is stored is an earlier Execution's), or dropped by an earlier try
    if status.get("phase") not in TERMINAL_PHASES and status.get("attempt"):
        try:
            await lc.store.cancel(store_id, attempt=int(status.get("attempt") or 1))
        except StateError as exc:
            logger.info(f"store cancel skipped: {exc}")
    if not (spec.get("retention") or {}).get("keepHistory", False):
        await lc.store.delete_execution(store_id, keep_snapshots=True)
        logger.info(f"stored run of {store_id} deleted (retention.keepHistory is false)")
