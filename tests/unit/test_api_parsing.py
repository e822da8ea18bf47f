"""Request validation of the checkpoint API: bad bodies get a 400 with a message saying what is wrong."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.api.server import BadRequest, parse_json_object, parse_step, parse_write


def test_json_object_body() -> None:
    assert parse_json_object(b'{"step": 1, "state": {}}') == {"step": 1, "state": {}}
    assert parse_json_object(b"  ") == {}


@pytest.mark.parametrize(("raw", "needle"), [(b"not json", "not valid JSON"), (b"[1]", "JSON object")])
def test_bad_body(raw: bytes, needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        parse_json_object(raw)


@pytest.mark.parametrize(
    ("body", "needle"),
    [
        ({"state": {}}, "missing 'step'"),
        ({"step": -1, "state": {}}, "non-negative"),
        ({"step": "3", "state": {}}, "non-negative integer"),
        ({"step": True, "state": {}}, "non-negative integer"),
        ({"step": 1.5, "state": {}}, "non-negative integer"),
        ({"step": 1}, "missing 'state'"),
        ({"step": 1, "state": {}, "compress": "yes"}, "'compress' must be true or false"),
    ],
)
def test_bad_write(body: dict[str, Any], needle: str) -> None:
    with pytest.raises(BadRequest, match=needle):
        parse_write(body)


def test_good_write_keeps_null_state() -> None:
    assert parse_write({"step": 0, "state": None}) == (0, None, None)
    assert parse_write({"step": 2, "state": [], "compress": True}) == (2, [], True)
    assert parse_step(7) == 7
