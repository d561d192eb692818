"""Against a real cluster over HTTP: clients write only as their own accounts.

The nodes run with `api.unsigned_writes = false` (the production default): a write must be signed by
the client's account key and is checked by every replica, so a client cannot act for another through
any node, and no node can act for a client.
"""

from __future__ import annotations

import base64
import hashlib
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.rcode
import dns.rrset
import pytest
from node_harness import Cluster, http

from reference_node.genesis import Genesis
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import kvstore, validation
from trustchain.app import trustchain as tcapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate
from trustchain.encoding import decode

ALICE = Ed25519AccountSigner(hashlib.sha256(b"alice").digest())
MALLORY = Ed25519AccountSigner(hashlib.sha256(b"mallory").digest())


class PublicDNS:
    """The "public DNS" the validators consult, on loopback: TXT records a test publishes."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                self._answer(wire, peer)
            except Exception:  # a malformed query must not stop the server
                continue

    def _answer(self, wire: bytes, peer: tuple[str, int]) -> None:
            query = dns.message.from_wire(wire)
            response = dns.message.make_response(query)
            name = query.question[0].name.to_text(omit_final_dot=True).lower()
            values = self.txt.get(name)
            if values is None:
                response.set_rcode(dns.rcode.NXDOMAIN)
            else:
                response.answer.append(dns.rrset.from_text_list(
                    query.question[0].name, 60, "IN", "TXT", [f'"{v}"' for v in values]))
            self.sock.sendto(response.to_wire(), peer)


@pytest.fixture(scope="module")
def public_dns() -> PublicDNS:
    return PublicDNS()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, public_dns: PublicDNS) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("accounts"), 4, 3, unsigned_writes=False, dns_listeners=False,
                 dns_upstream=(public_dns.address,)) as c:
        yield c


class Client:
    """A client holding its own account key; `n` keeps nonces unique."""

    def __init__(self, cluster: Cluster, signer: Ed25519AccountSigner) -> None:
        self.cluster, self.signer = cluster, signer
        self.id = Genesis.load(cluster.dir / "genesis.json").cluster_id
        self.account = account_id(signer.key)
        self.n = 0

    def _nonce(self) -> bytes:
        self.n += 1
        return hashlib.sha256(self.account + self.n.to_bytes(8, "big")).digest()[:16]

    def signed(self, target: str, payload: bytes) -> bytes:
        op = tcapp.signed_operation(self.signer, self.account, self.id, target, payload, nonce=self._nonce(),
                                    deadline_us=time.time_ns() // 1000 + 300_000_000)
        return decode(tcapp.Routed, op).payload

    def register(self) -> bytes:
        op = tcapp.registration_operation(self.signer, self.id, nonce=self._nonce(),
                                          deadline_us=time.time_ns() // 1000 + 300_000_000)
        return decode(tcapp.Routed, op).payload

    def post(self, write: bytes, node: int = 0) -> tuple[int, Any]:
        return http("POST", self.cluster.apis[node] + "/api/v1/write", {"write": base64.b64encode(write).decode()})


def _zone(origin: str) -> bytes:
    return dnsapp.create_command(origin, primary_ns=f"ns1.{origin}", admin=f"hostmaster.{origin}",
                                 nameservers=[f"ns1.{origin}"])


def test_unsigned_writes_are_refused_and_each_client_writes_only_as_itself(cluster: Cluster) -> None:
    code, res = http("POST", cluster.apis[0] + "/api/v1/kv", {"op": "put", "key": "k", "value": "v"})
    assert code == 403 and res["field"] == "authorization", res
    alice, mallory = Client(cluster, ALICE), Client(cluster, MALLORY)
    code, res = alice.post(alice.register(), node=0)
    assert code == 200 and res["result"]["status"] == "ok", res
    code, res = mallory.post(mallory.register(), node=1)
    assert code == 200 and res["result"]["status"] == "ok", res

    code, res = alice.post(alice.signed("dns", _zone("alice.example.")), node=0)
    assert code == 200 and res["result"]["origin"] == "alice.example.", res
    txt = ZoneUpdate("alice.example.", (AddRecords("_acme-challenge.www.alice.example.", "TXT", 60, ('"m"',)),))
    attacks = {
        "rewrite Alice's zone through another node": (mallory.signed("dns", dnsapp.update_command(txt)), 2,
                                                       "update.authorization"),
        "a zone under Alice's": (mallory.signed("dns", _zone("_acme-challenge.pay.alice.example.")), 3,
                                 "create.origin"),
        "a TLD": (mallory.signed("dns", _zone("com.")), 1, "create.origin"),
        "a public suffix": (mallory.signed("dns", _zone("co.uk.")), 1, "create.origin"),
        "an unserved name": (mallory.signed("dns", _zone("victim-bank.com.")), 2, "create.origin"),
        "a validator's operation": (mallory.signed("dns", dnsapp.tick_command()), 0, "authorization"),
    }
    for what, (write, node, field) in attacks.items():
        code, res = mallory.post(write, node)
        assert code == 422 and res["field"] == field, (what, res)

    put = alice.signed("kv", kvstore.put(b"alice/k", b"v"))
    code, res = alice.post(put, node=0)
    assert code == 200 and res["result"]["status"] == "ok", res
    code, res = alice.post(put, node=3)  # the same signed bytes again, through another node
    assert code == 422 and res["field"] == "nonce", res
    code, res = mallory.post(mallory.signed("kv", kvstore.put(b"alice/k", b"x")), node=1)
    assert code == 422 and res["field"] == "key", res
    forged = Client(cluster, MALLORY)
    forged.account = alice.account  # Mallory's key, Alice's account id
    code, res = forged.post(forged.signed("kv", kvstore.put(b"alice/k", b"x")), node=2)
    assert code == 422 and res["field"] == "signature", res
    code, res = http("POST", cluster.apis[0] + "/api/v1/write", {"write": "@@"})
    assert code == 400 and res["field"] == "write", res


def test_an_outside_name_is_validated_by_the_validators_own_lookups(cluster: Cluster, public_dns: PublicDNS) -> None:
    alice, mallory = Client(cluster, ALICE), Client(cluster, MALLORY)
    alice.n, mallory.n = 1000, 1000  # fresh nonces (the accounts exist from the test above, or are made here)
    alice.post(alice.register(), node=0)
    mallory.post(mallory.register(), node=1)
    code, res = alice.post(alice.signed("validate", validation.open_command("alice-corp.net")), node=1)
    assert code == 200 and res["result"]["status"] == "open", res
    public_dns.txt[res["result"]["record_name"]] = [res["result"]["expected"]]  # Alice publishes her record
    code, ready = alice.post(alice.signed("validate", validation.ready_command(res["result"]["validation_id"])))
    assert code == 200 and ready["result"]["status"] == "ready", ready
    code, res = mallory.post(mallory.signed("validate", validation.open_command("victim-bank.net")), node=2)
    assert code == 200, res  # nobody publishes Mallory's record
    code, res = mallory.post(mallory.signed("validate", validation.ready_command(res["result"]["validation_id"])))
    assert code == 200, res
    deadline = time.monotonic() + 120  # four lookups and four ordered observations, on a loaded machine
    while True:
        code, res = alice.post(alice.signed("dns", _zone("alice-corp.net.")), node=0)
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 200 and res["result"]["origin"] == "alice-corp.net.", res
    time.sleep(2)  # every validator has looked by now
    code, res = mallory.post(mallory.signed("dns", _zone("victim-bank.net.")), node=3)
    assert code == 422 and res["field"] == "create.origin", res
    code, res = mallory.post(mallory.signed("dns", _zone("pay.alice-corp.net.")), node=3)
    assert code == 422 and res["field"] == "create.origin", res
