"""RFC 6962 section 3.1 precertificates and section 3.3 embedded SCTs, at the DER level.

A log records a precertificate as its TBSCertificate with the poison extension removed; a TLS client
rebuilds the same bytes from the final certificate by removing the SignedCertificateTimestampList
extension instead. cryptography does the second (`Certificate.tbs_precertificate_bytes`) but not the
first, so the poison is removed here: the TBSCertificate is walked element by element and re-framed
with the X.690 helpers the CA already uses, every other byte kept as it was.
"""

from __future__ import annotations

from collections.abc import Sequence

from trustchain.ca import der
from trustchain.ct.entry import opaque
from trustchain.errors import TrustChainError

__all__ = [
    "POISON_OID", "SCT_LIST_OID", "PrecertError", "replace_extension", "sct_list", "sct_list_extension",
    "strip_extension", "with_scts", "without_poison",
]

POISON_OID = "1.3.6.1.4.1.11129.2.4.3"
SCT_LIST_OID = "1.3.6.1.4.1.11129.2.4.2"


class PrecertError(TrustChainError, ValueError):
    """A TBSCertificate is not shaped as X.509 requires, or lacks the extension to remove."""


def _oid_der(dotted: str) -> bytes:
    arcs = [int(a) for a in dotted.split(".")]
    body = bytearray([40 * arcs[0] + arcs[1]])
    for arc in arcs[2:]:
        chunk = [arc & 0x7F]
        arc >>= 7
        while arc:
            chunk.append(0x80 | (arc & 0x7F))
            arc >>= 7
        body += bytes(reversed(chunk))
    return der.tlv(0x06, bytes(body))


def _elements(content: bytes) -> list[tuple[int, bytes, bytes]]:
    """(tag, content, whole TLV) of each element of a constructed value."""
    out, pos = [], 0
    while pos < len(content):
        tag, inner, end = der.read_tlv(content, pos)
        out.append((tag, inner, content[pos:end]))
        pos = end
    return out


def strip_extension(tbs: bytes, oid: str) -> bytes:
    """`tbs` without the extension `oid` (which must be present exactly once)."""
    return replace_extension(tbs, oid, b"")


def replace_extension(tbs: bytes, oid: str, replacement: bytes) -> bytes:
    """`tbs` with the extension `oid` (present exactly once) replaced, in place, by the DER Extension
    `replacement`, or removed if that is empty."""
    try:
        tag, content, end = der.read_tlv(tbs)
        if tag != 0x30 or end != len(tbs):
            raise PrecertError("TBSCertificate is not one DER SEQUENCE")
        fields = _elements(content)
        if not fields or fields[-1][0] != 0xA3:
            raise PrecertError("TBSCertificate has no extensions")
        ext_tag, ext_list, ext_end = der.read_tlv(fields[-1][1])
        if ext_tag != 0x30 or ext_end != len(fields[-1][1]):
            raise PrecertError("extensions are not one DER SEQUENCE")
        target = _oid_der(oid)
        extensions = _elements(ext_list)
        matches = [i for i, (_, inner, _) in enumerate(extensions) if inner.startswith(target)]
    except ValueError as exc:
        if isinstance(exc, PrecertError):
            raise
        raise PrecertError(f"TBSCertificate is not valid DER ({exc})") from None
    if len(matches) != 1:
        raise PrecertError(f"TBSCertificate has {len(matches)} extensions {oid}, expected one")
    kept = [replacement if i == matches[0] else whole for i, (_, _, whole) in enumerate(extensions)]
    kept = [k for k in kept if k]
    rest = [whole for _, _, whole in fields[:-1]]
    if kept:
        rest.append(der.tlv(0xA3, der.sequence(*kept)))
    return der.sequence(*rest)


def without_poison(tbs: bytes) -> bytes:
    """The TBSCertificate a log records for a precertificate (RFC 6962 section 3.2)."""
    return strip_extension(tbs, POISON_OID)


def sct_list(scts: Sequence[bytes]) -> bytes:
    """SignedCertificateTimestampList: `SerializedSCT sct_list<1..2^16-1>`, each SCT `opaque<1..2^16-1>`."""
    if not scts:
        raise PrecertError("an SCT list holds at least one SCT")
    return opaque(b"".join(opaque(s, 2) for s in scts), 2)


def sct_list_extension(scts: Sequence[bytes]) -> bytes:
    """The non-critical SignedCertificateTimestampList Extension (section 3.3): its extnValue is an OCTET
    STRING holding a DER OCTET STRING around the TLS-encoded list."""
    return der.sequence(_oid_der(SCT_LIST_OID), der.tlv(0x04, der.tlv(0x04, sct_list(scts))))


def with_scts(precert_tbs: bytes, scts: Sequence[bytes]) -> bytes:
    """The final certificate's TBSCertificate: the precertificate's with the SCT list where the poison
    was, so removing either extension gives the same bytes (the entry the SCTs signed)."""
    return replace_extension(precert_tbs, POISON_OID, sct_list_extension(scts))
