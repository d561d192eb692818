"""Zone update operations as clients send them and as commands carry them.

Kept apart from the zone model: this is the wire and JSON form of an update (`RecordOp`, `ZoneUpdate`),
checked only for what the encoding can carry; whether the records are acceptable is `Zone.apply`'s call.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from trustchain.dns.records import ZoneUpdateError

__all__ = [
    "AddRecords", "DeleteName", "DeleteRRset", "DeleteRecords", "Op", "RecordOp", "ReplaceRRset", "ZoneUpdate",
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
