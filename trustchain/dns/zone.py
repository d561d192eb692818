"""Authoritative zone model, mutated only through validated, atomic updates.

The PBFT layer orders `ZoneUpdate`s; every replica applies them with `Zone.apply` and must reach the
same bytes (`snapshot`) and `digest`, so nothing here depends on dict order, case, or wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdataset
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.set
import dns.zone

from trustchain.dns.limits import ZoneSize, total_size
from trustchain.dns.ops import (
    AddRecords,
    DeleteName,
    DeleteRecords,
    DeleteRRset,
    Op,
    RecordOp,
    ReplaceRRset,
    ZoneUpdate,
)
from trustchain.dns.records import (
    ZONE_TYPES,
    ZoneUpdateError,
    check_ttl,
    parse_owner,
    parse_rdata,
    parse_type,
)
from trustchain.dns.zone_rules import check_glue, check_zone, delegation_cuts

RdataType = dns.rdatatype.RdataType
Node = dict[RdataType, dns.rrset.RRset]
SNAPSHOT_MAGIC = "; trustchain-zone v1"
PRESIGNED_MAGIC = SNAPSHOT_MAGIC + " presigned"

__all__ = [
    "PRESIGNED_MAGIC",
    "SNAPSHOT_MAGIC",
    "AddRecords",
    "DeleteName",
    "DeleteRRset",
    "DeleteRecords",
    "Op",
    "RecordOp",
    "ReplaceRRset",
    "SignatureSet",
    "Zone",
    "ZoneUpdate",
    "ZoneUpdateError",
]


class SignatureSet(dns.rrset.RRset):
    """Every RRSIG at one owner of a presigned zone, whatever type each covers: updates address a name's
    signatures together, as they address any other type. dnspython's RRset holds one covered type only;
    `trustchain.dns.dnssec.presigned_view` splits this one by covered type for serving."""

    def add(self, rd: dns.rdata.Rdata, ttl: int | None = None) -> None:
        if rd.rdclass != self.rdclass or rd.rdtype != RdataType.RRSIG:
            raise dns.rdataset.IncompatibleTypes
        if ttl is not None:
            self.update_ttl(ttl)
        dns.set.Set.add(self, rd)  # type: ignore[no-untyped-call]  # skips the single-covered-type check


def _canonical_rrset(
    name: dns.name.Name, rdtype: RdataType, ttl: int, rdatas: list[dns.rdata.Rdata]
) -> dns.rrset.RRset:
    """Build an RRset whose rdata order is canonical (RFC 4034 6.3), making text output deterministic."""
    origin = dns.name.root
    ordered = sorted(rdatas, key=lambda r: r.to_digestable(origin))
    rrset = (SignatureSet(name, dns.rdataclass.IN, rdtype) if rdtype == RdataType.RRSIG
             else dns.rrset.RRset(name, dns.rdataclass.IN, rdtype))
    for rdata in ordered:
        rrset.add(rdata, ttl)
    rrset.ttl = ttl
    return rrset


class Zone:
    """One zone's authoritative data: owner name -> type -> RRset, all names absolute and lower-case.

    A `presigned` zone was signed elsewhere: it also holds DNSKEY, RRSIG (one `SignatureSet` per owner),
    NSEC/NSEC3 and CDS/CDNSKEY records, which are served as they are and never re-signed."""

    def __init__(self, origin: dns.name.Name, nodes: Mapping[dns.name.Name, Node], *, presigned: bool = False) -> None:
        self.origin = origin
        self.presigned = presigned
        self._nodes: dict[dns.name.Name, Node] = {n: dict(t) for n, t in nodes.items()}
        self._digest: bytes | None = None  # memo: signer, authority and replicas ask for it repeatedly
        self._size: ZoneSize | None = None  # memo: the DNS application's limits ask on every update
        check_zone(origin, self._nodes, presigned)

    @classmethod
    def create(
        cls,
        origin: str,
        *,
        primary_ns: str,
        admin: str,
        nameservers: tuple[str, ...],
        ttl: int = 3600,
        serial: int = 1,
        refresh: int = 3600,
        retry: int = 600,
        expire: int = 1209600,
        minimum: int = 300,
        presigned: bool = False,
    ) -> Zone:
        """A fresh zone with SOA and apex NS; `admin` is the SOA RNAME in name form (hostmaster.example.)."""
        try:
            org = dns.name.from_text(origin).canonicalize()
        except dns.exception.DNSException as exc:
            raise ZoneUpdateError("origin", f"malformed name {origin!r}: {exc}") from exc
        check_ttl(ttl, "ttl")
        for fld, value in (("refresh", refresh), ("retry", retry), ("expire", expire), ("minimum", minimum)):
            check_ttl(value, fld)
        if not 0 <= serial < 2**32:
            raise ZoneUpdateError("serial", "must be a 32-bit unsigned integer")
        soa_text = f"{primary_ns} {admin} {serial} {refresh} {retry} {expire} {minimum}"
        soa = parse_rdata(RdataType.SOA, soa_text, org, "soa")
        if not nameservers:
            raise ZoneUpdateError("nameservers", "a zone needs at least one NS")
        ns = [parse_rdata(RdataType.NS, v, org, f"nameservers[{i}]") for i, v in enumerate(nameservers)]
        apex: Node = {
            RdataType.SOA: _canonical_rrset(org, RdataType.SOA, ttl, [soa]),
            RdataType.NS: _canonical_rrset(org, RdataType.NS, ttl, ns),
        }
        return cls(org, {org: apex}, presigned=presigned)

    # --- read access -------------------------------------------------------------------------------

    @property
    def soa(self) -> dns.rdtypes.ANY.SOA.SOA:
        rdata = self._nodes[self.origin][RdataType.SOA][0]
        assert isinstance(rdata, dns.rdtypes.ANY.SOA.SOA)
        return rdata

    @property
    def serial(self) -> int:
        return int(self.soa.serial)

    def names(self) -> list[dns.name.Name]:
        """Owner names in DNSSEC canonical order (RFC 4034 6.1)."""
        return sorted(self._nodes)

    def node(self, name: dns.name.Name) -> Mapping[RdataType, dns.rrset.RRset]:
        return self._nodes.get(name, {})

    def get(self, name: dns.name.Name, rdtype: RdataType) -> dns.rrset.RRset | None:
        return self._nodes.get(name, {}).get(rdtype)

    def rrsets(self) -> Iterator[dns.rrset.RRset]:
        """Every RRset, canonical by name then type, so consumers (signer, snapshot) are deterministic."""
        for name in self.names():
            node = self._nodes[name]
            for rdtype in sorted(node):
                yield node[rdtype]

    def cuts(self) -> frozenset[dns.name.Name]:
        """Delegation points: names below the apex holding NS (the child zone's, not authoritative here)."""
        return delegation_cuts(self.origin, self._nodes)

    def size(self) -> ZoneSize:
        """Records and their uncompressed wire bytes (`trustchain.dns.limits`)."""
        if self._size is None:
            self._size = total_size(self.rrsets())
        return self._size

    # --- updates -----------------------------------------------------------------------------------

    def apply(self, update: ZoneUpdate, check: Callable[[ZoneSize], None] | None = None) -> bool:
        """Apply `update` atomically. Returns whether the zone changed; if so the SOA serial is bumped by
        one (RFC 1982 arithmetic). `check` sees the zone's size after the update before anything is
        applied and may refuse it by raising ZoneUpdateError. On ZoneUpdateError the zone is untouched. An
        update that leaves an in-zone NS target without an address is refused (`zone_rules.check_glue`)."""
        if not isinstance(update, ZoneUpdate):
            raise ZoneUpdateError("update", "not a ZoneUpdate")
        try:
            origin = (
                dns.name.from_text(update.origin).canonicalize() if isinstance(update.origin, str) else None
            )
        except dns.exception.DNSException:
            origin = None
        if origin != self.origin:
            raise ZoneUpdateError("update.origin", f"{update.origin!r} does not match zone {self.origin}")
        work = {n: dict(t) for n, t in self._nodes.items()}
        for i, op in enumerate(update.ops):
            self._apply_op(work, op, f"ops[{i}]")
        check_zone(self.origin, work, self.presigned)
        check_glue(self.origin, self._nodes, work)
        if _content(work) == _content(self._nodes):
            return False
        soa_rrset = work[self.origin][RdataType.SOA]
        serial = (self.serial + 1) % 2**32
        new_soa = self.soa.replace(serial=serial)
        work[self.origin][RdataType.SOA] = _canonical_rrset(
            self.origin, RdataType.SOA, soa_rrset.ttl, [new_soa]
        )
        size = total_size(rrset for node in work.values() for rrset in node.values())
        if check is not None:
            check(size)
        self._nodes = work
        self._digest = None
        self._size = size
        return True

    def bump_serial(self) -> None:
        """The next SOA serial (RFC 1982), nothing else changed: the signed zone changed (a re-sign)."""
        soa = self._nodes[self.origin][RdataType.SOA]
        new_soa = self.soa.replace(serial=(self.serial + 1) % 2**32)
        self._nodes = {**self._nodes, self.origin: {**self._nodes[self.origin],
                       RdataType.SOA: _canonical_rrset(self.origin, RdataType.SOA, soa.ttl, [new_soa])}}
        self._digest = None

    def _apply_op(self, work: dict[dns.name.Name, Node], op: object, field: str) -> None:
        if not isinstance(op, AddRecords | ReplaceRRset | DeleteRRset | DeleteRecords | DeleteName):
            raise ZoneUpdateError(field, "unknown operation")
        name = parse_owner(op.name, self.origin, f"{field}.name")
        if isinstance(op, DeleteName):
            if name == self.origin:
                raise ZoneUpdateError(f"{field}.name", "cannot delete the zone apex")
            work.pop(name, None)
            return
        rdtype = parse_type(op.rtype, f"{field}.type", presigned=self.presigned)
        if isinstance(op, DeleteRRset):
            if rdtype == RdataType.NS and name == self.origin:
                raise ZoneUpdateError(f"{field}.type", "cannot delete the apex NS RRset")
            node = work.get(name)
            if node is not None and rdtype in node:
                node = dict(node)
                del node[rdtype]
                if node:
                    work[name] = node
                else:
                    del work[name]
            return
        if isinstance(op, DeleteRecords):
            self._delete_records(work, name, rdtype, op.values, field)
            return
        ttl = check_ttl(op.ttl, f"{field}.ttl")
        if not isinstance(op.values, tuple | list) or not op.values:
            raise ZoneUpdateError(f"{field}.values", "must be a non-empty list of record data")
        rdatas = [
            parse_rdata(rdtype, v, self.origin, f"{field}.values[{j}]") for j, v in enumerate(op.values)
        ]
        node = dict(work.get(name, {}))
        if isinstance(op, AddRecords) and rdtype in node:
            rdatas = list(node[rdtype]) + rdatas
        unique: dict[bytes, dns.rdata.Rdata] = {}
        for rdata in rdatas:
            unique.setdefault(rdata.to_digestable(dns.name.root), rdata)
        if dns.rdatatype.is_singleton(rdtype) and len(unique) != 1:
            raise ZoneUpdateError(f"{field}.values", f"a {rdtype.name} RRset must hold exactly one record")
        node[rdtype] = _canonical_rrset(name, rdtype, ttl, list(unique.values()))
        work[name] = node
        others = sorted(t.name for t in node if t not in (RdataType.CNAME, RdataType.RRSIG, RdataType.NSEC))
        if RdataType.CNAME in node and others:
            if rdtype == RdataType.CNAME:
                raise ZoneUpdateError(f"{field}.type", f"CNAME at {name} would sit beside other data "
                                      f"({', '.join(others)})")
            raise ZoneUpdateError(f"{field}.type", f"{rdtype.name} at {name} would sit beside its CNAME")

    def _delete_records(self, work: dict[dns.name.Name, Node], name: dns.name.Name, rdtype: RdataType,
                        values: object, field: str) -> None:
        if not isinstance(values, tuple | list) or not values:
            raise ZoneUpdateError(f"{field}.values", "must be a non-empty list of record data")
        gone = {parse_rdata(rdtype, v, self.origin, f"{field}.values[{j}]").to_digestable(dns.name.root)
                for j, v in enumerate(values)}
        node = work.get(name)
        rrset = node.get(rdtype) if node is not None else None
        if node is None or rrset is None:
            return
        kept = [r for r in rrset if r.to_digestable(dns.name.root) not in gone]
        if len(kept) == len(rrset) or (rdtype == RdataType.NS and not kept and name == self.origin):
            return  # nothing to remove, or the zone's last NS (kept, as RFC 2136 says)
        node = dict(node)
        if kept:
            node[rdtype] = _canonical_rrset(name, rdtype, rrset.ttl, kept)
        else:
            del node[rdtype]
        if node:
            work[name] = node
        else:
            del work[name]

    # --- snapshot ----------------------------------------------------------------------------------

    def to_text(self) -> str:
        """Canonical zone-file text: absolute names, canonical order, one RR per line."""
        lines = [PRESIGNED_MAGIC if self.presigned else SNAPSHOT_MAGIC, f"$ORIGIN {self.origin.to_text()}"]
        for rrset in self.rrsets():
            for rdata in rrset:
                lines.append(
                    f"{rrset.name.to_text()} {rrset.ttl} IN {dns.rdatatype.to_text(rrset.rdtype)} "
                    f"{rdata.to_text(origin=None, relativize=False)}"
                )
        return "\n".join(lines) + "\n"

    def snapshot(self) -> bytes:
        return self.to_text().encode("ascii")

    def digest(self) -> bytes:
        """SHA-256 of the snapshot: replicas compare this to detect divergence."""
        if self._digest is None:
            self._digest = hashlib.sha256(self.snapshot()).digest()
        return self._digest

    @classmethod
    def restore(cls, data: bytes) -> Zone:
        """Inverse of `snapshot`; re-validates everything because the bytes may come from a peer."""
        try:
            text = data.decode("ascii")
        except UnicodeDecodeError as exc:
            raise ZoneUpdateError("snapshot", "not ASCII") from exc
        lines = text.split("\n", 2)
        if len(lines) < 3 or lines[0] not in (SNAPSHOT_MAGIC, PRESIGNED_MAGIC) or not lines[1].startswith("$ORIGIN "):
            raise ZoneUpdateError("snapshot", "missing trustchain-zone header")
        presigned = lines[0] == PRESIGNED_MAGIC
        try:
            origin = dns.name.from_text(lines[1].split(" ", 1)[1]).canonicalize()
            parsed = dns.zone.from_text(text, origin=origin, relativize=False, check_origin=True)
        except dns.exception.DNSException as exc:
            raise ZoneUpdateError("snapshot", f"unparseable zone text: {exc}") from exc
        nodes: dict[dns.name.Name, Node] = {}
        for name, rdataset in parsed.iterate_rdatasets():
            assert isinstance(name, dns.name.Name)
            owner = parse_owner(name.to_text(), origin, f"snapshot[{name}]")
            if rdataset.rdtype not in ZONE_TYPES:
                raise ZoneUpdateError(f"snapshot[{name}]", f"unknown type {rdataset.rdtype.name}")
            check_ttl(rdataset.ttl, f"snapshot[{name}].ttl")
            node = nodes.setdefault(owner, {})
            rdatas, ttl = list(rdataset), rdataset.ttl
            if rdataset.rdtype in node:  # RRSIGs covering different types: one SignatureSet per owner
                rdatas += list(node[rdataset.rdtype])
                ttl = min(ttl, node[rdataset.rdtype].ttl)
            node[rdataset.rdtype] = _canonical_rrset(owner, rdataset.rdtype, ttl, rdatas)
        return cls(origin, nodes, presigned=presigned)


def _content(
    nodes: Mapping[dns.name.Name, Node],
) -> dict[tuple[dns.name.Name, RdataType], tuple[int, frozenset[bytes]]]:
    return {
        (name, rdtype): (rrset.ttl, frozenset(r.to_digestable(dns.name.root) for r in rrset))
        for name, node in nodes.items()
        for rdtype, rrset in node.items()
    }
