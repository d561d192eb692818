"""How much zone data the replicated DNS holds: per zone, per owning account and in all.

Every replica holds, signs and re-signs every record, so record counts and bytes are replicated policy
(genesis `limits.dns`), checked identically by every replica before an update is applied: an update
that would cross a limit is refused whole. A measure already above a limit (a policy lowered by a
reconfiguration) may still shrink, never grow.

A record's size is its uncompressed wire form (RFC 1035 section 4.1.3): owner name, type, class, TTL,
RDLENGTH and RDATA, so the bound does not depend on how a client spells the record.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import dns.name
import dns.rrset

from trustchain.dns.records import ZoneUpdateError

__all__ = ["EMPTY", "ZoneLimits", "ZoneSize", "check_limit", "rrset_size", "total_size"]

RR_FIXED = 10  # TYPE, CLASS, TTL, RDLENGTH


@dataclass(frozen=True)
class ZoneLimits:
    """Replicated DNS policy. Defaults: at most 1000 zones, 20 per account; 10,000 records and 1 MiB per
    zone, 4 MiB per account across its zones, and 1,000,000 records / 256 MiB in all."""

    max_zones: int = 1000
    max_zones_per_owner: int = 20
    max_records_per_zone: int = 10_000
    max_zone_bytes: int = 1 << 20
    max_owner_bytes: int = 4 << 20
    max_total_records: int = 1_000_000
    max_total_bytes: int = 256 << 20

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class ZoneSize:
    records: int
    bytes: int

    def __add__(self, other: ZoneSize) -> ZoneSize:
        return ZoneSize(self.records + other.records, self.bytes + other.bytes)

    def __sub__(self, other: ZoneSize) -> ZoneSize:
        return ZoneSize(self.records - other.records, self.bytes - other.bytes)


EMPTY = ZoneSize(0, 0)


def rrset_size(rrset: dns.rrset.RRset) -> ZoneSize:
    """The RRset's record count and uncompressed wire bytes."""
    owner = len(rrset.name.to_wire() or b"")
    total = sum(owner + RR_FIXED + len(rd.to_digestable(dns.name.root)) for rd in rrset)
    return ZoneSize(len(rrset), total)


def total_size(rrsets: Iterable[dns.rrset.RRset]) -> ZoneSize:
    size = EMPTY
    for rrset in rrsets:
        size = size + rrset_size(rrset)
    return size


def check_limit(limit: str, what: str, old: int, new: int, cap: int, unit: str) -> None:
    """Raise ZoneUpdateError naming `limits.dns.<limit>` (the policy's name for it, so a client knows which
    one it hit) when going from `old` to `new` grows past `cap`."""
    if new > cap and new > old:
        raise ZoneUpdateError(f"limits.dns.{limit}", f"{what} would hold {new} {unit}, at most {cap}")
