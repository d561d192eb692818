"""A pure DNSSEC validator: trust anchor -> DS -> DNSKEY -> RRSIG, positive and negative answers.

It receives everything (response message, DNSKEY/DS evidence) as data, so the same code checks our
own authority in tests and answers fetched by a client elsewhere. Failures say *why* (an enum), which
is what operators and the CT/CA layers act on.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass

import dns.dnssec
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.RRSIG
import dns.rrset

from trustchain.dns.denial import NSEC3Params, bitmap_types, covers, nsec3_digest, owner_digest
from trustchain.errors import TrustChainError

__all__ = [
    "MAX_CNAME_CHAIN", "MAX_NSEC3_ITERATIONS", "SECURE", "Bogus", "Failure", "ValidationResult", "Validator",
    "ZoneKeys",
]

RdataType = dns.rdatatype.RdataType
MAX_NSEC3_ITERATIONS = 100  # RFC 9276 3.2: treat more as insecure
MAX_CNAME_CHAIN = 8


class Failure(enum.Enum):
    NO_DNSKEY = "no DNSKEY matches the signature's key tag"
    NO_RRSIG = "no RRSIG"
    EXPIRED = "RRSIG expired"
    NOT_YET_VALID = "RRSIG not yet valid"
    BAD_SIGNATURE = "bad signature"
    DS_MISMATCH = "no DNSKEY matches the DS / trust anchor"
    DENIAL_NOT_PROVEN = "denial of existence not proven"
    UNSUPPORTED = "unsupported response shape"
    MALFORMED = "malformed response"


@dataclass(frozen=True)
class ValidationResult:
    failure: Failure | None
    detail: str = ""

    @property
    def secure(self) -> bool:
        return self.failure is None


SECURE = ValidationResult(None, "secure")


class Bogus(TrustChainError):
    """Raised inside validation, turned into a `ValidationResult` before it leaves the validator."""

    def __init__(self, failure: Failure, detail: str) -> None:
        super().__init__(detail)
        self.result = ValidationResult(failure, f"{failure.value}: {detail}")


@dataclass(frozen=True)
class ZoneKeys:
    """One link of the chain: a zone's DNSKEY RRset with its RRSIGs, and (below the anchor) the DS
    RRset for it with RRSIGs made by the parent zone's keys."""

    dnskey: dns.rrset.RRset
    dnskey_sigs: dns.rrset.RRset | None
    ds: dns.rrset.RRset | None = None
    ds_sigs: dns.rrset.RRset | None = None


class Validator:
    """Configured with a trust anchor: a DS RRset or a DNSKEY RRset (its owner is the anchor zone)."""

    def __init__(self, anchor: dns.rrset.RRset) -> None:
        if anchor.rdtype not in (RdataType.DS, RdataType.DNSKEY):
            raise ValueError("trust anchor must be a DS or DNSKEY RRset")
        self.anchor = anchor

    def trusted_keys(self, chain: Sequence[ZoneKeys], now: int) -> dict[dns.name.Name, dns.rrset.RRset]:
        """Walk the chain from the anchor; raises Bogus on the first broken link."""
        trusted: dict[dns.name.Name, dns.rrset.RRset] = {}
        if not chain:
            raise Bogus(Failure.NO_DNSKEY, "no DNSKEY RRset supplied")
        for i, link in enumerate(chain):
            zone = link.dnskey.name
            if i == 0:
                if zone != self.anchor.name:
                    raise Bogus(
                        Failure.DS_MISMATCH, f"first DNSKEY set is for {zone}, anchor is {self.anchor.name}"
                    )
                ds_like = self.anchor
            else:
                if link.ds is None or link.ds.name != zone:
                    raise Bogus(Failure.DS_MISMATCH, f"no DS for {zone}")
                _verify(link.ds, link.ds_sigs, trusted, now)
                ds_like = link.ds
            entry_keys = _matching_keys(link.dnskey, ds_like)
            if not entry_keys:
                raise Bogus(Failure.DS_MISMATCH, f"no DNSKEY of {zone} matches its {ds_like.rdtype.name}")
            entry = dns.rrset.RRset(zone, link.dnskey.rdclass, RdataType.DNSKEY)
            for key in entry_keys:
                entry.add(key, link.dnskey.ttl)
            _verify(link.dnskey, link.dnskey_sigs, {zone: entry}, now)
            trusted[zone] = link.dnskey
        return trusted

    def validate(
        self, response: dns.message.Message, chain: Sequence[ZoneKeys], now: int
    ) -> ValidationResult:
        try:
            trusted = self.trusted_keys(chain, now)
            self._validate_response(response, trusted, now)
        except Bogus as exc:
            return exc.result
        return SECURE

    def _validate_response(
        self, response: dns.message.Message, trusted: dict[dns.name.Name, dns.rrset.RRset], now: int
    ) -> None:
        if len(response.question) != 1:
            raise Bogus(Failure.MALFORMED, "response must carry exactly one question")
        question = response.question[0]
        current, qtype = question.name, question.rdtype
        for _ in range(MAX_CNAME_CHAIN):
            answer = _find(response.answer, current, qtype)
            if answer is not None:
                _verify(answer, _find_sig(response.answer, current, qtype), trusted, now)
                return
            cname = _find(response.answer, current, RdataType.CNAME) if qtype != RdataType.CNAME else None
            if cname is None:
                break
            _verify(cname, _find_sig(response.answer, current, RdataType.CNAME), trusted, now)
            current = cname[0].target
        else:
            raise Bogus(Failure.UNSUPPORTED, "CNAME chain too long")
        # negative answer for `current`
        for rrset in response.authority:
            if rrset.rdtype in (RdataType.SOA, RdataType.NSEC, RdataType.NSEC3):
                _verify(rrset, _find_sig(response.authority, rrset.name, rrset.rdtype), trusted, now)
        nsecs = [r for r in response.authority if r.rdtype == RdataType.NSEC]
        nsec3s = [r for r in response.authority if r.rdtype == RdataType.NSEC3]
        nxdomain = response.rcode() == dns.rcode.NXDOMAIN
        if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
            raise Bogus(Failure.UNSUPPORTED, f"rcode {dns.rcode.to_text(response.rcode())}")
        if nsec3s:
            ok = _nsec3_nxdomain(current, nsec3s) if nxdomain else _nsec3_nodata(current, qtype, nsec3s)
        elif nsecs:
            ok = _nsec_nxdomain(current, nsecs) if nxdomain else _nsec_nodata(current, qtype, nsecs)
        else:
            ok = False
        if not ok:
            kind = "NXDOMAIN" if nxdomain else "NODATA"
            raise Bogus(Failure.DENIAL_NOT_PROVEN, f"{kind} for {current}/{dns.rdatatype.to_text(qtype)}")


def _find(
    section: Sequence[dns.rrset.RRset], name: dns.name.Name, rdtype: RdataType
) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == rdtype:
            return rrset
    return None


def _find_sig(
    section: Sequence[dns.rrset.RRset], name: dns.name.Name, covered: RdataType
) -> dns.rrset.RRset | None:
    for rrset in section:
        if rrset.name == name and rrset.rdtype == RdataType.RRSIG and rrset.covers == covered:
            return rrset
    return None


def _matching_keys(dnskeys: dns.rrset.RRset, anchor: dns.rrset.RRset) -> list[dns.rdtypes.ANY.DNSKEY.DNSKEY]:
    out = []
    for key in dnskeys:
        assert isinstance(key, dns.rdtypes.ANY.DNSKEY.DNSKEY)
        if anchor.rdtype == RdataType.DNSKEY:
            if key in anchor:
                out.append(key)
            continue
        for ds in anchor:
            if ds.key_tag != dns.dnssec.key_id(key) or ds.algorithm != key.algorithm:
                continue
            try:
                if dns.dnssec.make_ds(dnskeys.name, key, ds.digest_type) == ds:
                    out.append(key)
            except (dns.exception.UnsupportedAlgorithm, ValueError):
                continue
    return out


def _verify(
    rrset: dns.rrset.RRset,
    sigs: dns.rrset.RRset | None,
    trusted: dict[dns.name.Name, dns.rrset.RRset],
    now: int,
) -> None:
    """Accept if any RRSIG verifies; otherwise report the most telling reason."""
    if not sigs:
        raise Bogus(Failure.NO_RRSIG, f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)}")
    failures: list[Failure] = []
    for rrsig in sigs:
        assert isinstance(rrsig, dns.rdtypes.ANY.RRSIG.RRSIG)
        keys = trusted.get(rrsig.signer)
        if keys is None or not rrset.name.is_subdomain(rrsig.signer):
            failures.append(Failure.NO_DNSKEY)
            continue
        if not any(dns.dnssec.key_id(k) == rrsig.key_tag and k.algorithm == rrsig.algorithm for k in keys):
            failures.append(Failure.NO_DNSKEY)
            continue
        if now > rrsig.expiration:
            failures.append(Failure.EXPIRED)
            continue
        if now < rrsig.inception:
            failures.append(Failure.NOT_YET_VALID)
            continue
        if rrsig.labels < len(rrset.name) - 1:
            failures.append(Failure.UNSUPPORTED)  # wildcard expansion: needs a no-closer-match proof
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, rrsig, {rrsig.signer: keys}, now=now)
        except dns.exception.ValidationFailure:
            failures.append(Failure.BAD_SIGNATURE)
            continue
        return
    order = [
        Failure.BAD_SIGNATURE,
        Failure.EXPIRED,
        Failure.NOT_YET_VALID,
        Failure.UNSUPPORTED,
        Failure.NO_DNSKEY,
    ]
    worst = min(failures, key=order.index)
    raise Bogus(worst, f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)}")


# --- NSEC (RFC 4035 5.4) --------------------------------------------------------------------------


def _nsec_nodata(qname: dns.name.Name, qtype: RdataType, nsecs: list[dns.rrset.RRset]) -> bool:
    for rrset in nsecs:
        rdata = rrset[0]
        assert isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC)
        types = bitmap_types(rdata.windows)
        if rrset.name == qname:
            return qtype not in types and RdataType.CNAME not in types
        # empty non-terminal: the covering NSEC points at a name below qname
        if covers(rrset.name, rdata.next, qname) and rdata.next.is_subdomain(qname):
            return True
    return False


def _nsec_nxdomain(qname: dns.name.Name, nsecs: list[dns.rrset.RRset]) -> bool:
    covering = None
    for rrset in nsecs:
        rdata = rrset[0]
        assert isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC)
        if (
            rrset.name != qname
            and covers(rrset.name, rdata.next, qname)
            and not rdata.next.is_subdomain(qname)
        ):
            covering = (rrset.name, rdata.next)
    if covering is None:
        return False
    encloser = max((_common_ancestor(qname, covering[0]), _common_ancestor(qname, covering[1])), key=len)
    wildcard = dns.name.Name((b"*", *encloser.labels))
    return any(r.name != wildcard and covers(r.name, r[0].next, wildcard) for r in nsecs)


def _common_ancestor(a: dns.name.Name, b: dns.name.Name) -> dns.name.Name:
    _, _, common = a.fullcompare(b)
    return dns.name.Name(a.labels[len(a.labels) - common :])


# --- NSEC3 (RFC 5155 8) ---------------------------------------------------------------------------


def _nsec3_params(nsec3s: list[dns.rrset.RRset]) -> NSEC3Params | None:
    rdata = nsec3s[0][0]
    assert isinstance(rdata, dns.rdtypes.ANY.NSEC3.NSEC3)
    if rdata.algorithm != 1 or rdata.iterations > MAX_NSEC3_ITERATIONS:
        return None
    return NSEC3Params(rdata.iterations, rdata.salt)


def _nsec3_match(
    name: dns.name.Name, nsec3s: list[dns.rrset.RRset], params: NSEC3Params
) -> dns.rrset.RRset | None:
    digest = nsec3_digest(name, params)
    for rrset in nsec3s:
        if owner_digest(rrset.name) == digest:
            return rrset
    return None


def _nsec3_covered(name: dns.name.Name, nsec3s: list[dns.rrset.RRset], params: NSEC3Params) -> bool:
    digest = nsec3_digest(name, params)
    for rrset in nsec3s:
        owner = owner_digest(rrset.name)
        if owner is not None and covers(owner, rrset[0].next, digest):
            return True
    return False


def _nsec3_nodata(qname: dns.name.Name, qtype: RdataType, nsec3s: list[dns.rrset.RRset]) -> bool:
    params = _nsec3_params(nsec3s)
    match = _nsec3_match(qname, nsec3s, params) if params else None
    if match is None:
        return False
    types = bitmap_types(match[0].windows)
    return qtype not in types and RdataType.CNAME not in types


def _nsec3_nxdomain(qname: dns.name.Name, nsec3s: list[dns.rrset.RRset]) -> bool:
    params = _nsec3_params(nsec3s)
    if params is None or _nsec3_match(qname, nsec3s, params) is not None:
        return False
    zone = nsec3s[0].name.parent()
    next_closer = qname
    encloser = qname.parent()
    while encloser.is_subdomain(zone):
        if _nsec3_match(encloser, nsec3s, params) is not None:
            wildcard = dns.name.Name((b"*", *encloser.labels))
            return _nsec3_covered(next_closer, nsec3s, params) and _nsec3_covered(wildcard, nsec3s, params)
        if encloser == zone:
            break
        next_closer, encloser = encloser, encloser.parent()
    return False
