"""A loopback TCP proxy that a test can cut and restore, to play a network partition to one server.

Point a client's DSN at :attr:`TcpProxy.port` instead of the server's; :meth:`TcpProxy.cut` then cuts it
off, :meth:`TcpProxy.restore` heals it. Two ways to cut, as a real network fails:

* ``blackhole``: packets are dropped. Nothing is refused or closed: bytes in flight and new connections
  wait, so the client sees its queries hang until the cut ends (or its own timeouts fire); then
  everything held is delivered and the connections carry on.
* ``reset``: every open connection is reset and new ones are closed at once until the cut ends.

It runs its own event loop in a daemon thread, so the caller's loop (or lack of one) does not matter.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
import threading
from collections.abc import Coroutine
from dataclasses import dataclass
from typing import Any, Literal

CutMode = Literal["blackhole", "reset"]
CHUNK = 65536


@dataclass
class ProxyStats:
    """What the proxy did: connections accepted, reset by a cut, and refused while cut."""

    accepted: int = 0
    reset: int = 0
    refused: int = 0


class TcpProxy:
    """Forwards ``listen_host:port`` to ``target_host:target_port``; see the module docstring."""

    def __init__(self, target_host: str, target_port: int, *, listen_host: str = "127.0.0.1") -> None:
        self.target = (target_host, target_port)
        self.listen_host = listen_host
        self.port = 0
        self.stats = ProxyStats()
        self.mode: CutMode | None = None
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="tcpproxy", daemon=True)
        self._open = asyncio.Event()  # set = forwarding; touched only on the proxy's loop
        self._pairs: set[tuple[asyncio.StreamWriter, asyncio.StreamWriter]] = set()
        self._server: asyncio.Server | None = None

    @property
    def cut_now(self) -> bool:
        return self.mode is not None

    def start(self) -> TcpProxy:
        """Listen on a free port (:attr:`port`) and start forwarding."""
        self._thread.start()
        self._call(self._start())
        return self

    def cut(self, mode: CutMode = "blackhole") -> None:
        """Cut the target off (see the module docstring for ``mode``)."""
        self._call(self._cut(mode))

    def restore(self) -> None:
        """Forward again; in blackhole mode what was held is delivered now."""
        self._call(self._restore())

    def stop(self) -> None:
        """Close the listener and every connection, and end the thread."""
        with contextlib.suppress(RuntimeError):
            self._call(self._stop())
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=5)
        self._loop.close()

    # -- on the proxy's own loop ----------------------------------------------------------------------

    def _call(self, coro: Coroutine[Any, Any, None]) -> None:
        asyncio.run_coroutine_threadsafe(coro, self._loop).result(timeout=30)

    async def _start(self) -> None:
        self._open.set()
        self._server = await asyncio.start_server(self._accept, self.listen_host, 0)
        self.port = self._server.sockets[0].getsockname()[1]

    async def _cut(self, mode: CutMode) -> None:
        self.mode = mode
        self._open.clear()
        if mode == "reset":
            for pair in list(self._pairs):
                self.stats.reset += 1
                for writer in pair:
                    _abort(writer)
            self._pairs.clear()

    async def _restore(self) -> None:
        self.mode = None
        self._open.set()

    async def _stop(self) -> None:
        if self._server is not None:
            self._server.close()
        for pair in list(self._pairs):
            for writer in pair:
                _abort(writer)
        self._pairs.clear()
        self._open.set()  # let held pumps run into the closed transports and end

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        if self.mode == "reset":
            self.stats.refused += 1
            _abort(client_w)
            return
        self.stats.accepted += 1
        await self._open.wait()  # blackhole: the connection is held, as a SYN would be retried
        try:
            server_r, server_w = await asyncio.open_connection(*self.target)
        except OSError:
            _abort(client_w)
            return
        pair = (client_w, server_w)
        self._pairs.add(pair)
        try:
            await asyncio.gather(self._pump(client_r, server_w), self._pump(server_r, client_w))
        finally:
            self._pairs.discard(pair)
            for writer in pair:
                _abort(writer)

    async def _pump(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copy one direction; while cut (blackhole) the bytes read are held, not sent."""
        try:
            while data := await reader.read(CHUNK):
                await self._open.wait()
                if writer.is_closing():
                    return
                writer.write(data)
                await writer.drain()
        except (OSError, asyncio.IncompleteReadError):
            pass
        finally:
            with contextlib.suppress(OSError, RuntimeError):
                if not writer.is_closing() and writer.can_write_eof():
                    writer.write_eof()


def _abort(writer: asyncio.StreamWriter) -> None:
    """Close with a RST (SO_LINGER 0), as a dropped connection looks to its peer."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
