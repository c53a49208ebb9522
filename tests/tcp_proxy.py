"""A small asyncio TCP proxy on 127.0.0.1 for fault injection between a client and a server.

``async with TcpProxy(target_port) as proxy:`` listens on ``proxy.port`` (a free port) and
forwards every connection to ``127.0.0.1:target_port``. A test points its client at the proxy
and then breaks the path on purpose:

* :meth:`TcpProxy.drop_all`: cut every open connection now (both sides are reset);
* :meth:`TcpProxy.refuse` / :meth:`TcpProxy.accept`: cut every open connection and turn new
  ones away (accepted and reset at once, which the client sees as a closed connection) until
  ``accept()``; :meth:`TcpProxy.blip` does both around a pause of N seconds;
* :meth:`TcpProxy.lose_next_reply`: forward the client's next request (optionally: the next
  one containing some bytes) to the server, then drop the server's answer and cut that
  connection: the server did the work, the client never hears of it.

It counts what it did (``accepted``, ``turned_away``, ``dropped``, ``replies_lost``) so a test
can assert that the fault really happened. It only ever connects to 127.0.0.1; it holds one
task per open connection, all ended by :meth:`TcpProxy.aclose`.
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from typing import Self

__all__ = ["TcpProxy"]

_CHUNK = 65536


class _Link:
    """One proxied connection: the client's side and the server's side."""

    __slots__ = ("client", "lose_reply", "server")

    def __init__(self, client: asyncio.StreamWriter, server: asyncio.StreamWriter) -> None:
        self.client = client
        self.server = server
        self.lose_reply = False

    def cut(self) -> None:
        """Reset both sides at once (no graceful close: the peers see a broken connection)."""
        for writer in (self.client, self.server):
            writer.transport.abort()


class TcpProxy:
    """Forwards TCP connections from ``127.0.0.1:port`` to ``127.0.0.1:target_port``, with
    faults on demand (see the module docstring). ``port=0`` picks a free port."""

    def __init__(self, target_port: int, *, port: int = 0) -> None:
        self.target_port = target_port
        self.host = "127.0.0.1"
        self.port = port
        self.accepted = 0
        """Connections forwarded to the server."""
        self.turned_away = 0
        """Connections reset at once while refusing."""
        self.dropped = 0
        """Open connections cut by :meth:`drop_all` or :meth:`refuse`."""
        self.replies_lost = 0
        """Answers dropped by :meth:`lose_next_reply`."""
        self.reply_lost = asyncio.Event()
        """Set when an armed :meth:`lose_next_reply` has dropped an answer."""
        self._refusing = False
        self._lose_armed = False
        self._lose_match: bytes | None = None
        self._links: set[_Link] = set()
        self._tasks: set[asyncio.Task[None]] = set()
        self._server: asyncio.Server | None = None

    # --- lifecycle ----------------------------------------------------------------------

    async def start(self) -> Self:
        """Start listening; ``self.port`` is then the port clients connect to."""
        self._server = await asyncio.start_server(self._serve, self.host, self.port)
        sockets = self._server.sockets
        self.port = int(sockets[0].getsockname()[1])
        return self

    async def aclose(self) -> None:
        """Stop listening, cut every connection and wait for the proxy's tasks to end."""
        if self._server is not None:
            self._server.close()
        for link in list(self._links):
            link.cut()
        if self._tasks:
            await asyncio.gather(*self._tasks, return_exceptions=True)
        if self._server is not None:
            await self._server.wait_closed()
            self._server = None

    async def __aenter__(self) -> Self:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.aclose()

    def url(self, scheme: str = "redis", path: str = "/0") -> str:
        """``scheme://127.0.0.1:port/path``, for a client of the proxied server."""
        return f"{scheme}://{self.host}:{self.port}{path}"

    @property
    def open_connections(self) -> int:
        """Connections being forwarded now."""
        return len(self._links)

    # --- faults -------------------------------------------------------------------------

    def drop_all(self) -> int:
        """Cut every open connection; return how many there were."""
        links = list(self._links)
        for link in links:
            link.cut()
        self.dropped += len(links)
        return len(links)

    def refuse(self) -> int:
        """Cut every open connection and turn new ones away until :meth:`accept`; return
        how many connections were cut."""
        self._refusing = True
        return self.drop_all()

    def accept(self) -> None:
        """Forward new connections again."""
        self._refusing = False

    async def blip(self, seconds: float) -> int:
        """:meth:`refuse` for ``seconds``, then :meth:`accept`; return the connections cut."""
        cut = self.refuse()
        try:
            await asyncio.sleep(seconds)
        finally:
            self.accept()
        return cut

    def lose_next_reply(self, match: bytes | None = None) -> None:
        """Arm: the next request a client sends (the next one containing ``match``, if
        given) reaches the server, but the server's answer is dropped and that connection
        cut. Fires once; :attr:`reply_lost` is set and :attr:`replies_lost` counts it."""
        self._lose_match = match
        self._lose_armed = True
        self.reply_lost.clear()

    # --- forwarding ---------------------------------------------------------------------

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            if self._refusing:
                self.turned_away += 1
                _reset(writer)
                return
            try:
                server_reader, server_writer = await asyncio.open_connection(
                    self.host, self.target_port
                )
            except OSError:
                _reset(writer)  # the server is down: the client sees its connection reset
                return
            link = _Link(writer, server_writer)
            self._links.add(link)
            self.accepted += 1
            try:
                await asyncio.gather(
                    self._pump_requests(reader, link), self._pump_replies(server_reader, link)
                )
            finally:
                self._links.discard(link)
                link.cut()
        finally:
            self._tasks.discard(task)

    async def _pump_requests(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK):
                if self._lose_armed and (self._lose_match is None or self._lose_match in chunk):
                    self._lose_armed = False
                    link.lose_reply = True
                link.server.write(chunk)
                await link.server.drain()
        link.cut()

    async def _pump_replies(self, reader: asyncio.StreamReader, link: _Link) -> None:
        with contextlib.suppress(OSError):
            while chunk := await reader.read(_CHUNK):
                if link.lose_reply:
                    self.replies_lost += 1
                    self.reply_lost.set()
                    break
                link.client.write(chunk)
                await link.client.drain()
        link.cut()


def _reset(writer: asyncio.StreamWriter) -> None:
    """Close with a TCP reset (SO_LINGER 0), as a refusing server would."""
    sock = writer.get_extra_info("socket")
    if sock is not None:
        with contextlib.suppress(OSError):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    writer.transport.abort()
