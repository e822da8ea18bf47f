"""A minimal asyncpg connection pool for single-statement work.

Why not ``asyncpg.Pool``: its release path spawns a task and (by default) sends ``RESET ALL`` & co.,
which costs a loop iteration or a round trip per call; for a primary-key read that is a third of
the total. The SDK leaves no session state on a connection (no SET, LISTEN or session-level
advisory locks), so here acquiring is popping an idle connection and releasing is pushing it back.
A connection that errored at the transport level, or is somehow still inside a transaction, is
discarded instead.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, TypeAlias

import asyncpg

if TYPE_CHECKING:
    Connection: TypeAlias = asyncpg.Connection[Any]
else:
    Connection = asyncpg.Connection


class ConnectionPool:
    """Up to ``max_size`` connections made by ``connect``; LIFO reuse keeps hot connections hot."""

    def __init__(self, connect: Callable[[], Awaitable[Connection]], max_size: int) -> None:
        self._connect = connect
        self._max_size = max_size
        self._idle: list[Connection] = []
        self._size = 0
        self._waiters: deque[asyncio.Future[None]] = deque()
        self._closed = False

    async def acquire(self) -> Connection:
        while True:
            if self._closed:
                raise asyncpg.exceptions.InterfaceError("connection pool is closed")
            if self._idle:
                return self._idle.pop()
            if self._size < self._max_size:
                self._size += 1
                try:
                    return await self._connect()
                except BaseException:
                    self._size -= 1
                    self._wake()
                    raise
            waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            self._waiters.append(waiter)
            try:
                await waiter
            except asyncio.CancelledError:
                if waiter.done() and not waiter.cancelled():
                    self._wake()  # pass the wake-up on
                raise

    async def fill(self, count: int) -> None:
        """Open connections until the pool holds ``count`` (``pool_min_size``: ready before the first
        burst needs them); they wait idle."""
        opened = []
        try:
            while self._size < min(count, self._max_size):
                self._size += 1
                try:
                    opened.append(await self._connect())
                except BaseException:
                    self._size -= 1
                    raise
        finally:
            self._idle.extend(opened)
            self._wake()

    def release(self, conn: Connection, *, discard: bool = False) -> None:
        if discard or self._closed or conn.is_closed() or conn.is_in_transaction():
            self._size -= 1
            conn.terminate()
        else:
            self._idle.append(conn)
        self._wake()

    def _wake(self) -> None:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        self._closed = True
        idle, self._idle = self._idle, []
        for conn in idle:
            self._size -= 1
            try:
                await asyncio.wait_for(conn.close(), timeout=5)
            except (TimeoutError, OSError, asyncpg.PostgresError, asyncpg.InterfaceError):
                conn.terminate()
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(None)
