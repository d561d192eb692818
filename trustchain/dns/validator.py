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
    DNAME_MISMATCH = "the CNAME does not follow from the DNAME"
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
                _verify_exact(link.ds, link.ds_sigs, trusted, now)
                ds_like = link.ds
            entry_keys = _matching_keys(link.dnskey, ds_like)
            if not entry_keys:
                raise Bogus(Failure.DS_MISMATCH, f"no DNSKEY of {zone} matches its {ds_like.rdtype.name}")
            entry = dns.rrset.RRset(zone, link.dnskey.rdclass, RdataType.DNSKEY)
            for key in entry_keys:
                entry.add(key, link.dnskey.ttl)
            _verify_exact(link.dnskey, link.dnskey_sigs, {zone: entry}, now)
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
        """Follow the answer from the question through CNAMEs and DNAMEs to the data or its denial. Every
        RRset that a wildcard expanded (RRSIG labels below the owner's label count) must come with the
        proof that no closer name exists, else anyone could stretch a wildcard over a real name."""
        if len(response.question) != 1:
            raise Bogus(Failure.MALFORMED, "response must carry exactly one question")
        question = response.question[0]
        current, qtype = question.name, question.rdtype
        expansions: list[tuple[dns.name.Name, dns.name.Name]] = []  # (expanded owner, wildcard's parent)
        for _ in range(MAX_CNAME_CHAIN):
            dname = _dname_above(response.answer, current)  # nothing lives below it: any CNAME is synthesised
            if dname is not None:
                target = _follow_dname(response, dname, current, trusted, now)
                done = qtype == RdataType.CNAME and _find(response.answer, current, RdataType.CNAME) is not None
                if target is None or done:  # YXDOMAIN (the rewrite is too long), or the CNAME was asked for
                    _check_expansions(response, expansions, trusted, now)
                    return
                current = target
                continue
            answer = _find(response.answer, current, qtype)
            if answer is not None:
                _note(expansions, current, _verify(answer, _find_sig(response.answer, current, qtype), trusted, now))
                _check_expansions(response, expansions, trusted, now)
                return
            cname = _find(response.answer, current, RdataType.CNAME) if qtype != RdataType.CNAME else None
            if cname is None:
                break
            sigs = _find_sig(response.answer, current, RdataType.CNAME)
            _note(expansions, current, _verify(cname, sigs, trusted, now))
            current = cname[0].target
        else:
            raise Bogus(Failure.UNSUPPORTED, "CNAME chain too long")
        # negative answer for `current`
        for rrset in response.authority:
            if rrset.rdtype == RdataType.SOA:
                _verify_exact(rrset, _find_sig(response.authority, rrset.name, rrset.rdtype), trusted, now)
        nsecs, nsec3s = _proofs(response, trusted, now)
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
        _check_expansions(response, expansions, trusted, now)


def _note(
    expansions: list[tuple[dns.name.Name, dns.name.Name]], owner: dns.name.Name, encloser: dns.name.Name | None
) -> None:
    if encloser is not None:
        expansions.append((owner, encloser))


def _proofs(
    response: dns.message.Message, trusted: dict[dns.name.Name, dns.rrset.RRset], now: int
) -> tuple[list[dns.rrset.RRset], list[dns.rrset.RRset]]:
    """The authority section's NSEC and NSEC3 RRsets, each verified (they are never wildcard expansions)."""
    nsecs: list[dns.rrset.RRset] = []
    nsec3s: list[dns.rrset.RRset] = []
    for rrset in response.authority:
        if rrset.rdtype in (RdataType.NSEC, RdataType.NSEC3):
            _verify_exact(rrset, _find_sig(response.authority, rrset.name, rrset.rdtype), trusted, now)
            (nsecs if rrset.rdtype == RdataType.NSEC else nsec3s).append(rrset)
    return nsecs, nsec3s


def _check_expansions(
    response: dns.message.Message,
    expansions: list[tuple[dns.name.Name, dns.name.Name]],
    trusted: dict[dns.name.Name, dns.rrset.RRset],
    now: int,
) -> None:
    """RFC 4035 5.3.4 and RFC 5155 8.8: for each wildcard expansion, a signed NSEC/NSEC3 proving that the
    expanded name itself (and every name between it and the wildcard's parent) does not exist."""
    if not expansions:
        return
    nsecs, nsec3s = _proofs(response, trusted, now)
    for owner, encloser in expansions:
        if nsec3s:
            ok = _nsec3_wildcard_expansion(owner, encloser, nsec3s)
        else:
            ok = _nsec_no_closer_match(owner, nsecs) == encloser
        if not ok:
            raise Bogus(Failure.DENIAL_NOT_PROVEN, f"wildcard expansion to {owner}: no proof that it does not exist")


def _dname_above(section: Sequence[dns.rrset.RRset], name: dns.name.Name) -> dns.rrset.RRset | None:
    """The DNAME RRset in `section` owned by the closest proper ancestor of `name`, if any."""
    above = [r for r in section if r.rdtype == RdataType.DNAME and name != r.name and name.is_subdomain(r.name)]
    return max(above, key=lambda r: len(r.name), default=None)


def _follow_dname(
    response: dns.message.Message,
    dname: dns.rrset.RRset,
    current: dns.name.Name,
    trusted: dict[dns.name.Name, dns.rrset.RRset],
    now: int,
) -> dns.name.Name | None:
    """RFC 6672 5.3.3: verify the DNAME, then check that the (unsigned) CNAME for `current` is the rewrite
    the DNAME implies. Returns the name to continue from, None for a signed YXDOMAIN."""
    if len(dname) != 1:
        raise Bogus(Failure.MALFORMED, f"DNAME at {dname.name} must hold one record")
    _verify_exact(dname, _find_sig(response.answer, dname.name, RdataType.DNAME), trusted, now)
    try:
        target: dns.name.Name = current.relativize(dname.name).concatenate(dname[0].target)
    except dns.name.NameTooLong:
        if response.rcode() != dns.rcode.YXDOMAIN:
            raise Bogus(Failure.DNAME_MISMATCH, f"rewrite of {current} by {dname.name} is too long") from None
        return None
    cname = _find(response.answer, current, RdataType.CNAME)
    if cname is not None and (len(cname) != 1 or cname[0].target != target):
        got = ", ".join(str(r.target) for r in cname)
        raise Bogus(Failure.DNAME_MISMATCH, f"CNAME {current} -> {got}, the DNAME at {dname.name} gives {target}")
    return target


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


def _verify_exact(
    rrset: dns.rrset.RRset,
    sigs: dns.rrset.RRset | None,
    trusted: dict[dns.name.Name, dns.rrset.RRset],
    now: int,
) -> None:
    """`_verify` for RRsets that a wildcard can never produce (keys, DS, SOA, DNAME, denial records)."""
    if _verify(rrset, sigs, trusted, now) is not None:
        raise Bogus(Failure.MALFORMED, f"{rrset.name}/{dns.rdatatype.to_text(rrset.rdtype)} from a wildcard")


def _verify(
    rrset: dns.rrset.RRset,
    sigs: dns.rrset.RRset | None,
    trusted: dict[dns.name.Name, dns.rrset.RRset],
    now: int,
) -> dns.name.Name | None:
    """Accept if any RRSIG verifies; otherwise report the most telling reason. Returns the wildcard's
    parent (the closest encloser) when the accepted RRSIG says the RRset is a wildcard expansion
    (RFC 4035 5.3.2), None otherwise: the caller then owes a proof that the owner does not exist."""
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
        owner_labels = len(rrset.name) - 1  # RFC 4035 5.3.1: neither the root nor a leading "*" counts
        count = owner_labels - (rrset.name.labels[0] == b"*")
        if rrsig.labels > count:
            failures.append(Failure.BAD_SIGNATURE)
            continue
        try:
            dns.dnssec.validate_rrsig(rrset, rrsig, {rrsig.signer: keys}, now=now)
        except dns.exception.ValidationFailure:
            failures.append(Failure.BAD_SIGNATURE)
            continue
        if rrsig.labels < count:
            return dns.name.Name(rrset.name.labels[owner_labels - rrsig.labels :])
        return None
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


def _lacks(types: frozenset[int], qtype: RdataType) -> bool:
    """A bitmap proves NODATA for `qtype` when it has neither that type nor a CNAME to follow."""
    return qtype not in types and RdataType.CNAME not in types


def _cut_or_dname(types: frozenset[int]) -> bool:
    """An NSEC/NSEC3 of a delegation (NS without SOA) or a DNAME says nothing about the names below it
    (RFC 4035 5.2, RFC 5155 8.3, RFC 6672 5.3.2)."""
    return (RdataType.NS in types and RdataType.SOA not in types) or RdataType.DNAME in types


def _nsec_no_closer_match(qname: dns.name.Name, nsecs: list[dns.rrset.RRset]) -> dns.name.Name | None:
    """An NSEC proving that `qname` does not exist; returns the closest encloser it implies (the longer
    common ancestor of `qname` with the NSEC's owner and next name), None without such an NSEC."""
    for rrset in nsecs:
        rdata = rrset[0]
        assert isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC)
        if rrset.name == qname or not covers(rrset.name, rdata.next, qname) or rdata.next.is_subdomain(qname):
            continue  # a name below qname exists: qname is an empty non-terminal, not absent
        if qname.is_subdomain(rrset.name) and _cut_or_dname(bitmap_types(rdata.windows)):
            continue
        return max((_common_ancestor(qname, rrset.name), _common_ancestor(qname, rdata.next)), key=len)
    return None


def _nsec_nodata(qname: dns.name.Name, qtype: RdataType, nsecs: list[dns.rrset.RRset]) -> bool:
    for rrset in nsecs:
        rdata = rrset[0]
        assert isinstance(rdata, dns.rdtypes.ANY.NSEC.NSEC)
        if rrset.name == qname:
            return _lacks(bitmap_types(rdata.windows), qtype)
        # empty non-terminal: the covering NSEC points at a name below qname
        if covers(rrset.name, rdata.next, qname) and rdata.next.is_subdomain(qname):
            return True
    # wildcard NODATA (RFC 4035 3.1.3.4): qname does not exist, the wildcard that matches it lacks qtype
    encloser = _nsec_no_closer_match(qname, nsecs)
    if encloser is None:
        return False
    wildcard = dns.name.Name((b"*", *encloser.labels))
    match = next((r for r in nsecs if r.name == wildcard), None)
    return match is not None and _lacks(bitmap_types(match[0].windows), qtype)


def _nsec_nxdomain(qname: dns.name.Name, nsecs: list[dns.rrset.RRset]) -> bool:
    encloser = _nsec_no_closer_match(qname, nsecs)
    if encloser is None:
        return False
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


def _nsec3_closest_encloser(
    qname: dns.name.Name, nsec3s: list[dns.rrset.RRset], params: NSEC3Params
) -> dns.name.Name | None:
    """RFC 5155 8.3: the closest encloser proof for a `qname` with no NSEC3 of its own: the nearest
    ancestor with a matching NSEC3 (not a delegation or DNAME), and the next closer name covered."""
    if qname == dns.name.root or _nsec3_match(qname, nsec3s, params) is not None:
        return None
    zone = nsec3s[0].name.parent()
    next_closer, encloser = qname, qname.parent()
    while encloser.is_subdomain(zone):
        match = _nsec3_match(encloser, nsec3s, params)
        if match is not None:
            if _cut_or_dname(bitmap_types(match[0].windows)):
                return None
            return encloser if _nsec3_covered(next_closer, nsec3s, params) else None
        if encloser == zone:
            break
        next_closer, encloser = encloser, encloser.parent()
    return None


def _nsec3_nodata(qname: dns.name.Name, qtype: RdataType, nsec3s: list[dns.rrset.RRset]) -> bool:
    params = _nsec3_params(nsec3s)
    if params is None:
        return False
    match = _nsec3_match(qname, nsec3s, params)
    if match is None:  # wildcard NODATA (RFC 5155 8.7): closest encloser proof, then the wildcard's NSEC3
        encloser = _nsec3_closest_encloser(qname, nsec3s, params)
        if encloser is None:
            return False
        match = _nsec3_match(dns.name.Name((b"*", *encloser.labels)), nsec3s, params)
        if match is None:
            return False
    return _lacks(bitmap_types(match[0].windows), qtype)


def _nsec3_nxdomain(qname: dns.name.Name, nsec3s: list[dns.rrset.RRset]) -> bool:
    params = _nsec3_params(nsec3s)
    encloser = _nsec3_closest_encloser(qname, nsec3s, params) if params is not None else None
    if encloser is None:
        return False
    assert params is not None
    return _nsec3_covered(dns.name.Name((b"*", *encloser.labels)), nsec3s, params)


def _nsec3_wildcard_expansion(owner: dns.name.Name, encloser: dns.name.Name, nsec3s: list[dns.rrset.RRset]) -> bool:
    """RFC 5155 8.8: the RRSIG's label count names the closest encloser; an NSEC3 must cover the next
    closer name (one label longer), proving no closer match than the wildcard exists."""
    params = _nsec3_params(nsec3s)
    if params is None or owner == encloser or not owner.is_subdomain(encloser):
        return False
    next_closer = dns.name.Name(owner.labels[len(owner) - len(encloser) - 1 :])
    return _nsec3_covered(next_closer, nsec3s, params)
