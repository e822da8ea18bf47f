"""Mirror each Execution's last checkpoint into its status, at most once per interval.

A pod may checkpoint a hundred times a second; the API server should see about one status patch a
second for it. :meth:`StatusCoalescer.note_checkpoint` only records the newest checkpoint in memory
(never blocks the request path); a single background task sends one merge patch of
``status.lastCheckpoint`` per Execution when its interval has passed, with the newest values then
known. :meth:`StatusCoalescer.close` sends what is still pending.

Only ``status.lastCheckpoint`` is patched here; the handlers own every other status field.
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes_asyncio import client

from stratarouter_runtime.operator.metrics import STATUS_PATCHES_TOTAL

log = logging.getLogger(__name__)

GROUP = "stratarouter.io"
VERSION = "v1alpha1"
PLURAL = "executions"
MERGE_PATCH = "application/merge-patch+json"
Key = tuple[str, str]


@dataclass(frozen=True)
class LastCheckpoint:
    step: int
    at: datetime
    size_bytes: int

    def to_status(self) -> dict[str, Any]:
        """The ``status.lastCheckpoint`` object (RFC 3339 time, UTC, second precision as k8s does)."""
        at = self.at.astimezone(UTC).replace(microsecond=0)
        return {"step": self.step, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "sizeBytes": self.size_bytes}


class CoalescePlan:
    """Pure bookkeeping: what is pending, and when each Execution may be patched next.

    Kept apart from the I/O so the one-patch-per-interval rule has fast tests of its own.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending: dict[Key, LastCheckpoint] = {}
        self._last_sent: dict[Key, float] = {}
        self._due: list[tuple[float, Key]] = []  # heap of (due time, key); may hold stale entries

    def note(self, key: Key, value: LastCheckpoint, now: float) -> None:
        """Record a checkpoint; a lower step than the pending one never replaces it."""
        old = self.pending.get(key)
        if old is not None and old.step > value.step:
            return
        self.pending[key] = value
        if old is None:
            heapq.heappush(self._due, (max(now, self._last_sent.get(key, -1e18) + self.interval), key))

    def next_due(self) -> float | None:
        """When the earliest pending patch may go out; None when nothing is pending."""
        while self._due and self._due[0][1] not in self.pending:
            heapq.heappop(self._due)
        return self._due[0][0] if self._due else None

    def take_due(self, now: float) -> list[tuple[Key, LastCheckpoint]]:
        """Pop every patch whose time has come, marking each sent at ``now``."""
        out: list[tuple[Key, LastCheckpoint]] = []
        while (item := self.take_one(now)) is not None:
            out.append(item)
        return out

    def take_one(self, now: float) -> tuple[Key, LastCheckpoint] | None:
        """Pop the patch that has been due longest, with the newest value known now; None if none is due."""
        while self._due and self._due[0][0] <= now:
            _, key = heapq.heappop(self._due)
            value = self.pending.pop(key, None)
            if value is not None:
                self._last_sent[key] = now
                self._forget_old(now)
                return key, value
        return None

    def _forget_old(self, now: float) -> None:
        """Keep ``_last_sent`` bounded: entries older than an interval no longer delay anything."""
        if len(self._last_sent) > 4 * max(len(self.pending), 256):
            horizon = now - self.interval
            self._last_sent = {k: t for k, t in self._last_sent.items() if t > horizon or k in self.pending}

    def take_all(self) -> list[tuple[Key, LastCheckpoint]]:
        out = list(self.pending.items())
        self.pending.clear()
        self._due.clear()
        return out


class StatusCoalescer:
    """Coalesced ``status.lastCheckpoint`` patches for Executions (one per interval per Execution)."""

    def __init__(
        self,
        api: client.ApiClient,
        interval_seconds: float = 1.0,
        *,
        concurrency: int = 16,
        request_timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._config = api.configuration
        # Patches go straight through the client's own connection pool (same TLS, same client
        # certificate), but with a session of our own: kubernetes_asyncio's generic request path
        # (parameter sanitising, a netrc lookup in a worker thread per request) cost more CPU than
        # the patch itself. trust_env=False: no netrc/proxy lookups per request.
        self._session = aiohttp.ClientSession(
            connector=api.rest_client.pool_manager.connector,
            connector_owner=False,
            trust_env=False,
            timeout=aiohttp.ClientTimeout(total=request_timeout),
        )
        self._base = f"{self._config.host}/apis/{GROUP}/{VERSION}/namespaces/"
        # The client's own User-Agent: the API server names the field manager after it, so
        # status.lastCheckpoint stays owned by the same manager as the rest of the status.
        self._user_agent = str(api.user_agent)
        self._plan = CoalescePlan(interval_seconds)
        self._clock = clock
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        self.patches_sent = 0

    def note_checkpoint(self, namespace: str, name: str, step: int, at: datetime, size_bytes: int) -> None:
        """Remember the newest checkpoint of ``namespace/name``; returns at once."""
        if self._closed:
            return
        self._plan.note((namespace, name), LastCheckpoint(step, at, size_bytes), self._clock())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status-coalescer")
        self._wake.set()

    async def close(self) -> None:
        """Stop the background task and send every pending patch."""
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        for key, value in self._plan.take_all():
            await self._sem.acquire()
            self._spawn(key, value)
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        await self._session.close()

    async def _run(self) -> None:
        """Dispatch due patches, at most ``concurrency`` in flight.

        A patch takes its value only when a slot is free, so under overload nothing queues with a
        stale value: each Execution is patched with its newest checkpoint, oldest-due first.
        """
        while True:
            await self._sem.acquire()
            try:
                key, value = await self._next_due()
            except BaseException:
                self._sem.release()
                raise
            self._spawn(key, value)

    async def _next_due(self) -> tuple[Key, LastCheckpoint]:
        while True:
            item = self._plan.take_one(self._clock())
            if item is not None:
                return item
            due = self._plan.next_due()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - self._clock()))

    def _spawn(self, key: Key, value: LastCheckpoint) -> None:
        """Send one patch; the caller holds a semaphore slot, released when the patch is done."""
        task = asyncio.get_running_loop().create_task(self._patch(key, value))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(lambda _: self._sem.release())

    async def _headers(self) -> dict[str, str]:
        """Content type plus the client's current credentials (a refreshed token when it has a hook)."""
        headers = {"Content-Type": MERGE_PATCH, "Accept": "application/json", "User-Agent": self._user_agent}
        for setting in (await self._config.auth_settings()).values():
            headers[setting["key"]] = setting["value"]
        return headers

    async def _patch(self, key: Key, value: LastCheckpoint) -> None:
        namespace, name = key
        url = f"{self._base}{quote(namespace, safe='')}/{PLURAL}/{quote(name, safe='')}/status"
        body = orjson.dumps({"status": {"lastCheckpoint": value.to_status()}})
        try:
            async with self._session.patch(url, data=body, headers=await self._headers()) as resp:
                status = resp.status
                # The answer (the whole Execution) is read to the end so the connection is reused,
                # but never parsed: at a thousand Executions that parsing was a good share of the CPU.
                raw = await resp.read()
            detail = "" if status < 300 else raw[:300].decode(errors="replace")
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            STATUS_PATCHES_TOTAL.labels(result="error").inc()
            log.warning("status patch of %s/%s failed: %r", namespace, name, exc)
            self._retry(key, value)
            return
        if status == 404:  # the Execution is gone: nothing to mirror
            STATUS_PATCHES_TOTAL.labels(result="gone").inc()
            return
        if not 200 <= status < 300:
            STATUS_PATCHES_TOTAL.labels(result="error").inc()
            log.warning("status patch of %s/%s failed: %s %s", namespace, name, status, detail)
            if status in (409, 429) or status >= 500:
                self._retry(key, value)
            return
        self.patches_sent += 1
        STATUS_PATCHES_TOTAL.labels(result="ok").inc()

    def _retry(self, key: Key, value: LastCheckpoint) -> None:
        """Put a failed patch back (unless a newer one is pending); it goes out an interval later."""
        if not self._closed:
            self._plan.note(key, value, self._clock())
            self._wake.set()
