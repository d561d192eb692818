"""The CA's rate limits are replicated genesis policy (`limits.ca`): parsed with the field named on error,
safe by default, carried into the CA policy every replica enforces, and enforced at their boundary."""

from __future__ import annotations

from pathlib import Path

import pytest
from ca_testutil import CA_DOMAIN, T0_US, Client, MutableDNS, ca_name, issuer_profile, prove_and_request

from reference_node import cluster
from reference_node.genesis import Genesis
from trustchain.app.limits import LimitsError, ResourceLimits, limits_from_json
from trustchain.ca import commands as cacommands
from trustchain.ca import issuance
from trustchain.ca import policy as capolicy
from trustchain.ca.ratelimit import Limit

HOUR_US, WEEK_US = 3_600_000_000, 7 * 86_400_000_000


def test_default_ca_limits_are_fifty_an_hour_per_account_and_fifty_a_week_per_domain() -> None:
    ca = ResourceLimits().ca
    assert ca.account_limit == Limit(50, HOUR_US)
    assert ca.domain_limit == Limit(50, WEEK_US)
    assert limits_from_json({}).ca == ca


def test_ca_section_overrides_field_by_field() -> None:
    ca = limits_from_json({"ca": {"requests_per_account": 100_000, "certificates_per_domain": 7}}).ca
    assert ca.account_limit == Limit(100_000, HOUR_US)
    assert ca.domain_limit == Limit(7, WEEK_US)


@pytest.mark.parametrize(("doc", "field"), [
    ({"ca": []}, "limits.ca"),
    ({"ca": {"requests": 5}}, "limits.ca.requests"),
    ({"ca": {"requests_per_account": 0}}, "limits.ca.requests_per_account"),
    ({"ca": {"domain_window_us": "1w"}}, "limits.ca.domain_window_us"),
])
def test_a_bad_ca_section_names_the_field(doc: object, field: str) -> None:
    with pytest.raises(LimitsError) as info:
        limits_from_json(doc)
    assert str(info.value).startswith(field + ":"), info.value


def test_genesis_limits_reach_the_ca_policy(tmp_path: Path) -> None:
    cluster.generate(tmp_path, 4, 3, limits={"ca": {"requests_per_account": 12_345, "domain_window_us": 60_000_000}})
    policy = Genesis.load(tmp_path / "genesis.json").ca_policy()
    assert policy.account_limit == Limit(12_345, HOUR_US)
    assert policy.domain_limit == Limit(50, 60_000_000)


def _app(limits: capolicy.CALimits) -> tuple[issuance.CAApplication, MutableDNS]:
    dns = MutableDNS()
    policy = capolicy.CAPolicy(issuer_profile(ca_name("TrustChain Issuing E1"), b"\x11" * 32), CA_DOMAIN,
                               account_limit=limits.account_limit, domain_limit=limits.domain_limit)
    return issuance.CAApplication(policy, dns), dns


def test_account_limit_holds_at_its_boundary_and_other_accounts_are_unaffected() -> None:
    app, dns = _app(capolicy.CALimits(requests_per_account=3))
    client = Client(b"\x01" * 32)
    for k in range(3):
        res = prove_and_request(app, dns, client, [f"h{k}.example.org"], 10 * k + 1, T0_US + k)
        assert res.status == cacommands.STATUS_PENDING, res
    res = prove_and_request(app, dns, client, ["h9.example.org"], 100, T0_US + 5)
    assert res.status == cacommands.STATUS_ERROR and "rate" in res.detail, res
    other = prove_and_request(app, dns, Client(b"\x02" * 32), ["h8.example.org"], 200, T0_US + 6)
    assert other.status == cacommands.STATUS_PENDING, other
