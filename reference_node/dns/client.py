"""Client-side I/O: UDP/TCP/DoQ exchanges and the driver that runs a `Resolution`'s effects."""

from __future__ import annotations

import asyncio
import contextlib
import os
import socket
import ssl
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

from aioquic.asyncio.client import connect
from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.quic.configuration import QuicConfiguration

from trustchain.dns.resolver import Resolution, Resolved, SendQuery

DOQ_ALPN = "doq"


def random_id() -> int:
    """Query IDs from the OS CSPRNG: predictable IDs make spoofed answers easy."""
    return int.from_bytes(os.urandom(2), "big")


class _OneShot(asyncio.DatagramProtocol):
    def __init__(self, wire: bytes, future: asyncio.Future[bytes]) -> None:
        self.wire, self.future = wire, future

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        transport.sendto(self.wire)  # type: ignore[attr-defined]  # a datagram transport

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if not self.future.done() and data[:2] == self.wire[:2]:  # ignore stray packets
            self.future.set_result(data)

    def error_received(self, exc: Exception) -> None:
        if not self.future.done():
            self.future.set_exception(exc)


async def udp_exchange(host: str, port: int, wire: bytes, timeout: float) -> bytes:
    loop = asyncio.get_running_loop()
    future: asyncio.Future[bytes] = loop.create_future()
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    transport, _ = await loop.create_datagram_endpoint(
        lambda: _OneShot(wire, future), remote_addr=(host, port), family=family
    )
    try:
        return await asyncio.wait_for(future, timeout)
    finally:
        transport.close()


async def tcp_exchange(host: str, port: int, wire: bytes, timeout: float) -> bytes:
    async def run() -> bytes:
        reader, writer = await asyncio.open_connection(host, port)
        try:
            writer.write(len(wire).to_bytes(2, "big") + wire)
            await writer.drain()
            length = int.from_bytes(await reader.readexactly(2), "big")
            return await reader.readexactly(length)
        finally:
            writer.close()

    return await asyncio.wait_for(run(), timeout)


async def drive(resolution: Resolution, clock: Callable[[], float] = time.time) -> Resolved:
    """Run a resolution to completion, performing each SendQuery it asks for."""
    effect = resolution.start()
    while isinstance(effect, SendQuery):
        up = effect.upstream
        exchange = tcp_exchange if effect.tcp else udp_exchange
        try:
            reply = await exchange(up.host, up.port, effect.wire, effect.timeout)
        except (TimeoutError, OSError, asyncio.IncompleteReadError):
            effect = resolution.on_timeout(clock())
            continue
        effect = resolution.on_response(reply, clock())
    return effect


# --- DNS over QUIC (RFC 9250) ----------------------------------------------------------------------


def doq_configuration(ca_file: str | None = None, server_name: str | None = None) -> QuicConfiguration:
    """Client configuration; without `ca_file` the certificate is not verified (tests, benchmarks)."""
    config = QuicConfiguration(is_client=True, alpn_protocols=[DOQ_ALPN], server_name=server_name)
    if ca_file is None:
        config.verify_mode = ssl.CERT_NONE
    else:
        config.load_verify_locations(ca_file)
    return config


async def doq_query(protocol: QuicConnectionProtocol, wire: bytes, timeout: float = 5.0) -> bytes:
    """One query on a fresh stream of an open connection. The message ID is zeroed (RFC 9250 4.2.1)."""
    reader, writer = await protocol.create_stream()
    writer.write(len(wire).to_bytes(2, "big") + b"\0\0" + wire[2:])
    writer.write_eof()
    data = await asyncio.wait_for(reader.read(), timeout)
    if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2:
        raise ValueError("malformed DoQ response")
    return data[2:]


@contextlib.asynccontextmanager
async def doq_connection(
    host: str, port: int, ca_file: str | None = None, server_name: str | None = None
) -> AsyncIterator[QuicConnectionProtocol]:
    async with connect(host, port, configuration=doq_configuration(ca_file, server_name)) as protocol:
        yield protocol
