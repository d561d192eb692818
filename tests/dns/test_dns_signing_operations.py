"""Signing operations of the replicated DNS: a zone signed with ECDSA P-256, CDS/CDNSKEY, ZSK and KSK
rollovers (on command and on schedule) taken by every replica in the same ordered batch, and a
presigned zone served as its outside signer made it (delv validates it from that signer's DS)."""

from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.dnssec
import dns.message
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from dns_testutil import NOW, seed
from loopback import Loopback

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.dns.app import (
    STATUS_ERROR,
    STATUS_OK,
    DNSApplication,
    DNSResult,
    create_command,
    decode_result,
    keys_command,
    tick_command,
    update_command,
)
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import AddRecords, ReplaceRRset, Zone, ZoneUpdate

ORIGIN = "keys.example."
POLICY = SigningPolicy(validity=40 * 86400, refresh=86400, skew=3600, dnskey_ttl=3600)
T = dns.rdatatype.RdataType
HOUR, DAY = 3600, 86400


class Replicas:
    """Two replicas fed the same ordered batches: every check runs on both and compares them."""

    def __init__(self) -> None:
        self.apps = [DNSApplication(seed("master"), POLICY) for _ in range(2)]
        self.seq = 0

    def run(self, *payloads: bytes, t: int) -> list[DNSResult]:
        self.seq += 1
        ops = [Operation(b"owner", i, p) for i, p in enumerate(payloads)]
        out = [[decode_result(r) for r in app.execute(ops, ExecutionContext(self.seq, t * 1_000_000))]
               for app in self.apps]
        assert out[0] == out[1] and self.apps[0].digest() == self.apps[1].digest()
        return out[0]

    def query(self, name: str, rdtype: str, t: int) -> dns.message.Message:
        q = dns.message.make_query(name, rdtype, want_dnssec=True)
        q.id = 9
        wires = [app.answer(q.to_wire(), t, max_udp=None) for app in self.apps]
        assert wires[0] == wires[1]  # byte-identical on every replica
        return dns.message.from_wire(wires[0])


def _dnskeys(reply: dns.message.Message) -> tuple[set[int], set[int], set[int]]:
    """(KSK tags, ZSK tags, tags of the keys signing the DNSKEY RRset)."""
    keys = next(r for r in reply.answer if r.rdtype == T.DNSKEY)
    sigs = next(r for r in reply.answer if r.rdtype == T.RRSIG)
    ksk = {dns.dnssec.key_id(k) for k in keys if k.flags & 1}
    return ksk, {dns.dnssec.key_id(k) for k in keys} - ksk, {s.key_tag for s in sigs}


def _signer(reply: dns.message.Message) -> set[int]:
    return {s.key_tag for r in reply.answer if r.rdtype == T.RRSIG for s in r}


def _created(algorithm: int = 15) -> Replicas:
    reps = Replicas()
    create = create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"], ttl=600,
                            algorithm=algorithm)
    www = update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 600, ("192.0.2.1",)),)))
    assert [r.status for r in reps.run(create, www, t=NOW)] == [STATUS_OK, STATUS_OK]
    return reps


def test_p256_zone_signs_with_algorithm_13_and_publishes_cds_under_the_ksk() -> None:
    reps = _created(algorithm=13)
    reply = reps.query(f"www.{ORIGIN}", "A", NOW + 10)
    assert {s.algorithm for r in reply.answer if r.rdtype == T.RRSIG for s in r} == {13}
    ksk, zsk, dnskey_signers = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 10))
    assert len(ksk) == len(zsk) == 1 and dnskey_signers == ksk
    cds = reps.query(ORIGIN, "CDS", NOW + 10)
    assert [r.key_tag for r in cds.answer[0]] == list(ksk) and _signer(cds) == ksk
    assert reps.query(ORIGIN, "CDNSKEY", NOW + 10).answer[0][0].algorithm == 13
    ds = reps.apps[0].ds(ORIGIN)
    assert ds[0].algorithm == 13 and ds[0].key_tag in ksk
    bad = create_command("other.example.", primary_ns="ns1", admin="h", nameservers=["ns1"], algorithm=8)
    result = reps.run(bad, t=NOW + 20)[0]
    assert result.status == STATUS_ERROR and result.detail.startswith("create.algorithm: "), result


def test_zsk_rollover_prepublishes_then_switches_then_removes_on_consensus_time() -> None:
    reps = _created()
    _, (old_zsk,), _ = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 1))
    assert reps.run(keys_command(ORIGIN, "roll", "zsk"), t=NOW + 100)[0].status == STATUS_OK
    _, zsks, _ = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 101))
    assert len(zsks) == 2 and _signer(reps.query(f"www.{ORIGIN}", "A", NOW + 101)) == {old_zsk}
    (new_zsk,) = zsks - {old_zsk}
    assert reps.run(keys_command(ORIGIN, "roll", "zsk"), t=NOW + 200)[0].detail.startswith("keys.role: ")
    reps.run(tick_command(), t=NOW + 100 + HOUR)  # DNSKEY TTL passed, margin not yet: nothing moves
    assert _signer(reps.query(f"www.{ORIGIN}", "A", NOW + 100 + HOUR)) == {old_zsk}
    reps.run(tick_command(), t=NOW + 100 + 2 * HOUR)
    assert _signer(reps.query(f"www.{ORIGIN}", "A", NOW + 100 + 2 * HOUR)) == {new_zsk}
    assert _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 100 + 2 * HOUR))[1] == {old_zsk, new_zsk}  # retired
    reps.run(tick_command(), t=NOW + 100 + 4 * HOUR)  # largest TTL (1 h DNSKEY) plus the margin later
    assert _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 100 + 4 * HOUR))[1] == {new_zsk}


def test_scheduled_zsk_rollover_starts_by_itself_and_survives_a_restore() -> None:
    reps = _created()
    too_often = reps.run(keys_command(ORIGIN, "lifetimes", zsk_lifetime_s=60), t=NOW + 10)[0]
    assert too_often.detail.startswith("keys.zsk_lifetime_s: "), too_often
    assert reps.run(keys_command(ORIGIN, "lifetimes", zsk_lifetime_s=30 * DAY), t=NOW + 10)[0].status == STATUS_OK
    reps.run(tick_command(), t=NOW + 29 * DAY)
    assert len(_dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 29 * DAY))[1]) == 1
    reps.run(tick_command(), t=NOW + 30 * DAY + 1)
    assert len(_dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 30 * DAY + 1))[1]) == 2  # pre-published
    restored = DNSApplication(seed("master"), POLICY)
    restored.restore(reps.apps[0].snapshot())
    q = dns.message.make_query(ORIGIN, "DNSKEY", want_dnssec=True)
    assert restored.answer(q.to_wire(), NOW + 30 * DAY + 2, max_udp=None) == \
        reps.apps[0].answer(q.to_wire(), NOW + 30 * DAY + 2, max_udp=None)


def test_ksk_rollover_double_signs_moves_cds_and_completes_on_command() -> None:
    reps = _created()
    (old_ksk,), _, _ = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 1))
    reps.run(keys_command(ORIGIN, "roll", "ksk"), t=NOW + 100)
    ksks, _, signers = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 101))
    (new_ksk,) = ksks - {old_ksk}
    assert signers == {old_ksk, new_ksk}  # validates from either DS
    assert [r.key_tag for r in reps.query(ORIGIN, "CDS", NOW + 101).answer[0]] == [new_ksk]
    early = reps.run(keys_command(ORIGIN, "complete", "ksk"), t=NOW + 200)[0]
    assert early.status == STATUS_ERROR and "DNSKEY TTL" in early.detail, early
    assert reps.run(keys_command(ORIGIN, "complete", "ksk"), t=NOW + 100 + HOUR)[0].status == STATUS_OK
    assert _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 100 + HOUR))[0] == {new_ksk}
    assert {r.key_tag for r in reps.apps[0].ds(ORIGIN)} == {new_ksk}


def test_ksk_rollover_completes_when_the_parent_served_here_holds_the_new_ds_alone() -> None:
    reps = _created()
    parent = "example."
    create = create_command(parent, primary_ns="ns1.keys.example.", admin="h", nameservers=["ns1.keys.example."])
    old_ds = [r.to_text() for r in reps.apps[0].ds(ORIGIN)]
    delegate = update_command(ZoneUpdate(parent, (AddRecords("keys", "NS", 300, ("ns1.keys",)),
                                                  AddRecords("ns1.keys", "A", 300, ("192.0.2.53",)),  # glue
                                                  AddRecords("keys", "DS", 300, tuple(old_ds)))))
    assert [r.status for r in reps.run(create, delegate, t=NOW + 10)] == [STATUS_OK, STATUS_OK]
    reps.run(keys_command(ORIGIN, "roll", "ksk"), t=NOW + 100)
    new_ds = [r.to_text() for r in reps.query(ORIGIN, "CDS", NOW + 101).answer[0]]
    switch = update_command(ZoneUpdate(parent, (ReplaceRRset("keys", "DS", 300, tuple(new_ds)),)))
    reps.run(switch, t=NOW + 200)  # the parent's owner followed the CDS
    reps.run(tick_command(), t=NOW + 300)
    assert len(_dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 300))[0]) == 2  # old DS may still be cached
    reps.run(tick_command(), t=NOW + 200 + 300 + HOUR)  # the DS TTL and the margin after the switch
    ksks = _dnskeys(reps.query(ORIGIN, "DNSKEY", NOW + 200 + 300 + HOUR))[0]
    assert [str(tag) for tag in ksks] == [new_ds[0].split()[0]]  # only the KSK the parent's DS names


def _presigned_records(now: int) -> tuple[Zone, list[ReplaceRRset], dns.rrset.RRset]:
    """A zone signed by an outside signer (its own keys), as replace operations carrying every record."""
    zone = Zone.create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1",))
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("www", "A", 300, ("192.0.2.44",)),
                                   AddRecords("ns1", "A", 300, ("192.0.2.53",)))))
    signed = sign_zone(zone, KeySet.initial(seed("outside-ksk"), seed("outside-zsk"), 13), now)
    by_name: dict[tuple[str, str], tuple[int, list[str]]] = {}
    for rrset in signed.all_rrsets():
        if rrset.rdtype == T.SOA:
            continue
        key = (rrset.name.to_text(), dns.rdatatype.to_text(rrset.rdtype))
        _, values = by_name.setdefault(key, (rrset.ttl, []))
        values.extend(r.to_text() for r in rrset)
    return zone, [ReplaceRRset(n, t, ttl, tuple(v)) for (n, t), (ttl, v) in sorted(by_name.items())], signed.ds()


def test_presigned_zone_takes_dnssec_records_and_serves_them_unchanged(tmp_path: Path) -> None:
    now = int(time.time())  # delv checks the signatures against the real clock
    _, records, outside_ds = _presigned_records(now)
    app = DNSApplication(seed("master"), POLICY)
    run = [decode_result(r) for r in app.execute(
        [Operation(b"owner", 0, create_command(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=["ns1"],
                                               presigned=True)),
         Operation(b"owner", 1, update_command(ZoneUpdate(ORIGIN, tuple(records))))],
        ExecutionContext(1, now * 1_000_000))]
    assert [r.status for r in run] == [STATUS_OK, STATUS_OK], run
    assert app.ds(ORIGIN) == outside_ds  # the outside signer's keys, not ours
    (keys,) = [decode_result(r) for r in app.execute([Operation(b"owner", 0, keys_command(ORIGIN, "roll", "zsk"))],
                                                     ExecutionContext(2, now * 1_000_000))]
    assert keys.status == STATUS_ERROR and "presigned" in keys.detail
    reply = dns.message.from_wire(app.answer(dns.message.make_query(f"www.{ORIGIN}", "A", want_dnssec=True)
                                             .to_wire(), now, max_udp=None))
    assert {s.algorithm for r in reply.answer if r.rdtype == T.RRSIG for s in r} == {13}
    if shutil.which("delv") is None:
        pytest.skip("delv not installed (apt: bind9-dnsutils)")
    anchors = tmp_path / "anchors.conf"
    anchors.write_text("trust-anchors {\n" + "\n".join(
        f'  {ORIGIN} static-ds {r.key_tag} {r.algorithm} {r.digest_type} "{r.digest.hex().upper()}";'
        for r in outside_ds) + "\n};\n")
    server = Loopback(app.authority)
    try:
        for qname, qtype, expect in ((f"www.{ORIGIN}", "A", "192.0.2.44"), (f"nope.{ORIGIN}", "A", "NXDOMAIN")):
            out = subprocess.run(["delv", "@127.0.0.1", "-p", str(server.port), "-a", str(anchors),
                                  f"+root={ORIGIN}", qname, qtype], capture_output=True, text=True, timeout=30)
            assert "fully validated" in out.stdout + out.stderr and expect in out.stdout + out.stderr, out
    finally:
        server.close()


def test_a_zone_signed_here_refuses_dnssec_records() -> None:
    reps = _created()
    result = reps.run(update_command(ZoneUpdate(ORIGIN, (AddRecords("www", "NSEC", 300, (f"{ORIGIN} A",)),))),
                      t=NOW + 5)[0]
    assert result.status == STATUS_ERROR and result.detail.startswith("ops[0].type: "), result
    assert dns.name.from_text(ORIGIN) in reps.apps[0].zones
