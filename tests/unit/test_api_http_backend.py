"""The pod-side http backend's pure parts: error mapping, own-execution guard, token file reading."""

from __future__ import annotations

from pathlib import Path

import pytest

from stratarouter_runtime.state.backends.http import HttpBackend
from stratarouter_runtime.state.config import StateConfig
from stratarouter_runtime.state.errors import (
    CheckpointNotFound,
    ExecutionNotFound,
    InvalidArgumentError,
    InvalidStateError,
    StaleAttemptError,
    StateError,
)

OWN = "ns/run"


def backend(tmp_path: Path, token: str | None = "tok") -> HttpBackend:
    token_file = tmp_path / "token"
    if token is not None:
        token_file.write_text(token + "\n")
    config = StateConfig(
        backend="http",
        api_url="http://127.0.0.1:1/",
        extra={"token_file": str(token_file), "execution_id": OWN, "attempt": "3"},
    )
    return HttpBackend(config)


@pytest.mark.parametrize(
    ("status", "answer", "error"),
    [
        (409, {"error": "StaleAttempt", "message": "stale"}, StaleAttemptError),
        (404, {"error": "CheckpointNotFound"}, CheckpointNotFound),
        (404, {"error": "ExecutionNotFound"}, ExecutionNotFound),
        (400, {"error": "StateTooLargeError", "message": "too big"}, InvalidStateError),
        (400, {"error": "BadRequest", "message": "missing 'step'"}, InvalidArgumentError),
        (500, {"error": "InternalError", "message": "boom"}, StateError),
    ],
)
def test_answers_map_to_sdk_errors(
    tmp_path: Path, status: int, answer: dict[str, str], error: type[Exception]
) -> None:
    with pytest.raises(error):
        backend(tmp_path)._raise(status, answer, OWN, 1)


@pytest.mark.parametrize("status", [401, 403])
def test_refusals_say_why(tmp_path: Path, status: int) -> None:
    with pytest.raises(StateError, match="refused this pod") as err:
        backend(tmp_path)._raise(status, {"error": "NotCurrentPod", "message": "pod x is not current"}, OWN)
    assert "pod x is not current" in str(err.value)
    assert not isinstance(err.value, StaleAttemptError)


def test_stale_error_names_the_pods_attempt(tmp_path: Path) -> None:
    with pytest.raises(StaleAttemptError) as err:
        backend(tmp_path)._raise(409, {"error": "StaleAttempt"}, OWN)
    assert err.value.attempt == 3


def test_only_its_own_execution(tmp_path: Path) -> None:
    b = backend(tmp_path)
    b._own(OWN)
    with pytest.raises(StateError, match="only use its own execution"):
        b._own("ns/other")


def test_token_is_read_fresh_each_time(tmp_path: Path) -> None:
    b = backend(tmp_path)
    assert b._token() == "tok"
    (tmp_path / "token").write_text("rotated")
    assert b._token() == "rotated"


def test_missing_token_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(StateError, match="cannot read the pod's token"):
        backend(tmp_path, token=None)._token()


def test_needs_an_api_url() -> None:
    with pytest.raises(InvalidArgumentError, match="STRATA_API_URL"):
        HttpBackend(StateConfig(backend="http"))
