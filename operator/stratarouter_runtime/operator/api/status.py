"""Mirror each Execution's last checkpoint into its status, within a patch budget for the whole process.

A pod may checkpoint a hundred times a second; the API server should see about one status patch a
second for it, and, at a thousand Executions, no more status patches in total than it can afford
(each costs it about 7.5 ms of CPU). :meth:`StatusCoalescer.note_checkpoint` only records the newest
checkpoint in memory (never blocks the request path); a single background task sends one merge patch
of ``status.lastCheckpoint`` per Execution when its interval has passed, with the newest values then
known, and never more than ``budget_per_second`` patches a second in all (a token bucket, burst =
budget). When the budget is the limit, the Execution whose status has been stale longest goes first,
so each Execution's status lags about ``lag ≈ Executions / budget`` seconds (1,000 Executions at the
default 50/s: about 20 s), and nothing else waits: checkpoints are answered at once and the handlers'
own requests do not queue behind ours. :meth:`StatusCoalescer.close` sends what is still pending.

Only ``status.lastCheckpoint`` is patched here; the handlers own every other status field. A patch
carries only the ``lastCheckpoint`` fields that changed since the API server last acknowledged one
(``step`` always; an unchanged checkpoint is not sent at all).
"""

from __future__ import annotations

import asyncio
import contextlib
import heapq
import logging
import math
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote

import aiohttp
import orjson
from kubernetes_asyncio import client

from stratarouter_runtime.operator.kube import DirectRequests
from stratarouter_runtime.operator.metrics import (
    STATUS_LAG_SECONDS,
    STATUS_PATCH_BUDGET,
    STATUS_PATCHES_TOTAL,
    STATUS_PENDING,
)
from stratarouter_runtime.operator.resources.base import EXECUTIONS, GROUP_PATH, MERGE_PATCH

log = logging.getLogger(__name__)

Key = tuple[str, str]
Sender = Callable[[Key, bytes], Awaitable[tuple[int, str]]]
"""Sends one merge patch body for an Execution; answers (HTTP status, detail of an error answer)."""


@dataclass(frozen=True)
class LastCheckpoint:
    step: int
    at: datetime
    size_bytes: int
    attempt: int = 0
    """The attempt that wrote it: a replaced attempt's checkpoint is never mirrored over a newer one's."""

    def to_status(self) -> dict[str, Any]:
        """The ``status.lastCheckpoint`` object (RFC 3339 time, UTC, second precision as k8s does)."""
        at = self.at.astimezone(UTC).replace(microsecond=0)
        return {"step": self.step, "time": at.strftime("%Y-%m-%dT%H:%M:%SZ"), "sizeBytes": self.size_bytes}


_ONE = 1 - 1e-9  # a token, give or take float rounding (so a wait never comes out as 1e-17 s)


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; one token per patch."""

    def __init__(self, rate: float, burst: float, now: float) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError("a token bucket needs rate > 0 and burst >= 1")
        self.rate = rate
        self.burst = burst
        self._tokens = burst
        self._stamp = now

    def _refill(self, now: float) -> None:
        if now > self._stamp:
            self._tokens = min(self.burst, self._tokens + (now - self._stamp) * self.rate)
            self._stamp = now

    def wait(self, now: float) -> float:
        """Seconds until a token is there (0 when one is there now)."""
        self._refill(now)
        return 0.0 if self._tokens >= _ONE else (1 - self._tokens) / self.rate

    def take(self, now: float) -> bool:
        """Spend a token if there is one."""
        self._refill(now)
        if self._tokens < _ONE:
            return False
        self._tokens = max(0.0, self._tokens - 1)
        return True


class CoalescePlan:
    """Pure bookkeeping: what is pending, since when, and when each Execution may be patched next.

    Kept apart from the I/O so the one-patch-per-interval and longest-stale-first rules have fast
    tests of their own. An Execution is *eligible* once its interval since the last patch has passed;
    among eligible ones, the one whose status went stale first (its oldest unmirrored checkpoint) is
    served first.
    """

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self.pending: dict[Key, LastCheckpoint] = {}
        self._since: dict[Key, float] = {}  # when each pending Execution's status went stale
        self._last_sent: dict[Key, float] = {}
        self._confirmed: dict[Key, dict[str, Any]] = {}  # lastCheckpoint as the API server has it
        self._attempts: dict[Key, int] = {}  # the newest attempt seen (noted, or written by the operator)
        self._waiting: list[tuple[float, float, Key]] = []  # heap of (eligible at, since, key)
        self._ready: list[tuple[float, float, Key]] = []  # heap of (since, eligible at, key)

    def note(self, key: Key, value: LastCheckpoint, now: float, since: float | None = None) -> bool:
        """Record a checkpoint. Within one attempt a lower step than the pending one never replaces it;
        a newer attempt's replaces it whatever its step (a restore or a recovery rewinds the run), and
        an older attempt's is dropped.

        ``since``: when the status went stale, if earlier than ``now`` (a failed patch put back).
        True when ``key`` is newly pending (a patch is now due at some time); False when it only
        replaced the pending value (or did not), which changes no due time.
        """
        newest = self._attempts.get(key, 0)
        if value.attempt < newest:
            return False
        old = self.pending.get(key)
        if value.attempt > newest:
            self._attempts[key] = value.attempt
        elif old is not None and old.step > value.step:
            return False
        self.pending[key] = value
        if old is not None:
            return False
        stale = now if since is None else min(since, now)
        self._since[key] = stale
        eligible = max(now, self._last_sent.get(key, -math.inf) + self.interval)
        heapq.heappush(self._waiting, (eligible, stale, key))
        return True

    def _live(self, since: float, key: Key) -> bool:
        return self._since.get(key) == since and key in self.pending

    def _promote(self, now: float) -> None:
        while self._waiting and self._waiting[0][0] <= now:
            eligible, since, key = heapq.heappop(self._waiting)
            if self._live(since, key):
                heapq.heappush(self._ready, (since, eligible, key))

    def next_due(self) -> float | None:
        """When the earliest pending patch may go out; None when nothing is pending."""
        while self._ready and not self._live(self._ready[0][0], self._ready[0][2]):
            heapq.heappop(self._ready)
        while self._waiting and not self._live(self._waiting[0][1], self._waiting[0][2]):
            heapq.heappop(self._waiting)
        dues = [self._ready[0][1]] if self._ready else []
        if self._waiting:
            dues.append(self._waiting[0][0])
        return min(dues) if dues else None

    def take_due(self, now: float) -> list[tuple[Key, LastCheckpoint]]:
        """Pop every patch whose time has come, marking each sent at ``now``."""
        out: list[tuple[Key, LastCheckpoint]] = []
        while (item := self.take_one(now)) is not None:
            out.append(item)
        return out

    def take_one(self, now: float) -> tuple[Key, LastCheckpoint] | None:
        """Pop the eligible Execution stale longest, with the newest value known now; None if none is due."""
        item = self.take_one_since(now)
        return None if item is None else (item[0], item[1])

    def take_one_since(self, now: float) -> tuple[Key, LastCheckpoint, float] | None:
        """:meth:`take_one`, plus when that Execution's status went stale."""
        self._promote(now)
        while self._ready:
            since, _, key = heapq.heappop(self._ready)
            if not self._live(since, key):
                continue
            value = self.pending.pop(key)
            del self._since[key]
            self._last_sent[key] = now
            self._forget_old(now)
            return key, value, since
        return None

    def oldest_wait(self, now: float) -> float:
        """How long the stalest pending status has waited (0 when nothing is pending): the status lag."""
        return max((now - t for t in self._since.values()), default=0.0)

    def body(self, key: Key, value: LastCheckpoint) -> dict[str, Any] | None:
        """The ``lastCheckpoint`` fields to send: ``step`` and whatever else changed; None if nothing did."""
        full = value.to_status()
        known = self._confirmed.get(key)
        if known is None:
            return full
        if known.get("step") == full["step"] and known.get("sizeBytes") == full["sizeBytes"]:
            return None  # the same checkpoint again (an idempotent retry of a write): status has it
        return {"step": full["step"]} | {k: v for k, v in full.items() if k != "step" and known.get(k) != v}

    def confirm(self, key: Key, fields: dict[str, Any]) -> None:
        """The API server acknowledged a patch of these ``lastCheckpoint`` fields."""
        self._confirmed[key] = self._confirmed.get(key, {}) | fields

    def forget(self, key: Key) -> None:
        """The Execution is gone: a new one of that name starts from a full patch."""
        self._confirmed.pop(key, None)
        self._attempts.pop(key, None)

    def rewound(self, key: Key, attempt: int) -> None:
        """The operator wrote ``lastCheckpoint`` itself, from the store, for ``attempt`` (a restore, a
        recovery): what is pending from an older attempt is dropped, and the next patch is a full one."""
        self._confirmed.pop(key, None)
        self._attempts[key] = max(self._attempts.get(key, 0), attempt)
        pending = self.pending.get(key)
        if pending is not None and pending.attempt < attempt:
            del self.pending[key]  # its heap entries are skipped: _live() no longer holds for them
            self._since.pop(key, None)

    def _forget_old(self, now: float) -> None:
        """Keep ``_last_sent`` bounded: entries older than an interval no longer delay anything."""
        if len(self._last_sent) > 4 * max(len(self.pending), 256):
            horizon = now - self.interval
            self._last_sent = {k: t for k, t in self._last_sent.items() if t > horizon or k in self.pending}
            self._confirmed = {k: v for k, v in self._confirmed.items() if k in self._last_sent}

    def take_all(self) -> list[tuple[Key, LastCheckpoint]]:
        out = list(self.pending.items())
        self.pending.clear()
        self._since.clear()
        self._waiting.clear()
        self._ready.clear()
        return out


class _ApiSender:
    """Sends merge patches of Execution status on the direct path (:class:`DirectRequests`)."""

    def __init__(self, api: client.ApiClient, request_timeout: float) -> None:
        self._direct = DirectRequests(api, timeout_seconds=request_timeout)

    async def __call__(self, key: Key, body: bytes) -> tuple[int, str]:
        namespace, name = key
        path = (
            f"{GROUP_PATH}/namespaces/{quote(namespace, safe='')}/{EXECUTIONS}/{quote(name, safe='')}/status"
        )
        async with await self._direct.patch(path, body, MERGE_PATCH) as resp:
            status = resp.status
            # The answer (the whole Execution) is read to the end so the connection is reused,
            # but never parsed: at a thousand Executions that parsing was a good share of the CPU.
            raw = await resp.read()
        return status, "" if status < 300 else raw[:300].decode(errors="replace")

    async def close(self) -> None:
        await self._direct.close()


class StatusCoalescer:
    """Coalesced ``status.lastCheckpoint`` patches: one per interval per Execution, a budget for all.

    With E Executions checkpointing continuously, the process sends ``min(E / interval, budget)``
    patches a second and each status lags about ``max(interval, E / budget)`` seconds: lag ≈
    Executions / budget once the budget is the limit. ``stratarouter_status_lag_seconds`` shows the
    lag now, ``stratarouter_status_patches_total`` what was sent.
    """

    def __init__(
        self,
        api: client.ApiClient | None,
        interval_seconds: float = 1.0,
        *,
        budget_per_second: float = 50.0,
        concurrency: int = 16,
        request_timeout: float = 30.0,
        flush_seconds: float = 5.0,
        clock: Callable[[], float] = time.monotonic,
        send: Sender | None = None,
    ) -> None:
        if send is None:
            if api is None:
                raise ValueError("StatusCoalescer needs an API client or a send function")
            self._api_sender: _ApiSender | None = _ApiSender(api, request_timeout)
            send = self._api_sender
        else:
            self._api_sender = None
        self._send = send
        self._plan = CoalescePlan(interval_seconds)
        self._clock = clock
        # burst = budget: a second's worth, so an idle operator answers a burst of new Executions
        # at once, while any one-second window sees at most twice the budget
        self.budget_per_second = budget_per_second
        self._bucket = TokenBucket(budget_per_second, max(1.0, budget_per_second), clock())
        self._flush_seconds = flush_seconds
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._sem = asyncio.Semaphore(concurrency)
        self._inflight: set[asyncio.Task[None]] = set()
        self._closed = False
        STATUS_PATCH_BUDGET.set(budget_per_second)
        STATUS_LAG_SECONDS.set_function(self.lag_seconds)
        STATUS_PENDING.set_function(lambda: len(self._plan.pending))

    def lag_seconds(self) -> float:
        """How long the stalest pending status has waited for its patch (0: every status is current)."""
        return self._plan.oldest_wait(self._clock())

    def note_checkpoint(
        self, namespace: str, name: str, step: int, at: datetime, size_bytes: int, attempt: int = 0
    ) -> None:
        """Remember the newest checkpoint of ``namespace/name`` (written by ``attempt``); returns at once."""
        if self._closed:
            return
        value = LastCheckpoint(step, at, size_bytes, attempt)
        newly = self._plan.note((namespace, name), value, self._clock())
        if self._task is None or self._task.done():
            self._task = asyncio.get_running_loop().create_task(self._run(), name="status-coalescer")
        elif newly:
            # A new due time. Only a newer value for a patch already due needs no wake-up: the sender
            # takes the newest value when the patch goes out (waking it on every checkpoint cost the
            # request path a task and a timer each time).
            self._wake.set()

    def forget(self, namespace: str, name: str) -> None:
        """The Execution was deleted: a new one of that name gets a full first patch."""
        self._plan.forget((namespace, name))

    def rewound(self, namespace: str, name: str, attempt: int) -> None:
        """The operator patched ``lastCheckpoint`` from the store for ``attempt`` (see CoalescePlan)."""
        self._plan.rewound((namespace, name), attempt)

    async def close(self) -> None:
        """Stop the background task and send the pending patches, still within the budget.

        What the budget does not allow within ``flush_seconds`` is dropped (logged): the store has
        those checkpoints, and the next replica mirrors the next one.
        """
        self._closed = True
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        deadline = self._clock() + self._flush_seconds
        left = self._plan.take_all()
        left.reverse()  # pop() from the end: oldest noted first
        while left:
            key, value = left[-1]
            body = self._plan.body(key, value)
            if body is None:
                left.pop()
                continue
            now = self._clock()
            wait = self._bucket.wait(now)
            if wait > 0:
                if now + wait > deadline:
                    break
                await asyncio.sleep(wait)
                continue
            self._bucket.take(now)
            left.pop()
            await self._sem.acquire()
            self._spawn(key, value, body, now)
        if left:
            log.warning(
                "status patch budget: %d pending lastCheckpoint patches dropped at shutdown", len(left)
            )
        if self._inflight:
            await asyncio.gather(*self._inflight, return_exceptions=True)
        if self._api_sender is not None:
            await self._api_sender.close()
        STATUS_LAG_SECONDS.set_function(lambda: 0.0)
        STATUS_PENDING.set_function(lambda: 0.0)

    async def _run(self) -> None:
        """Dispatch due patches, at most ``concurrency`` in flight and ``budget_per_second`` a second.

        A patch takes its value only when a slot and a token are there, so under overload nothing
        queues with a stale value: each Execution is patched with its newest checkpoint, the one stale
        longest first.
        """
        while True:
            await self._sem.acquire()
            try:
                key, value, body, since = await self._next_due()
            except BaseException:
                self._sem.release()
                raise
            self._spawn(key, value, body, since)

    async def _next_due(self) -> tuple[Key, LastCheckpoint, dict[str, Any], float]:
        while True:
            now = self._clock()
            wait = self._bucket.wait(now)
            if wait > 0:  # over budget: new checkpoints only update what is pending meanwhile
                await asyncio.sleep(wait)
                continue
            item = self._plan.take_one_since(now)
            if item is not None:
                key, value, since = item
                body = self._plan.body(key, value)
                if body is None:
                    continue
                self._bucket.take(now)
                return key, value, body, since
            due = self._plan.next_due()
            self._wake.clear()
            if due is None:
                await self._wake.wait()
                continue
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=max(0.0, due - self._clock()))

    def _spawn(self, key: Key, value: LastCheckpoint, body: dict[str, Any], since: float) -> None:
        """Send one patch; the caller holds a semaphore slot, released when the patch is done."""
        task = asyncio.get_running_loop().create_task(self._patch(key, value, body, since))
        self._inflight.add(task)
        task.add_done_callback(self._inflight.discard)
        task.add_done_callback(lambda _: self._sem.release())

    async def _patch(self, key: Key, value: LastCheckpoint, fields: dict[str, Any], since: float) -> None:
        namespace, name = key
        body = orjson.dumps({"status": {"lastCheckpoint": fields}})
        try:
            status, detail = await self._send(key, body)
        except (OSError, TimeoutError, aiohttp.ClientError) as exc:
            STATUS_PATCHES_TOTAL.labels(result="error").inc()
            log.warning("status patch of %s/%s failed: %r", namespace, name, exc)
            self._retry(key, value, since)
            return
        if status == 404:  # the Execution is gone: nothing to mirror
            STATUS_PATCHES_TOTAL.labels(result="gone").inc()
            self._plan.forget(key)
            return
        if not 200 <= status < 300:
            STATUS_PATCHES_TOTAL.labels(result="error").inc()
            log.warning("status patch of %s/%s failed: %s %s", namespace, name, status, detail)
            if status in (409, 429) or status >= 500:
                self._retry(key, value, since)
            return
        self._plan.confirm(key, fields)
        STATUS_PATCHES_TOTAL.labels(result="ok").inc()

    def _retry(self, key: Key, value: LastCheckpoint, since: float) -> None:
        """Put a failed patch back (unless a newer one is pending); it goes out an interval later."""
        if not self._closed:
            self._plan.note(key, value, self._clock(), since=since)
            self._wake.set()
