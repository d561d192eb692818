"""DNS for TrustChain: zone model, DNSSEC signing and validation, authoritative answers. Sans-I/O.

The names below are the package's public API; each module also lists its own in `__all__`.
"""

from trustchain.dns.answer_cache import AnswerCache
from trustchain.dns.app import DNSApplication
from trustchain.dns.authority import Authority, AuthorityStats
from trustchain.dns.cache import DNSCache
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet, ZoneKey
from trustchain.dns.ratelimit import ResponseRateLimiter
from trustchain.dns.records import ZoneUpdateError
from trustchain.dns.resolver import Resolution, Resolved, Resolver, SendQuery, Upstream
from trustchain.dns.validator import Bogus, ValidationResult, Validator
from trustchain.dns.zone import AddRecords, DeleteName, DeleteRRset, ReplaceRRset, Zone, ZoneUpdate

__all__ = [
    "AddRecords", "AnswerCache", "Authority", "AuthorityStats", "Bogus", "DNSApplication", "DNSCache", "DeleteName",
    "DeleteRRset", "KeySet", "ReplaceRRset", "Resolution", "Resolved", "Resolver", "ResponseRateLimiter",
    "SendQuery", "SignedZone", "SigningPolicy", "Upstream", "ValidationResult", "Validator", "Zone", "ZoneKey",
    "ZoneUpdate", "ZoneUpdateError", "sign_zone",
]
