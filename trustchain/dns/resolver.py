"""The resolution flow as a sans-I/O state machine: local cache, then the replicated (authoritative)
zones, then forwarding to configured upstream resolvers; QNAME minimisation (RFC 9156) towards
upstreams that are authoritative servers; optional DNSSEC validation with `validator`.

A `Resolution` never touches the network: it returns effects. `SendQuery` asks the driver to send a
query to an upstream (over UDP, or TCP after truncation) and report back with `on_response(wire)` or
`on_timeout()`; `Resolved` ends the resolution. Written as a generator so the flow reads top to
bottom, while the driver (asyncio, a test, the simulator) owns all I/O and time.
"""

from __future__ import annotations

import enum
from collections.abc import Callable, Generator
from dataclasses import dataclass, field

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rdtypes.ANY.RRSIG
import dns.rrset

from trustchain.dns.authority import Authority
from trustchain.dns.cache import DNSCache
from trustchain.dns.validator import Failure, ValidationResult, Validator, ZoneKeys

RdataType = dns.rdatatype.RdataType
EDNS_PAYLOAD = 1232
MAX_MINIMISE_COUNT = 10  # RFC 9156 section 2.3: bound the extra queries per resolution
MAX_CHAIN_DEPTH = 8
DEFAULT_TIMEOUT = 2.0


@dataclass(frozen=True)
class Upstream:
    """A server we forward to. `recursive` upstreams get the full question with RD=1; an
    authoritative upstream (recursive=False) serves `zone` and gets QNAME-minimised queries."""

    host: str
    port: int = 53
    recursive: bool = True
    zone: str = "."


@dataclass(frozen=True)
class SendQuery:
    upstream: Upstream
    wire: bytes
    tcp: bool
    timeout: float


class Source(enum.Enum):
    CACHE = "cache"
    AUTHORITY = "authority"
    UPSTREAM = "upstream"
    STALE = "stale"
    FAILURE = "failure"


@dataclass(frozen=True)
class Resolved:
    """The outcome. `validation` is None when not validated (validation off, or the name is outside
    the trust anchor: insecure); `trace` lists what happened, for operators and tests."""

    response: dns.message.Message
    source: Source
    validation: ValidationResult | None = None
    trace: tuple[str, ...] = ()


Effect = SendQuery | Resolved
_Reply = bytes | None  # what the driver sends into the flow: a response, or None on timeout
_Flow = Generator[SendQuery, _Reply, Resolved]


@dataclass
class ResolverStats:
    resolutions: int = 0
    cache_hits: int = 0
    authoritative: int = 0
    forwarded: int = 0
    timeouts: int = 0
    mismatched: int = 0
    bogus: int = 0
    stale: int = 0
    failures: int = 0


@dataclass
class Resolver:
    """Shared configuration and state (cache, stats) for many resolutions. `next_id` supplies query
    IDs; the I/O side backs it with a CSPRNG (IDs are part of the defence against spoofing)."""

    next_id: Callable[[], int]
    cache: DNSCache = field(default_factory=DNSCache)
    authority: Authority | None = None
    upstreams: tuple[Upstream, ...] = ()
    validator: Validator | None = None
    timeout: float = DEFAULT_TIMEOUT
    qname_minimisation: bool = True
    stats: ResolverStats = field(default_factory=ResolverStats)

    def resolve(self, qname: dns.name.Name | str, qtype: int | str, now: float) -> Resolution:
        name = dns.name.from_text(qname) if isinstance(qname, str) else qname
        rdtype = dns.rdatatype.from_text(qtype) if isinstance(qtype, str) else RdataType.make(qtype)
        self.stats.resolutions += 1
        return Resolution(self, name, rdtype, now)


class Resolution:
    def __init__(self, resolver: Resolver, qname: dns.name.Name, qtype: RdataType, now: float) -> None:
        self.r = resolver
        self.qname, self.qtype = qname, qtype
        self.now = now
        self.trace: list[str] = []
        self.result: Resolved | None = None
        self._pending: SendQuery | None = None
        self._flow = self._run()

    # --- driver interface ---------------------------------------------------------------------------

    def start(self) -> Effect:
        return self._step(lambda: next(self._flow))

    def on_response(self, wire: bytes, now: float) -> Effect:
        assert self._pending is not None, "no query outstanding"
        self.now = now
        return self._step(lambda: self._flow.send(wire))

    def on_timeout(self, now: float) -> Effect:
        assert self._pending is not None, "no query outstanding"
        self.now = now
        return self._step(lambda: self._flow.send(None))

    def _step(self, advance: Callable[[], SendQuery]) -> Effect:
        try:
            self._pending = advance()
            return self._pending
        except StopIteration as stop:
            result = stop.value
            assert isinstance(result, Resolved)
            self._pending = None
            self.result = Resolved(result.response, result.source, result.validation, tuple(self.trace))
            return self.result

    # --- the flow -----------------------------------------------------------------------------------

    def _run(self) -> _Flow:
        r = self.r
        hit = r.cache.get(self.qname, self.qtype, self.now)
        if hit is not None:
            r.stats.cache_hits += 1
            self.trace.append("cache hit")
            return Resolved(hit.response, Source.CACHE)
        if r.authority is not None and r.authority.serves(self.qname):
            r.stats.authoritative += 1
            self.trace.append("authoritative")
            response = self._local(self.qname, self.qtype)
            validation = yield from self._validate(response, None)
            if validation is not None and not validation.secure:
                r.stats.bogus += 1
                return Resolved(self._servfail(), Source.FAILURE, validation)
            return Resolved(response, Source.AUTHORITY, validation)
        last_failure: ValidationResult | None = None
        for upstream in r.upstreams:
            r.stats.forwarded += 1
            if upstream.recursive:
                got = yield from self._exchange(upstream, self.qname, self.qtype)
            else:
                got = yield from self._minimised(upstream)
            if got is None:
                continue
            response = got
            if response.rcode() not in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
                self.trace.append(f"{upstream.host}: {dns.rcode.to_text(response.rcode())}")
                continue
            validation = yield from self._validate(response, upstream)
            if validation is not None and not validation.secure:
                r.stats.bogus += 1
                last_failure = validation
                self.trace.append(f"{upstream.host}: bogus ({validation.detail})")
                continue  # another path may not be under attack
            if validation is not None:
                response.flags |= dns.flags.AD
            r.cache.put(response, self.now)
            return Resolved(response, Source.UPSTREAM, validation)
        stale = r.cache.get_stale(self.qname, self.qtype, self.now)
        if stale is not None and last_failure is None:
            r.stats.stale += 1
            self.trace.append("serve stale (RFC 8767)")
            return Resolved(stale.response, Source.STALE)
        r.stats.failures += 1
        return Resolved(self._servfail(), Source.FAILURE, last_failure)

    def _query(self, qname: dns.name.Name, qtype: RdataType, rd: bool) -> dns.message.Message:
        query = dns.message.make_query(
            qname, qtype, use_edns=0, payload=EDNS_PAYLOAD, want_dnssec=self.r.validator is not None
        )
        query.id = self.r.next_id() & 0xFFFF
        if not rd:
            query.flags &= ~dns.flags.RD
        return query

    def _local(self, qname: dns.name.Name, qtype: RdataType) -> dns.message.Message:
        assert self.r.authority is not None
        query = self._query(qname, qtype, rd=False)
        wire = self.r.authority.answer(query.to_wire(), int(self.now), max_udp=None)
        return dns.message.from_wire(wire)

    def _exchange(
        self, upstream: Upstream, qname: dns.name.Name, qtype: RdataType, rd: bool = True
    ) -> Generator[SendQuery, _Reply, dns.message.Message | None]:
        """One question to one upstream: UDP first, TCP if the answer came back truncated."""
        query = self._query(qname, qtype, rd)
        wire = query.to_wire()
        tcp = False
        for _ in range(2):
            reply = yield SendQuery(upstream, wire, tcp, self.r.timeout)
            if reply is None:
                self.r.stats.timeouts += 1
                self.trace.append(f"{upstream.host}: timeout ({'tcp' if tcp else 'udp'})")
                return None
            try:
                response = dns.message.from_wire(reply)
            except Exception:  # dnspython raises many types on hostile input
                self.r.stats.mismatched += 1
                self.trace.append(f"{upstream.host}: malformed response")
                return None
            if not query.is_response(response):
                self.r.stats.mismatched += 1  # wrong ID or question: possibly spoofed
                self.trace.append(f"{upstream.host}: response does not match the query")
                return None
            if response.flags & dns.flags.TC and not tcp:
                self.trace.append(f"{upstream.host}: truncated, retrying over TCP")
                tcp = True
                continue
            self.trace.append(f"{upstream.host}: {qname} {qtype.name} -> {dns.rcode.to_text(response.rcode())}")
            return response
        return None

    def _minimised(self, upstream: Upstream) -> Generator[SendQuery, _Reply, dns.message.Message | None]:
        """RFC 9156 towards an authoritative server: reveal one label at a time (QTYPE A hides the
        real type), stop at NXDOMAIN (RFC 8020: nothing exists below) or at a referral."""
        zone = dns.name.from_text(upstream.zone)
        if not self.r.qname_minimisation or not self.qname.is_subdomain(zone):
            return (yield from self._exchange(upstream, self.qname, self.qtype, rd=False))
        below = len(self.qname) - len(zone)
        for extra in range(max(1, below - MAX_MINIMISE_COUNT), below):
            partial = dns.name.Name(self.qname.labels[-(len(zone) + extra) :])
            response = yield from self._exchange(upstream, partial, RdataType.A, rd=False)
            if response is None:
                return None
            if response.rcode() == dns.rcode.NXDOMAIN:
                self.trace.append(f"minimised: {partial} does not exist, so neither does {self.qname}")
                return _rewrite_question(response, self.qname, self.qtype)
            referral = not response.flags & dns.flags.AA and any(
                r.rdtype == RdataType.NS for r in response.authority
            )
            if response.rcode() != dns.rcode.NOERROR or referral:
                break
        return (yield from self._exchange(upstream, self.qname, self.qtype, rd=False))

    # --- DNSSEC -------------------------------------------------------------------------------------

    def _validate(
        self, response: dns.message.Message, upstream: Upstream | None
    ) -> Generator[SendQuery, _Reply, ValidationResult | None]:
        validator = self.r.validator
        if validator is None or not self.qname.is_subdomain(validator.anchor.name):
            return None
        signers = sorted(
            {
                rdata.signer
                for section in (response.answer, response.authority)
                for rrset in section
                if rrset.rdtype == RdataType.RRSIG
                for rdata in rrset
                if isinstance(rdata, dns.rdtypes.ANY.RRSIG.RRSIG)
            },
            key=len,
        )
        links: list[ZoneKeys] = []
        for signer in signers or [validator.anchor.name]:
            chain = yield from self._chain(signer, upstream, 0)
            if chain is None:
                detail = f"no chain of trust from {validator.anchor.name} to {signer}"
                return ValidationResult(Failure.NO_DNSKEY, detail)
            for link in chain:
                if all(link.dnskey.name != known.dnskey.name for known in links):
                    links.append(link)
        return validator.validate(response, links, int(self.now))

    def _fetch(
        self, qname: dns.name.Name, qtype: RdataType, upstream: Upstream | None
    ) -> Generator[SendQuery, _Reply, dns.message.Message | None]:
        hit = self.r.cache.get(qname, qtype, self.now)
        if hit is not None:
            return hit.response
        if upstream is None:
            return self._local(qname, qtype)
        response = yield from self._exchange(upstream, qname, qtype, rd=upstream.recursive)
        if response is not None:
            self.r.cache.put(response, self.now)
        return response

    def _chain(
        self, signer: dns.name.Name, upstream: Upstream | None, depth: int
    ) -> Generator[SendQuery, _Reply, list[ZoneKeys] | None]:
        """Links from the trust anchor down to `signer`: each zone's DNSKEY, and below the anchor the DS
        from the parent (whose signer tells us which parent to fetch next)."""
        validator = self.r.validator
        assert validator is not None
        if depth > MAX_CHAIN_DEPTH or not signer.is_subdomain(validator.anchor.name):
            return None
        dnskey_resp = yield from self._fetch(signer, RdataType.DNSKEY, upstream)
        if dnskey_resp is None:
            return None
        dnskey, dnskey_sigs = _rrset_and_sigs(dnskey_resp.answer, signer, RdataType.DNSKEY)
        if dnskey is None:
            return None
        if signer == validator.anchor.name:
            return [ZoneKeys(dnskey, dnskey_sigs)]
        ds_resp = yield from self._fetch(signer, RdataType.DS, upstream)
        if ds_resp is None:
            return None
        ds, ds_sigs = _rrset_and_sigs(ds_resp.answer, signer, RdataType.DS)
        if ds is None or not ds_sigs:
            return None
        parent = ds_sigs[0].signer
        above = yield from self._chain(parent, upstream, depth + 1)
        if above is None:
            return None
        return [*above, ZoneKeys(dnskey, dnskey_sigs, ds, ds_sigs)]

    def _servfail(self) -> dns.message.Message:
        query = dns.message.make_query(self.qname, self.qtype)
        response = dns.message.make_response(query)
        response.set_rcode(dns.rcode.SERVFAIL)
        return response


def _rrset_and_sigs(
    section: list[dns.rrset.RRset], name: dns.name.Name, rdtype: RdataType
) -> tuple[dns.rrset.RRset | None, dns.rrset.RRset | None]:
    data = next((r for r in section if r.name == name and r.rdtype == rdtype), None)
    sigs = next((r for r in section if r.name == name and r.rdtype == RdataType.RRSIG and r.covers == rdtype), None)
    return data, sigs


def _rewrite_question(
    response: dns.message.Message, qname: dns.name.Name, qtype: RdataType
) -> dns.message.Message:
    """A negative answer for an ancestor re-addressed to the original question (RFC 8020)."""
    out = dns.message.make_response(dns.message.make_query(qname, qtype))
    out.id = response.id
    out.flags = response.flags
    out.set_rcode(response.rcode())
    out.authority = list(response.authority)
    return out


def respond_to(query: dns.message.Message, resolved: Resolved) -> dns.message.Message:
    """Address a resolution result to the client's query (its ID and flags); used by listeners."""
    response = dns.message.make_response(query, our_payload=EDNS_PAYLOAD)
    response.set_rcode(resolved.response.rcode())
    response.flags |= dns.flags.RA | (resolved.response.flags & dns.flags.AD)
    response.answer = list(resolved.response.answer)
    response.authority = list(resolved.response.authority)
    return response


__all__ = [
    "Effect",
    "Resolution",
    "Resolved",
    "Resolver",
    "SendQuery",
    "Source",
    "Upstream",
]
