"""This validator's own look at the public DNS, for outside-name validation.

Each validator resolves the challenge record through its configured upstream resolvers
(`[dns] upstream`) on its own and reports only what it saw; the decision is taken in consensus from a
quorum of such reports (`trustchain.authorization.observations`). Driver code: sockets and timeouts.
"""

from __future__ import annotations

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype

__all__ = ["parse_upstream", "saw_txt", "txt_values"]

QUERY_TIMEOUT_S = 3.0


def parse_upstream(address: str) -> tuple[str, int]:
    """`host`, `host:port` or `[v6]:port`."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else 53
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, 53


async def txt_values(record_name: str, upstreams: tuple[str, ...],
                     timeout_s: float = QUERY_TIMEOUT_S) -> list[str] | None:
    """The TXT strings at `record_name` (each record's character-strings joined), [] when the name or
    type does not exist, None when no upstream answered."""
    query = dns.message.make_query(dns.name.from_text(record_name), dns.rdatatype.TXT)
    for upstream in upstreams:
        host, port = parse_upstream(upstream)
        try:
            response = await dns.asyncquery.udp(query, host, port=port, timeout=timeout_s)
            if response.flags & dns.flags.TC:
                response = await dns.asyncquery.tcp(query, host, port=port, timeout=timeout_s)
        except (TimeoutError, dns.exception.DNSException, OSError):
            continue
        if response.rcode() == dns.rcode.NXDOMAIN:
            return []
        if response.rcode() != dns.rcode.NOERROR:
            continue
        out = []
        for rrset in response.answer:
            if rrset.rdtype == dns.rdatatype.TXT:
                for rd in rrset:
                    out.append(b"".join(rd.strings).decode("utf-8", "replace"))
        return out
    return None


async def saw_txt(record_name: str, expected: str, upstreams: tuple[str, ...]) -> bool:
    """Did this validator see `expected` at `record_name`? An unanswered lookup counts as not seen."""
    values = await txt_values(record_name, upstreams)
    return values is not None and expected in values
