"""The contract every storage backend fulfils (memory, postgresql, http).

The :class:`~stratarouter_runtime.state.StateManager` validates arguments, encodes states
(:class:`~stratarouter_runtime.state.codec.EncodedState`), decides which ``save`` also writes
history, and handles batching; a backend only stores. A backend is constructed as
``Backend(config: StateConfig)``, must not do I/O before its first call (connect lazily), and must
be safe to share by many concurrent tasks.

Semantics shared by all backends (the conformance suite in ``tests/store`` checks them; the rules
that every backend applies in several places are one test each in ``tests/store/test_store_rules.py``):

* A write (:class:`WriteOp`) to an unknown execution creates it (status running). Every fenced call
  (writes, ``finish``, restores) is fenced by :func:`admits`; a refused one raises
  :class:`StaleAttemptError` and changes nothing; an admitted higher attempt raises the stored one.
* A write sets the current state (one row per execution, no growth) and the status
  :func:`status_after_write`. With ``history=True`` it also upserts the history checkpoint at
  ``(execution, step)``, sets ``last_checkpoint_step``, appends a ``checkpoint`` audit event (step,
  size, sha256) and prunes history to the retention (the execution's own, else
  ``config.checkpoint_retention``) by :func:`~stratarouter_runtime.state.retention.steps_to_prune`.
* The audit trail has one ``checkpoint`` event per checkpoint ever written (pruned, rewritten and
  rewound ones included); ``counts().total_checkpoints`` is the number of those events.
* Reads of unknown executions raise :class:`ExecutionNotFound` (``get_execution`` returns None).
* Recovery claims a stalled execution with attempt + 1, except one already at
  :data:`~stratarouter_runtime.state.validation.MAX_ATTEMPT`: no newer attempt could fence it, so it
  is marked failed with :data:`ATTEMPTS_EXHAUSTED` (and a ``failed`` audit event) instead.
* Worker identity (:mod:`~stratarouter_runtime.state.worker`): starts and claims by a worker record
  it; its claim takes the runs of its id's earlier instances at once, and never a run whose instance
  is live (:func:`~stratarouter_runtime.state.worker.is_live`); one live instance holds an id.
* Every read of a stored state verifies it against its sha256
  (:mod:`~stratarouter_runtime.state.integrity`) and raises CorruptCheckpointError on a mismatch.
"""

from __future__ import annotations

import logging
from abc import ABC, abstractmethod
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from stratarouter_runtime.state.codec import EncodedState
from stratarouter_runtime.state.errors import StateError
from stratarouter_runtime.state.models import (
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Snapshot,
)
from stratarouter_runtime.state.validation import MAX_ATTEMPT
from stratarouter_runtime.state.worker import Worker

log = logging.getLogger(__name__)

ATTEMPTS_EXHAUSTED: Final = (
    f"not recovered: attempt {MAX_ATTEMPT} is the highest an execution can have, so no new attempt "
    "could fence this one"
)
"""The error a recovery sweep records on a stalled execution at the highest attempt."""


def admits(stored: int, writer: int | None) -> bool:
    """Fencing, the one comparison: a call by attempt ``writer`` is admitted unless the stored attempt
    is newer (``stored <= writer``); ``writer=None`` is not fenced. A pod replaced by a newer attempt
    is refused from then on, while the current attempt (equal) and a newer one (which then becomes
    the stored attempt) write. PostgreSQL's statements call the same rule, ``strata_admits``."""
    return writer is None or stored <= writer


def status_after_write(status: ExecutionStatus) -> ExecutionStatus:
    """A write's status change: pending and recovering become running (the writer is running it);
    a final status stays. PostgreSQL's statements call the same rule, ``strata_status_after_write``."""
    if status in (ExecutionStatus.PENDING, ExecutionStatus.RECOVERING):
        return ExecutionStatus.RUNNING
    return status


def claimed_only(found: Sequence[Execution]) -> list[Execution]:
    """What a claim returns: the executions it claimed. Those it failed instead (at the highest attempt,
    the only ones it leaves failed) are logged, since no caller gets them."""
    for execution in found:
        if execution.status == ExecutionStatus.FAILED:
            log.warning("execution %s: %s; marked failed", execution.execution_id, ATTEMPTS_EXHAUSTED)
    return [e for e in found if e.status != ExecutionStatus.FAILED]


@dataclass(frozen=True, slots=True)
class WriteOp:
    """One validated, encoded write."""

    execution_id: str
    step: int
    state: EncodedState
    attempt: int | None
    history: bool
    """True: also a history checkpoint (``checkpoint()``, or ``save()`` on an interval step)."""
    retention: int | None = None
    """The manager's default checkpoint retention; the execution's own setting wins over it."""
    must_exist: bool = False
    """Refuse (:class:`ExecutionGoneError`) rather than create the execution: the writer's run was
    started or claimed before, so a missing one was deleted or renamed since."""


@dataclass(frozen=True, slots=True)
class StoredState:
    """The current state of an execution as stored (decode with ``codec.decode``)."""

    execution_id: str
    step: int
    data: bytes
    codec: str
    attempt: int


@dataclass(frozen=True, slots=True)
class ForkSource:
    """What a fork starts from: a history checkpoint (``step``; None: the newest) of the source
    execution, or its snapshot ``snapshot`` (its stored copy, which outlives retention and the run)."""

    step: int | None = None
    snapshot: str | None = None


@dataclass(frozen=True, slots=True)
class StoreCounts:
    total_executions: int
    active_executions: int
    total_checkpoints: int
    storage_bytes: int


class StateBackend(ABC):
    """Storage for executions, their current state, history, snapshots and audit trail."""

    name: str = "abstract"

    @abstractmethod
    async def close(self) -> None:
        """Release connections; further calls may reopen lazily."""

    # -- writes -------------------------------------------------------------------------------
    @abstractmethod
    async def write(self, op: WriteOp) -> None:
        """Apply one write durably before returning; raises StaleAttemptError when fenced."""

    async def write_many(self, ops: Sequence[WriteOp]) -> list[StateError | None]:
        """Apply independent writes in order, durably; one result per op (None = applied).

        Backends override this to use one round trip (group commit, batch flush).
        """
        results: list[StateError | None] = []
        for op in ops:
            try:
                await self.write(op)
            except StateError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    @abstractmethod
    async def write_atomic(self, ops: Sequence[WriteOp]) -> None:
        """Apply all writes or none (one transaction); raises the first error."""

    # -- executions ---------------------------------------------------------------------------
    @abstractmethod
    async def start_execution(
        self, execution_id: str, attempt: int, labels: dict[str, str] | None, checkpoint_retention: int | None
    ) -> Execution: ...

    @abstractmethod
    async def finish(
        self, execution_id: str, status: ExecutionStatus, error: str | None, attempt: int | None
    ) -> Execution:
        """Set a final status (completed/failed/cancelled) and finished_at."""

    @abstractmethod
    async def load(self, execution_id: str) -> StoredState | None: ...

    @abstractmethod
    async def get_execution(self, execution_id: str) -> Execution | None: ...

    @abstractmethod
    async def query(
        self,
        statuses: list[ExecutionStatus] | None,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[Execution]:
        """Executions by status and creation time (``start <= created_at <= end``), oldest first."""

    @abstractmethod
    async def delete_execution(self, execution_id: str, keep_snapshots: bool) -> bool: ...

    @abstractmethod
    async def rename_execution(self, execution_id: str, new_id: str) -> Execution:
        """Move the execution (row, history, audit trail; not its snapshots) to the free id ``new_id``,
        with a ``renamed`` audit event; ExecutionNotFound, or InvalidArgumentError if ``new_id`` is taken."""

    @abstractmethod
    async def cleanup(self, cutoff: datetime, statuses: list[ExecutionStatus]) -> int:
        """Delete executions with a status in ``statuses`` finished before ``cutoff``; returns how many."""

    @abstractmethod
    async def claim_recoverable(self, stale_before_seconds: float, limit: int) -> list[Execution]:
        """Atomically move running/recovering executions idle for that long to recovering, attempt+1
        (or to failed, at the highest attempt; see the module docstring).

        Concurrent callers (other processes) never claim the same execution.
        """

    # -- workers (state/worker.py) ------------------------------------------------------------
    # A backend without leases (http: the operator owns a pod's identity) keeps these defaults: no
    # lease, and starts and claims that record no worker.
    async def hold_worker_lease(self, worker: Worker, lease_seconds: float) -> None:
        """Take or renew ``worker``'s lease of its id for ``lease_seconds``; WorkerIdInUseError if
        another live instance holds it (:func:`~stratarouter_runtime.state.worker.taken_over`)."""
        return

    async def release_worker_lease(self, worker: Worker) -> None:
        """Give the lease up (a clean close): the instance's runs are no longer protected by it."""
        return

    async def start_execution_by(
        self,
        worker: Worker,
        execution_id: str,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
    ) -> Execution:
        """:meth:`start_execution`, recording ``worker`` as the run's worker."""
        return await self.start_execution(execution_id, attempt, labels, checkpoint_retention)

    async def claim_recoverable_by(
        self, worker: Worker, stale_before_seconds: float, limit: int
    ) -> list[Execution]:
        """:meth:`claim_recoverable` for ``worker``: also the runs of its id's earlier instances, at
        once, and never a run of another live instance; the claimed runs record ``worker``."""
        return await self.claim_recoverable(stale_before_seconds, limit)

    async def fallback_checkpoint(self, execution_id: str, bad_step: int) -> Checkpoint | None:
        """The newest checkpoint at ``bad_step`` or below that verifies, made the current state (the
        run's current step becomes its step, as a restore; history and attempt stay) atomically with a
        ``corrupt_fallback`` audit event naming both steps. None if there is none, the run is no longer
        at ``bad_step``, or this backend cannot fall back."""
        return None

    # -- history and audit --------------------------------------------------------------------
    @abstractmethod
    async def get_history(
        self, execution_id: str, after_step: int | None, limit: int
    ) -> list[Checkpoint]: ...

    @abstractmethod
    async def get_checkpoint(self, execution_id: str, step: int | None) -> Checkpoint | None:
        """The checkpoint at ``step``, or at ``last_checkpoint_step`` when step is None."""

    @abstractmethod
    async def get_audit(self, execution_id: str, after_seq: int | None, limit: int) -> list[AuditEvent]: ...

    # -- snapshots ----------------------------------------------------------------------------
    @abstractmethod
    async def create_snapshot(self, execution_id: str, name: str, step: int | None) -> Snapshot:
        """Copy the current state (step None) or the history checkpoint at ``step``; replaces a namesake."""

    @abstractmethod
    async def get_snapshot(self, execution_id: str, name: str) -> Snapshot | None: ...

    @abstractmethod
    async def list_snapshots(self, execution_id: str) -> list[Snapshot]: ...

    @abstractmethod
    async def load_snapshot_state(self, execution_id: str, name: str) -> Any:
        """The decoded state of snapshot ``name``; SnapshotNotFound if there is none."""

    @abstractmethod
    async def delete_snapshot(self, execution_id: str, name: str) -> bool: ...

    @abstractmethod
    async def restore_snapshot(self, execution_id: str, name: str, attempt: int | None) -> Checkpoint:
        """Make the snapshot the current state and the newest history entry (later steps are dropped)."""

    # -- housekeeping -------------------------------------------------------------------------
    @abstractmethod
    async def counts(self) -> StoreCounts: ...

    # -- forks --------------------------------------------------------------------------------
    @abstractmethod
    async def fork_execution(
        self,
        source_id: str,
        new_id: str,
        source: ForkSource,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
        worker: Worker | None,
    ) -> Execution:
        """Start ``new_id`` (running, ``attempt``) from a state of ``source_id``, atomically: that state
        becomes its current state and its first history checkpoint, after a ``forked`` audit event
        (detail: ``execution``, ``step``, and ``snapshot`` for a snapshot); ``worker`` is recorded as the
        new run's worker, as by :meth:`start_execution_by`. The source is only read, and verified
        before the copy: CorruptCheckpointError, and no new run, if it fails its sha256.
        InvalidArgumentError if ``new_id`` exists; ExecutionNotFound, CheckpointNotFound (never written
        or pruned) or SnapshotNotFound for a missing source."""
