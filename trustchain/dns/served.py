"""Lookup indexes over one served zone, and the name-tree questions an authoritative answer asks:
where the zone cut above a name is (RFC 1034 4.3.2), whether a DNAME rewrites it (RFC 6672), which
wildcard synthesises it (RFC 4592), and which NSEC/NSEC3 records prove what does not exist.

Built once per load from the signed zone (or the unsigned zone, for a server without keys), so every
query only does dictionary lookups and short walks up the name.
"""

from __future__ import annotations

from collections.abc import Iterable

import dns.name
import dns.rdatatype
import dns.rrset

from trustchain.dns.denial import NSEC3Params, find_covering, nsec3_digest, owner_digest, with_empty_non_terminals
from trustchain.dns.dnssec import SignedZone
from trustchain.dns.zone import Zone

__all__ = ["RRKey", "ServedZone"]

RdataType = dns.rdatatype.RdataType
RRKey = tuple[dns.name.Name, RdataType]
_WILD = b"*"


class ServedZone:
    """Lookup indexes over one zone's (signed or unsigned) data."""

    def __init__(self, zone: Zone, signed: SignedZone | None) -> None:
        self.origin = zone.origin
        self.signed = signed
        source: Iterable[dns.rrset.RRset] = signed.rrsets.values() if signed else zone.rrsets()
        self.rrsets: dict[RRKey, dns.rrset.RRset] = {}
        self.nsec3: dict[bytes, dns.rrset.RRset] = {}
        for rrset in source:
            if rrset.rdtype == RdataType.NSEC3:
                digest = owner_digest(rrset.name)
                assert digest is not None
                self.nsec3[digest] = rrset
            elif rrset.rdtype != RdataType.RRSIG:  # an unsigned view of a presigned zone
                self.rrsets[(rrset.name, rrset.rdtype)] = rrset
        self.types: dict[dns.name.Name, list[RdataType]] = {}
        for name, rdtype in sorted(self.rrsets):
            self.types.setdefault(name, []).append(rdtype)
        self.existing = with_empty_non_terminals(
            self.origin, {n: frozenset(t) for n, t in self.types.items()}
        )
        self.cuts = frozenset(n for n, t in self.types.items() if n != self.origin and RdataType.NS in t)
        self.dnames = frozenset(n for n, t in self.types.items() if RdataType.DNAME in t)
        self.nsec_owners = sorted(n for n, t in self.types.items() if RdataType.NSEC in t)
        self.nsec3_digests = sorted(self.nsec3)
        param = self.rrsets.get((self.origin, RdataType.NSEC3PARAM))
        self.params = NSEC3Params(param[0].iterations, param[0].salt) if param else None
        soa = self.rrsets[(self.origin, RdataType.SOA)]
        self.negative_ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 section 5

    @property
    def secure(self) -> bool:
        return self.signed is not None

    def sig(self, key: RRKey) -> dns.rrset.RRset | None:
        return self.signed.sigs.get(key) if self.signed else None

    # --- the name tree ------------------------------------------------------------------------------

    def cut_at_or_above(self, name: dns.name.Name) -> dns.name.Name | None:
        """The highest delegation point at or above `name` (below the apex): the zone is not
        authoritative from there down."""
        if not self.cuts:
            return None
        found = None
        while name != self.origin and len(name) > len(self.origin):
            if name in self.cuts:
                found = name
            name = name.parent()
        return found

    def dname_above(self, name: dns.name.Name) -> dns.name.Name | None:
        """The DNAME owner strictly above `name`, if any (only one can be: nothing lives below a DNAME)."""
        if not self.dnames:
            return None
        while name != self.origin and len(name) > len(self.origin):
            name = name.parent()
            if name in self.dnames:
                return name
        return None

    def closest_encloser(self, name: dns.name.Name) -> dns.name.Name:
        while name not in self.existing:
            name = name.parent()
        return name

    def next_closer(self, name: dns.name.Name, encloser: dns.name.Name) -> dns.name.Name:
        return dns.name.Name(name.labels[-(len(encloser) + 1) :])

    def wildcard_for(self, name: dns.name.Name) -> dns.name.Name | None:
        """The source of synthesis for a name that does not exist: `*.` its closest encloser, if that
        wildcard holds data (RFC 4592 3.3.1)."""
        wild = dns.name.Name((_WILD, *self.closest_encloser(name).labels))
        return wild if wild in self.types else None

    # --- denial of existence ------------------------------------------------------------------------

    def nsec_covering(self, name: dns.name.Name) -> dns.rrset.RRset:
        owner = self.nsec_owners[find_covering(self.nsec_owners, name)]
        return self.rrsets[(owner, RdataType.NSEC)]

    def nsec_at(self, name: dns.name.Name) -> dns.rrset.RRset | None:
        return self.rrsets.get((name, RdataType.NSEC))

    def nsec3_for(self, name: dns.name.Name) -> dns.rrset.RRset:
        """The NSEC3 matching `name` if it exists, else the one covering its hash."""
        assert self.params is not None
        digest = nsec3_digest(name, self.params)
        return self.nsec3[self.nsec3_digests[find_covering(self.nsec3_digests, digest)]]
