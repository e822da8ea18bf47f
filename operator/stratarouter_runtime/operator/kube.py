"""The Kubernetes calls the operator's handlers make, on the process's one kubernetes_asyncio client.

Besides kopf's own watches and patches, this wrapper (one, on ``memo.lifecycle.kube``) is how the
lifecycle, the Snapshot, TTL and Event code reach the API server. Each call returns plain dicts (what the
API server sent; core calls skip the client's model objects with ``_preload_content=False``) and maps 404
to None, so the reconcile logic reads like the state machine it is. Other API errors propagate as
``ApiException``.
"""

from __future__ import annotations

import asyncio
from typing import Any

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
