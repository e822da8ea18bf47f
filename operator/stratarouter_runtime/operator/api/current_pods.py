"""Which pod is each Execution's current one (``status.podUID``), kept up to date by a watch.

The checkpoint API checks on every request that the caller is its Execution's current pod. Asking the
API server each time (or every few seconds per pod) was the largest share of its requests at a thousand
pods; this view answers from memory instead. It is only a fast path for *accepting* a caller: when it
says "not the current pod" or does not know the Execution, the authenticator asks the API server before
refusing, so a view that lags behind a just-patched status never refuses a legitimate new pod. A view
that lags the other way (an old pod still named for a moment) lets the old pod through only until the
next watch event; its writes are refused by the store's attempt fencing anyway.

One list + watch per watched namespace (or one cluster-wide), resumed from the last resourceVersion,
re-listed when the API server says it is too old (410). :class:`PodNames` is the pure bookkeeping.

What it keeps of an Execution is what only the operator writes: ``status.podUID`` (the uid of the pod it
created for the current attempt), ``status.attempt`` and the Execution's own uid. ``status.podName`` is
kept for messages only: a pod's name (like its labels) says nothing about who created it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any, NamedTuple
from urllib.parse import quote, urlencode

import orjson
from kubernetes_asyncio import client

from stratarouter_runtime.operator.kube import DirectRequests
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP_PATH

log = logging.getLogger(__name__)

WATCH_SECONDS = 300
RETRY_SECONDS = 2.0
Key = tuple[str, str]


class Current(NamedTuple):
    """An Execution's current pod as its status records it ('' / 0 where status has nothing yet)."""

    pod_name: str
    """``status.podName``: for messages only, never to recognise a caller."""
    pod_uid: str
    """``status.podUID``: the uid of the pod the operator created for ``attempt``."""
    attempt: int
    """``status.attempt``."""
    uid: str
    """The Execution's own uid: tells a re-created Execution of the same name from the old one."""
    deleting: bool = False
    """``metadata.deletionTimestamp`` is set: the run is over, and no pod of it is current any more."""

    def is_pod(self, pod_uid: str) -> bool:
        """Whether the pod with uid ``pod_uid`` is this Execution's current pod (never for an empty uid,
        never once the Execution is being deleted: its stored run is about to be archived or dropped)."""
        return bool(pod_uid) and self.pod_uid == pod_uid and self.attempt > 0 and not self.deleting


class PodNames:
    """``(namespace, execution) -> Current`` for the Executions the watches saw."""

    def __init__(self) -> None:
        self._pods: dict[Key, Current] = {}

    def replace(self, scope: str, items: Iterable[Mapping[str, Any]]) -> None:
        """A fresh list of ``scope`` ('' = every namespace): forget what it no longer holds."""
        fresh = {key: pod for item in items if (key := _key(item)) is not None for pod in [current_of(item)]}
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
            self._pods[key] = current_of(obj)

    def current(self, namespace: str, execution: str) -> Current | None:
        """What the Execution's status says of its current pod; None when the Execution is unknown."""
        return self._pods.get((namespace, execution))

    def __len__(self) -> int:
        return len(self._pods)


def _key(obj: Mapping[str, Any]) -> Key | None:
    meta = obj.get("metadata") or {}
    namespace, name = meta.get("namespace"), meta.get("name")
    if not isinstance(namespace, str) or not isinstance(name, str):
        return None
    return namespace, name


def current_of(obj: Mapping[str, Any]) -> Current:
    """The :class:`Current` of an Execution object (a dict as the API server sends it)."""
    status = obj.get("status") or {}
    meta = obj.get("metadata") or {}
    attempt = status.get("attempt")
    return Current(
        pod_name=str(status.get("podName") or ""),
        pod_uid=str(status.get("podUID") or ""),
        attempt=attempt if isinstance(attempt, int) and not isinstance(attempt, bool) else 0,
        uid=str(meta.get("uid") or ""),
        deleting=bool(meta.get("deletionTimestamp")),
    )


class CurrentPods:
    """Keeps a :class:`PodNames` filled from list + watch streams until :meth:`close`."""

    def __init__(self, api: client.ApiClient, namespaces: Iterable[str] = ()) -> None:
        self.names = PodNames()
        self._direct = DirectRequests(api)
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
        await self._direct.close()

    @staticmethod
    def _path(scope: str) -> str:
        if scope:
            return f"{GROUP_PATH}/namespaces/{quote(scope, safe='')}/{EXECUTIONS}"
        return f"{GROUP_PATH}/{EXECUTIONS}"

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
        async with await self._direct.get(self._path(scope)) as resp:
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
        path = f"{self._path(scope)}?{query}"
        async with await self._direct.get(path, stream_read_seconds=WATCH_SECONDS + 30) as resp:
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
