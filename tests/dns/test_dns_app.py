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
from trustchain.dns.app import (
    OP_CREATE,
    OP_TICK,
    OP_UPDATE,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNCHANGED,
    CreateZone,
    DNSApplication,
    DNSCommand,
    DNSResult,
    Tick,
    UpdateZone,
    create_command,
    decode_result,
    tick_command,
    update_command,
)
from trustchain.dns.dnssec import SigningPolicy
from trustchain.dns.validator import Validator, ZoneKeys
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRRset, RecordOp, ReplaceRRset, ZoneUpdate
from trustchain.encoding import decode, encode

ORIGIN = "app.example."
POLICY = SigningPolicy(validity=4000, refresh=1000, skew=100)


def ops(*payloads: bytes) -> list[Operation]:
    return [Operation(b"client", i, p) for i, p in enumerate(payloads)]


def ctx(seq: int, t: int = NOW) -> ExecutionContext:
    return ExecutionContext(seq, t * 1_000_000)


def run(app: DNSApplication, *payloads: bytes, seq: int = 2, t: int = NOW) -> list[DNSResult]:
    return [decode_result(r) for r in app.execute(ops(*payloads), ctx(seq, t))]


def raw_command(op: str, body: bytes) -> bytes:
    return encode(DNSCommand(op, body))


def fresh() -> DNSApplication:
    app = DNSApplication(seed("master"), POLICY)
    create = create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"])
    www = update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),
                                            AddRecords("ns1", "A", 300, ("192.0.2.53",)))))
    assert run(app, create, www, seq=1) == [DNSResult(STATUS_OK, op=OP_CREATE, origin=ORIGIN, serial=1),
                                           DNSResult(STATUS_OK, op=OP_UPDATE, origin=ORIGIN, serial=2)]
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
    bad_ip = update_command(ZoneUpdate(ORIGIN, (ReplaceRRset("www", "A", 300, ("999.1.1.1",)),)))
    partial = update_command(ZoneUpdate(ORIGIN, (AddRecords("ok", "A", 300, ("192.0.2.9",)),
                                                AddRecords("www", "CNAME", 300, ("ok",)))))
    results = run(app, bad_ip, partial, b"UPDATE {not json", b"\xff" * 40,
                  raw_command("delete", b""), raw_command(OP_UPDATE, b"\x00"),
                  update_command(ZoneUpdate("other.example.", ())),
                  create_command(ORIGIN, primary_ns="ns1", admin="h", nameservers=["ns1"]))
    assert all(r.status == STATUS_ERROR and not r.ok for r in results)
    assert results[0].detail == "ops[0].values[0]: bad IP address '999.1.1.1': not an IPv4 address"
    assert results[1].detail.startswith("ops[1].type: CNAME at www.app.example.")
    assert results[2].detail.startswith("command: malformed (") and results[2].op == ""
    assert results[3].detail.startswith("command: malformed (")
    assert results[4].detail == ("op: must be one of create, update, tick, delegate, undelegate, delegated_update, "
                                 "keys, allow_transfer, deny_transfer, got 'delete'")
    assert results[5].detail.startswith("update: malformed (UpdateZone.origin: ") and results[5].op == OP_UPDATE
    assert results[6].detail == "update.origin: no such zone other.example."
    assert results[7].detail == "create.origin: zone app.example. already exists" and results[7].op == OP_CREATE
    assert app.rejected == 8
    assert app.digest() == before[0]
    assert query(app, "ok.app.example.", "A").rcode() == dns.rcode.NXDOMAIN  # the batch was atomic


def test_replicas_agree_byte_for_byte() -> None:
    a, b = fresh(), fresh()
    upd = update_command(ZoneUpdate(ORIGIN, (ReplaceRRset("www", "A", 60, ("192.0.2.7", "192.0.2.8")),
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
    assert run(app, tick_command(), t=later) == [DNSResult(STATUS_OK, op=OP_TICK)]
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
    results = run(app, *payloads, seq=3)
    assert len(results) == len(payloads)
    assert all(r.status == STATUS_ERROR or r == DNSResult(STATUS_OK, op=OP_TICK) for r in results)
    assert app.digest() == digest


def test_each_command_round_trips_through_the_wire() -> None:
    create = CreateZone(ORIGIN, "ns1", "hostmaster", ("ns1", "ns2"), 600)
    update = UpdateZone(ORIGIN, (RecordOp("add", "a", "A", 60, ("192.0.2.1",)),
                                 RecordOp("replace", "b", "TXT", 5, ('"x"',)),
                                 RecordOp("delete_rrset", "c", "MX"), RecordOp("delete_name", "d")))
    for op, body in ((OP_CREATE, create), (OP_UPDATE, update), (OP_TICK, Tick())):
        cmd = decode(DNSCommand, raw_command(op, encode(body)))
        assert cmd.op == op and decode(type(body), cmd.body) == body
    assert decode(DNSCommand, create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1", "ns2"),
                                            ttl=600)) == DNSCommand(OP_CREATE, encode(create))
    zone_update = ZoneUpdate(ORIGIN, (AddRecords("a", "A", 60, ("192.0.2.1",)), ReplaceRRset("b", "TXT", 5, ('"x"',)),
                                      DeleteRRset("c", "MX"), DeleteName("d")))
    assert update_command(zone_update) == raw_command(OP_UPDATE, encode(update))
    assert tick_command() == raw_command(OP_TICK, encode(Tick()))
    result = DNSResult(STATUS_UNCHANGED, "", OP_UPDATE, ORIGIN, 7)
    assert decode_result(encode(result)) == result and result.ok


def test_update_that_changes_nothing_is_unchanged_and_keeps_the_serial() -> None:
    app = fresh()
    again = update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)), DeleteRRset("none", "A"))))
    assert run(app, again) == [DNSResult(STATUS_UNCHANGED, op=OP_UPDATE, origin=ORIGIN, serial=2)]
    assert app.rejected == 0


def test_malformed_command_bodies_name_the_field_and_change_nothing() -> None:
    app = fresh()
    before = app.digest(), sorted(app.zones)
    create = encode(CreateZone("new.example.", "ns1", "h", ("ns1",)))
    cases = {
        raw_command(OP_CREATE, create[:-8]): "create: malformed (CreateZone.algorithm: ",
        raw_command(OP_CREATE, create + b"\x00"): "create: malformed (CreateZone: 1 trailing bytes)",
        raw_command(OP_TICK, b"\x01"): "tick: malformed (Tick: 1 trailing bytes)",
        raw_command(OP_UPDATE, encode(UpdateZone(ORIGIN, (RecordOp("rm", "www"),)))): "ops[0].kind: must be one of",
        raw_command(OP_UPDATE, encode(UpdateZone(ORIGIN, (RecordOp("delete_name", "www", "A"),)))):
            "ops[0].type: not used by delete_name",
        raw_command(OP_UPDATE, encode(UpdateZone("bad..name.", ()))): "update.origin: malformed name",
        create_command("relative", primary_ns="ns1", admin="h", nameservers=["ns1"]):
            "create.origin: must be absolute",
        create_command("new.example.", primary_ns="ns1", admin="h", nameservers=[]): "nameservers: ",
        create_command("new.example.", primary_ns="ns1", admin="h", nameservers=["ns1"], ttl=2**40): "ttl: bad TTL",
    }
    results = run(app, *cases)
    for result, prefix in zip(results, cases.values(), strict=True):
        assert result.status == STATUS_ERROR and result.detail.startswith(prefix), (result, prefix)
    assert app.rejected == len(cases) and (app.digest(), sorted(app.zones)) == before


def test_replicated_changes_keep_in_zone_name_servers_reachable() -> None:
    """As named-checkzone refuses a zone file whose in-zone NS has no address, the replicas refuse a change
    that leaves one without: the error names the NS record, and the zone (digest, snapshot) is unchanged."""
    app = fresh()
    zone = app.zones[dns.name.from_text(ORIGIN)].zone
    before = (app.digest(), zone.serial, zone.to_text())
    no_glue = update_command(ZoneUpdate(ORIGIN, (AddRecords("sub", "NS", 300, ("ns.sub",)),)))
    drop_address = update_command(ZoneUpdate(ORIGIN, (DeleteRRset("ns1", "A"),)))
    drop_name = update_command(ZoneUpdate(ORIGIN, (DeleteName("ns1"),)))
    new_apex_ns = update_command(ZoneUpdate(ORIGIN, (ReplaceRRset("@", "NS", 3600, ("ns2",)),)))
    results = run(app, no_glue, drop_address, drop_name, new_apex_ns)
    assert [r.detail for r in results] == [
        "zone[sub.app.example.]: NS ns.sub.app.example. at sub.app.example. is inside the zone but has no A or "
        "AAAA record (glue): add the address in the same update",
        *["zone[app.example.]: NS ns1.app.example. at app.example. is inside the zone but has no A or AAAA "
          "record (glue): add the address in the same update"] * 2,
        "zone[app.example.]: NS ns2.app.example. at app.example. is inside the zone but has no A or AAAA "
        "record (glue): add the address in the same update",
    ]
    assert all(r.status == STATUS_ERROR for r in results) and app.rejected == 4
    assert (app.digest(), zone.serial, zone.to_text()) == before
    assert query(app, "sub.app.example.", "NS").rcode() == dns.rcode.NXDOMAIN
    with_glue = update_command(ZoneUpdate(ORIGIN, (AddRecords("sub", "NS", 300, ("ns.sub", "ns.elsewhere.example.")),
                                                  AddRecords("ns.sub", "AAAA", 300, ("2001:db8::53",)))))
    moved = update_command(ZoneUpdate(ORIGIN, (ReplaceRRset("@", "NS", 3600, ("ns2",)),
                                              AddRecords("ns2", "A", 300, ("192.0.2.54",)),
                                              DeleteName("ns1"))))
    assert [r.status for r in run(app, with_glue, moved, seq=3)] == [STATUS_OK, STATUS_OK]
    referral = query(app, "host.sub.app.example.", "A")
    assert [r.to_text() for r in referral.additional] == ["ns.sub.app.example. 300 IN AAAA 2001:db8::53"]


def test_a_created_zone_is_checked_as_a_whole() -> None:
    """Records given with a create are refused with it: no zone is left behind. A bare create's own apex NS
    (the create carries no addresses for it) is accepted, and later changes that do not touch it too."""
    app = DNSApplication(seed("master"), POLICY)
    bad = create_command(ORIGIN, primary_ns="ns1", admin="h", nameservers=["ns1"],
                         records=ZoneUpdate(ORIGIN, (AddRecords("ns1", "A", 300, ("192.0.2.53",)),
                                                     AddRecords("kid", "NS", 300, ("ns1.kid",)))))
    (result,) = run(app, bad, seq=1)
    assert result.status == STATUS_ERROR and result.detail.startswith("zone[kid.app.example.]: NS ns1.kid.app.example.")
    assert not app.zones
    bare = create_command(ORIGIN, primary_ns="ns1", admin="h", nameservers=["ns1"])
    unrelated = update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),)))
    assert [r.status for r in run(app, bare, unrelated, seq=2)] == [STATUS_OK, STATUS_OK]
