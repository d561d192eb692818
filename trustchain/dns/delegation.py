"""Zone update delegations: a zone's owner lets one validator apply a narrow kind of update for it.

A TSIG key is a shared secret, so it cannot be replicated: any validator holding it could forge updates.
Instead the owner signs a `Delegation` (replicated): "validator V may, on my behalf, apply updates within
these names and types to my zone, until this time, when its DNS listener received them signed with the
TSIG key named K". The secret of K stays on V alone. Every replica checks each update V orders against
the delegation (`check_scope`), so a Byzantine V can do no more than the owner delegated to it, and
nobody else can use the delegation at all.

Name patterns are names in the zone whose `*` labels match one or more labels: `_acme-challenge.example.`
and `_acme-challenge.*.example.` cover every dns-01 challenge name; `example.` and `*.example.` the whole
zone.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

import dns.name
import dns.rcode
import dns.rdatatype

from trustchain.dns.dynamic_update import UpdateRefused
from trustchain.dns.records import UPDATABLE_TYPES, ZoneUpdateError, is_valid_label, parse_owner, parse_type
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRecords, DeleteRRset, Op, ReplaceRRset, Zone

__all__ = [
    "MAX_DELEGATIONS_PER_ZONE",
    "MAX_LIFETIME_S",
    "MAX_PATTERNS",
    "Delegation",
    "Delegations",
    "check_scope",
    "name_matches",
    "new_delegation",
    "parse_pattern",
]

RdataType = dns.rdatatype.RdataType
MAX_PATTERNS = 16
MAX_DELEGATIONS_PER_ZONE = 16
MAX_LIFETIME_S = 400 * 86400  # an owner renews (or revokes) at least this often
MAX_KEY_NAME = 255
_WILD = b"*"
Key = tuple[dns.name.Name, bytes, dns.name.Name]  # (zone origin, delegate account, TSIG key name)


@dataclass(frozen=True)
class Delegation:
    """What `grantor` (the zone's owner) lets `delegate` (a validator's account) do in zone `origin`,
    for updates its listener received signed with TSIG key `key_name`. Names are absolute, lower-case."""

    origin: str
    delegate: bytes
    key_name: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    expires_s: int
    grantor: bytes

    @property
    def key(self) -> Key:
        return (dns.name.from_text(self.origin), self.delegate, dns.name.from_text(self.key_name))

    def covers(self, name: dns.name.Name, rdtype: RdataType) -> bool:
        return self.covers_name(name) and dns.rdatatype.to_text(rdtype) in self.types

    def covers_name(self, name: dns.name.Name) -> bool:
        return any(name_matches(dns.name.from_text(p), name) for p in self.names)


def parse_pattern(text: object, origin: dns.name.Name, field: str) -> dns.name.Name:
    """A name pattern inside `origin` (relative to it unless it ends in a dot); `*` labels are wildcards."""
    if not isinstance(text, str) or not text:
        raise ZoneUpdateError(field, "must be a non-empty name pattern")
    try:
        pattern = dns.name.from_text(text, origin=origin).canonicalize()
    except Exception as exc:  # dnspython raises several exception types on bad names
        raise ZoneUpdateError(field, f"malformed pattern {text[:64]!r}") from exc
    if not pattern.is_subdomain(origin):
        raise ZoneUpdateError(field, f"{pattern} is outside zone {origin}")
    for label in pattern.relativize(origin).labels:
        if label != _WILD and not is_valid_label(label):
            raise ZoneUpdateError(field, f"label {label!r} must be '*' or letters, digits, '-' or '_'")
    return pattern


def name_matches(pattern: dns.name.Name, name: dns.name.Name) -> bool:
    """Whether `name` matches `pattern`, a `*` label matching one or more labels (both absolute)."""
    p, n = pattern.canonicalize().labels, name.canonicalize().labels
    # reach[j]: the pattern's first i labels match the name's first j labels
    reach = [True] + [False] * len(n)
    for label in p:
        if label == _WILD:
            nxt = [False] * (len(n) + 1)
            for j in range(1, len(n) + 1):
                nxt[j] = reach[j - 1] or nxt[j - 1]
        else:
            nxt = [False] + [reach[j - 1] and n[j - 1] == label for j in range(1, len(n) + 1)]
        reach = nxt
    return reach[len(n)]


def new_delegation(origin: dns.name.Name, grantor: bytes, delegate: bytes, key_name: str, names: Sequence[str],
                   types: Sequence[str], expires_s: int, now_s: int) -> Delegation:
    """Validate the owner's command (the caller has checked ownership and that `delegate` is a validator);
    raises ZoneUpdateError naming the field."""
    if not isinstance(key_name, str) or not key_name or len(key_name) > MAX_KEY_NAME:
        raise ZoneUpdateError("delegate.key_name", "must be a TSIG key name")
    try:
        key = dns.name.from_text(key_name).canonicalize()
    except Exception as exc:  # dnspython raises several exception types on bad names
        raise ZoneUpdateError("delegate.key_name", f"malformed name {key_name[:64]!r}") from exc
    if isinstance(names, str) or not names or len(names) > MAX_PATTERNS:
        raise ZoneUpdateError("delegate.names", f"must be 1 to {MAX_PATTERNS} name patterns")
    patterns = sorted({parse_pattern(p, origin, f"delegate.names[{i}]").to_text() for i, p in enumerate(names)})
    if isinstance(types, str) or not types or len(types) > len(UPDATABLE_TYPES):
        raise ZoneUpdateError("delegate.types", "must be a non-empty list of record types")
    rdtypes = sorted({parse_type(t, f"delegate.types[{i}]") for i, t in enumerate(types)}, key=int)
    if type(expires_s) is not int or not now_s < expires_s <= now_s + MAX_LIFETIME_S:
        raise ZoneUpdateError("delegate.expires_s", f"must be in the future, at most {MAX_LIFETIME_S // 86400} "
                              "days ahead (seconds since the epoch, consensus time)")
    return Delegation(origin.to_text(), delegate, key.to_text(), tuple(patterns),
                      tuple(dns.rdatatype.to_text(t) for t in rdtypes), expires_s, grantor)


def check_scope(delegation: Delegation, zone: Zone, ops: Iterable[Op]) -> None:
    """Raise `UpdateRefused` (REFUSED) unless every operation stays within the delegation. Deleting what
    does not exist is a no-op and always allowed (an out-of-scope RRset cannot appear in between: adding
    it would be out of scope), so "delete every RRset at this name" works where only delegated types live."""
    for i, op in enumerate(ops):
        field = f"ops[{i}]"
        name = parse_owner(op.name, zone.origin, f"{field}.name")
        node = zone.node(name)
        if isinstance(op, DeleteName):
            outside = [t for t in node if not delegation.covers(name, t)]
            if outside:
                raise _refused(field, f"deleting {name} would remove {', '.join(sorted(t.name for t in outside))}")
            continue
        rdtype = parse_type(op.rtype, f"{field}.type")
        if delegation.covers(name, rdtype):
            continue
        if isinstance(op, DeleteRRset | DeleteRecords) and rdtype not in node:
            continue
        assert isinstance(op, AddRecords | ReplaceRRset | DeleteRRset | DeleteRecords)
        raise _refused(field, f"{name} {rdtype.name} is outside what the zone's owner delegated")


def _refused(field: str, reason: str) -> UpdateRefused:
    return UpdateRefused(field, reason, dns.rcode.REFUSED)


class Delegations:
    """The replicated table of delegations, at most `MAX_DELEGATIONS_PER_ZONE` live ones per zone."""

    def __init__(self) -> None:
        self._table: dict[Key, Delegation] = {}

    def grant(self, delegation: Delegation, now_s: int) -> None:
        """Add or replace (same zone, delegate and key name); expired ones of the zone are dropped first."""
        origin = dns.name.from_text(delegation.origin)
        for key, d in list(self._table.items()):
            if key[0] == origin and d.expires_s <= now_s:
                del self._table[key]
        live = sum(1 for key in self._table if key[0] == origin and key != delegation.key)
        if live >= MAX_DELEGATIONS_PER_ZONE:
            raise ZoneUpdateError("delegate", f"zone already has {MAX_DELEGATIONS_PER_ZONE} delegations")
        self._table[delegation.key] = delegation

    def revoke(self, key: Key) -> bool:
        return self._table.pop(key, None) is not None

    def find(self, origin: dns.name.Name, delegate: bytes, key_name: dns.name.Name, now_s: int) -> Delegation | None:
        """The live delegation for this zone, delegate and TSIG key name, if any."""
        d = self._table.get((origin.canonicalize(), delegate, key_name.canonicalize()))
        return d if d is not None and now_s < d.expires_s else None

    def of_zone(self, origin: dns.name.Name) -> list[Delegation]:
        return [d for key, d in sorted(self._table.items()) if key[0] == origin]

    def __len__(self) -> int:
        return len(self._table)

    def to_json(self) -> list[dict[str, object]]:
        return [{"origin": d.origin, "delegate": d.delegate.hex(), "key_name": d.key_name, "names": list(d.names),
                 "types": list(d.types), "expires_s": d.expires_s, "grantor": d.grantor.hex()}
                for _, d in sorted(self._table.items())]

    @classmethod
    def from_json(cls, items: object, zones: Mapping[dns.name.Name, object]) -> Delegations:
        """Rebuild from a snapshot, which may come from a peer: every entry is re-validated."""
        if not isinstance(items, list):
            raise ValueError("DNS snapshot: delegations must be a list")
        out = cls()
        for item in items:
            origin = dns.name.from_text(str(item["origin"])).canonicalize()
            if origin not in zones:
                raise ValueError(f"DNS snapshot: delegation for unknown zone {origin}")
            expires = int(item["expires_s"])
            d = new_delegation(origin, bytes.fromhex(str(item["grantor"])), bytes.fromhex(str(item["delegate"])),
                               str(item["key_name"]), [str(n) for n in item["names"]],
                               [str(t) for t in item["types"]], expires, expires - 1)
            out._table[d.key] = d
        return out
