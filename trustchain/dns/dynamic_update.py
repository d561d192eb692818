"""RFC 2136 dynamic updates, sans-I/O: a parsed UPDATE message becomes a typed zone update.

The node's DNS listener verifies the TSIG signature (the key is local to that node, never replicated) and
hands the parsed message to `translate`, which checks the zone section and prescans the prerequisite and
update sections (RFC 2136 sections 3.1, 3.2 and 3.4.1). It returns either a `Translated` (the
prerequisites and the `ZoneUpdate`) or a `Refusal` carrying the response code to answer with.

Prerequisites are not decided by the node: they travel in the ordered command and every replica evaluates
them (`check_prerequisites`) against its zone at the moment the update executes, so they hold atomically
with the update, as RFC 2136 section 3.2 requires, and no node can claim they held when they did not.

Where RFC 2136 tells a server to ignore an update RR silently (the SOA, the apex NS RRset, types a zone
never holds), the translation drops it. Updates the zone model cannot take (a CNAME beside other data,
an NS below the apex, a type TrustChain does not serve) are refused as a whole (REFUSED) instead of
being partly ignored.
"""

from __future__ import annotations

from collections.abc import Collection, Iterable
from dataclasses import dataclass

import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset
import dns.update

from trustchain.dns.records import UPDATABLE_TYPES, ZoneUpdateError, parse_rdata
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRecords, DeleteRRset, Op, Zone, ZoneUpdate

__all__ = [
    "MAX_PREREQUISITES",
    "NAME_IN_USE",
    "NAME_NOT_IN_USE",
    "RRSET_EQUALS",
    "RRSET_EXISTS",
    "RRSET_NOT_EXISTS",
    "Prerequisite",
    "Refusal",
    "Translated",
    "UpdateRefused",
    "check_prerequisites",
    "translate",
]

Rcode = dns.rcode.Rcode
RdataType = dns.rdatatype.RdataType

NAME_IN_USE, NAME_NOT_IN_USE = "name_in_use", "name_not_in_use"
RRSET_EXISTS, RRSET_NOT_EXISTS, RRSET_EQUALS = "rrset_exists", "rrset_not_exists", "rrset_equals"
#: what each prerequisite answers when it does not hold (RFC 2136 section 3.2.5)
_FAILS_WITH: dict[str, Rcode] = {
    NAME_IN_USE: Rcode.NXDOMAIN,
    NAME_NOT_IN_USE: Rcode.YXDOMAIN,
    RRSET_EXISTS: Rcode.NXRRSET,
    RRSET_NOT_EXISTS: Rcode.YXRRSET,
    RRSET_EQUALS: Rcode.NXRRSET,
}
MAX_PREREQUISITES = 64  # bounds the work every replica does for one update
#: what "delete every RRset at the apex" removes: everything but the SOA and NS (RFC 2136 section 3.4.2.3)
_APEX_DELETABLE = tuple(sorted((t for t in UPDATABLE_TYPES if t not in (RdataType.NS, RdataType.DS)), key=int))


class UpdateRefused(ZoneUpdateError):
    """A dynamic update that must be answered with `rcode` (a prerequisite that does not hold, an update
    outside what the zone's owner delegated)."""

    def __init__(self, field: str, reason: str, rcode: int) -> None:
        super().__init__(field, reason)
        self.rcode = int(rcode)


@dataclass(frozen=True)
class Prerequisite:
    """One RFC 2136 prerequisite as it travels in a command: `kind` is one of the five kinds; `rtype` is
    empty for the name kinds, `values` (presentation format, absolute names) used only by rrset_equals."""

    kind: str
    name: str
    rtype: str = ""
    values: tuple[str, ...] = ()


@dataclass(frozen=True)
class Refusal:
    """The update is answered with `rcode` without being ordered; `reason` is for logs."""

    rcode: int
    reason: str

    def __post_init__(self) -> None:
        object.__setattr__(self, "rcode", int(self.rcode))


@dataclass(frozen=True)
class Translated:
    """An update to order: the prerequisites the replicas check, then the update they apply."""

    origin: str
    prerequisites: tuple[Prerequisite, ...]
    update: ZoneUpdate


def translate(message: dns.message.Message, zones: Collection[dns.name.Name]) -> Translated | Refusal:
    """The update `message` asks for, against the zones this server is authoritative for (`zones`, their
    origins). `message` must have been parsed with one RR per RRset, so the update RRs keep their order."""
    if message.opcode() != dns.opcode.UPDATE or not isinstance(message, dns.update.UpdateMessage):
        return Refusal(Rcode.FORMERR, "not an UPDATE message")
    if len(message.zone) != 1 or message.zone[0].rdtype != RdataType.SOA:
        return Refusal(Rcode.FORMERR, "the zone section must hold exactly one SOA question")
    zone_rr = message.zone[0]
    origin = zone_rr.name.canonicalize()
    if zone_rr.rdclass != dns.rdataclass.IN or origin not in zones:
        return Refusal(Rcode.NOTAUTH, f"not authoritative for zone {origin}")
    if len(message.prerequisite) > MAX_PREREQUISITES:
        return Refusal(Rcode.REFUSED, f"more than {MAX_PREREQUISITES} prerequisites")
    prerequisites = _prerequisites(message.prerequisite, origin)
    if isinstance(prerequisites, Refusal):
        return prerequisites
    ops = _operations(message.update, origin)
    if isinstance(ops, Refusal):
        return ops
    return Translated(origin.to_text(), prerequisites, ZoneUpdate(origin.to_text(), ops))


def _prerequisites(rrsets: Iterable[dns.rrset.RRset], origin: dns.name.Name) -> tuple[Prerequisite, ...] | Refusal:
    out: list[Prerequisite] = []
    equals: dict[tuple[dns.name.Name, RdataType], list[str]] = {}  # value-dependent RRsets, gathered
    for rrset in rrsets:
        name = rrset.name.canonicalize()
        if not name.is_subdomain(origin):
            return Refusal(Rcode.NOTZONE, f"prerequisite name {name} is outside zone {origin}")
        rdtype = RdataType(rrset.rdtype)
        if rrset.ttl != 0 or rrset.rdclass != dns.rdataclass.IN:
            return Refusal(Rcode.FORMERR, f"prerequisite {name} {rdtype.name}: TTL must be 0 and class IN, ANY or NONE")
        if rrset.deleting is None:  # class IN: this RR is part of an RRset that must exist exactly so
            if dns.rdatatype.is_metatype(rdtype):
                return Refusal(Rcode.FORMERR, f"prerequisite {name}: meta type {rdtype.name}")
            equals.setdefault((name, rdtype), []).extend(rd.to_text() for rd in rrset)
            continue
        kind_any = rrset.deleting == dns.rdataclass.ANY
        if rdtype == RdataType.ANY:
            out.append(Prerequisite(NAME_IN_USE if kind_any else NAME_NOT_IN_USE, name.to_text()))
        elif dns.rdatatype.is_metatype(rdtype):
            return Refusal(Rcode.FORMERR, f"prerequisite {name}: meta type {rdtype.name}")
        else:
            out.append(Prerequisite(RRSET_EXISTS if kind_any else RRSET_NOT_EXISTS, name.to_text(),
                                    dns.rdatatype.to_text(rdtype)))
    out.extend(Prerequisite(RRSET_EQUALS, name.to_text(), dns.rdatatype.to_text(rdtype), tuple(values))
               for (name, rdtype), values in equals.items())
    return tuple(out)


def _operations(rrsets: Iterable[dns.rrset.RRset], origin: dns.name.Name) -> tuple[Op, ...] | Refusal:
    """The update section, prescanned first (nothing is applied if any RR is malformed), then translated."""
    rrsets = list(rrsets)
    for rrset in rrsets:
        name, rdtype = rrset.name.canonicalize(), RdataType(rrset.rdtype)
        if not name.is_subdomain(origin):
            return Refusal(Rcode.NOTZONE, f"update name {name} is outside zone {origin}")
        if rrset.rdclass != dns.rdataclass.IN:
            return Refusal(Rcode.FORMERR, f"update {name}: class must be IN, ANY or NONE")
        if rrset.deleting is not None and rrset.ttl != 0:
            return Refusal(Rcode.FORMERR, f"update {name}: a deletion's TTL must be 0")
        if dns.rdatatype.is_metatype(rdtype) and not (rrset.deleting == dns.rdataclass.ANY
                                                      and rdtype == RdataType.ANY):
            return Refusal(Rcode.FORMERR, f"update {name}: meta type {rdtype.name}")
    ops: list[Op] = []
    for rrset in rrsets:
        name, rdtype = rrset.name.canonicalize(), RdataType(rrset.rdtype)
        at_apex = name == origin
        text, type_text = name.to_text(), dns.rdatatype.to_text(rdtype)
        values = tuple(rd.to_text() for rd in rrset)
        if rrset.deleting is None:  # add
            if rdtype == RdataType.SOA or rdtype not in UPDATABLE_TYPES:
                return Refusal(Rcode.REFUSED, f"update {name}: TrustChain zones do not take {type_text} updates")
            ops.append(AddRecords(text, type_text, int(rrset.ttl), values))
        elif rrset.deleting == dns.rdataclass.ANY and rdtype == RdataType.ANY:  # every RRset at the name
            if at_apex:
                ops.extend(DeleteRRset(text, dns.rdatatype.to_text(t)) for t in _APEX_DELETABLE)
            else:
                ops.append(DeleteName(text))
        elif rdtype not in UPDATABLE_TYPES or rdtype == RdataType.SOA or (at_apex and rdtype == RdataType.NS
                                                                        and rrset.deleting == dns.rdataclass.ANY):
            continue  # ignored (RFC 2136 section 3.4.2.3): nothing the zone holds, or what it must keep
        elif rrset.deleting == dns.rdataclass.ANY:
            ops.append(DeleteRRset(text, type_text))
        else:
            ops.append(DeleteRecords(text, type_text, values))
    return tuple(ops)


def check_prerequisites(zone: Zone, prerequisites: Iterable[Prerequisite]) -> None:
    """Raise `UpdateRefused` with the RFC 2136 rcode for the first prerequisite that does not hold in
    `zone`. Every replica runs this when the update executes."""
    for i, pre in enumerate(prerequisites):
        field = f"prerequisites[{i}]"
        if i >= MAX_PREREQUISITES:
            raise UpdateRefused("prerequisites", f"more than {MAX_PREREQUISITES}", Rcode.REFUSED)
        fails_with = _FAILS_WITH.get(pre.kind)
        if fails_with is None:
            raise UpdateRefused(f"{field}.kind", f"must be one of {sorted(_FAILS_WITH)}", Rcode.FORMERR)
        try:
            name = dns.name.from_text(pre.name).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise UpdateRefused(f"{field}.name", f"malformed name {pre.name[:64]!r}", Rcode.FORMERR) from exc
        if not name.is_subdomain(zone.origin):
            raise UpdateRefused(f"{field}.name", f"{name} is outside zone {zone.origin}", Rcode.NOTZONE)
        node = zone.node(name)
        if pre.kind in (NAME_IN_USE, NAME_NOT_IN_USE):
            if pre.rtype or pre.values:
                raise UpdateRefused(field, f"{pre.kind} takes a name only", Rcode.FORMERR)
            holds = bool(node) == (pre.kind == NAME_IN_USE)
        else:
            rdtype = _prerequisite_type(pre.rtype, f"{field}.type")
            rrset = node.get(rdtype)
            if pre.kind == RRSET_EQUALS:
                if not pre.values:
                    raise UpdateRefused(f"{field}.values", "rrset_equals needs the RRset's records", Rcode.FORMERR)
                want = {parse_rdata(rdtype, v, zone.origin, f"{field}.values").to_digestable(dns.name.root)
                        for v in pre.values}
                holds = rrset is not None and want == {r.to_digestable(dns.name.root) for r in rrset}
            else:
                if pre.values:
                    raise UpdateRefused(f"{field}.values", f"not used by {pre.kind}", Rcode.FORMERR)
                holds = (rrset is not None) == (pre.kind == RRSET_EXISTS)
        if not holds:
            raise UpdateRefused(field, f"{pre.kind} {name} {pre.rtype}".rstrip() + " does not hold", fails_with)


def _prerequisite_type(text: str, field: str) -> RdataType:
    try:
        rdtype = dns.rdatatype.from_text(text)
    except Exception as exc:  # dnspython raises several exception types on bad mnemonics
        raise UpdateRefused(field, f"unknown type {text[:32]!r}", Rcode.FORMERR) from exc
    if dns.rdatatype.is_metatype(rdtype):
        raise UpdateRefused(field, f"meta type {text[:32]!r}", Rcode.FORMERR)
    return rdtype
