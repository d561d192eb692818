"""The DNS application's commands and results: what PBFT orders and what every replica answers.

Wire format of an operation (the consensus payload): `encode(DNSCommand(op, encode(body)))`, the body
type chosen by `op`; build them with the `*_command` functions, which refuse (ZoneUpdateError naming
the field) only what the encoding cannot carry. Each result is `encode(DNSResult)`.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from typing import Any

import dns.rcode

from trustchain.dns.dynamic_update import Prerequisite
from trustchain.dns.zone import RecordOp, ZoneUpdate, ZoneUpdateError
from trustchain.encoding import decode, encode

__all__ = [
    "KEY_ACTIONS",
    "MAX_DETAIL",
    "MAX_PAYLOAD",
    "OP_CREATE",
    "OP_DELEGATE",
    "OP_DELEGATED",
    "OP_KEYS",
    "OP_TICK",
    "OP_UNDELEGATE",
    "OP_UPDATE",
    "RCODE_FORMERR",
    "RCODE_NOERROR",
    "RCODE_NOTAUTH",
    "RCODE_REFUSED",
    "STATUS_ERROR",
    "STATUS_OK",
    "STATUS_UNCHANGED",
    "CreateZone",
    "DNSCommand",
    "DNSResult",
    "DelegateZone",
    "DelegatedUpdate",
    "RevokeDelegation",
    "Tick",
    "UpdateZone",
    "ZoneKeys",
    "command_from_json",
    "create_command",
    "decode_result",
    "delegate_command",
    "delegated_update_command",
    "keys_command",
    "result_json",
    "tick_command",
    "undelegate_command",
    "update_command",
]

OP_CREATE, OP_UPDATE, OP_TICK = "create", "update", "tick"
OP_DELEGATE, OP_UNDELEGATE, OP_DELEGATED = "delegate", "undelegate", "delegated_update"
OP_KEYS = "keys"
KEY_ACTIONS = ("roll", "complete", "lifetimes")
STATUS_OK, STATUS_UNCHANGED, STATUS_ERROR = "ok", "unchanged", "error"
RCODE_NOERROR, RCODE_FORMERR = int(dns.rcode.NOERROR), int(dns.rcode.FORMERR)
RCODE_REFUSED, RCODE_NOTAUTH = int(dns.rcode.REFUSED), int(dns.rcode.NOTAUTH)
MAX_PAYLOAD = 64 * 1024
MAX_DETAIL = 512


@dataclass(frozen=True)
class DNSCommand:
    """The envelope every replica decodes first; `body` is `encode()` of the type `_OPS[op]` names."""

    op: str
    body: bytes


@dataclass(frozen=True)
class CreateZone:
    """A new zone with SOA and apex NS; names relative to `origin` unless they end in a dot."""

    origin: str  # absolute
    primary_ns: str
    admin: str  # the SOA RNAME in name form (hostmaster.example.)
    nameservers: tuple[str, ...]
    ttl: int = 3600
    algorithm: int = 15  # 15 ED25519 or 13 ECDSAP256SHA256 (trustchain.dns.keys.ALGORITHMS)
    presigned: bool = False  # signed elsewhere: carries its own DNSKEY/RRSIG/NSEC, served as given


@dataclass(frozen=True)
class UpdateZone:
    """A `ZoneUpdate` in wire form, applied all-or-nothing."""

    origin: str
    ops: tuple[RecordOp, ...]


@dataclass(frozen=True)
class Tick:
    """Nothing to carry: executing any batch re-signs the zones whose signing epoch has passed."""


@dataclass(frozen=True)
class DelegateZone:
    """The owner of `origin` lets validator account `delegate` apply updates within `names` (patterns,
    `*` labels match one or more labels) and `types`, received signed with TSIG key `key_name`, until
    `expires_s` (consensus seconds since the epoch). Replaces an earlier one with the same three keys."""

    origin: str
    delegate: bytes
    key_name: str
    names: tuple[str, ...]
    types: tuple[str, ...]
    expires_s: int


@dataclass(frozen=True)
class RevokeDelegation:
    origin: str
    delegate: bytes
    key_name: str


@dataclass(frozen=True)
class DelegatedUpdate:
    """An RFC 2136 update a validator received signed with TSIG key `key_name`: prerequisites, then ops."""

    origin: str
    key_name: str
    prerequisites: tuple[Prerequisite, ...]
    ops: tuple[RecordOp, ...]


@dataclass(frozen=True)
class ZoneKeys:
    """The owner's key operations (`trustchain.dns.rollover`): `roll` starts a rollover of `role` ("ksk" or
    "zsk"); `complete` ends a KSK rollover once the parent serves the new DS; `lifetimes` sets how often
    each role rolls by itself (seconds, 0: on command only)."""

    origin: str
    action: str
    role: str = ""
    zsk_lifetime_s: int = 0
    ksk_lifetime_s: int = 0


@dataclass(frozen=True)
class DNSResult:
    """The deterministic answer of every honest replica: which command, and the zone's serial after it."""

    status: str
    detail: str = ""  # for errors: "<field>: <reason>"
    op: str = ""  # the command answered ("" if it did not decode)
    origin: str = ""  # the zone created or updated, absolute and lower-case
    serial: int = 0  # its SOA serial afterwards
    rcode: int = 0  # a delegated update's RFC 2136 response code (0, NOERROR, for everything else)

    @property
    def ok(self) -> bool:
        return self.status != STATUS_ERROR


def create_command(origin: str, *, primary_ns: str, admin: str, nameservers: Sequence[str],
                   ttl: int = 3600, algorithm: int = 15, presigned: bool = False) -> bytes:
    """Raises ZoneUpdateError (naming the field) for what the wire cannot carry, e.g. a negative TTL."""
    for key, value in (("origin", origin), ("primary_ns", primary_ns), ("admin", admin)):
        if type(value) is not str:
            raise ZoneUpdateError(f"create.{key}", "must be a string")
    if isinstance(nameservers, str) or not all(type(ns) is str for ns in nameservers):
        raise ZoneUpdateError("create.nameservers", "must be a list of names")
    if type(ttl) is not int or not 0 <= ttl < 2**64:
        raise ZoneUpdateError("create.ttl", f"bad TTL {ttl!r}: must be an unsigned 64-bit integer")
    if type(algorithm) is not int or not 0 <= algorithm < 256:
        raise ZoneUpdateError("create.algorithm", "must be a DNSSEC algorithm number (13 or 15)")
    if type(presigned) is not bool:
        raise ZoneUpdateError("create.presigned", "must be true or false")
    return _command(OP_CREATE, CreateZone(origin, primary_ns, admin, tuple(nameservers), ttl, algorithm, presigned))


def update_command(update: ZoneUpdate) -> bytes:
    """Raises ZoneUpdateError (naming the field) for what the wire cannot carry, e.g. a negative TTL."""
    if type(update.origin) is not str:
        raise ZoneUpdateError("update.origin", "must be a string")
    return _command(OP_UPDATE, UpdateZone(update.origin, update.records()))


def tick_command() -> bytes:
    return _command(OP_TICK, Tick())


def delegate_command(origin: str, delegate: bytes, key_name: str, *, names: Sequence[str], types: Sequence[str],
                     expires_s: int) -> bytes:
    """The owner's grant (see `DelegateZone`); what the replicas would refuse is refused when executed."""
    return _command(OP_DELEGATE, DelegateZone(origin, delegate, key_name, tuple(names), tuple(types), expires_s))


def undelegate_command(origin: str, delegate: bytes, key_name: str) -> bytes:
    return _command(OP_UNDELEGATE, RevokeDelegation(origin, delegate, key_name))


def delegated_update_command(key_name: str, prerequisites: Sequence[Prerequisite], update: ZoneUpdate) -> bytes:
    """What a validator orders for an RFC 2136 update it received signed with TSIG key `key_name`."""
    return _command(OP_DELEGATED, DelegatedUpdate(update.origin, key_name, tuple(prerequisites), update.records()))


def keys_command(origin: str, action: str, role: str = "", *, zsk_lifetime_s: int = 0,
                 ksk_lifetime_s: int = 0) -> bytes:
    """A `ZoneKeys` command; what the replicas would refuse is refused when executed."""
    for key, value in (("origin", origin), ("action", action), ("role", role)):
        if type(value) is not str:
            raise ZoneUpdateError(f"keys.{key}", "must be a string")
    for key, number in (("zsk_lifetime_s", zsk_lifetime_s), ("ksk_lifetime_s", ksk_lifetime_s)):
        if type(number) is not int or not 0 <= number < 2**64:
            raise ZoneUpdateError(f"keys.{key}", "must be a non-negative integer (seconds)")
    return _command(OP_KEYS, ZoneKeys(origin, action, role, zsk_lifetime_s, ksk_lifetime_s))


def _command(op: str, body: CreateZone | UpdateZone | Tick | DelegateZone | RevokeDelegation | DelegatedUpdate
             | ZoneKeys) -> bytes:
    return encode(DNSCommand(op, encode(body)))


def command_from_json(body: object) -> bytes:
    """The command of a JSON body as clients send it: `{"create": {origin, primary_ns, admin, nameservers,
    ttl, algorithm, presigned}}`, `{"update": {origin, ops}}` or `{"keys": {origin, action, role,
    zsk_lifetime_s, ksk_lifetime_s}}`; a malformed one raises ZoneUpdateError naming the field."""
    if not isinstance(body, dict) or len(body) != 1 or not {"create", "update", "keys"} & body.keys():
        raise ZoneUpdateError("body", 'expected {"create": {...}}, {"update": {"origin", "ops"}} or {"keys": {...}}')
    kind, doc = next(iter(body.items()))
    if kind == "update":
        return update_command(ZoneUpdate.from_json(doc))
    if not isinstance(doc, dict):
        raise ZoneUpdateError(kind, "must be an object")
    fields = _JSON_FIELDS[kind]
    unknown = sorted(str(k) for k in doc if k not in fields)
    if unknown:
        raise ZoneUpdateError(f"{kind}.{unknown[0]}", "unknown field")
    for key, (kind_of, required) in fields.items():
        if key not in doc:
            if required:
                raise ZoneUpdateError(f"{kind}.{key}", "required")
        elif not isinstance(doc[key], kind_of) or (kind_of is int and isinstance(doc[key], bool)):
            raise ZoneUpdateError(f"{kind}.{key}", f"must be {_KIND_NAMES[kind_of]}")
    if kind == "create":
        nameservers = doc.get("nameservers", [doc["primary_ns"]])
        if not all(isinstance(n, str) for n in nameservers):
            raise ZoneUpdateError("create.nameservers", "must be a list of names")
        return create_command(doc["origin"], primary_ns=doc["primary_ns"], admin=doc["admin"],
                              nameservers=nameservers, ttl=doc.get("ttl", 3600), algorithm=doc.get("algorithm", 15),
                              presigned=doc.get("presigned", False))
    return keys_command(doc["origin"], doc["action"], doc.get("role", ""), zsk_lifetime_s=doc.get("zsk_lifetime_s", 0),
                        ksk_lifetime_s=doc.get("ksk_lifetime_s", 0))


_JSON_FIELDS: dict[str, dict[str, tuple[type, bool]]] = {
    "create": {"origin": (str, True), "primary_ns": (str, True), "admin": (str, True), "nameservers": (list, False),
               "ttl": (int, False), "algorithm": (int, False), "presigned": (bool, False)},
    "keys": {"origin": (str, True), "action": (str, True), "role": (str, False), "zsk_lifetime_s": (int, False),
             "ksk_lifetime_s": (int, False)},
}
_KIND_NAMES = {str: "a string", int: "an integer", bool: "true or false", list: "a list"}


def decode_result(data: bytes) -> DNSResult:
    return decode(DNSResult, data)


def result_json(result: DNSResult) -> dict[str, Any]:
    return asdict(result)
