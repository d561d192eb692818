"""Per-server EDNS options: DNS cookies (RFC 7873) and the name server identifier NSID (RFC 5001).

Both are node-local, not replicated: each server answers with its own identity and its own cookie
secret, which the driver hands in (a fresh random secret per process is fine: clients just learn a new
server cookie). Time is handed in too, so this stays sans-I/O.

Server cookie layout (16 bytes, the shape of RFC 9018): version 1, three reserved zero bytes, the
32-bit timestamp of issue, then an 8-byte HMAC-SHA-256 over the client cookie, that header and the
client's address, keyed by the secret. RFC 9018 uses SipHash-2-4 for the hash; only this server ever
checks its cookies, so the HMAC that the standard library provides does the same job (RFC 7873 B.2).
"""

from __future__ import annotations

import hashlib
import hmac
import ipaddress
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.message

__all__ = [
    "COOKIE_LIFETIME_S", "MAX_NSID", "CookieCheck", "ServerIdentity", "check_cookie", "has_valid_cookie",
    "server_cookie",
]

COOKIE_LIFETIME_S = 3600  # RFC 9018 4.3: a cookie older than an hour is renewed
COOKIE_FUTURE_S = 300  # clock skew allowed between issue and check
MAX_NSID = 128
_HEADER = b"\x01\x00\x00\x00"
#: The start of a COOKIE option carrying a server cookie (code 10, length 16..40) on the wire: queries
#: without it are judged by one substring scan, never parsed.
_COOKIE_HINT = b"\x00\x0a\x00"


@dataclass(frozen=True)
class ServerIdentity:
    """What this server says about itself: `nsid` when a query asks (RFC 5001; empty: never sent), and the
    `cookie_secret` its server cookies are keyed with (empty: cookies ignored, as a server without
    RFC 7873 support does)."""

    nsid: bytes = b""
    cookie_secret: bytes = b""

    def __post_init__(self) -> None:
        if len(self.nsid) > MAX_NSID:
            raise ValueError(f"dns.nsid: at most {MAX_NSID} bytes")
        if self.cookie_secret and len(self.cookie_secret) < 16:
            raise ValueError("cookie secret: at least 16 bytes")


@dataclass(frozen=True)
class CookieCheck:
    """The option to answer with, and whether the server cookie the client sent is one of ours, fresh."""

    option: dns.edns.CookieOption
    valid: bool


def _address(client: str) -> bytes:
    try:
        return ipaddress.ip_address(client.split("%", 1)[0]).packed
    except ValueError:
        return client.encode()[:64]


def server_cookie(secret: bytes, client_cookie: bytes, client: str, issued: int) -> bytes:
    """The 16-byte server cookie for this client cookie and address, issued at `issued` (seconds)."""
    header = _HEADER + (issued % 2**32).to_bytes(4, "big")
    mac = hmac.new(secret, client_cookie + header + _address(client), hashlib.sha256).digest()[:8]
    return header + mac


def check_cookie(secret: bytes, option: dns.edns.CookieOption, client: str, now: int) -> CookieCheck:
    """Judge the cookie a query carried and build the one to answer with: a valid, fresh server cookie is
    echoed, anything else (none, another server's, stale, forged) is replaced by a fresh one."""
    sent = bytes(option.server)
    valid = False
    if len(sent) == 16 and sent[:4] == _HEADER:
        issued = int.from_bytes(sent[4:8], "big")
        age = (now - issued) % 2**32  # serial arithmetic: the timestamp wraps in 2106
        fresh = age <= COOKIE_LIFETIME_S or 2**32 - age <= COOKIE_FUTURE_S
        valid = fresh and hmac.compare_digest(sent, server_cookie(secret, bytes(option.client), client, issued))
    if valid and (now - int.from_bytes(sent[4:8], "big")) % 2**32 < COOKIE_LIFETIME_S // 2:
        reply = sent  # still young: echo it (RFC 9018 4.3)
    else:
        reply = server_cookie(secret, bytes(option.client), client, now)
    return CookieCheck(dns.edns.CookieOption(bytes(option.client), reply), valid)


def has_valid_cookie(secret: bytes, query_wire: bytes, client: str, now: int) -> bool:
    """Whether the query carries a fresh server cookie this server issued to `client`. Such a client has
    shown it receives our replies at its source address, so it cannot be a spoofed reflection victim:
    response rate limiting exempts it, as Knot DNS and BIND do (RFC 7873 5.3)."""
    if not secret or _COOKIE_HINT not in query_wire:
        return False
    try:
        query = dns.message.from_wire(query_wire)
    except (dns.exception.DNSException, ValueError):
        return False
    for option in query.options:
        if isinstance(option, dns.edns.CookieOption) and option.server:
            return check_cookie(secret, option, client, now).valid
    return False
