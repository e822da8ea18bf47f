"""The embedded backend: everything in this process's memory, same semantics as PostgreSQL.

Every method runs without awaiting in between, so each call is atomic with respect to other
asyncio tasks; that gives transactions and recovery claims for free. Nothing survives the process.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

from stratarouter_runtime.state import codec, retention
from stratarouter_runtime.state.backends.base import (
    ATTEMPTS_EXHAUSTED,
    ForkSource,
    StateBackend,
    StoreCounts,
    StoredState,
    WriteOp,
    admits,
    claimed_only,
    status_after_write,
)
from stratarouter_runtime.state.config import StateConfig
from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    CorruptCheckpointError,
    ExecutionGoneError,
    ExecutionNotFound,
    InvalidArgumentError,
    SnapshotNotFound,
    StaleAttemptError,
)
from stratarouter_runtime.state.integrity import CORRUPT_FALLBACK, verified_json, verified_state
from stratarouter_runtime.state.models import (
    ACTIVE_STATUSES,
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Snapshot,
)
from stratarouter_runtime.state.validation import MAX_ATTEMPT
from stratarouter_runtime.state.worker import Lease, Worker, is_live, taken_over


def _now() -> datetime:
    return datetime.now(UTC)


@dataclass(slots=True)
class _Blob:
    step: int
    attempt: int
    data: bytes
    codec: str
    size_bytes: int
    digest: bytes
    created_at: datetime

    def state(self, execution_id: str) -> Any:
        """The decoded state, verified against its sha256 (CorruptCheckpointError)."""
        return verified_state(execution_id, self.step, self.data, self.codec, self.digest)


@dataclass(slots=True)
class _Held:
    """A worker id's lease in this store."""

    worker: Worker
    expires_at: datetime

    def lease(self) -> Lease:
        w = self.worker
        return Lease(w.instance, w.host, w.pid, self.expires_at > _now())


@dataclass(slots=True)
class _Exec:
    execution_id: str
    status: ExecutionStatus
    attempt: int
    created_at: datetime
    updated_at: datetime
    current_step: int | None = None
    last_checkpoint_step: int | None = None
    finished_at: datetime | None = None
    error: str | None = None
    labels: dict[str, str] = field(default_factory=dict)
    checkpoint_retention: int | None = None
    state: _Blob | None = None
    history: dict[int, _Blob] = field(default_factory=dict)
    events: list[AuditEvent] = field(default_factory=list)
    worker_id: str | None = None
    worker_instance: uuid.UUID | None = None

    def model(self) -> Execution:
        return Execution.model_construct(
            execution_id=self.execution_id,
            status=self.status,
            current_step=self.current_step,
            last_checkpoint_step=self.last_checkpoint_step,
            attempt=self.attempt,
            created_at=self.created_at,
            updated_at=self.updated_at,
            finished_at=self.finished_at,
            error=self.error,
            labels=dict(self.labels),
            checkpoint_retention=self.checkpoint_retention,
        )


def _checkpoint(execution_id: str, blob: _Blob) -> Checkpoint:
    return Checkpoint.model_construct(
        execution_id=execution_id,
        step=blob.step,
        state_data=blob.state(execution_id),
        timestamp=blob.created_at,
        attempt=blob.attempt,
        size_bytes=blob.size_bytes,
    )


def _snapshot(execution_id: str, name: str, blob: _Blob) -> Snapshot:
    return Snapshot.model_construct(
        name=name,
        execution_id=execution_id,
        step=blob.step,
        size_bytes=blob.size_bytes,
        created_at=blob.created_at,
    )


class MemoryBackend(StateBackend):
    """In-process store; the default of ``StateManager()``."""

    name = "memory"

    def __init__(self, config: StateConfig) -> None:
        self._config = config
        self._execs: dict[str, _Exec] = {}
        self._snapshots: dict[tuple[str, str], _Blob] = {}
        self._seq = 0
        self._leases: dict[str, _Held] = {}

    async def close(self) -> None:
        return None

    # -- helpers ------------------------------------------------------------------------------
    def _event(self, ex: _Exec, kind: str, step: int | None, **extra: Any) -> None:
        self._seq += 1
        detail = extra.pop("detail", {})
        ex.events.append(
            AuditEvent.model_construct(
                execution_id=ex.execution_id,
                seq=self._seq,
                kind=kind,
                step=step,
                attempt=ex.attempt,
                at=_now(),
                size_bytes=extra.get("size_bytes"),
                hash=extra.get("hash"),
                detail=detail,
            )
        )

    def _get(self, execution_id: str) -> _Exec:
        ex = self._execs.get(execution_id)
        if ex is None:
            raise ExecutionNotFound(execution_id)
        return ex

    def _fence(self, execution_id: str, attempt: int | None, current: int | None) -> None:
        """Raise StaleAttemptError unless :func:`admits` the call (an unknown execution admits all)."""
        if current is not None and attempt is not None and not admits(current, attempt):
            raise StaleAttemptError(execution_id, attempt, current)

    def _put_history(self, ex: _Exec, blob: _Blob, default_keep: int | None) -> None:
        ex.history[blob.step] = blob
        ex.last_checkpoint_step = blob.step
        keep = ex.checkpoint_retention if ex.checkpoint_retention is not None else default_keep
        for step in retention.steps_to_prune(ex.history, blob.step, keep):
            del ex.history[step]

    def _apply(self, op: WriteOp) -> None:
        now = _now()
        ex = self._execs.get(op.execution_id)
        if ex is None:
            if op.must_exist:
                raise ExecutionGoneError(op.execution_id, op.attempt or 0)
            ex = _Exec(op.execution_id, ExecutionStatus.RUNNING, op.attempt or 1, now, now)
            self._execs[op.execution_id] = ex
        else:
            self._fence(op.execution_id, op.attempt, ex.attempt)
            ex.attempt = max(ex.attempt, op.attempt or 1)
            ex.status = status_after_write(ex.status)
        enc = op.state
        blob = _Blob(op.step, ex.attempt, enc.data, enc.codec, enc.size_bytes, enc.digest, now)
        ex.state = blob
        ex.current_step = op.step
        ex.updated_at = now
        if op.history:
            self._put_history(ex, blob, op.retention)
            self._event(ex, "checkpoint", op.step, size_bytes=enc.size_bytes, hash=enc.hash_hex)

    # -- writes -------------------------------------------------------------------------------
    async def write(self, op: WriteOp) -> None:
        self._apply(op)

    async def write_atomic(self, ops: Sequence[WriteOp]) -> None:
        attempts = {op.execution_id: ex.attempt for op in ops if (ex := self._execs.get(op.execution_id))}
        for op in ops:  # check every fence first: all or nothing
            current = attempts.get(op.execution_id)
            if current is None and op.must_exist:
                raise ExecutionGoneError(op.execution_id, op.attempt or 0)
            self._fence(op.execution_id, op.attempt, current)
            attempts[op.execution_id] = max(current or 1, op.attempt or 1)
        for op in ops:
            self._apply(op)

    # -- executions ---------------------------------------------------------------------------
    async def start_execution(
        self, execution_id: str, attempt: int, labels: dict[str, str] | None, checkpoint_retention: int | None
    ) -> Execution:
        return self._start(None, execution_id, attempt, labels, checkpoint_retention)

    async def start_execution_by(
        self,
        worker: Worker,
        execution_id: str,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
    ) -> Execution:
        return self._start(worker, execution_id, attempt, labels, checkpoint_retention)

    def _start(
        self,
        worker: Worker | None,
        execution_id: str,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
    ) -> Execution:
        now = _now()
        ex = self._execs.get(execution_id)
        if ex is None:
            ex = _Exec(execution_id, ExecutionStatus.RUNNING, attempt, now, now)
            self._execs[execution_id] = ex
        else:
            ex.attempt = max(ex.attempt, attempt)
            ex.status = ExecutionStatus.RUNNING
            ex.finished_at = None
            ex.error = None
            ex.updated_at = now
        if labels is not None:
            ex.labels = dict(labels)
        if checkpoint_retention is not None:
            ex.checkpoint_retention = checkpoint_retention
        ex.worker_id, ex.worker_instance = (
            (None, None) if worker is None else (worker.worker_id, worker.instance)
        )
        self._event(ex, "started", ex.current_step)
        return ex.model()

    async def finish(
        self, execution_id: str, status: ExecutionStatus, error: str | None, attempt: int | None
    ) -> Execution:
        ex = self._get(execution_id)
        self._fence(execution_id, attempt, ex.attempt)
        self._finish(ex, status, error)
        return ex.model()

    def _finish(self, ex: _Exec, status: ExecutionStatus, error: str | None) -> None:
        now = _now()
        ex.status = status
        ex.error = error
        ex.finished_at = now
        ex.updated_at = now
        self._event(ex, status.value, ex.current_step, detail={"error": error} if error else {})

    async def load(self, execution_id: str) -> StoredState | None:
        ex = self._execs.get(execution_id)
        if ex is None or ex.state is None:
            return None
        s = ex.state
        raw = verified_json(execution_id, s.step, s.digest, lambda: codec.decode_json_bytes(s.data, s.codec))
        return StoredState(execution_id, s.step, raw, codec.JSON, s.attempt)

    async def get_execution(self, execution_id: str) -> Execution | None:
        ex = self._execs.get(execution_id)
        return None if ex is None else ex.model()

    async def query(
        self,
        statuses: list[ExecutionStatus] | None,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[Execution]:
        found = [
            ex
            for ex in self._execs.values()
            if (statuses is None or ex.status in statuses)
            and (start_time is None or ex.created_at >= start_time)
            and (end_time is None or ex.created_at <= end_time)
        ]
        found.sort(key=lambda ex: (ex.created_at, ex.execution_id))
        return [ex.model() for ex in found[:limit]]

    async def delete_execution(self, execution_id: str, keep_snapshots: bool) -> bool:
        existed = self._execs.pop(execution_id, None) is not None
        if not keep_snapshots:
            for key in [k for k in self._snapshots if k[0] == execution_id]:
                del self._snapshots[key]
        return existed

    async def rename_execution(self, execution_id: str, new_id: str) -> Execution:
        ex = self._get(execution_id)
        if new_id in self._execs:
            raise InvalidArgumentError(f"execution {new_id!r} exists already")
        del self._execs[execution_id]
        ex.execution_id = new_id
        ex.events = [event.model_copy(update={"execution_id": new_id}) for event in ex.events]
        ex.updated_at = _now()
        self._execs[new_id] = ex
        self._event(ex, "renamed", ex.current_step, detail={"from": execution_id})
        return ex.model()

    async def cleanup(self, cutoff: datetime, statuses: list[ExecutionStatus]) -> int:
        doomed = [
            ex.execution_id
            for ex in self._execs.values()
            if ex.status in statuses and ex.finished_at is not None and ex.finished_at < cutoff
        ]
        for execution_id in doomed:
            await self.delete_execution(execution_id, keep_snapshots=False)
        return len(doomed)

    async def claim_recoverable(self, stale_before_seconds: float, limit: int) -> list[Execution]:
        return self._claim(None, stale_before_seconds, limit)

    async def claim_recoverable_by(
        self, worker: Worker, stale_before_seconds: float, limit: int
    ) -> list[Execution]:
        return self._claim(worker, stale_before_seconds, limit)

    def _claimable(self, ex: _Exec, worker: Worker | None, horizon: datetime) -> bool:
        """CLAIM's rule (postgres_sql.py): the claimer's own earlier instance's run at once, any other
        when idle past ``horizon`` and not run by a live instance."""
        if ex.status not in (ExecutionStatus.RUNNING, ExecutionStatus.RECOVERING):
            return False
        if worker is not None and ex.worker_id == worker.worker_id and ex.worker_instance != worker.instance:
            return True
        if ex.updated_at > horizon:
            return False
        held = None if ex.worker_id is None else self._leases.get(ex.worker_id)
        if worker is None or held is None or held.worker.instance != ex.worker_instance:
            return True
        return held.worker.instance == worker.instance or not is_live(held.lease(), worker)

    def _claim(self, worker: Worker | None, stale_before_seconds: float, limit: int) -> list[Execution]:
        now = _now()
        horizon = now - timedelta(seconds=stale_before_seconds)
        found: list[Execution] = []
        for ex in sorted(self._execs.values(), key=lambda e: e.updated_at):
            if len(found) >= limit:
                break
            if self._claimable(ex, worker, horizon):
                if worker is not None:
                    ex.worker_id, ex.worker_instance = worker.worker_id, worker.instance
                if ex.attempt >= MAX_ATTEMPT:
                    self._finish(ex, ExecutionStatus.FAILED, ATTEMPTS_EXHAUSTED)
                else:
                    ex.status = ExecutionStatus.RECOVERING
                    ex.attempt += 1
                    ex.updated_at = now
                    self._event(ex, "recovering", ex.last_checkpoint_step)
                found.append(ex.model())
        return claimed_only(found)

    async def hold_worker_lease(self, worker: Worker, lease_seconds: float) -> None:
        held = self._leases.get(worker.worker_id)
        taken_over(worker.worker_id, None if held is None else held.lease(), worker)
        self._leases[worker.worker_id] = _Held(worker, _now() + timedelta(seconds=lease_seconds))

    async def release_worker_lease(self, worker: Worker) -> None:
        held = self._leases.get(worker.worker_id)
        if held is not None and held.worker.instance == worker.instance:
            del self._leases[worker.worker_id]

    async def fallback_checkpoint(self, execution_id: str, bad_step: int) -> Checkpoint | None:
        ex = self._get(execution_id)
        if ex.current_step != bad_step:  # moved on since the corrupt read: nothing to rewind
            return None
        for step in sorted((s for s in ex.history if s <= bad_step), reverse=True):
            try:
                found = _checkpoint(execution_id, ex.history[step])
            except CorruptCheckpointError:
                continue
            ex.state = ex.history[step]
            ex.current_step = ex.last_checkpoint_step = step
            ex.updated_at = _now()
            self._event(ex, CORRUPT_FALLBACK, step, detail={"bad_step": bad_step, "used_step": step})
            return found
        return None

    # -- history and audit --------------------------------------------------------------------
    async def get_history(self, execution_id: str, after_step: int | None, limit: int) -> list[Checkpoint]:
        ex = self._get(execution_id)
        steps = sorted(s for s in ex.history if after_step is None or s > after_step)[:limit]
        return [_checkpoint(execution_id, ex.history[s]) for s in steps]

    async def get_checkpoint(self, execution_id: str, step: int | None) -> Checkpoint | None:
        ex = self._get(execution_id)
        key = ex.last_checkpoint_step if step is None else step
        blob = None if key is None else ex.history.get(key)
        return None if blob is None else _checkpoint(execution_id, blob)

    async def get_audit(self, execution_id: str, after_seq: int | None, limit: int) -> list[AuditEvent]:
        ex = self._get(execution_id)
        return [e for e in ex.events if after_seq is None or e.seq > after_seq][:limit]

    # -- snapshots ----------------------------------------------------------------------------
    async def create_snapshot(self, execution_id: str, name: str, step: int | None) -> Snapshot:
        ex = self._get(execution_id)
        if step is None:
            if ex.state is None:
                raise CheckpointNotFound(execution_id, None)
            source = ex.state
        else:
            found = ex.history.get(step)
            if found is None:
                raise CheckpointNotFound(execution_id, step)
            source = found
        blob = _Blob(
            source.step, source.attempt, source.data, source.codec, source.size_bytes, source.digest, _now()
        )
        self._snapshots[(execution_id, name)] = blob
        self._event(
            ex,
            "snapshot",
            blob.step,
            size_bytes=blob.size_bytes,
            hash=blob.digest.hex(),
            detail={"snapshot": name},
        )
        return _snapshot(execution_id, name, blob)

    async def get_snapshot(self, execution_id: str, name: str) -> Snapshot | None:
        blob = self._snapshots.get((execution_id, name))
        return None if blob is None else _snapshot(execution_id, name, blob)

    async def load_snapshot_state(self, execution_id: str, name: str) -> Any:
        blob = self._snapshots.get((execution_id, name))
        if blob is None:
            raise SnapshotNotFound(execution_id, name)
        return blob.state(execution_id)

    async def list_snapshots(self, execution_id: str) -> list[Snapshot]:
        found = [(n, b) for (e, n), b in self._snapshots.items() if e == execution_id]
        found.sort(key=lambda nb: (nb[1].created_at, nb[0]))
        return [_snapshot(execution_id, n, b) for n, b in found]

    async def delete_snapshot(self, execution_id: str, name: str) -> bool:
        blob = self._snapshots.pop((execution_id, name), None)
        ex = self._execs.get(execution_id)
        if blob is not None and ex is not None:
            self._event(ex, "snapshot_deleted", blob.step, detail={"snapshot": name})
        return blob is not None

    async def restore_snapshot(self, execution_id: str, name: str, attempt: int | None) -> Checkpoint:
        """A rewind (later history dropped) and then a history write of the snapshot, as PostgreSQL."""
        snap = self._snapshots.get((execution_id, name))
        if snap is None:
            raise SnapshotNotFound(execution_id, name)
        snap.state(execution_id)  # a corrupt snapshot is refused before anything changes
        ex = self._execs.get(execution_id)
        self._fence(execution_id, attempt, None if ex is None else ex.attempt)
        if ex is not None:
            for later in [s for s in ex.history if s > snap.step]:
                del ex.history[later]
        state = codec.EncodedState(snap.data, snap.codec, snap.size_bytes, snap.digest)
        self._apply(WriteOp(execution_id, snap.step, state, attempt, True, self._config.checkpoint_retention))
        ex = self._execs[execution_id]
        size, digest = state.size_bytes, state.hash_hex
        self._event(ex, "restore", snap.step, size_bytes=size, hash=digest, detail={"snapshot": name})
        return _checkpoint(execution_id, ex.history[snap.step])

    # -- housekeeping -------------------------------------------------------------------------
    async def counts(self) -> StoreCounts:
        total = len(self._execs)
        active = sum(1 for ex in self._execs.values() if ex.status in ACTIVE_STATUSES)
        checkpoints = sum(1 for ex in self._execs.values() for e in ex.events if e.kind == "checkpoint")
        size = sum(
            (ex.state.size_bytes if ex.state else 0) + sum(len(b.data) for b in ex.history.values())
            for ex in self._execs.values()
        )
        size += sum(len(b.data) for b in self._snapshots.values())
        return StoreCounts(total, active, checkpoints, size)

    # -- forks --------------------------------------------------------------------------------
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
        if new_id in self._execs:
            raise InvalidArgumentError(f"execution {new_id!r} exists already")
        detail: dict[str, Any] = {"execution": source_id}
        if source.snapshot is not None:
            found = self._snapshots.get((source_id, source.snapshot))
            if found is None:
                raise SnapshotNotFound(source_id, source.snapshot)
            detail["snapshot"] = source.snapshot
        else:
            run = self._get(source_id)
            step = run.last_checkpoint_step if source.step is None else source.step
            found = None if step is None else run.history.get(step)
            if found is None:
                raise CheckpointNotFound(source_id, source.step)
        found.state(source_id)  # verified before the copy, as PostgreSQL
        now = _now()
        blob = _Blob(found.step, attempt, found.data, found.codec, found.size_bytes, found.digest, now)
        ex = _Exec(new_id, ExecutionStatus.RUNNING, attempt, now, now, blob.step, blob.step)
        ex.labels, ex.checkpoint_retention = dict(labels or {}), checkpoint_retention
        ex.state, ex.history = blob, {blob.step: blob}
        if worker is not None:
            ex.worker_id, ex.worker_instance = worker.worker_id, worker.instance
        self._execs[new_id] = ex
        size, digest = blob.size_bytes, blob.digest.hex()
        detail["step"] = blob.step
        self._event(ex, "forked", blob.step, size_bytes=size, hash=digest, detail=detail)
        self._event(ex, "checkpoint", blob.step, size_bytes=size, hash=digest)
        return ex.model()
