"""Observers on a real loopback cluster (4 validators, 2 observers, TCP): they serve what the validators
serve, refuse batches whose commit certificate does not hold, pass writes on to the validators, and
catch up after a restart through a certified snapshot.

What is compared byte for byte: DNS answers record by record (DNSSEC signatures are made by the
replicated application, so every replica holds the same RRSIGs; the order of records inside an RRset,
which DNS leaves open, may differ between processes), OCSP responses and CRLs (FROST-signed, in replicated state),
certificate lookups, CT inclusion proofs and tiles. What is compared semantically: CT tree heads (tree
size and root hash), whose signature is each node's own: its checkpoint names and is signed by the
node that serves it."""

from __future__ import annotations

import asyncio
import base64
import socket
import struct
import time
import tomllib
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from typing import Any

import dns.message
import dns.query
import dns.rdatatype
import dns.rrset
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509 import ocsp as xocsp
from node_harness import Cluster, fetch, http
from test_node_cluster import _issue

from reference_node.dns.client import doq_connection, doq_query
from reference_node.transport import CHANNEL_FEED, CHANNEL_HELLO
from trustchain.ca import names as canames
from trustchain.consensus.messages import Commit, CommittedEntry, PrePrepare, seal
from trustchain.crypto.signing import Ed25519Signer
from trustchain.encoding import encode

VALIDATORS, OBSERVERS = 4, 2
QUORUM = 3  # ceil((n + f + 1) / 2) with n = 4, f = 1
# refusals that mean a certificate did not hold (a late or unsolicited catch-up reply is no such fault)
CERTIFICATE_FAULTS = {"committed_without_quorum", "bad_signature", "unknown_sender", "bad_digest", "duplicate_voter"}


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("observers"), nodes=VALIDATORS, threshold=3, timeout="1s",
                observers=OBSERVERS, checkpoint_interval=4)
    for cfg in c.configs[:VALIDATORS]:  # CRLs and OCSP responses on a fast cadence
        cfg.write_text(cfg.read_text().replace('rotation_period = "24h"\n', 'rotation_period = "24h"\n'
                                               'crl_interval = "300ms"\nocsp_interval = "300ms"\n'))
    with c:
        code, res = c.create_zone("example.org.")
        assert code == 200, res
        c.issued = _issue(c, c.apis[1], "www.example.org")  # type: ignore[attr-defined]
        yield c


def _doc(c: Cluster, i: int) -> dict[str, Any]:
    return tomllib.loads(c.configs[i].read_text())


def _address(text: str) -> tuple[str, int]:
    host, _, port = text.rpartition(":")
    return host, int(port)


def _caught_up(c: Cluster, timeout: float = 30.0) -> None:
    target = max(c.status(i)["last_executed"] for i in range(VALIDATORS))
    for i in range(VALIDATORS, VALIDATORS + OBSERVERS):
        c.wait_for(lambda i=i: c.status(i)["last_executed"] >= target, timeout=timeout, what=f"observer {i} caught up")


def _dns(c: Cluster, i: int, name: str, rdtype: str, tcp: bool = False) -> dns.message.Message:
    host, port = _address(_doc(c, i)["dns"]["listen"])
    q = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), want_dnssec=True)
    q.id = 4242
    return (dns.query.tcp if tcp else dns.query.udp)(q, host, port=port, timeout=5)


def _doq(c: Cluster, i: int, name: str, rdtype: str) -> dns.message.Message:
    """A DoQ query to observer `i`, its TLS certificate verified against the TrustChain root."""
    host, port = _address(_doq_listen(c, i))
    server_name = f"observer-{i - VALIDATORS}.{canames.NODE_DOMAIN}"
    query = dns.message.make_query(name, dns.rdatatype.from_text(rdtype), want_dnssec=True).to_wire()

    async def ask() -> bytes:
        async with doq_connection(host, port, str(c.dir / "root.pem"), server_name) as conn:
            return await doq_query(conn, query)

    return dns.message.from_wire(asyncio.run(ask()))


def _doq_listen(c: Cluster, i: int) -> str:
    return str(_doc(c, i)["dns"]["doq_listen"])


def _sections(m: dns.message.Message) -> tuple[object, ...]:
    """Header flags, rcode and every RRset of the answer and authority sections as wire bytes, each RRset's
    records sorted: an RRset is unordered (RFC 2181 5), and replicas may emit its records in another order."""
    def canonical(section: list[dns.rrset.RRset]) -> list[tuple[bytes, int, int, list[bytes]]]:
        return sorted((r.name.to_wire(), r.rdtype, r.ttl, sorted(rd.to_wire() for rd in r)) for r in section)

    return m.flags, m.rcode(), canonical(m.answer), canonical(m.authority)


def test_observers_serve_what_the_validators_serve(cluster: Cluster) -> None:
    c, api = cluster, cluster.apis
    issued = c.issued  # type: ignore[attr-defined]
    der = x509.load_pem_x509_certificate(issued["certificate"].encode()).public_bytes(serialization.Encoding.DER)
    inter = x509.load_pem_x509_certificate((c.dir / "intermediate.pem").read_bytes())
    chain = [base64.b64encode(d).decode() for d in (der, inter.public_bytes(serialization.Encoding.DER))]
    code, sub = http("POST", api[2] + "/api/v1/ct/submit", {"chain": chain})  # a CT submission
    assert code == 200 and sub["status"] == "duplicate", sub  # logged at issuance already
    _caught_up(c)
    observers = range(VALIDATORS, VALIDATORS + OBSERVERS)

    # DNS over UDP, TCP and DoQ: the same answer, DNSSEC signatures included, byte for byte
    for name, rdtype in (("example.org.", "SOA"), ("example.org.", "DNSKEY"), ("nope.example.org.", "A")):
        want = _dns(c, 0, name, rdtype)
        assert want.rcode() in (0, 3) and (want.answer or want.authority)
        for i in observers:
            for tcp in (False, True):
                assert _sections(_dns(c, i, name, rdtype, tcp)) == _sections(want), (i, name, rdtype, tcp)
            assert _sections(_doq(c, i, name, rdtype)) == _sections(want), (i, name, rdtype, "doq")

    # CT: the same tree (size, root hash); each checkpoint is signed by, and names, the node serving it
    code, sth = http("GET", api[0] + "/api/v1/ct/log")
    assert code == 200 and sth["tree_size"] == 2  # the precertificate and the certificate
    leaf_hash = base64.b64decode(sub["leaf_hash"]).hex()
    _, proof = fetch(api[0] + f"/api/v1/ct/proof/{leaf_hash}")
    rfc_query = "/ct/v1/get-proof-by-hash?" + urllib.parse.urlencode({"hash": sub["leaf_hash"], "tree_size": 2})
    code, rfc_proof = fetch(api[0] + rfc_query)
    assert code == 200, rfc_proof
    _, tile = fetch(api[0] + "/api/v1/ct/tile/0/000.p/2")
    _, entries = fetch(api[0] + "/ct/v1/get-entries?start=0&end=1")
    for i in observers:
        code, got = http("GET", api[i] + "/api/v1/ct/log")
        assert code == 200 and (got["tree_size"], got["root_hash"]) == (sth["tree_size"], sth["root_hash"])
        assert got["checkpoint"] != sth["checkpoint"] and f"/observer{i - VALIDATORS} " in got["checkpoint"]
        assert fetch(api[i] + f"/api/v1/ct/proof/{leaf_hash}") == (200, proof)
        assert fetch(api[i] + rfc_query) == (200, rfc_proof)
        assert fetch(api[i] + "/api/v1/ct/tile/0/000.p/2") == (200, tile)
        assert fetch(api[i] + "/ct/v1/get-entries?start=0&end=1") == (200, entries)
        code, err = http("GET", api[i] + "/ct/v1/get-sth")  # an observer runs no RFC 6962 log of its own
        assert code == 503 and err["field"] == "log_key", err

    # OCSP, the CRL and the certificate itself: the same bytes as every validator's
    req_der = xocsp.OCSPRequestBuilder().add_certificate(
        x509.load_der_x509_certificate(der), inter, hashes.SHA1()).build().public_bytes(serialization.Encoding.DER)

    def ocsp_good(i: int) -> bool:
        code, body = fetch(api[i] + "/ocsp", req_der, "application/ocsp-request")
        resp = xocsp.load_der_ocsp_response(body)
        return code == 200 and resp.response_status == xocsp.OCSPResponseStatus.SUCCESSFUL and \
            resp.certificate_status == xocsp.OCSPCertStatus.GOOD

    for i in range(VALIDATORS + OBSERVERS):
        c.wait_for(lambda i=i: ocsp_good(i), timeout=30, what=f"OCSP good on node {i}")
        c.wait_for(lambda i=i: fetch(api[i] + "/crl/issuing.crl")[0] == 200, timeout=30, what=f"CRL on {i}")
    _caught_up(c)
    assert len({fetch(a + "/ocsp", req_der, "application/ocsp-request")[1] for a in api}) == 1
    assert len({fetch(a + "/crl/issuing.crl")[1] for a in api}) == 1
    assert len({fetch(a + f"/api/v1/cert/{issued['serial']}")[1] for a in api}) == 1
    for i in observers:
        code, health = http("GET", api[i] + "/api/v1/health")
        assert code == 200, health
        st = c.status(i)
        assert st["role"] == "observer" and not set(st["observer"]["rejected"]) & CERTIFICATE_FAULTS, st
        assert (st["view"], st["primary"]) == (c.status(0)["view"], c.status(0)["primary"])  # of its last batch


def test_write_sent_to_an_observer_reaches_the_validators(cluster: Cluster) -> None:
    c = cluster
    code, res = c.create_zone("observed.org.", node=VALIDATORS)  # through observer0's API
    assert code == 200 and res["op"] == "create", res
    for i in range(VALIDATORS + OBSERVERS):
        c.wait_for(lambda i=i: "observed.org." in c.status(i)["dns"]["zones"], what=f"zone on node {i}")
    assert _sections(_dns(c, 1, "observed.org.", "SOA")) == _sections(_dns(c, VALIDATORS + 1, "observed.org.", "SOA"))


def _validator_signers(c: Cluster) -> list[Ed25519Signer]:
    return [Ed25519Signer(bytes.fromhex((c.dir / f"node{i}" / "consensus.key").read_text().strip()))
            for i in range(VALIDATORS)]


def _feed_batch(seq: int, entry: CommittedEntry) -> bytes:
    return struct.pack(">BQ", 0x42, seq) + encode(entry)  # a committed batch as the overlay carries it


def _send_as(address: tuple[str, int], peer_id: int, packets: list[bytes]) -> None:
    """Dial an observer's peer port as overlay node `peer_id` and send it feed frames."""
    with socket.create_connection(address, timeout=5) as s:
        s.sendall(struct.pack(">IB", 9, CHANNEL_HELLO) + struct.pack(">Q", peer_id))
        for p in packets:
            s.sendall(struct.pack(">IB", len(p) + 1, CHANNEL_FEED) + p)
        time.sleep(0.5)


def test_an_observer_refuses_batches_without_a_valid_commit_certificate(cluster: Cluster) -> None:
    """A batch never committed by the validators, at a sequence number the observer has not reached:
    carried by a certificate one signature short, with one signature forged, or with a commit from a
    key outside the validator set, it is refused, whoever delivers it."""
    c = cluster
    target = VALIDATORS + 1
    before = c.status(target)
    signers = _validator_signers(c)
    outsider = Ed25519Signer(bytes(range(32)))
    seq = before["last_executed"] + 40
    pp = PrePrepare(0, seq, PrePrepare.compute_digest(7, ()), 7, ())
    pre = seal(signers[0], 0, pp)
    vote = Commit(0, seq, pp.batch_digest)
    commits = [seal(signers[i], i, vote) for i in range(VALIDATORS)]
    bad = commits[2]
    forged_sig = type(bad)(bad.version, bad.kind, bad.sender, bad.body, bytes(64))
    forgeries = {
        "one_too_few": CommittedEntry(pre, tuple(commits[:QUORUM - 1])),
        "forged_signature": CommittedEntry(pre, (commits[0], commits[1], forged_sig)),
        "non_validator": CommittedEntry(pre, (commits[0], commits[1], seal(outsider, 2, vote))),
        "unknown_index": CommittedEntry(pre, (commits[0], commits[1], seal(outsider, VALIDATORS + 3, vote))),
    }
    address = _address(_doc(c, target)["consensus"]["listen"])
    _send_as(address, 0, [_feed_batch(seq, forgeries["one_too_few"]), _feed_batch(seq, forgeries["forged_signature"])])
    _send_as(address, VALIDATORS, [_feed_batch(seq, forgeries["non_validator"]),  # from the other observer
                                   _feed_batch(seq, forgeries["unknown_index"])])

    def faults() -> dict[str, int]:
        now = c.status(target)["observer"]["rejected"]
        return {k: now.get(k, 0) - before["observer"]["rejected"].get(k, 0) for k in CERTIFICATE_FAULTS
                if now.get(k, 0) != before["observer"]["rejected"].get(k, 0)}

    c.wait_for(lambda: sum(faults().values()) >= 4, what="four refusals")
    assert faults() == {"committed_without_quorum": 1, "bad_signature": 2, "unknown_sender": 1}
    after = c.status(target)
    assert after["observer"]["held"] == 0
    # a full quorum's commits over the same fake batch would have been taken: the refusals are the certificate's
    assert after["last_executed"] < seq
    _caught_up(c)


def test_a_restarted_observer_catches_up_from_a_certified_snapshot(cluster: Cluster) -> None:
    c = cluster
    target = VALIDATORS + 1
    c.kill(target)
    for k in range(12):  # three checkpoint intervals: the validators drop the batches the observer lacks
        code, res = http("POST", c.apis[k % VALIDATORS] + "/api/v1/kv", {"op": "put", "key": f"k{k}", "value": "v"})
        assert code == 200, res
    code, res = c.create_zone("late.org.", node=2)
    assert code == 200, res
    c.start(target)
    c.wait_healthy(target)
    _caught_up(c, timeout=60)
    st = c.status(target)
    assert "late.org." in st["dns"]["zones"] and st["kv"]["keys"] == c.status(0)["kv"]["keys"] == 12, st
    assert st["observer"]["snapshots_installed"] >= 1, st["observer"]
    assert _sections(_dns(c, target, "late.org.", "SOA")) == _sections(_dns(c, 3, "late.org.", "SOA"))
