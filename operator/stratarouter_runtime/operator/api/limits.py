"""What one request may cost the checkpoint API: body size, time to send it, and memory-heavy slots.

A body is never read past the store's largest state (``max_state_bytes``) plus :data:`ENVELOPE_BYTES`:
a declared ``Content-Length`` over that is refused before a byte is read, a chunked body as soon as
it grows past it. Parsing comes after, so a refused body costs at most the limit in memory, never the
tens of Python objects per byte that JSON like ``[{},{},...]`` turns into.

Requests that may need a lot of memory (history pages, checkpoint reads, bodies over
:data:`SMALL_BODY_BYTES` or of unknown length) share a few slots (:class:`Slots`); when all are taken
a request waits :data:`BUSY_WAIT_SECONDS`, then gets 503 with ``Retry-After``, which the pod's SDK
retries like any other unavailability. Small writes, the bulk of the traffic, never wait for a slot.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator
from dataclasses import dataclass

from aiohttp import web

from stratarouter_runtime.state import codec

ENVELOPE_BYTES = 64 * 1024
"""Room in a write's body for what is not the state (step, compress, whitespace)."""
SMALL_BODY_BYTES = 1024 * 1024
"""A body declared at most this long is read without taking a slot."""
BUSY_WAIT_SECONDS = 1.0
RETRY_AFTER_SECONDS = 1


class Refused(Exception):
    """A request refused before it got to the store: HTTP ``status``, a stable ``reason``, a message."""

    def __init__(self, status: int, reason: str, message: str, headers: dict[str, str] | None = None) -> None:
        super().__init__(message)
        self.status = status
        self.reason = reason
        self.message = message
        self.headers = headers or {}


@dataclass(frozen=True)
class ApiLimits:
    """The API's limits (the operator fills them from its settings; the defaults are the settings')."""

    max_state_bytes: int = codec.DEFAULT_MAX_STATE_BYTES
    max_expensive_requests: int = 4
    max_history_bytes: int = 64 * 1024 * 1024
    header_timeout_seconds: float = 10.0
    body_timeout_seconds: float = 30.0
    keepalive_seconds: float = 75.0

    @property
    def max_body_bytes(self) -> int:
        return self.max_state_bytes + ENVELOPE_BYTES


def too_large(size: int, limit: int, *, exact: bool, state: bool) -> Refused:
    """400 for a body over ``limit``; a write's says StateTooLargeError, as the SDK expects of a state."""
    amount = f"{size} bytes" if exact else f"more than {size - 1} bytes"
    message = (
        f"request body is {amount}, over the limit of {limit} bytes "
        f"(max_state_bytes {limit - ENVELOPE_BYTES} plus {ENVELOPE_BYTES} for the rest of the body)"
    )
    return Refused(400, "StateTooLargeError" if state else "BadRequest", message)


def check_declared(request: web.Request, limit: int, *, state: bool) -> None:
    """Refuse what can be refused from the headers alone: a declared length over ``limit``, an encoding."""
    encoding = request.headers.get("Content-Encoding", "identity").strip().lower()
    if encoding not in ("", "identity"):
        raise Refused(415, "UnsupportedMediaType", f"Content-Encoding {encoding!r}: send the body as it is")
    declared = request.content_length
    if declared is not None and declared > limit:
        raise too_large(declared, limit, exact=True, state=state)


def expensive_body(request: web.Request) -> bool:
    """A body that may be large: over :data:`SMALL_BODY_BYTES`, or of unknown length (chunked)."""
    declared = request.content_length
    return request.body_exists and (declared is None or declared > SMALL_BODY_BYTES)


async def read_body(request: web.Request, limit: int, within: float, *, state: bool) -> bytes | bytearray:
    """The body, read in chunks and given up on past ``limit`` bytes or ``within`` seconds."""
    check_declared(request, limit, state=state)
    content = request.content
    if content.is_eof():
        # All of it came with the head (a small checkpoint's does): nothing to wait for, so no timer.
        # It is already in memory (aiohttp pauses reading past its buffer's high-water mark until the
        # handler reads, so only a body that fitted gets here whole); the limit applies all the same.
        whole = content.read_nowait()
        if len(whole) > limit:
            raise too_large(limit + 1, limit, exact=False, state=state)
        return whole
    body = bytearray()
    try:
        async with asyncio.timeout(within):
            async for chunk in request.content.iter_any():
                if len(body) + len(chunk) > limit:
                    raise too_large(limit + 1, limit, exact=False, state=state)
                body += chunk
    except TimeoutError:
        raise Refused(
            408, "RequestTimeout", f"request body not received within {within:g} s ({len(body)} bytes came)"
        ) from None
    return body


class Slots:
    """A few slots for memory-heavy requests; 503 + ``Retry-After`` when none frees up in time."""

    def __init__(self, size: int, wait_seconds: float = BUSY_WAIT_SECONDS) -> None:
        self._free = asyncio.Semaphore(size)
        self._size = size
        self._wait = wait_seconds

    @contextlib.asynccontextmanager
    async def hold(self) -> AsyncIterator[None]:
        try:
            async with asyncio.timeout(self._wait):
                await self._free.acquire()
        except TimeoutError:
            raise Refused(
                503,
                "Busy",
                f"the checkpoint API is serving {self._size} large requests already; retry shortly",
                {"Retry-After": str(RETRY_AFTER_SECONDS)},
            ) from None
        try:
            yield
        finally:
            self._free.release()

    @contextlib.asynccontextmanager
    async def hold_if(self, needed: bool) -> AsyncIterator[None]:
        if not needed:
            yield
            return
        async with self.hold():
            yield
