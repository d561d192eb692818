"""Genesis configuration shared by every validator (genesis.json) and per-node key files.

genesis.json holds what all validators must agree on besides the consensus keys (which are in each
node.toml's [consensus].validators): the CA (domain, the root and issuing FROST group public keys with
their verifying shares, threshold, names, URLs), the DNS zone-key master seed, the CT log origin and
each validator's CT log (P-256 key, URL). It is produced once by `python -m reference_node cluster` (or an
operator ceremony running the DKG) and distributed to validators only: the DNS master seed is secret.

Per node: `consensus.key` (hex Ed25519 seed, 0600), `issuing.share.json` / `root.share.json`
(this validator's FROST key packages, 0600), `ct.key` (its ECDSA P-256 CT log key, PEM, 0600), and
`tls.key` / `tls.crt`: its TLS node certificate (SAN `validator-<i>.<node_domain>`, EKU
serverAuth+clientAuth) issued by the TrustChain intermediate through FROST, followed by the
intermediate, so peers verify it against the TrustChain root.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import hashlib
import json
import os
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from trustchain.app.limits import ResourceLimits, limits_from_json
from trustchain.ca import frost
from trustchain.ca import names as canames
from trustchain.ca import policy as capolicy
from trustchain.ca import x509 as cax509
from trustchain.errors import TrustChainError


class GenesisError(TrustChainError, ValueError):
    pass


def ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def public_to_json(public: frost.PublicKeyPackage, common_name: str) -> dict[str, Any]:
    return {
        "common_name": common_name,
        "group_key": public.group_public_key.hex(),
        "verifying_shares": {str(i): v.hex() for i, v in sorted(public.verifying_shares.items())},
        "min_signers": public.min_signers,
    }


def public_from_json(doc: dict[str, Any]) -> frost.PublicKeyPackage:
    return frost.PublicKeyPackage(
        bytes.fromhex(doc["group_key"]),
        {int(i): bytes.fromhex(v) for i, v in doc["verifying_shares"].items()},
        int(doc["min_signers"]),
    )


def key_package_to_json(kp: frost.KeyPackage) -> dict[str, Any]:
    return {
        "identifier": kp.identifier,
        "signing_share": kp.signing_share.hex(),
        "verifying_share": kp.verifying_share.hex(),
        "group_public_key": kp.group_public_key.hex(),
        "min_signers": kp.min_signers,
    }


def load_key_package(path: Path) -> frost.KeyPackage:
    try:
        doc = json.loads(path.read_text())
        return frost.KeyPackage(
            int(doc["identifier"]),
            bytes.fromhex(doc["signing_share"]),
            bytes.fromhex(doc["verifying_share"]),
            bytes.fromhex(doc["group_public_key"]),
            int(doc["min_signers"]),
        )
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise GenesisError(f"{path}: not a FROST key package file: {exc}") from None


def load_seed(path: Path) -> bytes:
    try:
        seed = bytes.fromhex(path.read_text().strip())
    except (OSError, ValueError) as exc:
        raise GenesisError(f"{path}: not a hex Ed25519 seed: {exc}") from None
    if len(seed) != 32:
        raise GenesisError(f"{path}: Ed25519 seed must be 32 bytes, got {len(seed)}")
    return seed


def write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)


def _optional_time(value: Any) -> dt.datetime | None:
    """An ISO 8601 UTC time, or None when the field is absent (genesis files written before it)."""
    if value is None:
        return None
    when = dt.datetime.fromisoformat(str(value))
    return when if when.tzinfo else when.replace(tzinfo=dt.UTC)


@dataclass(frozen=True)
class CTLogInfo:
    """One validator's CT log: its operator name, P-256 key (DER SPKI), base URL and MMD (seconds)."""

    name: str
    key: bytes
    url: str
    mmd: int = 86400


def _ct_logs(doc: list[dict[str, Any]]) -> tuple[CTLogInfo, ...]:
    return tuple(CTLogInfo(str(d["name"]), base64.b64decode(d["key"], validate=True), str(d["url"]),
                           int(d.get("mmd", 86400))) for d in doc)


def _url_list(key: object, value: object) -> tuple[str, ...]:
    """A genesis URL entry: one URL, or a non-empty list of them (the preferred first)."""
    urls = [value] if isinstance(value, str) else value
    if not isinstance(urls, list) or not urls or not all(isinstance(u, str) and u for u in urls):
        raise ValueError(f"ca.urls.{key}: a URL or a non-empty list of URLs")
    return tuple(urls)


@dataclass(frozen=True)
class Genesis:
    network: str
    ca_domain: str
    root: frost.PublicKeyPackage
    root_name: str
    issuing: frost.PublicKeyPackage
    issuing_name: str
    urls: dict[str, tuple[str, ...]]  # each document's URLs, the preferred first (trustchain.ca.urls)
    dns_master_seed: bytes
    ct_origin: str
    operators: tuple[bytes, ...]
    node_domain: str = canames.NODE_DOMAIN
    registry_suffixes: tuple[str, ...] = ()  # see trustchain.authorization.zones.ZonePolicy
    limits: ResourceLimits = field(default_factory=ResourceLimits)  # replicated policy: trustchain.app.limits
    issuing_not_after: dt.datetime | None = None  # the intermediate's notAfter: no leaf outlives it
    ct_logs: tuple[CTLogInfo, ...] = ()  # the validators' own CT logs, in replica order
    created: str = ""  # RFC 3339 time of the genesis ceremony

    def __post_init__(self) -> None:
        """A single URL given as a string is that document's only URL."""
        urls = {k: v if isinstance(v, tuple) else _url_list(k, v) for k, v in self.urls.items()}
        object.__setattr__(self, "urls", urls)

    @classmethod
    def load(cls, path: Path) -> Genesis:
        try:
            doc = json.loads(path.read_text())
            return cls(
                network=str(doc["network"]),
                ca_domain=str(doc["ca"]["domain"]),
                root=public_from_json(doc["ca"]["root"]),
                root_name=str(doc["ca"]["root"]["common_name"]),
                issuing=public_from_json(doc["ca"]["issuing"]),
                issuing_name=str(doc["ca"]["issuing"]["common_name"]),
                urls={str(k): _url_list(k, v) for k, v in doc["ca"]["urls"].items()},
                dns_master_seed=bytes.fromhex(doc["dns"]["master_seed"]),
                ct_origin=str(doc["ct"]["origin"]),
                operators=tuple(bytes.fromhex(k) for k in doc["ca"].get("operators", [])),
                node_domain=str(doc["ca"].get("node_domain", canames.NODE_DOMAIN)),
                registry_suffixes=tuple(str(x) for x in doc["dns"].get("registry_suffixes", [])),
                limits=limits_from_json(doc.get("limits")),
                issuing_not_after=_optional_time(doc["ca"].get("issuing_not_after")),
                ct_logs=_ct_logs(doc["ct"].get("logs", [])),
                created=str(doc.get("created", "")),
            )
        except (OSError, ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise GenesisError(f"{path}: not a valid genesis file: {exc!r}") from None

    @property
    def cluster_id(self) -> bytes:
        """Names this cluster in every signed write, so a write cannot be replayed on another cluster."""
        return hashlib.sha256(b"trustchain/cluster/v1\0" + self.root.group_public_key + b"\0"
                              + self.network.encode() + b"\0" + self.ct_origin.encode()).digest()

    def _profile(self, name: str, key: bytes, group: str, not_after: dt.datetime | None) -> cax509.IssuerProfile:
        crl, ocsp, issuer = self.urls[f"{group}_crl"], self.urls["ocsp"], self.urls[f"{group}_issuer"]
        mirrors = cax509.PKIMirrors(crl[1:], ocsp[1:], issuer[1:])
        return cax509.IssuerProfile(ca_name(name), key, crl[0], ocsp[0], issuer[0], not_after=not_after,
                                    mirrors=mirrors if mirrors != cax509.PKIMirrors() else None)

    def issuer_profile(self) -> cax509.IssuerProfile:
        return self._profile(self.issuing_name, self.issuing.group_public_key, "issuing", self.issuing_not_after)

    def root_profile(self) -> cax509.IssuerProfile:
        return self._profile(self.root_name, self.root.group_public_key, "root", None)

    def ca_policy(self, validator_keys: tuple[bytes, ...] = ()) -> capolicy.CAPolicy:
        """The CA policy; `validator_keys` (consensus keys in replica order) enable the node-name rule:
        `validator-<i>.<node_domain>` is issued only to a request signed by validator i's key."""
        return capolicy.CAPolicy(
            issuer=self.issuer_profile(),
            ca_domain=self.ca_domain,
            root_keys=(self.root.group_public_key,),
            operators=self.operators,
            max_lifetime=dt.timedelta(days=90),
            require_payment=False,
            node_domain=self.node_domain,
            validator_keys=validator_keys,
            root=self.root_profile(),
            account_limit=self.limits.ca.account_limit,
            domain_limit=self.limits.ca.domain_limit,
        )
