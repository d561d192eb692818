"""Five real node processes on 127.0.0.1: writes commit everywhere, a certificate is issued through
3-of-5 FROST over the API and `openssl verify` accepts its chain, SIGKILL of the primary leaves the
cluster working, and the killed node restarts from its own storage and catches up with nothing lost."""

from __future__ import annotations

import base64
import shutil
import subprocess
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from node_harness import Cluster, http, issued_from

from reference_node import cluster as cluster_mod


def _csr(names: list[str]) -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _prove(api: str, name: str) -> str:
    """A dns-01 challenge for `name` (in example.org.) with its TXT record published: its proof."""
    code, ch = http("POST", api + "/api/v1/cert/challenge", {"names": [name]})
    assert code == 200, ch
    chal = ch["challenges"][0]
    update = {"origin": "example.org.", "ops": [
        {"op": "add", "name": chal["txt_name"], "type": "TXT", "ttl": 300, "values": [f'"{chal["txt_value"]}"']}]}
    code, res = http("POST", api + "/api/v1/dns/update", {"update": update})
    assert code == 200, res
    return str(chal["key_authorization"])


def _issue(c: Cluster, api: str, name: str) -> dict:
    proof = _prove(api, name)
    code, res = http("POST", api + "/api/v1/cert/request", {"csr": _csr([name]), "names": [name], "proofs": [proof]})
    return issued_from(api, code, res)  # 201 within api.issue_wait, else 202 and polled


def test_cluster_end_to_end(tmp_path: Path) -> None:
    c = Cluster(tmp_path, nodes=5, threshold=3, timeout="1s")
    with c:
        api = c.apis
        # --- a DNS zone created through node 0 commits on every node
        code, res = c.create_zone("example.org.")
        assert code == 200 and res["op"] == "create" and res["origin"] == "example.org." and res["serial"] == 1, res
        for i in range(5):
            c.wait_for(lambda i=i: "example.org." in c.status(i)["dns"]["zones"], what=f"zone on node{i}")
        code, res = http("GET", api[3] + "/api/v1/dns/dnssec/validate?domain=example.org&type=SOA")
        assert code == 200 and res["secure"] is True, res

        # --- a certificate through 3-of-5 threshold signing; openssl accepts the chain
        res = _issue(c, api[1], "www.example.org")
        leaf = tmp_path / "leaf.pem"
        leaf.write_text(res["certificate"])
        if shutil.which("openssl"):
            out = subprocess.run(["openssl", "verify", "-CAfile", str(tmp_path / "root.pem"), "-untrusted",
                                  str(tmp_path / "intermediate.pem"), str(leaf)], capture_output=True, text=True)
            assert out.returncode == 0 and ": OK" in out.stdout, out
        serial = res["serial"]
        for i in range(5):
            c.wait_for(lambda i=i: http("GET", api[i] + f"/api/v1/cert/{serial}")[0] == 200, what=f"cert on {i}")
        # the issued certificate is in every node's CT log, with an inclusion proof
        der = x509.load_pem_x509_certificate(res["certificate"].encode()).public_bytes(serialization.Encoding.DER)
        inter = x509.load_pem_x509_certificate((tmp_path / "intermediate.pem").read_bytes())
        chain = [base64.b64encode(d).decode() for d in (der, inter.public_bytes(serialization.Encoding.DER))]
        code, sub = http("POST", api[2] + "/api/v1/ct/submit", {"chain": chain})
        assert code == 200 and sub["status"] == "duplicate", sub  # logged at issuance already
        leaf_hash = base64.b64decode(sub["leaf_hash"]).hex()
        code, proof = http("GET", api[4] + f"/api/v1/ct/proof/{leaf_hash}")
        assert code == 200 and proof["leaf_index"] == sub["leaf_index"], proof

        # --- validation errors name the field
        code, err = http("POST", api[0] + "/api/v1/cert/request", {"names": ["a.example.org"], "proofs": ["x"]})
        assert code == 400 and err["field"] == "csr", err
        code, err = http("GET", api[0] + "/api/v1/dns/resolve")
        assert code == 400 and err["field"] == "domain", err

        # --- SIGKILL the primary: the others change view and keep committing
        primary = c.status(1)["primary"]
        c.kill(primary)
        alive = [i for i in range(5) if i != primary]
        for k in range(30):
            code, res = http("POST", api[alive[k % 4]] + "/api/v1/kv", {"op": "put", "key": f"k{k}", "value": str(k)},
                             timeout=60)
            assert (code, res["status"], res["size"]) == (200, "ok", len(str(k))), res
        second = _issue(c, api[alive[0]], "api.example.org")  # threshold signing with 4 of 5 up
        assert second["status"] == "issued"
        target = c.status(alive[0])["last_executed"]
        for i in alive:
            c.wait_for(lambda i=i: c.status(i)["last_executed"] >= target, what=f"node{i} executes")
            assert c.status(i)["view"] >= 1

        # --- restart: recovers from its own SQLite records and catches up, nothing lost
        c.start(primary)
        c.wait_healthy(primary)
        c.wait_for(lambda: c.status(primary)["last_executed"] >= target, timeout=40, what="restarted node catches up")
        st = c.status(primary)
        assert st["kv"]["keys"] == 30 and st["ca"]["issued"] == 2, st
        # each issuance logs its precertificate and its certificate
        assert st["ct"]["tree_size"] == c.status(alive[0])["ct"]["tree_size"] == 4
        code, res = http("POST", api[primary] + "/api/v1/kv", {"op": "get", "key": "k29"}, timeout=60)
        assert (code, res["status"], res["value"]) == (200, "ok", "29"), res

        # --- metrics carry the design's names and latency histograms
        code, text = http("GET", api[alive[0]] + "/api/v1/metrics")
        assert code == 200
        for name in ("trustchain_certificates_issued_total 2", "trustchain_consensus_rounds_total",
                     "trustchain_ct_submissions_total", "trustchain_storage_usage_bytes",
                     "trustchain_consensus_failures_total", "trustchain_dns_queries_total",
                     "trustchain_request_latency_seconds_bucket"):
            assert name in text, name


def test_cluster_ports_avoid_the_ephemeral_range() -> None:
    """Outgoing connections (ours and other processes') take ephemeral ports; a node port drawn from that
    range could be taken between `generate` and the node binding it."""
    import socket

    low, _ = cluster_mod._ephemeral_range()
    ports = cluster_mod.free_ports(40)
    assert len(set(ports)) == 40
    assert all(1024 < p < low for p in ports)
    for p in ports[:5]:
        for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
            with socket.socket(socket.AF_INET, kind) as s:
                s.bind(("127.0.0.1", p))  # still free
