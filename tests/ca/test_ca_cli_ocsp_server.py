"""`trustchain-cli ca ocsp --serve` as a separate process: fresh state per request, bounded, GET and POST."""

from __future__ import annotations

import base64
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp

from reference_node.cli import main
from trustchain.ca import der


@pytest.fixture(scope="module")
def ca_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("ocsp") / "ca"
    assert main(["ca", "init", "--dir", str(d)]) == 0
    return d


@pytest.fixture(scope="module")
def server(ca_dir: Path) -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "reference_node.cli", "ca", "ocsp", "--dir", str(ca_dir), "--serve",
                             "0"], env=os.environ.copy(), stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        m = re.search(r"http://127\.0\.0\.1:(\d+)/", line)
        assert m, line
        yield f"http://127.0.0.1:{m.group(1)}"
    finally:
        proc.terminate()
        proc.wait(timeout=30)


def request_for(ca_dir: Path, cert_path: Path) -> bytes:
    inter = x509.load_pem_x509_certificate((ca_dir / "intermediate.pem").read_bytes())
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    return xocsp.OCSPRequestBuilder().add_certificate(cert, inter, hashes.SHA1()).build().public_bytes(
        serialization.Encoding.DER)


def post(url: str, body: bytes) -> xocsp.OCSPResponse:
    req = urllib.request.Request(url + "/", data=body, headers={"Content-Type": "application/ocsp-request"})
    with urllib.request.urlopen(req, timeout=30) as r:
        return xocsp.load_der_ocsp_response(r.read())


def get(url: str, body: bytes) -> xocsp.OCSPResponse:
    path = urllib.parse.quote(base64.b64encode(body).decode(), safe="")
    with urllib.request.urlopen(f"{url}/{path}", timeout=30) as r:
        return xocsp.load_der_ocsp_response(r.read())


def raw(url: str, data: bytes, timeout: float = 10) -> bytes:
    host, port = url.removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=timeout) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    return b"".join(chunks)


def test_certificates_issued_and_revoked_after_start(ca_dir: Path, server: str, tmp_path: Path) -> None:
    cert = tmp_path / "late.pem"
    assert main(["ca", "issue", "--dir", str(ca_dir), "--name", "late.example.org", "--out", str(cert)]) == 0
    req = request_for(ca_dir, cert)
    assert post(server, req).certificate_status == xocsp.OCSPCertStatus.GOOD
    assert get(server, req).certificate_status == xocsp.OCSPCertStatus.GOOD  # RFC 6960 A.1
    serial = x509.load_pem_x509_certificate(cert.read_bytes()).serial_number
    assert main(["ca", "revoke", f"{serial:x}", "--reason", "keyCompromise", "--dir", str(ca_dir)]) == 0
    resp = post(server, req)
    assert resp.certificate_status == xocsp.OCSPCertStatus.REVOKED
    assert resp.revocation_reason == x509.ReasonFlags.key_compromise


def test_malformed_requests_get_clear_answers(ca_dir: Path, server: str) -> None:
    assert post(server, b"abc").response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST
    # OCSPRequest { TBSRequest { requestList: two copies of one Request (a CertID) } }
    one = der.read_tlv(der.read_tlv(der.read_tlv(request_for(ca_dir, ca_dir / "intermediate.pem"))[1])[1])[1]
    body = der.sequence(der.sequence(der.sequence(one + one)))
    assert len(body) < 8192
    assert post(server, body).response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST
    headers = b"POST / HTTP/1.1\r\nHost: x\r\nContent-Type: application/ocsp-request\r\n"
    assert raw(server, headers + b"Content-Length: -1\r\n\r\n").startswith(b"HTTP/1.0 400")
    assert raw(server, headers + b"Content-Length: 100000\r\n\r\n").startswith(b"HTTP/1.0 413")
    assert raw(server, headers + b"\r\n").startswith(b"HTTP/1.0 411")
    assert raw(server, b"GET /!!notbase64!! HTTP/1.1\r\nHost: x\r\n\r\n").startswith(b"HTTP/1.0 400")
    with pytest.raises(urllib.error.HTTPError) as exc:
        urllib.request.urlopen(urllib.request.Request(server + "/", data=b"x"), timeout=30)
    assert exc.value.code == 415


def test_a_stalled_client_does_not_block_others(ca_dir: Path, server: str, tmp_path: Path) -> None:
    cert = tmp_path / "busy.pem"
    assert main(["ca", "issue", "--dir", str(ca_dir), "--name", "busy.example.org", "--out", str(cert)]) == 0
    host, port = server.removeprefix("http://").split(":")
    stalled = []
    for _ in range(3):  # announce a body and never send it
        s = socket.create_connection((host, int(port)), timeout=30)
        s.sendall(b"POST / HTTP/1.1\r\nContent-Type: application/ocsp-request\r\nContent-Length: 100\r\n\r\n")
        stalled.append(s)
    try:
        assert post(server, request_for(ca_dir, cert)).certificate_status == xocsp.OCSPCertStatus.GOOD
        # the server gives up on a body that does not come: 400, connection closed
        stalled[0].settimeout(60)
        assert stalled[0].recv(100).startswith(b"HTTP/1.0 400")
    finally:
        for s in stalled:
            s.close()
