"""Against a real 4-validator cluster: serials drawn from the validators' committed randomness, and the root's
CRL and OCSP for the issuing CA, signed with the root key's FROST shares, through a quorum revocation.

The serial check recomputes the documented derivation with hashlib from what the node publishes about the
draw (each contributor's value and commitment), so it shows that two validators' 256-bit values, committed
before and revealed after the request, are what the 127-bit serial is made of. The root checks use openssl.
"""

from __future__ import annotations

import base64
import hashlib
import json
import shutil
import struct
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp
from node_harness import Cluster, fetch, http, issued_from
from signed_client import request
from test_node_cluster import _csr, _issue, _prove

from trustchain.ca import commands as cacommands

OPENSSL = shutil.which("openssl")
pytestmark = pytest.mark.skipif(OPENSSL is None, reason="openssl binary not installed")


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("root-serials"), nodes=4, threshold=3, timeout="1s", dns_listeners=False)
    for cfg in c.configs:  # sign CRLs and OCSP responses on a fast cadence
        cfg.write_text(cfg.read_text().replace('rotation_period = "24h"\n', 'rotation_period = "24h"\n'
                                               'crl_interval = "300ms"\nocsp_interval = "300ms"\n'))
    with c:
        code, res = c.create_zone("example.org.")
        assert code == 200, res
        for i in range(4):
            c.wait_for(lambda i=i: "example.org." in c.status(i)["dns"]["zones"], what=f"zone on node{i}")
        yield c


def _openssl(*args: str) -> tuple[int, str]:
    out = subprocess.run(["openssl", *args], capture_output=True, text=True, timeout=30, check=False)
    return out.returncode, out.stdout + out.stderr


def _derived_serial(request: bytes, contributors: list[dict[str, Any]], attempt: int) -> int:
    """The documented derivation, written out here: output = SHA-256(draw domain, len(request), request,
    then (validator, value) in validator order); serial = top 127 bits of SHA-256(serial domain, attempt,
    output)."""
    h = hashlib.sha256(b"trustchain/ca/serial-draw/v1\0" + struct.pack(">Q", len(request)) + request)
    for c in sorted(contributors, key=lambda c: c["validator"]):
        h.update(struct.pack(">Q", c["validator"]) + bytes.fromhex(c["value"]))
    digest = hashlib.sha256(b"trustchain/ca/serial/v1\0" + struct.pack(">Q", attempt) + h.digest()).digest()
    return int.from_bytes(digest[:16], "big") >> 1


def test_serials_are_drawn_from_two_validators_committed_randomness(cluster: Cluster) -> None:
    serials = []
    for k in range(3):
        issued = _issue(cluster, cluster.apis[k], f"s{k}.example.org")
        serial = int(issued["serial"], 16)
        drawn = issued["serial_randomness"]
        contributors = drawn["contributors"]
        assert len({c["validator"] for c in contributors}) == 2  # f+1 distinct validators of 4
        for c in contributors:  # every value matches the commitment ordered before the request
            value = bytes.fromhex(c["value"])
            assert len(value) == 32
            assert hashlib.sha256(b"trustchain/ca/serial-commitment/v1\0" + struct.pack(">Q", c["validator"])
                                  + value).hexdigest() == c["commitment"]
        assert serial == _derived_serial(bytes.fromhex(drawn["request"]), contributors, drawn["attempt"])
        cert = x509.load_pem_x509_certificate(issued["certificate"].encode())
        assert cert.serial_number == serial and 2**64 < serial < 2**127
        # any node answers the same for the request, by its pending id
        other = cluster.apis[(k + 1) % 4]
        again = issued_from(other, *http("GET", other + f"/api/v1/cert/request/{issued['pending_id']}"))
        assert again["serial"] == issued["serial"], again
        serials.append(serial)
    assert len(set(serials)) == 3
    status = [cluster.status(i)["ca"] for i in range(4)]
    assert sum(s["serial_reveals_ordered"] for s in status) >= 3 * 2
    assert all(s["serial_commits_ordered"] >= 1 and s["serial_commitments_unused"] > 0 for s in status)


def test_an_answer_that_may_not_wait_says_where_to_poll(cluster: Cluster) -> None:
    api = cluster.apis[2]
    proof = _prove(api, "poll.example.org")
    code, res, headers = request("POST", api + "/api/v1/cert/request", {
        "csr": _csr(["poll.example.org"]), "names": ["poll.example.org"], "proofs": [proof], "wait_s": 0})
    assert code == 202 and res["status"] == "pending", res  # the reveals are ordered after the request
    where = f"/api/v1/cert/request/{res['pending_id']}"
    assert headers["location"] == res["location"] == where and int(headers["retry-after"]) >= 1, headers
    deadline = time.monotonic() + 60
    while (polled := request("GET", api + where))[0] == 202:
        assert polled[2]["location"] == where and time.monotonic() < deadline, polled
        time.sleep(0.2)
    code, doc, _ = polled
    assert code == 200 and doc["status"] == "issued" and doc["pending_id"] == res["pending_id"], doc
    cert = x509.load_pem_x509_certificate(doc["certificate"].encode())
    assert f"{cert.serial_number:032x}" == doc["serial"].rjust(32, "0")
    # a pending id nobody was answered with, and one that is no number
    code, doc, _ = request("GET", api + f"/api/v1/cert/request/{res['pending_id'] + 10_000}")
    assert code == 404 and doc["field"] == "pending_id", doc
    code, doc, _ = request("GET", api + "/api/v1/cert/request/-1")
    assert code == 400 and doc["field"] == "pending_id", doc


def _pem_crl(der: bytes, path: Path) -> Path:
    path.write_bytes(x509.load_der_x509_crl(der).public_bytes(serialization.Encoding.PEM))
    return path


def _crl(cluster: Cluster, node: int, name: str) -> bytes:
    code, body = fetch(cluster.apis[node] + f"/crl/{name}.crl")
    assert code == 200, body[:200]
    return body


def _intermediate_ocsp(cluster: Cluster, node: int) -> xocsp.OCSPResponse:
    inter = x509.load_pem_x509_certificate((cluster.dir / "intermediate.pem").read_bytes())
    root = x509.load_pem_x509_certificate((cluster.dir / "root.pem").read_bytes())
    req = xocsp.OCSPRequestBuilder().add_certificate(inter, root, hashes.SHA1()).build()
    code, body = fetch(cluster.apis[node] + "/ocsp", req.public_bytes(serialization.Encoding.DER),
                        "application/ocsp-request")
    assert code == 200
    return xocsp.load_der_ocsp_response(body)


def _ocsp_status(resp: xocsp.OCSPResponse) -> str:
    if resp.response_status != xocsp.OCSPResponseStatus.SUCCESSFUL:
        return resp.response_status.name
    return resp.certificate_status.name


def _propose(cluster: Cluster, i: int, command: bytes) -> dict[str, Any]:
    token = (cluster.configs[i].parent / "data" / "operator.token").read_text().strip()
    body = json.dumps({"target": "ca", "command": base64.b64encode(command).decode()}).encode()
    request = urllib.request.Request(cluster.apis[i] + "/api/v1/validators/propose", body,
                                     {"content-type": "application/json", "authorization": f"Bearer {token}"})
    with urllib.request.urlopen(request, timeout=30) as resp:
        return json.loads(resp.read())  # type: ignore[no-any-return]


def test_root_crl_and_ocsp_then_a_quorum_revokes_the_issuing_ca(cluster: Cluster, tmp_path: Path) -> None:
    d = cluster.dir
    root_pem, inter_pem = d / "root.pem", d / "intermediate.pem"
    inter = x509.load_pem_x509_certificate(inter_pem.read_bytes())
    # the root CRL (empty) and a "good" root-signed response for the issuing CA, identical on every node
    for i in range(4):
        cluster.wait_for(lambda i=i: fetch(cluster.apis[i] + "/crl/root.crl")[0] == 200, what=f"root CRL {i}")
        cluster.wait_for(lambda i=i: _ocsp_status(_intermediate_ocsp(cluster, i)) == "GOOD", what=f"OCSP {i}")
    assert len({_crl(cluster, i, "root") for i in range(4)}) == 1
    root_crl = _pem_crl(_crl(cluster, 0, "root"), tmp_path / "root.crl.pem")
    code, out = _openssl("crl", "-in", str(root_crl), "-noout", "-verify", "-CAfile", str(root_pem))
    assert code == 0 and "verify OK" in out, out
    resp = _intermediate_ocsp(cluster, 1)
    assert resp.responder_name == x509.load_pem_x509_certificate(root_pem.read_bytes()).subject
    code, out = _openssl("ocsp", "-url", cluster.apis[2] + "/ocsp", "-issuer", str(root_pem), "-cert",
                         str(inter_pem), "-CAfile", str(root_pem), "-no_nonce")
    assert code == 0 and "Response verify OK" in out and "intermediate.pem: good" in out, out

    # a leaf verifies with both CRLs checked
    issued = _issue(cluster, cluster.apis[0], "chain.example.org")
    leaf = tmp_path / "leaf.pem"
    leaf.write_text(issued["certificate"])
    cluster.wait_for(lambda: fetch(cluster.apis[0] + "/crl/issuing.crl")[0] == 200, what="issuing CRL")

    def verify_leaf() -> tuple[int, str]:
        issuing_crl = _pem_crl(_crl(cluster, 0, "issuing"), tmp_path / "issuing.crl.pem")
        root_now = _pem_crl(_crl(cluster, 0, "root"), tmp_path / "root-now.crl.pem")
        return _openssl("verify", "-crl_check_all", "-CRLfile", str(root_now), "-CRLfile", str(issuing_crl),
                        "-CAfile", str(root_pem), "-untrusted", str(inter_pem), str(leaf))

    code, out = verify_leaf()
    assert code == 0 and "OK" in out, out

    # one or two validators cannot revoke the issuing CA; the third vote executes it
    command = cacommands.revoke_issuer_command(inter.serial_number, 2)  # cACompromise
    assert [_propose(cluster, i, command)["status"] for i in (0, 1)] == ["recorded", "recorded"]
    assert _ocsp_status(_intermediate_ocsp(cluster, 3)) == "GOOD"
    passed = _propose(cluster, 2, command)
    assert passed["status"] == "executed", passed

    def root_crl_lists(i: int) -> bool:
        return x509.load_der_x509_crl(_crl(cluster, i, "root")).get_revoked_certificate_by_serial_number(
            inter.serial_number) is not None

    for i in range(4):
        cluster.wait_for(lambda i=i: root_crl_lists(i), what=f"root CRL on node{i} lists the issuing CA")
        cluster.wait_for(lambda i=i: _ocsp_status(_intermediate_ocsp(cluster, i)) == "REVOKED",
                         what=f"root OCSP on node{i} says revoked")
    root_crl = _pem_crl(_crl(cluster, 3, "root"), tmp_path / "root.crl.pem")
    code, out = _openssl("crl", "-in", str(root_crl), "-noout", "-verify", "-CAfile", str(root_pem))
    assert code == 0 and "verify OK" in out, out
    code, out = verify_leaf()
    assert code != 0 and "certificate revoked" in out, out
    code, out = _openssl("ocsp", "-url", cluster.apis[1] + "/ocsp", "-issuer", str(root_pem), "-cert",
                         str(inter_pem), "-CAfile", str(root_pem), "-no_nonce")
    assert code == 0 and "Response verify OK" in out and "intermediate.pem: revoked" in out, out
    assert "Reason: cACompromise" in out, out

    # nothing more is issued under the revoked issuing CA
    code, ch = http("POST", cluster.apis[1] + "/api/v1/cert/challenge", {"names": ["late.example.org"]})
    assert code == 200, ch
    chal = ch["challenges"][0]
    update = {"origin": "example.org.", "ops": [{"op": "add", "name": chal["txt_name"], "type": "TXT", "ttl": 300,
                                                 "values": [f'"{chal["txt_value"]}"']}]}
    assert http("POST", cluster.apis[1] + "/api/v1/dns/update", {"update": update})[0] == 200
    code, res = http("POST", cluster.apis[1] + "/api/v1/cert/request", {
        "csr": _csr(["late.example.org"]), "names": ["late.example.org"], "proofs": [chal["key_authorization"]]})
    assert code == 422 and res["field"] == "issuer", res
