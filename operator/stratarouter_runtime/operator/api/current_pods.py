"""Which pod is each Execution's current one (``status.podName``), kept up to date by a watch.

The checkpoint API checks on every request that the caller is its Execution's current pod. Asking the
API server each time (or every few seconds per pod) was the largest share of its requests at a thousand
pods; this view answers from memory instead. It is only a fast path for *accepting* a caller: when it
says "not the current pod" or does not know the Execution, the authenticator asks the API server before
refusing, so a view that lags behind a just-patched status never refuses a legitimate new pod. A view
that lags the other way (an old pod still named for a moment) lets the old pod through only until the
next watch event; its writes are refused by the store's attempt fencing anyway.

One list + watch per watched namespace (or one cluster-wide), resumed from the last resourceVersion,
re-listed when the API server says it is too old (410). :class:`PodNames` is the pure bookkeeping.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any
from urllib.parse import quote, urlencode

import aiohttp
import orjson
from kubernetes_asyncio import client

log = logging.getLogger(__name__)

GROUP = "stratarouter.io"
VERSION = "v1alpha1"
PLURAL = "executions"
WATCH_SECONDS = 300
RETRY_SECONDS = 2.0
Key = tuple[str, str]


class PodNames:
    """``(namespace, execution) -> (status.podName, Execution uid)`` for the Executions the watches saw.

    The uid tells a re-created Execution of the same name (whose first pod has the same name as the
    old one's) from the old one: a pod's owner reference names the uid it was made for.
    """

    def __init__(self) -> None:
        self._pods: dict[Key, tuple[str, str]] = {}

    def replace(self, scope: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list of ``scope`` ('' = every namespace): forget what it no longer holds."""
        fresh = {key: pod for item in items if (key := _key(item)) is not None for pod in [_pod(item)]}
        stale = [k for k in self._pods if (not scope or k[0] == scope) and k not in fresh]
        for key in stale:
            del self._pods[key]
        self._pods.update(fresh)

    def apply(self, event_type: str, obj: Mapping[str, Any]) -> None:
        """One watch event (ADDED, MODIFIED, DELETED)."""
        key = _key(obj)
        if key is None:
            return
        if event_type == "DELETED":
            self._pods.pop(key, None)
        else:
            self._pods[key] = _pod(obj)

    def current(self, namespace: str, execution: str) -> tuple[str, str] | None:
        """``(status.podName or '', uid)`` of the Execution; None when the Execution is unknown."""
        return self._pods.get((namespace, execution))

    def __len__(self) -> int:
        return len(self._pods)


def _key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return namespace, name


def _pod(obj: Mapping[str, Any]) -> tuple[str, str]:
    uid = str((obj.get("metadata") or {}).get("uid") or "")
    return str((obj.get("status") or {}).get("podName") or ""), uid


class CurrentPods:
    """Keeps a :class:`PodNames` filled from list + watch streams until :meth:`close`."""

    def __init__(self, api: client.ApiClient, namespaces: Iterable[str] = ()) -> None:
        self.names = PodNames()
        self._config = api.configuration
        # The same shared connection pool as the status coalescer; no netrc/proxy lookups per request.
        self._session = aiohttp.ClientSession(
            connector=api.rest_client.pool_manager.connector, connector_owner=False, trust_env=False
        )
        self._user_agent = str(api.user_agent)
        self._scopes = tuple(namespaces) or ("",)
        self._tasks: list[asyncio.Task[None]] = []

    def start(self) -> None:
        loop = asyncio.get_running_loop()
        self._tasks = [loop.create_task(self._run(s), name=f"current-pods:{s}") for s in self._scopes]

    async def close(self) -> None:
        for task in self._tasks:
            task.cancel()
        for task in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await task
        await self._session.close()

    def _url(self, scope: str) -> str:
        base = f"{self._config.host}/apis/{GROUP}/{VERSION}"
        return f"{base}/namespaces/{quote(scope, safe='')}/{PLURAL}" if scope else f"{base}/{PLURAL}"

    async def _headers(self) -> dict[str, str]:
        headers = {"Accept": "application/json", "User-Agent": self._user_agent}
        for setting in (await self._config.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        return headers

    async def _run(self, scope: str) -> None:
        while True:
            try:
                version: str | None = await self._list(scope)
                while version:
                    version = await self._watch(scope, version)
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # the API server is away: keep the last view, try again shortly
                log.warning("watching Executions for the checkpoint API (%s) failed: %r", scope or "*", exc)
            await asyncio.sleep(RETRY_SECONDS)

    async def _list(self, scope: str) -> str:
        async with self._session.get(self._url(scope), headers=await self._headers()) as resp:
            raw = await resp.read()
            if resp.status != 200:
                raise RuntimeError(f"list failed: {resp.status} {raw[:200].decode(errors='replace')}")
        body = orjson.loads(raw)
        self.names.replace(scope, body.get("items") or [])
        return str(body["metadata"]["resourceVersion"])

    async def _watch(self, scope: str, version: str) -> str | None:
        """Follow one watch stream; the resourceVersion to resume from, or None when a re-list is needed."""
        query = urlencode(
            {
                "watch": "1",
                "resourceVersion": version,
                "allowWatchBookmarks": "true",
                "timeoutSeconds": str(WATCH_SECONDS),
            }
        )
        timeout = aiohttp.ClientTimeout(total=None, sock_connect=30, sock_read=WATCH_SECONDS + 30)
        async with self._session.get(
            f"{self._url(scope)}?{query}", headers=await self._headers(), timeout=timeout
        ) as resp:
            if resp.status == 410:
                return None
            if resp.status != 200:
                raw = await resp.read()
                raise RuntimeError(f"watch failed: {resp.status} {raw[:200].decode(errors='replace')}")
            async for line in resp.content:
                if not line.strip():
                    continue
                event = orjson.loads(line)
                kind, obj = event.get("type"), event.get("object") or {}
                if kind == "ERROR":
                    if obj.get("code") == 410:
                        return None
                    raise RuntimeError(f"watch error: {obj.get('message')}")
                version = str((obj.get("metadata") or {}).get("resourceVersion") or version)
                if kind != "BOOKMARK":
                    self.names.apply(str(kind), obj)
        return version
