"""ACME Renewal Information (RFC 9773): when a client should renew a certificate.

The certificate is named by its `certID`: base64url of its Authority Key Identifier's keyIdentifier,
a dot, base64url of its serial number's DER INTEGER content bytes. The suggested window is the last
third of the certificate's lifetime, less its last sixth, so a client renews well before expiry; a
revoked certificate is to be replaced at once (a window that has begun).
"""

from __future__ import annotations

from cryptography import x509

from trustchain.acme import jws as acmejws

__all__ = ["RETRY_AFTER_S", "cert_id", "parse_cert_id", "suggested_window"]

RETRY_AFTER_S = 6 * 3600


def _serial_content(serial: int) -> bytes:
    """The DER INTEGER content octets of a positive serial (a leading zero byte when the top bit is set)."""
    return serial.to_bytes(serial.bit_length() // 8 + 1, "big")


def cert_id(certificate: x509.Certificate) -> str | None:
    try:
        aki = certificate.extensions.get_extension_for_class(x509.AuthorityKeyIdentifier).value.key_identifier
    except x509.ExtensionNotFound:
        return None
    if aki is None:
        return None
    return f"{acmejws.b64encode(aki)}.{acmejws.b64encode(_serial_content(certificate.serial_number))}"


def parse_cert_id(text: str) -> tuple[bytes, int] | None:
    """(key identifier, serial) of a certID, or None if it is not one."""
    aki_text, dot, serial_text = text.partition(".")
    aki, serial = acmejws.b64decode(aki_text), acmejws.b64decode(serial_text)
    if not dot or not aki or not serial or len(serial) > 21 or serial[0] & 0x80:
        return None
    value = int.from_bytes(serial, "big")
    if value <= 0 or _serial_content(value) != serial:
        return None
    return aki, value


def suggested_window(not_before_us: int, not_after_us: int, revoked: bool, now_us: int) -> tuple[int, int]:
    """(start, end) in microseconds."""
    if revoked:
        return now_us - 3600 * 1_000_000, now_us
    lifetime = not_after_us - not_before_us
    return not_before_us + lifetime * 2 // 3, not_before_us + lifetime * 5 // 6
