"""DNSSEC key material derived from seeds, plus the key-state bookkeeping that rollovers need.

Every replica is handed the same seeds (e.g. from the threshold key ceremony), so all derive the same
DNSKEYs and byte-identical RRSIGs: Ed25519 (algorithm 15) is deterministic, and ECDSA P-256 (algorithm
13) is signed with RFC 6979 deterministic nonces (dnspython's default with `cryptography`).
"""

from __future__ import annotations

import enum
import hashlib
from dataclasses import dataclass, replace
from functools import cached_property

import dns.dnssec
import dns.dnssectypes
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.DNSKEY
import dns.rdtypes.ANY.DS
import dns.rrset
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

__all__ = [
    "ALGORITHMS", "ECDSAP256", "ED25519", "SEP_FLAG", "ZONE_FLAG", "KeySet", "KeyState", "Role", "ZoneKey", "make_ds",
    "parse_algorithm",
]

ED25519 = dns.dnssectypes.Algorithm.ED25519
ECDSAP256 = dns.dnssectypes.Algorithm.ECDSAP256SHA256
#: The signing algorithms a zone may choose, by number and mnemonic.
ALGORITHMS: dict[int, str] = {int(ED25519): "ED25519", int(ECDSAP256): "ECDSAP256SHA256"}
ZONE_FLAG = 0x0100
SEP_FLAG = 0x0001


class Role(enum.Enum):
    KSK = "ksk"
    ZSK = "zsk"


class KeyState(enum.Enum):
    """RFC 7583 states, reduced to what changes our output: is the key in DNSKEY, does it sign."""

    PUBLISHED = "published"  # in the DNSKEY RRset, not signing yet (pre-publication)
    ACTIVE = "active"  # in the DNSKEY RRset and signing
    RETIRED = "retired"  # still in the DNSKEY RRset so cached signatures validate, no longer signing


def parse_algorithm(value: object, field: str) -> int:
    """A zone's signing algorithm, by number (13, 15) or mnemonic; ValueError naming `field` otherwise."""
    if isinstance(value, str) and not value.isdigit():
        by_name = {name: number for number, name in ALGORITHMS.items()}
        by_name.update({"ECDSAP256": int(ECDSAP256), "P-256": int(ECDSAP256)})
        number = by_name.get(value.upper())
    else:
        number = int(value) if isinstance(value, int | str) and not isinstance(value, bool) else None
    if number not in ALGORITHMS:
        raise ValueError(f"{field}: signing algorithm must be 13 (ECDSAP256SHA256) or 15 (ED25519), got {value!r}")
    return number


def _p256_key(seed: bytes) -> ec.EllipticCurvePrivateKey:
    """The P-256 key of a 32-byte seed: the seed (re-hashed in the rare case it is no valid scalar) as
    the private scalar, so every replica derives the same key."""
    material = seed
    while True:
        try:
            return ec.derive_private_key(int.from_bytes(material, "big"), ec.SECP256R1())
        except ValueError:  # zero or not below the group order
            material = hashlib.sha256(b"trustchain/dns/p256\0" + material).digest()


@dataclass(frozen=True)
class ZoneKey:
    seed: bytes
    role: Role
    state: KeyState
    algorithm: int = int(ED25519)

    def __post_init__(self) -> None:
        if len(self.seed) != 32:
            raise ValueError(f"key seed must be 32 bytes, got {len(self.seed)}")
        if self.algorithm not in ALGORITHMS:
            raise ValueError(f"unsupported DNSSEC algorithm {self.algorithm}")

    # cached: deriving the key and its DNSKEY/tag dominated signing time (fields are frozen, so safe)
    @cached_property
    def private_key(self) -> Ed25519PrivateKey | ec.EllipticCurvePrivateKey:
        if self.algorithm == ECDSAP256:
            return _p256_key(self.seed)
        return Ed25519PrivateKey.from_private_bytes(self.seed)

    @cached_property
    def dnskey(self) -> dns.rdtypes.ANY.DNSKEY.DNSKEY:
        flags = ZONE_FLAG | (SEP_FLAG if self.role is Role.KSK else 0)
        algorithm = dns.dnssectypes.Algorithm(self.algorithm)
        return dns.dnssec.make_dnskey(self.private_key.public_key(), algorithm, flags=flags)

    @cached_property
    def tag(self) -> int:
        return dns.dnssec.key_id(self.dnskey)

    @property
    def signs(self) -> bool:
        return self.state is KeyState.ACTIVE


@dataclass(frozen=True)
class KeySet:
    """Immutable; rollover helpers return a new KeySet so a replica can hold the old one until the
    ordered rollover step commits."""

    keys: tuple[ZoneKey, ...]

    def __post_init__(self) -> None:
        tags = [k.tag for k in self.keys]
        assert len(set(tags)) == len(tags), "duplicate key tag"
        assert len({k.algorithm for k in self.keys}) == 1, "one algorithm per key set"
        for role in Role:
            if not any(k.role is role and k.signs for k in self.keys):
                raise ValueError(f"key set needs an active {role.name}")

    @classmethod
    def initial(cls, ksk_seed: bytes, zsk_seed: bytes, algorithm: int = int(ED25519)) -> KeySet:
        return cls((ZoneKey(ksk_seed, Role.KSK, KeyState.ACTIVE, algorithm),
                    ZoneKey(zsk_seed, Role.ZSK, KeyState.ACTIVE, algorithm)))

    @property
    def algorithm(self) -> int:
        return self.keys[0].algorithm

    def signing(self, role: Role) -> list[ZoneKey]:
        return sorted((k for k in self.keys if k.role is role and k.signs), key=lambda k: k.tag)

    def dnskey_rrset(self, origin: dns.name.Name, ttl: int) -> dns.rrset.RRset:
        rrset = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.DNSKEY)
        for key in sorted(self.keys, key=lambda k: k.dnskey.to_digestable()):
            rrset.add(key.dnskey, ttl)
        return rrset

    def ds_records(self, origin: dns.name.Name, ttl: int = 3600) -> dns.rrset.RRset:
        """SHA-256 DS for every KSK, for the parent. During a KSK roll both DS are listed."""
        rrset = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.DS)
        for key in sorted((k for k in self.keys if k.role is Role.KSK), key=lambda k: k.tag):
            rrset.add(make_ds(origin, key.dnskey), ttl)
        return rrset

    def cds_rrsets(self, origin: dns.name.Name, ttl: int) -> tuple[dns.rrset.RRset, dns.rrset.RRset]:
        """CDS and CDNSKEY (RFC 7344): the DS set the parent should hold, the newest KSK's alone (the last
        one added), so a parent that follows them moves to the new KSK as soon as a KSK roll starts."""
        ksk = [k for k in self.keys if k.role is Role.KSK][-1]
        cds = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.CDS)
        cds.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDS, make_ds(origin, ksk.dnskey).to_text()), ttl)
        cdnskey = dns.rrset.RRset(origin, dns.rdataclass.IN, dns.rdatatype.CDNSKEY)
        cdnskey.add(dns.rdata.from_text(dns.rdataclass.IN, dns.rdatatype.CDNSKEY, ksk.dnskey.to_text()), ttl)
        return cds, cdnskey

    def find(self, tag: int) -> ZoneKey:
        for key in self.keys:
            if key.tag == tag:
                return key
        raise KeyError(f"no key with tag {tag}")

    # --- rollovers --------------------------------------------------------------------------------

    def prepublish_zsk(self, seed: bytes) -> KeySet:
        """ZSK pre-publish rollover step 1 (RFC 6781 4.1.1.1): new key in DNSKEY, not signing. Wait at
        least the DNSKEY TTL before `activate_zsk`."""
        return replace(self, keys=(*self.keys, ZoneKey(seed, Role.ZSK, KeyState.PUBLISHED, self.algorithm)))

    def activate_zsk(self, tag: int) -> KeySet:
        """Step 2: the new ZSK signs; the old ones stay published (RETIRED) until cached RRSIGs expire
        (max zone TTL), then call `remove`."""
        new = self.find(tag)
        if new.role is not Role.ZSK or new.state is not KeyState.PUBLISHED:
            raise ValueError(f"key {tag} is not a pre-published ZSK")
        keys = []
        for key in self.keys:
            if key.tag == tag:
                key = replace(key, state=KeyState.ACTIVE)
            elif key.role is Role.ZSK and key.state is KeyState.ACTIVE:
                key = replace(key, state=KeyState.RETIRED)
            keys.append(key)
        return replace(self, keys=tuple(keys))

    def prepublish_ksk(self, seed: bytes) -> KeySet:
        """KSK roll step 1 (double-KSK, RFC 7583 3.3.2): the new KSK is published and co-signs DNSKEY,
        so the zone validates from either DS. Then submit `ds_records` to the parent, wait for the old
        DS TTL to pass after the parent drops it, and `remove` the old KSK."""
        return replace(self, keys=(*self.keys, ZoneKey(seed, Role.KSK, KeyState.ACTIVE, self.algorithm)))

    def remove(self, tag: int) -> KeySet:
        """Final step of either roll. Refuses to leave a role without a signing key."""
        self.find(tag)
        return KeySet(tuple(k for k in self.keys if k.tag != tag))


def make_ds(origin: dns.name.Name, dnskey: dns.rdtypes.ANY.DNSKEY.DNSKEY) -> dns.rdtypes.ANY.DS.DS:
    return dns.dnssec.make_ds(origin, dnskey, dns.dnssectypes.DSDigest.SHA256)
