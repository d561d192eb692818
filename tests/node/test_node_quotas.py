"""Against a real cluster over HTTP: one account that fills its storage is refused, another is not.

The cluster runs with small genesis limits so the test fills them quickly: Mallory fills her key-value
quota, her zone's record cap and her CT byte quota (with real certificates chaining to the cluster's
root, issued here with the validators' FROST shares); every refusal names the limit, and Alice's writes
of each kind still succeed. One address registering accounts in bulk through a node gets 429.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from collections.abc import Iterator
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.x509 import load_pem_x509_certificates
from node_harness import Cluster
from signed_client import Client

from reference_node.cluster import frost_sign, node_certificate
from reference_node.genesis import Genesis, load_key_package
from trustchain.accounts import Ed25519AccountSigner
from trustchain.app import kvstore
from trustchain.ct import app as ctapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate

LIMITS = {
    "kv": {"max_account_bytes": 4096},
    "dns": {"max_records_per_zone": 6},
    "ct": {"max_account_bytes": 2000},
}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("quotas"), 4, 3, unsigned_writes=False, dns_listeners=False,
                 limits=LIMITS) as c:
        yield c


def _client(cluster: Cluster, label: str) -> Client:
    return Client(cluster, Ed25519AccountSigner(hashlib.sha256(label.encode()).digest()))


def _ok(reply: tuple[int, Any]) -> None:
    code, doc = reply
    assert code == 200 and doc["result"]["status"] in ("ok", "duplicate"), doc


def _refused(reply: tuple[int, Any], field: str) -> None:
    code, doc = reply
    assert code == 422 and doc["field"] == field, doc


def _certificates(cluster: Cluster, count: int) -> tuple[list[bytes], bytes]:
    """`count` distinct leaf certificates issued by the cluster's intermediate (FROST, 3 shares)."""
    genesis = Genesis.load(cluster.dir / "genesis.json")
    keys = {i: load_key_package(cluster.dir / f"node{i - 1}" / "issuing.share.json") for i in (1, 2, 3)}
    sign = frost_sign(keys, genesis.issuing, [1, 2, 3])
    now = dt.datetime.now(dt.UTC)
    leaves = [node_certificate(sign, genesis.issuer_profile(), 100 + k, now, dt.timedelta(days=1))[1]
              .public_bytes(serialization.Encoding.DER) for k in range(count)]
    inter = load_pem_x509_certificates((cluster.dir / "intermediate.pem").read_bytes())[0]
    return leaves, inter.public_bytes(serialization.Encoding.DER)


def test_one_account_filling_its_storage_is_refused_while_another_still_writes(cluster: Cluster) -> None:
    mallory, alice = _client(cluster, "quota mallory"), _client(cluster, "quota alice")
    _ok(mallory.send_registration(0))
    _ok(alice.send_registration(1))

    # key-value: 4096 bytes per account
    _ok(mallory.send("kv", kvstore.put(b"m/1", b"x" * 4000)))
    _ok(mallory.send("kv", kvstore.put(b"m/2", b"x" * 90)))  # keys and values: 3 + 4000 + 3 + 90 = 4096
    _refused(mallory.send("kv", kvstore.put(b"m/3", b"")), "limits.kv.max_account_bytes")
    _ok(alice.send("kv", kvstore.put(b"a/1", b"x" * 4000), node=2))

    # zones: 6 records per zone (SOA and NS are two of them)
    for who, origin in ((mallory, "mallory-quota.test."), (alice, "alice-quota.test.")):
        _ok(who.send("dns", dnsapp.create_command(origin, primary_ns=f"ns1.{origin}", admin=f"hostmaster.{origin}",
                                                    nameservers=[f"ns1.{origin}"])))
    five = ZoneUpdate("mallory-quota.test.", tuple(AddRecords(f"r{i}", "TXT", 60, (f'"{i}"',)) for i in range(5)))
    _refused(mallory.send("dns", dnsapp.update_command(five)), "limits.dns.max_records_per_zone")  # nothing applied
    four = ZoneUpdate("mallory-quota.test.", five.ops[:4])
    _ok(mallory.send("dns", dnsapp.update_command(four)))  # exactly 6
    one_more = ZoneUpdate("mallory-quota.test.", (AddRecords("r9", "TXT", 60, ('"9"',)),))
    _refused(mallory.send("dns", dnsapp.update_command(one_more)), "limits.dns.max_records_per_zone")
    _ok(alice.send("dns", dnsapp.update_command(ZoneUpdate("alice-quota.test.", five.ops[:4])), node=3))

    # CT: 2000 bytes of submitted entries per account
    leaves, inter = _certificates(cluster, 6)
    assert all(400 < len(leaf) < 2000 for leaf in leaves)  # at least one fits in the quota
    fit = next(k for k in range(len(leaves)) if sum(map(len, leaves[:k + 1])) > 2000)  # leaves[:fit] fill it
    for leaf in leaves[:fit]:
        _ok(mallory.send("ct", ctapp.add_chain(leaf, (inter,))))
    _refused(mallory.send("ct", ctapp.add_chain(leaves[fit], (inter,))), "limits.ct.max_account_bytes")
    _ok(alice.send("ct", ctapp.add_chain(leaves[fit], (inter,)), node=1))
    _ok(mallory.send("ct", ctapp.add_chain(leaves[0], (inter,))))  # a duplicate stores nothing new


def test_one_address_registering_in_bulk_through_a_node_gets_429(cluster: Cluster) -> None:
    codes = [_client(cluster, f"bulk {i}").send_registration(node=3)[0] for i in range(11)]
    assert codes[:10] == [200] * 10, codes  # api.registrations_per_hour = 10: the burst
    assert codes[10] == 429, codes
    code, _ = _client(cluster, "bulk elsewhere").send_registration(node=2)  # another node has its own buckets
    assert code == 200
