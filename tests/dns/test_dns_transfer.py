"""Zone transfers in the replicated DNS application: owners' grants (default deny), AXFR of the signed zone,
IXFR from the journal of signed diffs (and the whole zone when the journal does not reach), the serial
moving on every re-sign, and a zone created with its records in one atomic command."""

from __future__ import annotations

import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
import pytest
from dns_testutil import NOW, seed

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import ZonePolicy
from trustchain.dns.app import (
    DNSApplication,
    DNSResult,
    allow_transfer_command,
    create_command,
    decode_result,
    deny_transfer_command,
    keys_command,
    update_command,
)
from trustchain.dns.dnssec import SigningPolicy
from trustchain.dns.transfer import JOURNAL_MAX_DIFFS, answer_transfer, serial_gt
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRRset, ZoneUpdate

ORIGIN = "alice.example."
KEY = "xfr.alice.example."
ALICE, MALLORY = b"A" * 32, b"M" * 32
POLICY = SigningPolicy(validity=4000, refresh=1000, skew=100)


def app() -> DNSApplication:
    a = DNSApplication(seed("master"), POLICY, zone_policy=ZonePolicy(lambda name: False, ("example",)))
    records = ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.1",)),))
    assert run(a, (ALICE, create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"],
                                         records=records)))[0].ok
    return a


def run(a: DNSApplication, *ops: tuple[bytes, bytes], t: int = NOW) -> list[DNSResult]:
    results = a.execute([Operation(acct, i, p) for i, (acct, p) in enumerate(ops)], ExecutionContext(1, t * 10**6))
    return [decode_result(r) for r in results]


def www(value: str) -> tuple[bytes, bytes]:
    return ALICE, update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, (value,)),)))


def xfr(a: DNSApplication, rdtype: str, serial: int | None = None, t: int = NOW) -> tuple[int, list[dns.rrset.RRset]]:
    query = dns.message.make_query(ORIGIN, rdtype)
    if serial is not None:
        query.authority.append(dns.rrset.from_text(ORIGIN, 0, "IN", "SOA", f"ns1 hostmaster {serial} 1 1 1 1"))
    origin = dns.name.from_text(ORIGIN)
    st = a.zones.get(origin)
    answer = answer_transfer(query, st.signed if st else None, a.journals.get(origin), t)
    return answer.rcode, [rrset for message in answer.messages for rrset in message]


def records(rrsets: list[dns.rrset.RRset]) -> set[str]:
    return {line for rrset in rrsets for line in rrset.to_text().splitlines()}


def served(a: DNSApplication) -> set[str]:
    """Every record of the signed zone, read back from its zone-file form (not from the transfer code)."""
    text = a.zones[dns.name.from_text(ORIGIN)].signed.to_text()
    zone = dns.zone.from_text(text, relativize=False)
    return {line for name, rdataset in zone.iterate_rdatasets()
            for line in dns.rrset.from_rdata_list(name, rdataset.ttl, list(rdataset)).to_text().splitlines()}


def soa_serial(rrset: dns.rrset.RRset) -> int:
    assert rrset.rdtype == dns.rdatatype.SOA
    return int(rrset[0].serial)


def test_only_the_owner_grants_and_revokes_and_bad_grants_name_the_field() -> None:
    a = app()
    results = run(a, (MALLORY, allow_transfer_command(ORIGIN, KEY)),
                  (ALICE, allow_transfer_command(ORIGIN, KEY, ["192.0.2.53", "[2001:db8::1]:5353", "198.51.100.1:53"])),
                  (ALICE, allow_transfer_command(ORIGIN, "bad..name")),
                  (ALICE, allow_transfer_command(ORIGIN, KEY, ["ns1.example.com"])),
                  (ALICE, allow_transfer_command(ORIGIN, KEY, ["192.0.2.1:0"])),
                  (ALICE, allow_transfer_command(ORIGIN, KEY, [f"192.0.2.{i}" for i in range(5)])),
                  (ALICE, allow_transfer_command("nowhere.example.", KEY)))
    assert [r.ok for r in results] == [False, True, False, False, False, False, False]
    assert results[0].detail.startswith("allow_transfer.authorization: only the zone's owner")
    assert results[2].detail.startswith("allow_transfer.key_name: malformed name")
    assert results[3].detail.startswith("allow_transfer.notify[0]: 'ns1.example.com': not an IP address")
    assert results[4].detail.startswith("allow_transfer.notify[0]: '192.0.2.1:0': port must be")
    assert results[5].detail == "allow_transfer.notify: at most 4 addresses"
    origin = dns.name.from_text(ORIGIN)
    [grant] = a.transfers.for_zone(origin)
    assert set(grant.notify) == {("198.51.100.1", 53), ("192.0.2.53", 53), ("2001:db8::1", 5353)}
    assert a.transfers.allowed(origin, dns.name.from_text(KEY.upper()))
    restored = DNSApplication(seed("master"), POLICY, zone_policy=ZonePolicy(lambda name: False, ("example",)))
    restored.restore(a.snapshot())
    assert restored.transfers.for_zone(origin) == [grant]
    assert [r.status for r in run(a, (MALLORY, deny_transfer_command(ORIGIN, KEY)), (ALICE, deny_transfer_command(
        ORIGIN, KEY)), (ALICE, deny_transfer_command(ORIGIN, KEY)))] == ["error", "ok", "unchanged"]
    assert not a.transfers.allowed(origin, dns.name.from_text(KEY))


def test_axfr_carries_the_signed_zone_between_two_soas() -> None:
    a = app()
    rcode, rrsets = xfr(a, "AXFR")
    assert rcode == dns.rcode.NOERROR
    assert rrsets[0].rdtype == rrsets[-1].rdtype == dns.rdatatype.SOA and rrsets[0] == rrsets[-1]
    assert sum(r.rdtype == dns.rdatatype.SOA for r in rrsets) == 2
    assert records(rrsets) == served(a)
    types = {r.rdtype for r in rrsets}
    assert {dns.rdatatype.DNSKEY, dns.rdatatype.RRSIG, dns.rdatatype.NSEC, dns.rdatatype.A} <= types
    assert xfr(a, "AXFR", t=NOW + 10 * POLICY.validity)[0] == dns.rcode.SERVFAIL  # dead signatures: never
    other = dns.message.make_query("bob.example.", "AXFR")
    assert answer_transfer(other, None, None, NOW).rcode == dns.rcode.NOTAUTH


def apply_ixfr(before: set[str], rrsets: list[dns.rrset.RRset]) -> tuple[set[str], list[int]]:
    """RFC 1995 section 4, as a client applies it: SOA, then (old SOA, deletions, new SOA, additions)*, SOA."""
    if len(rrsets) > 1 and rrsets[1].rdtype != dns.rdatatype.SOA:  # AXFR-style: the whole zone
        return records(rrsets), []
    current = set(before)
    body = rrsets[1:-1]
    serials: list[int] = []
    deleting = True
    for rrset in body:
        if rrset.rdtype == dns.rdatatype.SOA:  # an old SOA opens deletions, a new one additions
            serials.append(soa_serial(rrset))
            deleting = len(serials) % 2 == 1
            current = current - records([rrset]) if deleting else current | records([rrset])
            continue
        lines = records([rrset])
        if deleting:
            assert lines <= current, lines - current
            current -= lines
        else:
            current |= lines
    return current, serials


def test_ixfr_sends_the_signed_diffs_and_the_whole_zone_when_the_journal_does_not_reach() -> None:
    a = app()
    many = tuple(AddRecords(f"host{i}", "A", 300, (f"192.0.2.{i}",)) for i in range(40))
    run(a, (ALICE, allow_transfer_command(ORIGIN, KEY)), (ALICE, update_command(ZoneUpdate(ORIGIN, many))))
    first, serial1 = served(a), a.zones[dns.name.from_text(ORIGIN)].zone.serial
    assert xfr(a, "IXFR", serial1)[1] == [a.zones[dns.name.from_text(ORIGIN)].signed.rrsets[
        (dns.name.from_text(ORIGIN), dns.rdatatype.SOA)]]  # up to date: the SOA alone
    run(a, www("192.0.2.2"))
    spf = ZoneUpdate(ORIGIN, (AddRecords("mail", "TXT", 60, ('"v=spf1 -all"',)),))
    run(a, (ALICE, update_command(spf)), www("192.0.2.3"))
    run(a, (ALICE, update_command(ZoneUpdate(ORIGIN, (DeleteRRset("mail", "TXT"),)))))
    rcode, rrsets = xfr(a, "IXFR", serial1)
    now_serial = a.zones[dns.name.from_text(ORIGIN)].zone.serial
    assert rcode == dns.rcode.NOERROR and soa_serial(rrsets[0]) == soa_serial(rrsets[-1]) == now_serial
    applied, serials = apply_ixfr(first, rrsets)
    assert serials == [serial1, serial1 + 1, serial1 + 1, serial1 + 3, serial1 + 3, now_serial]
    assert applied == served(a)
    assert len(rrsets) < len(xfr(a, "AXFR")[1]) / 4
    moved = (*(DeleteName(f"host{i}") for i in range(40)),
             *(AddRecords(f"new{i}", "A", 300, (f"192.0.2.{i}",)) for i in range(40)))
    run(a, (ALICE, update_command(ZoneUpdate(ORIGIN, moved))))  # a diff larger than the zone: the zone is sent
    assert sum(r.rdtype == dns.rdatatype.SOA for r in xfr(a, "IXFR", now_serial)[1]) == 2
    rcode, full = xfr(a, "IXFR", serial1 - 1)  # older than the journal: the whole zone (RFC 1995 section 4)
    assert rcode == dns.rcode.NOERROR and records(full) == served(a)
    assert sum(r.rdtype == dns.rdatatype.SOA for r in full) == 2
    assert xfr(a, "IXFR", now_serial + 5)[1][0].rdtype == dns.rdatatype.SOA  # a client ahead of us gets our SOA
    assert xfr(a, "IXFR")[0] == dns.rcode.FORMERR  # no SOA of the client's


def test_a_resign_moves_the_serial_and_ixfr_carries_the_new_signatures() -> None:
    a = app()
    run(a, (ALICE, allow_transfer_command(ORIGIN, KEY)))
    origin = dns.name.from_text(ORIGIN)
    before, serial = served(a), a.zones[origin].zone.serial
    later = NOW + 2 * POLICY.refresh
    run(a, t=later)  # an empty batch (a tick) in a new signing epoch
    assert a.zones[origin].zone.serial == serial + 1 and a.resigns == 1
    rcode, rrsets = xfr(a, "IXFR", serial, t=later)
    applied, _ = apply_ixfr(before, rrsets)
    assert rcode == dns.rcode.NOERROR and applied == served(a) and applied != before
    restored = DNSApplication(seed("master"), POLICY, zone_policy=ZonePolicy(lambda name: False, ("example",)))
    restored.restore(a.snapshot())  # the journal is not replicated: a restored replica sends the whole zone
    assert restored.digest() == a.digest() and restored.journals == {}


def test_the_journal_is_bounded_and_kept_only_for_zones_with_grants() -> None:
    a = app()
    origin = dns.name.from_text(ORIGIN)
    run(a, www("192.0.2.9"))
    assert origin not in a.journals
    run(a, (ALICE, allow_transfer_command(ORIGIN, KEY)))
    for i in range(JOURNAL_MAX_DIFFS + 5):
        run(a, (ALICE, update_command(ZoneUpdate(ORIGIN, (AddRecords("n", "TXT", 60, (f'"{i}"',)),)))))
    assert len(a.journals[origin]) == JOURNAL_MAX_DIFFS
    serial = a.zones[origin].zone.serial
    reach = a.journals[origin].since(serial - JOURNAL_MAX_DIFFS)
    assert reach is not None and len(reach) == JOURNAL_MAX_DIFFS
    assert a.journals[origin].since(serial - JOURNAL_MAX_DIFFS - 1) is None
    run(a, (ALICE, deny_transfer_command(ORIGIN, KEY)), www("192.0.2.10"))
    assert origin not in a.journals


def test_create_with_records_is_one_atomic_command() -> None:
    a = app()
    bad = create_command("bob.example.", primary_ns="ns1", admin="hostmaster", nameservers=["ns1"],
                         records=ZoneUpdate("bob.example.", (AddRecords("www", "A", 300, ("192.0.2.1",)),
                                                              AddRecords("www", "CNAME", 300, ("x",)))))
    [result] = run(a, (ALICE, bad))
    assert not result.ok and result.detail.startswith("ops[1].type: CNAME at www.bob.example.")
    assert dns.name.from_text("bob.example.") not in a.zones and dns.name.from_text("bob.example.") not in a.owners
    www_a = a.zones[dns.name.from_text(ORIGIN)].zone.get(dns.name.from_text(f"www.{ORIGIN}"), dns.rdatatype.A)
    assert www_a is not None and [r.to_text() for r in www_a] == ["192.0.2.1"]


@pytest.mark.parametrize(("a", "b", "greater"), [(2, 1, True), (1, 2, False), (0, 2**32 - 1, True),
                                                  (5, 5, False), (2**31 + 5, 5, False)])
def test_serial_arithmetic(a: int, b: int, greater: bool) -> None:
    assert serial_gt(a, b) is greater


def test_a_key_rollover_step_moves_the_serial_and_creation_does_not() -> None:
    a = app()
    origin = dns.name.from_text(ORIGIN)
    assert a.zones[origin].zone.serial == 2  # created at 1, its records applied with it: 2
    serial = a.zones[origin].zone.serial
    [result] = run(a, (ALICE, keys_command(ORIGIN, "roll", "zsk")))
    assert result.ok, result
    keys = served(a)
    assert a.zones[origin].zone.serial == serial + 1  # a new DNSKEY set, served under a new serial
    assert any(" DNSKEY 256 " in line for line in keys)
