"""tests/tcp_proxy.py against a small line-echo server on 127.0.0.1: forwarding, cutting,
refusing, and losing a reply that the server did produce."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator

import pytest

from tests.support import PATIENCE, wait_until_async
from tests.tcp_proxy import TcpProxy


class EchoServer:
    """Answers each line ``x`` with ``ok:x`` and records every line it received."""

    def __init__(self) -> None:
        self.received: list[bytes] = []
        self.port = 0
        self._server: asyncio.Server | None = None
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        self.port = int(self._server.sockets[0].getsockname()[1])

    async def aclose(self) -> None:
        assert self._server is not None
        self._server.close()
        for writer in list(self._writers):
            writer.transport.abort()
        await self._server.wait_closed()

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self._writers.add(writer)
        try:
            with contextlib.suppress(OSError):
                while line := await reader.readline():
                    self.received.append(line.strip())
                    writer.write(b"ok:" + line)
                    await writer.drain()
        finally:
            self._writers.discard(writer)
            writer.close()


@pytest.fixture
async def echo() -> AsyncIterator[EchoServer]:
    server = EchoServer()
    await server.start()
    yield server
    await server.aclose()


async def ask(streams: tuple[asyncio.StreamReader, asyncio.StreamWriter], line: bytes) -> bytes:
    """Send ``line`` and read one answer line (b"" when the connection was closed)."""
    reader, writer = streams
    writer.write(line + b"\n")
    await writer.drain()
    try:
        return await asyncio.wait_for(reader.readline(), PATIENCE)
    except ConnectionResetError:
        return b""


async def connect(proxy: TcpProxy) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    return await asyncio.open_connection(proxy.host, proxy.port)


async def closed_by_peer(reader: asyncio.StreamReader) -> bool:
    """True once the peer closed or reset the connection."""
    try:
        return await asyncio.wait_for(reader.read(1), PATIENCE) == b""
    except ConnectionResetError:
        return True


def close(streams: tuple[asyncio.StreamReader, asyncio.StreamWriter]) -> None:
    streams[1].transport.abort()


async def test_forwards_both_ways_and_leaves_no_task(echo: EchoServer) -> None:
    before = len(asyncio.all_tasks())
    async with TcpProxy(echo.port) as proxy:
        assert proxy.port != echo.port
        clients = [await connect(proxy) for _ in range(3)]
        for i, client in enumerate(clients):
            assert await ask(client, b"hello %d" % i) == b"ok:hello %d\n" % i
        assert proxy.accepted == 3
        assert proxy.open_connections == 3
        for client in clients:
            close(client)
        await wait_until_async(lambda: proxy.open_connections == 0, "the proxy to see 3 closes")
    assert echo.received == [b"hello 0", b"hello 1", b"hello 2"]
    assert len(asyncio.all_tasks()) == before
    assert (proxy.dropped, proxy.turned_away, proxy.replies_lost) == (0, 0, 0)


async def test_drop_all_cuts_every_open_connection(echo: EchoServer) -> None:
    async with TcpProxy(echo.port) as proxy:
        clients = [await connect(proxy) for _ in range(4)]
        for client in clients:
            assert await ask(client, b"x") == b"ok:x\n"
        assert proxy.drop_all() == 4
        assert [await closed_by_peer(reader) for reader, _ in clients] == [True] * 4
        await wait_until_async(lambda: proxy.open_connections == 0, "the links to be gone")
        fresh = await connect(proxy)  # new connections still work
        assert await ask(fresh, b"y") == b"ok:y\n"
        close(fresh)
        for client in clients:
            close(client)
    assert (proxy.dropped, proxy.accepted) == (4, 5)


async def test_refuse_turns_new_connections_away_until_accept(echo: EchoServer) -> None:
    async with TcpProxy(echo.port) as proxy:
        held = await connect(proxy)
        assert await ask(held, b"a") == b"ok:a\n"
        assert proxy.refuse() == 1
        assert await closed_by_peer(held[0])
        for _ in range(3):
            refused = await connect(proxy)
            assert await closed_by_peer(refused[0])
            close(refused)
        proxy.accept()
        again = await connect(proxy)
        assert await ask(again, b"b") == b"ok:b\n"
        close(again)
        close(held)
    assert (proxy.turned_away, proxy.dropped, proxy.accepted) == (3, 1, 2)
    assert echo.received == [b"a", b"b"]


async def test_blip_refuses_for_its_duration_then_forwards(echo: EchoServer) -> None:
    async with TcpProxy(echo.port) as proxy:
        held = await connect(proxy)
        assert await ask(held, b"a") == b"ok:a\n"
        blip = asyncio.ensure_future(proxy.blip(0.5))
        assert await closed_by_peer(held[0])
        during = await connect(proxy)
        if not blip.done():  # a loaded machine may take the whole blip to get here
            assert await closed_by_peer(during[0])
        close(during)
        assert await blip == 1
        after = await connect(proxy)
        assert await ask(after, b"b") == b"ok:b\n"
        close(after)
        close(held)
    assert proxy.dropped == 1


async def test_lose_next_reply_drops_the_answer_of_a_request_the_server_handled(
    echo: EchoServer,
) -> None:
    async with TcpProxy(echo.port) as proxy:
        other, victim = await connect(proxy), await connect(proxy)
        proxy.lose_next_reply(match=b"XADD")
        assert await ask(other, b"GET k") == b"ok:GET k\n"  # not matching: forwarded
        assert await ask(victim, b"XADD 7") == b""  # the answer never comes: cut
        await asyncio.wait_for(proxy.reply_lost.wait(), PATIENCE)
        assert await ask(other, b"XADD 8") == b"ok:XADD 8\n"  # fires once
        retry = await connect(proxy)
        assert await ask(retry, b"XADD 7") == b"ok:XADD 7\n"
        for client in (other, victim, retry):
            close(client)
    assert echo.received == [b"GET k", b"XADD 7", b"XADD 8", b"XADD 7"]
    assert proxy.replies_lost == 1


async def test_a_down_server_resets_the_client(echo: EchoServer) -> None:
    await echo.aclose()
    async with TcpProxy(echo.port) as proxy:
        client = await connect(proxy)
        assert await closed_by_peer(client[0])
        close(client)
    assert proxy.accepted == 0
    await echo.start()  # the fixture closes it again
