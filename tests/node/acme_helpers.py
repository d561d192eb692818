"""What the ACME node tests share: an http-01 web server, a TrustChain client that signs its own writes (to
own a zone and publish dns-01 records) and an `acme`-library client; the loopback "public DNS" is
`signed_client.PublicDNS`."""

from __future__ import annotations

import base64
import hashlib
import http.server
import threading
import urllib.request
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509 import ocsp
from node_harness import Cluster
from node_harness import http as api_call
from signed_client import Client

from trustchain.accounts import Ed25519AccountSigner


class ChallengeServer:
    """A web server on loopback serving http-01 key authorizations from `tokens` (or a directory)."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.root: str | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                prefix = "/.well-known/acme-challenge/"
                token = self.path[len(prefix):] if self.path.startswith(prefix) else ""
                body = outer.lookup(token)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lookup(self, token: str) -> str | None:
        if not token or "/" in token or ".." in token:
            return None
        if token in self.tokens:
            return self.tokens[token]
        if self.root is not None:
            try:
                with open(f"{self.root}/.well-known/acme-challenge/{token}") as f:
                    return f.read()
            except OSError:
                return None
        return None


class ZoneOwner(Client):
    """A TrustChain account (Ed25519) that signs its own writes: it owns a zone and publishes records."""

    def __init__(self, cluster: Cluster, seed: bytes) -> None:
        super().__init__(cluster, Ed25519AccountSigner(hashlib.sha256(seed).digest()))


# ------------------------------------------------------------------ what every node says about a certificate


def _rfc9162_root(leaf_hash: bytes, index: int, size: int, path: list[bytes]) -> bytes | None:
    """The root an audit path leads to (RFC 9162 section 2.1.3.2), written from the RFC for the tests."""
    if index >= size:
        return None
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        if sn == 0:
            return None
        if fn % 2 == 1 or fn == sn:
            r = hashlib.sha256(b"\x01" + p + r).digest()
            if fn % 2 == 0:
                while fn % 2 == 0 and fn != 0:
                    fn, sn = fn >> 1, sn >> 1
        else:
            r = hashlib.sha256(b"\x01" + r + p).digest()
        fn, sn = fn >> 1, sn >> 1
    return r if sn == 0 else None


def logged_and_proven(api: str, cert_der: bytes) -> int | None:
    """The index of `cert_der`'s x509 entry in the node's RFC 6962 log, if its audit path leads to the
    root of the node's signed tree head; None if it is not there (or the proof does not check)."""
    code, sth = api_call("GET", api + "/ct/v1/get-sth")
    assert code == 200, sth
    size = sth["tree_size"]
    index = leaf = None
    for start in range(0, size, 256):
        code, page = api_call("GET", f"{api}/ct/v1/get-entries?start={start}&end={min(size, start + 256) - 1}")
        assert code == 200, page
        for i, entry in enumerate(page["entries"]):
            raw = base64.b64decode(entry["leaf_input"])
            # MerkleTreeLeaf: version, leaf type, timestamp, entry type 0 (x509_entry), ASN.1Cert <1..2^24-1>
            if raw[10:12] == b"\x00\x00" and raw[12:15] == len(cert_der).to_bytes(3, "big") \
                    and raw[15:15 + len(cert_der)] == cert_der:
                index, leaf = start + i, raw
    if index is None or leaf is None:
        return None
    leaf_hash = hashlib.sha256(b"\x00" + leaf).digest()
    query = base64.b64encode(leaf_hash).decode().replace("+", "%2B").replace("/", "%2F").replace("=", "%3D")
    code, proof = api_call("GET", f"{api}/ct/v1/get-proof-by-hash?hash={query}&tree_size={size}")
    assert code == 200, proof
    path = [base64.b64decode(p) for p in proof["audit_path"]]
    root = _rfc9162_root(leaf_hash, proof["leaf_index"], size, path)
    return index if root == base64.b64decode(sth["sha256_root_hash"]) else None


def ocsp_status(api: str, cert: x509.Certificate, issuer: x509.Certificate) -> ocsp.OCSPCertStatus | None:
    """The node's OCSP answer for `cert`, its signature checked under the issuer's key; None while the
    node answers anything but a successful response (tryLater before the first batch is signed)."""
    request = ocsp.OCSPRequestBuilder().add_certificate(cert, issuer, hashes.SHA1()).build()
    req = urllib.request.Request(api + "/ocsp", data=request.public_bytes(serialization.Encoding.DER),
                                 headers={"content-type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        answer = ocsp.load_der_ocsp_response(resp.read())
    if answer.response_status != ocsp.OCSPResponseStatus.SUCCESSFUL:
        return None
    key = issuer.public_key()
    assert isinstance(key, ed25519.Ed25519PublicKey)
    key.verify(answer.signature, answer.tbs_response_bytes)  # raises if the validators did not sign it
    assert answer.serial_number == cert.serial_number
    return answer.certificate_status
