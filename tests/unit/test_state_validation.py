"""Argument checks: the messages a user sees for bad ids, steps, statuses and datetimes."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta, timezone

import pytest

from stratarouter_runtime.state import validation as check
from stratarouter_runtime.state.errors import InvalidArgumentError
from stratarouter_runtime.state.models import ExecutionStatus


@pytest.mark.parametrize("good", ["a", "ns/name", "x" * 253, "exec-123"])
def test_good_ids(good: str) -> None:
    assert check.execution_id(good) == good


@pytest.mark.parametrize(
    ("bad", "message"),
    [("", "1 to 253"), ("x" * 254, "1 to 253"), (None, "must be a str"), ("a\nb", "control characters")],
)
def test_bad_ids(bad: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check.execution_id(bad)


@pytest.mark.parametrize(
    ("bad", "message"), [(-1, "between 0"), (True, "must be an int"), (2**63, "between 0")]
)
def test_bad_steps(bad: object, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check.step(bad)


def test_statuses() -> None:
    assert check.statuses(None) is None
    assert check.statuses("running") == [ExecutionStatus.RUNNING]
    assert check.statuses(["failed", ExecutionStatus.COMPLETED]) == [
        ExecutionStatus.FAILED,
        ExecutionStatus.COMPLETED,
    ]
    with pytest.raises(
        InvalidArgumentError, match="unknown status 'done'; expected one of: pending, running"
    ):
        check.statuses("done")
    with pytest.raises(InvalidArgumentError, match="empty"):
        check.statuses([])


def test_naive_datetimes_are_utc() -> None:
    assert check.utc(datetime(2026, 1, 1), "t") == datetime(2026, 1, 1, tzinfo=UTC)
    plus_two = timezone(timedelta(hours=2))
    assert check.utc(datetime(2026, 1, 1, 2, tzinfo=plus_two), "t") == datetime(2026, 1, 1, tzinfo=UTC)
    with pytest.raises(InvalidArgumentError, match="must be a datetime"):
        check.utc("2026-01-01", "start_time")


def test_limits_and_attempts() -> None:
    assert check.limit(10) == 10
    for bad in (0, -1, 10_001, 1.5):
        with pytest.raises(InvalidArgumentError, match="limit"):
            check.limit(bad)
    with pytest.raises(InvalidArgumentError, match="attempt"):
        check.attempt(0)
    assert check.optional_attempt(None) is None


def test_attempts_fit_the_stores_integer_column() -> None:
    assert check.MAX_ATTEMPT == 2**31 - 1
    assert check.attempt(check.MAX_ATTEMPT) == check.MAX_ATTEMPT
    for bad in (check.MAX_ATTEMPT + 1, 2**63, True, 1.0):
        with pytest.raises(
            InvalidArgumentError, match="attempt must be a positive int of at most 2147483647"
        ):
            check.attempt(bad)


@pytest.mark.parametrize(
    ("bad", "message"),
    [
        ("boom\x00", r"error contains a NUL character \(\\x00\) at position 4"),
        ("\ud800x", "error is not valid Unicode: a lone surrogate at position 0"),
    ],
)
def test_text_a_database_cannot_store_is_refused(bad: str, message: str) -> None:
    with pytest.raises(InvalidArgumentError, match=message):
        check.text(bad, "error")


def test_labels_name_the_bad_key_or_value() -> None:
    assert check.labels({"team": "ml", "tier": ""}) == {"team": "ml", "tier": ""}
    with pytest.raises(InvalidArgumentError, match=r"labels key 'a\\x00b' contains a NUL"):
        check.labels({"a\x00b": "v"})
    with pytest.raises(InvalidArgumentError, match=r"labels\['team'\] contains a NUL"):
        check.labels({"team": "m\x00l"})
    with pytest.raises(InvalidArgumentError, match="dict of str to str"):
        check.labels({"team": 1})
