"""Property-based tests (hypothesis) of the checkpoint API, in a process of its own
(``tests/fixtures/api_child.py``: the operator's API code on the memory store).

Random requests, well-formed or not (bodies of random JSON or bytes, steps of every type and size,
query values, every route), and after each one:

1. never a 5xx: every refusal is a 4xx whose body names an ``error`` and says why in ``message``;
2. nothing half-written: a refused write leaves the stored state as it was;
3. an accepted write reads back exactly as sent (``GET /v1/state``).
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from typing import Any
from urllib.parse import urlencode

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from tests.fixtures.api_child import Child

SETTINGS = settings(
    max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**70), max_value=2**70)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
steps = (
    st.integers(min_value=-5, max_value=50)
    | st.integers(min_value=2**62, max_value=2**70)
    | st.floats(allow_nan=False)
    | st.booleans()
    | st.text(max_size=5)
    | st.none()
)


def write_bodies() -> st.SearchStrategy[bytes]:
    """Bodies of POST /v1/checkpoint and /v1/save: mostly near-valid objects, sometimes anything."""
    objects = st.fixed_dictionaries(
        {"step": steps, "state": json_values},
        optional={"compress": st.booleans() | st.text(max_size=3), "extra": json_values},
    )
    return st.one_of(
        objects.map(lambda body: json.dumps(body).encode()),
        json_values.map(lambda value: json.dumps(value).encode()),
        st.binary(max_size=40),
        st.just(b'{"step": 1, "state": NaN}'),
        st.just(b'{"step": 1, "state": {"a": 1}'),
    )


queries = st.dictionaries(
    st.sampled_from(["step", "after_step", "limit", "x"]),
    st.integers(min_value=-3, max_value=2**40).map(str) | st.text(max_size=4),
    max_size=2,
)
requests = st.one_of(
    st.tuples(st.sampled_from(["/v1/checkpoint", "/v1/save"]), st.just("POST"), write_bodies(), st.just({})),
    st.tuples(
        st.sampled_from(["/v1/state", "/v1/checkpoint", "/v1/history", "/v1/execution"]),
        st.just("GET"),
        st.just(b""),
        queries,
    ),
    st.tuples(st.just("/v1/fail"), st.just("POST"), write_bodies(), st.just({})),
    st.tuples(
        st.sampled_from(["/v1/nowhere", "/v1/state"]),
        st.sampled_from(["PUT", "DELETE"]),
        st.just(b""),
        st.just({}),
    ),
)


def stored(child: Child) -> Any:
    status, _, answer = child.request("GET", "/v1/state")
    assert status in (200, 404), answer
    return answer.get("state") if status == 200 else None


def sent_state(body: bytes) -> tuple[bool, Any]:
    """(whether ``body`` was a write object with a state, that state)."""
    try:
        parsed = json.loads(body)
    except ValueError:
        return False, None
    if not isinstance(parsed, dict) or "state" not in parsed:
        return False, None
    return True, parsed["state"]


def same_json(a: Any, b: Any) -> bool:
    """Equality as JSON: -0.0 is 0.0, and a float equals the float it was stored as."""
    if isinstance(a, float) or isinstance(b, float):
        return isinstance(a, int | float) and isinstance(b, int | float) and math.isclose(a, b, rel_tol=0)
    if isinstance(a, list) and isinstance(b, list):
        return len(a) == len(b) and all(same_json(x, y) for x, y in zip(a, b, strict=True))
    if isinstance(a, dict) and isinstance(b, dict):
        return a.keys() == b.keys() and all(same_json(a[k], b[k]) for k in a)
    return type(a) is type(b) and a == b


@SETTINGS
@given(program=st.lists(requests, min_size=1, max_size=6))
def test_random_requests_never_get_a_5xx_and_refusals_write_nothing(
    start_child: Callable[..., Child], program: list[tuple[str, str, bytes, dict[str, str]]]
) -> None:
    child = _child(start_child)
    for path, method, body, query in program:
        before = stored(child)
        url = path + ("?" + urlencode(query) if query else "")
        status, _, answer = child.request(method, url, body or None)
        assert status < 500, (method, url, body, answer)
        if status >= 400:
            assert isinstance(answer.get("error"), str), answer
            assert answer["error"], answer
            assert isinstance(answer.get("message"), str), answer
            assert answer["message"], answer
            assert same_json(stored(child), before), f"refused {method} {url} changed the state"
        elif method == "POST" and path in ("/v1/checkpoint", "/v1/save"):
            has_state, state = sent_state(body)
            assert has_state
            assert same_json(stored(child), state), f"{path} answered 200 but stored something else"


_CHILDREN: dict[int, Child] = {}


def _child(start_child: Callable[..., Child]) -> Child:
    """One API process for all of a test's examples (starting one per example would take minutes)."""
    key = id(start_child)
    if key not in _CHILDREN:
        _CHILDREN.clear()
        _CHILDREN[key] = start_child()
    return _CHILDREN[key]
