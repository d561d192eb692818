"""The replicated DNS zones as a consensus `Application`.

PBFT orders encoded commands (create a zone, update a zone, tick); every honest replica applies them
identically and re-signs with *consensus* time, never its own clock. Zone keys are derived from one
seed handed to every validator at construction, and Ed25519 signatures are deterministic, so all
honest replicas end up serving byte-identical signed answers: a client can ask any one of them and
check the answer against the zone's DS.

Wire format of an operation (the consensus payload): `encode(DNSCommand(op, encode(body)))`, the body
type chosen by `op` (`CreateZone`, `UpdateZone`, `Tick`, `DelegateZone`, `RevokeDelegation`,
`DelegatedUpdate`, `ZoneKeys`, `AllowTransfer`, `DenyTransfer`; see `trustchain.dns.commands`, whose names
this module re-exports). A tick re-signs any zone whose signing epoch has passed and takes any key rollover
step that is due (`trustchain.dns.rollover`); the node submits one when no update has arrived for a while, so
signatures never run out and rollovers go on in a quiet zone. New signatures or keys come with the next SOA
serial, so secondaries (zone transfers: `trustchain.dns.transfer`) take them.

Each zone is signed with the algorithm chosen at its creation (Ed25519 or ECDSA P-256), or is
*presigned*: signed elsewhere, its DNSKEY, RRSIG and NSEC/NSEC3 records arrive in its updates and are
served as they are.

Dynamic updates (RFC 2136): a zone's owner delegates a scope of its zone to one validator
(`trustchain.dns.delegation`); that validator's DNS listener turns TSIG-signed UPDATE messages into
`DelegatedUpdate` commands it signs with its own account, and every replica checks them against the
delegation and evaluates their prerequisites as they execute.

Each result is `encode(DNSResult)`: status ``ok``, ``unchanged`` or ``error`` (then `detail` is
``<field>: <reason>``, and for a delegated update `rcode` is the RFC 2136 response code). A rejected
command changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import dns.name
import dns.rdatatype
import dns.rrset

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization.zones import VALIDATORS, ZonePolicy
from trustchain.dns.authority import Authority
from trustchain.dns.commands import (
    KEY_ACTIONS,
    MAX_DETAIL,
    MAX_PAYLOAD,
    OP_ALLOW_TRANSFER,
    OP_CREATE,
    OP_DELEGATE,
    OP_DELEGATED,
    OP_DENY_TRANSFER,
    OP_KEYS,
    OP_TICK,
    OP_UNDELEGATE,
    OP_UPDATE,
    RCODE_FORMERR,
    RCODE_NOERROR,
    RCODE_NOTAUTH,
    RCODE_REFUSED,
    STATUS_ERROR,
    STATUS_OK,
    STATUS_UNCHANGED,
    CreateZone,
    DelegatedUpdate,
    DelegateZone,
    DNSCommand,
    DNSResult,
    RevokeDelegation,
    Tick,
    UpdateZone,
    ZoneKeys,
    allow_transfer_command,
    create_command,
    decode_result,
    delegate_command,
    delegated_update_command,
    deny_transfer_command,
    keys_command,
    result_json,
    tick_command,
    undelegate_command,
    update_command,
)
from trustchain.dns.delegation import Delegations, check_scope, new_delegation
from trustchain.dns.dnssec import SignedZone, SigningPolicy, presigned_view, sign_zone
from trustchain.dns.dynamic_update import UpdateRefused, check_prerequisites
from trustchain.dns.edns_options import ServerIdentity
from trustchain.dns.keys import KeySet, Role, parse_algorithm
from trustchain.dns.limits import EMPTY, ZoneLimits, ZoneSize, check_limit
from trustchain.dns.records import parse_owner
from trustchain.dns.rollover import KeySchedule, key_seed
from trustchain.dns.transfer import AllowTransfer, DenyTransfer, Journal, Transfers
from trustchain.dns.zone import RecordOp, Zone, ZoneUpdate, ZoneUpdateError
from trustchain.encoding import DecodeError, decode, encode

__all__ = [
    "OP_ALLOW_TRANSFER", "OP_CREATE", "OP_DELEGATE", "OP_DELEGATED", "OP_DENY_TRANSFER", "OP_KEYS", "OP_TICK",
    "OP_UNDELEGATE", "OP_UPDATE", "RCODE_FORMERR",
    "RCODE_NOERROR", "RCODE_NOTAUTH", "RCODE_REFUSED", "SNAPSHOT_VERSION", "STATUS_ERROR", "STATUS_OK",
    "STATUS_UNCHANGED", "CreateZone", "DNSApplication", "DNSCommand", "DNSResult", "DelegateZone", "DelegatedUpdate",
    "OutsideValidated", "RevokeDelegation", "Tick", "UpdateZone", "ZoneKeys", "allow_transfer_command",
    "create_command", "decode_result", "delegate_command", "delegated_update_command", "deny_transfer_command",
    "keys_command", "result_json", "tick_command",
    "undelegate_command", "update_command", "zone_key_seeds",
]

SNAPSHOT_VERSION = 5  # 2: zone owners; 3: delegations; 4: per-zone key schedules, presigned zones; 5: transfers
OutsideValidated = Callable[[bytes, str], bool]


def zone_key_seeds(master_seed: bytes, origin: dns.name.Name) -> tuple[bytes, bytes]:
    """(KSK seed, ZSK seed) of a zone's first keys: one master seed yields independent keys per zone, and
    the same keys on every validator (later generations: `trustchain.dns.rollover.key_seed`)."""
    return key_seed(master_seed, origin, Role.KSK, 0), key_seed(master_seed, origin, Role.ZSK, 0)


@dataclass
class _ZoneState:
    zone: Zone
    signed: SignedZone
    signed_at: int  # consensus seconds of the last signing; re-signing at it restores the same bytes
    schedule: KeySchedule | None  # None: presigned, its keys are the outside signer's


class DNSApplication:
    """Replicated, DNSSEC-signed zones. `clock_offset_s` is added to consensus time (seconds): zero in
    production, a realistic base in the simulator whose clock starts at zero (RRSIG times are
    32-bit seconds since the epoch, and inception must not be negative)."""

    def __init__(self, master_seed: bytes, policy: SigningPolicy | None = None, clock_offset_s: int = 0, *,
                 zone_policy: ZonePolicy | None = None, validated: OutsideValidated | None = None,
                 validator_domain: str = "", limits: ZoneLimits | None = None,
                 validator_accounts: frozenset[bytes] = frozenset()) -> None:
        """`zone_policy`: who may create and change which zone (`trustchain.authorization.zones`); None
        leaves zones unowned (a DNS-only deployment or workload with no accounts). `validated(account,
        name)` says whether the validators observed the account's control of an unserved name.
        The validator set (`VALIDATORS`, the client of an operation its validators voted for) alone owns
        the zones under `validator_domain` (the nodes' own names); a single validator's account is an
        account like any other. `limits`: how many zones, records and record bytes every replica holds
        (`trustchain.dns.limits`). `validator_accounts`: the validators' accounts, the only ones a zone
        owner may delegate RFC 2136 updates to (`trustchain.dns.delegation`)."""
        if len(master_seed) < 16:
            raise ValueError("master seed must be at least 16 bytes")
        self.zone_policy = zone_policy
        self.validated = validated
        self.validator_domain = dns.name.from_text(validator_domain) if validator_domain else None
        self.validator_accounts = validator_accounts
        self.limits = limits or ZoneLimits()
        self.owners: dict[dns.name.Name, bytes] = {}
        self.delegations = Delegations()
        self.transfers, self.journals = Transfers(), dict[dns.name.Name, Journal]()  # journals: not in snapshots
        self.master_seed = master_seed
        self.policy = policy or SigningPolicy()
        self.clock_offset_s = clock_offset_s
        self.zones: dict[dns.name.Name, _ZoneState] = {}
        self._keys: dict[dns.name.Name, tuple[KeySchedule | None, KeySet]] = {}
        self.identity = ServerIdentity()
        self.zone_listeners: list[Callable[[], None]] = []  # told of every served change (drivers: the table)
        self.authority = Authority()
        self.authority.on_change = self.zone_listeners
        self.applied = self.rejected = self.resigns = self.last_time_s = 0

    # --- Application --------------------------------------------------------------------------------

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        now = context.time_us // 1_000_000 + self.clock_offset_s
        self.last_time_s = max(self.last_time_s, now)
        changed: set[dns.name.Name] = set()
        results = [encode(self._apply(op.client, op.payload, now, changed)) for op in operations]
        self._advance_keys(now, changed)
        self._sign(now, changed)
        return results

    def set_identity(self, identity: ServerIdentity) -> None:
        """This node's NSID and DNS cookie secret (node-local, never replicated)."""
        self.identity = identity
        self.authority.identity = identity

    def snapshot(self) -> bytes:
        doc = {
            "version": SNAPSHOT_VERSION,
            "applied": self.applied,
            "rejected": self.rejected,
            "last_time_s": self.last_time_s,
            "zones": [
                {"text": st.zone.to_text(), "signed_at": st.signed_at, "owner": self.owners.get(origin, b"").hex(),
                 "keys": st.schedule.to_json() if st.schedule is not None else None}
                for origin, st in sorted(self.zones.items())
            ],
            "delegations": self.delegations.to_json(),
            "transfers": self.transfers.to_json(),
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, snapshot: bytes) -> None:
        """Rebuild from a snapshot (possibly from a peer: everything is re-validated) and re-sign each
        zone at its recorded signing time, which reproduces the exact signatures."""
        doc = json.loads(snapshot.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError("DNS snapshot: unknown version")
        zones: dict[dns.name.Name, _ZoneState] = {}
        owners: dict[dns.name.Name, bytes] = {}
        for item in doc["zones"]:
            zone = Zone.restore(str(item["text"]).encode("ascii"))
            signed_at = int(item["signed_at"])
            schedule = None if zone.presigned else KeySchedule.from_json(item["keys"])
            zones[zone.origin] = _ZoneState(zone, self._sign_one(zone, schedule, signed_at, None), signed_at, schedule)
            if item.get("owner"):
                owners[zone.origin] = bytes.fromhex(str(item["owner"]))
        delegations = Delegations.from_json(doc["delegations"], zones)
        self.transfers = Transfers.from_json(doc["transfers"], zones)
        self.journals = {}  # an IXFR from before the snapshot gets the whole zone (RFC 1995 section 4)
        self.zones = zones
        self.owners = owners
        self.delegations = delegations
        self.applied, self.rejected = int(doc["applied"]), int(doc["rejected"])
        self.last_time_s = int(doc["last_time_s"])
        self._keys = {}
        self.authority = Authority(identity=self.identity)
        self.authority.on_change = self.zone_listeners
        for st in zones.values():
            self.authority.load(st.zone, st.signed)
        for listener in self.zone_listeners:  # a new authority, even without zones
            listener()

    # --- queries ------------------------------------------------------------------------------------

    def answer(self, query_wire: bytes, now: int, *, max_udp: int | None, client: str = "") -> bytes:
        """Serve a DNS query from the replicated zones (see `Authority.answer`)."""
        return self.authority.answer(query_wire, now, max_udp=max_udp, client=client)

    def keys_for(self, origin: dns.name.Name) -> KeySet:
        """The zone's current keys, derived from the master seed and its replicated key schedule (a zone
        not created yet: the first Ed25519 keys it would get)."""
        st = self.zones.get(origin)
        return self._keyset(origin, st.schedule if st is not None else None)

    def _keyset(self, origin: dns.name.Name, schedule: KeySchedule | None) -> KeySet:
        memo = self._keys.get(origin)
        if memo is None or memo[0] != schedule:
            keys = (schedule.keyset(self.master_seed, origin) if schedule is not None
                    else KeySet.initial(*zone_key_seeds(self.master_seed, origin)))
            memo = self._keys[origin] = (schedule, keys)
        return memo[1]

    def ds(self, origin: str | dns.name.Name) -> dns.rrset.RRset:
        """DS RRset of a zone, for its parent or as a validator's trust anchor (a presigned zone: of its
        DNSKEYs with the SEP flag)."""
        name = (dns.name.from_text(origin) if isinstance(origin, str) else origin).canonicalize()
        st = self.zones.get(name)
        if st is not None and st.schedule is None:
            return st.signed.ds()
        return self.keys_for(name).ds_records(name)

    def digest(self) -> bytes:
        """SHA-256 over every zone's digest in canonical order: replicas compare this."""
        h = hashlib.sha256()
        for origin, st in sorted(self.zones.items()):
            h.update(origin.to_wire() or b"")
            h.update(st.zone.digest())
        return h.digest()

    # --- commands -----------------------------------------------------------------------------------

    def _apply(self, account: bytes, payload: bytes, now: int, changed: set[dns.name.Name]) -> DNSResult:
        self.applied += 1
        result = self._dispatch(account, payload, now, changed)
        if not result.ok:
            self.rejected += 1
        return result

    def _dispatch(self, account: bytes, payload: bytes, now: int, changed: set[dns.name.Name]) -> DNSResult:
        if len(payload) > MAX_PAYLOAD:
            return _error("", f"command: longer than {MAX_PAYLOAD} bytes")
        try:
            cmd = decode(DNSCommand, payload)
        except DecodeError as exc:
            return _error("", f"command: malformed ({exc})")
        entry = _OPS.get(cmd.op)
        if entry is None:
            return _error("", f"op: must be one of {', '.join(_OPS)}, got {cmd.op[:32]!r}")
        body_type, handler = entry
        try:
            body = decode(body_type, cmd.body)
        except DecodeError as exc:
            return _error(cmd.op, f"{cmd.op}: malformed ({exc})")
        try:
            return handler(self, account, body, now, changed)
        except UpdateRefused as exc:
            return _error(cmd.op, str(exc), exc.rcode)
        except ZoneUpdateError as exc:  # a delegated update the zone cannot take is refused as a whole
            return _error(cmd.op, str(exc), RCODE_REFUSED if cmd.op == OP_DELEGATED else RCODE_NOERROR)

    def _validators_only(self, origin: dns.name.Name) -> bool:
        """Zones at or below the validators' domain (the nodes' own names) belong to the validator set."""
        return self.validator_domain is not None and origin.is_subdomain(self.validator_domain)

    def _check_actor(self, account: bytes, origin: dns.name.Name, field: str) -> None:
        """Only the validator set (a passed vote, `VALIDATORS`) acts on the validators' domain, and it
        acts nowhere else: one validator account is an account like any other."""
        name = origin.to_text()
        if self._validators_only(origin) and account != VALIDATORS:
            raise ZoneUpdateError(field, f"{name} is under the validators' domain {self.validator_domain}: only a "
                                  "quorum of validators may change it (trustchain.authorization.validator_votes)")
        if account == VALIDATORS and not self._validators_only(origin):
            raise ZoneUpdateError(field, f"{name}: the validator set acts only under {self.validator_domain}")

    def _check_create(self, account: bytes, origin: dns.name.Name) -> None:
        if self.zone_policy is None:
            return
        self._check_actor(account, origin, "create.origin")
        if account == VALIDATORS:
            return  # its own domain, whoever owns the zones around it
        decision = self.zone_policy.may_create(origin, account, self.owners)
        if decision.needs_validation:
            name = origin.to_text(omit_final_dot=True)
            if self.validated is None or not self.validated(account, name):
                raise ZoneUpdateError("create.origin", f"{name} is not served by TrustChain: the validators must "
                                      "first observe this account's control of it in the public DNS")
        elif not decision.allowed:
            field, _, reason = decision.reason.partition(": ")
            raise ZoneUpdateError(f"create.{field}", reason)
        cap = self.limits.max_zones_per_owner
        if sum(1 for o in self.owners.values() if o == account) >= cap and account != VALIDATORS:
            raise ZoneUpdateError("limits.dns.max_zones_per_owner", f"this account already owns {cap} zones")

    def _usage(self, owner: bytes | None) -> tuple[ZoneSize, ZoneSize]:
        """(what `owner`'s zones hold, what every zone holds); each zone's size is memoized."""
        mine, total = EMPTY, EMPTY
        for origin, st in self.zones.items():
            size = st.zone.size()
            total = total + size
            if owner is not None and self.owners.get(origin) == owner:
                mine = mine + size
        return mine, total

    def _check_size(self, origin: dns.name.Name, owner: bytes | None, old: ZoneSize, new: ZoneSize) -> None:
        """Refuse (ZoneUpdateError naming the limit) a change of one zone from `old` to `new` that grows
        it, its owner's zones or all zones past the replicated limits. The validators' own zones count
        in the totals but not against an account."""
        lim, zone = self.limits, f"zone {origin.to_text()}"
        check_limit("max_records_per_zone", zone, old.records, new.records, lim.max_records_per_zone, "records")
        check_limit("max_zone_bytes", zone, old.bytes, new.bytes, lim.max_zone_bytes, "record bytes")
        mine, total = self._usage(owner)
        if owner is not None and owner != VALIDATORS:
            check_limit("max_owner_bytes", "this account's zones", mine.bytes, mine.bytes - old.bytes + new.bytes,
                        lim.max_owner_bytes, "record bytes")
        check_limit("max_total_records", "all zones", total.records, total.records - old.records + new.records,
                    lim.max_total_records, "records")
        check_limit("max_total_bytes", "all zones", total.bytes, total.bytes - old.bytes + new.bytes,
                    lim.max_total_bytes, "record bytes")

    def _check_update(self, account: bytes, origin: dns.name.Name) -> None:
        if self.zone_policy is None:
            return
        self._check_actor(account, origin, "update.origin")
        reason = self.zone_policy.may_update(origin, account, self.owners)
        if reason is not None:
            field, _, why = reason.partition(": ")
            raise ZoneUpdateError(f"update.{field}", why)

    def _check_names(self, account: bytes, origin: dns.name.Name, ops: Sequence[RecordOp]) -> None:
        """A zone around the validators' domain cannot hold names under it either."""
        vd = self.validator_domain
        if self.zone_policy is not None and vd is not None and account != VALIDATORS and vd.is_subdomain(origin):
            for i, op in enumerate(ops):
                try:
                    name = parse_owner(op.name, origin, f"update.ops[{i}].name")
                except ZoneUpdateError:
                    continue  # refused by the update itself
                if name.is_subdomain(vd):
                    raise ZoneUpdateError(f"update.ops[{i}].name", f"{name} is under the validators' domain {vd}")

    def _create(self, account: bytes, cmd: CreateZone, now: int, changed: set[dns.name.Name]) -> DNSResult:
        if not cmd.origin.endswith("."):
            raise ZoneUpdateError("create.origin", "must be absolute (end with a dot)")
        try:
            algorithm = parse_algorithm(cmd.algorithm, "create.algorithm")
        except ValueError as exc:
            raise ZoneUpdateError("create.algorithm", str(exc).partition(": ")[2]) from None
        zone = Zone.create(cmd.origin, primary_ns=cmd.primary_ns, admin=cmd.admin, nameservers=cmd.nameservers,
                           ttl=cmd.ttl, presigned=cmd.presigned)
        if zone.origin in self.zones:
            raise ZoneUpdateError("create.origin", f"zone {zone.origin} already exists")
        self._check_create(account, zone.origin)
        if len(self.zones) >= self.limits.max_zones:
            raise ZoneUpdateError("limits.dns.max_zones", f"{self.limits.max_zones} zones exist already")
        owner = account if self.zone_policy is not None else None
        if cmd.records:  # on the new zone alone: refused records leave no zone behind
            self._check_names(account, zone.origin, cmd.records)
            zone.apply(ZoneUpdate.from_records(cmd.origin, cmd.records))
        self._check_size(zone.origin, owner, EMPTY, zone.size())
        if owner is not None:
            self.owners[zone.origin] = owner
        schedule = None if cmd.presigned else KeySchedule.initial(now, algorithm)
        self.zones[zone.origin] = _ZoneState(zone, self._sign_one(zone, schedule, now, None), now, schedule)
        changed.add(zone.origin)
        return DNSResult(STATUS_OK, op=OP_CREATE, origin=zone.origin.to_text(), serial=zone.serial)

    def _update(self, account: bytes, cmd: UpdateZone, now: int, changed: set[dns.name.Name]) -> DNSResult:
        update = ZoneUpdate.from_records(cmd.origin, cmd.ops)
        try:
            origin = dns.name.from_text(update.origin).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise ZoneUpdateError("update.origin", f"malformed name {update.origin!r}") from exc
        st = self.zones.get(origin)
        if st is None:
            raise ZoneUpdateError("update.origin", f"no such zone {origin}")
        self._check_update(account, origin)
        self._check_names(account, origin, cmd.ops)
        old = st.zone.size()

        def check(new: ZoneSize) -> None:
            self._check_size(origin, self.owners.get(origin), old, new)

        status = STATUS_OK if st.zone.apply(update, check) else STATUS_UNCHANGED  # atomic: raises before any change
        if status == STATUS_OK:
            changed.add(origin)
        return DNSResult(status, op=OP_UPDATE, origin=origin.to_text(), serial=st.zone.serial)

    def _tick(self, account: bytes, cmd: Tick, now: int, changed: set[dns.name.Name]) -> DNSResult:
        return DNSResult(STATUS_OK, op=OP_TICK)

    def _zone_keys(self, account: bytes, cmd: ZoneKeys, now: int, changed: set[dns.name.Name]) -> DNSResult:
        """The owner's key operations: start a rollover, complete a KSK rollover, set key lifetimes."""
        try:
            origin = dns.name.from_text(cmd.origin).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise ZoneUpdateError("keys.origin", f"malformed name {cmd.origin[:64]!r}") from exc
        st = self.zones.get(origin)
        if st is None:
            raise ZoneUpdateError("keys.origin", f"no such zone {origin}")
        self._check_update(account, origin)
        if st.schedule is None:
            raise ZoneUpdateError("keys.origin", f"{origin} is presigned: its keys are its signer's")
        if cmd.action not in KEY_ACTIONS:
            raise ZoneUpdateError("keys.action", f"must be one of {', '.join(KEY_ACTIONS)}")
        if cmd.action == "lifetimes":
            schedule = st.schedule.with_lifetimes(cmd.zsk_lifetime_s, cmd.ksk_lifetime_s)
        elif cmd.role not in ("ksk", "zsk") or (cmd.action == "complete" and cmd.role != "ksk"):
            raise ZoneUpdateError("keys.role", "must be ksk or zsk (complete: ksk)")
        elif cmd.action == "roll":
            schedule = st.schedule.start(Role(cmd.role), now, self.master_seed, origin)
        else:
            schedule = st.schedule.complete_ksk(now, self.policy.dnskey_ttl)
        status = STATUS_OK if schedule != st.schedule else STATUS_UNCHANGED
        if schedule.entries != st.schedule.entries:
            changed.add(origin)
        st.schedule = schedule
        return DNSResult(status, op=OP_KEYS, origin=origin.to_text(), serial=st.zone.serial)

    # --- delegations and dynamic updates ---------------------------------------------------------------

    def _owned_zone(self, account: bytes, origin_text: str, op: str) -> dns.name.Name:
        """The zone `account` owns, for granting or revoking a delegation of it."""
        if self.zone_policy is None:
            raise ZoneUpdateError(op, "delegations need zone owners (accounts)")
        try:
            origin = dns.name.from_text(origin_text).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise ZoneUpdateError(f"{op}.origin", f"malformed name {origin_text[:64]!r}") from exc
        if origin not in self.zones:
            raise ZoneUpdateError(f"{op}.origin", f"no such zone {origin}")
        owner = self.owners.get(origin)
        if owner is None or owner == VALIDATORS or owner != account:
            raise ZoneUpdateError(f"{op}.authorization", "only the zone's owner may delegate updates to it "
                                  "(the validators' own zones are never delegated)")
        return origin

    def _delegate(self, account: bytes, cmd: DelegateZone, now: int, changed: set[dns.name.Name]) -> DNSResult:
        origin = self._owned_zone(account, cmd.origin, OP_DELEGATE)
        if cmd.delegate not in self.validator_accounts:
            raise ZoneUpdateError("delegate.delegate", "must be a validator's account id")
        self.delegations.grant(new_delegation(origin, account, cmd.delegate, cmd.key_name, cmd.names, cmd.types,
                                              cmd.expires_s, now), now)
        return DNSResult(STATUS_OK, op=OP_DELEGATE, origin=origin.to_text(), serial=self.zones[origin].zone.serial)

    def _undelegate(self, account: bytes, cmd: RevokeDelegation, now: int, changed: set[dns.name.Name]) -> DNSResult:
        origin = self._owned_zone(account, cmd.origin, OP_UNDELEGATE)
        try:
            key_name = dns.name.from_text(cmd.key_name).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise ZoneUpdateError("undelegate.key_name", f"malformed name {cmd.key_name[:64]!r}") from exc
        status = STATUS_OK if self.delegations.revoke((origin, cmd.delegate, key_name)) else STATUS_UNCHANGED
        return DNSResult(status, op=OP_UNDELEGATE, origin=origin.to_text(), serial=self.zones[origin].zone.serial)

    def _delegated(self, account: bytes, cmd: DelegatedUpdate, now: int, changed: set[dns.name.Name]) -> DNSResult:
        """A validator's update on a zone owner's behalf: only within a live delegation to that validator,
        granted by the zone's owner; prerequisites and scope judged here, by every replica."""
        update = ZoneUpdate.from_records(cmd.origin, cmd.ops)
        try:
            origin = dns.name.from_text(cmd.origin).canonicalize()
            key_name = dns.name.from_text(cmd.key_name).canonicalize()
        except Exception as exc:  # dnspython raises several exception types on bad names
            raise UpdateRefused("delegated_update", "malformed zone or key name", RCODE_FORMERR) from exc
        st = self.zones.get(origin)
        if st is None:
            raise UpdateRefused("delegated_update.origin", f"no such zone {origin}", RCODE_NOTAUTH)
        delegation = self.delegations.find(origin, account, key_name, now)
        if (delegation is None or account not in self.validator_accounts
                or self.owners.get(origin) != delegation.grantor):
            raise UpdateRefused("delegated_update.authorization", f"no live delegation of {origin} to this "
                                f"account for key {key_name}", RCODE_REFUSED)
        check_prerequisites(st.zone, cmd.prerequisites)
        check_scope(delegation, st.zone, update.ops)
        status = STATUS_OK if st.zone.apply(update) else STATUS_UNCHANGED
        if status == STATUS_OK:
            changed.add(origin)
        return DNSResult(status, op=OP_DELEGATED, origin=origin.to_text(), serial=st.zone.serial)

    # --- signing ------------------------------------------------------------------------------------

    def _advance_keys(self, now: int, changed: set[dns.name.Name]) -> None:
        """Once per batch, at its consensus time: take every key rollover step that is due (a zone whose
        keys change is re-signed in the same batch)."""
        for origin, st in sorted(self.zones.items()):
            schedule = st.schedule
            if schedule is None or not (schedule.zsk_lifetime_s or schedule.ksk_lifetime_s
                                        or schedule.rolling(Role.ZSK) or schedule.rolling(Role.KSK)):
                continue
            max_ttl = max((r.ttl for r in st.zone.rrsets()), default=0)
            advanced = schedule.advance(now, self.policy.dnskey_ttl, max(max_ttl, self.policy.dnskey_ttl), origin,
                                        self._parent_ds(origin), self.master_seed)
            if advanced.entries != schedule.entries:
                changed.add(origin)
            st.schedule = advanced

    def _parent_ds(self, origin: dns.name.Name) -> dns.rrset.RRset | None:
        """The DS RRset for `origin` in its parent zone, when that parent is served here."""
        name = origin
        while len(name) > 1:
            name = name.parent()
            parent = self.zones.get(name)
            if parent is not None:
                return parent.zone.get(origin, dns.rdatatype.RdataType.DS)
        return None

    def _sign(self, now: int, changed: set[dns.name.Name]) -> None:
        """Once per batch: re-sign zones that changed (data or keys), and any whose signing epoch has
        passed. Re-signing at the same time as a signing in this batch reuses every signature."""
        for origin, st in sorted(self.zones.items()):
            stale = st.signed.needs_resign(now)
            if origin not in changed and not stale:
                continue
            old = st.signed
            st.signed = self._sign_one(st.zone, st.schedule, now, old)
            if st.schedule is not None and old.serial == st.zone.serial and not _same(old, st.signed):
                st.zone.bump_serial()  # new signatures or keys, not new data: a new serial all the same
                st.signed = self._sign_one(st.zone, st.schedule, now, st.signed)
            st.signed_at = now
            self.resigns += stale
            self.authority.load(st.zone, st.signed)
            if self.transfers.for_zone(origin):  # signed diffs for IXFR, of the zones someone may transfer
                self.journals.setdefault(origin, Journal()).record(old, st.signed)
            else:
                self.journals.pop(origin, None)

    def _transfer_acl(self, account: bytes, cmd: AllowTransfer | DenyTransfer, now: int,
                      changed: set[dns.name.Name]) -> DNSResult:
        """The zone's owner grants (or withdraws) a TSIG key name's right to transfer the zone."""
        op = OP_ALLOW_TRANSFER if isinstance(cmd, AllowTransfer) else OP_DENY_TRANSFER
        origin, status = self._owned_zone(account, cmd.origin, op), STATUS_OK
        if isinstance(cmd, AllowTransfer):
            self.transfers.grant(origin, cmd.key_name, cmd.notify)
        elif not self.transfers.revoke(origin, cmd.key_name):
            status = STATUS_UNCHANGED
        return DNSResult(status, op=op, origin=origin.to_text(), serial=self.zones[origin].zone.serial)

    def _sign_one(self, zone: Zone, schedule: KeySchedule | None, now: int, previous: SignedZone | None
                  ) -> SignedZone:
        if schedule is None:
            return presigned_view(zone)
        return sign_zone(zone, self._keyset(zone.origin, schedule), now, self.policy, previous=previous)


def _same(a: SignedZone, b: SignedZone) -> bool:
    return a.rrsets == b.rrsets and a.sigs == b.sigs


def _error(op: str, detail: str, rcode: int = RCODE_NOERROR) -> DNSResult:
    return DNSResult(STATUS_ERROR, detail[:MAX_DETAIL], op=op, rcode=rcode)


_Handler = Callable[[DNSApplication, bytes, Any, int, set[dns.name.Name]], DNSResult]
#: The one dispatch table: command op -> (body type, handler).
_OPS: dict[str, tuple[type[Any], _Handler]] = {
    OP_CREATE: (CreateZone, DNSApplication._create),
    OP_UPDATE: (UpdateZone, DNSApplication._update),
    OP_TICK: (Tick, DNSApplication._tick),
    OP_DELEGATE: (DelegateZone, DNSApplication._delegate),
    OP_UNDELEGATE: (RevokeDelegation, DNSApplication._undelegate),
    OP_DELEGATED: (DelegatedUpdate, DNSApplication._delegated),
    OP_KEYS: (ZoneKeys, DNSApplication._zone_keys),
    OP_ALLOW_TRANSFER: (AllowTransfer, DNSApplication._transfer_acl),
    OP_DENY_TRANSFER: (DenyTransfer, DNSApplication._transfer_acl),
}
