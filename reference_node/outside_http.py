"""This validator's own fetch of an ACME http-01 challenge (RFC 8555 section 8.3), for outside names.

The validator resolves the name's A records through its own upstream resolvers (`[dns] upstream`),
fetches `http://<name>:<[acme] http01_port>/.well-known/acme-challenge/<token>` from the first address
with `Host: <name>`, and reports whether the body is the expected key authorization (trailing
whitespace ignored). No redirects are followed and at most `MAX_BODY` bytes are read. Addresses that
are not public are refused unless `[acme] http01_private_addresses` allows them (test clusters): a
client must not be able to make every validator probe its internal network. Driver code: sockets.
"""

from __future__ import annotations

import asyncio
import ipaddress

import dns.asyncquery
import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

from reference_node.outside_dns import QUERY_TIMEOUT_S, parse_upstream

__all__ = ["saw_http"]

FETCH_TIMEOUT_S = 5.0
MAX_BODY = 8192


async def _addresses(name: str, upstreams: tuple[str, ...]) -> list[str]:
    query = dns.message.make_query(dns.name.from_text(name), dns.rdatatype.A)
    for upstream in upstreams:
        host, port = parse_upstream(upstream)
        try:
            response = await dns.asyncquery.udp(query, host, port=port, timeout=QUERY_TIMEOUT_S)
        except (TimeoutError, dns.exception.DNSException, OSError):
            continue
        if response.rcode() != dns.rcode.NOERROR:
            return []
        return [rd.address for rrset in response.answer if rrset.rdtype == dns.rdatatype.A for rd in rrset]
    return []


def _allowed(address: str, private: bool) -> bool:
    try:
        ip = ipaddress.ip_address(address)
    except ValueError:
        return False
    return private or ip.is_global


async def _fetch(address: str, port: int, name: str, path: str) -> bytes | None:
    reader, writer = await asyncio.open_connection(address, port)
    try:
        writer.write(f"GET {path} HTTP/1.1\r\nHost: {name}\r\nUser-Agent: trustchain-validator\r\n"
                     "Accept: */*\r\nConnection: close\r\n\r\n".encode())
        await writer.drain()
        raw = b""
        while len(raw) <= MAX_BODY + 4096:  # until the server closes (Connection: close), at most this much
            chunk = await reader.read(4096)
            if not chunk:
                break
            raw += chunk
    finally:
        writer.close()
    head, sep, body = raw.partition(b"\r\n\r\n")
    status = head.split(b"\r\n", 1)[0].split(b" ")
    if not sep or len(status) < 2 or status[1] != b"200":
        return None
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(b":") for line in head.split(b"\r\n")[1:])}
    if b"chunked" in headers.get(b"transfer-encoding", b""):
        return None  # a key authorization is a few dozen bytes: servers send it with a length
    length = headers.get(b"content-length")
    if length is not None and length.isdigit() and int(length) <= len(body):
        body = body[:int(length)]
    return body[:MAX_BODY]


async def saw_http(name: str, path: str, expected: str, upstreams: tuple[str, ...], port: int,
                   private_addresses: bool) -> bool:
    """Did this validator get `expected` from http://`name`:`port``path`? Any failure counts as not seen."""
    for address in (await _addresses(name, upstreams))[:2]:
        if not _allowed(address, private_addresses):
            continue
        try:
            body = await asyncio.wait_for(_fetch(address, port, name, path), FETCH_TIMEOUT_S)
        except (TimeoutError, OSError):
            continue
        if body is not None:
            return body.rstrip(b" \t\r\n").decode("utf-8", "replace") == expected
    return False
