"""`trustchain-cli node ...` against a real 4-validator cluster on 127.0.0.1: every command's readable
and --json output, the dns-01 flow it runs for certificate requests, exit codes (0 ok, 1 negative,
2 usage, 3 node unreachable or failing), and that the offline areas (`cert verify`, `ct`, `dns`) are
unchanged."""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from node_harness import REPO, Cluster

from reference_node import cli
from reference_node.cluster import free_ports

ZONE = "cli.example."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("cli-cluster"), nodes=4, threshold=3, timeout="1s", dns_listeners=False)
    with c:
        yield c


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def run_json(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, object]:
    code, out, err = run(capsys, *argv, "--json")
    assert out.strip(), err
    return code, json.loads(out)


@pytest.fixture(scope="module")
def zone(cluster: Cluster) -> str:
    code = cli.main(["node", "--node", cluster.apis[0], "dns", "update", ZONE, "--create", "--ns", f"ns1.{ZONE}",
                     "--add", "www 300 A 192.0.2.10", "--add", "www 300 A 192.0.2.11",
                     "--add", f"@ MX 10 mail.{ZONE}"])
    assert code == 0
    for i in range(len(cluster.apis)):
        cluster.wait_for(lambda i=i: ZONE in cluster.status(i)["dns"]["zones"], what=f"zone on node{i}")
    return ZONE


def test_health_and_status(cluster: Cluster, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "node", "--node", cluster.apis[1], "health")
    assert code == 0 and out.startswith(f"{cluster.apis[1]}: ok"), out
    code, doc = run_json(capsys, "node", "health", "--node", cluster.apis[1])  # options after the command too
    assert code == 0 and isinstance(doc, dict) and doc["status"] == "ok" and doc["checks"]["storage"] is True
    code, out, _ = run(capsys, "node", "--node", cluster.apis[2], "consensus", "status")
    assert code == 0 and "node2 (replica 2 of 4, f=1" in out and "primary replica" in out, out
    code, doc = run_json(capsys, "node", "--node", cluster.apis[2], "consensus", "status")
    assert isinstance(doc, dict) and doc["replica"] == 2 and doc["validators"] == 4 and doc["ca"]["threshold"] == 3


def test_dns_update_and_resolve(cluster: Cluster, zone: str, capsys: pytest.CaptureFixture[str]) -> None:
    api = cluster.apis[3]  # written through node0, read on node3
    code, out, _ = run(capsys, "node", "--node", api, "dns", "resolve", f"www.{zone}")
    assert code == 0 and "NOERROR (authoritative)" in out and "192.0.2.10" in out and "192.0.2.11" in out, out
    code, doc = run_json(capsys, "node", "--node", api, "dns", "resolve", zone, "MX", "--validate")
    assert code == 0 and isinstance(doc, dict)
    assert doc["answer"][0] == f"{zone} 3600 IN MX 10 mail.{zone}" and doc["dnssec"]["secure"] is True, doc
    assert "RRSIG MX 15" in doc["answer"][1]  # --validate asks with the DO bit
    code, out, _ = run(capsys, "node", "--node", api, "dns", "resolve", f"www.{zone}", "--dnssec")
    assert code == 0 and "RRSIG A 15" in out, out
    # a negative answer is exit 1 and shows the rcode
    code, out, _ = run(capsys, "node", "--node", api, "dns", "resolve", f"nope.{zone}")
    assert code == 1 and "NXDOMAIN" in out and "SOA" in out, out
    # replace, delete and delete-name apply in order, atomically
    code, out, _ = run(capsys, "node", "--node", cluster.apis[1], "dns", "update", zone,
                       "--replace", "www 60 A 192.0.2.99", "--add", "tmp TXT \"x\"", "--delete-name", "tmp",
                       "--add", "old AAAA 2001:db8::1", "--delete", "old AAAA")
    assert code == 0 and f"{zone}: 5 operations: updated at serial " in out, out
    cluster.wait_for(lambda: run(capsys, "node", "--node", api, "dns", "resolve", f"www.{zone}")[1].count("192.0.2.")
                     == 1, what="replaced RRset on node3")
    code, out, _ = run(capsys, "node", "--node", api, "dns", "resolve", f"www.{zone}")
    assert "60 IN A 192.0.2.99" in out
    assert run(capsys, "node", "--node", api, "dns", "resolve", f"tmp.{zone}", "TXT")[0] == 1


def test_dns_update_errors(cluster: Cluster, zone: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    api = cluster.apis[0]
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", "absent.example", "--add", "www A 192.0.2.1")
    assert code == 1 and "HTTP 422" in err and "update.origin: no such zone absent.example." in err, err
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", zone, "--add", "www A not-an-address")
    assert code == 1 and "ops[0].values[0]" in err and "not-an-address" in err, err
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", zone, "--add", "www")
    assert code == 2 and "--add: 'www': expected 'NAME [TTL] TYPE DATA'" in err, err
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", zone)
    assert code == 2 and "nothing to do" in err
    code, _, err = run(capsys, "node", "--node", api, "dns", "resolve", "bad..name")
    assert code == 2 and "HTTP 400" in err and "domain: not a valid domain name" in err, err
    body = tmp_path / "update.json"
    body.write_text(json.dumps({"update": {"origin": zone, "ops": [
        {"op": "add", "name": f"file.{zone}", "type": "TXT", "ttl": 60, "values": ['"from a file"']}]}}))
    code, out, _ = run(capsys, "node", "--node", api, "dns", "update", "--file", str(body))
    assert code == 0 and out.startswith(f"{zone}: updated at serial "), out
    body.write_text("{not json")
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", "--file", str(body))
    assert code == 2 and f"--file: {body} is not valid JSON" in err
    # --create with records is one command: a refused record leaves no zone behind
    code, _, err = run(capsys, "node", "--node", api, "dns", "update", "atomic.example", "--create",
                       "--add", "www A 192.0.2.1", "--add", "bad A 999.1.1.1")
    assert code == 1 and "ops[1].values[0]" in err and "999.1.1.1" in err, err
    assert "atomic.example." not in cluster.status(0)["dns"]["zones"]
    code, out, err = run(capsys, "node", "--node", api, "dns", "update", "atomic.example", "--create",
                         "--add", "www A 192.0.2.1")
    assert code == 0 and out.strip() == "atomic.example.: 1 operation: created at serial 2", (out, err)
    code, out, err = run(capsys, "node", "--node", api, "dns", "transfer", "atomic.example",
                         "--allow", "xfr.atomic.example.", "--notify", "192.0.2.53:5353")
    assert code == 0 and "transfers with key xfr.atomic.example. allowed" in out, (out, err)
    code, _, err = run(capsys, "node", "--node", api, "dns", "transfer", "atomic.example", "--allow", "k.", "--notify",
                       "ns1.example.com")
    assert code == 1 and "allow_transfer.notify[0]" in err and "not an IP address" in err, err
    code, _, err = run(capsys, "node", "--node", api, "dns", "transfer", "atomic.example")
    assert code == 2 and "give exactly one of --allow KEY and --deny KEY" in err, err


def test_certificate_lifecycle(cluster: Cluster, zone: str, capsys: pytest.CaptureFixture[str],
                               tmp_path: Path) -> None:
    api = cluster.apis[1]
    key, cert_path = tmp_path / "www.key", tmp_path / "www.pem"
    code, out, err = run(capsys, "node", "--node", api, "cert", "request", f"www.{zone}".rstrip("."),
                         f"api.{zone}".rstrip("."), "--key-out", str(key), "--out", str(cert_path))
    assert code == 0, err
    assert "issued serial" in out and f"certificate written to {cert_path}" in out, out
    assert "published dns-01 TXT _acme-challenge.www.cli.example. in cli.example." in err, err
    assert oct(key.stat().st_mode & 0o777) == "0o600"
    cert = x509.load_pem_x509_certificate(cert_path.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert sorted(san.get_values_for_type(x509.DNSName)) == ["api.cli.example", "www.cli.example"]
    serial = out.split("issued serial ", 1)[1].split()[0]
    assert int(serial, 16) == cert.serial_number
    # the challenge TXT records were removed after issuance
    assert run(capsys, "node", "--node", api, "dns", "resolve", "_acme-challenge.www.cli.example", "TXT")[0] == 1

    # get on another node, as JSON; write the PEM with its chain
    other = cluster.apis[3]
    cluster.wait_for(lambda: cli.main(["node", "--node", other, "cert", "get", serial, "--json"]) == 0,
                     what="certificate on node3")
    capsys.readouterr()
    code, doc = run_json(capsys, "node", "--node", other, "cert", "get", serial)
    assert code == 0 and isinstance(doc, dict) and doc["status"] == "issued" and doc["revoked"] is False
    full = tmp_path / "full.pem"
    code, out, _ = run(capsys, "node", "--node", other, "cert", "get", serial, "--out", str(full), "--with-chain")
    assert code == 0 and len(x509.load_pem_x509_certificates(full.read_bytes())) == 3

    # verify: by serial (root from the node) and by file against a pinned root
    code, out, _ = run(capsys, "node", "--node", other, "cert", "verify", serial, "--name", "api.cli.example")
    assert code == 0 and f"serial {serial}: VALID" in out and "chain: OK (3 certificates)" in out, out
    code, doc = run_json(capsys, "node", "--node", other, "cert", "verify", "--cert", str(cert_path),
                         "--root", str(cluster.dir / "root.pem"))
    assert code == 0 and isinstance(doc, dict) and doc["valid"] is True and doc["serial"] == serial
    code, out, _ = run(capsys, "node", "--node", other, "cert", "verify", serial, "--name", "other.cli.example")
    assert code == 1 and "INVALID" in out and "chain: FAILED" in out, out

    # CT: proof and verified inclusion in the signed checkpoint, by serial, file and hash
    code, doc = run_json(capsys, "node", "--node", other, "ct", "proof", "--serial", serial)
    assert code == 0 and isinstance(doc, dict) and doc["verifies"] is True
    leaf_hash = base64.b64decode(doc["leaf_hash"]).hex()
    code, out, _ = run(capsys, "node", "--node", other, "ct", "verify", "--cert", str(cert_path))
    assert code == 0 and f"leaf {leaf_hash}: INCLUDED" in out and "inclusion at index" in out, out
    code, doc = run_json(capsys, "node", "--node", cluster.apis[0], "ct", "verify", leaf_hash)
    assert code == 0 and isinstance(doc, dict) and doc["inclusion"] == "verified"
    code, _, err = run(capsys, "node", "--node", other, "ct", "proof", "00" * 32)
    assert code == 1 and "HTTP 404" in err and "hash:" in err, err
    code, _, err = run(capsys, "node", "--node", other, "ct", "proof")
    assert code == 2 and "exactly one of HASH, --cert FILE or --serial SERIAL" in err

    # renew: new serial, same names, ownership proven again
    code, doc = run_json(capsys, "node", "--node", api, "cert", "renew", serial, "--key-out", str(tmp_path / "r.key"))
    assert code == 0 and isinstance(doc, dict) and doc["status"] == "issued" and doc["serial"] != serial
    assert sorted(doc["names"]) == ["api.cli.example", "www.cli.example"]

    # revoke (through another node: the unsigned endpoints of a development cluster share one account;
    # per-account revocation rights are tested with signed writes); afterwards verify says revoked (exit 1)
    code, out, _ = run(capsys, "node", "--node", cluster.apis[2], "cert", "revoke", serial, "--reason",
                       "keyCompromise")
    assert code == 0 and f"revoked serial {serial} (keyCompromise)" in out, out
    code, out, _ = run(capsys, "node", "--node", api, "cert", "verify", serial)
    assert code == 1 and "INVALID" in out and "revocation: revoked" in out, out
    code, out, _ = run(capsys, "node", "--node", api, "cert", "get", serial)
    assert code == 0 and "revoked (keyCompromise)" in out, out


def test_certificate_errors(cluster: Cluster, zone: str, capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    api = cluster.apis[0]
    code, _, err = run(capsys, "node", "--node", api, "cert", "request", "www.cli.example")
    assert code == 2 and "--key-out: required without --csr" in err, err
    code, _, err = run(capsys, "node", "--node", api, "cert", "request", "www.elsewhere.example",
                       "--key-out", str(tmp_path / "k"))
    assert code == 1 and "no zone served by the network holds _acme-challenge.www.elsewhere.example." in err, err
    bad = tmp_path / "bad.csr"
    bad.write_text("not a csr")
    code, _, err = run(capsys, "node", "--node", api, "cert", "request", "www.cli.example", "--csr", str(bad))
    assert code == 2 and f"--csr: {bad} is not a PEM or DER certificate request" in err, err
    code, _, err = run(capsys, "node", "--node", api, "cert", "get", "abcdef")
    assert code == 1 and "HTTP 404" in err and "id: no certificate with this serial" in err, err
    with pytest.raises(SystemExit) as exc:
        cli.main(["node", "--node", api, "cert", "get", "xyz"])
    assert exc.value.code == 2
    assert "'xyz' is not a positive hexadecimal serial number" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        cli.main(["node", "cert", "revoke", "ab", "--reason", "bogus"])
    assert exc.value.code == 2 and "'bogus' is not a CRLReason" in capsys.readouterr().err


def test_unreachable_and_bad_node(capsys: pytest.CaptureFixture[str]) -> None:
    port = free_ports(1)[0]  # nothing listens there
    code, _, err = run(capsys, "node", "--node", f"127.0.0.1:{port}", "health")
    assert code == 3 and f"node http://127.0.0.1:{port}: cannot connect" in err, err
    code, _, err = run(capsys, "node", "--node", "ftp://x", "health")
    assert code == 2 and "--node: 'ftp://x' is not an http(s) URL" in err, err
    code, _, err = run(capsys, "node", "--node", "127.0.0.1:99999", "health")
    assert code == 2 and "invalid port" in err, err


def test_entry_point_reads_node_from_environment(cluster: Cluster) -> None:
    env = dict(os.environ, TRUSTCHAIN_NODE=cluster.apis[2], PYTHONPATH=str(REPO))
    out = subprocess.run([sys.executable, "-m", "reference_node.cli", "node", "consensus", "status", "--json"],
                         capture_output=True, text=True, env=env, timeout=30, check=False)
    assert out.returncode == 0, out.stderr
    assert json.loads(out.stdout)["node_id"] == "node2"
    out = subprocess.run([sys.executable, "-m", "reference_node.cli", "node", "--node", cluster.apis[0], "health"],
                         capture_output=True, text=True, env=env, timeout=30, check=False)
    assert out.returncode == 0 and cluster.apis[0] in out.stdout  # the flag wins over the variable


def test_offline_areas_unchanged(capsys: pytest.CaptureFixture[str]) -> None:
    parser = cli.build_parser()
    areas = parser._subparsers._group_actions[0].choices  # type: ignore[union-attr]
    assert set(areas) >= {"ca", "cert", "ct", "dns", "node"}
    # the offline `cert verify` still validates files and requires --root
    with pytest.raises(SystemExit) as exc:
        cli.main(["cert", "verify", "x.pem"])
    assert exc.value.code == 2 and "--root" in capsys.readouterr().err
    for argv in (["ct", "--help"], ["dns", "resolve", "--help"], ["node", "--help"], ["node", "cert", "--help"]):
        with pytest.raises(SystemExit) as exc:
            cli.main(argv)
        assert exc.value.code == 0
    out = capsys.readouterr().out
    assert "talk to a running validator over its HTTP API" in out and "request" in out
