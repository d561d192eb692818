"""RRL: token bucket per client prefix and response class, slip, global limit, bounded table."""

from __future__ import annotations

from trustchain.dns.ratelimit import Action, ResponseRateLimiter, client_prefix, truncated_reply


def test_prefixes() -> None:
    assert client_prefix("192.0.2.77") == "192.0.2.0/24"
    assert client_prefix("2001:db8:1:2ff::1") == "2001:db8:1:200::/56"
    assert client_prefix("::ffff:192.0.2.9") == "192.0.2.0/24"
    assert client_prefix("not an ip") == "invalid"


def test_bucket_limits_a_prefix_and_refills() -> None:
    rrl = ResponseRateLimiter(rate=10, slip=0)
    actions = [rrl.check(f"192.0.2.{i % 200}", 0.0, "ok") for i in range(30)]
    assert actions.count(Action.SEND) == 10 and actions.count(Action.DROP) == 20
    assert rrl.check("198.51.100.1", 0.0, "ok") is Action.SEND  # another prefix is unaffected
    assert rrl.check("192.0.2.1", 0.0, "nxdomain") is Action.SEND  # another class too
    assert rrl.check("192.0.2.1", 0.5, "ok") is Action.SEND  # half a second refills 5 tokens
    assert rrl.check("192.0.2.1", 0.4, "ok") is Action.SEND  # a clock stepping back mints nothing...
    assert [rrl.check("192.0.2.1", 0.5, "ok") for _ in range(4)].count(Action.SEND) == 3


def test_slip_sends_every_nth_limited_response_truncated() -> None:
    rrl = ResponseRateLimiter(rate=1, slip=2)
    assert rrl.check("203.0.113.5", 0, "ok") is Action.SEND
    limited = [rrl.check("203.0.113.5", 0, "ok") for _ in range(6)]
    assert limited == [Action.DROP, Action.SLIP] * 3
    assert rrl.stats.slipped == 3 and rrl.stats.dropped == 3


def test_global_limit_and_bounded_table() -> None:
    rrl = ResponseRateLimiter(rate=100, global_rate=5, table_size=4)
    actions = [rrl.check(f"10.{i}.0.1", 0, "ok") for i in range(20)]
    assert actions.count(Action.SEND) == 5 and rrl.stats.global_dropped == 15
    assert len(rrl) <= 4


def test_truncated_reply_keeps_question_and_sets_tc() -> None:
    import dns.message
    import dns.rrset

    q = dns.message.make_query("big.example.", "TXT")
    r = dns.message.make_response(q)
    r.answer.append(dns.rrset.from_text("big.example.", 60, "IN", "TXT", '"' + "x" * 200 + '"'))
    out = dns.message.from_wire(truncated_reply(r.to_wire()))
    assert out.flags & dns.flags.TC and out.id == q.id and not out.answer
    assert out.question[0].name == q.question[0].name
