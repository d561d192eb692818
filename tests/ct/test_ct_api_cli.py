"""The API surface and `trustchain-cli ct`, with every JSON proof checked by an independent RFC 6962
verifier written here from the RFC text (it does not import trustchain.ct.merkle)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from ct_certs import make_cert

from reference_node.cli import main
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct.api import CTAPI, APIError, add_chain_command, add_pre_chain_command
from trustchain.ct.app import CTCommand
from trustchain.ct.log import CTLog
from trustchain.encoding import decode

# ---------------------------------------------------------------------------- independent verifier


def _h(data: bytes) -> bytes:
    return hashlib.sha256(data).digest()


def rfc_root_from_inclusion(index: int, size: int, leaf_hash: bytes, path: list[bytes]) -> bytes:
    """RFC 9162 §2.1.3.2, step by step."""
    assert 0 <= index < size
    fn, sn, r = index, size - 1, leaf_hash
    for p in path:
        assert sn != 0, "proof too long"
        if fn & 1 or fn == sn:
            r = _h(b"\x01" + p + r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = _h(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    assert sn == 0, "proof too short"
    return r


def rfc_check_consistency(first: int, second: int, root1: bytes, root2: bytes, path: list[bytes]) -> bool:
    """RFC 9162 §2.1.4.2, step by step."""
    if first == second:
        return not path and root1 == root2
    if first & (first - 1) == 0:
        path = [root1, *path]
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = _h(b"\x01" + c + fr)
            sr = _h(b"\x01" + c + sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = _h(b"\x01" + sr + c)
        fn >>= 1
        sn >>= 1
    return fr == root1 and sr == root2 and sn == 0


def rfc_mth(leaves: list[bytes]) -> bytes:
    if not leaves:
        return _h(b"")
    if len(leaves) == 1:
        return _h(b"\x00" + leaves[0])
    k = 1
    while k * 2 < len(leaves):
        k *= 2
    return _h(b"\x01" + rfc_mth(leaves[:k]) + rfc_mth(leaves[k:]))


def b(s: str) -> bytes:
    return base64.b64decode(s)


# ---------------------------------------------------------------------------- API


def test_api_results_are_json_ready_and_errors_name_the_field() -> None:
    signer = Ed25519Signer(b"\x05" * 32)
    api = CTAPI(CTLog(None), "api.test/ct", signer)
    certs = [make_cert(f"a{i}.example.com", serial=i + 1) for i in range(7)]
    scts = [api.submit(c, 1_000 + i) for i, c in enumerate(certs)]
    assert scts[3]["leaf_index"] == 3 and scts[3]["timestamp"] == 1_003 and scts[3]["new"] is True
    assert api.submit(certs[3], 9_999)["timestamp"] == 1_003
    json.dumps(api.get_entries(0, 100))
    entries = api.get_entries("2", "4")["entries"]
    assert len(entries) == 3
    proof = api.get_proof_by_hash(scts[4]["leaf_hash"], 6)
    assert rfc_root_from_inclusion(proof["leaf_index"], 6, b(proof["leaf_hash"]),
                                   [b(p) for p in proof["audit_path"]]) == b(proof["root_hash"])
    leaves = [b(e["leaf_input"]) for e in api.get_entries(0, 6)["entries"]]
    assert b(proof["root_hash"]) == rfc_mth(leaves[:6])
    cons = api.get_consistency(3, 7)
    assert rfc_check_consistency(3, 7, b(cons["first_root"]), b(cons["second_root"]),
                                 [b(p) for p in cons["consistency"]])
    cp = api.get_checkpoint()
    assert cp["tree_size"] == 7 and cp["checkpoint"].startswith("api.test/ct\n7\n")
    for call, field in [
        (lambda: api.get_entries(-1, 2), "start"),
        (lambda: api.get_entries(3, 1), "end"),
        (lambda: api.get_entries(7, 9), "start"),
        (lambda: api.get_proof_by_hash("!!", 3), "hash"),
        (lambda: api.get_proof_by_hash(base64.b64encode(b"x" * 31).decode(), 3), "hash"),
        (lambda: api.get_proof_by_hash(scts[0]["leaf_hash"], 99), "tree_size"),
        (lambda: api.get_consistency(5, 2), "first"),
        (lambda: api.get_consistency(2, 50), "second"),
        (lambda: api.submit(b"junk", 1), "certificate"),
        (lambda: add_chain_command({"chain": "x"}), "chain"),
        (lambda: add_chain_command({"chain": ["@@"]}), "chain[0]"),
        (lambda: add_pre_chain_command({"chain": ["MAA="]}), "chain"),
    ]:
        with pytest.raises(APIError) as info:
            call()
        assert info.value.field == field, (field, str(info.value))
    with pytest.raises(APIError) as missing:
        api.get_proof_by_hash(base64.b64encode(b"\x00" * 32).decode())
    assert missing.value.status == 404
    cmd = decode(CTCommand, add_chain_command({"chain": [base64.b64encode(certs[0]).decode()]}))
    assert cmd.op == "add-chain" and cmd.certificate == certs[0]


# ---------------------------------------------------------------------------- CLI


def cli(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, Any, str]:
    code = main(list(args))
    out, err = capsys.readouterr()
    try:
        return code, json.loads(out), err
    except json.JSONDecodeError:
        return code, out, err


def test_cli_end_to_end_with_independently_verified_proofs(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log, key = str(tmp_path / "log"), str(tmp_path / "key")
    pem = tmp_path / "chain.pem"
    certs = [make_cert(f"c{i}.example.net", serial=i + 1) for i in range(11)]
    pem.write_text("".join("-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(c).decode()
                           + "-----END CERTIFICATE-----\n" for c in certs[:6]))
    ders = []
    for i, c in enumerate(certs[6:]):
        p = tmp_path / f"c{i}.der"
        p.write_bytes(c)
        ders.append(str(p))
    code, gen, _ = cli(capsys, "ct", "keygen", "--out", key, "--json")
    assert code == 0 and gen["verifier_key"].startswith("trustchain.local/ct+")
    code, first, _ = cli(capsys, "ct", "add", "--log", log, str(pem), "--key", key, "--timestamp-ms", "5000",
                         "--json")
    assert code == 0 and first["tree_size"] == 6 and all("sct" in e for e in first["entries"])
    code, cp5, _ = cli(capsys, "ct", "checkpoint", "--log", log, "--key", key, "--json")
    assert code == 0 and cp5["tree_size"] == 6
    code, added, _ = cli(capsys, "ct", "add", "--log", log, *ders, str(pem), "--json")
    assert added["tree_size"] == 11 and [e["new"] for e in added["entries"]] == [True] * 5 + [False] * 6
    code, cp11, _ = cli(capsys, "ct", "checkpoint", "--log", log, "--key", key, "--json")
    leaves_root = b(cp11["root_hash"])

    leaf_hashes = [e["leaf_hash"] for e in first["entries"]] + [e["leaf_hash"] for e in added["entries"][:5]]
    for size in range(1, 12):
        for i in range(size):
            code, pr, _ = cli(capsys, "ct", "proof", "--log", log, "--leaf-hash", leaf_hashes[i], "--size", str(size),
                              "--json")
            assert code == 0 and pr["tree_size"] == size and pr["leaf_index"] == i
            assert rfc_root_from_inclusion(i, size, b(pr["leaf_hash"]), [b(x) for x in pr["audit_path"]]) \
                == b(pr["root_hash"])
    code, pr, _ = cli(capsys, "ct", "proof", "--log", log, "--cert", str(pem), "--json")
    assert pr["leaf_index"] == 0
    assert rfc_root_from_inclusion(0, 11, b(pr["leaf_hash"]), [b(x) for x in pr["audit_path"]]) == leaves_root
    for first in range(1, 12):
        code, cons, _ = cli(capsys, "ct", "consistency", "--log", log, "--from", str(first), "--to", "11", "--json")
        assert code == 0
        assert rfc_check_consistency(first, 11, b(cons["first_root"]), b(cons["second_root"]),
                                     [b(x) for x in cons["consistency"]])
        assert cons["second_root"] == cp11["root_hash"]
    assert b(cli(capsys, "ct", "consistency", "--log", log, "--from", "6", "--to", "6", "--json")[1]["first_root"]) \
        == b(cp5["root_hash"])

    code, ver, _ = cli(capsys, "ct", "verify", "--log", log, "--json")
    assert code == 0 and ver["ok"] and ver["checkpoints_checked"] == 2 and ver["tree_size"] == 11
    # An independent recomputation over the stored entries agrees with the signed root.
    data = (tmp_path / "log" / "entries.bin").read_bytes()
    leaves, pos = [], 0
    while pos < len(data):
        n = int.from_bytes(data[pos:pos + 4], "big")
        leaves.append(data[pos + 4:pos + 4 + n])
        pos += 4 + n
    assert rfc_mth(leaves) == leaves_root

    # Tampering with an entry (a byte of the last certificate's signature) is caught by verify.
    (tmp_path / "log" / "entries.bin").write_bytes(data[:-10] + bytes([data[-10] ^ 1]) + data[-9:])
    code, ver, _ = cli(capsys, "ct", "verify", "--log", log, "--json")
    assert code == 1 and any("11.note: root does not match" in p for p in ver["problems"])


def test_cli_errors_name_what_is_wrong(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    log = str(tmp_path / "log")
    with pytest.raises(SystemExit) as usage:  # argparse: exit 2 with the argument named
        main(["ct", "proof", "--log", log, "--leaf-hash", "AAAA"])
    assert usage.value.code == 2 and "--leaf-hash: 3 bytes, expected 32" in capsys.readouterr().err
    code, _, err = cli(capsys, "ct", "consistency", "--log", log, "--from", "1", "--to", "2")
    assert code == 2 and "not a CT log directory" in err
    bad = tmp_path / "bad.der"
    bad.write_bytes(b"\x30\x05abc")
    code, _, err = cli(capsys, "ct", "add", "--log", log, str(bad))
    assert code == 2 and "bad.der: certificate 0" in err
    code, _, err = cli(capsys, "ct", "add", "--log", log, str(tmp_path / "missing.pem"))
    assert code == 2 and "missing.pem: no such file" in err
    cert = tmp_path / "c.der"
    cert.write_bytes(make_cert("x.example"))
    assert cli(capsys, "ct", "add", "--log", log, str(cert))[0] == 0
    code, _, err = cli(capsys, "ct", "consistency", "--log", log, "--from", "1", "--to", "5")
    assert code == 2 and "--to: 5 is beyond the tree size 1" in err
    other = tmp_path / "o.der"
    other.write_bytes(make_cert("y.example"))
    code, out, _ = cli(capsys, "ct", "proof", "--log", log, "--cert", str(other))
    assert code == 1 and "not in the log" in out
    keyfile = tmp_path / "k"
    keyfile.write_text("zz\n")
    code, _, err = cli(capsys, "ct", "checkpoint", "--log", log, "--key", str(keyfile))
    assert code == 2 and "--key" in err and "hex" in err
    code, _, err = cli(capsys, "ct", "verify", "--log", log, "--vkey", "nonsense")
    assert code == 2 and "--vkey" in err


def test_cli_help_in_a_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "reference_node.cli", "ct", "--help"], capture_output=True,
                          text=True, check=False, timeout=60)
    assert proc.returncode == 0
    for command in ("keygen", "add", "checkpoint", "proof", "consistency", "verify"):
        assert command in proc.stdout


def test_checkpoint_with_another_key_is_refused_unless_forced(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    log, key, other = str(tmp_path / "log"), str(tmp_path / "key"), str(tmp_path / "other")
    assert cli(capsys, "ct", "keygen", "--out", key)[0] == 0
    assert cli(capsys, "ct", "keygen", "--out", other)[0] == 0
    cert = tmp_path / "c.der"
    cert.write_bytes(make_cert("x.example"))
    assert cli(capsys, "ct", "add", "--log", log, str(cert))[0] == 0
    code, signed, _ = cli(capsys, "ct", "checkpoint", "--log", log, "--key", key, "--json")
    assert code == 0
    note_file = tmp_path / "log" / "checkpoints" / "1.note"
    before = note_file.read_bytes()

    code, _, err = cli(capsys, "ct", "checkpoint", "--log", log, "--key", other)
    assert code == 2 and "--key" in err and signed["verifier_key"] in err and "--force" in err, err
    assert note_file.read_bytes() == before, "the checkpoint the log's key signed is untouched"
    code, _, err = cli(capsys, "ct", "checkpoint", "--log", log, "--key", key, "--name", "renamed.example/ct")
    assert code == 2 and "--force" in err, err  # the same key under another name would not verify either
    assert cli(capsys, "ct", "verify", "--log", log, "--json")[1]["ok"]

    code, forced, _ = cli(capsys, "ct", "checkpoint", "--log", log, "--key", other, "--force", "--json")
    assert code == 0 and forced["verifier_key"] != signed["verifier_key"]
    code, ver, _ = cli(capsys, "ct", "verify", "--log", log, "--json")
    assert code == 0 and ver["ok"], ver  # the new key is the log's now, and it signed the stored checkpoint
    assert cli(capsys, "ct", "checkpoint", "--log", log, "--key", key)[0] == 2  # and the old one is refused


def test_proof_negative_answers_with_json_name_the_flag_given(tmp_path: Path,
                                                              capsys: pytest.CaptureFixture[str]) -> None:
    log = str(tmp_path / "log")
    certs = []
    for i in range(3):
        certs.append(tmp_path / f"c{i}.der")
        certs[-1].write_bytes(make_cert(f"c{i}.example", serial=i + 1))
    assert cli(capsys, "ct", "add", "--log", log, *map(str, certs))[0] == 0
    absent = tmp_path / "absent.der"
    absent.write_bytes(make_cert("absent.example", serial=9))

    code, out, _ = cli(capsys, "ct", "proof", "--log", log, "--cert", str(absent), "--json")
    assert code == 1 and out["found"] is False and out["field"] == "--cert" and "not in the log" in out["error"]
    code, out, _ = cli(capsys, "ct", "proof", "--log", log, "--cert", str(certs[2]), "--size", "2", "--json")
    assert code == 1 and out["found"] is False and out["field"] == "--cert", out  # logged after size 2
    code, out, _ = cli(capsys, "ct", "proof", "--log", log, "--cert", str(certs[2]), "--size", "2")
    assert code == 1 and out.startswith("trustchain-cli: --cert: ") and "--leaf-hash" not in out
    code, out, _ = cli(capsys, "ct", "proof", "--log", log, "--leaf-hash", base64.b64encode(b"\x01" * 32).decode(),
                       "--json")
    assert code == 1 and out["found"] is False and out["field"] == "--leaf-hash"
