"""A FROST-signed root -> issuing CA chain plus a CAApplication that issued leaves through it."""

from __future__ import annotations

from ca_testutil import (
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
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from trustchain.app.interface import Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import frost, issuance
from trustchain.ca import policy as capolicy
from trustchain.ca import x509 as cax509

ROOT = frost.trusted_dealer_keygen(5, 3, seeded(301))
ISSUING = frost.trusted_dealer_keygen(5, 3, seeded(302))
ROOT_PROFILE = issuer_profile(ca_name("TrustChain Root R1"), ROOT.public.group_public_key, "root")
ISSUING_PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), ISSUING.public.group_public_key, "issuing-e1")
ROOT_SIGN = frost_signer(ROOT.key_packages, ROOT.public, [1, 2, 4], seeded(303))
ISSUING_SIGN = frost_signer(ISSUING.key_packages, ISSUING.public, [2, 3, 5], seeded(304))
GENESIS = catime.consensus_datetime(T0_US - 86_400_000_000)
ROOT_CERT = cax509.issue(
    cax509.root_tbs(ROOT_PROFILE.name, ROOT_PROFILE.public_key, GENESIS), ROOT_SIGN, ROOT_PROFILE.public_key
)
ISSUING_CERT = cax509.issue(
    cax509.intermediate_tbs(ISSUING_PROFILE.name, ISSUING_PROFILE.public_key, ROOT_PROFILE, GENESIS, 1),
    ROOT_SIGN,
    ROOT_PROFILE.public_key,
)
OPERATOR = b"\x0f" * 32


def issued_app(names: list[list[str]]) -> tuple[issuance.CAApplication, list[x509.Certificate]]:
    """An application that issued one certificate per entry of ``names`` (finalized via FROST)."""
    app = issuance.CAApplication(capolicy.CAPolicy(ISSUING_PROFILE, CA_DOMAIN, operators=(OPERATOR,)), MutableDNS())
    certs = []
    seq = 1
    for i, ns in enumerate(names):
        res = prove_and_request(app, app.lookup, Client(bytes([0xA0 + i]) * 32), ns, seq, T0_US, csr_seed=i)  # type: ignore[arg-type]
        assert res.status == cacommands.STATUS_PENDING, res
        tbs = app.pending[res.pending_id].tbs
        out = run(app, Operation(OPERATOR, seq, cacommands.finalize_command(res.pending_id, ISSUING_SIGN(tbs))),
                  seq + 2, T0_US + 2_000_000)
        assert out.status == cacommands.STATUS_OK and out.serial == res.serial, out
        certs.append(x509.load_der_x509_certificate(out.certificate_der))
        seq += 3
    return app, certs


def pem(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.PEM)
