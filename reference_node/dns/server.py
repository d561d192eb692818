"""asyncio DNS listeners: UDP, TCP and DNS-over-QUIC (RFC 9250) around a sans-I/O handler.

The listeners only move bytes: parsing and answering happen in the handler (normally
`trustchain.dns.authority.Authority.answer`), rate limiting in `trustchain.dns.ratelimit`. Nothing a
client sends may stop a listener: every failure is counted in `ListenerCounters` and the offending
datagram, connection or stream is dropped.

UDP fast path: on event loops with `add_reader` (every Unix loop, including uvloop) the UDP socket is
read directly, draining up to `UDP_BATCH` datagrams per readiness event and replying with a plain
`sendto`, so one epoll wakeup and one loop callback serve a whole burst. Loops without `add_reader`
(Windows proactor) use an ordinary `DatagramProtocol`. A reply the kernel will not take right away
(full socket buffer) is dropped and counted, as any UDP server under overload does.

Fast path: with `fast` (the served authority's `AnswerTable.lookup`) each UDP datagram is first looked
up in the precomputed wire answers (`trustchain.dns.answer_table`): no dnspython parse or render, just
the header and question bytes, a dictionary lookup and the ID and flags patched in; whatever it
declines (cookies, TSIG, updates, truncation...) takes the handler as before.

Scaling out: Python answers on one core per process. `start_udp(..., reuse_port=True)` sets
SO_REUSEPORT (Linux, BSD), so several processes (one per core) can bind the same address and the
kernel spreads clients across them by 4-tuple hash: `reference_node.dns.workers` starts them, fed with
the answer table. The node and `trustchain-cli dns serve` run on uvloop when it is installed
(`reference_node.eventloop`).
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Coroutine
from dataclasses import dataclass
from typing import Any, Literal

from aioquic.asyncio.protocol import QuicConnectionProtocol
from aioquic.asyncio.server import QuicServer, serve
from aioquic.quic.configuration import QuicConfiguration
from aioquic.quic.events import ConnectionTerminated, QuicEvent, StreamDataReceived, StreamReset

from reference_node.listen import ListenError, bind_socket
from trustchain.dns.app import DNSApplication
from trustchain.dns.authority import Authority
from trustchain.dns.edns_options import has_valid_cookie
from trustchain.dns.ratelimit import Action, ResponseRateLimiter, truncated_reply

Transport = Literal["udp", "tcp", "doq"]
Handler = Callable[[bytes, str, Transport], bytes]
#: (UDP query, UDP limit, now in s) -> precomputed answer or None: `AnswerTable.lookup` of the authority served
FastHandler = Callable[[bytes, int, int], "bytes | None"]
UpdateHandler = Callable[[bytes, str, Transport], Awaitable[bytes]]  # answers once the update is ordered
TransferHandler = Callable[[bytes, str], AsyncIterator[bytes]]  # the messages of one AXFR/IXFR answer
OPCODE_UPDATE = 5
EDNS_UDP = 1232
MAX_QUERY = 4096  # no legitimate query comes close; larger ones are counted as oversize and dropped
DOQ_ALPN = "doq"
DOQ_NO_ERROR, DOQ_INTERNAL_ERROR, DOQ_PROTOCOL_ERROR = 0x0, 0x1, 0x2  # RFC 9250 section 4.3
UDP_BATCH = 64  # datagrams served per readiness event before yielding to other listeners
BIND_ATTEMPTS = 32  # port 0: tries to find one port free for both UDP and TCP
UDP_RCVBUF = 4 * 1024 * 1024  # absorbs bursts while the loop is busy (the kernel caps it at rmem_max)
log = logging.getLogger("trustchain.node")


@dataclass
class ListenerCounters:
    udp_queries: int = 0
    udp_send_errors: int = 0  # replies the kernel refused (socket buffer full, unreachable client)
    tcp_queries: int = 0
    doq_queries: int = 0
    responses: int = 0
    malformed: int = 0
    oversize: int = 0
    rrl_dropped: int = 0
    rrl_slipped: int = 0
    rrl_exempt: int = 0  # answered outside the limit: the query carried a valid server cookie
    tcp_connections: int = 0
    tcp_rejected: int = 0
    tcp_timeouts: int = 0
    doq_connections: int = 0
    doq_protocol_errors: int = 0
    handler_errors: int = 0
    updates: int = 0
    transfers: int = 0


def authority_handler(authority: Authority | DNSApplication, clock: Callable[[], float] = time.time) -> Handler:
    """Adapt an Authority (or the replicated DNS application, whose authority is replaced on restore): UDP
    answers obey the EDNS limit (truncation makes clients retry over TCP)."""

    def handle(wire: bytes, client: str, transport: Transport) -> bytes:
        return authority.answer(wire, int(clock()), max_udp=EDNS_UDP if transport == "udp" else None, client=client)

    return handle


def cookie_exemption(authority: Authority | DNSApplication,
                     clock: Callable[[], float] = time.time) -> Callable[[bytes, str], bool]:
    """RRL exemption for queries carrying a valid server cookie of this server (its identity's secret)."""

    def exempt(wire: bytes, client: str) -> bool:
        return has_valid_cookie(authority.identity.cookie_secret, wire, client, int(clock()))

    return exempt


def _response_class(response: bytes) -> str:
    """RRL accounting class, as Knot does: by rcode, and for positive answers by the question name
    (so one popular name cannot starve others for the same client prefix)."""
    rcode = response[3] & 0x0F if len(response) > 3 else 0
    if rcode != 0:
        return f"rcode{rcode}"
    return "ok:" + response[12:268].split(b"\x00", 1)[0].lower().hex()


class DNSServer:
    def __init__(
        self,
        handler: Handler,
        *,
        rrl: ResponseRateLimiter | None = None,
        tcp_idle_timeout: float = 10.0,
        max_tcp_clients: int = 512,
        clock: Callable[[], float] = time.monotonic,
        update_handler: UpdateHandler | None = None,
        transfer_handler: TransferHandler | None = None,
        is_transfer: Callable[[bytes], bool] | None = None,
        rrl_exempt: Callable[[bytes, str], bool] | None = None,
        fast: FastHandler | None = None,
        count_fast: Callable[[int], None] | None = None,
        wall: Callable[[], float] = time.time,
    ) -> None:
        """`update_handler` takes RFC 2136 UPDATE messages (answered NOTIMP by `handler` without one); its
        answer comes later, so a UDP update is answered from a task and a TCP connection waits for it.
        `transfer_handler` answers the TCP and DoQ queries `is_transfer` picks (AXFR, IXFR) with several
        messages.
        `rrl_exempt(query, client)` picks UDP queries that RRL lets through uncounted (`cookie_exemption`).
        `fast`: the UDP fast path (the served authority's `AnswerTable.lookup`; the node's driver rebinds it
        when the authority is replaced), tried first for each datagram when there is no RRL (anything it
        declines goes to `handler`); `count_fast` is told how many it answered per burst."""
        self.handler = handler
        self.fast = fast
        self.count_fast = count_fast
        self.wall = wall
        self.update_handler = update_handler
        self.transfer_handler = transfer_handler
        self.is_transfer = is_transfer
        self.rrl = rrl
        self.rrl_exempt = rrl_exempt
        self.tcp_idle_timeout = tcp_idle_timeout
        self.max_tcp_clients = max_tcp_clients
        self.clock = clock
        self.counters = ListenerCounters()
        self._udp: list[asyncio.DatagramTransport] = []
        self._udp_socks: list[socket.socket] = []
        self._tcp: list[asyncio.Server] = []
        self._quic: list[QuicServer] = []
        self._tcp_open = 0
        self._update_tasks: set[asyncio.Task[None]] = set()

    # --- shared -------------------------------------------------------------------------------------

    def _handle(self, wire: bytes, client: str, transport: Transport) -> bytes:
        if len(wire) > MAX_QUERY:
            self.counters.oversize += 1
            return b""
        if len(wire) < 12:
            self.counters.malformed += 1
            return b""
        try:
            response = self.handler(wire, client, transport)
        except Exception:  # the handler is sans-I/O code we trust, but a bug must not kill the listener
            self.counters.handler_errors += 1
            return b""
        if response and response[3] & 0x0F == 1:  # FORMERR: the query did not parse
            self.counters.malformed += 1
        return response

    def _is_update(self, wire: bytes) -> bool:
        return self.update_handler is not None and len(wire) >= 12 and (wire[2] >> 3) & 0x0F == OPCODE_UPDATE

    async def _handle_update(self, wire: bytes, client: str, transport: Transport) -> bytes:
        assert self.update_handler is not None
        if len(wire) > MAX_QUERY:
            self.counters.oversize += 1
            return b""
        self.counters.updates += 1
        try:
            return await self.update_handler(wire, client, transport)
        except Exception:  # as in `_handle`: a bug costs one answer, never the listener
            self.counters.handler_errors += 1
            return b""

    def _spawn_update(self, wire: bytes, client: str, transport: Transport, send: Callable[[bytes], None]) -> None:
        async def run() -> None:
            response = await self._handle_update(wire, client, transport)
            if response:
                try:
                    send(response)
                    self.counters.responses += 1
                except OSError:
                    self.counters.udp_send_errors += 1

        self._spawn(run())

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run an answer that comes later (an update, a DoQ transfer); `close` cancels what is left."""
        task = asyncio.get_running_loop().create_task(coro)
        self._update_tasks.add(task)
        task.add_done_callback(self._update_tasks.discard)

    # --- UDP and TCP on one port --------------------------------------------------------------------

    async def start_udp_tcp(self, host: str, port: int, *, reuse_port: bool = False,
                            attempts: int = BIND_ATTEMPTS) -> tuple[tuple[str, int], tuple[str, int]]:
        """UDP and TCP on the same port, as DNS needs (a client retries a truncated UDP answer over TCP
        there). With port 0 the kernel picks UDP's port, where TCP may find another program: then both are
        bound again on a new port, up to `attempts` times. ListenError if they cannot be."""
        for attempt in range(attempts):
            socks, transports = len(self._udp_socks), len(self._udp)
            udp = await self.start_udp(host, port, reuse_port=reuse_port)
            try:
                return udp, await self.start_tcp(host, udp[1])
            except ListenError:
                self._close_udp_from(socks, transports)
                if port != 0 or attempt == attempts - 1:
                    raise
        raise AssertionError("not reached")

    def _close_udp_from(self, socks: int, transports: int) -> None:
        for sock in self._udp_socks[socks:]:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(sock.fileno())
            sock.close()
        for transport in self._udp[transports:]:
            transport.close()
        del self._udp_socks[socks:], self._udp[transports:]

    # --- UDP ----------------------------------------------------------------------------------------

    async def start_udp(self, host: str, port: int, *, reuse_port: bool = False) -> tuple[str, int]:
        loop = asyncio.get_running_loop()
        family, _, _, _, address = (await loop.getaddrinfo(host, port, type=socket.SOCK_DGRAM))[0]
        sock = socket.socket(family, socket.SOCK_DGRAM)
        try:
            if reuse_port:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, UDP_RCVBUF)
            if family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)  # `[::]` takes IPv4 queries too
            sock.setblocking(False)
            try:
                sock.bind(address)
            except OSError as exc:
                raise ListenError(f"dns.listen: cannot listen on {host}:{port}/udp: {exc.strerror or exc}") from None
            sockname = sock.getsockname()
            try:
                loop.add_reader(sock.fileno(), self._udp_readable, sock)
                self._udp_socks.append(sock)
            except NotImplementedError:
                transport, _ = await loop.create_datagram_endpoint(lambda: _UDPProtocol(self), sock=sock)
                self._udp.append(transport)
        except BaseException:
            sock.close()
            raise
        return sockname[0], sockname[1]

    def _udp_readable(self, sock: socket.socket) -> None:
        """Serve up to UDP_BATCH queued datagrams: one loop callback for a whole burst."""
        recvfrom, sendto, reply = sock.recvfrom, sock.sendto, self._udp_reply
        fast = self.fast if self.rrl is None else None
        now = int(self.wall())
        answered = failed = 0
        for _ in range(UDP_BATCH):
            try:
                data, addr = recvfrom(MAX_QUERY + 1)  # anything longer arrives cut, and counts as oversize
            except (BlockingIOError, InterruptedError):
                break
            except OSError:  # e.g. ICMP errors reported for an earlier reply: nothing to do
                continue
            if fast is not None:
                response = fast(data, EDNS_UDP, now)
                if response is not None:
                    try:
                        sendto(response, addr)
                        answered += 1
                    except OSError:  # includes BlockingIOError: full buffer, drop as UDP allows
                        failed += 1
                    continue
            if self._is_update(data):
                self.counters.udp_queries += 1
                self._spawn_update(data, addr[0], "udp", functools.partial(_sendto, sock, addr))
                continue
            response = reply(data, addr)
            if response:
                try:
                    sendto(response, addr)
                    self.counters.responses += 1
                except OSError:
                    self.counters.udp_send_errors += 1
        if answered or failed:
            counters = self.counters
            counters.udp_queries += answered + failed
            counters.responses += answered
            counters.udp_send_errors += failed
            if self.count_fast is not None:
                self.count_fast(answered + failed)

    def _udp_reply(self, data: bytes, addr: Any) -> bytes:
        counters = self.counters
        counters.udp_queries += 1
        response = self._handle(data, addr[0], "udp")
        if not response:
            return b""
        if self.rrl is not None:
            if self.rrl_exempt is not None and self.rrl_exempt(data, addr[0]):
                counters.rrl_exempt += 1
                return response
            action = self.rrl.check(addr[0], self.clock(), _response_class(response))
            if action is Action.DROP:
                counters.rrl_dropped += 1
                return b""
            if action is Action.SLIP:
                counters.rrl_slipped += 1
                response = truncated_reply(response)
                if not response:
                    return b""
        return response

    def answer_forwarded(self, data: bytes, client: str, send: Callable[[bytes], None]) -> None:
        """A datagram a UDP worker process passed on (`reference_node.dns.workers`): answered as one of
        our own, `send` called with the response."""
        if self._is_update(data):
            self.counters.udp_queries += 1
            self._spawn_update(data, client, "udp", send)
            return
        response = self._udp_reply(data, (client, 0))
        if response:
            self.counters.responses += 1
            send(response)

    def _on_datagram(self, data: bytes, addr: Any, transport: asyncio.DatagramTransport) -> None:
        if self._is_update(data):
            self.counters.udp_queries += 1
            self._spawn_update(data, addr[0], "udp", lambda response: transport.sendto(response, addr))
            return
        response = self._udp_reply(data, addr)
        if response:
            self.counters.responses += 1
            transport.sendto(response, addr)

    # --- TCP ----------------------------------------------------------------------------------------

    async def start_tcp(self, host: str, port: int) -> tuple[str, int]:
        server = await asyncio.start_server(self._on_tcp, sock=bind_socket("dns.listen", host, port))
        self._tcp.append(server)
        sockname = server.sockets[0].getsockname()
        return sockname[0], sockname[1]

    async def _on_tcp(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        peer = writer.get_extra_info("peername")
        client = peer[0] if peer else "?"
        if self._tcp_open >= self.max_tcp_clients:
            self.counters.tcp_rejected += 1
            writer.close()
            return
        self._tcp_open += 1
        self.counters.tcp_connections += 1
        try:
            while True:  # RFC 7766: several queries may be pipelined on one connection
                try:
                    header = await asyncio.wait_for(reader.readexactly(2), self.tcp_idle_timeout)
                except TimeoutError:
                    self.counters.tcp_timeouts += 1
                    return
                length = int.from_bytes(header, "big")
                if length > MAX_QUERY:
                    self.counters.oversize += 1
                    return
                body = await asyncio.wait_for(reader.readexactly(length), self.tcp_idle_timeout)
                self.counters.tcp_queries += 1
                if self.transfer_handler is not None and self.is_transfer is not None and self.is_transfer(body):
                    if not await self._transfer(body, client, writer):
                        return
                    continue
                if self._is_update(body):
                    response = await self._handle_update(body, client, "tcp")
                else:
                    response = self._handle(body, client, "tcp")
                if not response:
                    return
                self.counters.responses += 1
                writer.write(len(response).to_bytes(2, "big") + response)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError, TimeoutError):
            pass  # client went away or stalled mid-message
        finally:
            self._tcp_open -= 1
            writer.close()
            with contextlib.suppress(Exception):
                await writer.wait_closed()

    async def _transfer(self, body: bytes, client: str, writer: asyncio.StreamWriter) -> bool:
        """Send every message of one zone transfer answer; False when nothing was (close the connection)."""
        assert self.transfer_handler is not None
        self.counters.transfers += 1
        sent = 0
        try:
            async for message in self.transfer_handler(body, client):
                writer.write(len(message).to_bytes(2, "big") + message)
                await writer.drain()
                sent += 1
        except (ConnectionError, TimeoutError):
            return False
        except Exception:  # as in `_handle`: a bug costs one answer, never the listener
            self.counters.handler_errors += 1
            log.exception("zone transfer to %s failed", client, extra={"event": "dns_transfer_failed"})
            return False
        self.counters.responses += sent > 0
        return sent > 0

    # --- DNS over QUIC ------------------------------------------------------------------------------

    async def start_doq(self, host: str, port: int, cert_file: str, key_file: str) -> tuple[str, int]:
        config = QuicConfiguration(is_client=False, alpn_protocols=[DOQ_ALPN], idle_timeout=30.0)
        config.load_cert_chain(cert_file, key_file)
        server = await serve(host, port, configuration=config, create_protocol=functools.partial(_DoQProtocol, self))
        self._quic.append(server)
        assert server._transport is not None
        sockname = server._transport.get_extra_info("sockname")
        return sockname[0], sockname[1]

    async def close(self) -> None:
        loop = asyncio.get_running_loop()
        for sock in self._udp_socks:
            loop.remove_reader(sock.fileno())
            sock.close()
        self._udp_socks = []
        for udp in self._udp:
            udp.close()
        for tcp in self._tcp:
            tcp.close()
        for task in list(self._update_tasks):
            task.cancel()
        for quic in self._quic:
            quic.close()
        for tcp in self._tcp:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(tcp.wait_closed(), 1.0)
        self._udp, self._tcp, self._quic = [], [], []


def _sendto(sock: socket.socket, addr: Any, response: bytes) -> None:
    sock.sendto(response, addr)


class _UDPProtocol(asyncio.DatagramProtocol):
    def __init__(self, server: DNSServer) -> None:
        self.server = server
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]  # selector transports do not subclass it

    def datagram_received(self, data: bytes, addr: Any) -> None:
        assert self.transport is not None
        self.server._on_datagram(data, addr, self.transport)

    def error_received(self, exc: Exception) -> None:
        pass  # ICMP errors for earlier replies (e.g. port unreachable): nothing to do


class _DoQProtocol(QuicConnectionProtocol):
    """RFC 9250: one query per client-initiated bidirectional stream, 2-byte length prefix, message
    ID 0; the client ends its side of the stream after the query, we answer and end ours."""

    def __init__(self, server: DNSServer, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.server = server
        self._buffers: dict[int, bytearray] = {}
        server.counters.doq_connections += 1

    def quic_event_received(self, event: QuicEvent) -> None:
        if isinstance(event, StreamDataReceived):
            self._on_stream_data(event)
        elif isinstance(event, StreamReset):
            self._buffers.pop(event.stream_id, None)
        elif isinstance(event, ConnectionTerminated):
            self._buffers.clear()

    def _on_stream_data(self, event: StreamDataReceived) -> None:
        sid = event.stream_id
        counters = self.server.counters
        if sid % 4 != 0:  # only client-initiated bidirectional streams carry queries
            counters.doq_protocol_errors += 1
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="query on a wrong stream type")
            self.transmit()
            return
        buf = self._buffers.setdefault(sid, bytearray())
        buf += event.data
        if len(buf) > MAX_QUERY + 2:
            counters.oversize += 1
            self._buffers.pop(sid, None)
            self._quic.reset_stream(sid, DOQ_PROTOCOL_ERROR)
            self.transmit()
            return
        if not event.end_stream:
            return
        data = bytes(self._buffers.pop(sid))
        counters.doq_queries += 1
        if len(data) < 2 or int.from_bytes(data[:2], "big") != len(data) - 2 or data[2:4] != b"\0\0":
            counters.doq_protocol_errors += 1  # bad length prefix, or message ID not 0 (RFC 9250 4.2.1)
            self._quic.close(error_code=DOQ_PROTOCOL_ERROR, reason_phrase="malformed DoQ query")
            self.transmit()
            return
        if len(data) < 14 or data[4] & 0x80:  # no DNS header, or a response: not a query at all
            counters.doq_protocol_errors += 1
            counters.malformed += 1
            self._quic.reset_stream(sid, DOQ_PROTOCOL_ERROR)
            self.transmit()
            return
        server = self.server
        if server.transfer_handler is not None and server.is_transfer is not None and server.is_transfer(data[2:]):
            server._spawn(self._transfer(sid, data[2:]))  # XoQ: the same TSIG and grant checks as over TCP
            return
        if server._is_update(data[2:]):
            server._spawn_update(data[2:], self._client(), "doq", functools.partial(self._reply, sid))
            return
        response = self.server._handle(data[2:], self._client(), "doq")
        if not response:
            self._quic.reset_stream(sid, DOQ_INTERNAL_ERROR)
        else:
            counters.responses += 1
            self._quic.send_stream_data(sid, len(response).to_bytes(2, "big") + response, end_stream=True)
        self.transmit()

    async def _transfer(self, sid: int, query: bytes) -> None:
        """RFC 9250 4.2: every message of an AXFR/IXFR answer on the query's stream, each with its length;
        the stream ends after the last. Nothing to send (or a failure midway): the stream is reset."""
        server = self.server
        assert server.transfer_handler is not None
        server.counters.transfers += 1
        sent = 0
        try:
            async for message in server.transfer_handler(query, self._client()):
                self._quic.send_stream_data(sid, len(message).to_bytes(2, "big") + message)
                self.transmit()
                sent += 1
        except Exception:  # as in `_handle`: a bug or a vanished peer costs this stream, never the listener
            server.counters.handler_errors += 1
            log.exception("zone transfer over DoQ to %s failed", self._client(),
                          extra={"event": "dns_transfer_failed"})
            sent = 0
        with contextlib.suppress(Exception):  # the connection may be gone by now
            if sent:
                self._quic.send_stream_data(sid, b"", end_stream=True)
                server.counters.responses += 1
            else:
                self._quic.reset_stream(sid, DOQ_INTERNAL_ERROR)
            self.transmit()

    def _reply(self, sid: int, response: bytes) -> None:
        self._quic.send_stream_data(sid, len(response).to_bytes(2, "big") + response, end_stream=True)
        self.transmit()

    def _client(self) -> str:
        try:
            return str(self._quic._network_paths[0].addr[0])
        except (AttributeError, IndexError):
            return "?"
