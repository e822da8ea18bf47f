"""The Kubernetes calls the operator makes, on the process's one kubernetes_asyncio client.

Besides kopf's own watches and patches, :class:`Kube` (one, on ``memo.lifecycle.kube``) is how the
lifecycle, the Snapshot, TTL and Event code reach the API server. Each call returns plain dicts (what the
API server sent; core calls skip the client's model objects with ``_preload_content=False``) and maps 404
to None, so the reconcile logic reads like the state machine it is. Other API errors propagate as
``ApiException``.

:class:`DirectRequests` is the checkpoint API's hot path (status patches, the list and watch of
Executions): requests on the same client's connection pool and credentials, without its generic request
code. It is here so that the operator has one place that talks HTTP to the API server by hand.
"""

from __future__ import annotations

import asyncio
from typing import Any

import aiohttp
from kubernetes_asyncio import client
from kubernetes_asyncio.client.exceptions import ApiException

from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP, MERGE_PATCH, SNAPSHOTS, VERSION


class Kube:
    """Typed-enough wrappers over CoreV1Api and CustomObjectsApi sharing one ApiClient."""

    def __init__(self, api: client.ApiClient) -> None:
        self.api = api
        self.core = client.CoreV1Api(api)
        self.custom = client.CustomObjectsApi(api)

    async def _json(self, coro: Any) -> dict[str, Any] | None:
        """Await a call made with ``_preload_content=False`` (or a custom-object call); 404 -> None."""
        try:
            response = await coro
        except ApiException as exc:
            if exc.status == 404:
                return None
            raise
        if isinstance(response, dict):
            return response
        status = response.status
        if status == 404:
            response.release()
            return None
        if not 200 <= status <= 299:
            body = await response.read()
            error = ApiException(status=status, reason=response.reason)
            error.body = body.decode("utf-8", "replace")
            raise error
        data: dict[str, Any] = await response.json()
        return data

    async def get_execution(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._json(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, EXECUTIONS, name)
        )

    async def get_snapshot(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._json(
            self.custom.get_namespaced_custom_object(GROUP, VERSION, namespace, SNAPSHOTS, name)
        )

    async def patch_execution_status(
        self, namespace: str, name: str, status: dict[str, Any]
    ) -> dict[str, Any]:
        """Merge-patch ``status`` (None values delete keys); returns the updated object."""
        result = await self._json(
            self.custom.patch_namespaced_custom_object_status(
                GROUP,
                VERSION,
                namespace,
                EXECUTIONS,
                name,
                {"status": status},
                _content_type=MERGE_PATCH,  # type: ignore[call-arg]
            )
        )
        if result is None:
            raise LookupError(f"Execution {namespace}/{name} is gone")
        return result

    async def delete_execution(self, namespace: str, name: str) -> bool:
        return (
            await self._json(
                self.custom.delete_namespaced_custom_object(
                    GROUP, VERSION, namespace, EXECUTIONS, name, propagation_policy="Background"
                )
            )
            is not None
        )

    async def get_pod(self, namespace: str, name: str) -> dict[str, Any] | None:
        return await self._json(self.core.read_namespaced_pod(name, namespace, _preload_content=False))

    async def list_pods(self, namespace: str, selector: str) -> list[dict[str, Any]]:
        result = await self._json(
            self.core.list_namespaced_pod(namespace, label_selector=selector, _preload_content=False)
        )
        return list((result or {}).get("items") or [])

    async def create_pod(self, namespace: str, pod: dict[str, Any]) -> tuple[dict[str, Any], bool]:
        """Create the pod; on 409 return the existing one. Second value: True when we created it."""
        try:
            created = await self._json(
                self.core.create_namespaced_pod(namespace, pod, _preload_content=False)  # type: ignore[arg-type]
            )
        except ApiException as exc:
            if exc.status != 409:
                raise
            existing = await self.get_pod(namespace, pod["metadata"]["name"])
            if existing is None:
                raise
            return existing, False
        assert created is not None
        return created, True

    async def delete_pod(
        self, namespace: str, name: str, *, grace_seconds: int | None = None, uid: str | None = None
    ) -> bool:
        """Delete (True) or find it already gone (False); with ``uid``, only a pod of that uid (else 409)."""
        body = client.V1DeleteOptions(
            grace_period_seconds=grace_seconds,
            propagation_policy="Background",
            preconditions=client.V1Preconditions(uid=uid) if uid else None,
        )
        deleted = await self._json(
            self.core.delete_namespaced_pod(name, namespace, body=body, _preload_content=False)
        )
        return deleted is not None

    async def wait_pods_gone(self, namespace: str, names: list[str], *, seconds: float) -> list[str]:
        """Poll until the named pods return 404; returns those still present after ``seconds``."""
        remaining = list(names)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        delay = 0.05
        while remaining:
            remaining = [n for n in remaining if await self.get_pod(namespace, n) is not None]
            if not remaining or loop.time() >= deadline:
                break
            await asyncio.sleep(delay)
            delay = min(delay * 2, 1.0)
        return remaining

    async def node_exists(self, name: str) -> bool:
        return await self._json(self.core.read_node(name, _preload_content=False)) is not None

    async def post_event(self, namespace: str, event: dict[str, Any]) -> None:
        call = self.core.create_namespaced_event(
            namespace,
            event,  # type: ignore[arg-type]
            _preload_content=False,
        )
        await self._json(call)


class DirectRequests:
    """Requests straight through the client's connection pool (same TLS, same client certificate).

    kubernetes_asyncio's generic request path (parameter sanitising, a netrc lookup in a worker thread
    per request) cost more CPU than a status patch itself at a thousand Executions, and the client has
    no watch that streams plain JSON lines. ``trust_env=False``: no netrc or proxy lookups per request.
    Requests carry the client's User-Agent, so the API server names the same field manager as for the
    client's own calls (``status.lastCheckpoint`` stays owned by the manager of the rest of the status).
    """

    def __init__(self, api: client.ApiClient, *, timeout_seconds: float | None = None) -> None:
        self._config = api.configuration
        self._user_agent = str(api.user_agent)
        self._session = aiohttp.ClientSession(
            connector=api.rest_client.pool_manager.connector,
            connector_owner=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=timeout_seconds),
        )

    def url(self, path: str) -> str:
        """``path`` (``/apis/...``) on the API server the client talks to."""
        return f"{self._config.host}{path}"

    async def _headers(self, content_type: str | None) -> dict[str, str]:
        """The client's current credentials (a refreshed token when it has a hook), JSON answers."""
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        if content_type is not None:
            headers["Content-Type"] = content_type
        for setting in (await self._config.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        return headers

    async def get(self, path: str, *, stream_read_seconds: float | None = None) -> aiohttp.ClientResponse:
        """GET ``path``; the caller reads the answer (``async with``) to free the connection. A stream (a
        watch) has no total deadline, only one to connect and ``stream_read_seconds`` between two reads."""
        timeout = None
        if stream_read_seconds is not None:
            timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=stream_read_seconds)
        return await self._session.get(self.url(path), headers=await self._headers(None), timeout=timeout)

    async def patch(self, path: str, body: bytes, content_type: str) -> aiohttp.ClientResponse:
        return await self._session.patch(self.url(path), data=body, headers=await self._headers(content_type))

    async def close(self) -> None:
        await self._session.close()
