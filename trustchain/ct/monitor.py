"""Monitor: reads log entries and raises alerts for certificates naming watched domains.

CT only helps a domain owner who looks: the monitor compares each logged name against what the owner
expected (issuances they asked for, as (name, key) pairs: an owner knows the key it requested with),
against CAA (through a lookup callable, so DNS stays outside) and against the issuers allowed per
domain. Alerts are event objects in a stream (`drain`), ready to be published (e.g. on /stream/ct).
"""

from __future__ import annotations

import base64
import hashlib
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.ca import x509 as cax509
from trustchain.ct.entry import EntryError, PrecertEntry, X509Entry, parse_merkle_tree_leaf
from trustchain.ct.merkle import leaf_hash

__all__ = [
    "CAA_VIOLATION", "UNEXPECTED_ISSUANCE", "UNEXPECTED_ISSUER", "UNPARSEABLE_ENTRY", "CAALookup",
    "ExpectedIssuance", "IssuedCertificate", "Monitor", "MonitorEvent", "Watch", "parse_certificate",
]

UNEXPECTED_ISSUANCE = "unexpected_issuance"
CAA_VIOLATION = "caa_violation"
UNEXPECTED_ISSUER = "unexpected_issuer"
UNPARSEABLE_ENTRY = "unparseable_entry"

CAALookup = Callable[[str], Collection[str] | None]
"""name -> issuer domains its CAA allows (issuewild for a `*.` name), None when no CAA applies; an empty
collection forbids all issuance. The callable does the DNS tree climbing."""

# A fixed AlgorithmIdentifier (Ed25519) and an empty BIT STRING: enough to wrap a TBSCertificate into
# something the X.509 parser accepts; the signature is never checked.
_DUMMY_SIG = b"\x30\x05\x06\x03\x2b\x65\x70" + b"\x03\x01\x00"


@dataclass(frozen=True)
class Watch:
    domain: str  # lower case, no trailing dot
    include_subdomains: bool = True
    issuers: frozenset[str] = frozenset()  # allowed issuer DNs (RFC 4514); empty: any issuer

    def covers(self, name: str) -> bool:
        name = name.lower().rstrip(".")
        return name == self.domain or (self.include_subdomains and name.endswith("." + self.domain))


@dataclass(frozen=True)
class ExpectedIssuance:
    name: str
    spki_sha256: bytes = b""  # empty: any key


@dataclass(frozen=True)
class MonitorEvent:
    kind: str
    index: int
    leaf_hash: bytes
    name: str = ""
    issuer: str = ""
    detail: str = ""

    def to_json(self) -> dict[str, object]:
        return {"kind": self.kind, "index": self.index, "leaf_hash": base64.b64encode(self.leaf_hash).decode(),
                "name": self.name, "issuer": self.issuer, "detail": self.detail}


@dataclass(frozen=True)
class IssuedCertificate:
    names: tuple[str, ...]
    issuer: str
    spki_sha256: bytes
    precert: bool


def _der_length(n: int) -> bytes:
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def parse_certificate(der: bytes, *, precert: bool = False) -> IssuedCertificate:
    """Names (SAN dNSNames, else the CN), issuer DN and key hash; raises ValueError when unparseable."""
    if precert:
        body = der + _DUMMY_SIG
        der = b"\x30" + _der_length(len(body)) + body
    cert = x509.load_der_x509_certificate(der)
    names = [n.lower().rstrip(".") for n in cax509.dns_names(cert)]
    if not names:
        names = [str(a.value).lower() for a in cert.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME)]
    spki = cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return IssuedCertificate(tuple(dict.fromkeys(names)), cert.issuer.rfc4514_string(),
                             hashlib.sha256(spki).digest(), precert)


class Monitor:
    def __init__(
        self,
        watches: Iterable[Watch],
        expected: Iterable[ExpectedIssuance] = (),
        *,
        caa_lookup: CAALookup | None = None,
        issuer_caa_domains: Mapping[str, str] | None = None,
    ) -> None:
        """`issuer_caa_domains` maps an issuer DN to the domain it uses in CAA `issue` records."""
        self.watches = tuple(watches)
        self._expected: set[tuple[str, bytes]] = set()
        for e in expected:
            self.expect(e.name, e.spki_sha256)
        self.caa_lookup = caa_lookup
        self.issuer_caa_domains = dict(issuer_caa_domains or {})
        self.next_index = 0
        self.processed = 0
        self.events: list[MonitorEvent] = []

    def expect(self, name: str, spki_sha256: bytes = b"") -> None:
        self._expected.add((name.lower().rstrip("."), spki_sha256))

    def _is_expected(self, name: str, spki_sha256: bytes) -> bool:
        return (name, spki_sha256) in self._expected or (name, b"") in self._expected

    def process(self, index: int, leaf_input: bytes) -> list[MonitorEvent]:
        """Checks one logged entry; returns (and queues on the stream) the alerts it raises."""
        self.processed += 1
        lh = leaf_hash(leaf_input)
        out: list[MonitorEvent] = []
        try:
            entry = parse_merkle_tree_leaf(leaf_input).entry
            if isinstance(entry, X509Entry):
                cert = parse_certificate(entry.certificate)
            else:
                assert isinstance(entry, PrecertEntry)
                cert = parse_certificate(entry.tbs_certificate, precert=True)
        except (EntryError, ValueError) as exc:
            out.append(MonitorEvent(UNPARSEABLE_ENTRY, index, lh, detail=str(exc)[:200]))
            self.events.extend(out)
            return out
        for name in cert.names:
            watch = next((w for w in self.watches if w.covers(name)), None)
            if watch is None:
                continue
            if not self._is_expected(name, cert.spki_sha256):
                out.append(MonitorEvent(UNEXPECTED_ISSUANCE, index, lh, name, cert.issuer,
                                        f"no expected issuance of {name} for key "
                                        f"{cert.spki_sha256.hex()[:16]}"))
            if watch.issuers and cert.issuer not in watch.issuers:
                out.append(MonitorEvent(UNEXPECTED_ISSUER, index, lh, name, cert.issuer,
                                        f"issuer is not one allowed for {watch.domain}"))
            if self.caa_lookup is not None:
                allowed = self.caa_lookup(name)
                ca_domain = self.issuer_caa_domains.get(cert.issuer)
                if allowed is not None and (ca_domain is None or ca_domain not in allowed):
                    out.append(MonitorEvent(CAA_VIOLATION, index, lh, name, cert.issuer,
                                            f"CAA allows {sorted(allowed) or 'no issuer'}, issuer's CAA domain "
                                            f"is {ca_domain or 'unknown'}"))
        self.events.extend(out)
        return out

    def poll(self, get_entries: Callable[[int, int], list[bytes]], tree_size: int) -> list[MonitorEvent]:
        """Reads [next_index, tree_size) through an RFC 6962 get-entries callable (end inclusive, may
        return fewer than asked) and processes them in order."""
        out: list[MonitorEvent] = []
        while self.next_index < tree_size:
            batch = get_entries(self.next_index, tree_size - 1)
            if not batch:
                break
            for leaf in batch:
                out.extend(self.process(self.next_index, leaf))
                self.next_index += 1
        return out

    def drain(self) -> list[MonitorEvent]:
        events, self.events = self.events, []
        return events

