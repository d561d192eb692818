"""The root's side of the replicated CA: issuing CA revocation by the validator set only, the root CRL and
root-signed OCSP responses for the issuing certificates, all signed with the root's FROST shares."""

from __future__ import annotations

import random

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509 import ocsp

from tests.ca.ca_testutil import (
    CA_DOMAIN,
    T0_US,
    Client,
    MutableDNS,
    ca_name,
    frost_signer,
    issuer_profile,
    prove_and_request,
    run,
    seeded,
)
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import frost, issuance
from trustchain.ca import policy as capolicy
from trustchain.ca import x509 as cax509

ROOT = frost.trusted_dealer_keygen(5, 3, random.Random(21).randbytes)
ISSUING = frost.trusted_dealer_keygen(5, 3, random.Random(22).randbytes)
ROOT_PROFILE = issuer_profile(ca_name("TrustChain Root R1"), ROOT.public.group_public_key, "root")
ISSUING_PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), ISSUING.public.group_public_key)
ROOT_SIGN = frost_signer(ROOT.key_packages, ROOT.public, [1, 3, 5], seeded(3))
ISSUING_SIGN = frost_signer(ISSUING.key_packages, ISSUING.public, [2, 3, 4], seeded(4))
INTERMEDIATE = cax509.issue(cax509.intermediate_tbs(ISSUING_PROFILE.name, ISSUING_PROFILE.public_key, ROOT_PROFILE,
                                                    catime.consensus_datetime(T0_US - 10**9), 1),
                            ROOT_SIGN, ROOT_PROFILE.public_key)
QUORUM = b"validators"
OPERATOR = b"\x0f" * 32
ALICE = b"\xaa" * 32


def make_app() -> issuance.CAApplication:
    policy = capolicy.CAPolicy(ISSUING_PROFILE, CA_DOMAIN, root_keys=(ROOT_PROFILE.public_key,),
                               operators=(OPERATOR, QUORUM), require_payment=False, root=ROOT_PROFILE,
                               issuer_certificate=INTERMEDIATE.public_bytes(Encoding.DER), quorum_account=QUORUM)
    return issuance.CAApplication(policy, MutableDNS())


class Driver:
    def __init__(self) -> None:
        self.app = make_app()
        self.seq, self.now = 0, T0_US

    def run(self, client: bytes, payload: bytes) -> cacommands.CAResult:
        self.seq += 1
        self.now += 1_000_000
        return run(self.app, Client(client).op(payload), self.seq, self.now)

    def sign_root(self) -> None:
        """Order sign_root and finalize what it recorded with the root's FROST quorum."""
        res = self.run(OPERATOR, cacommands.sign_root_command())
        assert res.status == cacommands.STATUS_SIGNING, res
        for pid, tbs in self.app.root_pending_items().items():
            done = self.run(OPERATOR, cacommands.finalize_command(pid, ROOT_SIGN(tbs)))
            assert done.status == cacommands.STATUS_OK, done
        assert self.app.root_pending_items() == {}


REVOKE = cacommands.revoke_issuer_command(INTERMEDIATE.serial_number, 2)  # cACompromise


def test_the_root_signs_a_crl_and_an_ocsp_response_for_its_issuing_certificate() -> None:
    d = Driver()
    assert list(d.app.root.issuers) == [INTERMEDIATE.serial_number.to_bytes(
        (INTERMEDIATE.serial_number.bit_length() + 7) // 8, "big")]
    d.sign_root()
    crl = x509.load_der_x509_crl(d.app.root.crl.der if d.app.root.crl else b"")
    assert crl.issuer == ROOT_PROFILE.name and len(crl) == 0
    Ed25519PublicKey.from_public_bytes(ROOT_PROFILE.public_key).verify(crl.signature, crl.tbs_certlist_bytes)
    resp = ocsp.load_der_ocsp_response(d.app.root.ocsp_response(INTERMEDIATE.serial_number) or b"")
    assert resp.certificate_status == ocsp.OCSPCertStatus.GOOD and resp.responder_name == ROOT_PROFILE.name
    Ed25519PublicKey.from_public_bytes(ROOT_PROFILE.public_key).verify(resp.signature, resp.tbs_response_bytes)
    assert d.run(OPERATOR, cacommands.sign_root_command()).status == cacommands.STATUS_UNCHANGED


def test_only_the_validator_quorum_revokes_the_issuing_ca() -> None:
    d = Driver()
    for who in (ALICE, OPERATOR):
        res = d.run(who, REVOKE)
        assert res.status == cacommands.STATUS_ERROR and res.field == "authorization", res
    assert d.run(QUORUM, cacommands.revoke_issuer_command(12345, 2)).field == "serial"
    assert d.run(QUORUM, cacommands.revoke_issuer_command(INTERMEDIATE.serial_number, 6)).field == "reason"
    res = d.run(QUORUM, REVOKE)
    assert res.status == cacommands.STATUS_OK and res.issuer_key == ISSUING_PROFILE.public_key
    assert d.run(QUORUM, REVOKE).status == cacommands.STATUS_UNCHANGED


def test_after_revocation_the_root_crl_lists_it_ocsp_says_revoked_and_nothing_more_is_issued() -> None:
    d = Driver()
    d.sign_root()
    dns = d.app.lookup
    assert isinstance(dns, MutableDNS)
    alice = Client(ALICE)
    before = prove_and_request(d.app, dns, alice, ["www.example.org"], 100, d.now)
    assert before.status == cacommands.STATUS_PENDING and before.pending_id in d.app.pending
    assert d.run(QUORUM, REVOKE).ok
    assert before.pending_id not in d.app.pending  # nothing more is signed under the revoked key
    # the stored "good" response is withdrawn at once; the revoked one needs the root's signature
    assert d.app.root.ocsp_response(INTERMEDIATE.serial_number) is None
    assert d.app.root.ocsp_known(INTERMEDIATE.serial_number)
    d.sign_root()
    crl = x509.load_der_x509_crl(d.app.root.crl.der if d.app.root.crl else b"")
    entry = crl.get_revoked_certificate_by_serial_number(INTERMEDIATE.serial_number)
    assert entry is not None and entry.extensions.get_extension_for_class(x509.CRLReason).value.reason == \
        x509.ReasonFlags.ca_compromise
    assert crl.is_signature_valid(_root_key_as_public())
    resp = ocsp.load_der_ocsp_response(d.app.root.ocsp_response(INTERMEDIATE.serial_number) or b"")
    assert resp.certificate_status == ocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.ca_compromise
    Ed25519PublicKey.from_public_bytes(ROOT_PROFILE.public_key).verify(resp.signature, resp.tbs_response_bytes)
    after = prove_and_request(d.app, dns, alice, ["api.example.org"], 200, d.now + 10**6, csr_seed=2)
    assert after.status == cacommands.STATUS_ERROR and after.field == "issuer"


def _root_key_as_public() -> Ed25519PublicKey:
    return Ed25519PublicKey.from_public_bytes(ROOT_PROFILE.public_key)


def test_a_signature_by_the_issuing_key_is_refused_for_the_root_crl() -> None:
    d = Driver()
    assert d.run(OPERATOR, cacommands.sign_root_command()).status == cacommands.STATUS_SIGNING
    pid, tbs = next(iter(d.app.root_pending_items().items()))
    res = d.run(ALICE, cacommands.finalize_command(pid, ISSUING_SIGN(tbs)))
    assert res.status == cacommands.STATUS_ERROR and res.field == "signature"
    assert pid in d.app.root_pending_items() and d.app.bad_finalizers[ALICE] == 1


def test_sign_root_needs_a_root_and_force_needs_an_operator() -> None:
    d = Driver()
    assert d.run(ALICE, cacommands.sign_root_command(force=True)).field == "authorization"
    plain = issuance.CAApplication(capolicy.CAPolicy(ISSUING_PROFILE, CA_DOMAIN), MutableDNS())
    res = run(plain, Client(OPERATOR).op(cacommands.sign_root_command()), 1, T0_US)
    assert res.status == cacommands.STATUS_ERROR and res.field == "root"


def test_root_state_survives_a_snapshot() -> None:
    d = Driver()
    d.sign_root()
    assert d.run(QUORUM, REVOKE).ok
    d.run(OPERATOR, cacommands.sign_root_command())
    restored = make_app()
    restored.restore(d.app.snapshot())
    assert restored.snapshot() == d.app.snapshot()
    assert restored.root_pending_items() == d.app.root_pending_items() != {}
    assert restored.root.revoked_key(ISSUING_PROFILE.public_key)
