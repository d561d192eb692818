"""What a zone's data must look like as a whole, checked after every update (and on every restore).

Kept apart from the zone model: these are the DNS rules that tie RRsets at different names together —
delegations and their glue (RFC 1034 4.2.1), DS only at a cut (RFC 4035 2.4), DNAME's empty subtree
(RFC 6672 2.4), CNAME alone (RFC 2181 10.1), wildcard owners (RFC 4592 4) — and which DNSSEC records
only a presigned zone may hold.

Glue (`check_glue`): an NS whose target lies inside the zone needs an A or AAAA record there, or no resolver
can reach that server (named-checkzone refuses such a zone file). It is judged per change: a change may not
leave an NS target without addresses that had them (or was not an NS target) before it.
"""

from __future__ import annotations

from collections.abc import Mapping

import dns.name
import dns.rdatatype
import dns.rrset

from trustchain.dns.records import APEX_ONLY_TYPES, PRESIGNED_TYPES, ZoneUpdateError

__all__ = ["GLUE_TYPES", "check_glue", "check_zone", "delegation_cuts", "is_wildcard", "missing_glue"]

RdataType = dns.rdatatype.RdataType
NodeMap = Mapping[dns.name.Name, Mapping[RdataType, dns.rrset.RRset]]

#: Below a zone cut a parent holds only addresses of the child's name servers (glue).
GLUE_TYPES = frozenset({RdataType.A, RdataType.AAAA})
#: What a delegation point holds in the parent; NSEC and RRSIG too when the parent is presigned.
_AT_CUT = frozenset({RdataType.NS, RdataType.DS, RdataType.NSEC, RdataType.RRSIG})
#: DNSSEC records that may accompany a CNAME (RFC 4035 2.5).
_WITH_CNAME = frozenset({RdataType.CNAME, RdataType.RRSIG, RdataType.NSEC})
#: A presigned zone's NSEC3 owners are hashes, not names of the namespace.
_HASHED = frozenset({RdataType.NSEC3, RdataType.RRSIG})


def is_wildcard(name: dns.name.Name) -> bool:
    return len(name.labels) > 1 and name.labels[0] == b"*"


def delegation_cuts(origin: dns.name.Name, names: NodeMap) -> frozenset[dns.name.Name]:
    """Owner names below the apex that hold NS: where the zone hands a subtree to another zone."""
    return frozenset(n for n, node in names.items() if n != origin and RdataType.NS in node)


def _below(name: dns.name.Name, tops: frozenset[dns.name.Name], origin: dns.name.Name) -> dns.name.Name | None:
    """The ancestor of `name` (strictly above it, below the apex) that is in `tops`, if any."""
    parent = name
    while parent != origin and len(parent) > len(origin):
        parent = parent.parent()
        if parent in tops:
            return parent
    return None


def check_zone(origin: dns.name.Name, nodes: NodeMap, presigned: bool) -> None:
    """Raise ZoneUpdateError (naming the owner) unless the zone's data is consistent as a whole."""
    apex = nodes.get(origin, {})
    if RdataType.SOA not in apex or len(apex[RdataType.SOA]) != 1:
        raise ZoneUpdateError("zone", "apex must hold exactly one SOA")
    if RdataType.NS not in apex:
        raise ZoneUpdateError("zone", "apex must hold an NS RRset")
    cuts = delegation_cuts(origin, nodes)
    dnames = frozenset(n for n, node in nodes.items() if RdataType.DNAME in node)
    for name, node in nodes.items():
        assert name.is_subdomain(origin), name
        field = f"zone[{name}]"
        if not node:
            raise ZoneUpdateError(field, "empty node")
        types = frozenset(node)
        if RdataType.CNAME in types and not types <= _WITH_CNAME:
            others = ", ".join(sorted(t.name for t in types - _WITH_CNAME))
            raise ZoneUpdateError(field, f"CNAME at {name} cannot coexist with other data ({others})")
        if not presigned and types & PRESIGNED_TYPES:
            raise ZoneUpdateError(field, "DNSSEC records belong to the signer, except in a presigned zone")
        if name != origin and types & APEX_ONLY_TYPES:
            kinds = ", ".join(sorted(t.name for t in types & APEX_ONLY_TYPES))
            raise ZoneUpdateError(field, f"{kinds} only allowed at the apex")
        if RdataType.DS in types and name not in cuts:
            raise ZoneUpdateError(field, "DS only at a delegation (NS below the apex at the same name)")
        if is_wildcard(name) and types & {RdataType.NS, RdataType.DS, RdataType.DNAME}:
            raise ZoneUpdateError(field, "a wildcard owner cannot hold NS, DS or DNAME (RFC 4592 4)")
        if name in cuts and not types <= _AT_CUT:
            others = ", ".join(sorted(t.name for t in types - _AT_CUT))
            raise ZoneUpdateError(field, f"a delegation holds only NS and DS, not {others}")
        cut = _below(name, cuts, origin)
        if cut is not None and not types <= GLUE_TYPES | {RdataType.RRSIG}:
            raise ZoneUpdateError(field, f"below the delegation {cut} only glue (A, AAAA) may live")
        dname = _below(name, dnames, origin) if dnames and not types <= _HASHED else None
        if dname is not None:
            raise ZoneUpdateError(field, f"nothing may live below the DNAME at {dname} (RFC 6672 2.4)")


def missing_glue(origin: dns.name.Name, nodes: NodeMap) -> frozenset[tuple[dns.name.Name, dns.name.Name]]:
    """(NS owner, target) for every NS record (at the apex or a delegation) whose target is inside the
    zone and holds no address record."""
    out = set()
    for name, node in nodes.items():
        ns = node.get(RdataType.NS)
        if ns is None:
            continue
        for rdata in ns:
            target = rdata.target
            if target.is_subdomain(origin) and not GLUE_TYPES & set(nodes.get(target, {})):
                out.add((name, target))
    return frozenset(out)


def check_glue(origin: dns.name.Name, before: NodeMap, after: NodeMap) -> None:
    """Raise ZoneUpdateError naming the NS record if the change from `before` to `after` leaves an in-zone
    NS target without an address that was not already missing one. Zones that already lacked glue stay
    loadable and updatable; what a change breaks or adds is refused."""
    new = missing_glue(origin, after) - missing_glue(origin, before)
    if new:
        owner, target = min(new)
        raise ZoneUpdateError(f"zone[{owner}]", f"NS {target} at {owner} is inside the zone but has no A or AAAA "
                              f"record (glue): add the address in the same update")
