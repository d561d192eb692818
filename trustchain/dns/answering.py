"""Filling the sections of one authoritative response (RFC 1034 4.3.2, with DNSSEC per RFC 4035 3.1).

Given the served zone, the question and whether the client wants DNSSEC records, `Answer.resolve`
follows CNAMEs inside the zone, rewrites names under a DNAME (RFC 6672, with the synthesised CNAME),
synthesises answers from wildcards (RFC 4592; the RRSIG's label count tells a validator so, and an
NSEC/NSEC3 proves the exact name does not exist), refers queries below a zone cut to the child (AA
clear, NS in authority, glue in additional, the DS or the signed proof that there is none), answers
ANY minimally (RFC 8482: one RRset), and adds the addresses of MX, NS and SRV targets the zone holds.
"""

from __future__ import annotations

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdataclass
import dns.rdatatype
import dns.rdtypes.ANY.CNAME
import dns.rrset

from trustchain.dns.served import RRKey, ServedZone

__all__ = ["MAX_CNAME_HOPS", "Answer"]

RdataType = dns.rdatatype.RdataType
MAX_CNAME_HOPS = 8
#: Types whose targets' addresses go in the additional section (RFC 1035 3.3.9 and 3.3.11, RFC 2782).
_ADDITIONAL = {RdataType.MX: "exchange", RdataType.NS: "target", RdataType.SRV: "target"}


class Answer:
    """Builds one response; `do` says the client set the DO bit and the zone is signed."""

    def __init__(self, served: ServedZone, do: bool, response: dns.message.Message) -> None:
        self.served = served
        self.do = do
        self.response = response
        self.seen: set[RRKey] = set()

    def add(self, section: list[dns.rrset.RRset], rrset: dns.rrset.RRset, ttl: int | None = None,
            owner: dns.name.Name | None = None) -> None:
        """Add `rrset` (and with DO its RRSIGs) once per response. `owner`: the name a wildcard RRset is
        expanded to; `ttl`: a TTL to serve instead (negative answers)."""
        key = (rrset.name, rrset.rdtype)
        seen = (owner or rrset.name, rrset.rdtype)
        if seen in self.seen:
            return
        self.seen.add(seen)
        section.append(_restyle(rrset, owner, ttl))
        sig = self.served.sig(key) if self.do else None
        if sig is not None:
            section.append(_restyle(sig, owner, ttl))

    # --- the walk -----------------------------------------------------------------------------------

    def resolve(self, qname: dns.name.Name, qtype: RdataType) -> None:
        served = self.served
        name = qname
        visited: set[dns.name.Name] = set()
        for _ in range(MAX_CNAME_HOPS):
            visited.add(name)
            cut = served.cut_at_or_above(name)
            if cut is not None and not (name == cut and qtype == RdataType.DS):
                if not self.response.answer:  # a CNAME into a delegated name: the resolver goes on
                    self._referral(cut)
                return
            types = served.types.get(name)
            if types is not None:
                target = self._at_node(name, name, types, qtype)
            elif name in served.existing:
                self._negative(name, qtype)  # an empty non-terminal
                return
            elif (dname := served.dname_above(name)) is not None:
                target = self._dname(name, dname)
            elif (wild := served.wildcard_for(name)) is not None:
                target = self._at_node(name, wild, served.types[wild], qtype)
            else:
                self._negative(name, qtype)
                return
            if target is None or not target.is_subdomain(served.origin) or target in visited:
                return  # done, out of zone or a loop: the resolver continues from here
            name = target

    def _at_node(self, name: dns.name.Name, owner: dns.name.Name, types: list[RdataType],
                 qtype: RdataType) -> dns.name.Name | None:
        """Answer from the data at `owner` (`name` itself, or the wildcard expanded to it); returns the
        CNAME target to follow, if any."""
        served, answer = self.served, self.response.answer
        synthesised = owner if owner != name else None
        if qtype == RdataType.ANY:
            qtype = types[0]  # RFC 8482 4.1: one RRset of the name's, not all
        if qtype in types:
            rrset = served.rrsets[(owner, qtype)]
            self.add(answer, rrset, owner=name if synthesised else None)
            if synthesised is None:
                self._additional(rrset)
            self._wildcard_proof(name, synthesised)
            return None
        if RdataType.CNAME in types and qtype != RdataType.CNAME:
            cname = served.rrsets[(owner, RdataType.CNAME)]
            self.add(answer, cname, owner=name if synthesised else None)
            self._wildcard_proof(name, synthesised)
            target: dns.name.Name = cname[0].target
            return target
        self._negative(name, qtype, synthesised)
        return None

    def _dname(self, name: dns.name.Name, owner: dns.name.Name) -> dns.name.Name | None:
        """RFC 6672 2.2: the DNAME, then a CNAME from `name` to its rewrite (unsigned: the validator
        checks it against the DNAME), or YXDOMAIN when the rewrite is longer than a name may be."""
        dname = self.served.rrsets[(owner, RdataType.DNAME)]
        self.add(self.response.answer, dname)
        try:
            target = name.relativize(owner).concatenate(dname[0].target)
        except dns.name.NameTooLong:
            self.response.set_rcode(dns.rcode.YXDOMAIN)
            return None
        cname = dns.rrset.RRset(name, dns.rdataclass.IN, RdataType.CNAME)
        cname.add(dns.rdtypes.ANY.CNAME.CNAME(dns.rdataclass.IN, RdataType.CNAME, target),  # type: ignore[no-untyped-call]  # dnspython rdata constructors are untyped
                  dname.ttl)
        self.seen.add((name, RdataType.CNAME))
        self.response.answer.append(cname)
        return target

    # --- authority and additional sections ------------------------------------------------------------

    def _referral(self, cut: dns.name.Name) -> None:
        """Hand the query to the child zone: not authoritative, the cut's NS (never signed), its DS or
        the proof that it has none (RFC 4035 3.1.4), and the glue."""
        served, authority = self.served, self.response.authority
        self.response.flags &= ~dns.flags.AA
        ns = served.rrsets[(cut, RdataType.NS)]
        self.add(authority, ns)
        ds = served.rrsets.get((cut, RdataType.DS))
        if ds is not None:
            self.add(authority, ds)
        elif self.do and served.params is not None:
            self.add(authority, served.nsec3_for(cut))
        elif self.do and (nsec := served.nsec_at(cut)) is not None:
            self.add(authority, nsec)
        self._additional(ns, referral=True)

    def _additional(self, rrset: dns.rrset.RRset, referral: bool = False) -> None:
        """Addresses the zone holds for the targets of an MX, NS or SRV RRset; glue below a zone cut only
        in a referral (elsewhere it is not the zone's data to give)."""
        field = _ADDITIONAL.get(rrset.rdtype)
        if field is None:
            return
        served = self.served
        for rdata in rrset:
            target = getattr(rdata, field)
            if not target.is_subdomain(served.origin):
                continue
            if not referral and served.cut_at_or_above(target) is not None:
                continue
            for rdtype in (RdataType.A, RdataType.AAAA):
                found = served.rrsets.get((target, rdtype))
                if found is not None:
                    self.add(self.response.additional, found)

    def _wildcard_proof(self, name: dns.name.Name, wildcard: dns.name.Name | None) -> None:
        """With a wildcard answer: the proof that `name` itself does not exist (RFC 4035 3.1.3.3, RFC 5155
        7.2.6: the NSEC3 covering the next closer name; the RRSIG labels give the closest encloser)."""
        if wildcard is None or not self.do:
            return
        served = self.served
        if served.params is not None:
            encloser = served.closest_encloser(name)
            self.add(self.response.authority, served.nsec3_for(served.next_closer(name, encloser)))
        else:
            self.add(self.response.authority, served.nsec_covering(name))

    def _negative(self, name: dns.name.Name, qtype: RdataType, wildcard: dns.name.Name | None = None) -> None:
        """NXDOMAIN or NODATA with the SOA and, with DO, the NSEC/NSEC3 proofs (RFC 4035 3.1.3, RFC 5155
        7.2). `wildcard`: the wildcard that matched but holds no `qtype` (wildcard NODATA)."""
        served, authority = self.served, self.response.authority
        exists = wildcard is not None or name in served.existing
        if not exists:
            self.response.set_rcode(dns.rcode.NXDOMAIN)
        self.add(authority, served.rrsets[(served.origin, RdataType.SOA)], served.negative_ttl)
        if not self.do:
            return
        if served.params is not None:
            if exists and wildcard is None:
                self.add(authority, served.nsec3_for(name))
                return
            encloser = served.closest_encloser(name)
            star = wildcard or dns.name.Name((b"*", *encloser.labels))
            for proof in (encloser, served.next_closer(name, encloser), star):
                self.add(authority, served.nsec3_for(proof))
            return
        if wildcard is not None:
            self.add(authority, served.nsec_covering(name))
            nsec = served.nsec_at(wildcard)
            if nsec is not None:
                self.add(authority, nsec)
            return
        if exists and (nsec := served.nsec_at(name)) is not None:
            self.add(authority, nsec)
            return
        self.add(authority, served.nsec_covering(name))  # NXDOMAIN, or an empty non-terminal
        if not exists:
            self.add(authority, served.nsec_covering(dns.name.Name((b"*", *served.closest_encloser(name).labels))))


def _restyle(rrset: dns.rrset.RRset, owner: dns.name.Name | None, ttl: int | None) -> dns.rrset.RRset:
    """`rrset` under another owner name (a wildcard expansion) and/or TTL; the stored one if neither."""
    if owner is None and ttl is None:
        return rrset
    out = dns.rrset.RRset(owner or rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
    out.update(rrset)  # type: ignore[no-untyped-call]  # dnspython leaves update() untyped
    out.ttl = rrset.ttl if ttl is None else ttl
    return out
