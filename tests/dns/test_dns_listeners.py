"""The asyncio listeners, queried by real clients: dig and kdig over UDP and TCP, kdig +quic over
DoQ (and our aioquic client), delv validating against our DS. Hostile input is counted, not fatal."""

from __future__ import annotations

import asyncio
import re
import shutil
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from dns_testutil import make_zone, seed
from tls_testutil import self_signed

from reference_node.dns.client import doq_connection, doq_query, tcp_exchange, udp_exchange
from reference_node.dns.server import DOQ_PROTOCOL_ERROR, DNSServer, authority_handler
from trustchain.dns.authority import Authority
from trustchain.dns.dnssec import sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.ratelimit import ResponseRateLimiter
from trustchain.dns.zone import AddRecords, ZoneUpdate


@dataclass
class Running:
    server: DNSServer
    udp: int
    tcp: int
    doq: int
    ds_text: str
    cert: Path
    loop: asyncio.AbstractEventLoop

    def call(self, coro: object) -> object:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout=20)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def running(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Running]:
    zone = make_zone()
    zone.apply(ZoneUpdate("tc.example.", (AddRecords("big", "TXT", 60, tuple(f'"{i:02d}' + "y" * 180 + '"'
                                                                            for i in range(12))),)))
    signed = sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), int(time.time()))
    auth = Authority()
    auth.load(zone, signed)
    auth.precompute()
    assert auth.table is not None
    cert, key = self_signed(tmp_path_factory.mktemp("tls"))
    server = DNSServer(authority_handler(auth), tcp_idle_timeout=2.0, fast=auth.table.lookup)
    loop = asyncio.new_event_loop()
    ready: dict[str, int] = {}
    started = threading.Event()

    async def start() -> None:
        ready["udp"] = (await server.start_udp("127.0.0.1", 0))[1]
        ready["tcp"] = (await server.start_tcp("127.0.0.1", ready["udp"]))[1]  # same port: TC -> TCP
        ready["doq"] = (await server.start_doq("127.0.0.1", 0, str(cert), str(key)))[1]
        started.set()

    thread = threading.Thread(target=lambda: (loop.run_until_complete(start()), loop.run_forever()), daemon=True)
    thread.start()
    assert started.wait(10)
    yield Running(server, ready["udp"], ready["tcp"], ready["doq"], signed.ds().to_text(), cert, loop)
    asyncio.run_coroutine_threadsafe(server.close(), loop).result(5)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(5)


def run_tool(*cmd: str) -> str:
    import subprocess

    if shutil.which(cmd[0]) is None:
        pytest.skip(f"{cmd[0]} not installed (apt: {'knot-dnsutils' if cmd[0] == 'kdig' else 'bind9-dnsutils'})")
    out = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return out.stdout + out.stderr


def test_dig_udp_and_tcp(running: Running) -> None:
    out = run_tool("dig", "@127.0.0.1", "-p", str(running.udp), "+dnssec", "+norec", "www.tc.example.", "A")
    assert "status: NOERROR" in out and "192.0.2.1" in out and "RRSIG" in out and " aa" in out
    out = run_tool("dig", "@127.0.0.1", "-p", str(running.tcp), "+tcp", "nope.tc.example.", "A")
    assert "status: NXDOMAIN" in out


def test_kdig_sees_correct_answers_from_the_answer_table(running: Running) -> None:
    table = running.server.fast.__self__  # type: ignore[union-attr]  # the bound AnswerTable.lookup
    hits = table.stats.hits
    udp = ("kdig", "@127.0.0.1", "-p", str(running.udp), "+norec")
    def flags(out: str) -> list[str]:
        return out.split("Flags:", 1)[1].split(";", 1)[0].split()

    out = run_tool(*udp, "+dnssec", "www.tc.example.", "A")
    assert "NOERROR" in out and "192.0.2.1" in out and "192.0.2.2" in out and flags(out) == ["qr", "aa"], out
    assert re.search(r"RRSIG\s+A 15 3 300", out) and "flags: do" in out, out
    out = run_tool(*udp, "+noedns", "WwW.Tc.ExAmPlE.", "AAAA")
    assert "NOERROR" in out and "2001:db8::1" in out and "EDNS" not in out, out
    out = run_tool(*udp, "+dnssec", "nothing.tc.example.", "TXT")
    assert "NXDOMAIN" in out and "NSEC" in out and "SOA" in out, out
    out = run_tool(*udp, "+dnssec", "+bufsize=512", "+ignore", "big.tc.example.", "TXT")  # the table declines: TC
    assert "tc" in flags(out), out
    assert table.stats.hits >= hits + 3


def test_dig_truncation_falls_back_to_tcp(running: Running) -> None:
    # UDP answer exceeds 1232 bytes: TC=1, and dig retries over TCP by itself
    out = run_tool("dig", "@127.0.0.1", "-p", str(running.udp), "+dnssec", "big.tc.example.", "TXT")
    assert "Truncated, retrying in TCP mode" in out and "status: NOERROR" in out and "11yyy" in out


def test_kdig_udp_tcp_and_quic(running: Running) -> None:
    out = run_tool("kdig", "@127.0.0.1", "-p", str(running.udp), "+dnssec", "mail.tc.example.", "A")
    assert "NOERROR" in out and "192.0.2.25" in out
    out = run_tool("kdig", "@127.0.0.1", "-p", str(running.tcp), "+tcp", "tc.example.", "MX")
    assert "NOERROR" in out and "mail.tc.example." in out and "(TCP)" in out
    tls = (f"+tls-ca={running.cert}", "+tls-hostname=localhost")  # a verified session; +quic comes after
    out = run_tool("kdig", "@127.0.0.1", "-p", str(running.doq), *tls, "+quic", "www.tc.example.", "AAAA")
    assert "QUIC session" in out and "2001:db8::1" in out and "NOERROR" in out, out
    assert running.server.counters.doq_queries >= 1


def test_aioquic_client_several_queries_on_one_connection(running: Running) -> None:
    async def go() -> list[dns.message.Message]:
        async with doq_connection("127.0.0.1", running.doq) as conn:
            replies = await asyncio.gather(*(doq_query(conn, dns.message.make_query(n, "A").to_wire())
                                             for n in ("www.tc.example.", "mail.tc.example.", "zz.tc.example.")))
        return [dns.message.from_wire(r) for r in replies]

    replies = running.call(go())
    assert isinstance(replies, list)
    assert [r.rcode() for r in replies] == [dns.rcode.NOERROR, dns.rcode.NOERROR, dns.rcode.NXDOMAIN]
    assert all(r.id == 0 for r in replies)  # RFC 9250: message ID 0 on DoQ


def test_delv_fully_validates_through_listener(running: Running, tmp_path: Path) -> None:
    lines = []
    for line in running.ds_text.splitlines():
        name, _ttl, _cls, _t, tag, alg, dtype, digest = line.split()
        lines.append(f'  {name} static-ds {tag} {alg} {dtype} "{digest.upper()}";')
    anchors = tmp_path / "anchors.conf"
    anchors.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    out = run_tool("delv", "@127.0.0.1", "-p", str(running.udp), "-a", str(anchors), "+root=tc.example.",
                   "alias.tc.example.", "A")
    assert "fully validated" in out and "192.0.2.1" in out, out


def test_hostile_input_is_counted_and_survived(running: Running) -> None:
    c = running.server.counters
    before = (c.malformed, c.oversize)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        for junk in (b"", b"\x01", b"\xff" * 11, b"\x12\x34" + b"\x00\x00" + b"\xff" * 40, b"\0" * 5000):
            s.sendto(junk, ("127.0.0.1", running.udp))
    with socket.create_connection(("127.0.0.1", running.tcp)) as s:  # length prefix beyond any query
        s.sendall(b"\xff\xff" + b"x" * 100)
        s.settimeout(5)
        assert s.recv(10) == b""  # connection dropped
    with socket.create_connection(("127.0.0.1", running.tcp)) as s:  # truncated message, then silence
        s.sendall(b"\x00\x40abc")
    wire = dns.message.make_query("www.tc.example.", "A").to_wire()
    deadline = time.time() + 5
    while (c.malformed, c.oversize) < (before[0] + 3, before[1] + 2) and time.time() < deadline:
        time.sleep(0.05)
    assert c.malformed >= before[0] + 3 and c.oversize >= before[1] + 2
    ok = running.call(udp_exchange("127.0.0.1", running.udp, wire, 2.0))  # still serving
    assert isinstance(ok, bytes) and dns.message.from_wire(ok).rcode() == dns.rcode.NOERROR
    ok = running.call(tcp_exchange("127.0.0.1", running.tcp, wire, 2.0))
    assert isinstance(ok, bytes) and dns.message.from_wire(ok).rcode() == dns.rcode.NOERROR


def test_rrl_limits_a_flooding_client() -> None:
    zone = make_zone()
    auth = Authority()
    auth.load(zone, sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), int(time.time())))

    async def go() -> tuple[int, int, DNSServer]:
        # a frozen clock: no refill during the test, so the counts are exact
        server = DNSServer(authority_handler(auth), rrl=ResponseRateLimiter(rate=5, slip=2), clock=lambda: 0.0)
        _, port = await server.start_udp("127.0.0.1", 0)
        wire = dns.message.make_query("www.tc.example.", "A").to_wire()
        full = tc = 0
        for _ in range(40):
            try:
                reply = dns.message.from_wire(await udp_exchange("127.0.0.1", port, wire, 0.1))
            except TimeoutError:
                continue
            if reply.flags & dns.flags.TC:
                tc += 1
            else:
                full += 1
        await server.close()
        return full, tc, server

    full, tc, server = asyncio.run(go())
    assert (full, tc) == (5, 17)  # a burst of 5, then every 2nd limited reply slips (TC=1)
    assert server.counters.rrl_dropped == 18 and server.counters.rrl_slipped == 17


def test_port_zero_binds_udp_and_tcp_on_one_port_even_when_tcp_finds_it_taken() -> None:
    """The first port the kernel gives UDP is taken for TCP by another program: both move to a new port."""
    import socket as socketmod

    from reference_node.listen import ListenError

    server = DNSServer(lambda wire, client, transport: b"")
    squatters: list[socketmod.socket] = []
    real_start_tcp = server.start_tcp

    async def start_tcp_after_a_squatter(host: str, port: int) -> tuple[str, int]:
        if not squatters:  # someone else listens on TCP at exactly this port
            squatter = socketmod.socket(socketmod.AF_INET, socketmod.SOCK_STREAM)
            squatter.bind((host, port))
            squatter.listen(1)
            squatters.append(squatter)
        return await real_start_tcp(host, port)

    server.start_tcp = start_tcp_after_a_squatter  # type: ignore[method-assign]

    async def run() -> tuple[tuple[str, int], tuple[str, int], int]:
        udp, tcp = await server.start_udp_tcp("127.0.0.1", 0)
        open_udp = len(server._udp_socks) + len(server._udp)
        with pytest.raises(ListenError, match=r"cannot listen on 127\.0\.0\.1"):
            await DNSServer(lambda wire, client, transport: b"").start_udp_tcp("127.0.0.1", tcp[1])  # a fixed port
        await server.close()
        return udp, tcp, open_udp

    udp, tcp, open_udp = asyncio.run(run())
    taken = squatters[0].getsockname()[1]
    squatters[0].close()
    assert udp[1] == tcp[1] != taken
    assert open_udp == 1  # the UDP socket of the abandoned port was closed


def test_doq_garbage_with_a_valid_length_is_a_protocol_error_on_that_stream(running: Running) -> None:
    """RFC 9250 section 4.3: what is not a DNS query gets DOQ_PROTOCOL_ERROR (0x2), not DOQ_INTERNAL_ERROR;
    the connection goes on serving."""
    from aioquic.asyncio.client import connect
    from aioquic.asyncio.protocol import QuicConnectionProtocol
    from aioquic.quic.events import QuicEvent, StreamReset

    from reference_node.dns.client import doq_configuration

    class Recorder(QuicConnectionProtocol):
        resets: dict[int, int]

        def quic_event_received(self, event: QuicEvent) -> None:
            if isinstance(event, StreamReset):
                self.resets[event.stream_id] = event.error_code
            super().quic_event_received(event)

    async def go() -> tuple[dict[int, int], bytes]:
        async with connect("127.0.0.1", running.doq, configuration=doq_configuration(None, None),
                           create_protocol=Recorder) as conn:
            assert isinstance(conn, Recorder)
            conn.resets = {}
            for body in (b"\0\0" + b"\xff" * 18, b"\0\0\x01\x02\x03"):  # a response's QR bit; no full header
                sid = conn._quic.get_next_available_stream_id()
                conn._quic.send_stream_data(sid, len(body).to_bytes(2, "big") + body, end_stream=True)
            conn.transmit()
            for _ in range(100):
                if len(conn.resets) == 2:
                    break
                await asyncio.sleep(0.02)
            return conn.resets, await doq_query(conn, dns.message.make_query("www.tc.example.", "A").to_wire())

    before = running.server.counters.doq_protocol_errors
    result = running.call(go())
    assert isinstance(result, tuple)
    resets, answer = result
    assert sorted(resets.values()) == [DOQ_PROTOCOL_ERROR, DOQ_PROTOCOL_ERROR], resets
    assert running.server.counters.doq_protocol_errors == before + 2
    assert dns.message.from_wire(answer).rcode() == dns.rcode.NOERROR


def test_rrl_exempts_clients_with_a_valid_server_cookie() -> None:
    """Knot and BIND let a client that returns our server cookie through RRL: it has shown it is at its
    source address. The same address without a cookie, or with a forged one, is still limited."""
    import os

    import dns.edns

    from reference_node.dns.server import cookie_exemption
    from trustchain.dns.edns_options import ServerIdentity

    zone = make_zone()
    auth = Authority(identity=ServerIdentity(cookie_secret=os.urandom(32)))
    auth.load(zone, sign_zone(zone, KeySet.initial(seed("ksk"), seed("zsk")), int(time.time())))
    client_cookie = b"\x11" * 8

    def query(server_cookie: bytes | None) -> bytes:
        options = [] if server_cookie is None else [dns.edns.CookieOption(client_cookie, server_cookie)]
        return dns.message.make_query("www.tc.example.", "A", use_edns=0, options=options).to_wire()

    async def burst(port: int, wire: bytes, n: int) -> tuple[int, int]:
        full = tc = 0
        for _ in range(n):
            try:
                reply = dns.message.from_wire(await udp_exchange("127.0.0.1", port, wire, 0.1))
            except TimeoutError:
                continue
            tc += bool(reply.flags & dns.flags.TC)
            full += not reply.flags & dns.flags.TC
        return full, tc

    async def go() -> tuple[list[tuple[int, int]], DNSServer]:
        server = DNSServer(authority_handler(auth), rrl=ResponseRateLimiter(rate=5, slip=2), clock=lambda: 0.0,
                           rrl_exempt=cookie_exemption(auth))
        _, port = await server.start_udp("127.0.0.1", 0)
        first = dns.message.from_wire(await udp_exchange("127.0.0.1", port, query(b""), 1.0))  # learn the cookie
        (cookie,) = [o for o in first.options if isinstance(o, dns.edns.CookieOption)]
        assert len(cookie.server) == 16
        results = [
            await burst(port, query(bytes(cookie.server)), 30),  # valid cookie: never limited
            await burst(port, query(None), 20),  # the same address without one: 4 tokens left
            await burst(port, query(bytes(cookie.server[:8]) + b"\0" * 8), 10),  # forged: limited
            await burst(port, query(bytes(cookie.server)), 10),  # and the valid one still passes
        ]
        await server.close()
        return results, server

    results, server = asyncio.run(go())
    assert results == [(30, 0), (4, 8), (0, 5), (10, 0)]
    assert server.counters.rrl_exempt == 40
    assert server.counters.rrl_slipped == 13 and server.counters.rrl_dropped == 13
