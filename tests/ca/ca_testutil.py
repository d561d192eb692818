"""Shared helpers for the CA tests: seeded randomness and a compact FROST signing session."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence

from trustchain.ca import frost


def seeded(seed: int) -> Callable[[int], bytes]:
    return random.Random(seed).randbytes


def run_session(
    keys: Mapping[int, frost.KeyPackage],
    signers: Sequence[int],
    msg: bytes,
    rand_bytes: Callable[[int], bytes],
) -> tuple[list[frost.SigningCommitment], list[frost.SignatureShare]]:
    """Both FROST rounds for ``signers``; returns the commitment list and the (honest) shares."""
    nonces: dict[int, frost.SigningNonces] = {}
    commitments = []
    for i in sorted(signers):
        nonces[i], c = frost.commit(i, keys[i].signing_share, rand_bytes)
        commitments.append(c)
    shares = [frost.sign(keys[i], nonces[i], msg, commitments) for i in sorted(signers)]
    return commitments, shares


def frost_signer(
    keys: Mapping[int, frost.KeyPackage],
    public: frost.PublicKeyPackage,
    signers: Sequence[int],
    rand_bytes: Callable[[int], bytes],
) -> Callable[[bytes], bytes]:
    """A ``SignFunction`` backed by a full FROST session, as the issuance layer will use."""

    def sign(msg: bytes) -> bytes:
        commitments, shares = run_session(keys, signers, msg, rand_bytes)
        return frost.aggregate_verified(commitments, msg, public, shares)

    return sign


# --- issuance fixtures ---------------------------------------------------------------------------

import datetime as _dt  # noqa: E402
import functools  # noqa: E402

from cryptography import x509 as _x509  # noqa: E402
from cryptography.hazmat.primitives.asymmetric import ec as _ec  # noqa: E402
from cryptography.hazmat.primitives.serialization import Encoding as _Encoding  # noqa: E402
from cryptography.x509.oid import NameOID as _NameOID  # noqa: E402

from trustchain.app.interface import ExecutionContext, Operation  # noqa: E402
from trustchain.ca import caa, issuance, ownership  # noqa: E402
from trustchain.ca import commands as cacommands  # noqa: E402
from trustchain.ca import x509 as cax509  # noqa: E402

T0_US = 1_748_779_200_000_000  # 2025-06-01T12:00:00Z
CA_DOMAIN = "trustchain.example"


def ca_name(cn: str) -> _x509.Name:
    return _x509.Name(
        [
            _x509.NameAttribute(_NameOID.COUNTRY_NAME, "CH"),
            _x509.NameAttribute(_NameOID.ORGANIZATION_NAME, "TrustChain"),
            _x509.NameAttribute(_NameOID.COMMON_NAME, cn),
        ]
    )


def issuer_profile(name: _x509.Name, key: bytes, tag: str = "issuing") -> cax509.IssuerProfile:
    return cax509.IssuerProfile(
        name=name,
        public_key=key,
        crl_url=f"http://crl.trustchain.example/{tag}.crl",
        ocsp_url="http://ocsp.trustchain.example/",
        ca_issuers_url=f"http://certs.trustchain.example/{tag}.der",
    )


def make_csr(names: list[str], seed: int = 1) -> tuple[_ec.EllipticCurvePrivateKey, bytes]:
    """ECDSA signatures are randomised: cache so one logical request has one byte string."""
    return _make_csr(tuple(names), seed)


@functools.cache
def _make_csr(names: tuple[str, ...], seed: int) -> tuple[_ec.EllipticCurvePrivateKey, bytes]:
    key = _ec.derive_private_key(1000 + seed, _ec.SECP256R1())
    from cryptography.hazmat.primitives import hashes

    csr = (
        _x509.CertificateSigningRequestBuilder()
        .subject_name(_x509.Name([]))
        .add_extension(_x509.SubjectAlternativeName([_x509.DNSName(n) for n in names]), critical=False)
        .sign(key, hashes.SHA256())
    )
    return key, csr.public_bytes(_Encoding.DER)


class MutableDNS(caa.StaticDNS):
    """StaticDNS whose mappings tests fill in (CAA and dns-01 TXT)."""

    def __init__(self) -> None:
        super().__init__({}, {})

    def add_txt(self, owner: str, value: str) -> None:
        self.txt_records.setdefault(owner, []).append(value)  # type: ignore[attr-defined]

    def set_caa(self, owner: str, records: list[caa.CAARecord]) -> None:
        self.caa_records[owner] = records  # type: ignore[index]


class Client:
    """A CA account: drives challenge -> DNS TXT -> request through an application."""

    def __init__(self, account: bytes) -> None:
        self.account = account
        self.ts = 0

    def op(self, payload: bytes) -> Operation:
        self.ts += 1
        return Operation(self.account, self.ts, payload)


def run(app: issuance.CAApplication, op: Operation, seq: int, time_us: int) -> cacommands.CAResult:
    """Execute one operation; its typed result."""
    return cacommands.decode_result(app.execute([op], ExecutionContext(seq, time_us))[0])


def prove_and_request(
    app: issuance.CAApplication,
    dns: MutableDNS,
    client: Client,
    names: list[str],
    seq: int,
    time_us: int,
    *,
    csr_seed: int = 1,
    payment: str | None = None,
    lifetime_s: int = 0,
) -> cacommands.CAResult:
    """challenge, publish TXT, request; returns the request's result."""
    res = run(app, client.op(cacommands.challenge_command(names)), seq, time_us)
    assert res.status == cacommands.STATUS_CHALLENGE, res
    proofs = res.proofs()
    for n in names:
        base = n.removeprefix("*.")
        dns.add_txt(f"{ownership.CHALLENGE_LABEL}.{base}", ownership.dns01_txt(proofs[base]))
    _, csr = make_csr(names, csr_seed)
    req = cacommands.IssueRequest(
        csr, tuple(names), tuple(proofs[n.removeprefix("*.")] for n in names), "ops@example.org",
        payment or f"pay-{seq}", lifetime_s,
    )
    return run(app, client.op(cacommands.request_command(req)), seq + 1, time_us + 1_000_000)


_ = _dt
