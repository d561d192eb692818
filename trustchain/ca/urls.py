"""Where a CA's revocation and issuer documents live under a base URL: one layout for every server.

Why here: the node serves these paths (`reference_node/http_pki.py`, `http_api.py`) and both the node's
genesis (`python -m reference_node cluster`) and the command-line CA (`trustchain-cli ca init`) write
them into certificates, so a certificate's CRL, OCSP and issuer pointers work against any of them.
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["ISSUING_CRL", "ISSUING_ISSUER", "OCSP", "ROOT_CRL", "ROOT_ISSUER", "URL_KEYS", "pki_urls"]

OCSP = "/ocsp"
ROOT_CRL = "/crl/root.crl"
ISSUING_CRL = "/crl/issuing.crl"
ROOT_ISSUER = "/ca/root.der"
ISSUING_ISSUER = "/ca/intermediate.der"
_PATHS = {"ocsp": OCSP, "root_crl": ROOT_CRL, "issuing_crl": ISSUING_CRL, "root_issuer": ROOT_ISSUER,
          "issuing_issuer": ISSUING_ISSUER}
URL_KEYS = tuple(_PATHS)


def pki_urls(bases: Sequence[str]) -> dict[str, list[str]]:
    """Each document's URL under every base, in the bases' order (the first is the preferred one)."""
    assert bases, "at least one base URL"
    trimmed = [b.rstrip("/") for b in bases]
    return {key: [b + path for b in trimmed] for key, path in _PATHS.items()}
