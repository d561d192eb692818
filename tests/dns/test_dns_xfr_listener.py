"""AXFR/IXFR on the node's TCP and DoQ listeners and NOTIFY, without a cluster: a local DNSApplication
plays the replicated zones; requests come from dnspython's client (`dns.query.inbound_xfr`), kdig +quic
and our aioquic client, each checking every message's TSIG. Unsigned, wrongly signed and ungranted
requests are refused and get no records, over TCP and over QUIC alike."""

from __future__ import annotations

import asyncio
import base64
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.name
import dns.opcode
import dns.query
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.tsig
import dns.tsigkeyring
import dns.versioned
import dns.xfr
import dns.zone
import pytest
from dns_testutil import seed
from tls_testutil import self_signed

from reference_node.dns.client import doq_connection
from reference_node.dns.server import DNSServer
from reference_node.dns.tsig import Keyring, add_key, keyring_path
from reference_node.dns.xfr import ZoneTransfers, is_transfer
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import ZonePolicy
from trustchain.dns.app import DNSApplication, allow_transfer_command, create_command, update_command
from trustchain.dns.zone import AddRecords, ZoneUpdate

ZONE, OTHER = "alice.example.", "bob.example."
ALICE = b"A" * 32
SECRET, WRONG = b"s" * 32, b"w" * 32
KEY, UNGRANTED, BOBS = "xfr.alice.example.", "other.alice.example.", "xfr.bob.example."


class Served:
    """A DNS application on a TCP listener with transfers, in a thread of its own."""

    def __init__(self, tmp: Path, notify_port: int) -> None:
        self.app = DNSApplication(seed("m"), zone_policy=ZonePolicy(lambda n: False, ("example",)))
        path = keyring_path(tmp)
        for name, zone in ((KEY, ZONE), (UNGRANTED, ZONE), (BOBS, OTHER)):
            add_key(path, name, zone, secret=SECRET)
        self.n = 0
        hosts = ZoneUpdate(ZONE, tuple(AddRecords(f"h{i}", "A", 300, (f"192.0.2.{i}",)) for i in range(50)))
        self.run(create_command(ZONE, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"], records=hosts))
        self.run(create_command(OTHER, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"]))
        self.run(allow_transfer_command(ZONE, KEY, [f"127.0.0.1:{notify_port}"]))
        self.run(allow_transfer_command(OTHER, KEY))  # a key made for alice.example. only
        self.transfers = ZoneTransfers(lambda: self.app, Keyring(path), interval_s=0.05)
        self.loop = asyncio.new_event_loop()
        self.server = DNSServer(lambda wire, client, transport: self.app.answer(wire, int(time.time()), max_udp=None),
                                transfer_handler=self.transfers.handle, is_transfer=is_transfer)
        self.port = self.loop.run_until_complete(self.server.start_tcp("127.0.0.1", 0))[1]
        cert, key = self_signed(tmp)
        self.doq = self.loop.run_until_complete(self.server.start_doq("127.0.0.1", 0, str(cert), str(key)))[1]

    def run(self, payload: bytes) -> None:
        self.n += 1
        result = self.app.execute([Operation(ALICE, self.n, payload)], ExecutionContext(self.n, time.time_ns() // 1000))
        assert b"error" not in result[0][:64], result

    def pump(self, seconds: float) -> None:
        self.loop.run_until_complete(asyncio.sleep(seconds))


@pytest.fixture
def served(tmp_path: Path) -> Iterator[Served]:
    s = Served(tmp_path, 9)
    yield s
    s.loop.run_until_complete(s.transfers.close())
    s.loop.run_until_complete(s.server.close())
    s.loop.close()


def keyring(name: str = KEY, secret: bytes = SECRET) -> dict[dns.name.Name, dns.tsig.Key]:
    return {dns.name.from_text(name): dns.tsig.Key(name, secret, dns.tsig.HMAC_SHA256)}


def transfer(s: Served, zone: str, rdtype: str = "AXFR", *, key: str | None = KEY, secret: bytes = SECRET,
             serial: int | None = None) -> dns.zone.Zone:
    """The zone as dnspython's secondary side builds it (every message's TSIG verified)."""
    target = dns.versioned.Zone(zone, relativize=False)
    query, _ = dns.xfr.make_query(target, serial=serial, use_edns=False,
                                  keyring=keyring(key, secret) if key else None, keyalgorithm=dns.tsig.HMAC_SHA256)
    if rdtype == "AXFR":
        query = dns.message.make_query(zone, "AXFR", use_edns=0, payload=1232)  # EDNS sizes are for UDP only
        if key:
            query.use_tsig(keyring(key, secret), algorithm=dns.tsig.HMAC_SHA256)

    def pull() -> None:
        dns.query.inbound_xfr("127.0.0.1", target, query, port=s.port, timeout=10)

    s.loop.run_until_complete(s.loop.run_in_executor(None, pull))
    return target


def raw_rcode(s: Served, wire: bytes) -> tuple[int, int]:
    """(rcode, records in the answer) of the first message, read without checking any TSIG."""
    async def ask() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", s.port)
        writer.write(len(wire).to_bytes(2, "big") + wire)
        length = int.from_bytes(await reader.readexactly(2), "big")
        body = await reader.readexactly(length)
        writer.close()
        return body

    response = dns.message.from_wire(s.loop.run_until_complete(ask()), keyring=False)
    return response.rcode(), sum(len(r) for r in response.answer)


def content(zone: dns.zone.Zone) -> set[tuple[str, int, str]]:
    return {(name.to_text(), rdataset.ttl, f"{rdataset.rdtype!r} {rdata.to_text()}")
            for name, rdataset in zone.iterate_rdatasets() for rdata in rdataset}


def names(zone: dns.zone.Zone) -> set[str]:
    return {n.to_text() for n in zone.nodes}


def test_is_transfer_reads_only_axfr_and_ixfr_queries() -> None:
    assert is_transfer(dns.message.make_query(ZONE, "AXFR").to_wire())
    assert is_transfer(dns.message.make_query(ZONE, "IXFR").to_wire())
    assert not is_transfer(dns.message.make_query(ZONE, "SOA").to_wire())
    assert not is_transfer(b"\0" * 11) and not is_transfer(b"\0\0\x80" + b"\0" * 20)


def test_a_granted_key_transfers_the_signed_zone_by_axfr_then_ixfr(served: Served) -> None:
    zone = transfer(served, ZONE)
    assert f"h49.{ZONE}" in names(zone)
    apex = zone.get_node(ZONE)
    assert apex is not None and {r.rdtype for r in apex.rdatasets} >= {dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG,
                                                                      dns.rdatatype.NSEC, dns.rdatatype.SOA}
    before = served.app.zones[dns.name.from_text(ZONE)].zone.serial
    served.run(update_command(ZoneUpdate(ZONE, (AddRecords("new", "TXT", 60, ('"hello"',)),))))
    sent_before = served.transfers.counters.ixfr
    query, _ = dns.xfr.make_query(zone, keyring=keyring(), keyalgorithm=dns.tsig.HMAC_SHA256)
    assert query.question[0].rdtype == dns.rdatatype.IXFR and query.authority[0][0].serial == before
    served.loop.run_until_complete(served.loop.run_in_executor(
        None, lambda: dns.query.inbound_xfr("127.0.0.1", zone, query, port=served.port, timeout=10)))
    assert served.transfers.counters.ixfr == sent_before + 1
    txt = zone.get_rdataset(f"new.{ZONE}", "TXT")
    assert txt is not None and [r.to_text() for r in txt] == ['"hello"']
    assert zone.get_rdataset(f"new.{ZONE}", "RRSIG", "TXT") is not None
    full = transfer(served, ZONE)  # what AXFR says now is what IXFR built
    assert content(full) == content(zone)


REFUSALS = [
    (ZONE, None, SECRET, dns.rcode.REFUSED),  # unsigned
    (ZONE, KEY, WRONG, dns.rcode.NOTAUTH),  # wrong secret
    (ZONE, "unknown.alice.example.", SECRET, dns.rcode.NOTAUTH),
    (ZONE, UNGRANTED, SECRET, dns.rcode.REFUSED),  # a key of this node for the zone, but not granted by the owner
    (OTHER, KEY, SECRET, dns.rcode.REFUSED),  # granted by bob.example.'s owner, but the key is for alice.example.
    (OTHER, BOBS, SECRET, dns.rcode.REFUSED),  # bob's own key, which bob's owner did not grant
    ("carol.example.", KEY, SECRET, dns.rcode.NOTAUTH),  # not served here
]


def _request(zone: str, rdtype: str, key: str | None, secret: bytes, msg_id: int | None = None) -> bytes:
    query = dns.message.make_query(zone, rdtype, id=msg_id)
    if rdtype == "IXFR":
        query.authority.append(dns.rrset.from_text(zone, 0, "IN", "SOA", f"ns1.{zone} h.{zone} 1 1 1 1 1"))
    if key:
        query.use_tsig(keyring(key, secret), algorithm=dns.tsig.HMAC_SHA256)
    return query.to_wire()


@pytest.mark.parametrize(("zone", "key", "secret", "rcode"), REFUSALS)
@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_refused_transfers_leak_nothing(served: Served, zone: str, key: str | None, secret: bytes, rcode: int,
                                        rdtype: str) -> None:
    assert raw_rcode(served, _request(zone, rdtype, key, secret)) == (rcode, 0)
    assert served.transfers.counters.axfr == served.transfers.counters.ixfr == 0


def doq_messages(s: Served, wire: bytes) -> list[bytes]:
    """Every message on the request's DoQ stream (RFC 9250 4.2: each with its 2-byte length), to its end."""
    async def ask() -> bytes:
        async with doq_connection("127.0.0.1", s.doq) as protocol:
            reader, writer = await protocol.create_stream()
            writer.write(len(wire).to_bytes(2, "big") + wire)
            writer.write_eof()
            return await asyncio.wait_for(reader.read(), 10)

    data = s.loop.run_until_complete(ask())
    out = []
    while data:
        length = int.from_bytes(data[:2], "big")
        assert len(data) >= 2 + length
        out.append(data[2:2 + length])
        data = data[2 + length:]
    return out


@pytest.mark.parametrize(("zone", "key", "secret", "rcode"), REFUSALS)
@pytest.mark.parametrize("rdtype", ["AXFR", "IXFR"])
def test_refused_transfers_over_doq_leak_nothing(served: Served, zone: str, key: str | None, secret: bytes,
                                                 rcode: int, rdtype: str) -> None:
    (only,) = doq_messages(served, _request(zone, rdtype, key, secret, msg_id=0))  # RFC 9250: ID 0
    response = dns.message.from_wire(only, keyring=False)
    assert (response.rcode(), sum(len(r) for r in response.answer)) == (rcode, 0)
    assert served.transfers.counters.axfr == served.transfers.counters.ixfr == 0


def test_axfr_over_doq_every_message_signed(served: Served) -> None:
    query = dns.message.make_query(ZONE, "AXFR", id=0)  # RFC 9250 4.2.1: message ID 0
    query.use_tsig(keyring(), algorithm=dns.tsig.HMAC_SHA256)
    messages = doq_messages(served, query.to_wire())
    assert len(messages) >= 2  # 50 signed hosts do not fit one message
    ctx, records = None, []
    for i, wire in enumerate(messages):  # the TSIG chain of RFC 8945 5.3.1, checked by dnspython
        response = dns.message.from_wire(wire, keyring=keyring(), request_mac=query.mac if i == 0 else b"",
                                         tsig_ctx=ctx, multi=True)
        ctx = response.tsig_ctx
        assert response.rcode() == dns.rcode.NOERROR and response.id == 0
        records += [r for rrset in response.answer for r in rrset.to_text().splitlines()]
    assert records[0].split()[3] == "SOA" and records[-1].split()[3] == "SOA"
    assert f"h49.{ZONE} 300 IN A 192.0.2.49" in records
    assert served.transfers.counters.axfr == 1 and served.server.counters.transfers == 1


def kdig(s: Served, *args: str) -> str:
    if shutil.which("kdig") is None:
        pytest.skip("kdig not installed (apt: knot-dnsutils)")
    cmd = ["kdig", "@127.0.0.1", "-p", str(s.doq), "+quic", *args]
    out = s.loop.run_until_complete(s.loop.run_in_executor(
        None, lambda: subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)))
    return out.stdout + out.stderr


def test_kdig_axfr_over_quic_with_tsig(served: Served) -> None:
    out = kdig(served, "-y", f"hmac-sha256:{KEY}:{base64.b64encode(SECRET).decode()}", ZONE, "AXFR")
    assert ";; ERROR" not in out and f"h49.{ZONE}" in out and "192.0.2.49" in out, out
    assert served.transfers.counters.axfr == 1
    refused = kdig(served, ZONE, "AXFR")  # no TSIG: refused, no records
    assert "REFUSED" in refused and "192.0.2.49" not in refused, refused
    wrong = kdig(served, "-y", f"hmac-sha256:{KEY}:{base64.b64encode(WRONG).decode()}", ZONE, "AXFR")
    assert "NOTAUTH" in wrong and "192.0.2.49" not in wrong, wrong
    assert served.transfers.counters.axfr == 1


def test_notify_goes_to_the_granted_address_signed_and_again_on_each_new_serial(served: Served) -> None:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind(("127.0.0.1", 0))
    sock.setblocking(False)
    port = sock.getsockname()[1]
    served.run(allow_transfer_command(ZONE, KEY, [f"127.0.0.1:{port}"]))
    received: list[dns.message.Message] = []

    def on_readable() -> None:
        wire, addr = sock.recvfrom(4096)
        notify = dns.message.from_wire(wire, keyring=keyring())  # raises unless signed with the key
        received.append(notify)
        response = dns.message.make_response(notify)
        sock.sendto(response.to_wire(), addr)

    served.loop.add_reader(sock.fileno(), on_readable)
    async def start() -> None:
        served.transfers.start()

    served.loop.run_until_complete(start())
    served.pump(0.5)
    serial = served.app.zones[dns.name.from_text(ZONE)].zone.serial
    assert [(m.opcode(), m.question[0].name.to_text(), m.answer[0][0].serial) for m in received] == [
        (dns.opcode.NOTIFY, ZONE, serial)]
    served.run(update_command(ZoneUpdate(ZONE, (AddRecords("n", "TXT", 60, ('"x"',)),))))
    served.pump(0.5)
    assert [m.answer[0][0].serial for m in received] == [serial, serial + 1]
    assert served.transfers.counters.notifies_answered == 2
    served.loop.remove_reader(sock.fileno())
    sock.close()
