"""`trustchain-cli account ...` and the signed writes of `trustchain-cli node ...` against a real
4-validator cluster that refuses unsigned writes (`api.unsigned_writes = false`, the production
setting): an account is made and registered, owns a zone, obtains and revokes a certificate, and a
second account cannot touch the first's zone or certificate. Errors are messages with exit codes,
never tracebacks."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from node_harness import REPO, Cluster
from signed_client import PublicDNS

from reference_node import cli
from reference_node.cluster import free_ports

ZONE = "alice.example."


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, public_dns: PublicDNS) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("cli-accounts"), nodes=4, threshold=3, timeout="1s", dns_listeners=False,
                 unsigned_writes=False, dns_upstream=(public_dns.address,)) as c:
        yield c


@pytest.fixture(scope="module")
def keys(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("keys")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = cli.main(list(argv))
    out, err = capsys.readouterr()
    assert "Traceback" not in out + err
    return code, out, err


def node(cluster: Cluster, i: int, *argv: str) -> list[str]:
    return ["node", "--node", cluster.apis[i], *argv]


@pytest.fixture(scope="module")
def alice(cluster: Cluster, keys: Path) -> Path:
    """Alice's key, registered, owning ZONE with one A record."""
    key = keys / "alice.key"
    assert cli.main(["account", "new", "--key", str(key)]) == 0
    assert cli.main(node(cluster, 1, "account", "register", "--key", str(key))) == 0
    assert cli.main(node(cluster, 0, "dns", "update", ZONE, "--create", "--add", "www 300 A 192.0.2.10",
                         "--account-key", str(key))) == 0
    return key


@pytest.fixture(scope="module")
def bob(cluster: Cluster, keys: Path) -> Path:
    key = keys / "bob.key"
    assert cli.main(["account", "new", "--key", str(key), "--type", "p256"]) == 0
    assert cli.main(node(cluster, 2, "account", "register", "--key", str(key))) == 0
    return key


def test_account_key_files(keys: Path, capsys: pytest.CaptureFixture[str]) -> None:
    key = keys / "files.key"
    code, out, _ = run(capsys, "account", "new", "--key", str(key), "--type", "p256")
    assert code == 0 and "(p256): key written to" in out, out
    assert key.stat().st_mode & 0o777 == 0o600
    assert serialization.load_pem_private_key(key.read_bytes().split(b"\n", 1)[1], None) is not None
    account = out.split()[1]
    code, out, _ = run(capsys, "account", "show", "--key", str(key), "--json")
    assert code == 0 and json.loads(out)["account"] == account and len(account) == 64
    before = key.read_bytes()
    code, _, err = run(capsys, "account", "new", "--key", str(key))
    assert code == 2 and "exists; refusing to overwrite a private key" in err and key.read_bytes() == before
    code, _, err = run(capsys, "account", "show", "--key", str(keys / "absent.key"))
    assert code == 2 and "absent.key: no such file" in err, err
    junk = keys / "junk.key"
    junk.write_text("not a key\n")
    code, _, err = run(capsys, "account", "show", "--key", str(junk))
    assert code == 2 and "junk.key: no PEM private key" in err, err
    cert = keys / "cert.pem"  # a PEM file, but not a private key
    cert.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    code, _, err = run(capsys, "account", "show", "--key", str(cert))
    assert code == 2 and "cert.pem: not a valid PEM private key" in err, err


def test_unsigned_writes_are_refused_with_a_pointer_to_account_keys(cluster: Cluster,
                                                                    capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *node(cluster, 0, "dns", "update", "nobody.example", "--create"))
    assert code == 2 and "HTTP 403" in err and "pass --account-key FILE" in err, err
    assert "trustchain-cli node account register" in err


def test_zone_records_and_a_certificate_as_an_account(cluster: Cluster, alice: Path, tmp_path: Path,
                                                      capsys: pytest.CaptureFixture[str],
                                                      monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TRUSTCHAIN_ACCOUNT_KEY", str(alice))  # the key from the environment
    code, out, err = run(capsys, *node(cluster, 3, "dns", "update", ZONE, "--add", 'note 60 TXT "hello"'))
    assert code == 0 and f"{ZONE}: 1 operation: updated at serial" in out, err
    cluster.wait_for(lambda: cli.main(node(cluster, 1, "dns", "resolve", f"note.{ZONE}", "TXT")) == 0,
                     what="TXT record on node1")
    code, out, _ = run(capsys, *node(cluster, 1, "dns", "resolve", f"note.{ZONE}", "TXT"))
    assert code == 0 and '"hello"' in out, out

    key_out, cert_out = tmp_path / "www.key", tmp_path / "www.pem"
    code, out, err = run(capsys, *node(cluster, 2, "cert", "request", "www.alice.example", "--key-out", str(key_out),
                                       "--out", str(cert_out)))
    assert code == 0 and "issued serial" in out, (out, err)
    assert "published dns-01 TXT _acme-challenge.www.alice.example. in alice.example." in err, err
    cert = x509.load_pem_x509_certificate(cert_out.read_bytes())
    san = cert.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["www.alice.example"]
    serial = out.split("issued serial ", 1)[1].split()[0]
    assert int(serial, 16) == cert.serial_number
    # the challenge record was removed afterwards, by a signed write too
    assert run(capsys, *node(cluster, 2, "dns", "resolve", "_acme-challenge.www.alice.example", "TXT"))[0] == 1

    code, out, _ = run(capsys, *node(cluster, 0, "cert", "revoke", serial, "--reason", "keyCompromise"))
    assert code == 0 and f"revoked serial {serial} (keyCompromise)" in out, out
    code, out, _ = run(capsys, *node(cluster, 0, "cert", "revoke", serial))
    assert code == 0 and f"serial {serial} was already revoked" in out, out
    cluster.wait_for(lambda: cli.main(node(cluster, 3, "cert", "verify", serial)) == 1, what="revoked on node3")
    code, out, _ = run(capsys, *node(cluster, 3, "cert", "get", serial))
    assert code == 0 and "revoked (keyCompromise)" in out, out


def test_another_account_cannot_touch_the_zone_or_the_certificate(cluster: Cluster, alice: Path, bob: Path,
                                                                  tmp_path: Path,
                                                                  capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *node(cluster, 1, "dns", "update", ZONE, "--replace", "www 60 A 203.0.113.66",
                                     "--account-key", str(bob)))
    assert code == 1 and "dns update: refused by the network: update.authorization:" in err, err
    code, _, err = run(capsys, *node(cluster, 2, "dns", "update", f"sub.{ZONE}", "--create",
                                     "--account-key", str(bob)))
    assert code == 1 and "refused by the network: create.origin:" in err, err
    code, out, _ = run(capsys, *node(cluster, 3, "dns", "resolve", f"www.{ZONE}"))
    assert code == 0 and "192.0.2.10" in out and "203.0.113.66" not in out, out
    # Bob cannot publish a dns-01 record in Alice's zone, so he gets no certificate for her names
    code, _, err = run(capsys, *node(cluster, 0, "cert", "request", "www.alice.example", "--key-out",
                                     str(tmp_path / "b.key"), "--account-key", str(bob)))
    assert code == 1 and "update.authorization" in err, err

    code, out, _ = run(capsys, *node(cluster, 0, "cert", "request", "api.alice.example", "--key-out",
                                     str(tmp_path / "a.key"), "--account-key", str(alice)))
    assert code == 0, out
    serial = out.split("issued serial ", 1)[1].split()[0]
    code, _, err = run(capsys, *node(cluster, 1, "cert", "revoke", serial, "--account-key", str(bob)))
    assert code == 1 and "cert revoke: refused by the network:" in err, err
    code, out, _ = run(capsys, *node(cluster, 1, "cert", "get", serial))
    assert code == 0 and f"serial {serial}: issued" in out, out


def test_rollover_and_deactivation(cluster: Cluster, keys: Path, bob: Path,
                                   capsys: pytest.CaptureFixture[str]) -> None:
    old, new = keys / "carol.key", keys / "carol-2.key"
    assert cli.main(["account", "new", "--key", str(old)]) == 0
    code, _, err = run(capsys, *node(cluster, 0, "dns", "update", "carol.example", "--create",
                                     "--account-key", str(old)))
    assert code == 1 and "account: not registered" in err and "node account register" in err, err
    assert cli.main(node(cluster, 0, "account", "register", "--key", str(old))) == 0
    capsys.readouterr()
    code, out, _ = run(capsys, *node(cluster, 0, "account", "register", "--key", str(old)))
    assert code == 0 and "already registered" in out, out
    code, doc_out, _ = run(capsys, "account", "show", "--key", str(old), "--json")
    account = json.loads(doc_out)["account"]

    bob_before = bob.read_bytes()  # a key that already serves another account: refused, and the file restored
    code, _, err = run(capsys, *node(cluster, 1, "account", "rollover", "--key", str(old), "--new-key", str(bob)))
    assert code == 1 and "account rollover: refused by the network: new_key:" in err, err
    assert bob.read_bytes() == bob_before
    code, out, err = run(capsys, *node(cluster, 1, "account", "rollover", "--key", str(old), "--new-key", str(new),
                                       "--type", "p256"))
    assert code == 0 and f"account {account}: key replaced" in out, (out, err)
    assert new.stat().st_mode & 0o777 == 0o600
    code, out, _ = run(capsys, "account", "show", "--key", str(new))
    assert code == 0 and f"account {account}" in out and "rolled-over key" in out, out
    code, _, err = run(capsys, *node(cluster, 2, "dns", "update", "carol.example", "--create",
                                     "--account-key", str(old)))
    assert code == 1 and "signature:" in err, err
    code, out, err = run(capsys, *node(cluster, 2, "dns", "update", "carol.example", "--create",
                                       "--account-key", str(new)))
    assert code == 0 and "carol.example.: created" in out, err

    code, _, err = run(capsys, *node(cluster, 3, "account", "deactivate", "--key", str(new)))
    assert code == 2 and "add --yes" in err, err
    code, out, _ = run(capsys, *node(cluster, 3, "account", "deactivate", "--key", str(new), "--yes"))
    assert code == 0 and "deactivated" in out, out
    code, _, err = run(capsys, *node(cluster, 3, "dns", "update", "carol.example", "--add", "x TXT \"y\"",
                                     "--account-key", str(new)))
    assert code == 1 and "account: deactivated" in err, err


def test_cluster_pinning_and_errors(cluster: Cluster, alice: Path, keys: Path, tmp_path: Path,
                                    capsys: pytest.CaptureFixture[str]) -> None:
    genesis = cluster.dir / "genesis.json"
    code, _, err = run(capsys, *node(cluster, 0, "dns", "update", ZONE, "--add", "pinned TXT \"x\"",
                                       "--account-key", str(alice), "--genesis", str(genesis)))
    assert code == 0, err
    other = tmp_path / "other-genesis.json"
    doc = json.loads(genesis.read_text())
    doc["network"] = "othernet"
    other.write_text(json.dumps(doc))
    code, _, err = run(capsys, *node(cluster, 0, "dns", "update", ZONE, "--add", "other TXT \"x\"",
                                     "--account-key", str(alice), "--genesis", str(other)))
    assert code == 1 and "refusing to sign for another cluster" in err, err
    code, _, err = run(capsys, *node(cluster, 0, "dns", "update", ZONE, "--add", "x TXT \"x\"",
                                     "--account-key", str(keys / "missing.key")))
    assert code == 2 and "--account-key:" in err and "missing.key: no such file" in err, err
    port = free_ports(1)[0]
    code, _, err = run(capsys, "node", "--node", f"127.0.0.1:{port}", "cert", "revoke", "ab",
                       "--account-key", str(alice))
    assert code == 3 and "cannot connect" in err, err
    # the entry point: a bad key file from the environment is a message, not a traceback
    env = dict(os.environ, PYTHONPATH=str(REPO), TRUSTCHAIN_ACCOUNT_KEY=str(tmp_path))
    proc = subprocess.run([sys.executable, "-m", "reference_node.cli", *node(cluster, 0, "dns", "update", ZONE,
                                                                          "--add", "x TXT \"x\"")],
                          capture_output=True, text=True, env=env, timeout=60, check=False)
    assert proc.returncode == 2 and "$TRUSTCHAIN_ACCOUNT_KEY:" in proc.stderr, proc.stderr
    assert "Traceback" not in proc.stderr


def test_an_outside_name_validated_through_the_cli(cluster: Cluster, alice: Path, bob: Path, public_dns: PublicDNS,
                                                   capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(capsys, *node(cluster, 0, "validate", "open", "alice-corp.net"))
    assert code == 2 and "--account-key: required" in err, err
    code, out, err = run(capsys, *node(cluster, 1, "validate", "open", "alice-corp.net", "--account-key", str(alice),
                                       "--json"))
    assert code == 0, err
    opened = json.loads(out)
    assert opened["status"] == "open" and opened["record_name"] == "_acme-challenge.alice-corp.net", opened
    code, _, err = run(capsys, *node(cluster, 1, "validate", "ready", str(opened["validation_id"]),
                                     "--account-key", str(bob)))
    assert code == 1 and "validate ready: refused by the network:" in err, err
    public_dns.txt[opened["record_name"]] = [opened["txt_value"]]  # Alice publishes her record
    code, out, err = run(capsys, *node(cluster, 2, "validate", "ready", str(opened["validation_id"]),
                                       "--account-key", str(alice)))
    assert code == 0 and "the validators now look up _acme-challenge.alice-corp.net" in out, err
    deadline = time.monotonic() + 120  # four lookups and four ordered observations, on a loaded machine
    while True:
        code, out, err = run(capsys, *node(cluster, 0, "dns", "update", "alice-corp.net", "--create",
                                           "--account-key", str(alice)))
        if code == 0 or time.monotonic() > deadline:
            break
        assert "create.origin" in err, err
        time.sleep(0.5)
    assert code == 0 and "alice-corp.net.: created" in out, err
