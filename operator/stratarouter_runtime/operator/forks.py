"""The first start of an Execution with ``spec.startFrom``: a fork of another run's state in the store.

The store's ``fork`` (one atomic call) starts this Execution's run from the source's state, so its
first pod gets ``STRATA_RESUME_STEP`` = the fork's step and ``load()`` returns that state. The source
run is only read. ``status.startedFrom`` and the ``Forked`` condition record where the run came from,
as the store's ``forked`` audit event does.

When the fork cannot be made yet (``Forked`` False, phase Pending, a Warning Event when it starts):

* the source Execution or Snapshot is not there, or is not Ready, or the source run has not reached the
  step while it still runs -> ``ForkSourceNotFound``, retried after the time waited so far (at least
  ``RETRY_MIN_SECONDS``, at most ``RETRY_MAX_SECONDS``: 5, 5, 10, 20, 40, 60, 60 s...), for
  ``WAIT_SECONDS`` from the first miss (kept across operator restarts: the condition's
  lastTransitionTime), then Failed. GitOps may apply a fork before its source;
* the source has no checkpoint at the step and never will (it was pruned by retention, never written
  by a run that finished, or lies before its newest checkpoint) -> Failed ``ForkCheckpointNotFound``
  at once: no retry can bring it back. A Snapshot of the step is what outlives retention.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, NoReturn, Protocol

from stratarouter_runtime.operator.handlers.snapshots import not_reached
from stratarouter_runtime.operator.pods import execution_id
from stratarouter_runtime.operator.resources.conditions import ConditionStatus, ConditionType, Reason
from stratarouter_runtime.operator.resources.execution import ExecutionSpec, Phase, StartedFrom, StartFrom
from stratarouter_runtime.operator.resources.execution import ExecutionStatus as StatusModel
from stratarouter_runtime.state.errors import CheckpointNotFound, ExecutionNotFound, SnapshotNotFound
from stratarouter_runtime.state.models import ExecutionStatus

if TYPE_CHECKING:
    from stratarouter_runtime.operator.events import EventType
    from stratarouter_runtime.operator.kube import Kube
    from stratarouter_runtime.state import StateManager
    from stratarouter_runtime.state.models import Execution

WAIT_SECONDS = 300.0
RETRY_MIN_SECONDS = 5.0
RETRY_MAX_SECONDS = 60.0


class ForkNotStarted(Exception):
    """No fork this pass: the next is due in ``due`` seconds (None: the Execution failed for good)."""

    def __init__(self, due: float | None) -> None:
        super().__init__(due)
        self.due = due


class Pass(Protocol):
    """What a fork needs of the reconcile pass that starts the run (``lifecycle.Pass`` is one)."""

    id: str
    name: str
    namespace: str
    kube: Kube
    store: StateManager
    spec: ExecutionSpec
    status: StatusModel

    def cond(self, type_: ConditionType, status: ConditionStatus, reason: str, message: str = "") -> None: ...

    def event(self, reason: str, message: str, type_: EventType = "Normal") -> None: ...

    async def give_up(self, reason: Reason, message: str) -> None: ...

    def labels(self) -> dict[str, str]: ...

    def retention(self) -> int | None: ...


@dataclass(frozen=True, slots=True)
class Source:
    """spec.startFrom resolved: the source run's Execution name, and its step or Snapshot."""

    execution: str
    step: int | None = None
    snapshot: str | None = None


def matches(start: StartFrom | None, started: StartedFrom | None) -> bool:
    """Whether ``spec.startFrom`` still names the source ``status.startedFrom`` records."""
    if start is None or started is None:
        return start is None and started is None
    if start.snapshot is not None:
        return start.snapshot == started.snapshot
    same_step = start.step is None or start.step == started.step
    return started.snapshot is None and start.execution == started.execution and same_step


def check_unchanged(p: Pass) -> None:
    """After the start: a changed ``spec.startFrom`` is not acted on (the CRD's CEL rule refuses it at
    admission already); the Forked condition says so until the spec names the recorded source again."""
    forked = next((c for c in p.status.conditions if c.type == ConditionType.FORKED), None)
    refused = forked is not None and forked.reason == Reason.START_FROM_IMMUTABLE
    if matches(p.spec.start_from, p.status.started_from):
        if refused and p.status.started_from is not None:
            p.cond(ConditionType.FORKED, "True", Reason.FORKED, describe(p.status.started_from))
        return
    if not refused:
        message = "spec.startFrom changed after the run started; the change is not acted on"
        p.cond(ConditionType.FORKED, "False", Reason.START_FROM_IMMUTABLE, message)
        p.event(Reason.START_FROM_IMMUTABLE, message, "Warning")


def describe(started: StartedFrom) -> str:
    via = f"snapshot {started.snapshot} of " if started.snapshot else ""
    return f"started from {via}Execution {started.execution} at step {started.step}"


async def start(p: Pass, attempt: int) -> Execution:
    """Start the run by forking spec.startFrom's state (raises ForkNotStarted when it cannot yet)."""
    stored = await p.store.get_execution(p.id)
    if stored is not None:  # forked by a pass whose status patch a crash lost (earlier runs are archived)
        started = await p.store.start_execution(
            p.id, attempt=attempt, labels=p.labels(), checkpoint_retention=p.retention()
        )
        spec = p.spec.start_from
        named = (spec.execution if spec else None) or ""
        record = await _recorded(p) or StartedFrom(execution=named, step=started.current_step or 0)
    else:
        source = await _resolve(p)
        started = await _fork(p, source, attempt)
        step = started.current_step or 0
        record = StartedFrom(execution=source.execution, step=step, snapshot=source.snapshot)
    record.time = datetime.now(UTC).replace(microsecond=0)
    p.status.started_from = record
    p.cond(ConditionType.FORKED, "True", Reason.FORKED, describe(record))
    p.event(Reason.FORKED, describe(record))
    return started


async def _recorded(p: Pass) -> StartedFrom | None:
    """The lineage of a run forked before: its forked audit event (the first events of the run)."""
    for event in await p.store.get_audit(p.id, limit=10):
        if event.kind == "forked" and event.step is not None:
            detail = event.detail
            name = str(detail.get("execution", "")).split("/", 1)[-1]
            return StartedFrom(execution=name, step=event.step, snapshot=detail.get("snapshot"))
    return None


async def _resolve(p: Pass) -> Source:
    start = p.spec.start_from
    assert start is not None
    if start.execution is not None:
        if start.execution == p.name:
            message = "invalid spec: spec.startFrom.execution names this Execution"
            await p.give_up(Reason.INVALID_SPEC, message)
            raise ForkNotStarted(None)
        return Source(execution=start.execution, step=start.step)
    assert start.snapshot is not None
    snapshot = await p.kube.get_snapshot(p.namespace, start.snapshot)
    if snapshot is None:
        await _wait(p, f"Snapshot {start.snapshot} not found in namespace {p.namespace}")
    phase = (snapshot.get("status") or {}).get("phase")
    if phase != "Ready":
        await _wait(p, f"Snapshot {start.snapshot} is not Ready (phase {phase or 'none yet'})")
    of = str((snapshot.get("spec") or {}).get("executionName", ""))
    return Source(execution=of, snapshot=start.snapshot)


async def _fork(p: Pass, source: Source, attempt: int) -> Execution:
    source_id = execution_id(p.namespace, source.execution)
    try:
        return await p.store.fork(
            source_id,
            p.id,
            source.step,
            snapshot=source.snapshot,
            attempt=attempt,
            labels=p.labels(),
            checkpoint_retention=p.retention(),
        )
    except SnapshotNotFound:
        await _wait(p, f"the store has no snapshot {source.snapshot} of Execution {source.execution}")
    except ExecutionNotFound:
        found = await p.kube.get_execution(p.namespace, source.execution)
        where = "has not stored a checkpoint yet" if found else f"not found in namespace {p.namespace}"
        await _wait(p, f"Execution {source.execution} {where}")
    except CheckpointNotFound:
        await _no_checkpoint(p, source_id, source)


async def _no_checkpoint(p: Pass, source_id: str, source: Source) -> NoReturn:
    """Wait for a step a running source has not reached; fail for one it never will have."""
    run = await p.store.get_execution(source_id)
    active = run is not None and ExecutionStatus(run.status).is_active
    last = None if run is None else run.last_checkpoint_step
    if active and source.step is None:
        await _wait(p, f"Execution {source.execution} has no checkpoint yet")
    if active and source.step is not None and (last is None or source.step > last):
        await _wait(p, not_reached(source.execution, source.step, last))
    message = (
        f"Execution {source.execution} has no checkpoint at step {source.step} (never written, or "
        "pruned by checkpoint retention; a Snapshot of a step outlives retention)"
    )
    if source.step is None:
        ended = run.status if run else "gone"
        message = f"Execution {source.execution} has no checkpoint, and its run is {ended}"
    p.cond(ConditionType.FORKED, "False", Reason.FORK_CHECKPOINT_NOT_FOUND, message)
    await p.give_up(Reason.FORK_CHECKPOINT_NOT_FOUND, message)
    raise ForkNotStarted(None)


async def _wait(p: Pass, problem: str) -> NoReturn:
    """ForkSourceNotFound: come back later, or fail once it has been missing for WAIT_SECONDS."""
    forked = next((c for c in p.status.conditions if c.type == ConditionType.FORKED), None)
    waiting = forked is not None and forked.reason == Reason.FORK_SOURCE_NOT_FOUND
    now = datetime.now(UTC)
    waited = (now - forked.last_transition_time).total_seconds() if forked and waiting else 0.0
    if waited >= WAIT_SECONDS:
        message = f"{problem}; gave up after waiting {WAIT_SECONDS:g}s"
        p.cond(ConditionType.FORKED, "False", Reason.FORK_SOURCE_NOT_FOUND, message)
        await p.give_up(Reason.FORK_SOURCE_NOT_FOUND, message)
        raise ForkNotStarted(None)
    due = min(max(waited, RETRY_MIN_SECONDS), RETRY_MAX_SECONDS)
    message = f"{problem}; the fork is retried in {due:g}s"
    p.cond(ConditionType.FORKED, "False", Reason.FORK_SOURCE_NOT_FOUND, message)
    p.status.phase, p.status.reason, p.status.message = Phase.PENDING, Reason.FORK_SOURCE_NOT_FOUND, message
    if not waiting:
        p.event(Reason.FORK_SOURCE_NOT_FOUND, message, "Warning")
    raise ForkNotStarted(due)
