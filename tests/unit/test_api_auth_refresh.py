"""The authenticator's token cache: reviews are re-checked in the background before they expire, without
holding up requests; a re-check that refuses the token drops it. ``_resolve`` (TokenReview + pod read)
is scripted here and the Executions' current pods come from a :class:`PodNames` view; the real calls
are covered by tests/operator/test_api.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from stratarouter_runtime.operator.api.auth import (
    REFRESH_AHEAD,
    Authenticator,
    AuthError,
    Caller,
    PodClaims,
    PodIdentity,
)
from stratarouter_runtime.operator.api.current_pods import PodNames

CALLER = Caller(namespace="team-a", pod_name="train-a2", execution="train", attempt=2)
CLAIMS = PodClaims(
    ident=PodIdentity(namespace="team-a", pod_name="train-a2", pod_uid="p2", service_account="default"),
    labels={"stratarouter.io/execution": "train", "stratarouter.io/attempt": "2"},
    owner_uid="e1",
)
HEADER = "Bearer eyJhbGciOiJSUzI1NiJ9.eyJhdWQiOlsic3RyYXRhcm91dGVyIl19.c2ln"  # alg RS256, aud stratarouter
TTL = 30.0


def view() -> PodNames:
    names = PodNames()
    names.replace(
        "team-a",
        [
            {
                "metadata": {"namespace": "team-a", "name": "train", "uid": "e1"},
                "status": {"podName": "train-a2", "podUID": "p2", "attempt": 2},
            }
        ],
    )
    return names


class Scripted(Authenticator):
    """Answers ``_resolve`` from a list of outcomes and counts the calls."""

    def __init__(self, api: client.ApiClient, now: list[float]) -> None:
        super().__init__(api, cache_seconds=TTL, current=view(), clock=lambda: now[0])
        self.outcomes: list[PodClaims | AuthError] = []
        self.calls = 0
        self.gate = asyncio.Event()
        self.gate.set()

    async def _resolve(self, token: str) -> PodClaims:
        self.calls += 1
        await self.gate.wait()
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, AuthError):
            raise outcome
        return outcome


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    await api.close()


async def settle() -> None:
    for _ in range(5):
        await asyncio.sleep(0)


async def test_cache_hit_costs_no_lookup(api: client.ApiClient) -> None:
    now = [0.0]
    auth = Scripted(api, now)
    auth.outcomes = [CLAIMS]
    assert await auth.authenticate(HEADER) == CALLER
    now[0] = TTL * REFRESH_AHEAD[0] - 1
    assert await auth.authenticate(HEADER) == CALLER
    assert auth.calls == 1


async def test_due_caller_is_rechecked_in_the_background(api: client.ApiClient) -> None:
    now = [0.0]
    auth = Scripted(api, now)
    auth.outcomes = [CLAIMS, CLAIMS]
    await auth.authenticate(HEADER)
    auth.gate.clear()  # the re-check hangs: requests must not wait for it
    now[0] = TTL * REFRESH_AHEAD[1]
    assert await asyncio.wait_for(auth.authenticate(HEADER), timeout=5) == CALLER
    assert await asyncio.wait_for(auth.authenticate(HEADER), timeout=5) == CALLER
    await settle()
    assert auth.calls == 2  # one re-check, however many requests noticed it was due
    auth.gate.set()
    await settle()
    now[0] = TTL * 1.5  # past the first entry's expiry, within the re-checked one's
    assert await auth.authenticate(HEADER) == CALLER
    assert auth.calls == 2


async def test_a_refusing_recheck_drops_the_caller(api: client.ApiClient) -> None:
    now = [0.0]
    auth = Scripted(api, now)
    auth.outcomes = [CLAIMS, AuthError(401, "PodGone", "replaced")]
    await auth.authenticate(HEADER)
    now[0] = TTL * REFRESH_AHEAD[1]
    assert await auth.authenticate(HEADER) == CALLER  # answered from the cache while re-checking
    await settle()
    with pytest.raises(AuthError) as err:  # the refusal is remembered for a while: no new lookup
        await auth.authenticate(HEADER)
    assert (err.value.status, auth.calls) == (401, 2)


async def test_cached_caller_never_outlives_its_ttl(api: client.ApiClient) -> None:
    now = [0.0]
    auth = Scripted(api, now)
    auth.outcomes = [CLAIMS, AuthError(401, "PodGone", "gone")]
    await auth.authenticate(HEADER)
    now[0] = TTL  # expired without any request in between: resolved again, in the request
    with pytest.raises(AuthError) as err:
        await auth.authenticate(HEADER)
    assert err.value.status == 401
    assert auth.calls == 2
