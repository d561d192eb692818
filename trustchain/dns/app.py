"""The replicated DNS zones as a consensus `Application`.

PBFT orders encoded commands (create a zone, update a zone, tick); every honest replica applies them
identically and re-signs with *consensus* time, never its own clock. Zone keys are derived from one
seed handed to every validator at construction, and Ed25519 signatures are deterministic, so all
honest replicas end up serving byte-identical signed answers: a client can ask any one of them and
check the answer against the zone's DS.

Wire format of an operation (the consensus payload):

* ``CREATE`` + space + canonical JSON ``{"origin", "primary_ns", "admin", "nameservers", "ttl"}``
* ``UPDATE`` + space + `ZoneUpdate.encode()`
* ``TICK`` (no body): re-sign any zone whose signing epoch has passed. The node submits one when no
  update has arrived for a while, so signatures never run out in a quiet zone.

Each result is ``OK ...`` or ``ERR <field>: <reason>``; a rejected command changes nothing.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass

import dns.name
import dns.rrset

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.dns.authority import Authority
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.zone import Zone, ZoneUpdate, ZoneUpdateError

CREATE, UPDATE, TICK = b"CREATE", b"UPDATE", b"TICK"
SNAPSHOT_VERSION = 1
MAX_ZONES = 1000  # bounds the state any client can make every replica hold
MAX_PAYLOAD = 64 * 1024
_CREATE_FIELDS = frozenset({"origin", "primary_ns", "admin", "nameservers", "ttl"})


def encode_create(origin: str, *, primary_ns: str, admin: str, nameservers: Sequence[str], ttl: int = 3600) -> bytes:
    doc = {"origin": origin, "primary_ns": primary_ns, "admin": admin, "nameservers": list(nameservers), "ttl": ttl}
    return CREATE + b" " + json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()


def encode_update(update: ZoneUpdate) -> bytes:
    return UPDATE + b" " + update.encode()


def encode_tick() -> bytes:
    return TICK


def zone_key_seeds(master_seed: bytes, origin: dns.name.Name) -> tuple[bytes, bytes]:
    """(KSK seed, ZSK seed) for `origin`: one master seed yields independent keys per zone, and the
    same keys on every validator."""
    label = origin.canonicalize().to_text().encode()
    ksk = hashlib.sha256(b"trustchain/dns/ksk\0" + master_seed + b"\0" + label).digest()
    zsk = hashlib.sha256(b"trustchain/dns/zsk\0" + master_seed + b"\0" + label).digest()
    return ksk, zsk


@dataclass
class _ZoneState:
    zone: Zone
    signed: SignedZone
    signed_at: int  # consensus seconds of the last signing; re-signing at it restores the same bytes


class DNSApplication:
    """Replicated, DNSSEC-signed zones. `clock_offset_s` is added to consensus time (seconds): zero in
    production, a realistic base in the simulator whose clock starts at zero (RRSIG times are
    32-bit seconds since the epoch, and inception must not be negative)."""

    def __init__(self, master_seed: bytes, policy: SigningPolicy | None = None, clock_offset_s: int = 0) -> None:
        if len(master_seed) < 16:
            raise ValueError("master seed must be at least 16 bytes")
        self.master_seed = master_seed
        self.policy = policy or SigningPolicy()
        self.clock_offset_s = clock_offset_s
        self.zones: dict[dns.name.Name, _ZoneState] = {}
        self._keys: dict[dns.name.Name, KeySet] = {}
        self.authority = Authority()
        self.applied = 0
        self.rejected = 0
        self.resigns = 0
        self.last_time_s = 0

    # --- Application --------------------------------------------------------------------------------

    def execute(self, operations: Sequence[Operation], context: ExecutionContext) -> list[bytes]:
        now = context.time_us // 1_000_000 + self.clock_offset_s
        self.last_time_s = max(self.last_time_s, now)
        changed: set[dns.name.Name] = set()
        results = [self._apply(op.payload, now, changed) for op in operations]
        self._sign(now, changed)
        return results

    def snapshot(self) -> bytes:
        doc = {
            "version": SNAPSHOT_VERSION,
            "applied": self.applied,
            "rejected": self.rejected,
            "last_time_s": self.last_time_s,
            "zones": [
                {"text": st.zone.to_text(), "signed_at": st.signed_at}
                for _, st in sorted(self.zones.items())
            ],
        }
        return json.dumps(doc, sort_keys=True, separators=(",", ":")).encode()

    def restore(self, snapshot: bytes) -> None:
        """Rebuild from a snapshot (possibly from a peer: everything is re-validated) and re-sign each
        zone at its recorded signing time, which reproduces the exact signatures."""
        doc = json.loads(snapshot.decode("utf-8"))
        if not isinstance(doc, dict) or doc.get("version") != SNAPSHOT_VERSION:
            raise ValueError("DNS snapshot: unknown version")
        zones: dict[dns.name.Name, _ZoneState] = {}
        for item in doc["zones"]:
            zone = Zone.restore(str(item["text"]).encode("ascii"))
            signed_at = int(item["signed_at"])
            zones[zone.origin] = _ZoneState(zone, self._sign_one(zone, signed_at, None), signed_at)
        self.zones = zones
        self.applied, self.rejected = int(doc["applied"]), int(doc["rejected"])
        self.last_time_s = int(doc["last_time_s"])
        self.authority = Authority()
        for st in zones.values():
            self.authority.load(st.zone, st.signed)

    # --- queries ------------------------------------------------------------------------------------

    def answer(self, query_wire: bytes, now: int, *, max_udp: int | None) -> bytes:
        """Serve a DNS query from the replicated zones (see `Authority.answer`)."""
        return self.authority.answer(query_wire, now, max_udp=max_udp)

    def keys_for(self, origin: dns.name.Name) -> KeySet:
        keys = self._keys.get(origin)
        if keys is None:
            keys = self._keys[origin] = KeySet.initial(*zone_key_seeds(self.master_seed, origin))
        return keys

    def ds(self, origin: str | dns.name.Name) -> dns.rrset.RRset:
        """DS RRset of a zone, for its parent or as a validator's trust anchor."""
        name = dns.name.from_text(origin) if isinstance(origin, str) else origin
        return self.keys_for(name.canonicalize()).ds_records(name.canonicalize())

    def digest(self) -> bytes:
        """SHA-256 over every zone's digest in canonical order: replicas compare this."""
        h = hashlib.sha256()
        for origin, st in sorted(self.zones.items()):
            h.update(origin.to_wire() or b"")
            h.update(st.zone.digest())
        return h.digest()

    # --- commands -----------------------------------------------------------------------------------

    def _apply(self, payload: bytes, now: int, changed: set[dns.name.Name]) -> bytes:
        self.applied += 1
        try:
            return self._dispatch(payload, now, changed)
        except ZoneUpdateError as exc:
            self.rejected += 1
            return b"ERR " + str(exc).encode("utf-8", "replace")[:512]

    def _dispatch(self, payload: bytes, now: int, changed: set[dns.name.Name]) -> bytes:
        if len(payload) > MAX_PAYLOAD:
            raise ZoneUpdateError("command", f"longer than {MAX_PAYLOAD} bytes")
        verb, _, body = payload.partition(b" ")
        if verb == TICK and not body:
            return b"OK tick"
        if verb == CREATE:
            return self._create(body, now, changed)
        if verb == UPDATE:
            update = ZoneUpdate.decode(body)
            try:
                origin = dns.name.from_text(update.origin).canonicalize()
            except Exception as exc:  # dnspython raises several exception types on bad names
                raise ZoneUpdateError("update.origin", f"malformed name {update.origin!r}") from exc
            st = self.zones.get(origin)
            if st is None:
                raise ZoneUpdateError("update.origin", f"no such zone {origin}")
            if st.zone.apply(update):  # atomic: raises before touching the zone
                changed.add(origin)
                return b"OK serial=%d" % st.zone.serial
            return b"OK unchanged serial=%d" % st.zone.serial
        raise ZoneUpdateError("command", "must start with CREATE, UPDATE or TICK")

    def _create(self, body: bytes, now: int, changed: set[dns.name.Name]) -> bytes:
        try:
            doc = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as exc:
            raise ZoneUpdateError("create", f"not valid UTF-8 JSON: {exc}") from exc
        if not isinstance(doc, dict):
            raise ZoneUpdateError("create", "must be a JSON object")
        unknown = sorted(set(doc) - _CREATE_FIELDS)
        if unknown:
            raise ZoneUpdateError(f"create.{unknown[0]}", "unknown field")
        for fld in ("origin", "primary_ns", "admin"):
            if not isinstance(doc.get(fld), str):
                raise ZoneUpdateError(f"create.{fld}", "missing or not a string")
        nameservers = doc.get("nameservers")
        if not isinstance(nameservers, list) or not all(isinstance(n, str) for n in nameservers):
            raise ZoneUpdateError("create.nameservers", "must be a list of names")
        ttl = doc.get("ttl", 3600)
        if not doc["origin"].endswith("."):
            raise ZoneUpdateError("create.origin", "must be absolute (end with a dot)")
        zone = Zone.create(
            doc["origin"], primary_ns=doc["primary_ns"], admin=doc["admin"], nameservers=tuple(nameservers), ttl=ttl
        )
        if zone.origin in self.zones:
            raise ZoneUpdateError("create.origin", f"zone {zone.origin} already exists")
        if len(self.zones) >= MAX_ZONES:
            raise ZoneUpdateError("create", f"zone limit ({MAX_ZONES}) reached")
        self.zones[zone.origin] = _ZoneState(zone, self._sign_one(zone, now, None), now)
        changed.add(zone.origin)
        return b"OK created %s" % zone.origin.to_text().encode()

    # --- signing ------------------------------------------------------------------------------------

    def _sign(self, now: int, changed: set[dns.name.Name]) -> None:
        """Once per batch: re-sign zones that changed, and any whose signing epoch has passed."""
        for origin, st in sorted(self.zones.items()):
            stale = st.signed.needs_resign(now)
            if origin not in changed and not stale:
                continue
            if stale or not st.signed.is_current(st.zone):  # else: created in this batch, signed already
                st.signed = self._sign_one(st.zone, now, st.signed)
                st.signed_at = now
                self.resigns += stale
            self.authority.load(st.zone, st.signed)

    def _sign_one(self, zone: Zone, now: int, previous: SignedZone | None) -> SignedZone:
        return sign_zone(zone, self.keys_for(zone.origin), now, self.policy, previous=previous)
