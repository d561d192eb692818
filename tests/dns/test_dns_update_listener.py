"""The node's dynamic-update handler and the listener routing, without a cluster: a stand-in node orders
each update by executing it on a local DNSApplication. Requests are signed with dnspython's client side;
answers are checked with the client's key."""

from __future__ import annotations

import asyncio
import base64
import time
from pathlib import Path
from types import SimpleNamespace

import dns.asyncquery
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.tsigkeyring
import dns.update
import pytest
from dns_testutil import seed

from reference_node.dns.server import DNSServer
from reference_node.dns.tsig import Keyring, add_key, keyring_path
from reference_node.dns.update import DynamicUpdates
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import ZonePolicy
from trustchain.dns.app import DNSApplication, create_command, delegate_command

ZONE, OTHER = "alice.example.", "bob.example."
ALICE, V0 = b"A" * 32, b"0" * 32
SECRET = b"s" * 32


class StandInNode:
    """What `DynamicUpdates` uses of a Node: the replicated DNS application, the validator account, submit."""

    def __init__(self) -> None:
        self.app = SimpleNamespace(dns=DNSApplication(seed("m"), zone_policy=ZonePolicy(lambda n: False, ("example",)),
                                                      validator_accounts=frozenset({V0})))
        self.account_id = V0
        self.ordered: list[bytes] = []
        for origin in (ZONE, OTHER):
            self.run(ALICE, create_command(origin, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"]))
        self.run(ALICE, delegate_command(ZONE, V0, "k.alice.example.", names=["_acme-challenge.*"], types=["TXT"],
                                         expires_s=int(time.time()) + 3600))
        self.run(ALICE, delegate_command(OTHER, V0, "k.alice.example.", names=["*"], types=["TXT"],
                                         expires_s=int(time.time()) + 3600))

    def run(self, account: bytes, payload: bytes) -> bytes:
        n = len(self.ordered) + 1
        return self.app.dns.execute([Operation(account, n, payload)], ExecutionContext(n, time.time_ns() // 1000))[0]

    async def submit(self, target: str, payload: bytes, timeout_s: float) -> bytes:
        assert target == "dns"
        self.ordered.append(payload)
        return self.run(self.account_id, payload)


@pytest.fixture
def setup(tmp_path: Path) -> tuple[StandInNode, DynamicUpdates]:
    path = keyring_path(tmp_path)
    add_key(path, "k.alice.example.", ZONE, secret=SECRET)
    add_key(path, "nodelegation.alice.example.", ZONE, secret=SECRET)
    node = StandInNode()
    return node, DynamicUpdates(node, Keyring(path))  # type: ignore[arg-type]


def signed(zone: str, keyname: str = "k.alice.example.", secret: bytes = SECRET) -> dns.update.UpdateMessage:
    keyring = dns.tsigkeyring.from_text({keyname: base64.b64encode(secret).decode()})
    return dns.update.UpdateMessage(zone, keyring=keyring, keyalgorithm="hmac-sha256")


def answer(request: dns.message.Message, wire: bytes) -> dns.message.Message:
    """The response, its TSIG verified with the request's key (raises if it is not validly signed)."""
    return dns.message.from_wire(wire, keyring=request.keyring, request_mac=request.mac)


def challenge(a: StandInNode) -> list[str]:
    rrset = a.app.dns.zones[dns.name.from_text(ZONE)].zone.get(
        dns.name.from_text("_acme-challenge.www.alice.example."), dns.rdatatype.TXT)
    return [] if rrset is None else [r.to_text() for r in rrset]


def test_a_signed_update_is_ordered_once_and_answered_signed(setup: tuple[StandInNode, DynamicUpdates]) -> None:
    node, updates = setup
    u = signed(ZONE)
    u.add("_acme-challenge.www", 60, "TXT", '"t"')
    wire = u.to_wire()
    response = answer(u, asyncio.run(updates.handle(wire, "192.0.2.1", "udp")))
    assert response.rcode() == dns.rcode.NOERROR and challenge(node) == ['"t"'] and len(node.ordered) == 1
    again = answer(u, asyncio.run(updates.handle(wire, "192.0.2.1", "udp")))  # retransmitted or replayed
    assert again.rcode() == dns.rcode.NOERROR and len(node.ordered) == 1


@pytest.mark.parametrize(("build", "rcode"), [
    (lambda: dns.update.UpdateMessage(ZONE), dns.rcode.REFUSED),  # unsigned
    (lambda: signed(ZONE, "unknown.alice.example."), dns.rcode.NOTAUTH),
    (lambda: signed(ZONE, secret=b"w" * 32), dns.rcode.NOTAUTH),  # wrong secret
    (lambda: signed(OTHER), dns.rcode.REFUSED),  # the key is for another zone (though delegated there)
    (lambda: signed(ZONE, "nodelegation.alice.example."), dns.rcode.REFUSED),
    (lambda: signed("carol.example."), dns.rcode.NOTAUTH),  # not served here
])
def test_refused_updates_are_not_ordered(setup: tuple[StandInNode, DynamicUpdates], build: object,
                                         rcode: dns.rcode.Rcode) -> None:
    node, updates = setup
    u = build()  # type: ignore[operator]
    u.add("_acme-challenge.www", 60, "TXT", '"t"')
    wire = asyncio.run(updates.handle(u.to_wire(), "192.0.2.1", "tcp"))
    assert dns.message.from_wire(wire, keyring=False).rcode() == rcode
    assert node.ordered == [] and challenge(node) == []


def test_out_of_scope_is_refused_by_the_node_before_ordering(setup: tuple[StandInNode, DynamicUpdates]) -> None:
    node, updates = setup
    u = signed(ZONE)
    u.add("www", 60, "TXT", '"t"')
    assert answer(u, asyncio.run(updates.handle(u.to_wire(), "192.0.2.1", "udp"))).rcode() == dns.rcode.REFUSED
    assert node.ordered == []


def test_the_listener_routes_updates_over_udp_and_tcp(setup: tuple[StandInNode, DynamicUpdates]) -> None:
    node, updates = setup

    async def main() -> tuple[int, int, int]:
        server = DNSServer(lambda wire, client, transport: b"", update_handler=updates.handle)
        host, port = await server.start_udp("127.0.0.1", 0)
        await server.start_tcp(host, port)
        try:
            first, second = signed(ZONE), signed(ZONE)
            first.add("_acme-challenge.www", 60, "TXT", '"udp"')
            second.add("_acme-challenge.www", 60, "TXT", '"tcp"')
            r1 = await dns.asyncquery.udp(first, host, timeout=5, port=port)
            r2 = await dns.asyncquery.tcp(second, host, timeout=5, port=port)
            return r1.rcode(), r2.rcode(), server.counters.updates
        finally:
            await server.close()

    assert asyncio.run(main()) == (dns.rcode.NOERROR, dns.rcode.NOERROR, 2)
    assert sorted(challenge(node)) == ['"tcp"', '"udp"']


def test_a_signed_soa_query_gets_a_signed_authoritative_answer(setup: tuple[StandInNode, DynamicUpdates]) -> None:
    node, updates = setup
    query = dns.message.make_query(ZONE, "SOA")
    query.use_tsig(dns.tsigkeyring.from_text({"k.alice.example.": base64.b64encode(SECRET).decode()}),
                   algorithm="hmac-sha256")
    wire = query.to_wire()
    plain = updates.strip_tsig(wire)
    assert plain is not None
    signed_wire = updates.signed_query(wire, node.app.dns.answer(plain, int(time.time()), max_udp=None), 65535)
    assert signed_wire is not None
    response = answer(query, signed_wire)
    assert response.rcode() == dns.rcode.NOERROR and response.flags & dns.flags.AA
    assert response.get_rrset(response.answer, dns.name.from_text(ZONE), dns.rdataclass.IN, dns.rdatatype.SOA)
    forged = dns.message.make_query(ZONE, "SOA")
    forged.use_tsig(dns.tsigkeyring.from_text({"k.alice.example.": base64.b64encode(b"w" * 32).decode()}),
                    algorithm="hmac-sha256")
    assert updates.signed_query(forged.to_wire(), b"", 65535) is None
