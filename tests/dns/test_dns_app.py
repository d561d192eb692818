"""DNSApplication: the replicated zones behave identically on every replica, reject bad commands
without side effects, re-sign with consensus time, and survive snapshot/restore byte for byte."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from dns_testutil import NOW, seed
from hypothesis import given, settings
from hypothesis import strategies as st

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.dns.app import DNSApplication, encode_create, encode_tick, encode_update
from trustchain.dns.dnssec import SigningPolicy
from trustchain.dns.validator import Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, DeleteRRset, ReplaceRRset, ZoneUpdate

ORIGIN = "app.example."
POLICY = SigningPolicy(validity=4000, refresh=1000, skew=100)


def ops(*payloads: bytes) -> list[Operation]:
    return [Operation(b"client", i, p) for i, p in enumerate(payloads)]


def ctx(seq: int, t: int = NOW) -> ExecutionContext:
    return ExecutionContext(seq, t * 1_000_000)


def fresh() -> DNSApplication:
    app = DNSApplication(seed("master"), POLICY)
    create = encode_create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"])
    www = encode_update(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),
                                            AddRecords("ns1", "A", 300, ("192.0.2.53",)))))
    assert app.execute(ops(create, www), ctx(1)) == [b"OK created app.example.", b"OK serial=2"]
    return app


def raw(app: DNSApplication, name: str, rdtype: str, now: int = NOW) -> bytes:
    q = dns.message.make_query(name, rdtype, want_dnssec=True)
    q.id = 7
    return app.answer(q.to_wire(), now, max_udp=None)


def query(app: DNSApplication, name: str, rdtype: str, now: int = NOW) -> dns.message.Message:
    return dns.message.from_wire(raw(app, name, rdtype, now))


def validate(app: DNSApplication, response: dns.message.Message, now: int = NOW) -> bool:
    keys = query(app, ORIGIN, "DNSKEY", now)
    dnskey = keys.find_rrset(keys.answer, dns.name.from_text(ORIGIN), 1, dns.rdatatype.DNSKEY)
    sigs = keys.find_rrset(keys.answer, dns.name.from_text(ORIGIN), 1, dns.rdatatype.RRSIG, dns.rdatatype.DNSKEY)
    return Validator(app.ds(ORIGIN)).validate(response, [ZoneKeys(dnskey, sigs)], now).secure


def test_updates_are_served_signed_and_validate() -> None:
    app = fresh()
    response = query(app, "www.app.example.", "A")
    assert response.rcode() == dns.rcode.NOERROR
    assert "192.0.2.1" in response.answer[0].to_text()
    assert validate(app, response)
    nx = query(app, "nope.app.example.", "A")
    assert nx.rcode() == dns.rcode.NXDOMAIN and validate(app, nx)


def test_bad_commands_are_rejected_with_reason_and_change_nothing() -> None:
    app = fresh()
    before = (app.digest(), app.snapshot())
    bad_ip = encode_update(ZoneUpdate(ORIGIN, (ReplaceRRset("www", "A", 300, ("999.1.1.1",)),)))
    partial = encode_update(ZoneUpdate(ORIGIN, (AddRecords("ok", "A", 300, ("192.0.2.9",)),
                                                AddRecords("www", "CNAME", 300, ("ok",)))))
    results = app.execute(ops(bad_ip, partial, b"UPDATE {not json", b"RM -rf", b"\xff" * 40,
                              encode_update(ZoneUpdate("other.example.", ())),
                              encode_create(ORIGIN, primary_ns="ns1", admin="h", nameservers=["ns1"])), ctx(2))
    assert results[0] == b"ERR ops[0].values[0]: bad IP address '999.1.1.1': not an IPv4 address"
    assert results[1].startswith(b"ERR ops[1].type: CNAME at www.app.example.")
    assert results[2].startswith(b"ERR update: not valid UTF-8 JSON")
    assert results[3] == b"ERR command: must start with CREATE, UPDATE or TICK"
    assert results[4] == b"ERR command: must start with CREATE, UPDATE or TICK"
    assert results[5] == b"ERR update.origin: no such zone other.example."
    assert results[6] == b"ERR create.origin: zone app.example. already exists"
    assert app.rejected == 7
    assert app.digest() == before[0]
    assert query(app, "ok.app.example.", "A").rcode() == dns.rcode.NXDOMAIN  # the batch was atomic


def test_replicas_agree_byte_for_byte() -> None:
    a, b = fresh(), fresh()
    upd = encode_update(ZoneUpdate(ORIGIN, (ReplaceRRset("www", "A", 60, ("192.0.2.7", "192.0.2.8")),
                                            AddRecords("mail", "TXT", 60, ('"v=spf1 -all"',)),
                                            DeleteRRset("nothere", "A"))))
    assert a.execute(ops(upd), ctx(2, NOW + 5)) == b.execute(ops(upd), ctx(2, NOW + 5))
    assert a.snapshot() == b.snapshot() and a.digest() == b.digest()
    for name, rdtype in (("www.app.example.", "A"), ("mail.app.example.", "TXT"), ("x.app.example.", "A"),
                         (ORIGIN, "DNSKEY"), (ORIGIN, "SOA")):
        assert raw(a, name, rdtype) == raw(b, name, rdtype)


def test_snapshot_restore_reproduces_signatures() -> None:
    app = fresh()
    restored = DNSApplication(seed("master"), POLICY)
    restored.restore(app.snapshot())
    assert restored.snapshot() == app.snapshot()
    for name, rdtype in (("www.app.example.", "A"), ("zzz.app.example.", "A"), (ORIGIN, "DNSKEY")):
        assert raw(restored, name, rdtype) == raw(app, name, rdtype)


def test_resigns_automatically_in_a_new_epoch() -> None:
    app = fresh()
    old = query(app, "www.app.example.", "A").answer[1][0]
    later = NOW + 3 * POLICY.refresh
    assert app.execute(ops(encode_tick()), ctx(2, later)) == [b"OK tick"]
    assert app.resigns == 1
    response = query(app, "www.app.example.", "A", later)
    new = response.answer[1][0]
    assert new.inception > old.inception and new.expiration > old.expiration
    assert validate(app, response, later)
    # without the tick the old signatures would be dead by now
    stale = fresh()
    assert query(stale, "www.app.example.", "A", NOW + 2 * POLICY.validity).rcode() == dns.rcode.SERVFAIL


@settings(max_examples=60, deadline=None)
@given(st.lists(st.binary(max_size=200), max_size=5))
def test_garbage_never_raises(payloads: list[bytes]) -> None:
    app = fresh()
    digest = app.digest()
    results = app.execute(ops(*payloads), ctx(3))
    assert len(results) == len(payloads)
    assert all(r.startswith(b"ERR ") or r == b"OK tick" for r in results)
    assert app.digest() == digest
