"""The node-name rule: ``validator-<i>.nodes...`` is issued only to validator i's consensus key, alone,
without dns-01 or CAA, with short lifetimes allowed; other names under the node domain are refused."""

from __future__ import annotations

import dataclasses

from ca_testutil import CA_DOMAIN, T0_US, MutableDNS, ca_name, frost_signer, issuer_profile, make_csr, run, seeded
from cryptography import x509

from trustchain.app.interface import Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import frost, issuance
from trustchain.ca import names as canames
from trustchain.ca import policy as capolicy

GROUP = frost.trusted_dealer_keygen(5, 3, seeded(11))
PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), GROUP.public.group_public_key)
SIGN = frost_signer(GROUP.key_packages, GROUP.public, [2, 3, 4], seeded(12))
VALIDATORS = tuple(bytes([0x40 + i]) * 32 for i in range(4))


def make_app(**overrides: object) -> issuance.CAApplication:
    policy = capolicy.CAPolicy(issuer=PROFILE, ca_domain=CA_DOMAIN, validator_keys=VALIDATORS)
    return issuance.CAApplication(dataclasses.replace(policy, **overrides), MutableDNS())  # type: ignore[arg-type]


def node_request(names: list[str], lifetime_s: int = 20, seed: int = 1) -> bytes:
    _, csr = make_csr(names, seed)
    req = cacommands.IssueRequest(csr, tuple(names), ("",) * len(names), "node", "", lifetime_s)
    return cacommands.request_command(req)


def test_node_name_helpers() -> None:
    assert canames.node_name(3) == "validator-3.nodes.trustchain.internal"
    assert canames.node_index("validator-3.nodes.trustchain.internal") == 3
    for bad in ("validator-03.nodes.trustchain.internal", "validator-x.nodes.trustchain.internal",
                "a.validator-3.nodes.trustchain.internal", "validator-3.nodes.trustchain.internal.evil",
                "validator-3.other.internal"):
        assert canames.node_index(bad) is None, bad


def test_validator_gets_its_own_node_certificate_without_dns_proof() -> None:
    app = make_app()
    name = canames.node_name(2)
    res = run(app, Operation(VALIDATORS[2], 1, node_request([name])), 1, T0_US)
    assert res.status == cacommands.STATUS_PENDING, res
    pending = app.pending[res.pending_id]
    out = run(app, Operation(b"\x01" * 32, 1, cacommands.finalize_command(pending.pending_id, SIGN(pending.tbs))), 2,
              T0_US + 1_000_000)
    assert (out.status, out.kind, out.serial) == ("ok", cacommands.KIND_CERTIFICATE, pending.serial), out
    cert = x509.load_der_x509_certificate(out.certificate_der)
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == [name]
    assert cert.subject.get_attributes_for_oid(x509.oid.NameOID.COMMON_NAME)[0].value == name
    eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert set(eku) == {x509.oid.ExtendedKeyUsageOID.SERVER_AUTH, x509.oid.ExtendedKeyUsageOID.CLIENT_AUTH}
    assert (cert.not_valid_after_utc - cert.not_valid_before_utc).total_seconds() == 19


def test_other_keys_and_names_are_refused() -> None:
    app = make_app()
    name = canames.node_name(1)
    # another validator's key, and an outsider's key
    assert run(app, Operation(VALIDATORS[0], 1, node_request([name])), 1, T0_US).field == "ownership"
    assert run(app, Operation(b"\xee" * 32, 1, node_request([name])), 2, T0_US).field == "ownership"
    # no such validator, other names in the node domain, mixing with a public name
    for names in ([canames.node_name(4)], ["x.nodes.trustchain.internal"], ["nodes.trustchain.internal"],
                  [name, "www.example.org"]):
        res = run(app, Operation(VALIDATORS[1], 2, node_request(names)), 3, T0_US)
        assert res.field == "names", (names, res)
    # lifetime bounds still apply (10 s minimum for node certificates)
    assert run(app, Operation(VALIDATORS[1], 3, node_request([name], 5)), 4, T0_US).field == "lifetime"
    assert not app.pending


def test_rule_is_deterministic_and_needs_configured_validators() -> None:
    a, b = make_app(), make_app()
    op = Operation(VALIDATORS[3], 7, node_request([canames.node_name(3)]))
    ra, rb = run(a, op, 5, T0_US), run(b, op, 5, T0_US)
    assert ra == rb and ra.status == cacommands.STATUS_PENDING
    assert a.snapshot() == b.snapshot()
    # without validator keys in the policy no node name can be issued at all
    none = make_app(validator_keys=())
    assert run(none, op, 5, T0_US).field == "names"
