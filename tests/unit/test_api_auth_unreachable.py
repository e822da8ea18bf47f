"""An API server that cannot be reached (restarting, a network fault) is a 503 the pod's SDK retries,
never a 500: found by the chaos runs, where pods' first requests during a kube-apiserver restart got
``500 InternalError`` from a connection error escaping the TokenReview."""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
from kubernetes_asyncio import client

from stratarouter_dev.ports import free_port
from stratarouter_runtime.operator.api.auth import Authenticator, AuthError, PodIdentity
from tests.unit.test_api_auth_screening import jwt


@pytest.fixture
async def nobody_listens() -> AsyncIterator[client.ApiClient]:
    """A client of an API server that is not there (a free loopback port: connection refused)."""
    api = client.ApiClient(client.Configuration(host=f"http://127.0.0.1:{free_port()}"))
    yield api
    await api.close()


async def test_a_token_review_without_an_api_server_is_503(nobody_listens: client.ApiClient) -> None:
    auth = Authenticator(nobody_listens)
    token = jwt({"exp": time.time() + 3600})
    with pytest.raises(AuthError) as err:
        await auth.authenticate(f"Bearer {token}")
    assert (err.value.status, err.value.reason) == (503, "ApiUnavailable")
    assert "unreachable" in err.value.message


@pytest.mark.parametrize("read", ["pod", "execution"])
async def test_reading_the_pod_or_execution_without_an_api_server_is_503(
    nobody_listens: client.ApiClient, read: str
) -> None:
    auth = Authenticator(nobody_listens)
    ident = PodIdentity(namespace="ns", pod_name="run-a1", pod_uid="p1", service_account="default")
    call = auth._pod_metadata(ident) if read == "pod" else auth._execution("ns", "run")
    with pytest.raises(AuthError) as err:
        await call
    assert (err.value.status, err.value.reason) == (503, "ApiUnavailable")
