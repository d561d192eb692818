"""A client's malformed HTTP is logged as one INFO line naming the client and the reason, not as an ERROR
with a traceback; an error in a handler of ours still is."""

from __future__ import annotations

import asyncio
import logging

import pytest
from aiohttp import web

from reference_node import log_filters


async def _exchange(port: int, raw: bytes) -> bytes:
    reader, writer = await asyncio.open_connection("127.0.0.1", port)
    writer.write(raw)
    await writer.drain()
    data = await asyncio.wait_for(reader.read(), 5)
    writer.close()
    return data


def test_client_protocol_errors_are_one_line(caplog: pytest.LogCaptureFixture) -> None:
    log_filters.install()
    log_filters.install()  # idempotent
    assert sum(isinstance(f, log_filters.ClientProtocolErrors)
               for f in logging.getLogger("aiohttp.server").filters) == 1

    async def broken(request: web.Request) -> web.Response:
        raise RuntimeError("a bug of ours")

    async def run() -> list[bytes]:
        app = web.Application()
        app.router.add_get("/broken", broken)
        runner = web.AppRunner(app, access_log=None)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        try:
            return [await _exchange(port, b"GET / HTTP/1.1\r\nHost: x\r\nBad Header Line\r\n\r\n"),
                    await _exchange(port, b"GET /" + b"a" * 20000 + b" HTTP/1.1\r\nHost: x\r\n\r\n"),
                    await _exchange(port, b"GET /broken HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")]
        finally:
            await runner.cleanup()

    with caplog.at_level(logging.INFO):
        answers = asyncio.run(run())
    assert [a.split(b" ", 2)[1] for a in answers] == [b"400", b"400", b"500"]
    lines = [r for r in caplog.records if r.name == "trustchain.http"]
    assert len(lines) == 2
    for r in lines:
        assert r.levelno == logging.INFO and r.exc_info is None
        message = r.getMessage()
        assert message.startswith("bad HTTP request from 127.0.0.1: 400") and "\n" not in message
    assert "header" in lines[0].getMessage().lower()
    errors = [r for r in caplog.records if r.name == "aiohttp.server"]
    assert len(errors) == 1  # only our handler's bug, with its traceback
    assert errors[0].levelno == logging.ERROR and errors[0].exc_info is not None
    assert isinstance(errors[0].exc_info[1], RuntimeError)
