"""The resolver state machine, driven in-process: upstreams are Authority objects (or dead), so every
effect and every byte is observable."""

from __future__ import annotations

import itertools

import dns.flags
import dns.message
import dns.name
import dns.rcode
import pytest
from dns_testutil import NOW, make_zone, seed

from trustchain.dns.authority import Authority
from trustchain.dns.dnssec import sign_zone
from trustchain.dns.keys import KeySet
from trustchain.dns.resolver import Resolution, Resolved, Resolver, SendQuery, Source, Upstream
from trustchain.dns.validator import Failure, Validator
from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

KEYS = KeySet.initial(seed("ksk"), seed("zsk"))


def signed_authority(zone: Zone | None = None, keys: KeySet = KEYS) -> Authority:
    zone = zone or make_zone()
    auth = Authority()
    auth.load(zone, sign_zone(zone, keys, NOW))
    return auth


class Net:
    """Answers SendQuery effects from Authority objects by upstream host; None = the host is dead."""

    def __init__(self, servers: dict[str, Authority | None], max_udp: int = 1232) -> None:
        self.servers, self.max_udp = servers, max_udp
        self.sent: list[tuple[str, str, bool]] = []

    def run(self, resolution: Resolution) -> Resolved:
        now = resolution.now
        effect = resolution.start()
        while isinstance(effect, SendQuery):
            q = dns.message.from_wire(effect.wire)
            question = f"{q.question[0].name} {dns.rdatatype.to_text(q.question[0].rdtype)}"
            self.sent.append((effect.upstream.host, question, effect.tcp))
            server = self.servers.get(effect.upstream.host)
            if server is None:
                effect = resolution.on_timeout(now)
            else:
                effect = resolution.on_response(
                    server.answer(effect.wire, NOW, max_udp=None if effect.tcp else self.max_udp), now)
        return effect


def resolver(**kw: object) -> Resolver:
    ids = itertools.count(1000)
    return Resolver(next_id=lambda: next(ids), **kw)  # type: ignore[arg-type]


def test_forwarding_then_cache() -> None:
    net = Net({"up": signed_authority()})
    r = resolver(upstreams=(Upstream("up"),))
    first = net.run(r.resolve("www.tc.example.", "A", NOW))
    assert first.source is Source.UPSTREAM and "192.0.2.1" in first.response.answer[0].to_text()
    second = net.run(r.resolve("www.tc.example.", "A", NOW + 10))
    assert second.source is Source.CACHE and second.response.answer[0].ttl == 290
    assert len(net.sent) == 1


def test_local_zones_answer_before_upstreams() -> None:
    net = Net({"up": None})
    r = resolver(authority=signed_authority(), upstreams=(Upstream("up"),))
    result = net.run(r.resolve("mail.tc.example.", "A", NOW))
    assert result.source is Source.AUTHORITY and "192.0.2.25" in result.response.answer[0].to_text()
    assert net.sent == []


def test_failover_timeout_then_next_upstream_and_serve_stale() -> None:
    net = Net({"dead": None, "up": signed_authority()})
    r = resolver(upstreams=(Upstream("dead"), Upstream("up")))
    ok = net.run(r.resolve("www.tc.example.", "AAAA", NOW))
    assert ok.source is Source.UPSTREAM and [s[0] for s in net.sent] == ["dead", "up"]
    net.servers["up"] = None  # every upstream now fails: an expired entry is served stale
    stale = net.run(r.resolve("www.tc.example.", "AAAA", NOW + 1000))
    assert stale.source is Source.STALE and stale.response.answer[0].ttl == 30
    fail = net.run(r.resolve("mail.tc.example.", "A", NOW + 1000))
    assert fail.source is Source.FAILURE and fail.response.rcode() == dns.rcode.SERVFAIL


def test_truncation_retries_over_tcp() -> None:
    zone = make_zone()
    zone.apply(ZoneUpdate("tc.example.", (AddRecords("big", "TXT", 60, tuple(f'"{i:03d}' + "x" * 200 + '"'
                                                                            for i in range(8))),)))
    net = Net({"up": signed_authority(zone)}, max_udp=512)
    result = net.run(resolver(upstreams=(Upstream("up"),)).resolve("big.tc.example.", "TXT", NOW))
    assert [s[2] for s in net.sent] == [False, True] and len(result.response.answer[0]) == 8


def test_spoofed_response_is_rejected() -> None:
    r = resolver(upstreams=(Upstream("up"),))
    res = r.resolve("www.tc.example.", "A", NOW)
    effect = res.start()
    assert isinstance(effect, SendQuery)
    forged = dns.message.make_response(dns.message.from_wire(effect.wire))
    forged.id ^= 0x5555
    out = res.on_response(forged.to_wire(), NOW)
    assert isinstance(out, Resolved) and out.source is Source.FAILURE and r.stats.mismatched == 1


def test_validation_secure_and_bogus() -> None:
    anchor = KEYS.ds_records(dns.name.from_text("tc.example."))
    good = Net({"up": signed_authority()})
    r = resolver(upstreams=(Upstream("up"),), validator=Validator(anchor))
    result = good.run(r.resolve("alias2.tc.example.", "AAAA", NOW))
    assert result.validation is not None and result.validation.secure and result.response.flags & dns.flags.AD
    nx = good.run(r.resolve("nope.tc.example.", "A", NOW))
    assert nx.validation is not None and nx.validation.secure and nx.response.rcode() == dns.rcode.NXDOMAIN
    # same zone signed by an impostor's keys: no DNSKEY matches our DS
    evil = Net({"up": signed_authority(keys=KeySet.initial(seed("evil-ksk"), seed("zsk")))})
    r2 = resolver(upstreams=(Upstream("up"),), validator=Validator(anchor))
    bogus = evil.run(r2.resolve("www.tc.example.", "A", NOW))
    assert bogus.source is Source.FAILURE and bogus.response.rcode() == dns.rcode.SERVFAIL
    assert bogus.validation is not None and bogus.validation.failure is Failure.DS_MISMATCH


@pytest.mark.parametrize(("qname", "expected"), [
    ("x.y.a.b.deep.tc.example.", ["deep.tc.example. A", "b.deep.tc.example. A", "a.b.deep.tc.example. A",
                                  "y.a.b.deep.tc.example. A"]),
])
def test_qname_minimisation_stops_at_nxdomain(qname: str, expected: list[str]) -> None:
    net = Net({"auth": signed_authority()})
    r = resolver(upstreams=(Upstream("auth", recursive=False, zone="tc.example."),))
    result = net.run(r.resolve(qname, "TXT", NOW))
    assert [s[1] for s in net.sent] == expected  # the full name and real type never left
    assert result.response.rcode() == dns.rcode.NXDOMAIN and str(result.response.question[0].name) == qname


def test_qname_minimisation_reaches_the_full_question() -> None:
    net = Net({"auth": signed_authority()})
    r = resolver(upstreams=(Upstream("auth", recursive=False, zone="tc.example."),))
    result = net.run(r.resolve("a.b.deep.tc.example.", "TXT", NOW))
    assert [s[1] for s in net.sent] == ["deep.tc.example. A", "b.deep.tc.example. A", "a.b.deep.tc.example. TXT"]
    assert "hello world" in result.response.answer[0].to_text()
