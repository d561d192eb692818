"""ACME's JSON Web Signatures (RFC 8555 section 6.2, RFC 7515 flattened JSON), verified with jwcrypto.

Every replica runs these checks on the client's own bytes inside the ordered execution: the JWS is
what gets ordered, so no node can make a request in an account's name. Accepted account keys are the
replicated account keys (`trustchain.accounts`): RS256, ES256 and EdDSA (Ed25519). A certificate's own
key may also sign a revocation (ES384 too, for P-384 certificate keys).

Nonces (`issue_nonce`) embed their issuing time, so that a nonce made by any node is judged by every
replica the same way: accepted within `NONCE_LIFETIME_US` of it and, recorded in replicated state, once.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass
from typing import Any, cast
from urllib.parse import urlsplit

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat, load_der_public_key
from jwcrypto import common as jwcommon
from jwcrypto import jwk as jwcjwk
from jwcrypto import jws as jwcjws

from trustchain.accounts.keys import ED25519, ES256, RS256, AccountKey, AccountKeyError, rsa_account_key
from trustchain.acme import problems
from trustchain.acme.problems import Problem, problem

__all__ = [
    "ACCOUNT_ALGORITHMS",
    "MAX_JWS_BYTES",
    "NONCE_LIFETIME_US",
    "NONCE_SKEW_US",
    "ParsedJWS",
    "account_key",
    "b64decode",
    "b64encode",
    "issue_nonce",
    "jwk_of",
    "key_authorization",
    "nonce_time_us",
    "parse",
    "public_key_of",
    "thumbprint",
    "url_path",
    "verify",
]

MAX_JWS_BYTES = 64 * 1024  # a finalize with an RSA-4096 CSR is about 3 KiB
NONCE_RANDOM = 16
NONCE_LIFETIME_US = 10 * 60 * 1_000_000  # a nonce is accepted this long after it was issued
NONCE_SKEW_US = 60 * 1_000_000  # and this far ahead of consensus time (node clocks differ a little)
#: JWS alg -> account key algorithm
ACCOUNT_ALGORITHMS = {"RS256": RS256, "ES256": ES256, "EdDSA": ED25519}
_CERT_KEY_ALGORITHMS = ("RS256", "ES256", "ES384", "EdDSA")
_B64URL = re.compile(r"[A-Za-z0-9_-]*")
_HEADER_FIELDS = frozenset({"alg", "nonce", "url", "kid", "jwk"})


def b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def b64decode(text: str) -> bytes | None:
    """base64url without padding (RFC 7515 section 2); None if it is not."""
    if not isinstance(text, str) or len(text) % 4 == 1 or not _B64URL.fullmatch(text):
        return None
    try:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
    except (binascii.Error, ValueError):
        return None


def issue_nonce(now_us: int, random: bytes) -> str:
    """A Replay-Nonce: issuing time (8 bytes) and `NONCE_RANDOM` random bytes, base64url."""
    assert len(random) == NONCE_RANDOM and 0 <= now_us < 1 << 64
    return b64encode(now_us.to_bytes(8, "big") + random)


def nonce_time_us(nonce: bytes) -> int | None:
    return int.from_bytes(nonce[:8], "big") if len(nonce) == 8 + NONCE_RANDOM else None


@dataclass(frozen=True)
class ParsedJWS:
    """A structurally valid ACME JWS, not yet verified. Exactly one of `kid` / `jwk` is set."""

    raw: str
    alg: str
    nonce: bytes
    url: str
    kid: str
    jwk: dict[str, Any] | None
    payload: bytes

    @property
    def url_path(self) -> str:
        return url_path(self.url)

    @property
    def post_as_get(self) -> bool:
        return self.payload == b""

    def json_payload(self) -> dict[str, Any] | Problem:
        try:
            doc = json.loads(self.payload)
        except (UnicodeDecodeError, ValueError, RecursionError):
            return problem(problems.MALFORMED, "payload: not valid JSON")
        if not isinstance(doc, dict):
            return problem(problems.MALFORMED, "payload: must be a JSON object")
        return doc


def url_path(url: str) -> str:
    """The path of an absolute URL (replicas compare paths: every node serves every resource)."""
    try:
        return urlsplit(url).path
    except ValueError:
        return ""


def parse(raw: bytes, *, inner: bool = False) -> ParsedJWS | Problem:
    """The JWS in `raw` (flattened JSON serialization), its protected header checked; `inner` is the
    key-change inner JWS, which carries a `jwk` and no nonce."""
    if len(raw) > MAX_JWS_BYTES:
        return problem(problems.MALFORMED, f"body: larger than {MAX_JWS_BYTES} bytes")
    try:
        doc = json.loads(raw)
        text = raw.decode()
    except (UnicodeDecodeError, ValueError, RecursionError):
        return problem(problems.MALFORMED, "body: not a JSON object")
    if not isinstance(doc, dict) or set(doc) != {"protected", "payload", "signature"}:
        return problem(problems.MALFORMED, "body: a JWS in flattened JSON with exactly protected, payload, signature")
    if not all(isinstance(doc[k], str) for k in doc):
        return problem(problems.MALFORMED, "body: protected, payload and signature must be strings")
    header_bytes, payload = b64decode(doc["protected"]), b64decode(doc["payload"])
    if header_bytes is None or payload is None or b64decode(doc["signature"]) is None:
        return problem(problems.MALFORMED, "body: protected, payload and signature must be base64url")
    try:
        header = json.loads(header_bytes)
    except (UnicodeDecodeError, ValueError, RecursionError):
        return problem(problems.MALFORMED, "protected: not a JSON object")
    if not isinstance(header, dict):
        return problem(problems.MALFORMED, "protected: not a JSON object")
    return _header(text, header, payload, inner)


def _header(text: str, header: dict[str, Any], payload: bytes, inner: bool) -> ParsedJWS | Problem:
    extra = set(header) - _HEADER_FIELDS
    if extra:  # "crit", "b64" and friends change how the signature is computed: refuse them
        return problem(problems.MALFORMED, f"protected: unsupported header field {sorted(extra)[0][:32]!r}")
    alg, url = header.get("alg"), header.get("url")
    if not isinstance(alg, str) or alg not in (*ACCOUNT_ALGORITHMS, *_CERT_KEY_ALGORITHMS):
        return problem(problems.BAD_SIGNATURE_ALGORITHM,
                       f"alg: must be one of {', '.join(ACCOUNT_ALGORITHMS)} (ES384 for certificate keys)")
    if not isinstance(url, str) or not url or len(url) > 2048:
        return problem(problems.MALFORMED, "url: required in the protected header")
    kid, key = header.get("kid"), header.get("jwk")
    if (kid is None) == (key is None):
        return problem(problems.MALFORMED, "protected: exactly one of kid and jwk is required")
    if kid is not None and (not isinstance(kid, str) or len(kid) > 2048):
        return problem(problems.MALFORMED, "kid: must be the account URL")
    if key is not None and not isinstance(key, dict):
        return problem(problems.MALFORMED, "jwk: must be a JSON Web Key object")
    nonce = b""
    if inner:
        if "nonce" in header or key is None:
            return problem(problems.MALFORMED, "inner JWS: must carry a jwk and no nonce")
    else:
        raw_nonce = header.get("nonce")
        decoded = b64decode(raw_nonce) if isinstance(raw_nonce, str) else None
        if decoded is None or nonce_time_us(decoded) is None:
            return problem(problems.BAD_NONCE, "nonce: missing or not a nonce this server issued")
        nonce = decoded
    return ParsedJWS(text, alg, nonce, url, kid or "", key, payload)


def account_key(jwk: dict[str, Any], alg: str) -> AccountKey | Problem:
    """The account key a JWK names, if it is one accounts may use with JWS algorithm `alg`."""
    public = public_key_of(jwk)
    if public is None:
        return problem(problems.BAD_PUBLIC_KEY, "jwk: not a public key")
    try:
        if isinstance(public, rsa.RSAPublicKey):
            key = rsa_account_key(public)
        elif isinstance(public, ec.EllipticCurvePublicKey) and isinstance(public.curve, ec.SECP256R1):
            key = AccountKey(ES256, public.public_bytes(Encoding.X962, PublicFormat.UncompressedPoint))
        elif isinstance(public, ed25519.Ed25519PublicKey):
            key = AccountKey(ED25519, public.public_bytes_raw())
        else:
            return problem(problems.BAD_PUBLIC_KEY, "jwk: account keys are RSA, P-256 or Ed25519")
    except AccountKeyError as exc:
        return problem(problems.BAD_PUBLIC_KEY, f"jwk: {exc}")
    if ACCOUNT_ALGORITHMS.get(alg) != key.algorithm:
        return problem(problems.BAD_SIGNATURE_ALGORITHM, f"alg: {alg} does not go with this key "
                       "(RS256 for RSA, ES256 for P-256, EdDSA for Ed25519)")
    return key


def public_key_of(jwk: dict[str, Any]) -> Any | None:
    """The `cryptography` public key of a JWK (None if it is not a valid public key)."""
    if "d" in jwk or not isinstance(jwk.get("kty"), str):
        return None  # a private key in a request is a client bug: never touch it
    try:
        return _jwk(jwk).get_op_key("verify")
    except (jwcommon.JWException, ValueError, TypeError, KeyError, AttributeError):
        return None


def _jwk(doc: dict[str, Any]) -> Any:
    return jwcjwk.JWK(**{k: v for k, v in doc.items() if k in ("kty", "crv", "x", "y", "n", "e")})


def jwk_of(key: AccountKey) -> dict[str, Any]:
    """The public JWK of an account key."""
    doc = json.loads(_jwcrypto_key(key).export_public())
    return {k: v for k, v in cast(dict[str, Any], doc).items() if k in ("kty", "crv", "x", "y", "n", "e")}


def _jwcrypto_key(key: AccountKey) -> Any:
    public: Any
    if key.algorithm == RS256:
        public = load_der_public_key(key.public)
    elif key.algorithm == ES256:
        public = ec.EllipticCurvePublicKey.from_encoded_point(ec.SECP256R1(), key.public)
    else:
        public = ed25519.Ed25519PublicKey.from_public_bytes(key.public)
    return jwcjwk.JWK.from_pyca(public)


def thumbprint(key: AccountKey) -> str:
    """The RFC 7638 SHA-256 thumbprint of an account key, base64url."""
    return cast(str, _jwcrypto_key(key).thumbprint(hashes.SHA256()))


def key_authorization(token: str, key: AccountKey) -> str:
    """RFC 8555 section 8.1: the token bound to the account key."""
    return f"{token}.{thumbprint(key)}"


def verify(jws: ParsedJWS, key: AccountKey | dict[str, Any]) -> bool:
    """Whether `jws` is signed by `key` (an account key, or a JWK such as a certificate's) with its
    declared algorithm. Never raises on bad input."""
    try:
        if isinstance(key, AccountKey):
            if ACCOUNT_ALGORITHMS.get(jws.alg) != key.algorithm:
                return False
            verifier = _jwcrypto_key(key)
        else:
            if jws.alg not in _CERT_KEY_ALGORITHMS:
                return False
            verifier = _jwk(key)
        obj = jwcjws.JWS()
        obj.allowed_algs = [jws.alg]
        obj.deserialize(jws.raw)
        obj.verify(verifier, alg=jws.alg)
    except (jwcommon.JWException, ValueError, TypeError, KeyError, AttributeError):
        return False
    return True
