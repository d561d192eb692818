"""A real cluster's CT logs, followed from outside: certspotter (a standard CT monitor) reads the v3 log
list from a node over HTTPS, follows every validator's log through the RFC 6962 API and verifies their
P-256 tree heads, and reports a watched domain's certificate."""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from node_harness import Cluster, http

from reference_node import cli


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("ct-monitor"), nodes=4, threshold=3, timeout="1s", dns_listeners=False)
    with c:
        yield c


def issue(cluster: Cluster, zone: str, name: str, tmp: Path) -> x509.Certificate:
    code, body = cluster.create_zone(zone + ".")
    assert code == 200, body
    out = tmp / f"{name}.pem"
    assert cli.main(["node", "--node", cluster.apis[0], "cert", "request", name, "--key-out", str(tmp / f"{name}.key"),
                     "--out", str(out)]) == 0
    return x509.load_pem_x509_certificate(out.read_bytes())


def log_list(cluster: Cluster) -> dict[str, Any]:
    return json.loads((cluster.dir / "ct-log-list.json").read_text())  # type: ignore[no-any-return]


def test_log_list_is_served_over_https_and_matches_the_cluster_file(cluster: Cluster) -> None:
    import ssl
    import urllib.request

    listed = log_list(cluster)
    urls = [log["url"] for op in listed["operators"] for log in op["logs"]]
    assert len(urls) == 4 and all(u.startswith("https://127.0.0.1:") for u in urls)
    context = ssl.create_default_context(cafile=str(cluster.dir / "root.pem"))
    with urllib.request.urlopen(urls[2] + "ct/log-list.json", context=context, timeout=10) as resp:
        served = json.loads(resp.read())
    ids = {log["log_id"] for op in served["operators"] for log in op["logs"]}
    assert ids == {log["log_id"] for op in listed["operators"] for log in op["logs"]}
    for op in served["operators"]:
        for log in op["logs"]:
            assert base64.b64decode(log["log_id"]) == hashlib.sha256(base64.b64decode(log["key"])).digest()
            key = serialization.load_der_public_key(base64.b64decode(log["key"]))
            assert key.key_size == 256 and "usable" in log["state"] and log["mmd"] > 0  # type: ignore[union-attr]


def test_certspotter_follows_every_validator_log_and_reports_the_watched_certificate(
        cluster: Cluster, tmp_path: Path) -> None:
    binary = shutil.which("certspotter")
    if binary is None:
        pytest.skip("certspotter is not installed (apt-get install certspotter)")
    cert = issue(cluster, "monitor.example", "www.monitor.example", tmp_path)
    listed = log_list(cluster)
    urls = [log["url"] for op in listed["operators"] for log in op["logs"]]

    def logged_everywhere() -> bool:
        return all(http("GET", api + "/ct/v1/get-sth")[1]["tree_size"] >= 1 for api in cluster.apis)

    cluster.wait_for(logged_everywhere, 30, "the certificate in every validator's log")
    state = tmp_path / "certspotter"
    state.mkdir()
    (tmp_path / "watchlist").write_text(".monitor.example\n")
    env = dict(os.environ, SSL_CERT_FILE=str(cluster.dir / "root.pem"))
    proc = subprocess.Popen([binary, "-logs", urls[1] + "ct/log-list.json", "-watchlist", str(tmp_path / "watchlist"),
                             "-state_dir", str(state), "-stdout", "-verbose"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env)
    fingerprint = cert.fingerprint(hashes.SHA256()).hex()
    found = state / "certs" / fingerprint[:2] / f"{fingerprint}.pem"

    def verified_sizes() -> list[int]:
        out = []
        for f in (state / "logs").glob("*/state.json"):
            verified = json.loads(f.read_text()).get("verified_sth") or {}
            out.append(int(verified.get("tree_size", 0)))
        return out

    try:
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and proc.poll() is None:
            sizes = verified_sizes()
            if found.exists() and len(sizes) == 4 and min(sizes) >= 1:
                break
            time.sleep(0.2)
    finally:
        proc.terminate()
        stdout, stderr = proc.communicate(timeout=10)
    report = stdout.decode(errors="replace")
    log_text = stderr.decode(errors="replace")
    assert found.exists(), f"certspotter did not report the certificate:\n{report}\n{log_text[-3000:]}"
    assert cert.public_bytes(serialization.Encoding.PEM) in found.read_bytes()
    assert "www.monitor.example" in report
    sizes = verified_sizes()
    assert len(sizes) == 4 and min(sizes) >= 1, (sizes, log_text[-3000:])  # every log's STH verified
    assert not any((state / "logs").glob("*/malformed_entries/*")), log_text[-3000:]
    problems = [line for line in log_text.splitlines() if "error" in line.lower() and "context canceled" not in line]
    assert not problems, problems


def test_certificates_embed_scts_from_f_plus_1_validator_logs(cluster: Cluster, tmp_path: Path) -> None:
    cert = issue(cluster, "embedded.example", "www.embedded.example", tmp_path)
    text = subprocess.run(["openssl", "x509", "-noout", "-text", "-in", str(tmp_path / "www.embedded.example.pem")],
                          capture_output=True, text=True, check=True).stdout if shutil.which("openssl") else ""
    assert not text or "CT Precertificate SCTs" in text
    scts = cert.extensions.get_extension_for_class(x509.PrecertificateSignedCertificateTimestamps).value
    keys = {base64.b64decode(log["log_id"]): base64.b64decode(log["key"])
            for op in log_list(cluster)["operators"] for log in op["logs"]}
    assert len(scts) == 2 and len({s.log_id for s in scts}) == 2  # f+1 distinct logs of n = 4
    issuer = x509.load_pem_x509_certificate((cluster.dir / "intermediate.pem").read_bytes())
    issuer_key_hash = hashlib.sha256(issuer.public_key().public_bytes(
        serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
    tbs = cert.tbs_precertificate_bytes  # the TBSCertificate without the SCT list: what the logs signed
    for sct in scts:
        ext = sct.extension_bytes
        signed = (b"\x00\x00" + int(sct.timestamp.replace(tzinfo=dt.UTC).timestamp() * 1000).to_bytes(8, "big")
                  + b"\x00\x01" + issuer_key_hash + len(tbs).to_bytes(3, "big") + tbs
                  + len(ext).to_bytes(2, "big") + ext)
        key = serialization.load_der_public_key(keys[sct.log_id])
        assert isinstance(key, ec.EllipticCurvePublicKey) and isinstance(sct.signature_hash_algorithm, hashes.SHA256)
        key.verify(sct.signature, signed, ec.ECDSA(hashes.SHA256()))  # raises unless this log signed it
    # both the precertificate and the certificate are in every log, the precertificate first
    index = int.from_bytes(scts[0].extension_bytes[3:], "big")
    code, body = http("GET", cluster.apis[3] + f"/ct/v1/get-entries?start={index}&end={index + 1}")
    assert code == 200, body
    leaves = [base64.b64decode(e["leaf_input"]) for e in body["entries"]]
    assert [int.from_bytes(leaf[10:12], "big") for leaf in leaves] == [1, 0]  # precert_entry, x509_entry
    der = cert.public_bytes(serialization.Encoding.DER)
    assert leaves[1][15:15 + len(der)] == der


# ------------------------------------------------------------------ static-ct-api, read by an independent client


def _get(url: str) -> tuple[bytes, dict[str, str]]:
    import urllib.request

    with urllib.request.urlopen(url, timeout=10) as resp:
        return resp.read(), dict(resp.headers)


def _mth(hashes_: list[bytes]) -> bytes:
    if len(hashes_) == 1:
        return hashes_[0]
    k = 1
    while k * 2 < len(hashes_):
        k *= 2
    return hashlib.sha256(b"\x01" + _mth(hashes_[:k]) + _mth(hashes_[k:])).digest()


def _take(data: bytes, pos: int, n: int) -> tuple[bytes, int]:
    assert pos + n <= len(data), "tile ends early"
    return data[pos:pos + n], pos + n


def _opaque(data: bytes, pos: int, length_bytes: int) -> tuple[bytes, int]:
    size, pos = _take(data, pos, length_bytes)
    return _take(data, pos, int.from_bytes(size, "big"))


def _tile_leaves(data: bytes) -> list[tuple[bytes, list[bytes]]]:
    """(MerkleTreeLeaf, issuer fingerprints) of each TileLeaf in a data tile."""
    out, pos = [], 0
    while pos < len(data):
        start = pos
        _, pos = _take(data, pos, 8)  # timestamp
        entry_type, pos = _take(data, pos, 2)
        if entry_type == b"\x00\x01":
            _, pos = _take(data, pos, 32)  # issuer_key_hash
        _, pos = _opaque(data, pos, 3)  # certificate or tbs_certificate
        _, pos = _opaque(data, pos, 2)  # extensions
        timestamped_entry = data[start:pos]
        if entry_type == b"\x00\x01":
            _, pos = _opaque(data, pos, 3)  # pre_certificate
        chain, pos = _opaque(data, pos, 2)
        assert len(chain) % 32 == 0
        out.append((b"\x00\x00" + timestamped_entry, [chain[i:i + 32] for i in range(0, len(chain), 32)]))
    return out


def test_static_ct_api_checkpoint_and_tiles_rebuild_the_signed_root(cluster: Cluster, tmp_path: Path) -> None:
    issue(cluster, "static.example", "www.static.example", tmp_path)
    logs = [log for op in log_list(cluster)["operators"] for log in op["logs"]]
    for node, log in enumerate(logs):
        base = cluster.apis[node]
        body, headers = _get(base + "/checkpoint")
        assert headers["Content-Type"].startswith("text/plain")
        text, _, sigs = body.decode().partition("\n\n")
        origin, size_text, root_b64 = text.split("\n")
        assert origin == log["url"].removeprefix("https://").rstrip("/")
        size, root = int(size_text), base64.b64decode(root_b64)
        log_id = base64.b64decode(log["log_id"])
        key_id = hashlib.sha256(origin.encode() + b"\n\x05" + log_id).digest()[:4]
        found = [base64.b64decode(line.split(" ")[2]) for line in sigs.splitlines()
                 if line.split(" ")[1] == origin and base64.b64decode(line.split(" ")[2])[:4] == key_id]
        assert len(found) == 1, sigs
        timestamp, ds = found[0][4:12], found[0][12:]
        assert ds[:2] == b"\x04\x03" and int.from_bytes(ds[2:4], "big") == len(ds) - 4
        key = serialization.load_der_public_key(base64.b64decode(log["key"]))
        assert isinstance(key, ec.EllipticCurvePublicKey)
        key.verify(ds[4:], b"\x00\x01" + timestamp + size.to_bytes(8, "big") + root, ec.ECDSA(hashes.SHA256()))

        assert 0 < size < 256  # one partial tile per level 0 and data
        hash_tile, headers = _get(base + f"/tile/0/000.p/{size}")
        assert "immutable" not in headers.get("Cache-Control", "")
        tile_hashes = [hash_tile[i:i + 32] for i in range(0, len(hash_tile), 32)]
        assert len(tile_hashes) == size and _mth(tile_hashes) == root
        data, _ = _get(base + f"/tile/data/000.p/{size}")
        leaves = _tile_leaves(data)
        assert [hashlib.sha256(b"\x00" + leaf).digest() for leaf, _ in leaves] == tile_hashes
        for _, chain in leaves:
            for fp in chain:
                issuer, headers = _get(base + f"/issuer/{fp.hex()}")
                assert hashlib.sha256(issuer).digest() == fp and headers["Content-Type"] == "application/pkix-cert"
                assert headers["Cache-Control"] == "public, max-age=31536000, immutable"
        code, _ = http("GET", base + "/tile/0/000.p/255")
        assert code == 404
