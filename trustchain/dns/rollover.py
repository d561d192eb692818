"""A zone's signing keys over time: which keys it has, and the rollovers that change them, as replicated
state that only ordered commands and consensus time move.

Every replica signs every zone itself, so at each ordered step all must hold the exact same key set.
Keys are therefore never generated at random: key `g` of role R (KSK or ZSK) of zone Z is derived from
the replicated DNS master seed, SHA-256("trustchain/dns/R\\0" | seed | "\\0" | Z), with "\\0g<g>" appended
for g > 0 — the same on every validator, never stored, never sent. What is replicated is the schedule
(`KeySchedule`): for each key its role, generation, state and the consensus time it entered that state.

A rollover starts with an ordered command from the zone's owner, or by itself when consensus time has
passed the zone's key lifetime; each later step happens in the first ordered batch whose consensus time
is past that step's wait. Every replica calls `advance` with the batch's consensus time, so all take
each step in the same batch and re-sign with the same keys.

- ZSK, pre-publication (RFC 6781 4.1.1.1, RFC 7583 3.2): the new ZSK is published; after the DNSKEY TTL
  (plus a margin) it signs and the old one is retired; after the zone's largest TTL (plus the margin),
  when no cached signature of the old key can remain, the old key is removed.
- KSK, double-KSK (RFC 7583 3.3.2): the new KSK is published and co-signs the DNSKEY RRset at once, and
  CDS/CDNSKEY (RFC 7344) name it alone, so the zone validates from either DS. Once the parent serves the
  new DS only — its owner says so (`complete`), or the parent zone is served here and its DS RRset for
  the zone names no older KSK — the older KSKs are removed after the parent's DS TTL.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, replace

import dns.name
import dns.rrset

from trustchain.dns.keys import ED25519, KeySet, KeyState, Role, ZoneKey, make_ds
from trustchain.dns.records import ZoneUpdateError

__all__ = ["MARGIN_S", "MIN_LIFETIME_S", "KeyEntry", "KeySchedule", "key_seed"]

MARGIN_S = 3600  # propagation and clock margin added to every wait
MIN_LIFETIME_S = 86400  # a scheduled rollover at most once a day


def key_seed(master_seed: bytes, origin: dns.name.Name, role: Role, generation: int) -> bytes:
    """The 32-byte seed of key `generation` of `role` for zone `origin` (generation 0: the first key)."""
    label = origin.canonicalize().to_text().encode()
    suffix = b"" if generation == 0 else b"\0g" + str(generation).encode()
    return hashlib.sha256(b"trustchain/dns/" + role.value.encode() + b"\0" + master_seed + b"\0" + label + suffix
                          ).digest()


@dataclass(frozen=True)
class KeyEntry:
    role: Role
    generation: int
    state: KeyState
    since_s: int  # consensus seconds when the key entered `state`


@dataclass(frozen=True)
class KeySchedule:
    """The replicated key state of one zone (see the module docstring)."""

    algorithm: int
    entries: tuple[KeyEntry, ...]
    zsk_lifetime_s: int = 0  # 0: ZSKs roll only on command
    ksk_lifetime_s: int = 0  # 0: KSKs roll only on command
    ds_switched_s: int = 0  # when the parent served here was first seen holding the new KSK's DS alone

    @classmethod
    def initial(cls, now: int, algorithm: int = int(ED25519)) -> KeySchedule:
        return cls(algorithm, (KeyEntry(Role.KSK, 0, KeyState.ACTIVE, now),
                               KeyEntry(Role.ZSK, 0, KeyState.ACTIVE, now)))

    def keyset(self, master_seed: bytes, origin: dns.name.Name) -> KeySet:
        return KeySet(tuple(ZoneKey(key_seed(master_seed, origin, e.role, e.generation), e.role, e.state,
                                    self.algorithm) for e in self.entries))

    def _of(self, role: Role) -> list[KeyEntry]:
        return [e for e in self.entries if e.role is role]

    def rolling(self, role: Role) -> bool:
        return len(self._of(role)) > 1

    def _newest(self, role: Role) -> KeyEntry:
        return max(self._of(role), key=lambda e: e.generation)

    # --- commands -----------------------------------------------------------------------------------

    def start(self, role: Role, now: int, master_seed: bytes, origin: dns.name.Name) -> KeySchedule:
        """Begin a rollover of `role`; refused (naming the field) while one is under way. A generation
        whose key tag would equal a current key's is skipped (RFC 4034 B.1 tags are 16 bits)."""
        if self.rolling(role):
            raise ZoneUpdateError("keys.role", f"a {role.name} rollover is already under way")
        tags = {k.tag for k in self.keyset(master_seed, origin).keys}
        generation = self._newest(role).generation + 1
        while ZoneKey(key_seed(master_seed, origin, role, generation), role, KeyState.ACTIVE,
                      self.algorithm).tag in tags:
            generation += 1
        state = KeyState.PUBLISHED if role is Role.ZSK else KeyState.ACTIVE
        return replace(self, entries=(*self.entries, KeyEntry(role, generation, state, now)), ds_switched_s=0)

    def complete_ksk(self, now: int, dnskey_ttl: int) -> KeySchedule:
        """The owner says the parent now serves the new KSK's DS alone: drop the older KSKs. Refused until
        the new KSK has been published for the DNSKEY TTL (resolvers must have seen it)."""
        if not self.rolling(Role.KSK):
            raise ZoneUpdateError("keys.action", "no KSK rollover is under way")
        newest = self._newest(Role.KSK)
        if now < newest.since_s + dnskey_ttl:
            raise ZoneUpdateError("keys.action", f"the new KSK is published until {newest.since_s + dnskey_ttl} "
                                  "(its DNSKEY TTL) before the old one may go")
        return self._drop_old(Role.KSK)

    def with_lifetimes(self, zsk_lifetime_s: int, ksk_lifetime_s: int) -> KeySchedule:
        for field, value in (("keys.zsk_lifetime_s", zsk_lifetime_s), ("keys.ksk_lifetime_s", ksk_lifetime_s)):
            if type(value) is not int or not (value == 0 or MIN_LIFETIME_S <= value < 2**32):
                raise ZoneUpdateError(field, f"must be 0 (on command only) or at least {MIN_LIFETIME_S} seconds")
        return replace(self, zsk_lifetime_s=zsk_lifetime_s, ksk_lifetime_s=ksk_lifetime_s)

    def _drop_old(self, role: Role) -> KeySchedule:
        newest = self._newest(role)
        return replace(self, entries=tuple(e for e in self.entries if e.role is not role or e is newest),
                       ds_switched_s=0)

    # --- time ---------------------------------------------------------------------------------------

    def advance(self, now: int, dnskey_ttl: int, max_ttl: int, origin: dns.name.Name,
                parent_ds: dns.rrset.RRset | None, master_seed: bytes) -> KeySchedule:
        """The schedule after consensus time `now`: every step whose wait has passed is taken. `max_ttl`
        is the zone's largest TTL; `parent_ds` the DS RRset for the zone in its parent, when the parent is
        served here."""
        out = self
        zsk = out._of(Role.ZSK)
        if len(zsk) == 1 and out.zsk_lifetime_s and now >= zsk[0].since_s + out.zsk_lifetime_s:
            out = out.start(Role.ZSK, now, master_seed, origin)
        ksk = out._of(Role.KSK)
        if len(ksk) == 1 and out.ksk_lifetime_s and now >= ksk[0].since_s + out.ksk_lifetime_s:
            out = out.start(Role.KSK, now, master_seed, origin)
        entries = list(out.entries)
        for i, e in enumerate(entries):
            if e.role is Role.ZSK and e.state is KeyState.PUBLISHED and now >= e.since_s + dnskey_ttl + MARGIN_S:
                entries = [replace(x, state=KeyState.RETIRED, since_s=now)
                           if x.role is Role.ZSK and x.state is KeyState.ACTIVE else x for x in entries]
                entries[i] = replace(e, state=KeyState.ACTIVE, since_s=now)
                break
        entries = [e for e in entries if not (e.role is Role.ZSK and e.state is KeyState.RETIRED
                                              and now >= e.since_s + max_ttl + MARGIN_S)]
        out = replace(out, entries=tuple(entries))
        if out.rolling(Role.KSK) and parent_ds is not None:
            out = out._follow_parent(now, origin, parent_ds, master_seed)
        return out

    def _follow_parent(self, now: int, origin: dns.name.Name, parent_ds: dns.rrset.RRset,
                       master_seed: bytes) -> KeySchedule:
        keys = {e.generation: make_ds(origin, ZoneKey(key_seed(master_seed, origin, Role.KSK, e.generation),
                                                       Role.KSK, e.state, self.algorithm).dnskey)
                for e in self._of(Role.KSK)}
        newest = self._newest(Role.KSK).generation
        digests = {(r.key_tag, r.digest) for r in parent_ds}
        names_new = (keys[newest].key_tag, keys[newest].digest) in digests
        names_old = any((ds.key_tag, ds.digest) in digests for g, ds in keys.items() if g != newest)
        if not names_new or names_old:
            return replace(self, ds_switched_s=0) if self.ds_switched_s else self
        if not self.ds_switched_s:
            return replace(self, ds_switched_s=now)
        if now >= self.ds_switched_s + parent_ds.ttl + MARGIN_S:
            return self._drop_old(Role.KSK)
        return self

    # --- snapshot -----------------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {"algorithm": self.algorithm, "zsk_lifetime_s": self.zsk_lifetime_s,
                "ksk_lifetime_s": self.ksk_lifetime_s, "ds_switched_s": self.ds_switched_s,
                "keys": [[e.role.value, e.generation, e.state.value, e.since_s] for e in self.entries]}

    @classmethod
    def from_json(cls, doc: object) -> KeySchedule:
        """Rebuild from a snapshot (possibly a peer's): malformed input raises ValueError."""
        if not isinstance(doc, dict) or not isinstance(doc.get("keys"), list):
            raise ValueError("DNS snapshot: key schedule must be an object with keys")
        entries = []
        for item in doc["keys"]:
            role, generation, state, since = item
            entries.append(KeyEntry(Role(role), int(generation), KeyState(state), int(since)))
        out = cls(int(doc["algorithm"]), tuple(entries), int(doc["zsk_lifetime_s"]), int(doc["ksk_lifetime_s"]),
                  int(doc["ds_switched_s"]))
        out.keyset(b"\0" * 16, dns.name.root)  # raises on a schedule no zone could sign with
        return out
