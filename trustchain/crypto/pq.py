"""Post-quantum signatures behind the ``Signer``/``Verifier`` interface, and ML-DSA certificates.

Why: the FROST CA key is Ed25519 (threshold Schnorr has no standard lattice equivalent yet), so the
post-quantum path is (a) ML-DSA-65/87 (FIPS 204) certificates and keys through cryptography, which
ships them since 47, and (b) FN-DSA/Falcon-1024 for compact-ish signatures where ML-DSA's 3.3-4.6 kB
are too large.

FN-DSA backends: liboqs-python (``oqs``, Falcon-1024 round-3 encoding) when it imports, otherwise
``py-fn-dsa`` (Pornin's c-fn-dsa, a wheel with no system library). The two use different message
encodings, so ``algorithm`` names the backend and a verifier only accepts its own.

Determinism: ML-DSA signing in cryptography is hedged-randomised and FN-DSA draws randomness; keys
are derived from seeds so the simulator can reproduce them, and ``FNDSA1024Signer`` signs
deterministically from a seeded ``rand_bytes`` when one is given (c-fn-dsa backend only). For
replayable traces record what was signed and whether it verified.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import importlib
from collections.abc import Callable, Sequence
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.mldsa import (
    MLDSA65PrivateKey,
    MLDSA65PublicKey,
    MLDSA87PrivateKey,
    MLDSA87PublicKey,
)
from cryptography.x509.oid import NameOID

__all__ = [
    "FNDSA_LOGN_1024", "MLDSA_LEVELS", "FNDSA1024Signer", "FNDSA1024Verifier", "MLDSAPrivateKey", "MLDSASigner",
    "MLDSAVerifier", "RandBytes", "fndsa_backend", "mldsa_certificate", "simple_name",
]

RandBytes = Callable[[int], bytes]

MLDSA_LEVELS = (65, 87)
FNDSA_LOGN_1024 = 10


def _optional(module: str) -> Any:
    try:
        return importlib.import_module(module)
    except ImportError:
        return None


def fndsa_backend() -> str | None:
    """ "liboqs" or "c-fn-dsa" (whichever is importable, liboqs first), or None."""
    oqs = _optional("oqs")
    if oqs is not None and "Falcon-1024" in oqs.get_enabled_sig_mechanisms():
        return "liboqs"
    return "c-fn-dsa" if _optional("py_fn_dsa") is not None else None


# --- ML-DSA -------------------------------------------------------------------------------------


class MLDSASigner:
    """ML-DSA-65 or -87 from a 32-byte seed (FIPS 204 key generation is deterministic in the seed)."""

    def __init__(self, seed: bytes, level: int = 65) -> None:
        if level not in MLDSA_LEVELS:
            raise ValueError(f"ML-DSA level must be one of {MLDSA_LEVELS}")
        if len(seed) != 32:
            raise ValueError("ML-DSA seed must be 32 bytes")
        self.algorithm = f"ml-dsa-{level}"
        self.private_key: MLDSA65PrivateKey | MLDSA87PrivateKey = (
            MLDSA65PrivateKey.from_seed_bytes(seed) if level == 65 else MLDSA87PrivateKey.from_seed_bytes(seed)
        )
        self._public = self.private_key.public_key().public_bytes_raw()

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        return self.private_key.sign(message)


class MLDSAVerifier:
    def __init__(self, level: int = 65) -> None:
        if level not in MLDSA_LEVELS:
            raise ValueError(f"ML-DSA level must be one of {MLDSA_LEVELS}")
        self.level = level
        self.algorithm = f"ml-dsa-{level}"

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        try:
            if self.level == 65:
                MLDSA65PublicKey.from_public_bytes(public_key).verify(signature, message)
            else:
                MLDSA87PublicKey.from_public_bytes(public_key).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True


MLDSAPrivateKey = MLDSA65PrivateKey | MLDSA87PrivateKey


def mldsa_certificate(
    subject: x509.Name,
    subject_key: MLDSA65PublicKey | MLDSA87PublicKey,
    issuer: x509.Name,
    issuer_key: MLDSAPrivateKey,
    serial: int,
    not_before: dt.datetime,
    lifetime: dt.timedelta,
    *,
    ca: bool,
    dns_names: Sequence[str] = (),
) -> x509.Certificate:
    """An X.509 certificate signed with ML-DSA (id-ml-dsa-65/87, RFC 9881 profile: no parameters).

    Single-key: for post-quantum trust anchors and leaves beside the Ed25519 threshold hierarchy."""
    start = not_before.astimezone(dt.UTC).replace(microsecond=0)
    usage = x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=ca,
        crl_sign=ca,
        encipher_only=False,
        decipher_only=False,
    )
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(subject_key)
        .serial_number(serial)
        .not_valid_before(start)
        .not_valid_after(start + lifetime - dt.timedelta(seconds=1))
        .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True)
        .add_extension(usage, critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(subject_key), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()), critical=False)
    )
    if dns_names:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.DNSName(n) for n in dns_names]), critical=not subject
        )
    return builder.sign(issuer_key, None)


def simple_name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


# --- FN-DSA / Falcon-1024 -------------------------------------------------------------------------


class FNDSA1024Signer:
    """Falcon-1024 / FN-DSA-1024. ``seed`` fixes the key (c-fn-dsa backend; liboqs cannot seed keygen,
    so with liboqs the key is fresh and ``seed`` is ignored); ``rand_bytes`` makes signing replayable."""

    def __init__(
        self, seed: bytes | None = None, rand_bytes: RandBytes | None = None, backend: str | None = None
    ) -> None:
        self.backend = backend or fndsa_backend()
        if self.backend is None:
            raise RuntimeError("no FN-DSA backend: pip install py-fn-dsa (or liboqs-python)")
        self.algorithm = f"fn-dsa-1024/{self.backend}"
        self._rand = rand_bytes
        if self.backend == "liboqs":
            oqs = importlib.import_module("oqs")
            self._oqs = oqs.Signature("Falcon-1024")
            self._public = bytes(self._oqs.generate_keypair())
            return
        fn = importlib.import_module("py_fn_dsa")
        self._fn = fn
        if seed is None:
            vk, sk = fn.keygen(FNDSA_LOGN_1024)
            self._sk, self._public = bytes(sk.key_data), bytes(vk.key_data)
        else:
            sk_buf = fn.ffi.new(f"unsigned char[{fn._calc_sign_key_size(FNDSA_LOGN_1024)}]")
            vk_buf = fn.ffi.new(f"unsigned char[{fn._calc_vrfy_key_size(FNDSA_LOGN_1024)}]")
            fn.lib.fndsa_keygen_seeded(FNDSA_LOGN_1024, seed, len(seed), sk_buf, vk_buf)
            self._sk, self._public = bytes(fn.ffi.buffer(sk_buf)), bytes(fn.ffi.buffer(vk_buf))

    @property
    def public_key(self) -> bytes:
        return self._public

    def sign(self, message: bytes) -> bytes:
        if self.backend == "liboqs":
            return bytes(self._oqs.sign(message))
        fn = self._fn
        if self._rand is None:
            return bytes(fn.sign(fn.SigningKey(FNDSA_LOGN_1024, self._sk), message))
        seed = hashlib.sha256(self._rand(32) + message).digest()
        max_len = fn._calc_signature_size(FNDSA_LOGN_1024)
        sig = fn.ffi.new(f"unsigned char[{max_len}]")
        n = fn.lib.fndsa_sign_seeded(
            self._sk, len(self._sk), fn.ffi.NULL, 0, b"", message, len(message), seed, len(seed), sig, max_len
        )
        if n == 0:
            raise RuntimeError("FN-DSA signing failed")
        return bytes(fn.ffi.buffer(sig, n))


class FNDSA1024Verifier:
    def __init__(self, backend: str | None = None) -> None:
        self.backend = backend or fndsa_backend()
        if self.backend is None:
            raise RuntimeError("no FN-DSA backend: pip install py-fn-dsa (or liboqs-python)")
        self.algorithm = f"fn-dsa-1024/{self.backend}"

    def verify(self, public_key: bytes, message: bytes, signature: bytes) -> bool:
        if self.backend == "liboqs":
            oqs = importlib.import_module("oqs")
            with oqs.Signature("Falcon-1024") as v:
                return bool(v.verify(message, signature, public_key))
        fn = importlib.import_module("py_fn_dsa")
        try:
            return bool(fn.verify(fn.VerifyKey(FNDSA_LOGN_1024, public_key), signature, message))
        except (ValueError, TypeError):
            return False
