"""Unauthenticated callers are cheap: a token that cannot be one of ours (not a JWT, not for audience
``stratarouter``, expired) is refused without a TokenReview, refusals are remembered for a moment,
and only a few reviews run at once. A review is only believed when its answer confirms our audience.

The real screening, caching and review code runs; the TokenReview API is a fake that counts its calls,
and the pod and Execution reads are scripted.
"""

from __future__ import annotations

import asyncio
import base64
import json
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from kubernetes_asyncio import client

from stratarouter_runtime.operator.api.auth import (
    CLAIM_POD_NAME,
    CLAIM_POD_UID,
    Authenticator,
    AuthError,
    Caller,
    PodIdentity,
)

NOW = 1_900_000_000.0
CALLER = Caller(namespace="team-a", pod_name="train-a2", execution="train", attempt=2)


def b64(value: Any) -> str:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def jwt(claims: dict[str, Any] | None = None, header: dict[str, Any] | None = None, sig: str = "c2ln") -> str:
    """A token shaped like the kubelet's (unsigned: only the API server could check a signature)."""
    payload = {"aud": ["stratarouter"], "exp": NOW + 3600, "sub": "system:serviceaccount:team-a:default"}
    return f"{b64(header or {'alg': 'RS256', 'kid': 'k1'})}.{b64({**payload, **(claims or {})})}.{sig}"


def answer(authenticated: bool = True, audiences: list[str] | None = None) -> client.V1TokenReview:
    user = client.V1UserInfo(
        username="system:serviceaccount:team-a:default",
        extra={CLAIM_POD_NAME: ["train-a2"], CLAIM_POD_UID: ["p2"]},
    )
    status = client.V1TokenReviewStatus(
        authenticated=authenticated,
        audiences=["stratarouter"] if audiences is None else audiences,
        user=user if authenticated else None,
        error=None if authenticated else "invalid bearer token",
    )
    return client.V1TokenReview(spec=client.V1TokenReviewSpec(token="t"), status=status)


class Reviews:
    """The TokenReview API: answers with ``reply``, counts the calls and how many ran at once."""

    def __init__(self, reply: client.V1TokenReview, delay: float = 0.0) -> None:
        self.reply = reply
        self.delay = delay
        self.calls = 0
        self.running = 0
        self.most_at_once = 0

    async def create_token_review(self, body: client.V1TokenReview) -> client.V1TokenReview:
        self.calls += 1
        self.running += 1
        self.most_at_once = max(self.most_at_once, self.running)
        try:
            await asyncio.sleep(self.delay)
            return self.reply
        finally:
            self.running -= 1


class Faked(Authenticator):
    """The real authenticator with the API server's answers scripted."""

    def __init__(self, api: client.ApiClient, reviews: Reviews, now: list[float], **kwargs: Any) -> None:
        super().__init__(api, clock=lambda: now[0], wall_clock=lambda: NOW + now[0], **kwargs)
        self._authn = reviews  # type: ignore[assignment]

    async def _pod_metadata(self, ident: PodIdentity) -> dict[str, Any]:
        labels = {"stratarouter.io/execution": "train", "stratarouter.io/attempt": "2"}
        return {"uid": ident.pod_uid, "labels": labels}

    async def _execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return {"metadata": {"name": name}, "status": {"podName": "train-a2", "podUID": "p2", "attempt": 2}}


@pytest.fixture
async def api() -> AsyncIterator[client.ApiClient]:
    api = client.ApiClient(client.Configuration(host="https://127.0.0.1:1"))
    yield api
    await api.close()


JUNK: list[Callable[[int], str]] = [
    lambda i: f"junk-{i}",  # not three parts
    lambda i: f"a.b.c{i}",  # three parts, no JSON in them
    lambda i: f"{b64({'alg': 'RS256'})}.{b64(b'not json')}.s{i}",
    lambda i: jwt({"n": i}, header={"typ": "JWT"}),  # no alg
    lambda i: jwt({"n": i}, header={"alg": "none"}),  # unsigned
    lambda i: f"{b64({'alg': 'RS256'})}.{b64([i])}.sig",  # claims not an object
    lambda i: jwt({"n": i, "aud": ["https://kubernetes.default.svc"]}),  # the API server's audience
    lambda i: jwt({"n": i, "aud": "stratarouter-other"}),
    lambda i: jwt({"n": i, "aud": None}),
    lambda i: jwt({"n": i, "exp": NOW - 60}),  # expired
    lambda i: jwt({"n": i}, sig=""),  # no signature
    lambda i: jwt({"n": i, "pad": "x" * 9000}),  # longer than any header a server takes
]


async def test_junk_tokens_cost_no_token_review(api: client.ApiClient) -> None:
    reviews = Reviews(answer(authenticated=False))
    auth = Faked(api, reviews, [0.0])
    for i in range(2000):
        token = JUNK[i % len(JUNK)](i)
        with pytest.raises(AuthError) as err:
            await auth.authenticate(f"Bearer {token}")
        assert (err.value.status, err.value.reason) == (401, "InvalidToken"), token
    assert reviews.calls == 0


async def test_a_plausible_token_is_reviewed_and_its_refusal_remembered(api: client.ApiClient) -> None:
    now = [0.0]
    reviews = Reviews(answer(authenticated=False))
    auth = Faked(api, reviews, now, negative_cache_seconds=5.0)
    forged = jwt({"n": "forged"})
    for _ in range(3):
        with pytest.raises(AuthError) as err:
            await auth.authenticate(f"Bearer {forged}")
        assert (err.value.status, err.value.reason) == (401, "InvalidToken")
    assert reviews.calls == 1
    now[0] = 6.0
    with pytest.raises(AuthError):
        await auth.authenticate(f"Bearer {forged}")
    assert reviews.calls == 2


async def test_token_reviews_run_a_bounded_number_at_a_time(api: client.ApiClient) -> None:
    reviews = Reviews(answer(authenticated=False), delay=0.02)
    auth = Faked(api, reviews, [0.0], review_concurrency=4)
    tokens = [jwt({"n": i}) for i in range(40)]
    calls = (auth.authenticate(f"Bearer {t}") for t in tokens)
    results = await asyncio.gather(*calls, return_exceptions=True)
    assert all(isinstance(r, AuthError) and r.status == 401 for r in results)
    assert reviews.calls == 40
    assert reviews.most_at_once == 4


@pytest.mark.parametrize("audiences", [[], ["https://kubernetes.default.svc"], ["stratarouter-other"]])
async def test_a_review_that_does_not_confirm_our_audience_is_refused(
    api: client.ApiClient, audiences: list[str]
) -> None:
    """An answer with status.audiences empty means "valid for the API server", not for us."""
    auth = Faked(api, Reviews(answer(audiences=audiences)), [0.0])
    with pytest.raises(AuthError) as err:
        await auth.authenticate(f"Bearer {jwt()}")
    assert (err.value.status, err.value.reason) == (401, "InvalidToken")
    assert "audience" in err.value.message


@pytest.mark.parametrize("audiences", [["stratarouter"], ["https://kubernetes.default.svc", "stratarouter"]])
async def test_a_review_confirming_our_audience_names_the_caller(
    api: client.ApiClient, audiences: list[str]
) -> None:
    reviews = Reviews(answer(audiences=audiences))
    auth = Faked(api, reviews, [0.0])
    token = jwt({"aud": audiences})
    assert await auth.authenticate(f"Bearer {token}") == CALLER
    assert await auth.authenticate(f"Bearer {token}") == CALLER
    assert reviews.calls == 1
