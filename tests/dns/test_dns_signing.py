from __future__ import annotations

import shutil
import subprocess
import time
from pathlib import Path

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rrset
import pytest
from dns_testutil import NOW, ORIGIN, make_zone, seed

from trustchain.dns.denial import NSEC3Params, nsec3_digest, owner_digest
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.keys import ECDSAP256, ED25519, KeySet, KeyState, Role
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

T = dns.rdatatype.RdataType
APEX = dns.name.from_text(ORIGIN)
NSEC3 = SigningPolicy(nsec3=NSEC3Params())


def verify_all(signed: SignedZone, now: int) -> int:
    """Check every RRSIG with dnspython against the zone's own DNSKEY set; returns how many RRsets."""
    dnskeys = signed.get(APEX, T.DNSKEY)
    assert dnskeys is not None
    count = 0
    for (name, rdtype), rrset in signed.rrsets.items():
        sig = signed.rrsig(name, rdtype)
        assert sig is not None and len(sig) > 0, (name, rdtype)
        dns.dnssec.validate(rrset, sig, {APEX: dnskeys}, now=now)
        count += 1
    return count


@pytest.mark.parametrize("policy", [SigningPolicy(), NSEC3], ids=["nsec", "nsec3"])
def test_every_rrset_signed_and_valid(zone: Zone, keys: KeySet, policy: SigningPolicy) -> None:
    signed = sign_zone(zone, keys, NOW, policy)
    assert verify_all(signed, NOW) == len(signed.rrsets)
    assert signed.inception <= NOW - policy.skew // 2 and signed.expiration > NOW + policy.validity // 2
    for (_name, rdtype), sig in signed.sigs.items():
        signer_tags = {r.key_tag for r in sig}
        by_ksk = rdtype in (T.DNSKEY, T.CDS, T.CDNSKEY)  # RFC 7344 4.1: CDS/CDNSKEY under the KSK
        expected = {k.tag for k in keys.signing(Role.KSK if by_ksk else Role.ZSK)}
        assert signer_tags == expected


def test_signing_is_deterministic_across_replicas(zone: Zone, keys: KeySet) -> None:
    a = sign_zone(zone, keys, NOW, NSEC3).to_text()
    b = sign_zone(make_zone(), KeySet.initial(seed("ksk"), seed("zsk")), NOW + 5, NSEC3).to_text()
    assert a == b  # same epoch -> identical signatures


def test_incremental_resign_matches_full_resign(zone: Zone, keys: KeySet) -> None:
    first = sign_zone(zone, keys, NOW)
    zone.apply(ZoneUpdate(ORIGIN, (AddRecords("new", "A", 60, ("192.0.2.77",)),)))
    assert not first.is_current(zone)
    again = sign_zone(zone, keys, NOW + 10, previous=first)
    assert again.is_current(zone)
    assert again.to_text() == sign_zone(zone, keys, NOW + 10).to_text()
    # unchanged RRsets kept their signature objects, changed ones got new ones
    www = dns.name.from_text("www", APEX)
    assert again.sigs[(www, T.A)] == first.sigs[(www, T.A)]
    assert again.sigs[(APEX, T.SOA)] != first.sigs[(APEX, T.SOA)]


def test_needs_resign_before_expiry(zone: Zone, keys: KeySet) -> None:
    policy = SigningPolicy()
    signed = sign_zone(zone, keys, NOW, policy)
    assert not signed.needs_resign(NOW)
    boundary = signed.epoch + policy.refresh
    assert not signed.needs_resign(boundary - 1)
    assert signed.needs_resign(boundary)
    assert signed.expiration - boundary >= policy.validity - policy.refresh  # lots of life left
    resigned = sign_zone(zone, keys, boundary, policy)
    assert resigned.expiration == signed.expiration + policy.refresh
    verify_all(resigned, boundary)


def test_nsec3_chain_is_complete_and_ordered(zone: Zone, keys: KeySet) -> None:
    signed = sign_zone(zone, keys, NOW, NSEC3)
    chain = sorted(
        (r for r in signed.rrsets.values() if r.rdtype == T.NSEC3), key=lambda r: owner_digest(r.name) or b""
    )
    digests = [owner_digest(r.name) for r in chain]
    # every owner and empty non-terminal (deep., b.deep.) is hashed
    names = {*zone.names(), dns.name.from_text("deep", APEX), dns.name.from_text("b.deep", APEX)}
    assert set(digests) == {nsec3_digest(name, NSEC3Params()) for name in names}
    for i, rrset in enumerate(chain):
        rdata = rrset[0]
        assert rdata.next == digests[(i + 1) % len(digests)]
        assert rdata.flags == 0 and rdata.iterations == 0 and rdata.salt == b""
    param = signed.get(APEX, T.NSEC3PARAM)
    assert param is not None and param[0].iterations == 0


def test_nsec_chain_links_names_in_canonical_order(zone: Zone, keys: KeySet) -> None:
    signed = sign_zone(zone, keys, NOW)
    nsecs = {r.name: r[0] for r in signed.rrsets.values() if r.rdtype == T.NSEC}
    names = zone.names()
    assert sorted(nsecs) == names
    for i, name in enumerate(names):
        assert nsecs[name].next == names[(i + 1) % len(names)]
    apex_types = set(nsecs[APEX].windows and dns.rdatatype.RdataType(t) for t in _bitmap(nsecs[APEX]))
    assert {T.SOA, T.NS, T.DNSKEY, T.RRSIG, T.NSEC, T.MX, T.CAA} <= apex_types


def _bitmap(rdata: object) -> list[int]:
    out = []
    for window, bitmap in rdata.windows:  # type: ignore[attr-defined]
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.append(window * 256 + i * 8 + bit)
    return out


def test_ds_is_sha256_of_ksk(keys: KeySet) -> None:
    ds = keys.ds_records(APEX)
    assert len(ds) == 1 and ds[0].digest_type == 2 and ds[0].algorithm == 15
    ksk = keys.signing(Role.KSK)[0]
    assert ds[0].key_tag == ksk.tag
    assert ds[0] == dns.dnssec.make_ds(APEX, ksk.dnskey, "SHA256")


def test_zsk_prepublish_rollover(zone: Zone, keys: KeySet) -> None:
    old = keys.signing(Role.ZSK)[0]
    step1 = keys.prepublish_zsk(seed("zsk2"))
    new = next(k for k in step1.keys if k.state is KeyState.PUBLISHED)
    s1 = sign_zone(zone, step1, NOW)
    dnskeys = s1.get(APEX, T.DNSKEY)
    assert dnskeys is not None and len(dnskeys) == 3
    assert {r.key_tag for r in s1.sigs[(APEX, T.SOA)]} == {old.tag}
    step2 = step1.activate_zsk(new.tag)
    s2 = sign_zone(zone, step2, NOW)
    assert {r.key_tag for r in s2.sigs[(APEX, T.SOA)]} == {new.tag}
    assert len(s2.get(APEX, T.DNSKEY) or []) == 3  # old ZSK still published
    step3 = step2.remove(old.tag)
    s3 = sign_zone(zone, step3, NOW)
    assert len(s3.get(APEX, T.DNSKEY) or []) == 2
    verify_all(s3, NOW)
    with pytest.raises(ValueError):
        step3.remove(new.tag)  # would leave no signing ZSK


def test_ksk_double_ksk_rollover(zone: Zone, keys: KeySet) -> None:
    old = keys.signing(Role.KSK)[0]
    rolled = keys.prepublish_ksk(seed("ksk2"))
    assert len(rolled.ds_records(APEX)) == 2
    signed = sign_zone(zone, rolled, NOW)
    assert len({r.key_tag for r in signed.sigs[(APEX, T.DNSKEY)]}) == 2
    done = rolled.remove(old.tag)
    assert [r.key_tag for r in done.ds_records(APEX)] != [old.tag]
    verify_all(sign_zone(zone, done, NOW), NOW)


def test_bad_seed_rejected() -> None:
    with pytest.raises(ValueError):
        KeySet.initial(b"short", seed("zsk"))


# --- external tools ----------------------------------------------------------------------------------


def _run(tool: str, args: list[str]) -> subprocess.CompletedProcess[str]:
    if shutil.which(tool) is None:
        pytest.skip(f"{tool} not installed (apt: ldnsutils / knot-dnssecutils / bind9-utils)")
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


TOOLS = {
    "ldns-verify-zone": lambda path: ["-k", str(path) + ".ds", str(path)],
    "kzonecheck": lambda path: ["-d", "on", "-o", ORIGIN, str(path)],
    "dnssec-verify": lambda path: ["-x", "-o", ORIGIN, str(path)],
}


def _rich_zone() -> Zone:
    """`make_zone` plus a signed and an unsigned delegation with glue, a wildcard, a DNAME and the newer
    record types."""
    zone = make_zone()
    zone.apply(ZoneUpdate(ORIGIN, (
        AddRecords("sub", "NS", 300, ("ns1.sub", "ns.elsewhere.example.")),
        AddRecords("ns1.sub", "A", 300, ("192.0.2.60",)),
        AddRecords("sub", "DS", 300, ("12345 13 2 " + "ab" * 32,)),
        AddRecords("unsigned.deep", "NS", 300, ("ns.elsewhere.example.",)),
        AddRecords("*.wild", "A", 300, ("192.0.2.77",)),
        AddRecords("old", "DNAME", 300, ("www.tc.example.",)),
        AddRecords("_443._tcp.www", "TLSA", 300, ("3 1 1 " + "cd" * 32,)),
        AddRecords("_sip._udp", "SRV", 300, ("0 5 5060 www",)),
        AddRecords("1.2.0.192", "PTR", 300, ("www",)),
        AddRecords("svc", "HTTPS", 300, ('1 . alpn="h2,h3"',)),
        AddRecords("svc", "SSHFP", 300, ("4 2 " + "ef" * 32,)),
        AddRecords("@", "NAPTR", 300, ('100 10 "S" "SIP+D2U" "" _sip._udp',)),
    )))
    return zone


def _export(tmp_path: Path, policy: SigningPolicy, tamper: bool = False, rich: bool = False) -> Path:
    zone = _rich_zone() if rich else make_zone()
    keys = KeySet.initial(seed("ksk"), seed("zsk"), ECDSAP256 if rich else ED25519)
    signed = sign_zone(zone, keys, int(time.time()), policy)  # real clock: the tools check validity now
    text = signed.to_text()
    if tamper:
        text = text.replace("192.0.2.25", "192.0.2.26")  # data changed after signing
        assert "192.0.2.26" in text
    path = tmp_path / "tc.example.zone"
    path.write_text(text)
    Path(str(path) + ".ds").write_text(signed.ds().to_text() + "\n")
    return path


@pytest.mark.parametrize("policy", [SigningPolicy(), NSEC3], ids=["nsec", "nsec3"])
@pytest.mark.parametrize("tool", sorted(TOOLS))
@pytest.mark.parametrize("rich", [False, True], ids=["plain", "delegations-wildcards-p256"])
def test_external_tool_accepts_signed_zone(tmp_path: Path, tool: str, policy: SigningPolicy, rich: bool) -> None:
    path = _export(tmp_path, policy, rich=rich)
    result = _run(tool, TOOLS[tool](path))
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.parametrize("tool", sorted(TOOLS))
def test_external_tool_rejects_tampered_zone(tmp_path: Path, tool: str) -> None:
    path = _export(tmp_path, NSEC3, tamper=True)
    result = _run(tool, TOOLS[tool](path))
    assert result.returncode != 0, "tool accepted a zone with a forged record"
