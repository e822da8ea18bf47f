"""The per-request current-pod check: answered from the watched view when it agrees, from the API server
before any refusal; a review is never trusted past its token's expiry. ``_resolve`` (TokenReview + pod
read) and ``_execution`` (the Execution read) are scripted; the real calls are in tests/operator."""

from __future__ import annotations

import base64
import json
from collections.abc import AsyncIterator
from typing import Any

import pytest
from kubernetes_asyncio import client

from stratarouter_runtime.operator.api.auth import (
    EXPIRY_MARGIN_SECONDS,
    Authenticator,
    AuthError,
    Caller,
    PodClaims,
    PodIdentity,
    owner_execution_uid,
    token_expiry,
)
from stratarouter_runtime.operator.api.current_pods import Current, PodNames

NS = "team-a"
OLD = PodClaims(
    ident=PodIdentity(namespace=NS, pod_name="train-a1", pod_uid="p1", service_account="default"),
    labels={"stratarouter.io/execution": "train", "stratarouter.io/attempt": "1"},
    owner_uid="e1",
)
NEW = PodClaims(
    ident=PodIdentity(namespace=NS, pod_name="train-a2", pod_uid="p2", service_account="default"),
    labels={"stratarouter.io/execution": "train", "stratarouter.io/attempt": "2"},
    owner_uid="e1",
)


def execution(pod: str, uid: str = "e1") -> dict[str, Any]:
    """Execution ``uid`` at the attempt of ``pod``'s name; pod uid ``p<n>`` (e1's) or ``<uid>-p<n>``."""
    attempt = int(pod.rsplit("-a", 1)[1])
    pod_uid = f"p{attempt}" if uid == "e1" else f"{uid}-p{attempt}"
    status = {"podName": pod, "podUID": pod_uid, "attempt": attempt}
    return {"metadata": {"namespace": NS, "name": "train", "uid": uid}, "status": status}


class Scripted(Authenticator):
    """Claims per token from a dict; the Execution as the API server has it from ``self.stored``."""

    def __init__(self, api: client.ApiClient, names: PodNames | None, now: list[float]) -> None:
        super().__init__(api, cache_seconds=300, current=names, wall_clock=lambda: now[0])
        self.claims: dict[str, PodClaims] = {"old": OLD, "new": NEW}
        self.stored: dict[str, Any] | None = execution("train-a1")
        self.resolves = 0
        self.reads = 0

    async def _resolve(self, token: str) -> PodClaims:
        self.resolves += 1
        payload = token.split(".")[1]
        return self.claims[json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))["sub"]]

    async def _execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        self.reads += 1
        return self.stored


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    await api.close()


def b64(value: dict[str, Any]) -> str:
    return base64.urlsafe_b64encode(json.dumps(value).encode()).decode().rstrip("=")


def jwt(who: str, exp: float | None = None) -> str:
    """A token shaped like a projected one (unsigned: ``_resolve`` is scripted) whose ``sub`` is ``who``."""
    payload: dict[str, Any] = {"sub": who, "aud": ["stratarouter"]}
    if exp is not None:
        payload["exp"] = exp
    return f"{b64({'alg': 'RS256'})}.{b64(payload)}.sig"


OLD_TOKEN = f"Bearer {jwt('old')}"
NEW_TOKEN = f"Bearer {jwt('new')}"


async def test_the_current_pod_costs_no_api_request(api: client.ApiClient) -> None:
    names = PodNames()
    names.replace(NS, [execution("train-a1")])
    auth = Scripted(api, names, [0.0])
    for _ in range(3):
        assert await auth.authenticate(OLD_TOKEN) == Caller(NS, "train-a1", "train", 1)
    assert (auth.resolves, auth.reads) == (1, 0)


async def test_a_cached_token_of_a_replaced_pod_is_refused(api: client.ApiClient) -> None:
    """However long the review is cached: once the view (and the API server) name the new pod, 403."""
    names = PodNames()
    names.replace(NS, [execution("train-a1")])
    auth = Scripted(api, names, [0.0])
    assert (await auth.authenticate(OLD_TOKEN)).attempt == 1
    names.apply("MODIFIED", execution("train-a2"))
    auth.stored = execution("train-a2")
    with pytest.raises(AuthError) as err:
        await auth.authenticate(OLD_TOKEN)
    assert (err.value.status, err.value.reason) == (409, "StaleAttempt")
    assert auth.resolves == 1  # the review itself was still cached: the refusal came from the pod check
    assert (await auth.authenticate(NEW_TOKEN)).attempt == 2


async def test_a_view_behind_the_api_server_never_refuses_the_new_pod(api: client.ApiClient) -> None:
    names = PodNames()
    names.replace(NS, [execution("train-a1")])  # the watch has not shown the new pod yet
    auth = Scripted(api, names, [0.0])
    auth.stored = execution("train-a2")
    assert (await auth.authenticate(NEW_TOKEN)).pod_name == "train-a2"
    assert auth.reads == 1


async def test_without_a_view_every_request_asks_the_api_server(api: client.ApiClient) -> None:
    auth = Scripted(api, None, [0.0])
    assert (await auth.authenticate(OLD_TOKEN)).attempt == 1
    auth.stored = execution("train-a2")
    with pytest.raises(AuthError) as err:
        await auth.authenticate(OLD_TOKEN)
    assert err.value.reason == "StaleAttempt"
    auth.stored = None
    with pytest.raises(AuthError) as err:
        await auth.authenticate(OLD_TOKEN)
    assert err.value.reason == "NoExecution"
    assert (auth.resolves, auth.reads) == (1, 3)


async def test_a_pod_of_an_earlier_execution_of_the_same_name_is_refused(api: client.ApiClient) -> None:
    """Deleted and re-created: the new Execution's first pod has the old pod's name, not its owner uid."""
    names = PodNames()
    names.replace(NS, [execution("train-a1", uid="e2")])
    auth = Scripted(api, names, [0.0])
    auth.stored = execution("train-a1", uid="e2")
    with pytest.raises(AuthError) as err:
        await auth.authenticate(OLD_TOKEN)
    assert (err.value.status, err.value.reason) == (403, "NotCurrentPod")
    assert "earlier Execution" in err.value.message


async def test_a_review_is_not_trusted_past_its_tokens_expiry(api: client.ApiClient) -> None:
    now = [1_000_000.0]
    names = PodNames()
    names.replace(NS, [execution("train-a1")])
    auth = Scripted(api, names, now)
    short = jwt("old", exp=now[0] + 60)
    assert auth._ttl_of(short) == 60 - EXPIRY_MARGIN_SECONDS
    assert auth._ttl_of(jwt("old", exp=now[0] + 3600)) == 300  # capped by cache_seconds
    assert auth._ttl_of(jwt("old", exp=now[0] - 10)) == 0
    assert auth._ttl_of("not-a-jwt") == 300
    await auth.authenticate(f"Bearer {short}")
    await auth.authenticate(f"Bearer {short}")
    assert auth.resolves == 1


def test_token_expiry_reads_the_exp_claim() -> None:
    assert token_expiry(jwt("a", exp=1234)) == 1234.0
    assert token_expiry(jwt("a", exp=None)) is None
    assert token_expiry("a.!!!.c") is None
    assert token_expiry("garbage") is None


def test_owner_uid_is_the_executions() -> None:
    meta = {
        "ownerReferences": [
            {"apiVersion": "apps/v1", "kind": "ReplicaSet", "uid": "r"},
            {"apiVersion": "stratarouter.io/v1alpha1", "kind": "Execution", "uid": "e1"},
        ]
    }
    assert owner_execution_uid(meta) == "e1"
    assert owner_execution_uid({}) == ""


def test_pod_names_follow_lists_and_events() -> None:
    names = PodNames()
    names.replace(NS, [execution("train-a1"), {"metadata": {"namespace": NS, "name": "idle", "uid": "e9"}}])
    assert names.current(NS, "train") == Current("train-a1", "p1", 1, "e1")
    assert names.current(NS, "idle") == Current("", "", 0, "e9")
    assert names.current("other", "train") is None
    names.apply("MODIFIED", execution("train-a2"))
    assert names.current(NS, "train") == Current("train-a2", "p2", 2, "e1")
    names.apply("DELETED", execution("train-a2"))
    assert names.current(NS, "train") is None
    names.apply("ADDED", {"metadata": {}})  # nothing to key it by: ignored
    names.replace(NS, [])  # a re-list forgets what is gone
    assert len(names) == 0
    names.replace("", [execution("train-a3")])  # cluster-wide: every namespace
    names.replace("other", [])  # a list of another namespace leaves this one alone
    assert names.current(NS, "train") == Current("train-a3", "p3", 3, "e1")
