"""Every StateError crosses the checkpoint API and comes back as the same exception, attributes and all
(before, the class name was the code and the http backend parsed it back by string: a
StateTooLargeError came back as an InvalidStateError, and every StaleAttemptError lost its attempts)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from stratarouter_runtime.state import errors
from stratarouter_runtime.state.models import Execution, ExecutionStatus
from stratarouter_runtime.state.wire import TABLE, execution_from_wire, execution_to_wire, from_wire, to_wire

EXAMPLES: list[errors.StateError] = [
    errors.ExecutionGoneError("ns/run", 3),
    errors.StaleAttemptError("ns/run", 1, 2),
    errors.ExecutionNotFound("ns/run"),
    errors.CheckpointNotFound("ns/run", 7),
    errors.CheckpointNotFound("ns/run", None),
    errors.SnapshotNotFound("ns/run", "before"),
    errors.CorruptCheckpointError("ns/run", 12),
    errors.WorkerIdInUseError("node-1/ab12cd34ef56"),
    errors.StateTooLargeError(20_000_000, 16_777_216),
    errors.InvalidStateError("$.a: not JSON-serialisable", path="$.a"),
    errors.InvalidArgumentError("step must be >= 0, got -1"),
    errors.StoreUnavailableError("PostgreSQL unreachable for 30s"),
    errors.SchemaTooNewError(9, 4),
    errors.SchemaVersionError("database schema is at version 3, this SDK needs 4"),
    errors.StateError("something else"),
]


def every_state_error() -> set[type[errors.StateError]]:
    found, todo = set(), [errors.StateError]
    while todo:
        cls = todo.pop()
        found.add(cls)
        todo += cls.__subclasses__()
    return found


def test_every_state_error_has_its_own_row_and_an_example() -> None:
    assert {cls for cls, _ in TABLE} == every_state_error()
    assert {type(e) for e in EXAMPLES} == every_state_error()


def test_more_specific_rows_come_first() -> None:
    classes = [cls for cls, _ in TABLE]
    for i, cls in enumerate(classes):
        assert not any(issubclass(later, cls) and later is not cls for later in classes[i + 1 :]), cls


@pytest.mark.parametrize("error", EXAMPLES, ids=lambda e: f"{type(e).__name__}")
def test_an_error_comes_back_as_it_went(error: errors.StateError) -> None:
    status, body = to_wire(error)
    assert 400 <= status < 600
    assert body["message"] == str(error)
    back = from_wire(status, body, "ns/run")
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert vars(back) == vars(error)


def test_an_answer_of_no_row_is_left_to_the_caller() -> None:
    assert from_wire(403, {"error": "NotCurrentPod", "message": "..."}, "ns/run") is None
    assert from_wire(502, {"error": "StaleAttempt", "message": "a proxy's page"}, "ns/run") is None


def test_the_execution_record_is_camel_case_and_reads_back_the_same() -> None:
    at = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
    record = Execution(
        execution_id="ns/run",
        status=ExecutionStatus.RUNNING,
        current_step=7,
        last_checkpoint_step=5,
        attempt=2,
        created_at=at,
        updated_at=at,
        labels={"some_label": "x"},
        checkpoint_retention=3,
    )
    body = execution_to_wire(record)
    assert {"executionId", "currentStep", "lastCheckpointStep", "checkpointRetention"} <= body.keys()
    assert body["labels"] == {"some_label": "x"}  # values are left alone
    assert execution_from_wire(body) == record
    assert execution_from_wire(record.model_dump(mode="json")) == record  # an older operator's answer
