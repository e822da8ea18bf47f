"""A caller is its Execution's current pod only by its token's pod uid against ``status.podUID``, and it
writes as ``status.attempt``: nothing a pod's labels or name say is trusted (they can be patched, or
chosen by whoever creates the pod)."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from stratarouter_runtime.operator.api.auth import (
    Authenticator,
    AuthError,
    PodClaims,
    PodIdentity,
    caller_for,
)
from stratarouter_runtime.operator.api.current_pods import PodNames

NS = "team-a"
FORGED = {"stratarouter.io/execution": "train", "stratarouter.io/attempt": "99"}


def ident(pod_name: str = "train-a2", pod_uid: str = "u2") -> PodIdentity:
    return PodIdentity(namespace=NS, pod_name=pod_name, pod_uid=pod_uid, service_account="default")


def execution(pod_name: str = "train-a2", pod_uid: str | None = "u2", attempt: int = 2) -> dict[str, Any]:
    status: dict[str, Any] = {"podName": pod_name, "attempt": attempt}
    if pod_uid is not None:
        status["podUID"] = pod_uid
    return {"metadata": {"namespace": NS, "name": "train", "uid": "e1"}, "status": status}


def test_the_attempt_is_the_executions_not_the_pods_label() -> None:
    caller = caller_for(ident(), FORGED, execution())
    assert (caller.execution, caller.attempt) == ("train", 2)
    without = caller_for(ident(), {"stratarouter.io/execution": "train"}, execution())
    assert without.attempt == 2


@pytest.mark.parametrize(
    ("status_uid", "token_uid"),
    [
        ("u-operators", "u2"),  # an impostor with the current pod's name (and labels, and owner)
        (None, "u2"),  # status records no pod uid: no pod is current
        ("u2", ""),  # a token that names no pod uid never matches
        ("", ""),
    ],
)
def test_only_the_recorded_pod_uid_is_current(status_uid: str | None, token_uid: str) -> None:
    with pytest.raises(AuthError) as err:
        caller_for(ident(pod_uid=token_uid), FORGED, execution(pod_uid=status_uid))
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")


def test_a_pod_of_the_current_uid_is_accepted_whatever_its_name() -> None:
    """The uid is the identity; the name only chooses between refusals."""
    caller = caller_for(ident(pod_name="anything"), FORGED, execution(pod_name="train-a2"))
    assert (caller.pod_name, caller.attempt) == ("anything", 2)


def test_stale_or_not_current_is_decided_by_the_immutable_name_not_the_label() -> None:
    """An older attempt's pod (by its name) gets 409; a label claiming attempt 99 does not make a newer
    one, nor does a label claiming attempt 1 make a pod named as the current attempt stale."""
    with pytest.raises(AuthError) as err:
        caller_for(ident("train-a1", "u1"), FORGED, execution())
    assert (err.value.status, err.value.reason) == (409, "StaleAttempt")
    assert "attempt 1 of Execution team-a/train was replaced by attempt 2" in err.value.message
    old_label = {"stratarouter.io/execution": "train", "stratarouter.io/attempt": "1"}
    for name in ("train-a2", "train-a3", "train-a02", "train-x1", "other-a1"):
        with pytest.raises(AuthError) as err:
            caller_for(ident(name, "u-someone"), old_label, execution())
        assert (err.value.status, err.value.reason) == (403, "NotCurrentPod"), name


class Scripted(Authenticator):
    """Claims per token ``sub`` from a dict; the Execution as the API server has it from ``self.stored``."""

    def __init__(self, api: client.ApiClient, names: PodNames) -> None:
        super().__init__(api, cache_seconds=300, current=names, wall_clock=lambda: 0.0)
        self.claims: dict[str, PodClaims] = {}
        self.stored: dict[str, Any] | None = None
        self.reads = 0

    async def _resolve(self, token: str) -> PodClaims:
        payload = token.split(".")[1]
        return self.claims[json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]]

    async def _execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.stored


def bearer(who: str) -> str:
    def b64(value: dict[str, Any]) -> str:
        return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")

    return f"Bearer {b64({'alg': 'RS256'})}.{b64({'sub': who, 'aud': ['stratarouter']})}.sig"


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    await api.close()


async def test_the_watched_view_compares_uids(api: client.ApiClient) -> None:
    """The view accepts the recorded pod without an API request and with status's attempt; a pod with the
    current pod's name, labels and owner but another uid is not accepted by the view, nor by the API
    server's copy of the Execution."""
    names = PodNames()
    names.replace(NS, [execution()])
    auth = Scripted(api, names)
    auth.stored = execution()
    auth.claims = {
        "real": PodClaims(ident=ident(), labels=FORGED, owner_uid="e1"),
        "impostor": PodClaims(ident=ident(pod_uid="u-impostor"), labels=FORGED, owner_uid="e1"),
    }
    real = await auth.authenticate(bearer("real"))
    assert (real.attempt, auth.reads) == (2, 0)
    with pytest.raises(AuthError) as err:
        await auth.authenticate(bearer("impostor"))
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")
    assert auth.reads == 1  # refused only after the API server's copy agreed

    # a recovery: status records attempt 3 and its pod's uid; the attempt-2 pod is now a stale one
    names.apply("MODIFIED", execution("train-a3", "u3", attempt=3))
    auth.stored = execution("train-a3", "u3", attempt=3)
    with pytest.raises(AuthError) as err:
        await auth.authenticate(bearer("real"))
    assert (err.value.status, err.value.reason) == (409, "StaleAttempt")
