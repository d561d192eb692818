"""The cluster's resource limits: one replicated policy, set at genesis (`limits` in genesis.json).

Every replica holds every account's key-value data, zone records and CT entries, so what one account
may store, and what all of them together may store, is decided here and enforced identically by every
replica (`KVStore`, `DNSApplication`, `CTApplication`, `AccountRegistry`).

Accounts are free to register, so per-account quotas alone do not bound the total: an attacker
registers more accounts. Two things do. The registry caps accounts (`accounts.max_accounts`) and
registrations per window, so the total is at most max_accounts x the per-account quota and grows by at
most registrations_per_window x the per-account quota per window; and each store has a global cap,
which `storage_bound` combines into one figure the operator can provision for.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from trustchain.accounts import AccountLimits
from trustchain.ca.policy import CALimits
from trustchain.ct.quota import CTQuota
from trustchain.dns.limits import ZoneLimits
from trustchain.errors import TrustChainError

__all__ = ["KVLimits", "LimitsError", "ResourceLimits", "StorageBound", "limits_from_json"]

T = TypeVar("T")


class LimitsError(TrustChainError, ValueError):
    """A `limits` document that is not a valid policy; the message starts with the field's path."""


@dataclass(frozen=True)
class KVLimits:
    """Key-value data (keys and values) per account and in all."""

    max_account_bytes: int = 4 << 20
    max_total_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class StorageBound:
    """The most client data each store can hold: min(max_accounts x per-account quota, global cap).
    `dns` counts record bytes as they are on the wire (each replica's in-memory form and the DNSSEC
    signatures over them come on top); `ct` counts submitted entries, not the CA's own certificates."""

    kv: int
    dns: int
    ct: int

    @property
    def total(self) -> int:
        return self.kv + self.dns + self.ct


@dataclass(frozen=True)
class ResourceLimits:
    accounts: AccountLimits = field(default_factory=AccountLimits)
    kv: KVLimits = field(default_factory=KVLimits)
    dns: ZoneLimits = field(default_factory=ZoneLimits)
    ct: CTQuota = field(default_factory=CTQuota)
    ca: CALimits = field(default_factory=CALimits)

    def storage_bound(self) -> StorageBound:
        accounts = self.accounts.max_accounts
        dns_per_account = min(self.dns.max_owner_bytes, self.dns.max_zones_per_owner * self.dns.max_zone_bytes)
        return StorageBound(
            kv=min(accounts * self.kv.max_account_bytes, self.kv.max_total_bytes),
            dns=min(accounts * dns_per_account, self.dns.max_total_bytes,
                    self.dns.max_zones * self.dns.max_zone_bytes),
            ct=min(accounts * self.ct.max_account_bytes, self.ct.max_total_bytes),
        )

    def growth_per_window(self) -> int:
        """Bytes of new quota an attacker gains per registration window by registering new accounts."""
        dns_per_account = min(self.dns.max_owner_bytes, self.dns.max_zones_per_owner * self.dns.max_zone_bytes)
        per_account = self.kv.max_account_bytes + dns_per_account + self.ct.max_account_bytes
        return self.accounts.registrations_per_window * per_account


def _section(doc: Mapping[str, Any], name: str, cls: type[T], path: str) -> T:
    """`cls` built from `doc[name]` (every field optional), each value a positive integer."""
    value = doc.get(name, {})
    where = f"{path}.{name}"
    if not isinstance(value, Mapping):
        raise LimitsError(f"{where}: must be an object")
    known = {f.name for f in dataclasses.fields(cls)}  # type: ignore[arg-type]
    for key, item in value.items():
        if key not in known:
            raise LimitsError(f"{where}.{key}: unknown limit (known: {', '.join(sorted(known))})")
        if type(item) is not int or item < 1:
            raise LimitsError(f"{where}.{key}: must be a positive integer, got {item!r}")
    try:
        return cls(**value)
    except ValueError as exc:
        raise LimitsError(f"{where}.{exc}") from None


def limits_from_json(doc: object, path: str = "limits") -> ResourceLimits:
    """The policy a genesis `limits` object describes; anything left out keeps its default.
    Raises LimitsError naming the field."""
    if doc is None:
        return ResourceLimits()
    if not isinstance(doc, Mapping):
        raise LimitsError(f"{path}: must be an object")
    unknown = sorted(set(doc) - {"accounts", "kv", "dns", "ct", "ca"})
    if unknown:
        raise LimitsError(f"{path}.{unknown[0]}: unknown section (known: accounts, kv, dns, ct, ca)")
    return ResourceLimits(
        accounts=_section(doc, "accounts", AccountLimits, path),
        kv=_section(doc, "kv", KVLimits, path),
        dns=_section(doc, "dns", ZoneLimits, path),
        ct=_section(doc, "ct", CTQuota, path),
        ca=_section(doc, "ca", CALimits, path),
    )
