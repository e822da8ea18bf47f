"""``GET /v1/history``: one page of history, streamed, with its states' bytes capped.

A page used to be read from the store in one call of up to 1,000 checkpoints, all decoded into Python
objects, then encoded again in one piece: forty 14 MiB states took the operator past 5 GB. Now the
store is asked for a few checkpoints at a time (as many as :data:`BATCH_JSON_BYTES` of JSON holds, by
the largest state seen so far, so one at a time once states are large), each is encoded and written to
the response as it comes, and the page ends once its states reach ``max_bytes``.

The answer is ``{"checkpoints": [...], "nextAfterStep": N | null}``: ``nextAfterStep`` is the cursor
to go on from (``?after_step=N``) when the page ended early at the byte cap or is full at ``limit``,
and null at the end of the history. The SDK pages on ``after_step=<last step seen>`` until an empty
page, so a shorter page costs it one more request, never a checkpoint. A page always holds at least
one checkpoint, however large, so paging always moves on.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, AsyncIterator
from typing import Any

import orjson
from aiohttp import web

from stratarouter_runtime.state import errors
from stratarouter_runtime.state.wire import JSON

log = logging.getLogger(__name__)

BATCH_JSON_BYTES = 1024 * 1024
"""About how much state JSON is read from the store (and held decoded) at once."""
MAX_BATCH = 256


def checkpoint_json(cp: Any) -> dict[str, Any]:
    return {
        "step": cp.step,
        "state": cp.state_data,
        "timestamp": cp.timestamp.isoformat(),
        "attempt": cp.attempt,
        "sizeBytes": cp.size_bytes,
    }


def next_batch(previous: int, largest: int, left: int) -> int:
    """How many checkpoints to ask for next: at most twice as many as last time, as many as
    :data:`BATCH_JSON_BYTES` holds at the largest size seen, never more than ``left``."""
    by_size = BATCH_JSON_BYTES // max(largest, 1)
    return max(1, min(left, MAX_BATCH, 2 * previous, by_size))


async def batches(
    store: Any, execution_id: str, after: int | None, limit: int
) -> AsyncGenerator[list[Any], None]:
    """History checkpoints after ``after`` (at most ``limit``), a few at a time; ends at a short batch."""
    size, largest, left = 1, 0, limit
    while left > 0:
        batch = await store.get_history(execution_id, after_step=after, limit=size)
        if batch:
            yield batch
        if len(batch) < size:
            return
        left -= len(batch)
        after = batch[-1].step
        largest = max(largest, *(cp.size_bytes for cp in batch))
        size = next_batch(size, largest, left)


class Page:
    """The bookkeeping of one page: what fits under the byte cap, and where to go on from."""

    def __init__(self, limit: int, max_bytes: int) -> None:
        self.limit = limit
        self.max_bytes = max_bytes
        self.count = 0
        self.state_bytes = 0
        self.last_step: int | None = None
        self.cut = False
        """The page ended before the history did (byte cap, or an error after the first batch)."""

    def admits(self, cp: Any) -> bool:
        """Whether ``cp`` still fits; the first checkpoint always does."""
        if self.count and self.state_bytes + cp.size_bytes > self.max_bytes:
            self.cut = True
            return False
        return True

    def add(self, cp: Any) -> None:
        self.count += 1
        self.state_bytes += cp.size_bytes
        self.last_step = cp.step

    @property
    def next_after_step(self) -> int | None:
        return self.last_step if self.cut or self.count >= self.limit else None


async def history_page(
    request: web.Request,
    store: Any,
    execution_id: str,
    *,
    after: int | None,
    limit: int,
    max_bytes: int,
    send_timeout: float,
) -> web.StreamResponse:
    """Stream one page; errors before the first checkpoint is known get their usual answer."""
    source = batches(store, execution_id, after, limit)
    first: list[Any] = await anext(source, [])  # ExecutionNotFound, StoreUnavailable, ... as plain answers
    response = web.StreamResponse(headers={"Content-Type": JSON})
    await response.prepare(request)
    page = Page(limit, max_bytes)
    try:
        async with asyncio.timeout(send_timeout):
            await response.write(b'{"checkpoints":[')
            await _write_items(response, page, first, source)
            await response.write(b'],"nextAfterStep":%s}' % orjson.dumps(page.next_after_step))
    except TimeoutError:
        log.warning("history page of %s not taken within %gs; connection closed", execution_id, send_timeout)
        _abort(request)
        return response
    except Exception:  # the status line is sent: no error answer can follow, only a cut connection
        log.exception("history page of %s failed while being sent", execution_id)
        _abort(request)
        return response
    finally:
        await source.aclose()
    await response.write_eof()
    return response


def _abort(request: web.Request) -> None:
    if request.transport is not None:
        request.transport.abort()


async def _write_items(
    response: web.StreamResponse, page: Page, first: list[Any], rest: AsyncIterator[list[Any]]
) -> None:
    batch: list[Any] | None = first
    while batch:
        for cp in batch:
            if not page.admits(cp):
                return
            await response.write((b"," if page.count else b"") + orjson.dumps(checkpoint_json(cp)))
            page.add(cp)
        batch = await _next_or_cut(page, rest)


async def _next_or_cut(page: Page, rest: AsyncIterator[list[Any]]) -> list[Any] | None:
    """The next batch; a store error once the answer is under way ends the page early instead (the
    client goes on from ``nextAfterStep`` and hears about the error then)."""
    try:
        return await anext(rest, None)
    except errors.StateError as exc:
        log.warning("history page ended early after step %s: %s", page.last_step, exc)
        page.cut = True
        return None
