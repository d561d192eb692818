"""Sans-I/O authoritative answering: query wire in, response wire out, never an exception.

The transport (UDP, TCP, DoQ) lives elsewhere and only tells us its size limit. Every replica serves
the same signed data, so any of them can answer; a client can check the answer with `validator`.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Protocol

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from trustchain.dns.answer_cache import DEFAULT_MAX_BYTES, AnswerCache, StatsDelta
from trustchain.dns.denial import (
    NSEC3Params,
    find_covering,
    nsec3_digest,
    owner_digest,
    with_empty_non_terminals,
)
from trustchain.dns.dnssec import SignedZone
from trustchain.dns.zone import Zone

__all__ = ["EDNS_PAYLOAD", "MAX_CNAME_HOPS", "MAX_TCP", "NEVER", "Authority", "AuthorityStats", "RRKey"]

RdataType = dns.rdatatype.RdataType
EDNS_PAYLOAD = 1232  # DNS flag day 2020: avoids IP fragmentation
MAX_TCP = 65535
MAX_CNAME_HOPS = 8
RRKey = tuple[dns.name.Name, RdataType]
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


class _Served:
    """Lookup indexes over one zone's (signed or unsigned) data, built once per load."""

    def __init__(self, zone: Zone, signed: SignedZone | None) -> None:
        self.origin = zone.origin
        self.signed = signed
        source: Iterable[dns.rrset.RRset] = signed.rrsets.values() if signed else zone.rrsets()
        self.rrsets: dict[RRKey, dns.rrset.RRset] = {}
        self.nsec3: dict[bytes, dns.rrset.RRset] = {}
        for rrset in source:
            if rrset.rdtype == RdataType.NSEC3:
                digest = owner_digest(rrset.name)
                assert digest is not None
                self.nsec3[digest] = rrset
            else:
                self.rrsets[(rrset.name, rrset.rdtype)] = rrset
        self.types: dict[dns.name.Name, list[RdataType]] = {}
        for name, rdtype in sorted(self.rrsets):
            self.types.setdefault(name, []).append(rdtype)
        self.existing = with_empty_non_terminals(
            self.origin, {n: frozenset(t) for n, t in self.types.items()}
        )
        self.nsec_owners = sorted(n for n, t in self.types.items() if RdataType.NSEC in t)
        self.nsec3_digests = sorted(self.nsec3)
        param = self.rrsets.get((self.origin, RdataType.NSEC3PARAM))
        self.params = NSEC3Params(param[0].iterations, param[0].salt) if param else None
        soa = self.rrsets[(self.origin, RdataType.SOA)]
        self.negative_ttl = min(soa.ttl, soa[0].minimum)  # RFC 2308 section 5

    def sig(self, key: RRKey) -> dns.rrset.RRset | None:
        return self.signed.sigs.get(key) if self.signed else None

    def closest_encloser(self, name: dns.name.Name) -> dns.name.Name:
        while name not in self.existing:
            name = name.parent()
        return name

    def nsec_covering(self, name: dns.name.Name) -> dns.rrset.RRset:
        owner = self.nsec_owners[find_covering(self.nsec_owners, name)]
        return self.rrsets[(owner, RdataType.NSEC)]

    def nsec3_for(self, name: dns.name.Name) -> dns.rrset.RRset:
        """The NSEC3 matching `name` if it exists, else the one covering its hash."""
        assert self.params is not None
        digest = nsec3_digest(name, self.params)
        return self.nsec3[self.nsec3_digests[find_covering(self.nsec3_digests, digest)]]


class Authority:
    """Serves any number of zones keyed by origin; the most specific origin wins.

    Rendered answers are memoised in an `AnswerCache` (`answer_cache_bytes=0` disables it): a hit is
    byte-identical to a fresh render apart from the message ID, and the cache is emptied on every
    `load`/`unload` (a zone change or re-sign) and bypassed once any served signature has expired."""

    def __init__(self, answer_cache_bytes: int = DEFAULT_MAX_BYTES) -> None:
        self._zones: dict[dns.name.Name, _Served] = {}
        self.stats = AuthorityStats()
        self.cache = AnswerCache(answer_cache_bytes) if answer_cache_bytes > 0 else None
        self._cache_valid_until = NEVER  # cached answers are valid while now <= this

    def load(self, zone: Zone, signed: SignedZone | None = None) -> None:
        """(Re)load a zone; `signed` must be the signature of exactly this zone content."""
        if signed is not None and not signed.is_current(zone):
            raise ValueError("signed zone does not match the zone content; re-sign first")
        self._zones[zone.origin] = _Served(zone, signed)
        self._zones_changed()

    def unload(self, origin: dns.name.Name) -> None:
        self._zones.pop(origin, None)
        self._zones_changed()

    def _zones_changed(self) -> None:
        if self.cache is not None:
            self.cache.clear()
        self._cache_valid_until = min(
            (s.signed.expiration for s in self._zones.values() if s.signed is not None), default=NEVER
        )

    def serves(self, qname: dns.name.Name) -> bool:
        """Whether `qname` falls in one of our zones (a resolver answers those locally)."""
        return self._zone_for(qname) is not None

    def answer(self, query_wire: bytes, now: int, *, max_udp: int | None) -> bytes:
        """Response wire for `query_wire`, or b"" when nothing must be sent back. `max_udp` is the
        transport's UDP limit (None for stream transports: TCP, DoQ)."""
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
            response = self._answer(query_wire, now, max_udp)
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

    def _answer(self, wire: bytes, now: int, max_udp: int | None) -> bytes:
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
            response.use_edns(0, dns.flags.DO if do else 0, EDNS_PAYLOAD)
            if query.edns > 0:
                response.set_rcode(dns.rcode.BADVERS)
                return self._render(response, query, max_udp)
        question = query.question[0]
        qname, qtype = question.name, question.rdtype
        served = self._zone_for(qname)
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
        self._resolve(served, qname, qtype, do and served.signed is not None, response)
        if response.rcode() == dns.rcode.NXDOMAIN:
            self.stats.nxdomain += 1
        return self._render(response, query, max_udp)

    def _zone_for(self, qname: dns.name.Name) -> _Served | None:
        name = qname
        while True:
            served = self._zones.get(name)
            if served is not None:
                return served
            if name == dns.name.root or len(name) == 0:
                return None
            name = name.parent()

    def _resolve(
        self, served: _Served, qname: dns.name.Name, qtype: RdataType, do: bool, response: dns.message.Message
    ) -> None:
        seen: set[RRKey] = set()

        def add(section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, ttl: int | None = None) -> None:
            key = (rrset.name, rrset.rdtype)
            if key in seen:
                return
            seen.add(key)
            if ttl is not None:
                rrset = rrset.copy()  # type: ignore[no-untyped-call]  # dnspython leaves copy() untyped
                rrset.ttl = ttl
            section.append(rrset)
            sig = served.sig(key) if do else None
            if sig is not None:
                if ttl is not None:
                    sig = sig.copy()  # type: ignore[no-untyped-call]  # dnspython leaves copy() untyped
                    sig.ttl = ttl
                section.append(sig)

        name = qname
        visited: set[dns.name.Name] = set()
        for _ in range(MAX_CNAME_HOPS):
            visited.add(name)
            types = served.types.get(name)
            if types is not None:
                if qtype == RdataType.ANY:
                    for rdtype in types:
                        add(response.answer, served.rrsets[(name, rdtype)])
                    return
                if qtype in types:
                    add(response.answer, served.rrsets[(name, qtype)])
                    return
                if qtype == RdataType.RRSIG and served.signed is not None:
                    response.answer.extend(_one_rrsig(served, name, types))
                    return
                if RdataType.CNAME in types and qtype != RdataType.CNAME:
                    cname = served.rrsets[(name, RdataType.CNAME)]
                    add(response.answer, cname)
                    target = cname[0].target
                    if not target.is_subdomain(served.origin) or target in visited:
                        return  # out of zone or a loop: the resolver continues from here
                    name = target
                    continue
            self._negative(served, name, qtype, do, response, add)
            return

    def _negative(
        self,
        served: _Served,
        name: dns.name.Name,
        qtype: RdataType,
        do: bool,
        response: dns.message.Message,
        add: _Adder,
    ) -> None:
        exists = name in served.existing
        if not exists:
            response.set_rcode(dns.rcode.NXDOMAIN)
        add(response.authority, served.rrsets[(served.origin, RdataType.SOA)], served.negative_ttl)
        if not do:
            return
        if served.params is not None:
            if exists:
                add(response.authority, served.nsec3_for(name))
                return
            encloser = served.closest_encloser(name)
            next_closer = dns.name.Name(name.labels[-(len(encloser) + 1) :])
            for proof in (encloser, next_closer, dns.name.Name((b"*", *encloser.labels))):
                add(response.authority, served.nsec3_for(proof))
            return
        if exists and (name, RdataType.NSEC) in served.rrsets:
            add(response.authority, served.rrsets[(name, RdataType.NSEC)])
            return
        add(response.authority, served.nsec_covering(name))  # NXDOMAIN, or an empty non-terminal
        if not exists:
            add(
                response.authority,
                served.nsec_covering(dns.name.Name((b"*", *served.closest_encloser(name).labels))),
            )

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
            self.stats.truncated += 1
            response.answer.clear()
            response.authority.clear()
            response.additional.clear()
            response.flags |= dns.flags.TC
            return response.to_wire(max_size=limit, want_shuffle=False)


class _Adder(Protocol):
    """Type of the local `add` closure (section, rrset, ttl override)."""

    def __call__(
        self, section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, ttl: int | None = None
    ) -> None: ...


def _one_rrsig(served: _Served, name: dns.name.Name, types: Iterable[RdataType]) -> list[dns.rrset.RRset]:
    """The answer to an RRSIG query, as Knot DNS gives it: the name's first signature in canonical order
    (the NSEC bitmap says RRSIGs exist there). One, not all: an RRSIG query is for diagnostics, and all
    of a name's signatures would make a large answer from a small query."""
    found = [(rdata.to_digestable(served.origin), rdata, sig) for sig in (served.sig((name, t)) for t in types)
             if sig is not None for rdata in sig]
    if not found:
        return []
    _, rdata, sig = min(found, key=lambda item: item[0])
    return [dns.rrset.from_rdata(name, sig.ttl, rdata)]


def _header_only(wire: bytes, rcode: int) -> bytes:
    """A reply carrying just the header: for queries we could not (or should not) fully parse."""
    if len(wire) < 12:
        return b""
    msg_id = int.from_bytes(wire[:2], "big")
    opcode_bits = wire[2] & 0x78
    rd = wire[2] & 0x01
    flags = 0x8000 | (opcode_bits << 8) | (rd << 8) | (rcode & 0xF)
    return msg_id.to_bytes(2, "big") + flags.to_bytes(2, "big") + bytes(8)
