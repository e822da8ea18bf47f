"""Argument checks shared by every backend: bad input fails here, before anything is written."""

from __future__ import annotations

from collections.abc import Iterable
from datetime import UTC, datetime
from typing import Final

from stratarouter_runtime.state.errors import InvalidArgumentError
from stratarouter_runtime.state.models import ExecutionStatus

MAX_ID_LENGTH: Final = 253
"""Longest execution id or snapshot name: a Kubernetes ``namespace/name`` fits comfortably."""
MAX_STEP: Final = 2**63 - 1
MAX_LIMIT: Final = 10_000
MAX_ATTEMPT: Final = 2**31 - 1
"""Highest attempt: the store's ``integer`` column. Recovery never goes past it: a stalled run at this
attempt is failed instead of claimed, since no newer attempt could fence it."""


def execution_id(value: object, what: str = "execution_id") -> str:
    """A non-empty string of at most 253 characters with no control characters."""
    if not isinstance(value, str):
        raise InvalidArgumentError(f"{what} must be a str, got {type(value).__name__}")
    if not value or len(value) > MAX_ID_LENGTH:
        raise InvalidArgumentError(f"{what} must be 1 to {MAX_ID_LENGTH} characters long, got {len(value)}")
    if not value.isprintable():
        raise InvalidArgumentError(f"{what} {value!r} contains control characters")
    return value


def snapshot_name(value: object) -> str:
    return execution_id(value, "snapshot_name")


def step(value: object, what: str = "step") -> int:
    """A non-negative integer (bool is refused: ``True`` is not a step)."""
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidArgumentError(f"{what} must be an int, got {type(value).__name__}")
    if not 0 <= value <= MAX_STEP:
        raise InvalidArgumentError(f"{what} must be between 0 and {MAX_STEP}, got {value}")
    return value


def attempt(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_ATTEMPT:
        raise InvalidArgumentError(f"attempt must be a positive int of at most {MAX_ATTEMPT}, got {value!r}")
    return value


def optional_attempt(value: object) -> int | None:
    return None if value is None else attempt(value)


def positive_int(
    value: object, what: str, *, allow_none: bool = False, maximum: int = 2**31 - 1
) -> int | None:
    if value is None and allow_none:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= maximum:
        raise InvalidArgumentError(f"{what} must be an int between 1 and {maximum}, got {value!r}")
    return value


def limit(value: object) -> int:
    result = positive_int(value, "limit", maximum=MAX_LIMIT)
    assert result is not None
    return result


def status(value: object) -> ExecutionStatus:
    try:
        return ExecutionStatus(value)  # type: ignore[arg-type]  # any value: ValueError below
    except ValueError:
        known = ", ".join(s.value for s in ExecutionStatus)
        raise InvalidArgumentError(f"unknown status {value!r}; expected one of: {known}") from None


def statuses(
    value: str | ExecutionStatus | Iterable[str | ExecutionStatus] | None,
) -> list[ExecutionStatus] | None:
    """A status filter: one status, several, or None for all."""
    if value is None:
        return None
    if isinstance(value, str):
        return [status(value)]
    result = [status(v) for v in value]
    if not result:
        raise InvalidArgumentError("status filter is empty")
    return result


def utc(value: object, what: str) -> datetime | None:
    """A datetime in UTC; naive datetimes are taken to be UTC already."""
    if value is None:
        return None
    if not isinstance(value, datetime):
        raise InvalidArgumentError(f"{what} must be a datetime, got {type(value).__name__}")
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value.astimezone(UTC)


def text(value: str, what: str) -> str:
    """Text any backend can store: PostgreSQL's text and jsonb refuse NUL, and UTF-8 (the wire and the
    database encoding) has no lone surrogates. Execution ids and snapshot names are stricter still."""
    nul = value.find("\x00")
    if nul >= 0:
        raise InvalidArgumentError(f"{what} contains a NUL character (\\x00) at position {nul}")
    try:
        value.encode()
    except UnicodeEncodeError as exc:
        raise InvalidArgumentError(
            f"{what} is not valid Unicode: a lone surrogate at position {exc.start}"
        ) from None
    return value


def labels(value: object) -> dict[str, str] | None:
    """``None`` keeps the labels stored with the execution; a dict (``{}`` too) replaces them."""
    if value is None:
        return None
    if not isinstance(value, dict) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise InvalidArgumentError("labels must be a dict of str to str")
    for key, label in value.items():
        text(key, f"labels key {key!r}")
        text(label, f"labels[{key!r}]")
    return dict(value)
