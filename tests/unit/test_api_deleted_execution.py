"""Once an Execution is being deleted, no pod of it is current: its run is about to be archived or
dropped, so its pods get the answer a replaced attempt gets (409 ``StaleAttempt``: the SDK stops)."""

from __future__ import annotations

from typing import Any

import pytest

from stratarouter_runtime.operator.api.auth import AuthError, PodIdentity, caller_for
from stratarouter_runtime.operator.api.current_pods import PodNames, current_of

LABELS = {"stratarouter.io/execution": "train"}


def execution(*, deleting: bool) -> dict[str, Any]:
    meta: dict[str, Any] = {"namespace": "ns", "name": "train", "uid": "e1"}
    if deleting:
        meta["deletionTimestamp"] = "2026-12-01T10:00:00Z"
    return {"metadata": meta, "status": {"podName": "train-a1", "podUID": "p1", "attempt": 1}}


def ident(pod_uid: str = "p1") -> PodIdentity:
    return PodIdentity(namespace="ns", pod_name="train-a1", pod_uid=pod_uid, service_account="default")


def test_the_current_pod_stops_being_current_when_the_deletion_starts() -> None:
    assert current_of(execution(deleting=False)).is_pod("p1")
    assert not current_of(execution(deleting=True)).is_pod("p1")


def test_the_view_follows_the_deletion_timestamp() -> None:
    names = PodNames()
    names.apply("ADDED", execution(deleting=False))
    names.apply("MODIFIED", execution(deleting=True))
    seen = names.current("ns", "train")
    assert seen is not None
    assert seen.deleting
    assert not seen.is_pod("p1")


def test_its_pod_is_told_to_stop() -> None:
    with pytest.raises(AuthError) as err:
        caller_for(ident(), LABELS, execution(deleting=True))
    assert (err.value.status, err.value.reason) == (409, "StaleAttempt")
    assert "being deleted" in err.value.message


def test_another_pod_is_still_not_current() -> None:
    with pytest.raises(AuthError) as err:
        caller_for(ident("someone-else"), LABELS, execution(deleting=True))
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")
