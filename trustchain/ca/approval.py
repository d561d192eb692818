"""Whether an ordered certificate request is approved: the checks, in the order the CA applies them.

Why a module of its own: each check is a pure function of the request, the genesis policy and the
replicated state it is handed (challenges, spent payments, rate windows, the DNS view as of the
request) and returns an error detail "<field>: <reason>" or None. ``CAApplication`` runs them first and
changes state only for an approved request, so a rejected request changes nothing on any replica.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping, Sequence, Set

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed448, ed25519, rsa
from cryptography.hazmat.primitives.asymmetric.mldsa import MLDSA65PublicKey, MLDSA87PublicKey
from cryptography.hazmat.primitives.asymmetric.types import CertificatePublicKeyTypes

from trustchain.ca import caa, names, ownership
from trustchain.ca.commands import IssueRequest
from trustchain.ca.policy import MIN_LIFETIME, NODE_MIN_LIFETIME, CAPolicy
from trustchain.ca.ratelimit import SlidingWindow
from trustchain.ca.records import StoredChallenge


def account_key(client: bytes) -> str:
    """The rate-limit key of an account."""
    return "acct:" + client.hex()


def account_uri(account: bytes) -> str:
    """The RFC 8657 ``accounturi`` a domain owner writes into CAA to pin one TrustChain account."""
    return "trustchain:account:" + account.hex()


def check_csr(csr: x509.CertificateSigningRequest) -> str | None:
    """Proof of key possession and an allowed key algorithm."""
    if not csr.is_signature_valid:
        return "csr: signature does not verify (no proof of key possession)"
    key_error = check_key(csr.public_key())
    return f"csr: {key_error}" if key_error else None


def check_key(key: CertificatePublicKeyTypes) -> str | None:
    if isinstance(key, ed25519.Ed25519PublicKey | ed448.Ed448PublicKey | MLDSA65PublicKey | MLDSA87PublicKey):
        return None
    if isinstance(key, ec.EllipticCurvePublicKey):
        return None if key.curve.name in ("secp256r1", "secp384r1") else f"curve {key.curve.name} not allowed"
    if isinstance(key, rsa.RSAPublicKey):
        return None if 2048 <= key.key_size <= 8192 and key.key_size % 8 == 0 else "RSA key size not allowed"
    return "public key algorithm not allowed"


def check_names(req: IssueRequest, requested: Sequence[str], csr: x509.CertificateSigningRequest, client: bytes,
                policy: CAPolicy) -> str | None:
    """Count, one proof per name, no duplicates, the CSR's SAN (if any) agrees, the node-name rule."""
    if not req.names or len(req.names) > policy.max_names:
        return f"names: need 1..{policy.max_names} names"
    if len(req.proofs) != len(req.names):
        return "proofs: one ownership proof per name is required"
    if len(set(requested)) != len(requested):
        return "names: duplicate names"
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    except x509.ExtensionNotFound:
        san = None
    if san is not None:
        other = sorted({type(g).__name__ for g in san if not isinstance(g, x509.DNSName)})
        if other:
            # The certificate would silently lack them; the requester must know it asked for more.
            return f"csr: subjectAltName holds {', '.join(other)} entries; only DNS names are issued"
        csr_names = {names.normalize(n) for n in san.get_values_for_type(x509.DNSName)}
        if csr_names and csr_names != set(requested):
            return "names: differ from the CSR's subjectAltName"
    return names.check_node_names(requested, client, policy.node_domain, policy.validator_keys)


def check_proofs(requested: Sequence[str], proofs: Sequence[str], client: bytes, policy: CAPolicy,
                 lookup: caa.DNSLookup, challenges: Mapping[tuple[bytes, str], StoredChallenge]) -> str | None:
    """Per name, in order: a valid host name, CAA permits this CA and account, the dns-01 proof holds.
    (A node name is proven by the validator key instead: the caller skips this for node requests.)"""
    for name, proof in zip(requested, proofs, strict=True):
        reason = names.check_dns_name(name, allow_wildcard=policy.allow_wildcards)
        if reason:
            return f"names: {name!r}: {reason}"
        reason = caa.check_caa(lookup, name, policy.ca_domain, account_uri(client))
        if reason:
            return f"caa: {name!r}: {reason}"
        chal = challenges.get((client, name.removeprefix("*.")))
        reason = ownership.check_ownership(lookup, name, chal.value if chal else None, client, proof)
        if reason:
            return f"ownership: {name!r}: {reason}"
    return None


def check_validated_names(requested: Sequence[str], client: bytes, policy: CAPolicy,
                          lookup: caa.DNSLookup) -> str | None:
    """For names validated outside the CA's own dns-01 flow (ACME authorizations): count, no duplicates,
    no node names, each a valid host name that CAA lets this CA issue for this account."""
    if not requested or len(requested) > policy.max_names:
        return f"names: need 1..{policy.max_names} names"
    if len(set(requested)) != len(requested):
        return "names: duplicate names"
    for name in requested:
        if names.under(name, policy.node_domain):
            return f"names: {name!r}: names under the node domain are issued only to validators"
        reason = names.check_dns_name(name, allow_wildcard=policy.allow_wildcards)
        if reason:
            return f"names: {name!r}: {reason}"
        reason = caa.check_caa(lookup, name, policy.ca_domain, account_uri(client))
        if reason:
            return f"caa: {name!r}: {reason}"
    return None


def check_payment(reference: str, client: bytes, policy: CAPolicy, spent: Set[str]) -> str | None:
    if not policy.require_payment:
        return None
    if reference in spent:
        return "payment: reference already used"
    if not policy.payment_check(reference, client):
        return "payment: not verified"
    return None


def check_lifetime(lifetime: dt.timedelta, node: bool, policy: CAPolicy) -> str | None:
    min_lifetime = NODE_MIN_LIFETIME if node else MIN_LIFETIME
    if lifetime > policy.max_lifetime or lifetime < min_lifetime:
        return (f"lifetime: must be between {int(min_lifetime.total_seconds())} s and "
                f"{int(policy.max_lifetime.total_seconds())} s")
    return None


def check_rate(rate: SlidingWindow, account: str, domains: Sequence[str], now_us: int, policy: CAPolicy) -> str | None:
    """The account's request rate, then each registered domain's certificate rate (in consensus time)."""
    if not rate.allows(account, now_us, policy.account_limit):
        return "rate: too many requests for this account"
    for d in domains:
        if not rate.allows(d, now_us, policy.domain_limit):
            return f"rate: too many certificates for {d[4:]}"
    return None
