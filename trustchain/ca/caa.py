"""CAA evaluation (RFC 8659) over a deterministic lookup interface.

Why an interface and not a resolver: replicas must agree on the answer, so CAA and dns-01 records are
read from the replicated DNS zones as of the ordered request (an injectable mapping until the DNS
application is wired in), never from a live resolver whose answers differ between replicas."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from trustchain.ca import names

CRITICAL_FLAG = 128
KNOWN_TAGS = frozenset({"issue", "issuewild", "iodef", "contactemail", "contactphone", "issuemail", "issuevmc"})


@dataclass(frozen=True)
class CAARecord:
    flags: int
    tag: str
    value: str


class DNSLookup(Protocol):
    """Deterministic, replicated DNS view: CAA RRsets and TXT records by owner name."""

    def caa(self, name: str) -> Sequence[CAARecord]: ...

    def txt(self, name: str) -> Sequence[str]: ...


@dataclass(frozen=True)
class StaticDNS:
    """A fixed mapping, for tests and until the replicated DNS zones back the lookup."""

    caa_records: Mapping[str, Sequence[CAARecord]] = field(default_factory=dict)
    txt_records: Mapping[str, Sequence[str]] = field(default_factory=dict)

    def caa(self, name: str) -> Sequence[CAARecord]:
        return self.caa_records.get(name, ())

    def txt(self, name: str) -> Sequence[str]:
        return self.txt_records.get(name, ())


def relevant_rrset(lookup: DNSLookup, name: str) -> tuple[str, Sequence[CAARecord]]:
    """RFC 8659 section 3: climb from the FQDN toward the root; the first non-empty CAA RRset wins."""
    for candidate in names.parents(name):
        rrset = lookup.caa(candidate)
        if rrset:
            return candidate, rrset
    return "", ()


def _issuer_domain(value: str) -> tuple[str, dict[str, str]]:
    """Parse ``issuer-domain-name [; key=value ...]`` (RFC 8659 section 4.2); empty domain = nobody."""
    domain, _, rest = value.partition(";")
    params: dict[str, str] = {}
    for part in rest.split(";"):
        key, sep, val = part.strip().partition("=")
        if sep:
            params[key.strip().lower()] = val.strip()
    return domain.strip().lower().rstrip("."), params


def check_caa(lookup: DNSLookup, name: str, ca_domain: str, account_uri: str | None = None) -> str | None:
    """None if ``ca_domain`` may issue for ``name`` (normalized), else the reason.

    Wildcards use ``issuewild`` when present, else ``issue`` (section 4.3). An unknown tag with the
    critical flag forbids issuance (section 4.1). ``accounturi`` (RFC 8657) is honoured when given."""
    owner, rrset = relevant_rrset(lookup, name)
    if not rrset:
        return None
    for rr in rrset:
        if rr.flags & CRITICAL_FLAG and rr.tag.lower() not in KNOWN_TAGS:
            return f"CAA at {owner}: unknown critical property {rr.tag!r}"
    wildcard = name.startswith("*.")
    issuewild = [rr for rr in rrset if rr.tag.lower() == "issuewild"]
    props = issuewild if wildcard and issuewild else [rr for rr in rrset if rr.tag.lower() == "issue"]
    if not props:
        return None
    for rr in props:
        domain, params = _issuer_domain(rr.value)
        if domain != ca_domain.lower():
            continue
        wanted = params.get("accounturi")
        if wanted is not None and wanted != account_uri:
            continue
        return None
    return f"CAA at {owner} does not authorize {ca_domain}"
