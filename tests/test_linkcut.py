"""The city link's stand-in (``city.testcluster.LinkCut``) cuts every connection: also one
that was being relayed (its upstream connect in progress) at the instant of the cut, which
once survived it and kept a bench's "cut" link half up."""

from __future__ import annotations

import asyncio

import pytest

from city.testcluster import LinkCut


async def test_a_connection_accepted_just_before_a_cut_does_not_survive_it(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        while data := await reader.read(100):
            writer.write(data)
        writer.close()

    target = await asyncio.start_server(echo, "127.0.0.1", 0)
    link = await LinkCut("127.0.0.1", target.sockets[0].getsockname()[1]).start()
    real_open = asyncio.open_connection
    connecting, release = asyncio.Event(), asyncio.Event()

    async def slow_open(*args: object, **kwargs: object) -> object:
        connecting.set()  # the relay is connecting upstream: cut now
        await release.wait()
        return await real_open(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(asyncio, "open_connection", slow_open)
    reader, writer = await real_open("127.0.0.1", link.port)
    try:
        async with asyncio.timeout(10):
            await connecting.wait()
        link.cut()
        release.set()
        writer.write(b"ping")
        async with asyncio.timeout(10):
            try:
                echoed = await reader.read(100)
            except ConnectionResetError:
                echoed = b""
        assert echoed == b""  # dropped, not relayed
    finally:
        writer.close()
        await link.close()
        target.close()
        await target.wait_closed()
