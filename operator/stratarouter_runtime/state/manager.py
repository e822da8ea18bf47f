""":class:`StateManager`, the SDK's facade: validate, encode, route to a backend.

The write path is kept lean on purpose: arguments are checked with plain ``isinstance`` tests, the
state is encoded to JSON once (orjson), and the backend sends one statement per write; pydantic
only builds the records returned by reads.
"""

from __future__ import annotations

import asyncio
import inspect
import itertools
import logging
import time
from collections.abc import Callable, Iterable, Sequence
from datetime import UTC, datetime, timedelta
from types import TracebackType
from typing import Any, Self

from stratarouter_runtime.state import validation as check
from stratarouter_runtime.state.backends import ALIASES, create_backend
from stratarouter_runtime.state.backends.base import ForkSource, StateBackend, WriteOp
from stratarouter_runtime.state.batching import GroupCommitter, WriteBuffer
from stratarouter_runtime.state.codec import StateCodec, decode
from stratarouter_runtime.state.config import StateConfig, config_from_env, environ
from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    CorruptCheckpointError,
    ExecutionNotFound,
    InvalidArgumentError,
    SnapshotNotFound,
    StateError,
)
from stratarouter_runtime.state.integrity import PREVIOUS
from stratarouter_runtime.state.models import (
    FINAL_STATUSES,
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Metrics,
    Snapshot,
)
from stratarouter_runtime.state.pod_contract import run_identity
from stratarouter_runtime.state.retention import is_history_step
from stratarouter_runtime.state.stopping import DEFAULT_SIGNALS, StopSignals
from stratarouter_runtime.state.transaction import Transaction
from stratarouter_runtime.state.worker import Worker, default_worker_id, held_here

log = logging.getLogger(__name__)

REMEMBERED_ATTEMPTS = 100_000
"""How many executions' attempts a manager remembers for default fencing (the oldest are forgotten)."""

ResumeCallback = Callable[[Execution], Any]
"""Called with each recovered execution; may be a plain function or a coroutine function."""

_unnamed_managers = itertools.count(1)
"""Numbers the managers of this process built without ``worker_id=`` (their default ids differ)."""


class StateManager:
    """Persistent execution state with crash recovery. Use as ``async with StateManager(...) as state``.

    ``StateManager()`` is the in-memory store; ``StateManager(backend="postgresql", db_url=...)``
    (or ``db_url=`` alone) is PostgreSQL, connected lazily on first use; ``StateManager.from_env()``
    reads STRATA_* variables. One instance is safe to share by many concurrent tasks.

    Writes (``save``, ``checkpoint``, transactions) are durable when they return, unless
    ``batch_writes=True``: then a write returns once buffered, and a crash (SIGKILL, OOM, power loss)
    loses what was buffered since the last flush: at most ``batch_size`` writes or
    ``flush_interval_ms`` worth of them. Nothing else loses them: a flush that fails or is cancelled
    keeps them for the next one. ``flush()``, ``close()`` and leaving ``async with`` flush; reads
    flush this manager's buffer first (see :mod:`stratarouter_runtime.state.batching`).
    Every write takes ``attempt=``; a write older than the execution's current attempt raises
    :class:`~stratarouter_runtime.state.errors.StaleAttemptError` (fencing). Without ``attempt=``
    a write is fenced by default: it carries the attempt this manager started or claimed for that
    execution (``start_execution``, ``recover_all``), else the manager's own ``attempt``
    (``STRATA_ATTEMPT`` under ``from_env``); only an execution this manager never started nor claimed,
    with no manager ``attempt``, is written unfenced. An explicit ``attempt=`` always wins. A manager
    never re-creates a run it started or claimed: once that run is deleted or renamed, its writes raise
    :class:`~stratarouter_runtime.state.errors.ExecutionGoneError`.
    """

    def __init__(
        self,
        backend: str | StateBackend | None = None,
        db_url: str | None = None,
        *,
        execution_id: str | None = None,
        attempt: int | None = None,
        resume_step: int | None = None,
        on_recover: ResumeCallback | None = None,
        config: StateConfig | None = None,
        **options: Any,
    ) -> None:
        if config is None:
            name = backend if isinstance(backend, str) else None
            if name is None:
                name = "postgresql" if db_url else "memory"
            if ALIASES.get(name, name) == "postgresql" and not db_url:
                db_url = environ().get("STRATA_DB_URL") or None
                if not db_url:
                    raise InvalidArgumentError("backend 'postgresql' needs db_url= (or STRATA_DB_URL)")
            known = set(StateConfig.__dataclass_fields__)
            unknown = sorted(set(options) - known)
            if unknown:
                raise InvalidArgumentError(f"unknown StateManager option(s): {', '.join(unknown)}")
            config = StateConfig(backend=name, db_url=db_url, **options)
        elif options or db_url:
            raise InvalidArgumentError("pass either config= or individual options, not both")
        self.config = config
        self.execution_id = None if execution_id is None else check.execution_id(execution_id)
        self.attempt = check.optional_attempt(attempt)
        self.resume_step = None if resume_step is None else check.step(resume_step, "resume_step")
        self._on_recover = on_recover
        self._backend: StateBackend = backend if isinstance(backend, StateBackend) else create_backend(config)
        self._codecs = {config.enable_compression: self._new_codec(config.enable_compression)}
        self._interval = config.checkpoint_interval
        self._retention = config.checkpoint_retention
        self._buffer = (
            WriteBuffer(self._backend.write_many, config.batch_size, config.flush_interval_ms)
            if config.batch_writes
            else None
        )
        self._committer = (
            GroupCommitter(self._backend.write, self._backend.write_many, config.max_inflight_batches)
            if config.group_commit and getattr(self._backend, "group_commit", False)
            else None
        )
        self._write_ms_total = 0.0
        self._writes = 0
        self._sweeper: asyncio.Task[None] | None = None
        self._stop = StopSignals()
        self._closed = False
        self._attempts: dict[str, int] = {}
        """The attempt this manager started or claimed, per execution id (see :meth:`_attempt_for`)."""
        worker_id = config.worker_id or default_worker_id(environ(), next(_unnamed_managers))
        self.worker = Worker(worker_id)
        """This manager's worker identity: the runs it starts or claims record it (state/worker.py)."""
        self._lease_renew_at: float | None = None
        """When the lease of the worker id is due for renewal (monotonic; None: not held)."""

    # -- construction -------------------------------------------------------------------------
    @classmethod
    def from_env(cls, **overrides: Any) -> StateManager:
        """Configure from STRATA_* variables.

        Backend: STRATA_API_URL -> ``http`` (the operator's checkpoint API), else STRATA_DB_URL ->
        ``postgresql``, else ``memory``. STRATA_EXECUTION_ID, STRATA_ATTEMPT and STRATA_RESUME_STEP
        (empty on a first run) become ``execution_id``, ``attempt`` and ``resume_step``.
        """
        env = environ()
        run = run_identity(env)
        identity = {
            "execution_id": overrides.pop("execution_id", run.execution_id),
            "attempt": overrides.pop("attempt", run.attempt),
            "resume_step": overrides.pop("resume_step", run.resume_step),
            "on_recover": overrides.pop("on_recover", None),
        }
        return cls(config=config_from_env(env, **overrides), **identity)

    @property
    def backend(self) -> StateBackend:
        """The storage backend (for the operator's checkpoint API and advanced use)."""
        return self._backend

    @property
    def backend_name(self) -> str:
        return self._backend.name

    async def __aenter__(self) -> Self:
        self._start_sweeper()
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def close(self) -> None:
        """Flush buffered writes and release connections. Nothing acknowledged is lost on a clean close.

        Signal handlers installed by :meth:`handle_signals` are restored last, so a second SIGTERM
        during the final flush cannot cut it short.
        """
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        try:
            if self._buffer is not None:
                await self._buffer.close()
            if self._committer is not None:
                await self._committer.drain()
            await self._release_lease()
        finally:
            try:
                await self._backend.close()
            finally:
                self._closed = True
                self._stop.restore()

    # -- stopping cleanly ---------------------------------------------------------------------
    def handle_signals(self, signals: Iterable[int] = DEFAULT_SIGNALS) -> None:
        """Turn SIGTERM and SIGINT (or ``signals``) into a stop request instead of an abrupt exit.

        Kubernetes stops a pod (suspend, eviction, drain, deletion) by sending SIGTERM and, after
        the pod's ``terminationGracePeriodSeconds``, SIGKILL. Unhandled, SIGTERM ends Python wherever
        it is (or, as a container's PID 1, is ignored until the SIGKILL). After this call it only sets
        :attr:`stop_requested` (and wakes :meth:`wait_for_stop`); the workload decides when to act on
        it, typically between two steps: write a last checkpoint and leave the loop::

            async with StateManager.from_env() as state:
                state.handle_signals()
                for step in range(first, steps + 1):
                    current = do_step(step, current)
                    await state.checkpoint(state.execution_id, step, current)
                    if state.stop_requested:  # SIGTERM arrived: step is checkpointed already
                        break  # exit 0 within the grace period; the next attempt resumes after it

        Call it inside the running event loop, in the main thread (``asyncio.run`` does both). The
        handlers do nothing but set the flag, so they never block the loop. Calling it again is
        harmless. :meth:`close` (leaving ``async with``) puts back the handlers found here; the flag
        stays set.
        """
        if self._closed:
            raise StateError("handle_signals() on a closed StateManager")
        self._stop.install(signals)

    @property
    def stop_requested(self) -> bool:
        """True once a signal handled by :meth:`handle_signals` arrived (it stays True)."""
        return self._stop.requested

    async def wait_for_stop(self, seconds: float | None = None) -> bool:
        """Wait until a stop is requested (True) or ``seconds`` pass (False; None: no limit).

        A sleep that a stop request cuts short: ``if await state.wait_for_stop(pause): break``
        between steps instead of ``await asyncio.sleep(pause)``.
        """
        return await self._stop.wait(seconds)

    # -- attempts -----------------------------------------------------------------------------
    def _remember(self, execution_id: str, attempt: int) -> None:
        """This manager now writes ``execution_id`` as ``attempt`` (started, claimed or raised by it)."""
        self._attempts.pop(execution_id, None)
        self._attempts[execution_id] = attempt
        if len(self._attempts) > REMEMBERED_ATTEMPTS:
            del self._attempts[next(iter(self._attempts))]

    def _attempt_for(self, execution_id: str, attempt: int | None) -> int | None:
        """The attempt a write or finish carries: ``attempt=`` if given (validated), else the one this
        manager started or claimed for the execution, else the manager's own (None: unfenced)."""
        remembered = self._attempts.get(execution_id)
        if attempt is None:
            return self.attempt if remembered is None else remembered
        check.attempt(attempt)
        if remembered is not None and attempt > remembered:  # the write raises the stored attempt
            self._remember(execution_id, attempt)
        return attempt

    # -- worker lease -------------------------------------------------------------------------
    async def _hold_lease(self) -> None:
        """Take the worker id's lease, or renew it once a quarter of it has passed (WorkerIdInUseError
        if another live process holds the id)."""
        now = time.monotonic()
        if self._lease_renew_at is not None and now < self._lease_renew_at:
            return
        await self._backend.hold_worker_lease(self.worker, self.config.recovery_timeout)
        held_here(self.worker.instance, True)
        self._lease_renew_at = now + self.config.recovery_timeout / 4

    async def _release_lease(self) -> None:
        """Give the lease up on close; if the store cannot be reached, it simply expires."""
        if self._lease_renew_at is None:
            return
        self._lease_renew_at = None
        held_here(self.worker.instance, False)
        try:
            await self._backend.release_worker_lease(self.worker)
        except StateError as exc:
            log.warning("worker %s: lease not released (%s); it expires", self.worker.worker_id, exc)

    # -- writes -------------------------------------------------------------------------------
    def _make_op(
        self,
        execution_id: str,
        step: int,
        state_data: Any,
        attempt: int | None,
        history: bool | None,
        compress: bool | None = None,
        must_exist: bool = False,
    ) -> WriteOp:
        check.execution_id(execution_id)
        check.step(step)
        must_exist = must_exist or execution_id in self._attempts  # this manager started or claimed it
        attempt = self._attempt_for(execution_id, attempt)
        encoded = self._codec_for(self.config.enable_compression if compress is None else compress).encode(
            state_data
        )
        if history is None:
            history = is_history_step(step, self._interval)
        return WriteOp(execution_id, step, encoded, attempt, history, self._retention, must_exist)

    def _new_codec(self, compress: bool) -> StateCodec:
        cfg = self.config
        return StateCodec(
            compress=compress, threshold=cfg.compression_threshold, max_bytes=cfg.max_state_bytes
        )

    def _codec_for(self, compress: bool) -> StateCodec:
        """The configured codec, or (made on first use) the one a ``write(compress=...)`` asks for."""
        found = self._codecs.get(compress)
        if found is None:
            found = self._codecs[compress] = self._new_codec(compress)
        return found

    async def _submit(self, op: WriteOp) -> None:
        if self._buffer is not None:  # not durable yet: not counted in avg_checkpoint_ms
            await self._buffer.add(op)
            return
        started = time.perf_counter()
        if self._committer is not None:
            await self._committer.submit(op)
        else:
            await self._backend.write(op)
        self._write_ms_total += (time.perf_counter() - started) * 1000
        self._writes += 1

    async def save(
        self, execution_id: str, step: int, state_data: Any, *, attempt: int | None = None
    ) -> None:
        """Record the current state of ``execution_id`` at ``step`` (an upsert: no growth).

        Every ``checkpoint_interval`` steps (``step % interval == 0``) it also writes a history
        checkpoint. Creates the execution if unknown.
        """
        await self._submit(self._make_op(execution_id, step, state_data, attempt, None))

    async def checkpoint(
        self, execution_id: str, step: int, state_data: Any, *, attempt: int | None = None
    ) -> None:
        """Record the current state *and* a history checkpoint at ``step``."""
        await self._submit(self._make_op(execution_id, step, state_data, attempt, True))

    async def write(
        self,
        execution_id: str,
        step: int,
        state_data: Any,
        *,
        history: bool,
        attempt: int | None = None,
        compress: bool | None = None,
        must_exist: bool = False,
    ) -> int:
        """A save (``history=False``: never a history checkpoint, whatever ``checkpoint_interval``)
        or a checkpoint, compressed as ``compress`` says (None: as configured); returns the state's
        size in bytes (its JSON, before compression).

        For writers that made these choices already: the operator's checkpoint API writes what a
        pod's SDK sent, which applied the pod's own interval and compression settings. ``must_exist``:
        raise :class:`~stratarouter_runtime.state.errors.ExecutionGoneError` instead of creating the
        execution (the API's pods write runs the operator started; one missing was deleted or archived).
        """
        op = self._make_op(execution_id, step, state_data, attempt, history, compress, must_exist)
        await self._submit(op)
        return op.state.size_bytes

    def transaction(self) -> Transaction:
        """All-or-nothing writes: ``async with state.transaction() as txn: await txn.save(...)``."""
        return Transaction(self._make_op, self._commit_atomic)

    async def _commit_atomic(self, ops: Sequence[WriteOp]) -> None:
        await self._flush_pending()
        await self._backend.write_atomic(ops)

    async def flush(self) -> None:
        """Write everything buffered by ``batch_writes`` (no-op otherwise)."""
        if self._buffer is not None:
            await self._buffer.flush()

    async def _flush_pending(self) -> None:
        if self._buffer is not None and len(self._buffer):
            await self._buffer.flush()

    # -- executions ---------------------------------------------------------------------------
    async def start_execution(
        self,
        execution_id: str,
        *,
        attempt: int = 1,
        labels: dict[str, str] | None = None,
        checkpoint_retention: int | None = None,
    ) -> Execution:
        """Create or update an execution as running; its attempt becomes max(stored, attempt).

        Raising the attempt fences every writer of an older attempt. The resulting attempt is
        remembered: this manager's later writes of the execution without ``attempt=`` carry it, so
        they are refused once another process starts or claims a newer attempt. ``checkpoint_retention``
        overrides the manager default for this execution. ``labels=None`` keeps the labels stored
        with it (a restart needs not repeat them); a dict, ``{}`` too, replaces them.
        """
        check.execution_id(execution_id)
        check.attempt(attempt)
        retention = check.positive_int(checkpoint_retention, "checkpoint_retention", allow_none=True)
        valid_labels = check.labels(labels)
        await self._flush_pending()
        await self._hold_lease()
        started = await self._backend.start_execution_by(
            self.worker, execution_id, attempt, valid_labels, retention
        )
        self._remember(execution_id, started.attempt)
        return started

    async def _finish(
        self, execution_id: str, status: ExecutionStatus, error: str | None, attempt: int | None
    ) -> Execution:
        check.execution_id(execution_id)
        attempt = self._attempt_for(execution_id, attempt)
        await self._flush_pending()
        return await self._backend.finish(execution_id, status, error, attempt)

    async def complete(self, execution_id: str, *, attempt: int | None = None) -> Execution:
        """Mark the execution completed."""
        return await self._finish(execution_id, ExecutionStatus.COMPLETED, None, attempt)

    async def fail(
        self, execution_id: str, error: str | None = None, *, attempt: int | None = None
    ) -> Execution:
        """Mark the execution failed, with an error message."""
        if error is not None and not isinstance(error, str):
            error = repr(error)  # type: ignore[unreachable]  # callers pass exceptions too
        if error is not None:
            check.text(error, "error")
        return await self._finish(execution_id, ExecutionStatus.FAILED, error, attempt)

    async def cancel(self, execution_id: str, *, attempt: int | None = None) -> Execution:
        """Mark the execution cancelled."""
        return await self._finish(execution_id, ExecutionStatus.CANCELLED, None, attempt)

    async def load(self, execution_id: str) -> Any:
        """The newest state of ``execution_id``; raises ExecutionNotFound if nothing was saved.

        The state is verified against its recorded sha256: CorruptCheckpointError if it does not match,
        or, with ``on_corrupt="previous"``, the newest checkpoint that does. That checkpoint becomes the
        run's current state in the same store call, so ``resume_step`` names it and a resume continues
        after it, not after the bad step (history and attempt stay; a ``corrupt_fallback`` audit event
        names both steps).
        """
        check.execution_id(execution_id)
        await self._flush_pending()
        try:
            stored = await self._backend.load(execution_id)
        except CorruptCheckpointError as exc:
            if self.config.on_corrupt != PREVIOUS:
                raise
            return (await self.fall_back(exc)).state_data
        if stored is None:
            raise ExecutionNotFound(execution_id)
        return decode(stored.data, stored.codec)

    async def fall_back(self, error: CorruptCheckpointError) -> Checkpoint:
        """The checkpoint ``on_corrupt="previous"`` resumes from after ``error`` (the current state was
        corrupt), made the run's current state (see :meth:`load`); re-raises ``error`` if there is none.
        Also for the checkpoint API, which answers a pod's load from the stored bytes."""
        if error.step is not None:
            used = await self._backend.fallback_checkpoint(error.execution_id, error.step)
            if used is not None:
                log.warning(
                    "execution %s: %s; resuming from checkpoint %d", error.execution_id, error, used.step
                )
                return used
        raise error

    async def get_execution(self, execution_id: str) -> Execution | None:
        check.execution_id(execution_id)
        await self._flush_pending()
        return await self._backend.get_execution(execution_id)

    async def query(
        self,
        status: str | ExecutionStatus | Iterable[str | ExecutionStatus] | None = None,
        start_time: datetime | None = None,
        end_time: datetime | None = None,
        limit: int = 100,
    ) -> list[Execution]:
        """Executions by status and creation time (inclusive bounds; naive datetimes are UTC), oldest
        first."""
        statuses = check.statuses(status)
        start = check.utc(start_time, "start_time")
        end = check.utc(end_time, "end_time")
        await self._flush_pending()
        return await self._backend.query(statuses, start, end, check.limit(limit))

    async def delete_execution(self, execution_id: str, *, keep_snapshots: bool = False) -> bool:
        """Remove an execution's state, history and audit trail (and snapshots unless kept)."""
        check.execution_id(execution_id)
        await self._flush_pending()
        self._attempts.pop(execution_id, None)  # a new run under this id starts unfenced
        return await self._backend.delete_execution(execution_id, keep_snapshots)

    async def rename_execution(self, execution_id: str, new_id: str) -> Execution:
        """Move an execution's current state, history and audit trail to the free id ``new_id``, e.g. to
        archive a finished run so its id can start a new one empty.

        Snapshots stay with ``execution_id``: they are named by it, and a new run under it may restore
        them. Writes fenced on the old id's attempt (this manager's among them) are refused from now on
        with :class:`~stratarouter_runtime.state.errors.ExecutionGoneError`.
        """
        check.execution_id(execution_id)
        check.execution_id(new_id, "new_id")
        if new_id == execution_id:
            raise InvalidArgumentError(f"new_id must differ from execution_id, both are {new_id!r}")
        await self._flush_pending()
        renamed = await self._backend.rename_execution(execution_id, new_id)
        if (attempt := self._attempts.get(execution_id)) is not None:
            self._remember(new_id, attempt)
        return renamed

    async def fork(
        self,
        source_id: str,
        new_id: str,
        step: int | None = None,
        *,
        snapshot: str | None = None,
        attempt: int = 1,
        labels: dict[str, str] | None = None,
        checkpoint_retention: int | None = None,
    ) -> Execution:
        """Start the new execution ``new_id`` from the history checkpoint of ``source_id`` at ``step``
        (None: its newest), or from its snapshot ``snapshot``; returns the new execution (running,
        ``attempt``). One atomic store call: the state becomes ``new_id``'s current state and first
        history checkpoint, and its audit trail opens with a ``forked`` event naming the source and
        step. The source is only read. A snapshot's stored copy is used, so it forks a step retention
        has pruned since, or a run deleted with ``keep_snapshots``. ``labels`` and
        ``checkpoint_retention`` are the new run's own, and this manager's worker is its worker, as in
        :meth:`start_execution`.

        Refused: ``new_id`` exists (InvalidArgumentError), the source is missing (ExecutionNotFound,
        SnapshotNotFound) or has no checkpoint at ``step``, never written or pruned by retention
        (CheckpointNotFound), or its state fails its sha256 (CorruptCheckpointError; no run is made).
        """
        check.execution_id(source_id)
        check.execution_id(new_id, "new_id")
        if step is not None:
            check.step(step)
            if snapshot is not None:
                raise InvalidArgumentError("fork from a step or from a snapshot, not both")
        if snapshot is not None:
            check.snapshot_name(snapshot)
        check.attempt(attempt)
        retention = check.positive_int(checkpoint_retention, "checkpoint_retention", allow_none=True)
        valid_labels = check.labels(labels)
        await self._flush_pending()
        source = ForkSource(step=step, snapshot=snapshot)
        forked = await self._backend.fork_execution(
            source_id, new_id, source, attempt, valid_labels, retention, self.worker
        )
        self._remember(new_id, forked.attempt)
        return forked

    async def cleanup(
        self,
        older_than_days: float = 30,
        status: str | ExecutionStatus | Iterable[str | ExecutionStatus] | None = None,
    ) -> int:
        """Remove finished executions (completed/failed/cancelled, or ``status``) that finished more than
        ``older_than_days`` ago, with all their state. Returns how many were removed."""
        if (
            isinstance(older_than_days, bool)
            or not isinstance(older_than_days, int | float)
            or older_than_days < 0
        ):
            raise InvalidArgumentError(f"older_than_days must be a number >= 0, got {older_than_days!r}")
        statuses = check.statuses(status) or sorted(FINAL_STATUSES)
        active = [s.value for s in statuses if s not in FINAL_STATUSES]
        if active:
            raise InvalidArgumentError(f"cleanup removes finished executions only; {active} are not final")
        await self._flush_pending()
        cutoff = datetime.now(UTC) - timedelta(days=older_than_days)
        return await self._backend.cleanup(cutoff, statuses)

    # -- history ------------------------------------------------------------------------------
    async def get_history(
        self, execution_id: str, *, after_step: int | None = None, limit: int | None = None
    ) -> list[Checkpoint]:
        """History checkpoints oldest first: all of them by default (read in keyset pages), or one page of
        at most ``limit``; page on with ``after_step=<last step seen>``."""
        check.execution_id(execution_id)
        if after_step is not None:
            check.step(after_step, "after_step")
        await self._flush_pending()
        if limit is not None:
            return await self._backend.get_history(execution_id, after_step, check.limit(limit))
        history: list[Checkpoint] = []
        # Until an empty page: a backend may cap its pages lower (the checkpoint API serves 1,000 at most).
        while page := await self._backend.get_history(execution_id, after_step, check.MAX_LIMIT):
            history += page
            after_step = page[-1].step
        return history

    async def get_latest_checkpoint(self, execution_id: str) -> Checkpoint | None:
        """The checkpoint at ``last_checkpoint_step`` (None if there is none)."""
        check.execution_id(execution_id)
        await self._flush_pending()
        return await self._backend.get_checkpoint(execution_id, None)

    async def get_checkpoint(self, execution_id: str, step: int) -> Checkpoint:
        """The history checkpoint at ``step``; CheckpointNotFound if absent or pruned."""
        check.execution_id(execution_id)
        check.step(step)
        await self._flush_pending()
        found = await self._backend.get_checkpoint(execution_id, step)
        if found is None:
            raise CheckpointNotFound(execution_id, step)
        return found

    async def get_audit(
        self, execution_id: str, *, after_seq: int | None = None, limit: int = 1000
    ) -> list[AuditEvent]:
        """The audit trail, oldest first: one ``checkpoint`` row per checkpoint ever made, plus lifecycle,
        recovery, snapshot and restore events."""
        check.execution_id(execution_id)
        await self._flush_pending()
        return await self._backend.get_audit(execution_id, after_seq, check.limit(limit))

    # -- snapshots ----------------------------------------------------------------------------
    async def create_snapshot(
        self, execution_id: str, snapshot_name: str, step: int | None = None
    ) -> Snapshot:
        """Copy the current state (or the checkpoint at ``step``) under a name; replaces a namesake."""
        check.execution_id(execution_id)
        check.snapshot_name(snapshot_name)
        if step is not None:
            check.step(step)
        await self._flush_pending()
        return await self._backend.create_snapshot(execution_id, snapshot_name, step)

    async def get_snapshot(self, execution_id: str, snapshot_name: str) -> Snapshot | None:
        check.execution_id(execution_id)
        check.snapshot_name(snapshot_name)
        return await self._backend.get_snapshot(execution_id, snapshot_name)

    async def list_snapshots(self, execution_id: str) -> list[Snapshot]:
        check.execution_id(execution_id)
        return await self._backend.list_snapshots(execution_id)

    async def delete_snapshot(self, execution_id: str, snapshot_name: str) -> bool:
        """Delete a snapshot; False if it did not exist."""
        check.execution_id(execution_id)
        check.snapshot_name(snapshot_name)
        return await self._backend.delete_snapshot(execution_id, snapshot_name)

    async def restore_snapshot(
        self, execution_id: str, snapshot_name: str, *, attempt: int | None = None
    ) -> Checkpoint:
        """Make the snapshot the current state and a new history entry at its step.

        History after that step is dropped (the run continues from the snapshot); the audit trail
        keeps a ``restore`` event and every earlier ``checkpoint`` row.
        """
        check.execution_id(execution_id)
        check.snapshot_name(snapshot_name)
        attempt = self._attempt_for(execution_id, attempt)
        await self._flush_pending()
        return await self._backend.restore_snapshot(execution_id, snapshot_name, attempt)

    async def load_snapshot(self, execution_id: str, snapshot_name: str) -> Any:
        """The state stored in a snapshot, without restoring it."""
        snap = await self.get_snapshot(execution_id, snapshot_name)
        if snap is None:
            raise SnapshotNotFound(execution_id, snapshot_name)
        return await self._backend.load_snapshot_state(execution_id, snapshot_name)

    # -- recovery -----------------------------------------------------------------------------
    async def recover_all(
        self, resume: ResumeCallback | None = None, *, limit: int = 1000
    ) -> list[Execution]:
        """Claim executions left running/recovering with no write for ``recovery_timeout`` seconds.

        Each is marked recovering with attempt + 1 (fencing the old process), remembered as this
        manager's attempt of it (its later writes without ``attempt=`` carry it), then passed to
        ``resume`` (sync or async); one already at the highest attempt
        (:data:`~stratarouter_runtime.state.validation.MAX_ATTEMPT`) is marked failed instead.
        Concurrent callers, in other processes too, never claim the same execution twice. Returns
        the claimed executions; if a callback raises, the others still run and the first error is
        raised afterwards.
        """
        check.limit(limit)
        await self._flush_pending()
        await self._hold_lease()
        claimed = await self._backend.claim_recoverable_by(self.worker, self.config.recovery_timeout, limit)
        for execution in claimed:  # this manager now writes them as the attempt it claimed
            self._remember(execution.execution_id, execution.attempt)
        callback = resume or self._on_recover
        first_error: BaseException | None = None
        if callback is not None:
            for execution in claimed:
                try:
                    result = callback(execution)
                    if inspect.isawaitable(result):
                        await result
                except Exception as exc:
                    log.exception("resume callback failed for %s", execution.execution_id)
                    first_error = first_error or exc
        if first_error is not None:
            raise first_error
        return claimed

    def _start_sweeper(self) -> None:
        if self.config.enable_auto_recovery and self._on_recover is not None and self._sweeper is None:
            self._sweeper = asyncio.create_task(self._sweep())

    async def _sweep(self) -> None:
        """Background recovery when ``enable_auto_recovery=True`` and ``on_recover`` is set."""
        while True:
            try:
                await self.recover_all()
            except Exception:
                log.exception("automatic recovery sweep failed")
            await asyncio.sleep(self.config.recovery_timeout / 2)

    # -- monitoring ---------------------------------------------------------------------------
    async def get_metrics(self) -> Metrics:
        await self._flush_pending()
        counts = await self._backend.counts()
        return Metrics(
            total_executions=counts.total_executions,
            active_executions=counts.active_executions,
            total_checkpoints=counts.total_checkpoints,
            storage_mb=round(counts.storage_bytes / (1024 * 1024), 3),
            avg_checkpoint_ms=round(self._write_ms_total / self._writes, 3) if self._writes else 0.0,
        )
