"""Sans-I/O authoritative answering: query wire in, response wire out, never an exception.

The transport (UDP, TCP, DoQ) lives elsewhere and only tells us its size limit. Every replica serves
the same signed data, so any of them can answer; a client can check the answer with `validator`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

import dns.edns
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype

from trustchain.dns.answer_cache import DEFAULT_MAX_BYTES, AnswerCache, StatsDelta
from trustchain.dns.answer_table import AnswerTable
from trustchain.dns.answering import MAX_CNAME_HOPS, Answer
from trustchain.dns.dnssec import SignedZone
from trustchain.dns.edns_options import ServerIdentity, check_cookie
from trustchain.dns.served import RRKey, ServedZone
from trustchain.dns.zone import Zone

__all__ = [
    "EDNS_PAYLOAD", "MAX_CNAME_HOPS", "MAX_TCP", "NEVER", "Authority", "AuthorityStats", "RRKey", "ServerIdentity",
]

RdataType = dns.rdatatype.RdataType
EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation
MAX_TCP = 65535
NEVER = 2**63  # "no signature expiry" for the answer cache's validity bound
_STAT_FIELDS = ("malformed", "dropped", "refused", "nxdomain", "truncated", "servfail")


@dataclass
class AuthorityStats:
    queries: int = 0
    malformed: int = 0  # unparseable or structurally invalid queries (FORMERR or dropped)
    dropped: int = 0  # no reply at all: shorter than a header, or a response (QR set)
    refused: int = 0
    nxdomain: int = 0
    truncated: int = 0
    servfail: int = 0


class Authority:
    """Serves any number of zones keyed by origin; the most specific origin wins.

    Plain queries are answered from precomputed wire answers (`AnswerTable`: filled by `precompute`
    after each change, and on demand); the rest of the rendered answers are memoised in an `AnswerCache`
    (`answer_cache_bytes=0` disables both). A hit is byte-identical to a fresh render apart from the
    message ID; both are emptied on every `load`/`unload` (a zone change or re-sign) and bypassed once
    any served signature has expired; `on_change` listeners are told after each change.
    `identity`: this server's NSID and cookie secret (node-local, `trustchain.dns.edns_options`)."""

    def __init__(self, answer_cache_bytes: int = DEFAULT_MAX_BYTES, identity: ServerIdentity | None = None,
                 *, answer_table: bool = True) -> None:
        """`answer_table`: answer plain queries from precomputed wire answers (`AnswerTable`), the
        listeners' fast path; it and the answer cache share `answer_cache_bytes` (0: neither)."""
        self._zones: dict[dns.name.Name, ServedZone] = {}
        self.identity = identity or ServerIdentity()
        self.stats = AuthorityStats()
        self.cache = AnswerCache(answer_cache_bytes) if answer_cache_bytes > 0 else None
        self.table = AnswerTable(self._render_canonical, answer_cache_bytes, self._origins, self._questions) \
            if answer_cache_bytes > 0 and answer_table else None
        self._cache_valid_until = NEVER  # cached answers are valid while now <= this
        self.on_change: list[Callable[[], None]] = []  # told after every load/unload (e.g. to copy the table)

    def load(self, zone: Zone, signed: SignedZone | None = None) -> None:
        """(Re)load a zone; `signed` must be the signature of exactly this zone content."""
        if signed is not None and not signed.is_current(zone):
            raise ValueError("signed zone does not match the zone content; re-sign first")
        added = zone.origin not in self._zones
        self._zones[zone.origin] = ServedZone(zone, signed)
        self._zones_changed(zone.origin, added)

    def unload(self, origin: dns.name.Name) -> None:
        if self._zones.pop(origin, None) is not None:
            self._zones_changed(origin, True)

    def _zones_changed(self, origin: dns.name.Name, zone_set_changed: bool) -> None:
        if self.cache is not None:
            self.cache.clear()
        self._cache_valid_until = min(
            (s.signed.expiration for s in self._zones.values() if s.signed is not None), default=NEVER
        )
        if self.table is not None:
            self.table.valid_until = self._cache_valid_until
            self.table.zone_changed(origin.to_digestable(), all_zones=zone_set_changed)
        for listener in self.on_change:
            listener()

    def _origins(self) -> list[bytes]:
        return [origin.to_digestable() for origin in self._zones]

    def _questions(self, origin_wire: bytes) -> list[tuple[bytes, int]]:
        """The (name, type) pairs a zone holds data for and answers itself (not another zone served here)."""
        served = next((s for o, s in self._zones.items() if o.to_digestable() == origin_wire), None)
        if served is None:
            return []
        return [(name.to_digestable(), int(rdtype)) for name, types in served.types.items() for rdtype in types
                if self._zone_for(name, rdtype) is served]

    def precompute(self, budget: int = 1 << 62) -> int:
        """Render up to `budget` queued (name, type) answers into the answer table; returns how many remain.
        Drivers call it after a change, in slices (consensus execution never waits for it)."""
        return self.table.precompute(budget) if self.table is not None else 0

    def _render_canonical(self, query_wire: bytes) -> bytes:
        """The full path for the answer table's canonical query, without touching the counters."""
        stats, self.stats = self.stats, AuthorityStats()
        try:
            return self._answer(query_wire, 0, None, "")
        except Exception:  # as in `answer`: such a question is left to the full path, which reports it
            return b""
        finally:
            self.stats = stats

    def serves(self, qname: dns.name.Name) -> bool:
        """Whether `qname` falls in one of our zones (a resolver answers those locally)."""
        return self._zone_for(qname) is not None

    def fast_answer(self, query_wire: bytes, now: int, max_udp: int | None) -> bytes | None:
        """The answer table's response (see `answer`), or None when only the full path can answer."""
        table = self.table
        response = table.lookup(query_wire, max_udp, now) if table is not None else None
        if response is not None:
            stats = self.stats
            stats.queries += 1
            if response[3] & 0x0F == 3:
                stats.nxdomain += 1
        return response

    def answer(self, query_wire: bytes, now: int, *, max_udp: int | None, client: str = "") -> bytes:
        """Response wire for `query_wire`, or b"" when nothing must be sent back. `max_udp` is the
        transport's UDP limit (None for stream transports: TCP, DoQ); `client` the querier's address,
        which its DNS cookie is bound to."""
        response = self.fast_answer(query_wire, now, max_udp)
        if response is not None:
            return response
        stats = self.stats
        stats.queries += 1
        cache = self.cache
        use_cache = cache is not None and now <= self._cache_valid_until
        if use_cache:
            assert cache is not None
            hit = cache.get(query_wire, max_udp)
            if hit is not None:
                response, delta = hit
                for field, inc in delta:  # keep the counters exactly as an uncached answer would
                    setattr(stats, field, getattr(stats, field) + inc)
                return response
            before = tuple(getattr(stats, f) for f in _STAT_FIELDS)
        try:
            response = self._answer(query_wire, now, max_udp, client)
        except Exception:  # last line of defence: a bug must cost one answer, never the replica
            stats.servfail += 1
            return _header_only(query_wire, dns.rcode.SERVFAIL)  # not cached: may be transient
        if use_cache and response:
            assert cache is not None
            changed: StatsDelta = tuple(
                (f, getattr(stats, f) - b) for f, b in zip(_STAT_FIELDS, before, strict=True) if getattr(stats, f) != b
            )
            cache.put(query_wire, max_udp, response, changed)
        return response

    def _answer(self, wire: bytes, now: int, max_udp: int | None, client: str) -> bytes:
        if len(wire) < 12 or wire[2] & 0x80:
            self.stats.dropped += 1
            self.stats.malformed += len(wire) < 12
            return b""
        try:
            query = dns.message.from_wire(wire)
        except Exception:  # dnspython raises many types on hostile input
            self.stats.malformed += 1
            return _header_only(wire, dns.rcode.FORMERR)
        if query.opcode() != dns.opcode.QUERY:
            return _header_only(wire, dns.rcode.NOTIMP)
        if len(query.question) != 1:
            self.stats.malformed += 1
            return _header_only(wire, dns.rcode.FORMERR)
        response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
        response.flags &= ~dns.flags.RA
        do = bool(query.ednsflags & dns.flags.DO) if query.edns >= 0 else False
        if query.edns >= 0:
            response.use_edns(0, dns.flags.DO if do else 0, EDNS_PAYLOAD, options=self._options(query, client, now))
            if query.edns > 0:
                response.set_rcode(dns.rcode.BADVERS)
                return self._render(response, query, max_udp)
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        served = self._zone_for(qname, qtype)
        if served is None or question.rdclass != dns.rdataclass.IN:
            self.stats.refused += 1
            response.set_rcode(dns.rcode.REFUSED)
            return self._render(response, query, max_udp)
        if qtype in (RdataType.AXFR, RdataType.IXFR) or (
            dns.rdatatype.is_metatype(qtype) and qtype != RdataType.ANY
        ):
            self.stats.refused += 1
            response.set_rcode(dns.rcode.REFUSED)
            return self._render(response, query, max_udp)
        if served.signed is not None and now > served.signed.expiration:
            self.stats.servfail += 1  # never serve signatures we know are dead; re-sign is overdue
            response.set_rcode(dns.rcode.SERVFAIL)
            return self._render(response, query, max_udp)
        response.flags |= dns.flags.AA
        Answer(served, do and served.signed is not None, response).resolve(qname, qtype)
        if response.rcode() == dns.rcode.NXDOMAIN:
            self.stats.nxdomain += 1
        return self._render(response, query, max_udp)

    def _options(self, query: dns.message.Message, client: str, now: int) -> list[dns.edns.Option]:
        """NSID (RFC 5001) and a DNS cookie (RFC 7873) when the query asks and this server has them."""
        out: list[dns.edns.Option] = []
        identity = self.identity
        for option in query.options:
            if isinstance(option, dns.edns.NSIDOption) and identity.nsid:
                out.append(dns.edns.NSIDOption(identity.nsid))
            elif isinstance(option, dns.edns.CookieOption) and identity.cookie_secret:
                out.append(check_cookie(identity.cookie_secret, option, client, now).option)
        return out

    def _zone_for(self, qname: dns.name.Name, qtype: RdataType = RdataType.A) -> ServedZone | None:
        """The most specific zone holding `qname`; for a DS query at a zone's apex, the parent zone if
        served here, since the DS lives there (RFC 4035 3.1.4.1)."""
        name = qname
        if qtype == RdataType.DS and qname in self._zones and qname != dns.name.root:
            parent = self._zone_for(qname.parent())
            if parent is not None:
                return parent
        while True:
            served = self._zones.get(name)
            if served is not None:
                return served
            if name == dns.name.root or len(name) == 0:
                return None
            name = name.parent()

    def _render(
        self, response: dns.message.Message, query: dns.message.Message, max_udp: int | None
    ) -> bytes:
        # want_shuffle=False: dnspython shuffles rdata order by default (round robin), which would make
        # honest replicas' answers differ byte-wise; canonical order keeps them comparable.
        if max_udp is None:
            limit = MAX_TCP
        elif query.edns >= 0:
            limit = max(512, min(max_udp, query.payload))  # 512 is always allowed (RFC 1035)
        else:
            limit = 512
        try:
            return response.to_wire(max_size=limit, want_shuffle=False)
        except dns.exception.TooBig:
            pass
        if response.additional and response.flags & dns.flags.AA:  # extra addresses are optional; glue is not
            response.additional.clear()
            try:
                return response.to_wire(max_size=limit, want_shuffle=False)
            except dns.exception.TooBig:
                pass
        self.stats.truncated += 1
        response.answer.clear()
        response.authority.clear()
        response.additional.clear()
        response.flags |= dns.flags.TC
        return response.to_wire(max_size=limit, want_shuffle=False)


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A reply carrying just the header: for queries we could not (or should not) fully parse."""
    if len(wire) < 12:
        return b""
    msg_id = int.from_bytes(wire[:2], "big")
    opcode_bits = wire[2] & 0x78
    rd = wire[2] & 0x01
    flags = 0x8000 | (opcode_bits << 8) | (rd << 8) | (rcode & 0xF)
    return msg_id.to_bytes(2, "big") + flags.to_bytes(2, "big") + bytes(8)
