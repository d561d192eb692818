"""Authoritative zone model, mutated only through validated, atomic updates.

The PBFT layer orders `ZoneUpdate`s; every replica applies them with `Zone.apply` and must reach the
same bytes (`snapshot`) and `digest`, so nothing here depends on dict order, case, or wall time.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.SOA
import dns.rrset
import dns.zone

from trustchain.dns.limits import ZoneSize, total_size
from trustchain.dns.records import (
    ZONE_TYPES,
    ZoneUpdateError,
    check_ttl,
    parse_owner,
    parse_rdata,
    parse_type,
)

RdataType = dns.rdatatype.RdataType
Node = dict[RdataType, dns.rrset.RRset]
SNAPSHOT_MAGIC = "; trustchain-zone v1"

__all__ = [
    "AddRecords",
    "DeleteName",
    "DeleteRRset",
    "DeleteRecords",
    "RecordOp",
    "ReplaceRRset",
    "Zone",
    "ZoneUpdate",
    "ZoneUpdateError",
]


@dataclass(frozen=True)
class AddRecords:
    """Add records to an RRset (creating it); the RRset's TTL becomes `ttl` (RFC 2181: one TTL per RRset)."""

    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]


@dataclass(frozen=True)
class ReplaceRRset:
    name: str
    rtype: str
    ttl: int
    values: tuple[str, ...]


@dataclass(frozen=True)
class DeleteRRset:
    """Deleting an absent RRset is a no-op, as in RFC 2136, so retried updates stay idempotent."""

    name: str
    rtype: str


@dataclass(frozen=True)
class DeleteRecords:
    """Remove these records from an RRset (RFC 2136 class NONE). Absent records are a no-op, and the apex
    NS RRset never loses its last record (RFC 2136 section 3.4.2.4: such a deletion is ignored)."""

    name: str
    rtype: str
    values: tuple[str, ...]


@dataclass(frozen=True)
class DeleteName:
    """Remove every RRset at a name (not allowed at the apex)."""

    name: str


Op = AddRecords | ReplaceRRset | DeleteRRset | DeleteRecords | DeleteName
_OP_KINDS: dict[str, type[Op]] = {
    "add": AddRecords,
    "replace": ReplaceRRset,
    "delete_rrset": DeleteRRset,
    "delete_records": DeleteRecords,
    "delete_name": DeleteName,
}
_KIND_OF: dict[type[Op], str] = {v: k for k, v in _OP_KINDS.items()}


@dataclass(frozen=True)
class RecordOp:
    """One update operation as it travels in a command: a flat record whose `kind` says which of the
    other fields it uses (the rest stay empty, so one operation has exactly one encoding)."""

    kind: str  # add | replace | delete_rrset | delete_records | delete_name
    name: str
    rtype: str = ""
    ttl: int = 0
    values: tuple[str, ...] = ()

    @classmethod
    def of(cls, op: Op, field: str) -> RecordOp:
        """The wire form of `op`. Refuses only what the encoding cannot carry (wrong types, a TTL outside
        64 bits); whether the record is acceptable is for the replicas to judge."""
        if isinstance(op, AddRecords | ReplaceRRset):
            name, rtype, ttl, values = op.name, op.rtype, op.ttl, op.values
        elif isinstance(op, DeleteRRset):
            name, rtype, ttl, values = op.name, op.rtype, 0, ()
        elif isinstance(op, DeleteRecords):
            name, rtype, ttl, values = op.name, op.rtype, 0, op.values
        elif isinstance(op, DeleteName):
            name, rtype, ttl, values = op.name, "", 0, ()
        else:
            raise ZoneUpdateError(field, f"unknown operation {type(op).__name__}")
        kind = _KIND_OF[type(op)]
        for key, value in (("name", name), ("type", rtype)):
            if type(value) is not str:
                raise ZoneUpdateError(f"{field}.{key}", "must be a string")
        if type(ttl) is not int or not 0 <= ttl < 2**64:
            raise ZoneUpdateError(f"{field}.ttl", f"bad TTL {ttl!r}: must be an unsigned 64-bit integer")
        if not isinstance(values, tuple | list) or not all(type(v) is str for v in values):
            raise ZoneUpdateError(f"{field}.values", "must be a list of strings")
        return cls(kind, name, rtype, ttl, tuple(values))

    def op(self, field: str) -> Op:
        """The operation this record carries; fields its kind does not use must be empty."""
        kind = _OP_KINDS.get(self.kind)
        if kind is None:
            raise ZoneUpdateError(f"{field}.kind", f"must be one of {sorted(_OP_KINDS)}, got {self.kind[:32]!r}")
        if kind is AddRecords or kind is ReplaceRRset:
            return kind(self.name, self.rtype, self.ttl, self.values)
        if kind is DeleteRecords:
            if self.ttl != 0:
                raise ZoneUpdateError(f"{field}.ttl", "not used by delete_records: must be empty")
            return DeleteRecords(self.name, self.rtype, self.values)
        unused = [("values", bool(self.values)), ("ttl", self.ttl != 0)]
        if kind is DeleteName:
            unused.append(("type", self.rtype != ""))
        for key, present in unused:
            if present:
                raise ZoneUpdateError(f"{field}.{key}", f"not used by {self.kind}: must be empty")
        return DeleteRRset(self.name, self.rtype) if kind is DeleteRRset else DeleteName(self.name)


@dataclass(frozen=True)
class ZoneUpdate:
    """An ordered batch of operations applied all-or-nothing. Commands carry it as `records()`, so the
    consensus payload (and its hash) is identical whoever builds it."""

    origin: str
    ops: tuple[Op, ...]

    def records(self) -> tuple[RecordOp, ...]:
        return tuple(RecordOp.of(op, f"ops[{i}]") for i, op in enumerate(self.ops))

    @classmethod
    def from_records(cls, origin: str, records: tuple[RecordOp, ...]) -> ZoneUpdate:
        return cls(origin, tuple(rec.op(f"ops[{i}]") for i, rec in enumerate(records)))

    @classmethod
    def from_json(cls, doc: object) -> ZoneUpdate:
        """Parse the JSON form `{"origin", "ops": [{"op", "name", "type", "ttl", "values"}]}` that clients
        send; any structural problem is a ZoneUpdateError naming the field."""
        if not isinstance(doc, dict):
            raise ZoneUpdateError("update", "must be an object with origin and ops")
        _only(doc, ("origin", "ops"), "update")
        if not isinstance(doc.get("origin"), str):
            raise ZoneUpdateError("update.origin", "missing or not a string")
        raw_ops = doc.get("ops")
        if not isinstance(raw_ops, list):
            raise ZoneUpdateError("update.ops", "missing or not a list")
        ops: list[Op] = []
        for i, item in enumerate(raw_ops):
            field = f"ops[{i}]"
            if not isinstance(item, dict) or not isinstance(item.get("op"), str) or item["op"] not in _OP_KINDS:
                raise ZoneUpdateError(f"{field}.op", f"must be one of {sorted(_OP_KINDS)}")
            kind = _OP_KINDS[item["op"]]
            keys = _JSON_KEYS[kind]
            _only(item, ("op", *keys), field)
            missing = [k for k in keys if k not in item]
            if missing:
                raise ZoneUpdateError(f"{field}.{missing[0]}", "missing")
            args = [item[k] for k in keys]
            if "values" in item:
                if not isinstance(item["values"], list):
                    raise ZoneUpdateError(f"{field}.values", "must be a list of strings")
                args[-1] = tuple(item["values"])
            op = kind(*args)
            RecordOp.of(op, field)  # the types a command can carry
            ops.append(op)
        return cls(doc["origin"], tuple(ops))


_JSON_KEYS: dict[type[Op], tuple[str, ...]] = {
    AddRecords: ("name", "type", "ttl", "values"),
    ReplaceRRset: ("name", "type", "ttl", "values"),
    DeleteRRset: ("name", "type"),
    DeleteRecords: ("name", "type", "values"),
    DeleteName: ("name",),
}


def _only(doc: dict[str, Any], keys: tuple[str, ...], field: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in keys)
    if unknown:
        raise ZoneUpdateError(f"{field}.{unknown[0]}", "unknown field")


def _canonical_rrset(
    name: dns.name.Name, rdtype: RdataType, ttl: int, rdatas: list[dns.rdata.Rdata]
) -> dns.rrset.RRset:
    """Build an RRset whose rdata order is canonical (RFC 4034 6.3), making text output deterministic."""
    origin = dns.name.root
    ordered = sorted(rdatas, key=lambda r: r.to_digestable(origin))
    rrset = dns.rrset.RRset(name, dns.rdataclass.IN, rdtype)
    for rdata in ordered:
        rrset.add(rdata, ttl)
    rrset.ttl = ttl
    return rrset


class Zone:
    """One zone's authoritative data: owner name -> type -> RRset, all names absolute and lower-case."""

    def __init__(self, origin: dns.name.Name, nodes: Mapping[dns.name.Name, Node]) -> None:
        self.origin = origin
        self._nodes: dict[dns.name.Name, Node] = {n: dict(t) for n, t in nodes.items()}
        self._digest: bytes | None = None  # memo: signer, authority and replicas ask for it repeatedly
        self._size: ZoneSize | None = None  # memo: the DNS application's limits ask on every update
        _check_invariants(origin, self._nodes)

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
        return cls(org, {org: apex})

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

    def size(self) -> ZoneSize:
        """Records and their uncompressed wire bytes (`trustchain.dns.limits`)."""
        if self._size is None:
            self._size = total_size(self.rrsets())
        return self._size

    # --- updates -----------------------------------------------------------------------------------

    def apply(self, update: ZoneUpdate, check: Callable[[ZoneSize], None] | None = None) -> bool:
        """Apply `update` atomically. Returns whether the zone changed; if so the SOA serial is bumped by
        one (RFC 1982 arithmetic). `check` sees the zone's size after the update before anything is
        applied and may refuse it by raising ZoneUpdateError. On ZoneUpdateError the zone is untouched."""
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
        _check_invariants(self.origin, work)
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
        rdtype = parse_type(op.rtype, f"{field}.type")
        if rdtype == RdataType.NS and name != self.origin:
            raise ZoneUpdateError(f"{field}.type", "NS below the apex would be a delegation (not supported)")
        if isinstance(op, DeleteRRset):
            if rdtype == RdataType.NS:
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
        if rdtype == RdataType.CNAME and len(unique) != 1:
            raise ZoneUpdateError(f"{field}.values", "a CNAME RRset must hold exactly one record")
        node[rdtype] = _canonical_rrset(name, rdtype, ttl, list(unique.values()))
        work[name] = node
        if RdataType.CNAME in node and len(node) > 1:
            if rdtype == RdataType.CNAME:
                others = ", ".join(sorted(t.name for t in node if t != RdataType.CNAME))
                raise ZoneUpdateError(
                    f"{field}.type", f"CNAME at {name} would sit beside other data ({others})"
                )
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
        if len(kept) == len(rrset) or (rdtype == RdataType.NS and not kept):
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
        lines = [SNAPSHOT_MAGIC, f"$ORIGIN {self.origin.to_text()}"]
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
        if len(lines) < 3 or lines[0] != SNAPSHOT_MAGIC or not lines[1].startswith("$ORIGIN "):
            raise ZoneUpdateError("snapshot", "missing trustchain-zone header")
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
            nodes.setdefault(owner, {})[rdataset.rdtype] = _canonical_rrset(
                owner, rdataset.rdtype, rdataset.ttl, list(rdataset)
            )
        return cls(origin, nodes)


def _content(
    nodes: Mapping[dns.name.Name, Node],
) -> dict[tuple[dns.name.Name, RdataType], tuple[int, frozenset[bytes]]]:
    return {
        (name, rdtype): (rrset.ttl, frozenset(r.to_digestable(dns.name.root) for r in rrset))
        for name, node in nodes.items()
        for rdtype, rrset in node.items()
    }


def _check_cname(name: dns.name.Name, node: Mapping[RdataType, dns.rrset.RRset], field: str) -> None:
    if RdataType.CNAME in node and len(node) > 1:
        others = ", ".join(sorted(t.name for t in node if t != RdataType.CNAME))
        raise ZoneUpdateError(field, f"CNAME at {name} cannot coexist with other data ({others})")


def _check_invariants(origin: dns.name.Name, nodes: Mapping[dns.name.Name, Node]) -> None:
    apex = nodes.get(origin, {})
    if RdataType.SOA not in apex or len(apex[RdataType.SOA]) != 1:
        raise ZoneUpdateError("zone", "apex must hold exactly one SOA")
    if RdataType.NS not in apex:
        raise ZoneUpdateError("zone", "apex must hold an NS RRset")
    for name, node in nodes.items():
        assert name.is_subdomain(origin), name
        _check_cname(name, node, f"zone[{name}]")
        if RdataType.SOA in node and name != origin:
            raise ZoneUpdateError(f"zone[{name}]", "SOA only allowed at the apex")
        if RdataType.NS in node and name != origin:
            raise ZoneUpdateError(f"zone[{name}]", "delegations (NS below the apex) are not supported")
        if not node:
            raise ZoneUpdateError(f"zone[{name}]", "empty node")
