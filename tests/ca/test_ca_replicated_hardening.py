"""The replicated CA fails closed: names, CSR SAN types, issuer expiry, revocation reasons, OCSP requests."""

from __future__ import annotations

import dataclasses
import datetime as dt

import pytest
from ca_testutil import (
    CA_DOMAIN,
    T0_US,
    Client,
    MutableDNS,
    ca_name,
    frost_signer,
    issuer_profile,
    make_csr,
    prove_and_request,
    run,
    seeded,
)
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509 import ocsp as xocsp

from trustchain.app.interface import Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import crl, frost, issuance, names, ocsp
from trustchain.ca import policy as capolicy
from trustchain.ca import x509 as cax509

GROUP = frost.trusted_dealer_keygen(5, 3, seeded(17))
SIGN = frost_signer(GROUP.key_packages, GROUP.public, [2, 3, 4], seeded(18))
OPERATOR = b"\x0f" * 32
ALICE = b"\xaa" * 32
T0 = catime.consensus_datetime(T0_US)


def make_app(profile: cax509.IssuerProfile | None = None, **overrides: object) -> tuple[issuance.CAApplication,
                                                                                        MutableDNS]:
    dns = MutableDNS()
    issuer = profile or issuer_profile(ca_name("Hardening Issuing"), GROUP.public.group_public_key)
    policy = capolicy.CAPolicy(issuer=issuer, ca_domain=CA_DOMAIN, operators=(OPERATOR,), require_payment=False,
                               max_lifetime=dt.timedelta(days=398))
    return issuance.CAApplication(dataclasses.replace(policy, **overrides), dns), dns  # type: ignore[arg-type]


def issue(app: issuance.CAApplication, dns: MutableDNS, name: str, seq: int, lifetime_s: int = 0) -> bytes:
    res = prove_and_request(app, dns, Client(ALICE), [name], seq, T0_US, lifetime_s=lifetime_s)
    assert res.status == cacommands.STATUS_PENDING, res
    tbs = app.pending[res.pending_id].tbs
    out = run(app, Operation(b"\x01" * 32, seq, cacommands.finalize_command(res.pending_id, SIGN(tbs))), seq + 2,
              T0_US + 2_000_000)
    assert out.status == cacommands.STATUS_OK, out
    return out.certificate_der


@pytest.mark.parametrize(("name", "expected"), [
    ("xn--a.example.org", "not a valid IDNA A-label"),
    ("xn--ls8h.example.org", "not a valid IDNA A-label"),
    ("ab--cd.example.org", "positions 3 and 4"),
    ("bücher.example.org", "'xn--bcher-kva.example.org'"),
])
def test_invalid_idn_names_are_refused(name: str, expected: str) -> None:
    reason = names.check_dns_name(name)
    assert reason is not None and expected in reason
    assert names.check_dns_name("xn--bcher-kva.example.org") is None  # a valid A-label still passes
    app, _ = make_app()
    res = run(app, Client(ALICE).op(cacommands.challenge_command([name])), 1, T0_US)
    assert res.field == "names" and expected in res.detail


def test_csr_with_ip_or_email_san_is_refused() -> None:
    app, dns = make_app()
    alice = Client(ALICE)
    ch = run(app, alice.op(cacommands.challenge_command(["ip.example.org"])), 1, T0_US)
    key = ec.generate_private_key(ec.SECP256R1())
    import ipaddress

    san = x509.SubjectAlternativeName([x509.DNSName("ip.example.org"), x509.IPAddress(ipaddress.ip_address("10.0.0.1")),
                                       x509.RFC822Name("a@example.org")])
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([])).add_extension(san, critical=False)
           .sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER))
    from trustchain.ca import ownership

    proof = ch.proofs()["ip.example.org"]
    dns.add_txt(f"{ownership.CHALLENGE_LABEL}.ip.example.org", ownership.dns01_txt(proof))
    req = cacommands.IssueRequest(csr, ("ip.example.org",), (proof,), "x", "", 0)
    res = run(app, alice.op(cacommands.request_command(req)), 2, T0_US)
    assert res.field == "csr" and "IPAddress" in res.detail and "RFC822Name" in res.detail


def test_leaf_never_outlives_its_issuer() -> None:
    expiry = T0 + dt.timedelta(days=30)
    profile = dataclasses.replace(issuer_profile(ca_name("Short Issuing"), GROUP.public.group_public_key),
                                  not_after=expiry)
    _, csr = make_csr(["long.example.org"])
    key = x509.load_der_x509_csr(csr).public_key()
    tbs = cax509.leaf_tbs(key, ["long.example.org"], profile, T0, 1, b"r", dt.timedelta(days=398))
    cert = x509.load_der_x509_certificate(cax509.assemble_certificate(tbs, bytes(64)))
    assert cert.not_valid_after_utc == expiry
    with pytest.raises(cax509.CertificateError, match="expired"):
        cax509.leaf_tbs(key, ["long.example.org"], profile, expiry + dt.timedelta(seconds=1), 1, b"r")
    # through the application: the policy's issuer expiry holds, and so does an installed issuer's
    app, dns = make_app(profile)
    leaf = x509.load_der_x509_certificate(issue(app, dns, "long.example.org", 1, 398 * 86400))
    assert leaf.not_valid_after_utc == expiry


def test_installed_issuer_carries_its_expiry() -> None:
    root = frost.trusted_dealer_keygen(5, 3, seeded(19))
    root_profile = issuer_profile(ca_name("Hardening Root"), root.public.group_public_key, "root")
    inter = cax509.issue(
        cax509.intermediate_tbs(ca_name("Hardening Issuing 2"), GROUP.public.group_public_key, root_profile, T0, 2,
                                dt.timedelta(days=10)),
        frost_signer(root.key_packages, root.public, [1, 2, 3], seeded(20)), root.public.group_public_key)
    app, dns = make_app(root_keys=(root.public.group_public_key,))
    der = inter.public_bytes(serialization.Encoding.DER)
    assert run(app, Client(OPERATOR).op(cacommands.install_issuer_command(der)), 1, T0_US).status == "ok"
    assert app.current_issuer.not_after == inter.not_valid_after_utc
    leaf = x509.load_der_x509_certificate(issue(app, dns, "after.example.org", 2, 90 * 86400))
    assert leaf.not_valid_after_utc == inter.not_valid_after_utc


def test_certificate_hold_is_refused() -> None:
    app, dns = make_app()
    serial = x509.load_der_x509_certificate(issue(app, dns, "hold.example.org", 1)).serial_number
    for client in (ALICE, OPERATOR):
        res = run(app, Client(client).op(cacommands.revoke_command(serial, 6)), 5, T0_US + 3_000_000)
        assert res.field == "reason" and "certificateHold" in res.detail
    assert app.status(serial).revoked_us is None  # type: ignore[union-attr]


def test_key_compromise_replaces_an_earlier_reason_and_keeps_the_date() -> None:
    app, dns = make_app()
    serial = x509.load_der_x509_certificate(issue(app, dns, "kc.example.org", 1)).serial_number
    alice = Client(ALICE)
    first = run(app, alice.op(cacommands.revoke_command(serial, 4)), 5, T0_US + 3_000_000)
    assert first.status == cacommands.STATUS_OK
    # a CRL listing "superseded" is signed and stored
    signing = run(app, Client(OPERATOR).op(cacommands.encode_command(cacommands.SignCRLCommand())), 6,
                  T0_US + 4_000_000)
    pid = signing.pending_ids[0]
    stored = run(app, Operation(b"\x01" * 32, 9, cacommands.finalize_command(pid, SIGN(app.signatures[pid].tbs))),
                 7, T0_US + 5_000_000)
    assert stored.status == cacommands.STATUS_OK and not app.crl_due(T0_US + 6_000_000)
    again = run(app, alice.op(cacommands.revoke_command(serial, 1)), 8, T0_US + 9_000_000)
    assert again.status == cacommands.STATUS_OK and "keyCompromise" in again.detail
    record = app.status(serial)
    assert record is not None and record.reason == 1 and record.revoked_us == T0_US + 3_000_000
    assert app.crl_due(T0_US + 10_000_000)  # the stored CRL says superseded: a new one is due
    rev = crl.revocations_from(app.revoked())
    assert [(r.serial, r.reason) for r in rev] == [(serial, 1)]
    # a lesser reason does not replace keyCompromise
    unchanged = run(app, alice.op(cacommands.revoke_command(serial, 4)), 10, T0_US + 11_000_000)
    assert unchanged.status == cacommands.STATUS_UNCHANGED and app.status(serial).reason == 1  # type: ignore[union-attr]
    # snapshot and restore agree (the reason and the CRL being due are replicated state)
    copy, _ = make_app()
    copy.restore(app.snapshot())
    assert copy.snapshot() == app.snapshot() and copy.crl_due(T0_US + 10_000_000)


def _two_certid_request() -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    n = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "x")])
    cert = (x509.CertificateBuilder().subject_name(n).issuer_name(n).public_key(key.public_key()).serial_number(7)
            .not_valid_before(T0).not_valid_after(T0 + dt.timedelta(days=1)).sign(key, hashes.SHA256()))
    one = xocsp.OCSPRequestBuilder().add_certificate(cert, cert, hashes.SHA1()).build()
    der = one.public_bytes(serialization.Encoding.DER)
    # OCSPRequest { TBSRequest { requestList SEQUENCE OF Request } }: repeat the one Request
    from trustchain.ca import der as cader

    _, tbs_body, _ = cader.read_tlv(der)
    _, tbs, _ = cader.read_tlv(tbs_body)
    _, req_list, _ = cader.read_tlv(tbs)
    return cader.sequence(cader.sequence(cader.sequence(req_list + req_list)))


def test_ocsp_request_with_two_certids_is_malformed_not_an_exception() -> None:
    profile = issuer_profile(ca_name("Hardening Issuing"), GROUP.public.group_public_key)
    request = _two_certid_request()
    served = xocsp.load_der_ocsp_response(ocsp.serve(profile, request, lambda _s: None, lambda _s: False))
    assert served.response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST
    signed = xocsp.load_der_ocsp_response(ocsp.respond(profile, request, lambda _s: ocsp.CertStatus(True), T0, SIGN))
    assert signed.response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST


def test_ocsp_validity_respects_the_baseline_requirements() -> None:
    profile = issuer_profile(ca_name("Hardening Issuing"), GROUP.public.group_public_key)
    with pytest.raises(ocsp.OCSPError, match="validity"):
        ocsp.presigned_tbs(profile, 5, ocsp.CertStatus(True), T0, dt.timedelta(hours=4))
    with pytest.raises(ocsp.OCSPError, match="validity"):
        ocsp.presigned_tbs(profile, 5, ocsp.CertStatus(True), T0, dt.timedelta(days=11))
    tbs = ocsp.presigned_tbs(profile, 5, ocsp.CertStatus(True), T0)
    resp = xocsp.load_der_ocsp_response(ocsp.assemble_response(tbs, SIGN(tbs)))
    assert resp.next_update_utc is not None
    assert resp.next_update_utc - resp.this_update_utc >= dt.timedelta(hours=8)


def test_replicated_serials_are_unique(monkeypatch: pytest.MonkeyPatch) -> None:
    """Two requests whose serials collide: the second is refused, never issued under the same serial."""
    app, dns = make_app()
    monkeypatch.setattr(cax509, "serial_number", lambda digest, seq: 0x5EED)
    first = prove_and_request(app, dns, Client(ALICE), ["one.example.org"], 1, T0_US)
    assert first.status == cacommands.STATUS_PENDING
    second = prove_and_request(app, dns, Client(ALICE), ["two.example.org"], 3, T0_US)
    assert second.field == "serial" and "collision" in second.detail


def test_node_ocsp_endpoint_answers_two_certids_with_malformed_request() -> None:
    """The reference node's /ocsp (POST and GET) over the replicated CA: a clean OCSP error, never a 500."""
    import asyncio
    import base64
    import types

    from aiohttp import web
    from aiohttp.test_utils import TestClient, TestServer

    from reference_node import http_pki

    app, _ = make_app()
    node = types.SimpleNamespace(app=types.SimpleNamespace(ca=app))
    request = _two_certid_request()

    async def go() -> list[tuple[int, bytes]]:
        web_app = web.Application()
        http_pki.register(web_app, node)  # type: ignore[arg-type]
        async with TestClient(TestServer(web_app)) as client:
            out = []
            r = await client.post("/ocsp", data=request, headers={"Content-Type": http_pki.OCSP_REQUEST})
            out.append((r.status, await r.read()))
            r = await client.get("/ocsp/" + base64.b64encode(request).decode().replace("/", "%2F"))
            out.append((r.status, await r.read()))
            return out

    for status, body in asyncio.run(go()):
        assert status == 200
        assert xocsp.load_der_ocsp_response(body).response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST
