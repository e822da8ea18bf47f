"""How the store's answers cross HTTP: the one table of each
:class:`~stratarouter_runtime.state.errors.StateError`'s code, and the execution record's shape.

The checkpoint API answers a refusal with ``{"error": <code>, "message": <why>, ...details}`` and the
status of its row (:func:`to_wire`); the SDK's http backend turns that answer back into the same
exception with the same attributes (:func:`from_wire`). Codes are stable: pods run whatever SDK their
image has, so a code never changes meaning (``StaleAttempt`` is what every SDK stops on).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, Final

from pydantic.alias_generators import to_camel, to_snake

from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    CorruptCheckpointError,
    ExecutionGoneError,
    ExecutionNotFound,
    InvalidArgumentError,
    InvalidStateError,
    SchemaTooNewError,
    SchemaVersionError,
    SnapshotNotFound,
    StaleAttemptError,
    StateError,
    StateTooLargeError,
    StoreUnavailableError,
    WorkerIdInUseError,
)
from stratarouter_runtime.state.models import Execution

Body = Mapping[str, Any]

#: The media type of every body the checkpoint API sends and takes.
JSON = "application/json"


class Route(StrEnum):
    """The checkpoint API's paths, served by the operator and called by the SDK's http backend."""

    CHECKPOINT = "/v1/checkpoint"  # POST a checkpoint; GET one by step
    SAVE = "/v1/save"
    STATE = "/v1/state"
    HISTORY = "/v1/history"
    EXECUTION = "/v1/execution"
    COMPLETE = "/v1/complete"
    FAIL = "/v1/fail"


@dataclass(frozen=True, slots=True)
class Wire:
    """One row: the code and status of an error class, what it adds to the body, how it is rebuilt."""

    code: str
    status: int
    details: Callable[[Any], dict[str, Any]]
    """The class's attributes as body fields (camelCase)."""
    build: Callable[[str, Body, str], StateError]
    """``(message, body, execution_id)`` -> the exception (the SDK knows the id it asked about)."""


def _none(_: Any) -> dict[str, Any]:
    return {}


def _int(body: Body, key: str) -> int | None:
    value = body.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _stale(message: str, body: Body, execution_id: str) -> StateError:
    attempt = _int(body, "attempt") or 0
    if body.get("executionGone") is True:
        return ExecutionGoneError(execution_id, attempt)
    return StaleAttemptError(execution_id, attempt, _int(body, "currentAttempt"))


def _with_message(cls: type[StateError]) -> Callable[[str, Body, str], StateError]:
    return lambda message, _body, _id: cls(message)


# Most specific first: an error takes the first row its class is a subclass of.
TABLE: Final[tuple[tuple[type[StateError], Wire], ...]] = (
    (
        ExecutionGoneError,
        Wire("StaleAttempt", 409, lambda e: {"attempt": e.attempt, "executionGone": True}, _stale),
    ),
    (
        StaleAttemptError,
        Wire(
            "StaleAttempt", 409, lambda e: {"attempt": e.attempt, "currentAttempt": e.current_attempt}, _stale
        ),
    ),
    (ExecutionNotFound, Wire("ExecutionNotFound", 404, _none, lambda _m, _b, eid: ExecutionNotFound(eid))),
    (
        CheckpointNotFound,
        Wire(
            "CheckpointNotFound",
            404,
            lambda e: {"step": e.step},
            lambda _m, body, eid: CheckpointNotFound(eid, _int(body, "step")),
        ),
    ),
    (
        SnapshotNotFound,
        Wire(
            "SnapshotNotFound",
            404,
            lambda e: {"snapshot": e.name},
            lambda _m, body, eid: SnapshotNotFound(eid, str(body.get("snapshot") or "")),
        ),
    ),
    (
        StateTooLargeError,
        Wire(
            "StateTooLargeError",
            400,
            lambda e: {"sizeBytes": e.size, "limitBytes": e.limit},
            lambda _m, body, _id: StateTooLargeError(
                _int(body, "sizeBytes") or 0, _int(body, "limitBytes") or 0
            ),
        ),
    ),
    (
        InvalidStateError,
        Wire(
            "InvalidStateError",
            400,
            lambda e: {"path": e.path},
            lambda message, body, _id: InvalidStateError(message, path=body.get("path") or None),
        ),
    ),
    (
        CorruptCheckpointError,
        Wire(
            "CorruptCheckpoint",
            500,
            lambda e: {"step": e.step},
            lambda _m, body, eid: CorruptCheckpointError(eid, _int(body, "step")),
        ),
    ),
    (
        WorkerIdInUseError,
        Wire(
            "WorkerIdInUse",
            409,
            lambda e: {"workerId": e.worker_id},
            lambda _m, body, _id: WorkerIdInUseError(str(body.get("workerId") or "")),
        ),
    ),
    (InvalidArgumentError, Wire("InvalidArgumentError", 400, _none, _with_message(InvalidArgumentError))),
    (StoreUnavailableError, Wire("StoreUnavailable", 503, _none, _with_message(StoreUnavailableError))),
    (
        SchemaTooNewError,
        Wire(
            "SchemaTooNew",
            503,
            lambda e: {"storeVersion": e.store_version, "codeVersion": e.code_version},
            lambda _m, body, _id: SchemaTooNewError(
                _int(body, "storeVersion") or 0, _int(body, "codeVersion") or 0
            ),
        ),
    ),
    (SchemaVersionError, Wire("SchemaVersion", 503, _none, _with_message(SchemaVersionError))),
    (StateError, Wire("StateError", 409, _none, _with_message(StateError))),
)

_BY_CODE: Final[dict[str, Wire]] = {}
"""Code -> its first row (both StaleAttempt rows rebuild through ``_stale``)."""
for _, _wire in TABLE:
    _BY_CODE.setdefault(_wire.code, _wire)


def wire_of(exc: StateError) -> Wire:
    return next(wire for cls, wire in TABLE if isinstance(exc, cls))


def to_wire(exc: StateError) -> tuple[int, dict[str, Any]]:
    """The status and body the checkpoint API answers ``exc`` with."""
    wire = wire_of(exc)
    return wire.status, {"error": wire.code, "message": str(exc), **wire.details(exc)}


def from_wire(status: int, body: Body, execution_id: str) -> StateError | None:
    """The exception an answer stands for; None when its code is not one of the table's (an
    authentication refusal, a bad request, a proxy's page: the caller says what it was)."""
    wire = _BY_CODE.get(str(body.get("error", "")))
    if wire is None or wire.status != status:
        return None
    return wire.build(str(body.get("message", "")), body, execution_id)


def execution_to_wire(execution: Execution) -> dict[str, Any]:
    """``GET /v1/execution``'s body: the stored record with camelCase keys, like every other route."""
    return {to_camel(key): value for key, value in execution.model_dump(mode="json").items()}


def execution_from_wire(body: Body) -> Execution:
    """The record from ``GET /v1/execution`` (an older operator's snake_case keys read alike)."""
    return Execution.model_validate({to_snake(key): value for key, value in body.items()})
