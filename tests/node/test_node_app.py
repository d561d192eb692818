"""The combined TrustChain application: routing, the DNS view the CA reads, snapshot determinism."""

from __future__ import annotations

import hashlib

from reference_node.cluster import run_dkg
from reference_node.genesis import Genesis
from trustchain.app import kvstore
from trustchain.app import trustchain as tcapp
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import issuance
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as ctapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate

T0 = 1_750_000_000_000_000
_, PUBLIC = run_dkg(4, 3, b"test")
GENESIS = Genesis("t", "trustchain.example", PUBLIC, "Root", PUBLIC, "Issuing",
                  {"ocsp": "http://o/", "root_crl": "http://c/r", "issuing_crl": "http://c/i",
                   "root_issuer": "http://i/r", "issuing_issuer": "http://i/i"}, b"\x07" * 32, "example/log", ())


def _app(i: int) -> tcapp.TrustChainApplication:
    signer = Ed25519Signer(hashlib.sha256(b"%d" % i).digest())
    return tcapp.TrustChainApplication(GENESIS.ca_policy(), GENESIS.dns_master_seed, signer, f"v{i}", "example/log")


def _ops() -> list[Operation]:
    update = ZoneUpdate("example.org.", (AddRecords("_acme-challenge.www.example.org.", "TXT", 300, ('"abc"',)),))
    payloads = [
        tcapp.route("dns", dnsapp.create_command("example.org.", primary_ns="ns1.example.org.",
                                                 admin="h.example.org.", nameservers=["ns1.example.org."])),
        tcapp.route("dns", dnsapp.update_command(update)),
        tcapp.route("kv", kvstore.put(b"a", b"1")),
        tcapp.route("ca", issuance.challenge_command(["www.example.org"])),
        tcapp.route("ct", ctapp.add_chain(b"\x30\x03\x02\x01\x01")),
        b"garbage",
    ]
    return [Operation(b"\xaa" * 32, i + 1, p) for i, p in enumerate(payloads)]


def test_routing_and_results() -> None:
    app = _app(0)
    results = app.execute(_ops(), ExecutionContext(1, T0))
    created, updated = dnsapp.decode_result(results[0]), dnsapp.decode_result(results[1])
    assert (created.op, created.origin, created.serial) == (dnsapp.OP_CREATE, "example.org.", 1) and created.ok
    assert (updated.status, updated.op, updated.serial) == (dnsapp.STATUS_OK, dnsapp.OP_UPDATE, 2)
    assert kvstore.decode_result(results[2]) == kvstore.KVResult(kvstore.STATUS_OK, size=1)
    assert results[3].startswith(b"CHALLENGE")
    assert ctapp.decode_result(results[4]).status == ctapp.STATUS_OK
    assert results[5].startswith(b"ERR target")
    assert app.ca.lookup.txt("_acme-challenge.www.example.org") == ["abc"]
    assert app.ca.lookup.txt("nothing.example.com") == []


def test_snapshot_is_deterministic_and_restores() -> None:
    a, b = _app(0), _app(1)  # different validators (own CT keys), same replicated state
    for app in (a, b):
        app.execute(_ops(), ExecutionContext(1, T0))
    assert a.snapshot() == b.snapshot()
    c = _app(2)
    c.restore(a.snapshot())
    assert c.snapshot() == a.snapshot() and c.kv.data == {b"a": b"1"} and c.ct.size == 1
    assert c.ca.lookup.txt("_acme-challenge.www.example.org") == ["abc"]


def test_consecutive_dns_operations_are_signed_once_with_the_same_result() -> None:
    """The router hands a run of DNS operations to the DNS application together (zones are re-signed once per
    run, not once per update); results and replicated state equal executing them one at a time."""
    updates = [ZoneUpdate("example.org.", (AddRecords(f"h{k}.example.org.", "A", 300, (f"192.0.2.{k}",)),))
               for k in range(1, 6)]
    payloads = [tcapp.route("dns", dnsapp.create_command("example.org.", primary_ns="ns1.example.org.",
                                                         admin="h.example.org.", nameservers=["ns1.example.org."])),
                *[tcapp.route("dns", dnsapp.update_command(u)) for u in updates],
                tcapp.route("ca", issuance.challenge_command(["h1.example.org"]))]
    ops = [Operation(b"\xaa" * 32, i + 1, p) for i, p in enumerate(payloads)]
    together, one_by_one = _app(0), _app(1)
    signs: list[int] = []
    original = together.dns._sign

    def counting(now: int, changed: set) -> None:  # type: ignore[type-arg]
        signs.append(len(changed))
        original(now, changed)

    together.dns._sign = counting  # type: ignore[method-assign]
    results = together.execute(ops, ExecutionContext(1, T0))
    assert signs == [1]  # one signing pass for the six DNS operations, before the CA operation read the zone
    expected = [one_by_one.execute([op], ExecutionContext(1, T0))[0] for op in ops]
    assert results == expected and all(dnsapp.decode_result(r).status == dnsapp.STATUS_OK for r in results[:6])
    assert together.snapshot() == one_by_one.snapshot()
