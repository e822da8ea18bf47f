"""Pure logic of the checkpoint API's caller check: header parsing, TokenReview claims, current pod, cache."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.api.auth import (
    CLAIM_POD_NAME,
    CLAIM_POD_UID,
    AuthError,
    PodIdentity,
    TTLCache,
    bearer_token,
    caller_for,
    identity_from_review,
    token_key,
)

IDENT = PodIdentity(namespace="team-a", pod_name="train-a2", pod_uid="u2", service_account="default")
LABELS = {"stratarouter.io/execution": "train", "stratarouter.io/attempt": "2"}


def review(authenticated: bool = True, **user: Any) -> dict[str, Any]:
    base = {
        "username": "system:serviceaccount:team-a:default",
        "extra": {CLAIM_POD_NAME: ["train-a2"], CLAIM_POD_UID: ["u2"]},
    }
    return {"authenticated": authenticated, "audiences": ["stratarouter"], "user": {**base, **user}}


def execution(pod_name: str | None, pod_uid: str = "", attempt: int = 0) -> dict[str, Any]:
    """An Execution whose status names ``pod_name``; by default the pod's uid and attempt from its name."""
    if not pod_name:
        return {"metadata": {"name": "train"}, "status": {}}
    attempt = attempt or int(pod_name.rsplit("-a", 1)[1])
    status = {"podName": pod_name, "podUID": pod_uid or f"u{attempt}", "attempt": attempt}
    return {"metadata": {"name": "train"}, "status": status}


@pytest.mark.parametrize("header", [None, "", "Basic abc", "Bearer", "Bearer   "])
def test_bad_authorization_header_is_401(header: str | None) -> None:
    with pytest.raises(AuthError) as err:
        bearer_token(header)
    assert err.value.status == 401


def test_bearer_token_is_extracted() -> None:
    assert bearer_token("Bearer abc.def") == "abc.def"
    assert bearer_token("bearer  xyz ") == "xyz"


def test_identity_from_a_pod_bound_token() -> None:
    assert identity_from_review(review()) == IDENT


def test_unauthenticated_review_is_401_with_the_servers_reason() -> None:
    with pytest.raises(AuthError) as err:
        identity_from_review({"authenticated": False, "error": "token expired"})
    assert (err.value.status, err.value.reason) == (401, "InvalidToken")
    assert "token expired" in err.value.message


def test_user_token_is_403() -> None:
    with pytest.raises(AuthError) as err:
        identity_from_review(review(username="alice"))
    assert (err.value.status, err.value.reason) == (403, "NotAServiceAccount")


def test_token_not_bound_to_a_pod_is_403() -> None:
    with pytest.raises(AuthError) as err:
        identity_from_review(review(extra={}))
    assert (err.value.status, err.value.reason) == (403, "NotPodBound")


def test_current_pod_is_the_caller() -> None:
    caller = caller_for(IDENT, LABELS, execution("train-a2"))
    assert (caller.execution_id, caller.attempt, caller.pod_name) == ("team-a/train", 2, "train-a2")


def test_a_pod_with_the_current_pods_name_but_another_uid_is_403() -> None:
    """The name (and labels) of the current pod are no proof: only status.podUID is."""
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, LABELS, execution("train-a2", pod_uid="u-the-operators"))
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")
    assert "u-the-operators" in err.value.message


def test_pod_of_a_replaced_attempt_is_409_stale() -> None:
    """status.attempt moved past the pod's attempt: the zombie hears what the store's fencing says."""
    replaced = {"metadata": {"name": "train"}, "status": {"podName": "train-a3", "attempt": 3}}
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, LABELS, replaced)
    assert (err.value.status, err.value.reason) == (409, "StaleAttempt")
    assert "replaced by attempt 3" in err.value.message
    # a newer pod than status knows about yet (created, not yet named) is only "not current": 403
    ahead = {"metadata": {"name": "train"}, "status": {"podName": "train-a1", "attempt": 1}}
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, LABELS, ahead)
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")


def test_pod_before_status_names_it_is_403() -> None:
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, LABELS, execution(None))
    assert err.value.reason == "NotCurrentPod"


@pytest.mark.parametrize(
    "labels",
    [
        {},
        {"stratarouter.io/attempt": "2"},
    ],
)
def test_unmanaged_pod_is_403(labels: dict[str, str]) -> None:
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, labels, execution("train-a2"))
    assert (err.value.status, err.value.reason) == (403, "NotManaged")


def test_pod_naming_an_execution_missing_from_its_namespace_is_403() -> None:
    with pytest.raises(AuthError) as err:
        caller_for(IDENT, LABELS, None)
    assert (err.value.status, err.value.reason) == (403, "NoExecution")


def test_ttl_cache_expires_and_stays_bounded() -> None:
    now = [0.0]
    cache: TTLCache[str, int] = TTLCache(max_entries=2, clock=lambda: now[0])
    cache.put("a", 1, ttl=10)
    assert cache.get("a") == 1
    now[0] = 10.0
    assert cache.get("a") is None
    cache.put("a", 1, ttl=10)
    cache.put("b", 2, ttl=10)
    cache.put("c", 3, ttl=10)
    assert len(cache) == 2
    assert cache.get("a") is None
    assert cache.get("c") == 3
    cache.put("d", 4, ttl=0)
    assert cache.get("d") is None


def test_token_key_hides_the_token() -> None:
    assert "secret" not in token_key("secret")
    assert token_key("a") != token_key("b")
