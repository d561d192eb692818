"""The CA's genesis configuration: who the CA is, what it will sign and how often it re-signs.

Why a module of its own: the request checks, the CRL/OCSP signing state and the node's genesis loader
all read the policy, and it depends on nothing but the X.509 profile and the rate-limit types.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from dataclasses import dataclass, field

from trustchain.ca import x509 as cax509
from trustchain.ca.names import NODE_DOMAIN
from trustchain.ca.ratelimit import Limit

PaymentCheck = Callable[[str, bytes], bool]
"""Deterministic payment verification ``(reference, account) -> paid``; backed by replicated state."""


def _any_payment(reference: str, account: bytes) -> bool:
    return bool(reference)


ACCOUNT_LIMIT = Limit(50, 3_600_000_000)  # 50 requests per account per hour
DOMAIN_LIMIT = Limit(50, 7 * 86_400_000_000)  # 50 certificates per registered domain per week


@dataclass(frozen=True)
class CALimits:
    """The CA's issuance rates, part of the replicated genesis policy (`limits.ca` in genesis.json,
    `trustchain.app.limits`): every replica counts the same requests in consensus time. The defaults
    are the safe ones (``ACCOUNT_LIMIT``, ``DOMAIN_LIMIT``); a load-test cluster raises them in its own
    genesis, never by a switch a running node could flip."""

    requests_per_account: int = ACCOUNT_LIMIT.count
    account_window_us: int = ACCOUNT_LIMIT.window_us
    certificates_per_domain: int = DOMAIN_LIMIT.count
    domain_window_us: int = DOMAIN_LIMIT.window_us

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")

    @property
    def account_limit(self) -> Limit:
        return Limit(self.requests_per_account, self.account_window_us)

    @property
    def domain_limit(self) -> Limit:
        return Limit(self.certificates_per_domain, self.domain_window_us)
MIN_LIFETIME = dt.timedelta(minutes=1)
NODE_MIN_LIFETIME = dt.timedelta(seconds=10)  # node certificates may be short-lived (tests, fast rotation)


@dataclass(frozen=True)
class CAPolicy:
    """Genesis configuration every replica shares: who the CA is and what it will sign."""

    issuer: cax509.IssuerProfile
    ca_domain: str
    root_keys: tuple[bytes, ...] = ()
    operators: tuple[bytes, ...] = ()
    allow_wildcards: bool = False
    default_lifetime: dt.timedelta = cax509.DEFAULT_LEAF_LIFETIME
    max_lifetime: dt.timedelta = dt.timedelta(days=7)
    max_names: int = 100
    account_limit: Limit = ACCOUNT_LIMIT
    domain_limit: Limit = DOMAIN_LIMIT
    challenge_ttl_us: int = 3_600_000_000
    pending_ttl_us: int = 3_600_000_000
    require_payment: bool = True
    payment_check: PaymentCheck = field(default=_any_payment, compare=False)
    crl_lifetime_us: int = 86_400_000_000  # nextUpdate - thisUpdate
    crl_refresh_us: int = 12 * 3_600_000_000  # an unchanged CRL is re-signed after this
    ocsp_validity_us: int = 3 * 86_400_000_000  # nextUpdate - thisUpdate of a pre-signed response
    ocsp_refresh_us: int = 86_400_000_000  # a response is re-signed after this (2 days of slack)
    ocsp_batch_max: int = 256
    # Validator node certificates: names under ``node_domain`` are issued only by the node-name rule
    # (``names.check_node_names``), which checks the request's client key against these consensus keys.
    node_domain: str = NODE_DOMAIN
    validator_keys: tuple[bytes, ...] = ()
    # Precertificate first (RFC 6962 section 3.1): the certificate is issued only once the validators' CT
    # logs have answered with enough SCTs, which it then embeds (``trustchain.app.embedded_scts``).
    embed_scts: bool = False
    # The root (name, key, URLs) and the genesis issuing certificate it signed (DER): the CA then keeps
    # the issuing certificates' revocation and signs the root CRL and their OCSP responses (``root``).
    root: cax509.IssuerProfile | None = None
    issuer_certificate: bytes = b""
    # Validators whose committed randomness goes into every serial (``serials``): f+1 in a replicated
    # CA (the router sets it); 0 only for a CA without validators (single-process tools and tests),
    # whose serials are then a hash of the ordered request.
    serial_contributors: int = 0
    # The account the router runs validator-quorum operations as: the only one that may revoke an issuer.
    quorum_account: bytes = b""
