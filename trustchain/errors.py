"""The one exception root of TrustChain (as `dns.exception.DNSException` is dnspython's).

Every exception the project defines derives from `TrustChainError`, so a caller can catch everything
TrustChain raises on bad input with one clause. Exceptions that mean "bad input value" also derive from
`ValueError` so that callers written against the standard library keep working.
"""

from __future__ import annotations

__all__ = ["TrustChainError"]


class TrustChainError(Exception):
    """Base class of every exception defined by TrustChain, its simulator and its reference node."""
