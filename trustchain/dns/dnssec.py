"""Signing a `Zone` with Ed25519 (algorithm 15): DNSKEY, RRSIG on every RRset, NSEC or NSEC3 denial.

Signature times come from consensus time quantised to a signing epoch of `policy.refresh` seconds, so
all replicas sign with identical inception/expiration and unchanged RRsets keep their signatures
within an epoch (re-signing after an update only signs what changed).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field

import dns.dnssec
import dns.name
import dns.rdatatype
import dns.rdtypes.ANY.RRSIG
import dns.rrset

from trustchain.dns.denial import NSEC3Params, nsec3_chain, nsec_chain
from trustchain.dns.keys import KeySet, Role, ZoneKey
from trustchain.dns.zone import Zone

__all__ = ["RRKey", "SignedZone", "SigningPolicy", "sign_zone"]

RdataType = dns.rdatatype.RdataType
RRKey = tuple[dns.name.Name, RdataType]
_SigMemoKey = tuple[dns.name.Name, RdataType, int, frozenset[bytes], int, int, int]


@dataclass(frozen=True)
class SigningPolicy:
    validity: int = 14 * 86400  # RRSIG lifetime from the epoch start
    refresh: int = 86400  # epoch length: signatures always keep >= validity - refresh of life
    skew: int = 3600  # inception back-dated for validators with slow clocks
    dnskey_ttl: int = 3600
    nsec3: NSEC3Params | None = None  # None: NSEC

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
    keys: KeySet
    rrsets: dict[RRKey, dns.rrset.RRset]
    sigs: dict[RRKey, dns.rrset.RRset]
    _memo: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG] = field(default_factory=dict, repr=False)

    def needs_resign(self, now: int) -> bool:
        """True once consensus time enters a new signing epoch, well before any RRSIG expires."""
        return self.policy.epoch(now) != self.epoch

    def is_current(self, zone: Zone) -> bool:
        """False if `zone` changed since signing (its data must be re-signed before serving)."""
        return zone.origin == self.origin and zone.digest() == self.zone_digest

    def get(self, name: dns.name.Name, rdtype: RdataType) -> dns.rrset.RRset | None:
        return self.rrsets.get((name, rdtype))

    def rrsig(self, name: dns.name.Name, rdtype: RdataType) -> dns.rrset.RRset | None:
        return self.sigs.get((name, rdtype))

    def ds(self, ttl: int = 3600) -> dns.rrset.RRset:
        """DS RRset to hand to the parent zone (SHA-256)."""
        return self.keys.ds_records(self.origin, ttl)

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

    rrsets: dict[RRKey, dns.rrset.RRset] = {(r.name, r.rdtype): r for r in zone.rrsets()}
    rrsets[(origin, RdataType.DNSKEY)] = keys.dnskey_rrset(origin, policy.dnskey_ttl)
    soa_rrset = rrsets[(origin, RdataType.SOA)]
    denial_ttl = min(soa_rrset.ttl, int(zone.soa.minimum))  # RFC 9077
    if policy.nsec3 is not None:
        param = dns.rrset.from_rdata(origin, 0, policy.nsec3.rdata())
        rrsets[(origin, RdataType.NSEC3PARAM)] = param

    types_by_name: dict[dns.name.Name, set[RdataType]] = {}
    for name, rdtype in rrsets:
        types_by_name.setdefault(name, set()).add(rdtype)
    frozen = {n: frozenset(t) for n, t in types_by_name.items()}
    chain = (
        nsec_chain(origin, frozen, denial_ttl)
        if policy.nsec3 is None
        else nsec3_chain(origin, frozen, policy.nsec3, denial_ttl)
    )
    for rrset in chain:
        rrsets[(rrset.name, rrset.rdtype)] = rrset

    memo_in = previous._memo if previous is not None and previous.origin == origin else {}
    memo_out: dict[_SigMemoKey, dns.rdtypes.ANY.RRSIG.RRSIG] = {}
    sigs: dict[RRKey, dns.rrset.RRset] = {}
    ksks, zsks = keys.signing(Role.KSK), keys.signing(Role.ZSK)
    for key in sorted(rrsets):
        rrset = rrsets[key]
        signers = ksks if rrset.rdtype == RdataType.DNSKEY else zsks
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
