"""A short-lived peer-link credential signed by a validator's consensus key, for a node whose TLS node
certificate is not valid (it expired while the node was down).

The node certificate is renewed through consensus, which needs the peer links, which need a valid
certificate: a node that stayed down past its certificate's expiry could never rejoin by itself. So such
a node presents, on its QUIC peer links only, an X.509 certificate it makes itself: a fresh Ed25519 link
key, SAN `validator-<i>.<node_domain>`, EKU serverAuth+clientAuth, valid for at most `MAX_LIFETIME`, and
signed directly by its Ed25519 consensus key (the key in `consensus.validators`). Peers accept it for
validator i exactly when that key verifies it. The credential gives the holder nothing the consensus key
does not already give: every frame on a peer link is a consensus or FROST message that the protocol
verifies against that same key, and the CA's node-name rule issues `validator-<i>` certificates to whoever
signs the request with it. It is not logged in CT and cannot be revoked: it lives at most an hour, in
memory, and it stops working when its key leaves the validator set.

Signing X.509 with the consensus key cannot be turned into a consensus signature or back: a
TBSCertificate is DER and starts with 0x30, while everything else that key signs starts with a
`trustchain/...` domain prefix, a length-prefixed canonical encoding (0x00) or an RFC 6962 version byte.
"""

from __future__ import annotations

import datetime as dt
import secrets

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID, SignatureAlgorithmOID

__all__ = ["BACKDATE", "MAX_LIFETIME", "ConsensusCredential", "check", "issuer_name", "mint"]

MAX_LIFETIME = dt.timedelta(hours=1)  # longest credential a peer accepts (not counting BACKDATE)
BACKDATE = dt.timedelta(minutes=1)  # not_before is this far in the past, for peers whose clocks run behind


def issuer_name(node_name: str) -> x509.Name:
    """The issuer of a credential: the consensus key itself, named after the node."""
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"consensus key of {node_name}")])


class ConsensusCredential:
    """A minted credential: the certificate and its fresh link key."""

    def __init__(self, certificate: x509.Certificate, key: ed25519.Ed25519PrivateKey) -> None:
        self.certificate, self.key = certificate, key

    def usable_at(self, now: dt.datetime) -> bool:
        """Still worth presenting on a new connection (more than a quarter of its lifetime left)."""
        return now + MAX_LIFETIME / 4 < self.certificate.not_valid_after_utc


def mint(consensus_seed: bytes, node_name: str, now: dt.datetime,
         lifetime: dt.timedelta = MAX_LIFETIME) -> ConsensusCredential:
    """A credential for `node_name`, signed by the Ed25519 consensus key with seed `consensus_seed`."""
    assert dt.timedelta(0) < lifetime <= MAX_LIFETIME
    link_key = ed25519.Ed25519PrivateKey.generate()
    consensus_key = ed25519.Ed25519PrivateKey.from_private_bytes(consensus_seed)
    cert = (x509.CertificateBuilder()
            .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, node_name)]))
            .issuer_name(issuer_name(node_name))
            .public_key(link_key.public_key())
            .serial_number(int.from_bytes(secrets.token_bytes(16), "big") >> 1)
            .not_valid_before(now - BACKDATE)
            .not_valid_after(now + lifetime)
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(x509.KeyUsage(True, False, False, False, False, False, False, False, False), critical=True)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH, ExtendedKeyUsageOID.CLIENT_AUTH]),
                           critical=False)
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(node_name)]), critical=False)
            .sign(consensus_key, None))
    return ConsensusCredential(cert, link_key)


def check(cert: x509.Certificate, node_name: str, consensus_key: bytes, usage: x509.ObjectIdentifier,
          now: dt.datetime) -> None:
    """Raise ValueError (naming the reason) unless `cert` is a current credential for `node_name` signed by
    the Ed25519 consensus key `consensus_key` and allowing `usage`."""
    if cert.signature_algorithm_oid != SignatureAlgorithmOID.ED25519:
        raise ValueError("not signed with Ed25519")
    if cert.issuer != issuer_name(node_name):
        raise ValueError(f"issuer is not the consensus key of {node_name}")
    try:
        ed25519.Ed25519PublicKey.from_public_bytes(consensus_key).verify(cert.signature, cert.tbs_certificate_bytes)
    except (InvalidSignature, ValueError):
        raise ValueError(f"not signed by the consensus key of {node_name}") from None
    nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
    if na - nb > MAX_LIFETIME + BACKDATE:
        raise ValueError(f"lifetime {na - nb} longer than {MAX_LIFETIME + BACKDATE}")
    if not nb <= now <= na:
        raise ValueError(f"credential not valid now (valid {nb.isoformat()} to {na.isoformat()})")
    try:
        names = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound as exc:
        raise ValueError(f"missing extension: {exc}") from None
    if names.get_values_for_type(x509.DNSName) != [node_name]:
        raise ValueError(f"names other than {node_name}")
    if usage not in eku:
        raise ValueError(f"extended key usage lacks {usage.dotted_string}")
