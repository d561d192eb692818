"""Attacks on a real 5-validator cluster over HTTP, each its own test: Mallory against Alice.

The cluster runs with the production defaults that matter here: writes must be signed by the client's own
account (`api.unsigned_writes = false`) and each node allows 10 writes/s per client address. Validator 0
consults a lying "public DNS" (a poisoned or Byzantine perspective); the other four consult an honest one.
Each client sends from its own loopback address.
"""

from __future__ import annotations

import base64
import hashlib
import re
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import ed25519
from node_harness import Cluster
from signed_client import Client, PublicDNS, new_csr, request, zone_command

from trustchain.accounts import Ed25519AccountSigner
from trustchain.app import kvstore, validation
from trustchain.ca import commands as cacommands
from trustchain.ca import ownership
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, DeleteRRset, ZoneUpdate

ALICE_KEY = Ed25519AccountSigner(hashlib.sha256(b"alice").digest())
MALLORY_KEY = Ed25519AccountSigner(hashlib.sha256(b"mallory").digest())
ALICE_ZONE = "alice.example."
MALLORY_ZONE = "mallory.example."
NODES = 5


@pytest.fixture(scope="module")
def lying_dns() -> PublicDNS:
    return PublicDNS()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, public_dns: PublicDNS,
            lying_dns: PublicDNS) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("attacks"), NODES, 3, unsigned_writes=False, dns_listeners=False,
                api_write_rate=10.0, dns_upstream=(public_dns.address,))
    node0 = c.configs[0]
    node0.write_text(re.sub(r"^upstream = .*$", f'upstream = ["{lying_dns.address}"]', node0.read_text(),
                            flags=re.M))
    with c:
        yield c


@pytest.fixture(scope="module")
def alice(cluster: Cluster) -> Client:
    client = Client(cluster, ALICE_KEY, source="127.0.0.2")
    client.register()
    client.create_zone(ALICE_ZONE, node=1)
    return client


@pytest.fixture(scope="module")
def mallory(cluster: Cluster) -> Client:
    client = Client(cluster, MALLORY_KEY, source="127.0.0.3")
    client.register(node=2)
    client.create_zone(MALLORY_ZONE, node=2)
    return client


@pytest.fixture(scope="module")
def alices_certificate(alice: Client) -> str:
    return alice.obtain(ALICE_ZONE, "www.alice.example", node=1)


def _refused(client: Client, target: str, payload: bytes, node: int, field: str) -> None:
    code, res = client.post(client.signed(target, payload), node)
    assert code == 422 and res["field"] == field, res


def test_writes_must_be_signed_and_each_client_writes_only_as_itself(cluster: Cluster, alice: Client,
                                                                     mallory: Client) -> None:
    code, res, _ = request("POST", cluster.apis[0] + "/api/v1/kv", {"op": "put", "key": "k", "value": "v"})
    assert code == 403 and res["field"] == "authorization", res
    put = alice.signed("kv", kvstore.put(b"alice/k", b"v"))
    code, res = alice.post(put, node=0)
    assert code == 200 and res["result"]["status"] == "ok", res
    code, res = alice.post(put, node=3)  # the same signed bytes again, through another node
    assert code == 422 and res["field"] == "nonce", res
    _refused(mallory, "kv", kvstore.put(b"alice/k", b"x"), 1, "key")
    forged = Client(cluster, MALLORY_KEY, source="127.0.0.3")
    forged.account = alice.account  # Mallory's key, Alice's account id
    _refused(forged, "kv", kvstore.put(b"alice/k", b"x"), 2, "signature")
    code, res, _ = request("POST", cluster.apis[0] + "/api/v1/write", {"write": "@@"})
    assert code == 400 and res["field"] == "write", res


def test_mallory_cannot_change_alices_zone_through_any_node(alice: Client, mallory: Client) -> None:
    txt = AddRecords(f"_acme-challenge.www.{ALICE_ZONE}", "TXT", 60, ('"mallory"',))
    for node in range(NODES):
        _refused(mallory, "dns", dnsapp.update_command(ZoneUpdate(ALICE_ZONE, (txt,))), node, "update.authorization")
    _refused(mallory, "dns", dnsapp.update_command(ZoneUpdate(ALICE_ZONE, (DeleteRRset(ALICE_ZONE, "NS"),))), 4,
             "update.authorization")
    _refused(mallory, "dns", zone_command(ALICE_ZONE), 3, "create.origin")  # create it again over hers
    # A record for Alice's name placed in Mallory's own zone is out of that zone.
    code, res = mallory.post(mallory.signed("dns", dnsapp.update_command(ZoneUpdate(MALLORY_ZONE, (txt,)))), 2)
    assert code == 422, res
    assert alice.write("kv", kvstore.put(b"alice/after", b"ok"))["status"] == "ok"


@pytest.mark.parametrize("origin", [".", "com.", "org.", "example.", "co.uk.", "github.io.", "internal.",
                                    "nodes.trustchain.internal.", "validator-1.nodes.trustchain.internal.",
                                    "_acme-challenge.www.alice.example.", "pay.alice.example."])
def test_mallory_cannot_create_the_root_a_tld_a_public_suffix_or_a_zone_under_anothers(
        origin: str, alice: Client, mallory: Client) -> None:
    command = zone_command(origin) if origin != "." else dnsapp.create_command(
        ".", primary_ns="ns1.mallory.example.", admin="hostmaster.mallory.example.",
        nameservers=["ns1.mallory.example."])
    _refused(mallory, "dns", command, 0, "create.origin")


def test_mallory_cannot_obtain_a_certificate_for_alices_names_by_any_path(
        alice: Client, mallory: Client, alices_certificate: str) -> None:
    name = "www.alice.example"
    # 1. Her own challenge for Alice's name: she cannot publish its record, so her proof does not hold.
    [chal] = mallory.challenge(name, node=3)
    code, res = mallory.request_certificate((name,), (chal["key_authorization"],), node=3)
    assert code == 422 and res["field"] == "ownership", res
    # 2. Alice's record for a fresh challenge of Alice's is public; her proof is bound to Alice's account.
    [alices] = alice.challenge(name, node=1)
    alice.publish_txt(ALICE_ZONE, f"_acme-challenge.{name}.", ownership.dns01_txt(alices["key_authorization"]))
    code, res = mallory.request_certificate((name,), (alices["key_authorization"],), node=4)
    assert code == 422 and res["field"] == "ownership", res
    # 3. A certificate for her own name with Alice's name smuggled into the CSR.
    [own] = mallory.challenge("m.mallory.example", node=2)
    mallory.publish_txt(MALLORY_ZONE, "_acme-challenge.m.mallory.example.",
                        ownership.dns01_txt(own["key_authorization"]), node=2)
    code, res = mallory.request_certificate(("m.mallory.example",), (own["key_authorization"],), node=2,
                                            csr=new_csr("m.mallory.example", name))
    assert code == 422 and res["field"] == "names", res
    # 4. A validator's node name, which only that validator's key may request.
    node_name = "validator-1.nodes.trustchain.internal"
    [chal] = mallory.challenge(node_name, node=0)
    code, res = mallory.request_certificate((node_name,), (chal["key_authorization"],), node=0)
    assert code == 422 and res["field"] == "ownership" and "validator 1" in res["reason"], res
    # 5. An outside validation of Alice's (already served) name that nobody publishes gets her nothing.
    code, res = mallory.post(mallory.signed("validate", validation.open_command("alice.example")), 1)
    if code == 200:
        vid = res["result"]["validation_id"]
        assert mallory.post(mallory.signed("validate", validation.ready_command(vid)), 1)[0] in (200, 422)
    _refused(mallory, "dns", zone_command(ALICE_ZONE), 2, "create.origin")
    # 6. The unsigned endpoints act for nobody on a production node.
    code, res, _ = request("POST", mallory.cluster.apis[0] + "/api/v1/cert/challenge", {"names": [name]},
                           mallory.source)
    assert code == 403 and res["field"] == "authorization", res


def test_mallory_cannot_revoke_alices_certificate(cluster: Cluster, alice: Client, mallory: Client,
                                                 alices_certificate: str) -> None:
    serial = int(alices_certificate, 16)
    _refused(mallory, "ca", cacommands.revoke_command(serial, 1), 3, "authorization")
    forged = ed25519.Ed25519PrivateKey.generate().sign(
        ownership.revocation_proof_input(bytes.fromhex(alices_certificate), 1, mallory.account))
    _refused(mallory, "ca", cacommands.revoke_command(serial, 1, forged), 4, "authorization")
    code, res, _ = request("POST", cluster.apis[0] + "/api/v1/cert/revoke", {"serial": alices_certificate},
                           mallory.source)
    assert code == 403, res
    for node in range(NODES):
        code, rec = mallory.get(f"/api/v1/cert/{alices_certificate}", node)
        assert code == 200 and rec["revoked"] is False, rec


def test_mallory_cannot_use_alices_rate_limit(alice: Client, mallory: Client) -> None:
    """Mallory spends her own account's hourly request limit; Alice's first request is still served."""
    limit = 50
    names = [f"r{i}.mallory.example" for i in range(limit)]
    proofs = {c["name"]: c["key_authorization"] for c in mallory.challenge(*names, node=2)}
    update = ZoneUpdate(MALLORY_ZONE, tuple(
        AddRecords(f"_acme-challenge.{n}.", "TXT", 60, (f'"{ownership.dns01_txt(proofs[n])}"',)) for n in names))
    mallory.write("dns", dnsapp.update_command(update), node=2)
    used = 0
    for i, n in enumerate(names):
        code, res = mallory.request_certificate((n,), (proofs[n],), node=i % NODES, wait_s=0)
        if code == 422 and res["field"] == "rate":
            break
        assert code == 202 and res["result"]["status"] == cacommands.STATUS_PENDING, res  # asked not to wait
        assert res["issuance"]["location"] == f"/api/v1/cert/request/{res['result']['pending_ids'][0]}", res
        used += 1
    # Earlier tests may have spent some of her requests; the limit is hers either way.
    mallory.create_zone("mallory2.example.", node=3)
    [extra] = mallory.challenge("x.mallory2.example", node=3)
    mallory.publish_txt("mallory2.example.", "_acme-challenge.x.mallory2.example.",
                        ownership.dns01_txt(extra["key_authorization"]), node=3)
    code, res = mallory.request_certificate(("x.mallory2.example",), (extra["key_authorization"],), node=3)
    assert code == 422 and res["field"] == "rate" and "account" in res["reason"], res
    assert used >= limit - 3
    serial = alice.obtain(ALICE_ZONE, "api.alice.example", node=4)
    code, rec = alice.get(f"/api/v1/cert/{serial}", node=0)
    assert code == 200 and rec["names"] == ["api.alice.example"], rec


def test_a_write_flood_from_one_address_gets_429_while_another_client_is_served(
        cluster: Cluster, alice: Client) -> None:
    flooder = Client(cluster, Ed25519AccountSigner(hashlib.sha256(b"flooder").digest()), source="127.0.0.66")
    writes = [flooder.signed("kv", kvstore.put(b"k", b"v")) for _ in range(150)]

    def send(write: bytes) -> tuple[int, Any, dict[str, str]]:
        try:
            return request("POST", cluster.apis[3] + "/api/v1/write", {"write": base64.b64encode(write).decode()},
                           flooder.source)
        except ConnectionError:  # cut at the door (the per-address connection cap)
            return 0, None, {}

    with ThreadPoolExecutor(24) as pool:  # an attacker does not wait for answers
        answers = list(pool.map(send, writes))
    limited = [(res, headers) for code, res, headers in answers if code == 429]
    assert len(limited) >= 30, [code for code, _, _ in answers]
    assert all(res["field"] == "rate" and int(headers["retry-after"]) >= 1 for res, headers in limited)
    assert alice.write("kv", kvstore.put(b"alice/during-flood", b"ok"), node=3)["status"] == "ok"


def test_a_lying_validator_cannot_validate_an_outside_name_alone(
        cluster: Cluster, public_dns: PublicDNS, lying_dns: PublicDNS, alice: Client, mallory: Client) -> None:
    """Validator 0's resolver tells Mallory's story and hides Alice's record; the other four see the truth."""
    res = mallory.write("validate", validation.open_command("victim-bank.net"), node=0)
    lying_dns.lie_with = [res["expected"]]  # Mallory's record "exists" for validator 0 only
    mallory.write("validate", validation.ready_command(res["validation_id"]), node=0)
    res = alice.write("validate", validation.open_command("alice-corp.net"), node=1)
    public_dns.txt[res["record_name"]] = [res["expected"]]  # Alice publishes her record in the public DNS
    alice.write("validate", validation.ready_command(res["validation_id"]), node=1)
    deadline = time.monotonic() + 120  # five lookups and five ordered observations, on a loaded machine
    while True:
        code, created = alice.post(alice.signed("dns", zone_command("alice-corp.net.")), node=0)
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 200 and created["result"]["origin"] == "alice-corp.net.", created
    time.sleep(2)  # every validator has looked by now, validator 0 with its lie
    _refused(mallory, "dns", zone_command("victim-bank.net."), 0, "create.origin")
    _refused(mallory, "dns", zone_command("pay.alice-corp.net."), 3, "create.origin")
