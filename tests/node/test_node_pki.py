"""Revocation served by a real cluster: a certificate issued through FROST and revoked through the API reads
revoked in OCSP on every node (`openssl ocsp -url`, POST and GET) and is listed in the CRL each node serves;
all nodes serve identical, threshold-signed bytes, and openssl verifies them against the CA chain."""

from __future__ import annotations

import base64
import shutil
import subprocess
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp
from cryptography.x509.oid import AuthorityInformationAccessOID as AIA
from node_harness import Cluster, http
from test_node_cluster import _issue

OPENSSL = shutil.which("openssl")


def _fetch(url: str, data: bytes | None = None, ctype: str = "") -> tuple[int, str, bytes]:
    req = urllib.request.Request(url, data=data, method="POST" if data is not None else "GET",
                                 headers={"content-type": ctype} if ctype else {})
    try:
        with urllib.request.urlopen(req, timeout=10) as resp:
            return resp.status, resp.headers.get("content-type", ""), resp.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("content-type", ""), exc.read()


def _ocsp(api: str, request_der: bytes) -> xocsp.OCSPResponse:
    code, ctype, body = _fetch(api + "/ocsp", request_der, "application/ocsp-request")
    assert code == 200 and ctype == "application/ocsp-response", (code, body[:200])
    return xocsp.load_der_ocsp_response(body)


def _status(resp: xocsp.OCSPResponse) -> str:
    if resp.response_status != xocsp.OCSPResponseStatus.SUCCESSFUL:
        return resp.response_status.name
    return resp.certificate_status.name


@pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")
def test_revocation_reaches_ocsp_and_crl_on_every_node(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=4, threshold=3, timeout="1s")
    for cfg in c.configs:  # sign CRLs and OCSP responses on a fast cadence
        text = cfg.read_text().replace('rotation_period = "24h"\n', 'rotation_period = "24h"\n'
                                       'crl_interval = "300ms"\nocsp_interval = "300ms"\nocsp_batch = 16\n')
        cfg.write_text(text)
    with c:
        api = c.apis
        code, res = c.create_zone("example.org.")
        assert code == 200, res
        for i in range(4):
            c.wait_for(lambda i=i: "example.org." in c.status(i)["dns"]["zones"], what=f"zone on node{i}")
        issued = _issue(c, api[1], "www.example.org")
        cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
        inter = x509.load_pem_x509_certificate((tmp_path / "intermediate.pem").read_bytes())
        request = xocsp.OCSPRequestBuilder().add_certificate(cert, inter, hashes.SHA1()).build()
        req_der = request.public_bytes(serialization.Encoding.DER)

        # the new certificate gets a FROST-signed "good" response on every node
        for i in range(4):
            c.wait_for(lambda i=i: _status(_ocsp(api[i], req_der)) == "GOOD", timeout=20, what=f"good on node{i}")

        code, res = http("POST", api[1] + "/api/v1/cert/revoke", {"serial": issued["serial"],
                                                                   "reason": "keyCompromise"})
        assert (code, res) == (200, {"status": "revoked", "serial": issued["serial"]}), res

        # OCSP on every node: revoked, never "good" again, and the same bytes everywhere
        for i in range(4):
            c.wait_for(lambda i=i: _status(_ocsp(api[i], req_der)) == "REVOKED", timeout=20,
                       what=f"revoked on node{i}")
        bodies = {_fetch(a + "/ocsp", req_der, "application/ocsp-request")[2] for a in api}
        assert len(bodies) == 1
        resp = xocsp.load_der_ocsp_response(bodies.pop())
        assert resp.revocation_reason == x509.ReasonFlags.key_compromise
        assert resp.serial_number == cert.serial_number and resp.responder_name == inter.subject
        # RFC 6960 A.1 GET: base64 of the DER request in the path, URL-encoded
        path = urllib.parse.quote(base64.b64encode(req_der).decode(), safe="")
        code, _, body = _fetch(api[3] + "/ocsp/" + path)
        assert code == 200 and _status(xocsp.load_der_ocsp_response(body)) == "REVOKED"
        code, _, body = _fetch(api[2] + "/ocsp", b"junk", "application/ocsp-request")
        assert xocsp.load_der_ocsp_response(body).response_status == xocsp.OCSPResponseStatus.MALFORMED_REQUEST

        leaf = tmp_path / "leaf.pem"
        leaf.write_text(issued["certificate"])
        (tmp_path / "ca.pem").write_bytes((tmp_path / "root.pem").read_bytes() + (tmp_path / "intermediate.pem")
                                          .read_bytes())
        for i in range(4):
            out = subprocess.run(["openssl", "ocsp", "-url", api[i] + "/ocsp", "-issuer",
                                  str(tmp_path / "intermediate.pem"), "-cert", str(leaf), "-CAfile",
                                  str(tmp_path / "root.pem"), "-no_nonce"], capture_output=True, text=True,
                                 timeout=20, check=False)
            text = out.stdout + out.stderr
            assert out.returncode == 0 and "Response verify OK" in text and "leaf.pem: revoked" in text, (i, text)
            assert "Reason: keyCompromise" in text, text

        # the CRL each node serves lists the serial, is the same on every node and verifies
        def crl_lists(i: int) -> bool:
            code, _, body = _fetch(api[i] + "/crl/issuing.crl")
            return code == 200 and any(r.serial_number == cert.serial_number
                                       for r in x509.load_der_x509_crl(body))

        for i in range(4):
            c.wait_for(lambda i=i: crl_lists(i), timeout=20, what=f"CRL on node{i} lists the serial")
        crls = {_fetch(a + "/crl/issuing.crl")[2] for a in api}
        assert len(crls) == 1, "nodes serve different CRLs"
        crl_der = crls.pop()
        assert _fetch(api[0] + "/crl/issuing.crl")[1] == "application/pkix-crl"
        (tmp_path / "crl.der").write_bytes(crl_der)
        out = subprocess.run(["openssl", "crl", "-inform", "DER", "-in", str(tmp_path / "crl.der"), "-noout",
                              "-verify", "-CAfile", str(tmp_path / "ca.pem")], capture_output=True, text=True,
                             check=False)
        assert out.returncode == 0 and "verify OK" in out.stdout + out.stderr, out.stdout + out.stderr
        (tmp_path / "crl.pem").write_bytes(x509.load_der_x509_crl(crl_der).public_bytes(serialization.Encoding.PEM))
        out = subprocess.run(["openssl", "verify", "-crl_check", "-CRLfile", str(tmp_path / "crl.pem"), "-CAfile",
                              str(tmp_path / "root.pem"), "-untrusted", str(tmp_path / "intermediate.pem"),
                              str(leaf)], capture_output=True, text=True, check=False)
        assert out.returncode != 0 and "revoked" in out.stdout + out.stderr, out.stdout + out.stderr
        # the root's CRL (signed with the root shares) lists no issuing CA: none was revoked
        c.wait_for(lambda: _fetch(api[0] + "/crl/root.crl")[0] == 200, what="root CRL")
        assert len(x509.load_der_x509_crl(_fetch(api[0] + "/crl/root.crl")[2])) == 0

        # the certificate's own pointers name every node, so they still answer with node0 down
        (dp,) = cert.extensions.get_extension_for_class(x509.CRLDistributionPoints).value
        aia = cert.extensions.get_extension_for_class(x509.AuthorityInformationAccess).value
        assert dp.full_name is not None
        crl_urls = [str(n.value) for n in dp.full_name]
        ocsp_urls = [str(d.access_location.value) for d in aia if d.access_method == AIA.OCSP]
        issuer_urls = [str(d.access_location.value) for d in aia if d.access_method == AIA.CA_ISSUERS]
        assert crl_urls == [a + "/crl/issuing.crl" for a in api] and ocsp_urls == [a + "/ocsp" for a in api]
        c.kill(0)
        for url in crl_urls[1:]:
            assert _fetch(url)[2] == crl_der
        for url in ocsp_urls[1:]:
            code, _, body = _fetch(url, req_der, "application/ocsp-request")
            assert code == 200 and _status(xocsp.load_der_ocsp_response(body)) == "REVOKED"
        for url in issuer_urls[1:]:
            assert _fetch(url)[2] == inter.public_bytes(serialization.Encoding.DER)
        with pytest.raises(urllib.error.URLError):
            _fetch(crl_urls[0])  # node0 is down: the first pointer no longer answers
