"""The pod-side backend: the SDK's calls become requests to the operator's checkpoint API.

Inside an Execution's pod ``StateManager.from_env()`` picks this backend when ``STRATA_API_URL`` is
set. The pod never sees database credentials: it proves who it is with its projected
service-account token, read from ``STRATA_TOKEN_FILE`` on every request (the kubelet rotates it).
The API decides which execution and attempt the pod writes; this backend can only touch the
execution named by ``STRATA_EXECUTION_ID``.

Connection errors and 503s are retried with capped exponential backoff for ``retry_timeout``
seconds (writes are idempotent on ``(execution, step)``, so a retried write never doubles); a batch
flush shares one such window between its writes, see :meth:`HttpBackend.write_many`. A 403
saying the pod is not yet the Execution's current pod is retried briefly too: right after a
recovery the operator may create the pod a moment before it records it in the status.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path
from typing import Any, NoReturn

import aiohttp
import orjson

from stratarouter_runtime.state import codec
from stratarouter_runtime.state.backends.base import (
    ForkSource,
    StateBackend,
    StoreCounts,
    StoredState,
    WriteOp,
)
from stratarouter_runtime.state.config import StateConfig
from stratarouter_runtime.state.errors import (
    ExecutionNotFound,
    InvalidArgumentError,
    StaleAttemptError,
    StateError,
    StoreUnavailableError,
)
from stratarouter_runtime.state.integrity import ON_CORRUPT_PARAM
from stratarouter_runtime.state.models import (
    AuditEvent,
    Checkpoint,
    Execution,
    ExecutionStatus,
    Snapshot,
)
from stratarouter_runtime.state.pod_contract import run_identity, token_file
from stratarouter_runtime.state.wire import JSON, Route, execution_from_wire, from_wire
from stratarouter_runtime.state.worker import Worker

NOT_CURRENT_GRACE_SECONDS = 10.0
"""How long a 403 NotCurrentPod is retried (status names a new pod just after it is created)."""
REQUEST_TIMEOUT_SECONDS = 30.0


class HttpBackend(StateBackend):
    """Talks to ``POST /v1/checkpoint`` & co. of the operator's checkpoint API for its own execution."""

    name = "http"

    def __init__(self, config: StateConfig) -> None:
        if not config.api_url:
            raise InvalidArgumentError("the http backend needs api_url (STRATA_API_URL)")
        extra = dict(config.extra)
        self._base = config.api_url.rstrip("/")
        self._compress = config.enable_compression  # the pod's setting: the operator's store applies it
        self._on_corrupt = config.on_corrupt  # likewise: the API falls back in the store, not here
        run = run_identity(os.environ)
        self._token_file = Path(str(extra.get("token_file") or token_file(os.environ)))
        self._execution_id = str(extra.get("execution_id") or run.execution_id or "")
        attempt = extra.get("attempt") or run.attempt
        self._attempt = int(attempt) if attempt is not None else None
        self._retry_timeout = config.retry_timeout
        self._not_current_grace = float(extra.get("not_current_grace_seconds", NOT_CURRENT_GRACE_SECONDS))
        self._session: aiohttp.ClientSession | None = None

    # -- plumbing ---------------------------------------------------------------------------------
    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def _http(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            self._session = aiohttp.ClientSession(
                timeout=aiohttp.ClientTimeout(total=REQUEST_TIMEOUT_SECONDS),
                json_serialize=lambda v: orjson.dumps(v).decode(),
            )
        return self._session

    def _token(self) -> str:
        try:
            token = self._token_file.read_text().strip()
        except OSError as exc:
            raise StateError(
                f"cannot read the pod's token from {self._token_file} ({exc.strerror}); is this process "
                "running in a pod created by the StrataRouter operator (STRATA_TOKEN_FILE)?"
            ) from exc
        if not token:
            raise StateError(f"the token file {self._token_file} is empty")
        return token

    def _own(self, execution_id: str) -> None:
        if self._execution_id and execution_id != self._execution_id:
            raise StateError(
                f"this pod may only use its own execution {self._execution_id!r} through the checkpoint "
                f"API, not {execution_id!r}"
            )

    async def _call(
        self,
        method: str,
        path: str,
        *,
        body: bytes | None = None,
        params: dict[str, str] | None = None,
        deadline: float | None = None,
    ) -> tuple[int, dict[str, Any]]:
        """One API call with retries until ``deadline`` (monotonic; default ``retry_timeout`` from now);
        returns (status, decoded JSON) for any answer that is not retried."""
        started = time.monotonic()
        if deadline is None:
            deadline = started + self._retry_timeout
        delay = 0.05
        while True:
            headers = {"Authorization": f"Bearer {self._token()}", "Accept": JSON}
            if body is not None:
                headers["Content-Type"] = JSON
            problem: str
            try:
                async with self._http().request(
                    method, self._base + path, data=body, params=params, headers=headers
                ) as resp:
                    raw = await resp.read()
                    status = resp.status
            except (aiohttp.ClientConnectionError, TimeoutError) as exc:
                problem = f"cannot reach the checkpoint API at {self._base}: {exc!r}"
            else:
                try:
                    decoded = orjson.loads(raw) if raw else {}
                except orjson.JSONDecodeError:
                    decoded = {"error": "BadResponse", "message": raw[:200].decode(errors="replace")}
                if not isinstance(decoded, dict):
                    decoded = {"value": decoded}
                elapsed = time.monotonic() - started
                if status in (502, 503, 504):
                    problem = f"checkpoint API unavailable ({status}): {decoded.get('message', '')}"
                elif (
                    status == 403
                    and decoded.get("error") == "NotCurrentPod"
                    and elapsed < self._not_current_grace
                ):
                    problem = str(decoded.get("message"))
                else:
                    return status, decoded
            if time.monotonic() + delay > deadline:
                raise StoreUnavailableError(f"{problem} (gave up after {self._retry_timeout:g}s)")
            await asyncio.sleep(delay * (0.5 + random.random()))
            delay = min(delay * 2, 2.0)

    def _raise(
        self, status: int, answer: dict[str, Any], execution_id: str, step: int | None = None
    ) -> NoReturn:
        """Turn an error answer into the SDK's exception."""
        reason = str(answer.get("error", ""))
        message = str(answer.get("message", "")) or f"HTTP {status}"
        known = from_wire(status, answer, execution_id)
        if isinstance(known, StaleAttemptError) and not known.attempt:
            known.attempt = self._attempt or 0  # an older API does not say which attempt was refused
        if known is not None:
            raise known
        if status == 404:
            raise ExecutionNotFound(execution_id)
        if status in (401, 403):
            raise StateError(f"the checkpoint API refused this pod ({status} {reason}): {message}")
        if status == 400:
            raise InvalidArgumentError(message)
        raise StateError(f"checkpoint API error {status} {reason}: {message}")

    # -- writes -----------------------------------------------------------------------------------
    async def write(self, op: WriteOp, deadline: float | None = None) -> None:
        self._own(op.execution_id)
        state_json = codec.decode_json_bytes(op.state.data, op.state.codec)
        compress = b"true" if self._compress else b"false"
        body = b'{"step":%d,"compress":%b,"state":%b}' % (op.step, compress, state_json)
        path = Route.CHECKPOINT if op.history else Route.SAVE
        status, answer = await self._call("POST", path, body=body, deadline=deadline)
        if status != 200:
            self._raise(status, answer, op.execution_id, op.step)

    async def write_many(self, ops: Sequence[WriteOp]) -> list[StateError | None]:
        """The writes in order, one request each, within ONE retry window for the whole batch (not one
        per write). The first write the API stays unavailable for, and every write after it (not
        sent), come back as StoreUnavailableError, so a write buffer keeps them all; a refused write
        (fenced, invalid) does not stop the ones after it."""
        deadline = time.monotonic() + self._retry_timeout
        results: list[StateError | None] = []
        for i, op in enumerate(ops):
            try:
                await self.write(op, deadline)
            except StoreUnavailableError as exc:
                return results + [exc] * (len(ops) - i)
            except StateError as exc:
                results.append(exc)
            else:
                results.append(None)
        return results

    async def write_atomic(self, ops: Sequence[WriteOp]) -> None:
        if len(ops) == 1:
            await self.write(ops[0])
            return
        raise StateError("transactions over several writes are not available through the checkpoint API")

    # -- executions -------------------------------------------------------------------------------
    async def start_execution(
        self, execution_id: str, attempt: int, labels: dict[str, str] | None, checkpoint_retention: int | None
    ) -> Execution:
        """The operator started this execution already; answer with its stored record."""
        found = await self.get_execution(execution_id)
        if found is None:
            raise ExecutionNotFound(execution_id)
        return found

    async def finish(
        self, execution_id: str, status: ExecutionStatus, error: str | None, attempt: int | None
    ) -> Execution:
        self._own(execution_id)
        if status == ExecutionStatus.COMPLETED:
            code, answer = await self._call("POST", Route.COMPLETE, body=b"{}")
        elif status == ExecutionStatus.FAILED:
            code, answer = await self._call(
                "POST", Route.FAIL, body=orjson.dumps({"error": error or "failed"})
            )
        else:
            raise StateError(f"a pod cannot mark its execution {status.value}; the operator does that")
        if code != 200:
            self._raise(code, answer, execution_id)
        found = await self.get_execution(execution_id)
        if found is None:
            raise ExecutionNotFound(execution_id)
        return found

    async def load(self, execution_id: str) -> StoredState | None:
        self._own(execution_id)
        status, answer = await self._call("GET", Route.STATE, params={ON_CORRUPT_PARAM: self._on_corrupt})
        if status == 404 and answer.get("error") == "CheckpointNotFound":
            return None
        if status != 200:
            self._raise(status, answer, execution_id)
        return StoredState(
            execution_id=execution_id,
            step=int(answer["step"]),
            data=orjson.dumps(answer.get("state")),
            codec=codec.JSON,
            attempt=int(answer.get("attempt") or 0),
        )

    async def get_execution(self, execution_id: str) -> Execution | None:
        self._own(execution_id)
        status, answer = await self._call("GET", Route.EXECUTION)
        if status == 404 and answer.get("error") == "ExecutionNotFound":
            return None
        if status != 200:
            self._raise(status, answer, execution_id)
        return execution_from_wire(answer)

    # -- history ----------------------------------------------------------------------------------
    async def get_history(self, execution_id: str, after_step: int | None, limit: int) -> list[Checkpoint]:
        self._own(execution_id)
        params = {"limit": str(limit)}
        if after_step is not None:
            params["after_step"] = str(after_step)
        status, answer = await self._call("GET", Route.HISTORY, params=params)
        if status != 200:
            self._raise(status, answer, execution_id)
        return [_checkpoint(execution_id, item) for item in answer.get("checkpoints", [])]

    async def get_checkpoint(self, execution_id: str, step: int | None) -> Checkpoint | None:
        self._own(execution_id)
        params = {} if step is None else {"step": str(step)}
        status, answer = await self._call("GET", Route.CHECKPOINT, params=params)
        if status == 404 and answer.get("error") == "CheckpointNotFound":
            return None
        if status != 200:
            self._raise(status, answer, execution_id, step)
        return _checkpoint(execution_id, answer)

    # -- what a pod may not do --------------------------------------------------------------------
    def _not_for_pods(self, what: str) -> StateError:
        return StateError(
            f"{what} is not available inside a pod (http backend); use kubectl or the operator's store"
        )

    async def query(
        self,
        statuses: list[ExecutionStatus] | None,
        start_time: datetime | None,
        end_time: datetime | None,
        limit: int,
    ) -> list[Execution]:
        raise self._not_for_pods("query()")

    async def delete_execution(self, execution_id: str, keep_snapshots: bool) -> bool:
        raise self._not_for_pods("delete_execution()")

    async def rename_execution(self, execution_id: str, new_id: str) -> Execution:
        raise self._not_for_pods("rename_execution()")

    async def cleanup(self, cutoff: datetime, statuses: list[ExecutionStatus]) -> int:
        raise self._not_for_pods("cleanup()")

    async def claim_recoverable(self, stale_before_seconds: float, limit: int) -> list[Execution]:
        raise self._not_for_pods("recovery sweeps (the operator recovers pods)")

    async def get_audit(self, execution_id: str, after_seq: int | None, limit: int) -> list[AuditEvent]:
        raise self._not_for_pods("the audit trail")

    async def create_snapshot(self, execution_id: str, name: str, step: int | None) -> Snapshot:
        raise self._not_for_pods("create_snapshot() (apply a Snapshot resource instead)")

    async def get_snapshot(self, execution_id: str, name: str) -> Snapshot | None:
        raise self._not_for_pods("get_snapshot()")

    async def load_snapshot_state(self, execution_id: str, name: str) -> Any:
        raise self._not_for_pods("load_snapshot()")

    async def list_snapshots(self, execution_id: str) -> list[Snapshot]:
        raise self._not_for_pods("list_snapshots()")

    async def delete_snapshot(self, execution_id: str, name: str) -> bool:
        raise self._not_for_pods("delete_snapshot()")

    async def restore_snapshot(self, execution_id: str, name: str, attempt: int | None) -> Checkpoint:
        raise self._not_for_pods("restore_snapshot() (set Execution.spec.restoreFrom instead)")

    async def counts(self) -> StoreCounts:
        raise self._not_for_pods("get_metrics()")

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
        raise self._not_for_pods("fork() (apply an Execution with spec.startFrom instead)")


def _checkpoint(execution_id: str, item: dict[str, Any]) -> Checkpoint:
    return Checkpoint(
        execution_id=execution_id,
        step=int(item["step"]),
        state_data=item.get("state"),
        timestamp=datetime.fromisoformat(str(item["timestamp"])),
        attempt=int(item.get("attempt") or 0),
        size_bytes=int(item.get("sizeBytes") or 0),
    )
