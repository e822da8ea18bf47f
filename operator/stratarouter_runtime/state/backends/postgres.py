"""PostgreSQL backend on asyncpg: a lazily created pool, one round trip per durable write.

* Lazy: no connection until the first call; then the schema is migrated (``auto_migrate``, under an
  advisory lock) or its version checked, and monthly partitions are made ahead when
  ``enable_partitioning`` is on.
* Durable: every write is a single statement committed before the call returns
  (``synchronous_commit`` as the server has it, on by default). Concurrent writes coalesced by the
  manager's group committer, batch flushes and transactions go out as one set-based statement
  (one round trip, one commit); if one of them is fenced, a group-commit or flush batch is replayed
  write by write so only that one fails, while a transaction fails as a whole.
* Lean: the pool is :mod:`.pg_pool` (no reset round trip per call), a write is first sent in the
  form that assumes a new step (no rewrite probe; the full form follows a unique violation), and it
  only runs the retention prune when a retention applies to its execution.
* Small: with compression on, a large ``save()`` is stored as a delta against the newest checkpoint
  (:mod:`.pg_delta`), so a growing state does not leave a dead copy of itself per step.
* Pooler-safe: no session state is relied on across transactions (advisory locks are
  transaction-level); ``statement_cache_size=0`` disables asyncpg's named prepared statements for
  transaction-mode poolers that cannot keep them.
* A lost connection is retried with exponential backoff for ``retry_timeout`` seconds, then
  :class:`StoreUnavailableError`. Retried writes are idempotent on (execution, step) (a write whose
  commit was lost in flight may appear twice in the audit trail).
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from datetime import datetime
from typing import Any, TypeVar, cast

import asyncpg
import orjson

from stratarouter_runtime.state import codec
from stratarouter_runtime.state.backends import pg_delta, pg_partitions
from stratarouter_runtime.state.backends import postgres_sql as sql
from stratarouter_runtime.state.backends.base import (
    ATTEMPTS_EXHAUSTED,
    ForkSource,
    StateBackend,
    StoreCounts,
    StoredState,
    WriteOp,
    claimed_only,
)
from stratarouter_runtime.state.backends.pg_pool import Connection, ConnectionPool
from stratarouter_runtime.state.config import StateConfig
from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    CorruptCheckpointError,
    ExecutionGoneError,
    ExecutionNotFound,
    InvalidArgumentError,
    SnapshotNotFound,
    StaleAttemptError,
    StateError,
    StoreUnavailableError,
    WorkerIdInUseError,
)
from stratarouter_runtime.state.integrity import verified_json, verified_state
from stratarouter_runtime.state.migrations import (
    Conn,
    check_compatible,
    check_version,
    connect,
    current_version,
    migrate,
)
from stratarouter_runtime.state.models import (
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Snapshot,
)
from stratarouter_runtime.state.validation import MAX_ATTEMPT
from stratarouter_runtime.state.worker import Lease, Worker, is_live, taken_over

log = logging.getLogger(__name__)
T = TypeVar("T")

STALE_SQLSTATE = "SR001"
RETAINED_CACHE_SIZE = 100_000
RACE_RETRIES = 3
FALLBACK_PAGE = 100
"""Checkpoints read per round trip while looking for one that verifies (a corrupt state's fallback)."""
PARTITION_CHECK_SECONDS = 3600.0
_RETRYABLE_SQLSTATE_CLASSES = ("08", "57P")  # connection exceptions, operator intervention (shutdown)
_RETRYABLE_SQLSTATES = {"53300", "40001", "40P01"}  # too many connections, serialization, deadlock
_SCHEMA_SQLSTATE_CLASS = "42"  # undefined column, table, function, ...: the schema is not what we know


def _retryable(exc: BaseException) -> bool:
    if isinstance(exc, OSError | asyncio.TimeoutError | asyncpg.exceptions.ConnectionDoesNotExistError):
        return True
    if isinstance(exc, asyncpg.exceptions.InternalClientError):  # protocol state left broken by a lost server
        return True
    if isinstance(exc, asyncpg.exceptions.InterfaceError):
        return "closed" in str(exc) or "connection" in str(exc).lower()
    if isinstance(exc, asyncpg.PostgresError):
        state = exc.sqlstate or ""
        return state in _RETRYABLE_SQLSTATES or state.startswith(_RETRYABLE_SQLSTATE_CLASSES)
    return False


def _stale(exc: asyncpg.PostgresError, execution_id: str, attempt: int | None) -> StaleAttemptError:
    """SR001's error: its detail is the stored attempt, empty when the fenced write found no row."""
    detail = getattr(exc, "detail", None) or ""
    if not detail.isdigit():
        return ExecutionGoneError(execution_id, attempt or 0)
    return StaleAttemptError(execution_id, attempt or 0, int(detail))


def _execution(row: asyncpg.Record) -> Execution:
    labels = row["labels"]
    return Execution.model_construct(
        execution_id=row["id"],
        status=ExecutionStatus(row["status"]),
        current_step=row["current_step"],
        last_checkpoint_step=row["last_checkpoint_step"],
        attempt=row["attempt"],
        created_at=row["created_at"],
        updated_at=row["updated_at"],
        finished_at=row["finished_at"],
        error=row["error"],
        labels=orjson.loads(labels) if labels else {},
        checkpoint_retention=row["checkpoint_retention"],
    )


def _checkpoint(execution_id: str, row: asyncpg.Record) -> Checkpoint:
    """A checkpoint row as read, verified against its sha256 (CorruptCheckpointError)."""
    step = row["step"]
    return Checkpoint.model_construct(
        execution_id=execution_id,
        step=step,
        attempt=row["attempt"],
        timestamp=row["created_at"],
        size_bytes=row["size_bytes"],
        state_data=verified_state(execution_id, step, row["state"], row["codec"], row["hash"]),
    )


async def _verify_fork_source(conn: Conn, source_id: str, source: ForkSource) -> None:
    """The state a fork is about to copy, checked against its sha256 (the fork statement copies the
    bytes as stored): CorruptCheckpointError before anything is written. A missing one is the fork's
    to report."""
    if source.snapshot is None:
        row = await conn.fetchrow(sql.CHECKPOINT_AT, source_id, source.step)
    else:
        row = await conn.fetchrow(sql.SNAPSHOT_STATE, source_id, source.snapshot)
    if row is not None:
        data, codec_name = row["state"], row["codec"]
        verified_json(source_id, row["step"], row["hash"], lambda: codec.decode_json_bytes(data, codec_name))


def _lease(row: asyncpg.Record, unexpired: bool) -> Lease:
    return Lease(row["instance"], row["host"], row["pid"], unexpired)


def _snapshot(row: asyncpg.Record) -> Snapshot:
    return Snapshot.model_construct(
        name=row["name"],
        execution_id=row["execution_id"],
        step=row["step"],
        size_bytes=row["size_bytes"],
        created_at=row["created_at"],
    )


def _args(op: WriteOp) -> tuple[Any, ...]:
    s = op.state
    return (
        op.execution_id,
        op.step,
        op.attempt,
        s.data,
        s.codec,
        s.size_bytes,
        s.digest,
        op.history,
        op.retention,
        op.must_exist,
    )


def _current_json(execution_id: str, row: asyncpg.Record) -> bytes:
    """The JSON of the current state read by LOAD, whole or a delta applied to its base checkpoint,
    verified against the state's sha256 (a missing or changed base fails it too)."""
    data, codec_name, base = row["state"], row["codec"], row["delta_base"]
    if codec_name != pg_delta.DELTA:
        return verified_json(
            execution_id, row["step"], row["hash"], lambda: codec.decode_json_bytes(data, codec_name)
        )
    if base is None:
        raise CorruptCheckpointError(execution_id, row["step"])
    return verified_json(
        execution_id,
        row["step"],
        row["hash"],
        lambda: pg_delta.apply(data, codec.decode_json_bytes(base, row["delta_base_codec"])),
    )


def _columns(ops: Sequence[WriteOp]) -> tuple[list[Any], ...]:
    """Id, step and state columns of ``ops`` as arrays, in the batch statements' parameter order."""
    return (
        [o.execution_id for o in ops],
        [o.step for o in ops],
        [o.state.data for o in ops],
        [o.state.codec for o in ops],
        [o.state.size_bytes for o in ops],
        [o.state.digest for o in ops],
    )


def _batch_args(ops: Sequence[WriteOp]) -> tuple[Any, ...] | None:
    """Fold writes into WRITE_BATCH's arrays, or None when one execution mixes attempts (or must_exist)
    in the batch (then the writes go one statement each, so fencing applies write by write)."""
    last: dict[str, WriteOp] = {}
    fences: dict[str, tuple[int | None, bool]] = {}
    hist_step: dict[str, int] = {}
    for op in ops:
        fence = (op.attempt, op.must_exist)
        if fences.setdefault(op.execution_id, fence) != fence:
            return None
        last[op.execution_id] = op
        if op.history:
            hist_step[op.execution_id] = op.step
    groups = list(last.values())
    ids, steps, data, codecs, sizes, digests = _columns(groups)
    attempts = [o.attempt for o in groups]
    last_history = [hist_step.get(o.execution_id) for o in groups]
    history = _columns([op for op in ops if op.history])
    must_exist = [o.must_exist for o in groups]
    retention = ops[-1].retention
    return (ids, steps, attempts, data, codecs, sizes, digests, last_history, *history, retention, must_exist)


def _one_history_write_each(ops: Sequence[WriteOp]) -> bool:
    """At most one history write per execution: then the batch statement prunes exactly as one
    write does (it keeps the new checkpoint and the N-1 highest others). With several, successive
    writes prune each other (a later rewind or rewrite drops what an earlier write kept), which the
    set-based statement cannot replay, so such a batch with a retention goes write by write."""
    executions = [op.execution_id for op in ops if op.history]
    return len(set(executions)) == len(executions)


def _distinct_steps(ops: Sequence[WriteOp]) -> bool:
    """No history step written twice in the batch (WRITE_BATCH_NEW inserts each as a new row)."""
    steps = [(op.execution_id, op.step) for op in ops if op.history]
    return len(set(steps)) == len(steps)


class PostgresBackend(StateBackend):
    """The durable store; see the module docstring."""

    name = "postgresql"
    group_commit = True
    """The manager may coalesce concurrent writes into :meth:`write_many`."""

    def __init__(self, config: StateConfig) -> None:
        if not config.db_url:
            raise StateError("the postgresql backend needs db_url (or STRATA_DB_URL)")
        self._config = config
        self._dsn = config.db_url
        self._keep = config.checkpoint_retention
        self._pool: ConnectionPool | None = None
        self._retained: dict[str, None] = {}
        self._next_partition_check = 0.0
        self._tasks: set[asyncio.Task[None]] = set()
        self._opening = asyncio.Lock()
        self._deltas = (
            pg_delta.DeltaBases(config.compression_threshold) if config.enable_compression else None
        )

    # -- connection ---------------------------------------------------------------------------
    async def _open(self) -> ConnectionPool:
        async with self._opening:
            if self._pool is not None:
                return self._pool
            cfg = self._config
            pool = ConnectionPool(self._connect, cfg.pool_max_size)
            try:
                conn = await pool.acquire()
                try:
                    if cfg.auto_migrate:
                        applied = await migrate(conn, schema=cfg.db_schema)
                        if applied:
                            log.info("applied %d schema migration(s)", applied)
                    else:
                        await check_version(conn, schema=cfg.db_schema)
                    if cfg.enable_partitioning:
                        await self._ensure_partitions(conn)
                finally:
                    pool.release(conn)
                await pool.fill(cfg.pool_min_size)
            except BaseException:
                await pool.close()
                raise
            self._pool = pool
            return pool

    async def _connect(self) -> Connection:
        cfg = self._config
        conn: Connection = await connect(
            self._dsn,
            cfg.db_schema,
            statement_cache_size=cfg.statement_cache_size,
            timeout=cfg.connect_timeout,
        )
        return conn

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        pool, self._pool = self._pool, None
        if pool is not None:
            await pool.close()

    async def _run(self, fn: Callable[[Conn], Awaitable[T]]) -> T:
        """Run ``fn`` on a pooled connection, retrying lost connections with backoff."""
        deadline = time.monotonic() + self._config.retry_timeout
        delay = 0.05
        if self._config.enable_partitioning and time.monotonic() > self._next_partition_check:
            self._schedule_partition_check()
        while True:
            try:
                pool = self._pool or await self._open()
                conn = await pool.acquire()
                broken = True
                try:
                    result = await fn(conn)
                    broken = False
                    return result
                except Exception as exc:
                    broken = _retryable(exc)  # a broken connection must not go back into the pool
                    raise
                finally:
                    pool.release(conn, discard=broken)
            except Exception as exc:
                if not _retryable(exc):
                    if isinstance(exc, asyncpg.PostgresError) and (exc.sqlstate or "").startswith(
                        _SCHEMA_SQLSTATE_CLASS
                    ):
                        await self._refuse_newer_schema(exc)
                    raise
                if time.monotonic() + delay > deadline:
                    raise StoreUnavailableError(
                        f"PostgreSQL unreachable for {self._config.retry_timeout:g}s: {exc}"
                    ) from exc
                log.warning("database error, retrying in %.2fs: %s", delay, exc)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _refuse_newer_schema(self, exc: asyncpg.PostgresError) -> None:
        """A statement met a schema without something it uses: if a newer release migrated the store
        while this process was running, raise :class:`SchemaTooNewError` (from ``exc``) instead."""
        pool = self._pool
        if pool is None:
            return
        try:
            conn = await pool.acquire()
            try:
                version = await current_version(conn)
            finally:
                pool.release(conn)
        except Exception:
            return  # the original error says more than a failed look-up would
        try:
            check_compatible(version, migrating=True)  # only a newer schema is refused here
        except StateError as newer:
            raise newer from exc

    # -- partitions ---------------------------------------------------------------------------
    async def _ensure_partitions(self, conn: Conn) -> None:
        await pg_partitions.create_ahead(conn, self._config.partitions_ahead)

    def _schedule_partition_check(self) -> None:
        """Hourly, in the background: a long-running process keeps making next months' partitions."""
        first = self._next_partition_check == 0.0
        self._next_partition_check = time.monotonic() + PARTITION_CHECK_SECONDS
        if first:  # _open() makes them on the first connect
            return

        async def check() -> None:
            try:
                await self.ensure_partitions()
            except Exception:
                log.exception("making partitions ahead failed; rows go to the default partition meanwhile")

        task = asyncio.create_task(check())
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def ensure_partitions(self) -> None:
        """Make partitions ahead now (also done on first connect and by ``cleanup``)."""
        await self._run(self._ensure_partitions)

    # -- writes -------------------------------------------------------------------------------
    def _learn(self, execution_ids: Sequence[str]) -> None:
        """Remember executions that have a retention of their own (bounded; oldest forgotten first).

        A write that did not know yet leaves at most its own extra checkpoint, pruned by the next one.
        """
        for execution_id in execution_ids:
            if execution_id not in self._retained:
                if len(self._retained) >= RETAINED_CACHE_SIZE:
                    del self._retained[next(iter(self._retained))]
                self._retained[execution_id] = None

    async def _write_on(self, conn: Conn, op: WriteOp, *, optimistic: bool = True) -> None:
        """One write. ``optimistic``: first as if the step were new (WRITE_NEW, the cheap statement);
        pass False inside a transaction, where its unique violation would abort the transaction."""
        if self._deltas is not None and not op.history and await self._save_delta(conn, op):
            return
        prune = op.history and (op.retention is not None or op.execution_id in self._retained)
        try:
            keep = await self._send_write(conn, op, prune, optimistic)
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == STALE_SQLSTATE:
                raise _stale(exc, op.execution_id, op.attempt) from None
            raise
        self._after_write(op, keep)

    @staticmethod
    async def _send_write(conn: Conn, op: WriteOp, prune: bool, optimistic: bool) -> int | None:
        """The retention that applied to ``op``, written by WRITE_NEW when that is exact (a save) or
        allowed (``optimistic``), else by WRITE, re-sent when it raced another writer of a new step."""
        args = _args(op)
        new, statement = (sql.WRITE_NEW_KEEP, sql.WRITE_KEEP) if prune else (sql.WRITE_NEW, sql.WRITE)
        if optimistic or not op.history:  # a save touches no checkpoint row: WRITE_NEW is exact
            try:
                return cast(int | None, await conn.fetchval(new, *args))
            except asyncpg.UniqueViolationError:  # the step exists: rewrite it below
                if not op.history:
                    raise
        for _ in range(RACE_RETRIES):
            try:
                return cast(int | None, await conn.fetchval(statement, *args))
            except asyncpg.UniqueViolationError:  # raced another writer of this new step: now it exists
                pass
        return cast(int | None, await conn.fetchval(statement, *args))

    def _after_write(self, op: WriteOp, keep: int | None) -> None:
        if keep is not None and op.retention is None:
            self._learn([op.execution_id])
        if op.history and self._deltas is not None:
            self._deltas.remember(op)

    async def _save_delta(self, conn: Conn, op: WriteOp) -> bool:
        """A save as a delta against this execution's newest checkpoint; False: write it whole."""
        assert self._deltas is not None
        delta = self._deltas.encode(op)
        if delta is None:
            return False
        s = op.state
        args = (op.execution_id, op.step, op.attempt, delta.data, pg_delta.DELTA, s.size_bytes, s.digest)
        if await conn.fetchval(sql.SAVE_DELTA, *args, delta.base_step, delta.base_digest):
            return True
        self._deltas.forget(op.execution_id)  # base gone or changed, or a stale attempt: the full write says
        return False

    async def write(self, op: WriteOp) -> None:
        await self._run(lambda conn: self._write_on(conn, op))

    async def _write_batch_on(self, conn: Conn, ops: Sequence[WriteOp]) -> None:
        """All of ``ops`` in one statement (one round trip, atomic), or one by one in a transaction."""
        args = _batch_args(ops)
        for tries_left in range(RACE_RETRIES, -1, -1):
            try:
                await self._write_batch_once(conn, ops, args)
                return
            except asyncpg.UniqueViolationError:  # another writer created one of these steps meanwhile
                if not tries_left:
                    raise

    async def _write_batch_once(
        self, conn: Conn, ops: Sequence[WriteOp], args: tuple[Any, ...] | None
    ) -> None:
        retained = self._retained
        prune = any(op.history and (op.retention is not None or op.execution_id in retained) for op in ops)
        if prune and not _one_history_write_each(ops):
            args = None  # retention applied write by write (see _one_history_write_each)
        try:
            if args is not None:
                rows = None
                if not prune and _distinct_steps(ops):
                    try:
                        rows = await conn.fetch(sql.WRITE_BATCH_NEW, *args)
                    except asyncpg.UniqueViolationError:  # a step exists already: the full statement
                        rows = None
                if rows is None:
                    rows = await conn.fetch(sql.WRITE_BATCH_KEEP if prune else sql.WRITE_BATCH, *args)
                if ops[-1].retention is None:
                    self._learn([r["id"] for r in rows])
                if self._deltas is not None:
                    for op in {op.execution_id: op for op in ops if op.history}.values():
                        self._deltas.remember(op)
            else:
                await conn.executemany(sql.WRITE_KEEP, [_args(op) for op in ops])
        except asyncpg.PostgresError as exc:
            if exc.sqlstate == STALE_SQLSTATE:
                message = str(exc)
                culprit = next((op for op in ops if f"execution {op.execution_id} " in message), ops[0])
                raise _stale(exc, culprit.execution_id, culprit.attempt) from None
            raise

    async def write_many(self, ops: Sequence[WriteOp]) -> list[StateError | None]:
        if not ops:
            return []
        if len(ops) == 1:
            try:
                await self.write(ops[0])
            except StaleAttemptError as exc:
                return [exc]
            return [None]

        async def run(conn: Conn) -> list[StateError | None]:
            try:
                await self._write_batch_on(conn, ops)
            except StaleAttemptError:
                pass
            else:
                return [None] * len(ops)
            results: list[StateError | None] = []  # a refused write: replay one by one, in order
            for op in ops:
                try:
                    await self._write_on(conn, op)
                except StaleAttemptError as exc:
                    results.append(exc)
                else:
                    results.append(None)
            return results

        return await self._run(run)

    async def write_atomic(self, ops: Sequence[WriteOp]) -> None:
        if not ops:
            return
        if len(ops) == 1:
            await self.write(ops[0])
            return
        await self._run(lambda conn: self._write_batch_on(conn, ops))

    # -- executions ---------------------------------------------------------------------------
    async def start_execution(
        self, execution_id: str, attempt: int, labels: dict[str, str] | None, checkpoint_retention: int | None
    ) -> Execution:
        return await self._start(None, execution_id, attempt, labels, checkpoint_retention)

    async def start_execution_by(
        self,
        worker: Worker,
        execution_id: str,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
    ) -> Execution:
        return await self._start(worker, execution_id, attempt, labels, checkpoint_retention)

    async def _start(
        self,
        worker: Worker | None,
        execution_id: str,
        attempt: int,
        labels: dict[str, str] | None,
        checkpoint_retention: int | None,
    ) -> Execution:
        labels_json = None if labels is None else orjson.dumps(labels).decode()
        by = (None, None) if worker is None else (worker.worker_id, worker.instance)
        row = await self._run(
            lambda conn: conn.fetchrow(
                sql.START, execution_id, attempt, labels_json, checkpoint_retention, *by
            )
        )
        assert row is not None
        execution = _execution(row)
        if execution.checkpoint_retention is not None:
            self._learn([execution_id])
        return execution

    async def finish(
        self, execution_id: str, status: ExecutionStatus, error: str | None, attempt: int | None
    ) -> Execution:
        async def run(conn: Conn) -> Execution:
            row = await conn.fetchrow(sql.FINISH, execution_id, status.value, error, attempt)
            if row is not None:
                return _execution(row)
            current = await conn.fetchval(sql.EXISTS, execution_id)
            if current is None:
                raise ExecutionNotFound(execution_id)
            raise StaleAttemptError(execution_id, attempt or 0, current)

        return await self._run(run)

    async def load(self, execution_id: str) -> StoredState | None:
        row = await self._run(lambda conn: conn.fetchrow(sql.LOAD, execution_id))
        if row is None or row["state"] is None:
            return None
        return StoredState(
            execution_id, row["step"], _current_json(execution_id, row), codec.JSON, row["attempt"]
        )

    async def get_execution(self, execution_id: str) -> Execution | None:
        row = await self._run(lambda conn: conn.fetchrow(sql.GET_EXECUTION, execution_id))
        return None if row is None else _execution(row)

    async def query(
        self,
        statuses: list[ExecutionStatus] | None,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[Execution]:
        text, args = self.query_sql(statuses, start_time, end_time, limit)
        rows = await self._run(lambda conn: conn.fetch(text, *args))
        return [_execution(r) for r in rows]

    @staticmethod
    def query_sql(
        statuses: list[ExecutionStatus] | None,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> tuple[str, list[Any]]:
        """The query() statement: only the filters given, so the planner can use the indexes."""
        where: list[str] = []
        args: list[Any] = []
        if statuses is not None:
            args.append([s.value for s in statuses])
            where.append(f"status = ANY(${len(args)}::text[])")
        if start_time is not None:
            args.append(start_time)
            where.append(f"created_at >= ${len(args)}")
        if end_time is not None:
            args.append(end_time)
            where.append(f"created_at <= ${len(args)}")
        args.append(limit)
        clause = f"WHERE {' AND '.join(where)}" if where else ""
        order = f"ORDER BY created_at, id LIMIT ${len(args)}"
        text = f"{sql.EXECUTIONS} {clause} {order}"
        return text, args

    async def delete_execution(self, execution_id: str, keep_snapshots: bool) -> bool:
        if self._deltas is not None:
            self._deltas.forget(execution_id)
        count = await self._run(
            lambda conn: conn.fetchval(sql.DELETE_EXECUTION, execution_id, keep_snapshots)
        )
        return bool(count)

    async def rename_execution(self, execution_id: str, new_id: str) -> Execution:
        if self._deltas is not None:
            self._deltas.forget(execution_id)

        async def run(conn: Conn) -> Execution:
            async with conn.transaction():
                try:
                    moved = await conn.fetchval(sql.RENAME_EXECUTION, execution_id, new_id)
                except asyncpg.UniqueViolationError:
                    raise InvalidArgumentError(f"execution {new_id!r} exists already") from None
                row = await conn.fetchrow(sql.GET_EXECUTION, new_id) if moved else None
                if row is None:
                    raise ExecutionNotFound(execution_id)
                return _execution(row)

        return await self._run(run)

    async def cleanup(self, cutoff: datetime, statuses: list[ExecutionStatus]) -> int:
        names = [s.value for s in statuses]

        async def run(conn: Conn) -> int:
            removed = 0
            if self._config.enable_partitioning:
                removed += await pg_partitions.drop_due_months(conn, cutoff, names)
                await self._ensure_partitions(conn)
            async with conn.transaction():
                removed += int(await conn.fetchval(sql.CLEANUP_ROWS, names, cutoff))
            return removed

        return await self._run(run)

    async def claim_recoverable(self, stale_before_seconds: float, limit: int) -> list[Execution]:
        args: tuple[Any, ...] = (
            float(stale_before_seconds),
            limit,
            MAX_ATTEMPT,
            ATTEMPTS_EXHAUSTED,
            None,
            None,
            [],
        )
        rows = await self._run(lambda conn: conn.fetch(sql.CLAIM, *args))
        return claimed_only([_execution(r) for r in rows])

    async def claim_recoverable_by(
        self, worker: Worker, stale_before_seconds: float, limit: int
    ) -> list[Execution]:
        async def run(conn: Conn) -> list[asyncpg.Record]:
            leases = await conn.fetch(sql.UNEXPIRED_LEASES, worker.instance)
            live = [r["instance"] for r in leases if is_live(_lease(r, True), worker)]
            args = (float(stale_before_seconds), limit, MAX_ATTEMPT, ATTEMPTS_EXHAUSTED)
            rows: list[asyncpg.Record] = await conn.fetch(
                sql.CLAIM, *args, worker.worker_id, worker.instance, live
            )
            return rows

        rows = await self._run(run)
        return claimed_only([_execution(r) for r in rows])

    async def hold_worker_lease(self, worker: Worker, lease_seconds: float) -> None:
        async def run(conn: Conn) -> None:
            for _ in range(RACE_RETRIES):  # another instance may take the id between the two statements
                row = await conn.fetchrow(sql.WORKER_LEASE, worker.worker_id)
                holder = None if row is None else _lease(row, row["unexpired"])
                replaced = taken_over(worker.worker_id, holder, worker)
                lease = (worker.worker_id, worker.instance, worker.host, worker.pid, float(lease_seconds))
                if await conn.fetchval(sql.TAKE_WORKER_LEASE, *lease, replaced) is not None:
                    return
            raise WorkerIdInUseError(worker.worker_id)

        await self._run(run)

    async def release_worker_lease(self, worker: Worker) -> None:
        await self._run(
            lambda conn: conn.execute(sql.RELEASE_WORKER_LEASE, worker.worker_id, worker.instance)
        )

    async def fallback_checkpoint(self, execution_id: str, bad_step: int) -> Checkpoint | None:
        if self._deltas is not None:
            self._deltas.forget(execution_id)

        async def run(conn: Conn) -> Checkpoint | None:
            below = bad_step
            while rows := await conn.fetch(sql.CHECKPOINTS_NEWEST_FIRST, execution_id, below, FALLBACK_PAGE):
                for row in rows:
                    try:
                        found = _checkpoint(execution_id, row)
                    except CorruptCheckpointError:
                        continue
                    rewound = await conn.fetchval(sql.CORRUPT_FALLBACK, execution_id, bad_step, found.step)
                    return None if rewound is None else found
                below = rows[-1]["step"] - 1
            return None

        return await self._run(run)

    async def _require(self, conn: Conn, execution_id: str) -> None:
        if await conn.fetchval(sql.EXISTS, execution_id) is None:
            raise ExecutionNotFound(execution_id)

    # -- history and audit --------------------------------------------------------------------
    async def get_history(self, execution_id: str, after_step: int | None, limit: int) -> list[Checkpoint]:
        async def run(conn: Conn) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(
                sql.HISTORY, execution_id, -1 if after_step is None else after_step, limit
            )
            if not rows:
                await self._require(conn, execution_id)
            return rows

        rows = await self._run(run)
        return [_checkpoint(execution_id, r) for r in rows]

    async def get_checkpoint(self, execution_id: str, step: int | None) -> Checkpoint | None:
        async def run(conn: Conn) -> asyncpg.Record | None:
            row: asyncpg.Record | None = await conn.fetchrow(sql.CHECKPOINT_AT, execution_id, step)
            if row is None:
                await self._require(conn, execution_id)
            return row

        row = await self._run(run)
        return None if row is None else _checkpoint(execution_id, row)

    async def get_audit(self, execution_id: str, after_seq: int | None, limit: int) -> list[AuditEvent]:
        async def run(conn: Conn) -> list[asyncpg.Record]:
            rows: list[asyncpg.Record] = await conn.fetch(
                sql.AUDIT, execution_id, 0 if after_seq is None else after_seq, limit
            )
            if not rows:
                await self._require(conn, execution_id)
            return rows

        rows = await self._run(run)
        return [
            AuditEvent.model_construct(
                execution_id=execution_id,
                seq=r["seq"],
                kind=r["kind"],
                step=r["step"],
                attempt=r["attempt"],
                at=r["at"],
                size_bytes=r["size_bytes"],
                hash=None if r["hash"] is None else bytes(r["hash"]).hex(),
                detail=orjson.loads(r["detail"]) if r["detail"] else {},
            )
            for r in rows
        ]

    # -- snapshots ----------------------------------------------------------------------------
    async def create_snapshot(self, execution_id: str, name: str, step: int | None) -> Snapshot:
        async def run(conn: Conn) -> Snapshot:
            if step is None:
                row = await conn.fetchrow(sql.SNAPSHOT_FROM_CURRENT, execution_id, name)
                if row is None:
                    row = await self._snapshot_resolved(conn, execution_id, name)
            else:
                row = await conn.fetchrow(sql.SNAPSHOT_FROM_STEP, execution_id, name, step)
            if row is None:
                await self._require(conn, execution_id)
                raise CheckpointNotFound(execution_id, step)
            return _snapshot(row)

        return await self._run(run)

    async def _snapshot_resolved(self, conn: Conn, execution_id: str, name: str) -> asyncpg.Record | None:
        """A snapshot of a delta current state: resolved here, stored whole."""
        current = await conn.fetchrow(sql.LOAD, execution_id)
        if current is None or current["codec"] != pg_delta.DELTA:
            return None
        cfg = self._config
        encoder = codec.StateCodec(
            compress=cfg.enable_compression,
            threshold=cfg.compression_threshold,
            max_bytes=cfg.max_state_bytes,
        )
        s = encoder.encode_json(_current_json(execution_id, current))
        args = (current["step"], current["attempt"], s.codec, s.size_bytes, s.digest, s.data)
        row: asyncpg.Record | None = await conn.fetchrow(sql.SNAPSHOT_FROM_VALUES, execution_id, name, *args)
        return row

    async def get_snapshot(self, execution_id: str, name: str) -> Snapshot | None:
        row = await self._run(lambda conn: conn.fetchrow(sql.GET_SNAPSHOT, execution_id, name))
        return None if row is None else _snapshot(row)

    async def load_snapshot_state(self, execution_id: str, name: str) -> Any:
        row = await self._run(lambda conn: conn.fetchrow(sql.SNAPSHOT_STATE, execution_id, name))
        if row is None:
            raise SnapshotNotFound(execution_id, name)
        return verified_state(execution_id, row["step"], row["state"], row["codec"], row["hash"])

    async def list_snapshots(self, execution_id: str) -> list[Snapshot]:
        rows = await self._run(lambda conn: conn.fetch(sql.LIST_SNAPSHOTS, execution_id))
        return [_snapshot(r) for r in rows]

    async def delete_snapshot(self, execution_id: str, name: str) -> bool:
        count = await self._run(lambda conn: conn.fetchval(sql.DELETE_SNAPSHOT, execution_id, name))
        return bool(count)

    async def restore_snapshot(self, execution_id: str, name: str, attempt: int | None) -> Checkpoint:
        if self._deltas is not None:
            self._deltas.forget(execution_id)

        async def run(conn: Conn) -> Checkpoint:
            async with conn.transaction():
                snap = await conn.fetchrow(sql.SNAPSHOT_STATE, execution_id, name)
                if snap is None:
                    raise SnapshotNotFound(execution_id, name)
                step, digest, data = snap["step"], bytes(snap["hash"]), bytes(snap["state"])
                verified_json(
                    execution_id, step, digest, lambda: codec.decode_json_bytes(data, snap["codec"])
                )
                await conn.execute(sql.DROP_LATER_HISTORY, execution_id, step)
                encoded = codec.EncodedState(data, snap["codec"], snap["size_bytes"], digest)
                op = WriteOp(execution_id, step, encoded, attempt, True, self._keep)
                await self._write_on(conn, op, optimistic=False)
                await conn.execute(sql.RESTORE_EVENT, execution_id, step, encoded.size_bytes, digest, name)
                row = await conn.fetchrow(sql.CHECKPOINT_AT, execution_id, step)
                assert row is not None
                return _checkpoint(execution_id, row)

        return await self._run(run)

    # -- housekeeping -------------------------------------------------------------------------
    async def counts(self) -> StoreCounts:
        row = await self._run(lambda conn: conn.fetchrow(sql.COUNTS))
        assert row is not None
        return StoreCounts(row["total"], row["active"], row["checkpoints"], int(row["bytes"]))

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
        labels_json = orjson.dumps(labels or {}).decode()
        statement = sql.FORK_FROM_STEP if source.snapshot is None else sql.FORK_FROM_SNAPSHOT
        where = source.step if source.snapshot is None else source.snapshot
        by = (None, None) if worker is None else (worker.worker_id, worker.instance)
        args = (source_id, new_id, where, attempt, labels_json, checkpoint_retention, *by)

        async def run(conn: Conn) -> Execution:
            async with conn.transaction():
                await _verify_fork_source(conn, source_id, source)
                row = await conn.fetchrow(statement, *args)
            if row is not None:
                return _execution(row)
            if await conn.fetchval(sql.EXISTS, new_id) is not None:
                raise InvalidArgumentError(f"execution {new_id!r} exists already")
            if source.snapshot is not None:
                raise SnapshotNotFound(source_id, source.snapshot)
            await self._require(conn, source_id)
            raise CheckpointNotFound(source_id, source.step)

        execution = await self._run(run)
        if checkpoint_retention is not None:
            self._learn([new_id])
        return execution
