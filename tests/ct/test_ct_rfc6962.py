"""The RFC 6962 read and submission API of a validator's log, checked against an independent transcription
of RFC 6962 section 2.1 (Merkle hashes, audit paths, consistency proofs) and independent signature checks
with cryptography's ECDSA; the HTTP layer answers input errors with 400 naming the field."""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import types
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from reference_node import ct_http
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as appmod
from trustchain.ct import rfc6962
from trustchain.ct.api import APIError
from trustchain.ct.logkey import P256LogSigner

# ------------------------------------------------------------------ RFC 6962 section 2.1, transcribed


def h_leaf(data: bytes) -> bytes:
    return hashlib.sha256(b"\x00" + data).digest()


def h_node(left: bytes, right: bytes) -> bytes:
    return hashlib.sha256(b"\x01" + left + right).digest()


def split(n: int) -> int:
    k = 1
    while k * 2 < n:
        k *= 2
    return k


def mth(d: list[bytes]) -> bytes:
    if not d:
        return hashlib.sha256(b"").digest()
    if len(d) == 1:
        return h_leaf(d[0])
    k = split(len(d))
    return h_node(mth(d[:k]), mth(d[k:]))


def path(m: int, d: list[bytes]) -> list[bytes]:
    if len(d) == 1:
        return []
    k = split(len(d))
    return [*path(m, d[:k]), mth(d[k:])] if m < k else [*path(m - k, d[k:]), mth(d[:k])]


def subproof(m: int, d: list[bytes], b: bool) -> list[bytes]:
    n = len(d)
    if m == n:
        return [] if b else [mth(d)]
    k = split(n)
    if m <= k:
        return [*subproof(m, d[:k], b), mth(d[k:])]
    return [*subproof(m - k, d[k:], False), mth(d[:k])]


# ------------------------------------------------------------------ a small PKI and a log over it

NOW = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
ROOT_KEY = ec.derive_private_key(11, ec.SECP256R1())
INTER_KEY = ec.derive_private_key(12, ec.SECP256R1())


def _cert(subject: str, issuer: str, issuer_key: ec.EllipticCurvePrivateKey, key: ec.EllipticCurvePrivateKey, *,
          ca: bool = False, poison: bool = False, serial: int = 1) -> bytes:
    b = (x509.CertificateBuilder()
         .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
         .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, issuer)]))
         .public_key(key.public_key()).serial_number(serial)
         .not_valid_before(NOW).not_valid_after(NOW + dt.timedelta(days=30))
         .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        b = b.add_extension(x509.SubjectAlternativeName([x509.DNSName(subject)]), critical=False)
    if poison:
        b = b.add_extension(x509.PrecertPoison(), critical=True)
    return b.sign(issuer_key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


ROOT = _cert("Root", "Root", ROOT_KEY, ROOT_KEY, ca=True)
INTER = _cert("Inter", "Root", ROOT_KEY, INTER_KEY, ca=True, serial=2)
LEAVES = [_cert(f"h{i}.example", "Inter", INTER_KEY, ec.derive_private_key(100 + i, ec.SECP256R1()), serial=10 + i)
          for i in range(12)]
PRECERT = _cert("pre.example", "Inter", INTER_KEY, ec.derive_private_key(99, ec.SECP256R1()), poison=True, serial=9)
LOG_KEY = P256LogSigner.from_secret(b"\x07" * 32)
SPKI = LOG_KEY.public_key
T_US = 1_780_000_000_000_000


def _run(app: appmod.CTApplication, payload: bytes, seq: int) -> appmod.CTResult:
    out = app.execute([Operation(b"client", seq, payload)], ExecutionContext(seq, T_US + seq * 1000))
    return appmod.decode_result(out[0])


@pytest.fixture(scope="module")
def log() -> appmod.CTApplication:
    app = appmod.CTApplication(Ed25519Signer(b"\x01" * 32), "v0", "log.example/v0", accepted_roots=(ROOT,),
                               log_signer=LOG_KEY)
    for i, leaf in enumerate(LEAVES[:6]):
        assert _run(app, appmod.add_chain(leaf, (INTER,)), i + 1).ok
    assert _run(app, appmod.add_pre_chain(PRECERT, (INTER, ROOT)), 7).ok
    for i, leaf in enumerate(LEAVES[6:]):
        assert _run(app, appmod.add_chain(leaf, (INTER, ROOT)), i + 8).ok
    return app


def _leaves(app: appmod.CTApplication) -> list[bytes]:
    """Every leaf, read page by page (get-entries may return fewer than asked)."""
    out: list[bytes] = []
    while len(out) < app.size:
        page = rfc6962.RFC6962Log(app).get_entries(str(len(out)), str(app.size - 1))["entries"]
        assert page
        out += [base64.b64decode(e["leaf_input"]) for e in page]
    return out


def _verify_ecdsa(message: bytes, digitally_signed: bytes) -> None:
    assert digitally_signed[:2] == b"\x04\x03"  # sha256, ecdsa
    assert int.from_bytes(digitally_signed[2:4], "big") == len(digitally_signed) - 4
    key = serialization.load_der_public_key(SPKI)
    assert isinstance(key, ec.EllipticCurvePublicKey)
    key.verify(digitally_signed[4:], message, ec.ECDSA(hashes.SHA256()))  # raises if it does not hold


# ------------------------------------------------------------------ proofs


def test_audit_paths_match_rfc6962_at_every_size(log: appmod.CTApplication) -> None:
    d = _leaves(log)
    api = rfc6962.RFC6962Log(log)
    assert len(d) == 13
    for n in range(1, len(d) + 1):
        for m in range(n):
            got = api.get_proof_by_hash(base64.b64encode(h_leaf(d[m])).decode(), str(n))
            assert got["leaf_index"] == m
            assert [base64.b64decode(p) for p in got["audit_path"]] == path(m, d[:n]), (m, n)


def test_consistency_proofs_match_rfc6962_between_every_pair(log: appmod.CTApplication) -> None:
    d = _leaves(log)
    api = rfc6962.RFC6962Log(log)
    for b in range(1, len(d) + 1):
        for a in range(1, b):
            got = api.get_sth_consistency(str(a), str(b))["consistency"]
            assert [base64.b64decode(p) for p in got] == subproof(a, d[:b], True), (a, b)
        assert api.get_sth_consistency(str(b), str(b))["consistency"] == []
        assert api.get_sth_consistency("0", str(b))["consistency"] == []


def test_sth_signs_the_root_of_the_entries(log: appmod.CTApplication) -> None:
    sth = rfc6962.sth_json(log.sth(T_US // 1000 + 50))
    d = _leaves(log)
    assert sth["tree_size"] == 13 and base64.b64decode(sth["sha256_root_hash"]) == mth(d)
    assert sth["timestamp"] == T_US // 1000 + 50
    signed = bytes([0, 1]) + sth["timestamp"].to_bytes(8, "big") + (13).to_bytes(8, "big") + mth(d)
    _verify_ecdsa(signed, base64.b64decode(sth["tree_head_signature"]))
    early = log.sth(0)  # never older than the newest entry (the last add ran at seq 13, 1 ms per seq)
    assert early.timestamp == T_US // 1000 + 13


def _read_certs(data: bytes) -> list[bytes]:
    total = int.from_bytes(data[:3], "big")
    assert total == len(data) - 3
    out, pos = [], 3
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 3], "big")
        out.append(data[pos + 3:pos + 3 + n])
        pos += 3 + n
    return out


def test_entries_carry_leaf_index_and_extra_data_chains(log: appmod.CTApplication) -> None:
    entries = rfc6962.RFC6962Log(log).get_entries("0", "99")["entries"]
    assert len(entries) == 13
    for i, e in enumerate(entries):
        leaf, extra = base64.b64decode(e["leaf_input"]), base64.b64decode(e["extra_data"])
        assert leaf[:2] == b"\x00\x00"  # v1, timestamped_entry
        entry_type = int.from_bytes(leaf[10:12], "big")
        assert leaf[-10:] == b"\x00\x08\x00\x00\x05" + i.to_bytes(5, "big")  # CtExtensions: leaf_index i
        if i == 6:
            assert entry_type == 1
            assert leaf[12:44] == hashlib.sha256(x509.load_der_x509_certificate(INTER).public_key().public_bytes(
                serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)).digest()
            n = int.from_bytes(extra[:3], "big")
            assert extra[3:3 + n] == PRECERT and _read_certs(extra[3 + n:]) == [INTER, ROOT]
        else:
            cert = LEAVES[i if i < 6 else i - 1]
            assert entry_type == 0 and leaf[12:15] == len(cert).to_bytes(3, "big") and leaf[15:15 + len(cert)] == cert
            assert _read_certs(extra) == [INTER, ROOT]  # the root is added when the submitter left it out


def test_sct_from_add_chain_verifies_independently(log: appmod.CTApplication) -> None:
    res = rfc6962.add_response(log.sct(3))
    assert base64.b64decode(res["id"]) == hashlib.sha256(SPKI).digest()
    ext = base64.b64decode(res["extensions"])
    assert ext == b"\x00\x00\x05" + (3).to_bytes(5, "big")
    signed = (b"\x00\x00" + res["timestamp"].to_bytes(8, "big") + b"\x00\x00"
              + len(LEAVES[3]).to_bytes(3, "big") + LEAVES[3] + len(ext).to_bytes(2, "big") + ext)
    _verify_ecdsa(signed, base64.b64decode(res["signature"]))


@pytest.mark.parametrize(("call", "field", "status"), [
    (lambda a: a.get_entries("x", "1"), "start", 400),
    (lambda a: a.get_entries("5", "2"), "end", 400),
    (lambda a: a.get_entries("13", "20"), "start", 400),
    (lambda a: a.get_entries(None, "2"), "start", 400),
    (lambda a: a.get_proof_by_hash("!!", "3"), "hash", 400),
    (lambda a: a.get_proof_by_hash(base64.b64encode(b"\x00" * 32).decode(), "0"), "tree_size", 400),
    (lambda a: a.get_proof_by_hash(base64.b64encode(b"\x00" * 32).decode(), "14"), "tree_size", 400),
    (lambda a: a.get_proof_by_hash(base64.b64encode(b"\x00" * 32).decode(), "5"), "hash", 404),
    (lambda a: a.get_sth_consistency("4", "3"), "first", 400),
    (lambda a: a.get_sth_consistency("1", "99"), "second", 400),
    (lambda a: a.get_sth_consistency("1", "-1"), "second", 400),
])
def test_bad_queries_name_the_parameter(log: appmod.CTApplication, call: Any, field: str, status: int) -> None:
    with pytest.raises(APIError) as info:
        call(rfc6962.RFC6962Log(log))
    assert (info.value.field, info.value.status) == (field, status)


def test_submissions_outside_the_roots_are_refused_naming_the_field() -> None:
    app = appmod.CTApplication(Ed25519Signer(b"\x01" * 32), "v0", "log.example/v0", accepted_roots=(ROOT,),
                               log_signer=LOG_KEY)
    stranger = ec.derive_private_key(77, ec.SECP256R1())
    rogue = _cert("h0.example", "Inter", stranger, stranger)
    assert _run(app, appmod.add_chain(rogue, (INTER,)), 1).detail.startswith("certificate: not signed by")
    assert _run(app, appmod.add_chain(LEAVES[0], ()), 2).detail.startswith("chain: does not lead")
    assert _run(app, appmod.add_chain(PRECERT, (INTER,)), 3).detail.startswith("certificate: is a precertificate")
    assert _run(app, appmod.add_pre_chain(LEAVES[0], (INTER,)), 4).detail.startswith("precertificate: has no")
    assert app.size == 0


# ------------------------------------------------------------------ over HTTP


def _serve(app_ct: appmod.CTApplication) -> web.Application:
    genesis = types.SimpleNamespace(network="testnet", created="2026-01-01T00:00:00Z", ct_logs=(
        types.SimpleNamespace(name="node0", key=SPKI, url="https://127.0.0.1:1/", mmd=60),))
    node = types.SimpleNamespace(app=types.SimpleNamespace(ct=app_ct), genesis=genesis, id=0)
    web_app = web.Application()
    ct_http.register(web_app, node)  # type: ignore[arg-type]
    return web_app


def test_http_endpoints_and_log_list(log: appmod.CTApplication) -> None:
    async def go() -> None:
        async with TestClient(TestServer(_serve(log))) as client:
            r = await client.get("/ct/v1/get-sth")
            assert r.status == 200 and (await r.json())["tree_size"] == 13
            r = await client.get("/ct/v1/get-entries", params={"start": "0", "end": "x"})
            body = await r.json()
            assert r.status == 400 and body["field"] == "end", body
            r = await client.get("/ct/v1/get-proof-by-hash", params={"tree_size": "3"})
            assert r.status == 400 and (await r.json())["field"] == "hash"
            r = await client.get("/ct/v1/get-roots")
            assert [base64.b64decode(c) for c in (await r.json())["certificates"]] == [ROOT]
            r = await client.post("/ct/v1/add-chain", data=b"{")
            assert r.status == 400 and (await r.json())["field"] == "body"
            r = await client.post("/ct/v1/add-chain", json={"chain": ["%%"]})
            assert r.status == 400 and (await r.json())["field"] == "chain[0]"
            r = await client.post("/ct/v1/add-pre-chain", json={"chain": [base64.b64encode(PRECERT).decode()]})
            assert r.status == 400 and (await r.json())["field"] == "chain"
            # refused before ordering (the stub node cannot order anything): no path to the root, a forged link
            r = await client.post("/ct/v1/add-chain", json={"chain": [base64.b64encode(LEAVES[0]).decode()]})
            assert r.status == 400 and (await r.json())["field"] == "chain", await r.text()
            stranger = ec.derive_private_key(78, ec.SECP256R1())
            rogue = _cert("x.example", "Inter", stranger, stranger)
            chain = [base64.b64encode(c).decode() for c in (rogue, INTER)]
            r = await client.post("/ct/v1/add-chain", json={"chain": chain})
            assert r.status == 400 and (await r.json())["field"] == "chain[0]", await r.text()
            r = await client.get("/ct/log-list.json")
            doc = await r.json()
            listed = doc["operators"][0]["logs"][0]
            assert base64.b64decode(listed["key"]) == SPKI
            assert base64.b64decode(listed["log_id"]) == hashlib.sha256(SPKI).digest()
            assert listed["url"] == "https://127.0.0.1:1/" and listed["mmd"] == 60 and "usable" in listed["state"]

    asyncio.run(go())


def test_full_tiles_are_immutable_and_partial_ones_are_not() -> None:
    app = appmod.CTApplication(Ed25519Signer(b"\x01" * 32), "v0", "log.example/v0", log_signer=LOG_KEY)
    batch = [Operation(b"c", i, appmod.add_chain(b"\x30\x04\x02\x02" + i.to_bytes(2, "big"))) for i in range(300)]
    app.execute(batch, ExecutionContext(1, T_US))
    d = _leaves(app)

    async def go() -> None:
        async with TestClient(TestServer(_serve(app))) as client:
            r = await client.get("/tile/0/000")
            body = await r.read()
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert body == b"".join(h_leaf(leaf) for leaf in d[:256])
            r = await client.get("/tile/data/000")
            data = await r.read()
            assert r.headers["Cache-Control"] == "public, max-age=31536000, immutable"
            assert data == b"".join(leaf[2:] + b"\x00\x00" for leaf in d[:256])  # TileLeaf: entry, no issuers
            r = await client.get("/tile/0/001.p/44")
            assert r.status == 200 and "immutable" not in r.headers["Cache-Control"]
            assert await r.read() == b"".join(h_leaf(leaf) for leaf in d[256:])
            r = await client.get("/tile/1/000.p/1")
            assert await r.read() == mth(d[:256])
            for missing in ("/tile/0/001", "/tile/0/001.p/45", "/tile/6/000.p/1", "/tile/0/1"):
                r = await client.get(missing)
                assert r.status == 404 and (await r.json())["field"] == "path", missing
            r = await client.get("/checkpoint")
            text = (await r.text()).split("\n")
            assert text[:3] == ["127.0.0.1:1", "300", base64.b64encode(mth(d)).decode()]
            r = await client.get("/issuer/" + "ab" * 32)
            assert r.status == 404 and (await r.json())["field"] == "fingerprint"
            r = await client.get("/issuer/XYZ")
            assert r.status == 400

    asyncio.run(go())
