"""Who may create which zone, and who may change it.

A zone belongs to the account that created it. The rule for creating a zone is replicated policy:

* never the root, a top-level domain or any public suffix (the Public Suffix List);
* inside a zone TrustChain already serves: only by that zone's owner (the new zone is theirs too);
* anywhere else: only after the validators have observed, each on its own in the public DNS, that the
  account controls the name (`observations`), so DNS that any caller can write is never the proof.

Zones owned by the validator set (the nodes' own zone) change only by validator commands.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import dns.name

__all__ = [
    "VALIDATORS",
    "CreateDecision",
    "PublicSuffixes",
    "ZonePolicy",
    "default_public_suffixes",
]

VALIDATORS = b"validators"  # the owner of zones that only the validator set may change

PublicSuffixes = Callable[[str], bool]


@functools.cache
def default_public_suffixes() -> PublicSuffixes:
    """The Public Suffix List as shipped by the `publicsuffixlist` package. Every replica must use the
    same list version (it is part of the policy the cluster agrees on at genesis). Parsed once per
    process: the list is immutable, and parsing it takes about a second."""
    from publicsuffixlist import PublicSuffixList

    psl = PublicSuffixList()

    def is_public(name: str) -> bool:
        return bool(psl.is_public(name.rstrip(".").lower()))

    return is_public


@dataclass(frozen=True)
class CreateDecision:
    """`allowed`: create now. `needs_validation`: allowed once the account's control of `origin` is
    observed in the public DNS. Otherwise `reason` says why never."""

    allowed: bool
    needs_validation: bool = False
    reason: str = ""


class ZonePolicy:
    def __init__(self, is_public_suffix: PublicSuffixes, registry_suffixes: tuple[str, ...] = ()) -> None:
        """`registry_suffixes`: namespaces the cluster is the registry of (a private `internal.` or a
        development cluster's `example.`): a name directly below one is registered first come, first served,
        since there is no outside DNS to prove control in."""
        self.is_public_suffix = is_public_suffix
        self.registry_suffixes = tuple(dns.name.from_text(s) for s in registry_suffixes)

    @staticmethod
    def enclosing(origin: dns.name.Name, zones: Mapping[dns.name.Name, bytes]) -> dns.name.Name | None:
        """The closest zone that contains `origin` (itself included)."""
        best: dns.name.Name | None = None
        for zone in zones:
            if origin.is_subdomain(zone) and (best is None or len(zone) > len(best)):
                best = zone
        return best

    def may_create(
        self, origin: dns.name.Name, account: bytes, owners: Mapping[dns.name.Name, bytes]
    ) -> CreateDecision:
        """May `account` create `origin`, given the existing zones and their owners?"""
        if len(origin) <= 2:  # the root (1 label) or a top-level domain (2 labels with the root)
            return CreateDecision(False, reason="origin: the root and top-level domains cannot be created")
        text = origin.to_text(omit_final_dot=True)
        if origin in self.registry_suffixes:
            return CreateDecision(False, reason=f"origin: {text} is a namespace this cluster registers names in")
        registered_here = any(origin.parent() == suffix for suffix in self.registry_suffixes)
        if self.is_public_suffix(text) and not registered_here:
            return CreateDecision(False, reason=f"origin: {text} is a public suffix")
        if origin in owners:
            return CreateDecision(False, reason="origin: zone already exists")
        parent = self.enclosing(origin, owners)
        if parent is not None:
            if owners[parent] == account:
                return CreateDecision(True)
            return CreateDecision(False, reason=f"origin: inside {parent.to_text()}, which another account owns")
        if registered_here:
            return CreateDecision(True)
        return CreateDecision(False, needs_validation=True)

    @staticmethod
    def may_update(origin: dns.name.Name, account: bytes, owners: Mapping[dns.name.Name, bytes]) -> str | None:
        """None if `account` may change zone `origin`, else the reason."""
        owner = owners.get(origin)
        if owner is None:
            return "origin: no such zone"
        if owner != account:
            return "authorization: only the zone's owner may change it"
        return None
