"""Authenticated denial of existence: NSEC (RFC 4034) and NSEC3 (RFC 5155) chains and the ordering
helpers that the authority (choosing proofs) and the validator (checking them) share.

dnspython hashes NSEC3 names but builds no chains, so the chain (including empty non-terminals,
RFC 5155 7.1) is built here. Parameters follow RFC 9276: SHA-1, 0 extra iterations, empty salt, no
opt-out.
"""

from __future__ import annotations

import base64
import bisect
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import dns.dnssec
import dns.name
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.NSEC
import dns.rdtypes.ANY.NSEC3
import dns.rdtypes.ANY.NSEC3PARAM
import dns.rdtypes.util
import dns.rrset

__all__ = [
    "SHA1", "NSEC3Params", "bitmap_types", "covers", "find_covering", "hashed_owner", "nsec3_chain", "nsec3_digest",
    "nsec_chain", "owner_digest", "with_empty_non_terminals",
]

RdataType = dns.rdatatype.RdataType
SHA1 = 1


@dataclass(frozen=True)
class NSEC3Params:
    iterations: int = 0
    salt: bytes = b""

    def rdata(self) -> dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM:
        return dns.rdtypes.ANY.NSEC3PARAM.NSEC3PARAM(  # type: ignore[no-untyped-call]  # dnspython rdata constructors are untyped
            dns.rdataclass.IN, RdataType.NSEC3PARAM, SHA1, 0, self.iterations, self.salt
        )


def nsec3_digest(name: dns.name.Name, params: NSEC3Params) -> bytes:
    """Raw 20-byte hash; dnspython returns base32hex text, which we decode to compare bytewise."""
    text = dns.dnssec.nsec3_hash(name, params.salt, params.iterations, SHA1)
    return base64.b32hexdecode(text)


def hashed_owner(digest: bytes, origin: dns.name.Name) -> dns.name.Name:
    label = base64.b32hexencode(digest).decode().lower().encode()
    return dns.name.Name((label, *origin.labels))


def owner_digest(owner: dns.name.Name) -> bytes | None:
    """Inverse of `hashed_owner` for the first label; None if it is not valid base32hex of 20 bytes."""
    if len(owner.labels) < 2:
        return None
    try:
        raw = base64.b32hexdecode(owner.labels[0].upper())
    except ValueError:
        return None
    return raw if len(raw) == 20 else None


class _Ordered(Protocol):
    def __lt__(self, other: Any, /) -> bool: ...


K = TypeVar("K", bound=_Ordered)


def covers(owner: K, nxt: K, key: K) -> bool:
    """True if `key` falls strictly between `owner` and `nxt` in a cyclic chain (the last link wraps).
    Works for names (NSEC, canonical order) and raw hashes (NSEC3)."""
    if owner < nxt:
        return owner < key and key < nxt
    return owner < key or key < nxt  # last link (or a single-link chain) wraps around


def with_empty_non_terminals(
    origin: dns.name.Name, types_by_name: Mapping[dns.name.Name, frozenset[RdataType]]
) -> dict[dns.name.Name, frozenset[RdataType]]:
    """Add every ancestor between an owner and the apex with no types: they exist (RFC 4592 2.2.2)."""
    out = dict(types_by_name)
    for name in types_by_name:
        parent = name
        while parent != origin:
            parent = parent.parent()
            out.setdefault(parent, frozenset())
    return out


def nsec_chain(
    origin: dns.name.Name, types_by_name: Mapping[dns.name.Name, frozenset[RdataType]], ttl: int
) -> list[dns.rrset.RRset]:
    """One NSEC per owner with data (empty non-terminals get none in NSEC, RFC 4035 2.3)."""
    names = sorted(n for n, types in types_by_name.items() if types)
    assert names and names[0] == origin
    out = []
    for i, name in enumerate(names):
        nxt = names[(i + 1) % len(names)]
        types = sorted(types_by_name[name] | {RdataType.RRSIG, RdataType.NSEC})
        rdata = dns.rdtypes.ANY.NSEC.NSEC(  # type: ignore[no-untyped-call]  # dnspython rdata constructors are untyped
            dns.rdataclass.IN, RdataType.NSEC, nxt, dns.rdtypes.util.Bitmap.from_rdtypes(types).windows
        )
        out.append(dns.rrset.from_rdata(name, ttl, rdata))
    return out


def nsec3_chain(
    origin: dns.name.Name,
    types_by_name: Mapping[dns.name.Name, frozenset[RdataType]],
    params: NSEC3Params,
    ttl: int,
    unsigned: frozenset[dns.name.Name] = frozenset(),
) -> list[dns.rrset.RRset]:
    """One NSEC3 per name, empty non-terminals included, ordered by hash. Names in `unsigned` (delegations
    without DS) hold no signed RRset, so their bitmap has no RRSIG (RFC 5155 7.1)."""
    all_names = with_empty_non_terminals(origin, types_by_name)
    hashed = sorted((nsec3_digest(name, params), name) for name in all_names)
    digests = [d for d, _ in hashed]
    assert len(set(digests)) == len(digests), "NSEC3 hash collision"
    out = []
    for i, (digest, name) in enumerate(hashed):
        nxt = digests[(i + 1) % len(digests)]
        types = set(all_names[name])
        if types and name not in unsigned:
            types.add(RdataType.RRSIG)
        rdata = dns.rdtypes.ANY.NSEC3.NSEC3(  # type: ignore[no-untyped-call]  # dnspython rdata constructors are untyped
            dns.rdataclass.IN,
            RdataType.NSEC3,
            SHA1,
            0,
            params.iterations,
            params.salt,
            nxt,
            dns.rdtypes.util.Bitmap.from_rdtypes(sorted(types)).windows,
        )
        out.append(dns.rrset.from_rdata(hashed_owner(digest, origin), ttl, rdata))
    return out


def find_covering(owners: Sequence[K], key: K) -> int:
    """Index of the chain link whose owner is the greatest <= key (cyclic), for a sorted owner list."""
    assert owners
    i = bisect.bisect_right(owners, key) - 1
    return i % len(owners)


def bitmap_types(windows: Sequence[tuple[int, bytes]]) -> frozenset[int]:
    """Decode an NSEC/NSEC3 type bitmap (RFC 4034 4.1.2) into type numbers."""
    out = set()
    for window, bitmap in windows:
        for i, byte in enumerate(bitmap):
            for bit in range(8):
                if byte & (0x80 >> bit):
                    out.add(window * 256 + i * 8 + bit)
    return frozenset(out)
