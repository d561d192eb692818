"""Zone limits: records and record bytes per zone, per owning account and in all, checked by every replica.

Each limit is probed at its boundary: exactly at the cap succeeds, one more is refused naming the limit
with nothing applied, and another account's zone is unaffected. Sizes are measured here from the
served records' uncompressed wire form (RFC 1035 4.1.3), independently of the application's own count.
"""

from __future__ import annotations

import io

import dns.name
import pytest
from dns_testutil import NOW, seed

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import ZonePolicy
from trustchain.dns.app import STATUS_ERROR, STATUS_OK, DNSApplication, DNSResult, create_command, decode_result
from trustchain.dns.app import update_command as _update_command
from trustchain.dns.dnssec import SigningPolicy
from trustchain.dns.limits import ZoneLimits
from trustchain.dns.zone import AddRecords, DeleteRRset, ReplaceRRset, ZoneUpdate

ALICE, BOB = b"alice-account", b"bob-account"
POLICY = SigningPolicy(validity=4000, refresh=1000, skew=100)


def _app(**limits: int) -> DNSApplication:
    return DNSApplication(seed("master"), POLICY, zone_policy=ZonePolicy(lambda name: False, ("test",)),
                          limits=ZoneLimits(**limits))


def _run(app: DNSApplication, account: bytes, payload: bytes) -> DNSResult:
    return decode_result(app.execute([Operation(account, 1, payload)], ExecutionContext(1, NOW * 1_000_000))[0])


def _create(app: DNSApplication, account: bytes, origin: str) -> DNSResult:
    return _run(app, account, create_command(origin, primary_ns=f"ns1.{origin}", admin=f"hostmaster.{origin}",
                                             nameservers=[f"ns1.{origin}"]))


def _add(app: DNSApplication, account: bytes, origin: str, *records: tuple[str, str]) -> DNSResult:
    ops = tuple(AddRecords(name, "TXT", 300, (f'"{text}"',)) for name, text in records)
    return _run(app, account, _update_command(ZoneUpdate(origin, ops)))


def _records(app: DNSApplication, origin: str) -> int:
    return sum(len(r) for r in app.zones[dns.name.from_text(origin)].zone.rrsets())


def _bytes(app: DNSApplication, origin: str) -> int:
    out = io.BytesIO()
    for rrset in app.zones[dns.name.from_text(origin)].zone.rrsets():
        rrset.to_wire(out)  # no compression table: every owner name in full
    return len(out.getvalue())


def _txt_bytes(name: str, text: str) -> int:
    """One TXT record's wire size: owner, 10 bytes of type/class/TTL/length, one length-prefixed string."""
    return len(dns.name.from_text(name).to_wire()) + 10 + 1 + len(text)


def _refused(result: DNSResult, limit: str) -> None:
    assert result.status == STATUS_ERROR and result.detail.startswith(f"limits.dns.{limit}: "), result


def test_records_per_zone_exactly_at_the_cap_succeeds_and_one_more_is_refused_whole() -> None:
    app = _app(max_records_per_zone=6)
    assert _create(app, ALICE, "alice.test.").ok and _create(app, BOB, "bob.test.").ok
    assert _records(app, "alice.test.") == 2  # SOA and NS
    assert _add(app, ALICE, "alice.test.", ("a", "1"), ("b", "2"), ("c", "3")).status == STATUS_OK
    serial = app.zones[dns.name.from_text("alice.test.")].zone.serial
    _refused(_add(app, ALICE, "alice.test.", ("d", "4"), ("e", "5")), "max_records_per_zone")
    assert _records(app, "alice.test.") == 5  # the first op of the refused update was not applied either
    assert app.zones[dns.name.from_text("alice.test.")].zone.serial == serial
    assert _add(app, ALICE, "alice.test.", ("d", "4")).status == STATUS_OK  # exactly at 6
    assert _records(app, "alice.test.") == 6
    _refused(_add(app, ALICE, "alice.test.", ("e", "5")), "max_records_per_zone")
    assert _add(app, BOB, "bob.test.", ("a", "1"), ("b", "2"), ("c", "3"), ("d", "4")).status == STATUS_OK


def test_a_zone_at_its_record_cap_may_still_shrink_and_replace() -> None:
    app = _app(max_records_per_zone=3)
    assert _create(app, ALICE, "alice.test.").ok
    assert _add(app, ALICE, "alice.test.", ("a", "1")).ok
    replace = ZoneUpdate("alice.test.", (ReplaceRRset("a", "TXT", 300, ('"other"',)),))
    assert _run(app, ALICE, _update_command(replace)).status == STATUS_OK
    delete = ZoneUpdate("alice.test.", (DeleteRRset("a", "TXT"),))
    assert _run(app, ALICE, _update_command(delete)).status == STATUS_OK
    assert _records(app, "alice.test.") == 2


def test_zone_bytes_exactly_at_the_cap_succeeds_and_one_byte_more_is_refused() -> None:
    probe = _app()
    assert _create(probe, ALICE, "alice.test.").ok
    base = _bytes(probe, "alice.test.")
    one = _txt_bytes("x.alice.test.", "0123456789")
    app = _app(max_zone_bytes=base + one)
    assert _create(app, ALICE, "alice.test.").ok and _create(app, BOB, "bob.test.").ok
    _refused(_add(app, ALICE, "alice.test.", ("x", "0123456789a")), "max_zone_bytes")  # one byte over
    assert _bytes(app, "alice.test.") == base
    assert _add(app, ALICE, "alice.test.", ("x", "0123456789")).status == STATUS_OK  # exactly at the cap
    assert _bytes(app, "alice.test.") == base + one
    _refused(_add(app, ALICE, "alice.test.", ("y", "")), "max_zone_bytes")
    assert _add(app, BOB, "bob.test.", ("x", "0123456789")).status == STATUS_OK


def test_owner_bytes_count_every_zone_of_the_account() -> None:
    probe = _app()
    assert _create(probe, ALICE, "alice.test.").ok and _create(probe, ALICE, "alice2.test.").ok
    two_zones = _bytes(probe, "alice.test.") + _bytes(probe, "alice2.test.")
    one = _txt_bytes("x.alice2.test.", "hello")
    app = _app(max_owner_bytes=two_zones + one)
    assert _create(app, ALICE, "alice.test.").ok and _create(app, ALICE, "alice2.test.").ok
    assert _create(app, BOB, "bob.test.").ok
    assert _add(app, ALICE, "alice2.test.", ("x", "hello")).status == STATUS_OK  # exactly at the cap
    _refused(_add(app, ALICE, "alice.test.", ("x", "")), "max_owner_bytes")
    _refused(_create(app, ALICE, "alice3.test."), "max_owner_bytes")  # a new zone's SOA and NS count too
    assert dns.name.from_text("alice3.test.") not in app.zones and dns.name.from_text("alice3.test.") not in app.owners
    assert _add(app, BOB, "bob.test.", ("x", "hello"), ("y", "hello")).status == STATUS_OK


def test_total_records_and_bytes_bound_every_account_together() -> None:
    app = _app(max_total_records=7)
    assert _create(app, ALICE, "alice.test.").ok and _create(app, BOB, "bob.test.").ok  # 4 records
    assert _add(app, ALICE, "alice.test.", ("a", "1"), ("b", "2"), ("c", "3")).status == STATUS_OK  # exactly 7
    _refused(_add(app, BOB, "bob.test.", ("a", "1")), "max_total_records")
    probe = _app()
    assert _create(probe, ALICE, "alice.test.").ok
    zone = _bytes(probe, "alice.test.")
    app = _app(max_total_bytes=2 * zone)
    assert _create(app, ALICE, "alice.test.").ok
    _refused(_create(app, BOB, "bobbyy.test."), "max_total_bytes")  # a longer origin: over
    assert _create(app, BOB, "carol.test.").ok  # same length as alice's: exactly at the cap


def test_zone_counts_per_owner_and_in_all() -> None:
    app = _app(max_zones_per_owner=2, max_zones=3)
    assert _create(app, ALICE, "a1.test.").ok and _create(app, ALICE, "a2.test.").ok
    _refused(_create(app, ALICE, "a3.test."), "max_zones_per_owner")
    assert _create(app, BOB, "b1.test.").ok
    _refused(_create(app, BOB, "b2.test."), "max_zones")


def test_limits_hold_after_a_snapshot_round_trip() -> None:
    app = _app(max_records_per_zone=4, max_owner_bytes=10_000)
    assert _create(app, ALICE, "alice.test.").ok
    assert _add(app, ALICE, "alice.test.", ("a", "1"), ("b", "2")).status == STATUS_OK
    copy = _app(max_records_per_zone=4, max_owner_bytes=10_000)
    copy.restore(app.snapshot())
    assert copy.snapshot() == app.snapshot()
    _refused(_add(copy, ALICE, "alice.test.", ("c", "3")), "max_records_per_zone")
    _refused(_add(app, ALICE, "alice.test.", ("c", "3")), "max_records_per_zone")
    assert copy.snapshot() == app.snapshot()


def test_limits_must_be_positive_integers() -> None:
    with pytest.raises(ValueError, match="max_zone_bytes"):
        ZoneLimits(max_zone_bytes=0)
