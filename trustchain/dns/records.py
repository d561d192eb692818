"""Validation of the names and record data a TrustChain zone accepts.

Kept apart from the zone model so the rules that reject an update (and the wording of each rejection)
live in one place; the zone only sequences and applies them.
"""

from __future__ import annotations

import re

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype

from trustchain.errors import TrustChainError

__all__ = [
    "APEX_ONLY_TYPES", "MAX_TTL", "PRESIGNED_TYPES", "UPDATABLE_TYPES", "ZONE_TYPES", "ZoneUpdateError", "check_ttl",
    "is_valid_label", "parse_owner", "parse_rdata", "parse_type",
]

RdataType = dns.rdatatype.RdataType

#: Types an update may write. SOA is owned by the zone itself (serial); DNSSEC types by the signer. NS below
#: the apex is a delegation and DS sits only beside it (`trustchain.dns.zone_rules`).
UPDATABLE_TYPES: frozenset[RdataType] = frozenset({
    RdataType.A, RdataType.AAAA, RdataType.TXT, RdataType.MX, RdataType.CNAME, RdataType.CAA, RdataType.NS,
    RdataType.DS, RdataType.TLSA, RdataType.SRV, RdataType.PTR, RdataType.HTTPS, RdataType.SVCB, RdataType.SSHFP,
    RdataType.NAPTR, RdataType.DNAME,
})
#: What a zone signed elsewhere ("presigned") also carries, served as given and never re-signed.
PRESIGNED_TYPES: frozenset[RdataType] = frozenset({
    RdataType.DNSKEY, RdataType.RRSIG, RdataType.NSEC, RdataType.NSEC3, RdataType.NSEC3PARAM, RdataType.CDS,
    RdataType.CDNSKEY,
})
#: Types that only the apex may hold.
APEX_ONLY_TYPES: frozenset[RdataType] = frozenset({
    RdataType.SOA, RdataType.DNSKEY, RdataType.NSEC3PARAM, RdataType.CDS, RdataType.CDNSKEY,
})
#: Types any zone may contain at all (DNSSEC ones only when presigned).
ZONE_TYPES: frozenset[RdataType] = UPDATABLE_TYPES | PRESIGNED_TYPES | {RdataType.SOA}

#: RFC 2181 section 8: TTLs are 31-bit unsigned.
MAX_TTL = 2**31 - 1

_LABEL_RE = re.compile(rb"^[a-z0-9_]([a-z0-9_-]{0,61}[a-z0-9_])?$")


class ZoneUpdateError(TrustChainError, ValueError):
    """A rejected update. `field` names what was wrong (e.g. ``ops[2].ttl``) so callers can report it."""

    def __init__(self, field: str, reason: str) -> None:
        super().__init__(f"{field}: {reason}")
        self.field = field
        self.reason = reason


def is_valid_label(label: bytes) -> bool:
    """A label an owner name in a TrustChain zone may have (lower-case letters, digits, '-', '_')."""
    return _LABEL_RE.match(label) is not None


def parse_owner(text: object, origin: dns.name.Name, field: str) -> dns.name.Name:
    """Parse an owner name (relative to `origin` unless it ends in a dot) and lower-case it, so that
    equal names always serialise identically across replicas."""
    if not isinstance(text, str) or not text:
        raise ZoneUpdateError(field, "malformed name: must be a non-empty string")
    try:
        name = dns.name.from_text(text, origin=origin)
    except dns.exception.DNSException as exc:
        raise ZoneUpdateError(field, f"malformed name {text!r}: {exc}") from exc
    name = name.canonicalize()
    if not name.is_subdomain(origin):
        raise ZoneUpdateError(field, f"name {name} is out of zone {origin}")
    for i, label in enumerate(name.relativize(origin).labels):
        if label == b"*":
            if i == 0:
                continue  # a wildcard owner (RFC 4592): '*' as the leftmost label only
            raise ZoneUpdateError(field, f"malformed name {text!r}: '*' is a wildcard only as the leftmost label")
        if not _LABEL_RE.match(label):
            raise ZoneUpdateError(
                field, f"malformed name {text!r}: label {label!r} must be letters, digits, '-' or '_'"
            )
    return name


def parse_type(text: object, field: str, *, presigned: bool = False) -> RdataType:
    """Map a type mnemonic to an updatable type (a presigned zone's updates may also carry DNSSEC types)."""
    if not isinstance(text, str):
        raise ZoneUpdateError(field, "unknown type: must be a string such as 'A'")
    try:
        rdtype = dns.rdatatype.from_text(text)
    except dns.exception.DNSException as exc:
        raise ZoneUpdateError(field, f"unknown type {text!r}") from exc
    if rdtype in UPDATABLE_TYPES or (presigned and rdtype in PRESIGNED_TYPES):
        return rdtype
    allowed = ", ".join(sorted(t.name for t in UPDATABLE_TYPES))
    if rdtype in PRESIGNED_TYPES:
        raise ZoneUpdateError(field, f"type {text!r}: DNSSEC records are the signer's, except in a presigned zone")
    raise ZoneUpdateError(field, f"unknown type {text!r}: updatable types are {allowed}")


def check_ttl(ttl: object, field: str) -> int:
    if not isinstance(ttl, int) or isinstance(ttl, bool):
        raise ZoneUpdateError(field, "bad TTL: must be an integer")
    if not 0 <= ttl <= MAX_TTL:
        raise ZoneUpdateError(field, f"bad TTL {ttl}: must be within 0..{MAX_TTL}")
    return ttl


def parse_rdata(rdtype: RdataType, text: object, origin: dns.name.Name, field: str) -> dns.rdata.Rdata:
    """Parse one record's presentation-format data; relative names in it are relative to `origin`."""
    if not isinstance(text, str) or not text.strip():
        raise ZoneUpdateError(field, "record data must be a non-empty string")
    try:
        rdata = dns.rdata.from_text(dns.rdataclass.IN, rdtype, text, origin=origin, relativize=False)
    except dns.exception.DNSException as exc:
        raise ZoneUpdateError(field, _explain(rdtype, text, exc)) from exc
    except ValueError as exc:  # some rdata constructors raise plain ValueError on range errors
        raise ZoneUpdateError(field, f"bad {rdtype.name} data {text!r}: {exc}") from exc
    return rdata


def _explain(rdtype: RdataType, text: str, exc: Exception) -> str:
    if rdtype == RdataType.A:
        return f"bad IP address {text!r}: not an IPv4 address"
    if rdtype == RdataType.AAAA:
        return f"bad IP address {text!r}: not an IPv6 address"
    if rdtype == RdataType.TXT and "too long" in str(exc):
        return "TXT string over 255 bytes"
    return f"bad {rdtype.name} data {text!r}: {exc}"
