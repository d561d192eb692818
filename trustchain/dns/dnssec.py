"""Signing a `Zone` with Ed25519 (algorithm 15) or ECDSA P-256 (algorithm 13): DNSKEY, CDS/CDNSKEY, RRSIG
on every authoritative RRset, NSEC or NSEC3 denial; and the served view of a zone signed elsewhere.

Below a delegation the zone is not authoritative: the NS RRset at a cut and the glue under it are
served but neither signed nor given NSEC/NSEC3 records of their own (RFC 4035 2.2); the DS at a cut is.

Signature times come from consensus time quantised to a signing epoch of `policy.refresh` seconds, so
all replicas sign with identical inception/expiration and unchanged RRsets keep their signatures
within an epoch (re-signing after an update only signs what changed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.RRSIG
import dns.rrset

from trustchain.dns.denial import NSEC3Params, nsec3_chain, nsec_chain
from trustchain.dns.keys import KeySet, Role, ZoneKey, make_ds
from trustchain.dns.zone import Zone

__all__ = ["RRKey", "SignedZone", "SigningPolicy", "presigned_view", "sign_zone"]

RdataType = dns.rdatatype.RdataType
RRKey = tuple[dns.name.Name, RdataType]
#: Signed by the KSK: the key set itself, and CDS/CDNSKEY, which RFC 7344 4.1 wants signed by a key the
#: parent's DS already points at.
_KSK_SIGNED = frozenset({RdataType.DNSKEY, RdataType.CDS, RdataType.CDNSKEY})
_SigMemoKey = tuple[dns.name.Name, RdataType, int, frozenset[bytes], int, int, int]


@dataclass(frozen=True)
class SigningPolicy:
    validity: int = 14 * 86400  # RRSIG lifetime from the epoch start
    refresh: int = 86400  # epoch length: signatures always keep >= validity - refresh of life
    skew: int = 3600  # inception back-dated for validators with slow clocks
    dnskey_ttl: int = 3600
    nsec3: NSEC3Params | None = None  # None: NSEC
    publish_cds: bool = True  # CDS and CDNSKEY at the apex (RFC 7344), for parents that follow them

    def __post_init__(self) -> None:
        if not (self.refresh > 0 and self.validity > 2 * self.refresh and self.skew >= 0):
            raise ValueError("signing policy needs 0 < 2*refresh < validity and skew >= 0")

    def epoch(self, now: int) -> int:
        return now - now % self.refresh


@dataclass
class SignedZone:
    """The signed form of one zone serial. Read by the authority and exported for external checks."""

    origin: dns.name.Name
    serial: int
    zone_digest: bytes
    epoch: int
    inception: int
    expiration: int
    policy: SigningPolicy
    keys: KeySet | None  # None: presigned, the keys are the outside signer's
    rrsets: dict[RRKey, dns.rrset.RRset]
    sigs: dict[RRKey, dns.rrset.RRset]
    _memo: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG] = field(default_factory=dict, repr=False)

    def needs_resign(self, now: int) -> bool:
        """True once consensus time enters a new signing epoch, well before any RRSIG expires (never for
        a presigned zone: its signer refreshes it)."""
        return self.keys is not None and self.policy.epoch(now) != self.epoch

    def is_current(self, zone: Zone) -> bool:
        """False if `zone` changed since signing (its data must be re-signed before serving)."""
        return zone.origin == self.origin and zone.digest() == self.zone_digest

    def get(self, name: dns.name.Name, rdtype: RdataType) -> dns.rrset.RRset | None:
        return self.rrsets.get((name, rdtype))

    def rrsig(self, name: dns.name.Name, rdtype: RdataType) -> dns.rrset.RRset | None:
        return self.sigs.get((name, rdtype))

    def ds(self, ttl: int = 3600) -> dns.rrset.RRset:
        """DS RRset to hand to the parent zone (SHA-256), one per key with the SEP flag."""
        if self.keys is not None:
            return self.keys.ds_records(self.origin, ttl)
        out = dns.rrset.RRset(self.origin, dns.rdataclass.IN, RdataType.DS)
        for dnskey in self.rrsets.get((self.origin, RdataType.DNSKEY), ()):
            if dnskey.flags & 0x0001:
                out.add(make_ds(self.origin, dnskey), ttl)
        return out

    def all_rrsets(self) -> Iterator[dns.rrset.RRset]:
        """Each RRset followed by its RRSIGs, in canonical order."""
        for key in sorted(self.rrsets):
            yield self.rrsets[key]
            sig = self.sigs.get(key)
            if sig is not None:
                yield sig

    def to_text(self) -> str:
        """A zone file (absolute names) that ldns-verify-zone, kzonecheck and dnssec-verify accept."""
        lines = [f"$ORIGIN {self.origin.to_text()}"]
        for rrset in self.all_rrsets():
            lines.append(rrset.to_text(origin=None, relativize=False))
        return "\n".join(lines) + "\n"


def sign_zone(
    zone: Zone,
    keys: KeySet,
    now: int,
    policy: SigningPolicy | None = None,
    previous: SignedZone | None = None,
) -> SignedZone:
    """Sign `zone` at consensus time `now`. Pass the `previous` SignedZone to reuse its signatures for
    RRsets unchanged within the same epoch; the result is byte-identical to signing from scratch."""
    policy = policy or SigningPolicy()
    origin = zone.origin
    epoch = policy.epoch(now)
    inception, expiration = epoch - policy.skew, epoch + policy.validity
    assert inception < now < expiration

    assert not zone.presigned, "a presigned zone is served as given (presigned_view)"
    rrsets: dict[RRKey, dns.rrset.RRset] = {(r.name, r.rdtype): r for r in zone.rrsets()}
    rrsets[(origin, RdataType.DNSKEY)] = keys.dnskey_rrset(origin, policy.dnskey_ttl)
    if policy.publish_cds:
        for rrset in keys.cds_rrsets(origin, policy.dnskey_ttl):
            rrsets[(origin, rrset.rdtype)] = rrset
    soa_rrset = rrsets[(origin, RdataType.SOA)]
    denial_ttl = min(soa_rrset.ttl, int(zone.soa.minimum))  # RFC 9077
    if policy.nsec3 is not None:
        param = dns.rrset.from_rdata(origin, 0, policy.nsec3.rdata())
        rrsets[(origin, RdataType.NSEC3PARAM)] = param

    cuts = zone.cuts()
    glue = frozenset(n for n, _ in rrsets if n not in cuts and _under(n, cuts))
    types_by_name: dict[dns.name.Name, set[RdataType]] = {}
    for name, rdtype in rrsets:
        if name not in glue:
            types_by_name.setdefault(name, set()).add(rdtype)
    frozen = {n: frozenset(t) for n, t in types_by_name.items()}
    unsigned = frozenset(c for c in cuts if RdataType.DS not in frozen[c])
    chain = (
        nsec_chain(origin, frozen, denial_ttl)
        if policy.nsec3 is None
        else nsec3_chain(origin, frozen, policy.nsec3, denial_ttl, unsigned)
    )
    for rrset in chain:
        rrsets[(rrset.name, rrset.rdtype)] = rrset

    memo_in = previous._memo if previous is not None and previous.origin == origin else {}
    memo_out: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG] = {}
    sigs: dict[RRKey, dns.rrset.RRset] = {}
    ksks, zsks = keys.signing(Role.KSK), keys.signing(Role.ZSK)
    for key in sorted(rrsets):
        rrset = rrsets[key]
        if key[0] in glue or (key[0] in cuts and key[1] == RdataType.NS):
            continue  # not authoritative here: the child zone signs its own
        signers = ksks if rrset.rdtype in _KSK_SIGNED else zsks
        sig_rrset = dns.rrset.RRset(rrset.name, rrset.rdclass, RdataType.RRSIG, rrset.rdtype)
        for signer in signers:
            rrsig = _sign_one(rrset, signer, origin, inception, expiration, memo_in, memo_out)
            sig_rrset.add(rrsig, rrset.ttl)
        sigs[key] = sig_rrset

    return SignedZone(
        origin=origin,
        serial=zone.serial,
        zone_digest=zone.digest(),
        epoch=epoch,
        inception=inception,
        expiration=expiration,
        policy=policy,
        keys=keys,
        rrsets=rrsets,
        sigs=sigs,
        _memo=memo_out,
    )


def _under(name: dns.name.Name, cuts: frozenset[dns.name.Name]) -> bool:
    return any(name.is_subdomain(cut) for cut in cuts)


def presigned_view(zone: Zone) -> SignedZone:
    """A presigned zone as the authority serves it: its records, and its RRSIGs split by the type they
    cover (each with the TTL of the RRset it covers, RFC 4035 2.2). Valid until the first of its
    signatures expires: after that the authority answers SERVFAIL rather than serve a dead signature."""
    assert zone.presigned
    rrsets: dict[RRKey, dns.rrset.RRset] = {}
    sigs: dict[RRKey, dns.rrset.RRset] = {}
    for rrset in zone.rrsets():
        if rrset.rdtype != RdataType.RRSIG:
            rrsets[(rrset.name, rrset.rdtype)] = rrset
    expiration, inception = 2**32 - 1, 0
    for rrset in zone.rrsets():
        if rrset.rdtype != RdataType.RRSIG:
            continue
        for rrsig in sorted(rrset, key=lambda r: r.to_digestable(dns.name.root)):
            covered = rrsets.get((rrset.name, rrsig.type_covered))
            sig = sigs.get((rrset.name, rrsig.type_covered))
            if sig is None:
                sig = sigs[(rrset.name, rrsig.type_covered)] = dns.rrset.RRset(
                    rrset.name, rrset.rdclass, RdataType.RRSIG, rrsig.type_covered)
            sig.add(rrsig, covered.ttl if covered is not None else rrset.ttl)
            expiration, inception = min(expiration, rrsig.expiration), max(inception, rrsig.inception)
    return SignedZone(origin=zone.origin, serial=zone.serial, zone_digest=zone.digest(), epoch=0,
                      inception=inception, expiration=expiration, policy=SigningPolicy(), keys=None,
                      rrsets=rrsets, sigs=sigs)


def _sign_one(
    rrset: dns.rrset.RRset,
    signer: ZoneKey,
    origin: dns.name.Name,
    inception: int,
    expiration: int,
    memo_in: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG],
    memo_out: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG],
) -> dns.rdtypes.ANY.RRSIG.RRSIG:
    data = frozenset(r.to_digestable(origin) for r in rrset)
    memo_key: _SigMemoKey = (rrset.name, rrset.rdtype, rrset.ttl, data, signer.tag, inception, expiration)
    rrsig = memo_in.get(memo_key)
    if rrsig is None:
        rrsig = dns.dnssec.sign(
            rrset,
            signer.private_key,
            origin,
            signer.dnskey,
            inception=inception,
            expiration=expiration,
            origin=origin,
        )
    memo_out[memo_key] = rrsig
    return rrsig
