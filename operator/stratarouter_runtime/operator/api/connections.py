"""Connections of the checkpoint API: each request's line and headers must arrive in time.

aiohttp has no header timeout: a client sending one header line every few seconds (or nothing at
all after connecting) keeps its connection, and a file descriptor, for as long as it likes. Each
connection's protocol is wrapped in a :class:`HeaderDeadline`: from the moment the connection is
opened, or from the first byte that arrives while no request is being handled, the request's head has
``timeout`` seconds to be complete (that is: for aiohttp to hand the request to the application),
or the connection is closed (a timer per connection, not per request). Idle keep-alive connections
are aiohttp's ``keepalive_timeout``'s business; bodies are timed by the handlers that read them
(:func:`.limits.read_body`).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Handler, Middleware

log = logging.getLogger(__name__)


class HeaderDeadline(asyncio.Protocol):
    """aiohttp's protocol for one connection, closed when a request's head takes too long.

    A request's head is awaited from the moment its first byte arrives (or the connection opens)
    while no request is being handled. That moment is only noted per request; the timer is armed
    when none is, and when it fires early (the head it was armed for came in time, and a later one
    is now pending) it is armed again for what is left. So a busy keep-alive connection costs a
    timer every ``timeout`` seconds, not one per request.
    """

    def __init__(self, inner: web.RequestHandler, timeout: float, forget: Callable[[], None]) -> None:
        self.inner = inner
        self._timeout = timeout
        self._forget = forget
        self._handling = 0
        self._waiting_since: float | None = None
        """When the head now awaited began to arrive; None while none is (idle, or handling one)."""
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self._loop = asyncio.get_running_loop()
        self.inner.connection_made(transport)
        self._head_started()

    def data_received(self, data: bytes) -> None:
        if not self._handling and self._waiting_since is None:
            self._head_started()
        self.inner.data_received(data)

    def eof_received(self) -> None:
        self.inner.eof_received()  # aiohttp's returns None too: the transport closes on EOF

    def connection_lost(self, exc: Exception | None) -> None:
        self._disarm()
        self._waiting_since = None
        self._forget()
        self.inner.connection_lost(exc)

    def pause_writing(self) -> None:
        self.inner.pause_writing()

    def resume_writing(self) -> None:
        self.inner.resume_writing()

    def request_started(self) -> None:
        self._handling += 1
        self._waiting_since = None  # the timer, if armed, finds nothing to cut off

    def request_done(self) -> None:
        self._handling -= 1

    def _head_started(self) -> None:
        assert self._loop is not None
        self._waiting_since = self._loop.time()
        if self._timer is None:
            self._timer = self._loop.call_at(self._waiting_since + self._timeout, self._expired)

    def _disarm(self) -> None:
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _expired(self) -> None:
        self._timer = None
        since = self._waiting_since
        if self._handling or since is None:
            return  # the head came in time; the next one arms a timer of its own
        assert self._loop is not None
        due = since + self._timeout
        if self._loop.time() < due:  # armed for an earlier head: this one still has time
            self._timer = self._loop.call_at(due, self._expired)
            return
        log.debug("checkpoint API: closed a connection with no complete request in %gs", self._timeout)
        self.inner.force_close()


class Connections:
    """Makes the wrapped protocols and finds a request's one (for the middleware that marks requests)."""

    def __init__(self, timeout: float) -> None:
        self._timeout = timeout
        self._open: dict[web.RequestHandler, HeaderDeadline] = {}

    def protocol_factory(self, server: web.Server) -> Callable[[], HeaderDeadline]:
        def make() -> HeaderDeadline:
            inner = server()
            wrapped = HeaderDeadline(inner, self._timeout, lambda: self._forget(inner))
            self._open[inner] = wrapped
            return wrapped

        return make

    def _forget(self, inner: web.RequestHandler) -> None:
        self._open.pop(inner, None)

    def middleware(self) -> Middleware:
        @web.middleware
        async def mark_requests(request: web.Request, handler: Handler) -> web.StreamResponse:
            """While a request is handled its connection's header deadline is off."""
            wrapped = self._open.get(request.protocol)
            if wrapped is not None:
                wrapped.request_started()
            try:
                return await handler(request)
            finally:
                if wrapped is not None:
                    wrapped.request_done()

        return mark_requests

    def __len__(self) -> int:
        return len(self._open)


class ApiRunner(web.AppRunner):
    """An AppRunner whose listener wraps every connection in a :class:`HeaderDeadline`."""

    def __init__(self, app: web.Application, connections: Connections, **kwargs: Any) -> None:
        super().__init__(app, **kwargs)
        self._connections = connections
        self._listener: asyncio.Server | None = None

    async def listen(self, host: str, port: int) -> int:
        """Start accepting connections (after :meth:`setup`); returns the port bound."""
        assert self.server is not None, "setup() first"
        factory = self._connections.protocol_factory(self.server)
        self._listener = await asyncio.get_running_loop().create_server(factory, host, port)
        bound: int = self._listener.sockets[0].getsockname()[1]
        return bound

    async def cleanup(self) -> None:
        if self._listener is not None:
            self._listener.close()  # no new connections; the runner closes the open ones
            self._listener = None
        await super().cleanup()
