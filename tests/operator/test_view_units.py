"""The view API's parts without a cluster: the JSON diff, front-proxy headers, page tokens, Status
answers, and the SubjectAccessReview cache (against a stand-in for the API server's answer)."""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

import orjson
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from multidict import CIMultiDict

from stratarouter_runtime.operator.view import authorize, jsondiff, reads, status
from stratarouter_runtime.operator.view.frontproxy import (
    RequestHeaderConfig,
    Unauthenticated,
    User,
    authenticate,
    common_name,
    user_from_headers,
)
from stratarouter_runtime.state import errors

json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-5, 5)
    | st.floats(allow_nan=False, width=16)
    | st.text(max_size=3),
    lambda inner: (
        st.lists(inner, max_size=4) | st.dictionaries(st.text("ab/~", max_size=2), inner, max_size=4)
    ),
    max_leaves=20,
)


@settings(max_examples=400, deadline=None)
@given(json_values, json_values)
def test_the_diff_takes_a_to_b(a: Any, b: Any) -> None:
    before = same(a)
    result = jsondiff.diff(a, b)
    assert not result.truncated
    assert same(jsondiff.apply(a, result.ops)) == same(b)
    assert same(a) == before  # the diff reads, never changes
    if same(a) == same(b):
        assert result.ops == []


def same(value: Any) -> bytes:
    """JSON equality (Python's == says True == 1)."""
    return orjson.dumps(value, option=orjson.OPT_SORT_KEYS)


def test_the_diff_of_a_bool_and_an_int_is_a_change() -> None:
    assert jsondiff.diff({"x": 1}, {"x": True}).ops == [{"op": "replace", "path": "/x", "value": True}]


def test_the_diff_escapes_pointers_and_stops_at_its_cap() -> None:
    assert jsondiff.diff({}, {"a/b~": 1}).ops == [{"op": "add", "path": "/a~1b~0", "value": 1}]
    cut = jsondiff.diff([], list(range(50)), max_ops=10)
    assert (len(cut.ops), cut.truncated) == (10, True)


CONFIG = RequestHeaderConfig(client_ca="pem", allowed_names=("front-proxy-client",))


def test_user_headers() -> None:
    headers = CIMultiDict(
        [("X-Remote-User", "alice"), ("X-Remote-Group", "dev"), ("X-Remote-Group", "system:authenticated"),
         ("X-Remote-Extra-Scopes", "a"), ("X-Remote-Extra-Scopes", "b"), ("X-Remote-Extra-Foo%2Fbar", "x")]
    )  # fmt: skip
    user = user_from_headers(CONFIG, headers)
    assert user == User("alice", ("dev", "system:authenticated"), {"scopes": ("a", "b"), "foo/bar": ("x",)})
    with pytest.raises(Unauthenticated, match="named no user"):
        user_from_headers(CONFIG, CIMultiDict([("X-Remote-Group", "dev")]))


def _request(peercert: Any, **headers: str) -> Any:
    transport = SimpleNamespace(get_extra_info=lambda key: peercert if key == "peercert" else None)
    return SimpleNamespace(transport=transport, headers=CIMultiDict(headers))


def test_only_the_front_proxys_certificate_is_believed() -> None:
    proxy = {"subject": ((("organizationName", "x"),), (("commonName", "front-proxy-client"),))}
    assert common_name(proxy) == "front-proxy-client"
    assert authenticate(CONFIG, _request(proxy, **{"X-Remote-User": "bob"})).name == "bob"
    with pytest.raises(Unauthenticated, match="no client certificate"):
        authenticate(CONFIG, _request(None, **{"X-Remote-User": "admin"}))
    other = {"subject": ((("commonName", "someone"),),)}
    with pytest.raises(Unauthenticated, match="not one of the request-header allowed names"):
        authenticate(CONFIG, _request(other, **{"X-Remote-User": "admin"}))
    # with no allowed names published, any certificate of the request-header CA is the proxy's
    anyone = RequestHeaderConfig(client_ca="pem")
    assert authenticate(anyone, _request(other, **{"X-Remote-User": "carol"})).name == "carol"


def test_configmap_values() -> None:
    config = RequestHeaderConfig.from_configmap(
        {
            "requestheader-client-ca-file": "PEM",
            "requestheader-allowed-names": '["front-proxy-client"]',
            "requestheader-username-headers": '["X-Remote-User"]',
            "requestheader-group-headers": '["X-Remote-Group"]',
            "requestheader-extra-headers-prefix": '["X-Remote-Extra-"]',
        }
    )
    assert config.allowed_names == ("front-proxy-client",)
    with pytest.raises(RuntimeError, match="without --requestheader-client-ca-file"):
        RequestHeaderConfig.from_configmap({})


def test_page_tokens_belong_to_their_list() -> None:
    token = reads.encode_continue("history", 41)
    request = SimpleNamespace(query={"continue": token})
    assert reads.decode_continue(request, "history") == 41  # type: ignore[arg-type]
    with pytest.raises(reads.BadRequest, match="this audit list"):
        reads.decode_continue(request, "audit")  # type: ignore[arg-type]
    for bad in ("x", "e30", reads.encode_continue("history", -1)):
        with pytest.raises(reads.BadRequest):
            reads.decode_continue(SimpleNamespace(query={"continue": bad}), "history")  # type: ignore[arg-type]


def test_store_errors_keep_the_wire_tables_code_and_status() -> None:
    response = status.state_error_response(errors.CheckpointNotFound("ns/run", 7), name="run")
    import orjson

    body = orjson.loads(response.body)  # type: ignore[arg-type]
    assert (response.status, body["kind"], body["reason"], body["code"]) == (404, "Status", "NotFound", 404)
    assert body["details"]["causes"][0]["reason"] == "CheckpointNotFound"
    assert {"reason": "CheckpointNotFound", "field": "step", "message": "7"} in body["details"]["causes"]
    unavailable = status.state_error_response(errors.StoreUnavailableError("down"))
    assert (unavailable.status, unavailable.headers["Retry-After"]) == (503, "1")


class Reviews:
    """Stands in for AuthorizationV1Api: answers from ``allowed``, counts the reviews."""

    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed
        self.calls: list[Any] = []

    async def create_subject_access_review(self, body: Any) -> Any:
        self.calls.append(body.spec)
        ok = body.spec.user in self.allowed
        return SimpleNamespace(
            status=SimpleNamespace(
                allowed=ok, denied=False, reason="" if ok else "no RBAC rule", evaluation_error=None
            )
        )


async def test_reviews_ask_for_get_on_the_execution_and_are_cached() -> None:
    authorizer = authorize.Authorizer(SimpleNamespace(), cache_seconds=60)  # type: ignore[arg-type]
    reviews = Reviews({"alice"})
    authorizer._authz = reviews  # type: ignore[assignment]
    alice = User("alice", ("dev",))
    await authorizer.check(alice, "ns", "run")
    await authorizer.check(alice, "ns", "run")
    assert len(reviews.calls) == 1
    spec = reviews.calls[0]
    attrs = spec.resource_attributes
    assert (spec.user, spec.groups, attrs.verb, attrs.group, attrs.resource, attrs.namespace, attrs.name) == (
        "alice", ["dev"], "get", "stratarouter.io", "executions", "ns", "run"
    )  # fmt: skip
    with pytest.raises(authorize.Forbidden) as refused:
        await authorizer.check(User("bob"), "ns", "run")
    message = str(refused.value)
    assert 'User "bob" cannot get resource "executions" in API group "stratarouter.io"' in message
    assert "no RBAC rule" in message
    await authorizer.check(alice, "ns", "other")  # another Execution: its own review
    assert len(reviews.calls) == 3
