"""The few DER encodings needed to wrap an externally signed TBSCertificate (X.690).

cryptography can only sign with keys it holds; the CA key exists only as FROST shares, so the outer
Certificate SEQUENCE is assembled here around cryptography's own TBS encoding."""

from __future__ import annotations

# AlgorithmIdentifier { id-Ed25519 (1.3.101.112) } with absent parameters (RFC 8410 section 3).
ED25519_ALGORITHM_IDENTIFIER = bytes.fromhex("300506032b6570")


def encode_length(n: int) -> bytes:
    assert n >= 0
    if n < 0x80:
        return bytes([n])
    body = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([0x80 | len(body)]) + body


def tlv(tag: int, content: bytes) -> bytes:
    return bytes([tag]) + encode_length(len(content)) + content


def sequence(*items: bytes) -> bytes:
    return tlv(0x30, b"".join(items))


def bit_string(data: bytes) -> bytes:
    """Octet-aligned BIT STRING: zero unused bits."""
    return tlv(0x03, b"\x00" + data)


def read_tlv(data: bytes, offset: int = 0) -> tuple[int, bytes, int]:
    """(tag, content, next offset) for one definite-length TLV; rejects what DER forbids."""
    if offset + 2 > len(data):
        raise ValueError("truncated DER")
    tag = data[offset]
    first = data[offset + 1]
    pos = offset + 2
    if first < 0x80:
        length = first
    else:
        n = first & 0x7F
        if n == 0 or n > 4 or pos + n > len(data):
            raise ValueError("unsupported DER length")
        length = int.from_bytes(data[pos : pos + n], "big")
        if length < 0x80 or data[pos] == 0:
            raise ValueError("non-minimal DER length")
        pos += n
    if pos + length > len(data):
        raise ValueError("truncated DER")
    return tag, data[pos : pos + length], pos + length
