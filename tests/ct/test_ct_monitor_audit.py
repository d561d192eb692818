"""Monitor alerts, auditor consistency/MMD checks and split-view evidence, and checkpoint gossip."""

from __future__ import annotations

import hashlib

import pytest
from ct_certs import key, make_cert, spki_sha256, tbs_of

from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import checkpoint as cpmod
from trustchain.ct import merkle
from trustchain.ct.auditor import DISAGREES_WITH_LOG, MMD_VIOLATION, SCT_INCLUDED, SPLIT_VIEW, Auditor
from trustchain.ct.entry import PrecertEntry, TimestampedEntry, X509Entry, merkle_tree_leaf
from trustchain.ct.evidence import SplitViewEvidence
from trustchain.ct.gossip import (
    Cosigned,
    EvidenceFound,
    Forward,
    GossipPeer,
    checkpoint_message,
    evidence_message,
)
from trustchain.ct.log import CTLog
from trustchain.ct.monitor import (
    CAA_VIOLATION,
    UNEXPECTED_ISSUANCE,
    UNEXPECTED_ISSUER,
    UNPARSEABLE_ENTRY,
    Monitor,
    Watch,
)
from trustchain.ct.validators import Validator, ValidatorSet

ORIGIN = "audit.test/ct"


def leaf(cert: bytes, ts: int = 1000) -> bytes:
    return merkle_tree_leaf(TimestampedEntry(ts, X509Entry(cert)))


# ---------------------------------------------------------------------------- monitor


def test_monitor_raises_each_alert_kind_and_stays_quiet_for_expected_issuance() -> None:
    caa = {"shop.example.com": ["good-ca.example"], "bank.example.com": []}
    mon = Monitor(
        [Watch("example.com", issuers=frozenset({"CN=Good CA"}))],
        caa_lookup=lambda name: caa.get(name),
        issuer_caa_domains={"CN=Good CA": "good-ca.example", "CN=Evil CA": "evil.example"},
    )
    mon.expect("www.example.com", spki_sha256(key("owner-key")))
    expected = make_cert("www.example.com", issuer="Good CA", subject_key="owner-key")
    assert mon.process(0, leaf(expected)) == []
    assert mon.process(1, leaf(make_cert("www.unrelated.org"))) == []
    rogue = mon.process(2, leaf(make_cert("shop.example.com", issuer="Evil CA")))
    assert {e.kind for e in rogue} == {UNEXPECTED_ISSUANCE, UNEXPECTED_ISSUER, CAA_VIOLATION}
    assert all(e.name == "shop.example.com" and e.issuer == "CN=Evil CA" and e.index == 2 for e in rogue)
    # Right issuer, expected name, but a key the owner never asked for: still unexpected.
    other_key = mon.process(3, leaf(make_cert("www.example.com", issuer="Good CA", subject_key="attacker")))
    assert [e.kind for e in other_key] == [UNEXPECTED_ISSUANCE]
    forbidden = mon.process(4, leaf(make_cert("bank.example.com", issuer="Good CA")))
    assert CAA_VIOLATION in {e.kind for e in forbidden}
    stream = mon.drain()
    assert len(stream) == len(rogue) + len(other_key) + len(forbidden) and mon.drain() == []
    assert stream[0].to_json()["leaf_hash"]


def test_monitor_reads_precerts_and_polls_a_log_in_order() -> None:
    log = CTLog(None)
    log.add(X509Entry(make_cert("a.watched.net")), 1)
    log.add(PrecertEntry(hashlib.sha256(b"ca").digest(), tbs_of(make_cert("b.watched.net"))), 2)
    log.add(X509Entry(b"\x30\x03\x02\x01\x05"), 3)  # DER, but not a certificate
    mon = Monitor([Watch("watched.net")])
    events = mon.poll(lambda s, e: log.get_entries(s, e)[:1], log.size)  # a log serving one entry per page
    assert [(e.kind, e.index, e.name) for e in events] == [
        (UNEXPECTED_ISSUANCE, 0, "a.watched.net"), (UNEXPECTED_ISSUANCE, 1, "b.watched.net"),
        (UNPARSEABLE_ENTRY, 2, "")]
    assert mon.next_index == 3 and mon.poll(log.get_entries, 3) == []


# ---------------------------------------------------------------------------- auditor


class World:
    """Four validators of one honest log, plus a key that also signs a forked tree."""

    def __init__(self) -> None:
        self.signers = [Ed25519Signer(hashlib.sha256(b"v%d" % i).digest()) for i in range(4)]
        self.vset = ValidatorSet([Validator(f"v{i}", s.public_key) for i, s in enumerate(self.signers)])
        self.log = CTLog(None)
        self.leaves: list[bytes] = []

    def grow(self, n: int) -> None:
        for _ in range(n):
            i = self.log.size
            self.log.add(X509Entry(make_cert(f"h{i}.example.org", serial=i + 1)), 1000 + i)

    def honest(self, v: int, size: int | None = None) -> bytes:
        return self.log.checkpoint(self.signers[v], ORIGIN, f"v{v}", size).encode()

    def forked(self, v: int, fork_at: int, size: int) -> bytes:
        hashes = [self.log.leaf_hash(i) for i in range(size - 1)]
        hashes.insert(fork_at, merkle.leaf_hash(b"hidden"))
        cp = cpmod.Checkpoint(ORIGIN, size, merkle.root_of(hashes))
        return cpmod.sign(cp, f"v{v}", self.signers[v]).encode()


def test_consistent_checkpoints_raise_nothing() -> None:
    w = World()
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=1000)
    for size in (3, 5, 8, 13):
        w.grow(size - w.log.size)
        for v in range(4):
            assert aud.observe(w.honest(v), 0) == []
    assert aud.evidence == {} and aud.checked_pairs > 0


@pytest.mark.parametrize("fork_size", [5, 8])  # 8: a power of two needs the prefix hash
def test_split_view_becomes_evidence_naming_the_key(fork_size: int) -> None:
    w = World()
    w.grow(fork_size - 1)
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=1000)
    forked = w.forked(2, fork_at=3, size=fork_size)
    assert [e.kind for e in aud.observe(forked, 10)] == []  # the view cannot judge a size it lacks yet
    w.grow(12 - w.log.size)
    events = aud.observe(w.honest(2), 20)
    kinds = [e.kind for e in events]
    assert SPLIT_VIEW in kinds
    ev = aud.evidence["v2"]
    assert ev.key_name == "v2" and ev.public_key == w.signers[2].public_key
    ev.verify()  # self-contained: anyone can re-check it
    assert set(aud.evidence) == {"v2"}


def test_same_size_fork_is_evidence_without_any_proof_and_view_disagreement_is_reported() -> None:
    w = World()
    w.grow(6)
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=1000)
    assert aud.observe(w.honest(1), 0) == []
    events = aud.observe(w.forked(1, fork_at=2, size=6), 1)
    assert {e.kind for e in events} == {SPLIT_VIEW, DISAGREES_WITH_LOG}
    assert aud.evidence["v1"].consistency_path == ()


def test_unknown_signers_and_other_origins_are_rejected() -> None:
    w = World()
    w.grow(2)
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=1000)
    stranger = Ed25519Signer(b"\x07" * 32)
    assert aud.observe(w.log.checkpoint(stranger, ORIGIN, "v0").encode(), 0)[0].detail == "no valid validator signature"
    assert "origin" in aud.observe(w.log.checkpoint(w.signers[0], "other/ct", "v0").encode(), 0)[0].detail
    assert aud.observe(b"not a note", 0)[0].kind == "bad_checkpoint"


def test_sct_inclusion_within_the_mmd_and_violation_after_it() -> None:
    w = World()
    w.grow(3)
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=5_000)
    aud.observe(w.honest(0), 0)
    aud.expect_inclusion(w.log.leaf_hash(1), 1_000, "client-a")
    missing = merkle.leaf_hash(b"never logged")
    aud.expect_inclusion(missing, 1_000, "client-b")
    first = aud.tick(2_000)
    assert [(e.kind, e.key_name) for e in first] == [(SCT_INCLUDED, "client-a")]
    assert aud.tick(6_000) == [] and aud.pending_scts == 1
    late = aud.tick(6_001)
    assert [(e.kind, e.key_name, e.leaf_hash) for e in late] == [(MMD_VIOLATION, "client-b", missing)]


def test_inclusion_is_not_credited_against_a_forked_checkpoint() -> None:
    w = World()
    w.grow(4)
    aud = Auditor(ORIGIN, w.vset, w.log, mmd_ms=5_000)
    aud.observe(w.forked(3, fork_at=0, size=4), 0)
    aud.expect_inclusion(w.log.leaf_hash(2), 0)
    assert aud.tick(1) == []  # the honest proof does not reach the forked root
    aud.observe(w.honest(1), 2)
    assert [e.kind for e in aud.tick(3)] == [SCT_INCLUDED]


# ---------------------------------------------------------------------------- gossip


def peer(w: World, i: int) -> GossipPeer:
    return GossipPeer(f"witness-{i}", Ed25519Signer(bytes([i + 1]) * 32), Auditor(ORIGIN, w.vset, w.log, 1000))


def test_gossip_cosigns_consistent_checkpoints_and_spreads_verified_evidence() -> None:
    w = World()
    w.grow(5)
    a, b, c = peer(w, 0), peer(w, 1), peer(w, 2)
    effects = a.publish(w.honest(0), 1_000_000)
    cos = [e for e in effects if isinstance(e, Cosigned)]
    assert len(cos) == 1 and any(isinstance(e, Forward) for e in effects)
    signed = cpmod.SignedCheckpoint.parse(cos[0].note)
    assert signed.verify_cosignature("witness-0", a.signer.public_key) == 1000
    signed.verify("v0", w.signers[0].public_key)  # the log signature survives cosigning
    fwd = next(e for e in effects if isinstance(e, Forward))
    assert b.receive(fwd.data, 1_000_001) and b.receive(fwd.data, 1_000_002) == []  # duplicates are dropped

    w.grow(6)
    b.publish(w.honest(3), 2_000_000)
    found = a.publish(w.forked(3, fork_at=1, size=5), 2_000_000)  # a forked view a saw first... below b's
    assert not any(isinstance(e, Cosigned) for e in found)
    found = b.receive(checkpoint_message(w.forked(3, fork_at=1, size=5)), 2_000_001)
    ev = next(e.evidence for e in found if isinstance(e, EvidenceFound))
    assert ev.key_name == "v3"
    msg = next(e.data for e in found if isinstance(e, Forward) and e.data == evidence_message(ev))
    learned = c.receive(msg, 2_000_002)
    assert any(isinstance(e, EvidenceFound) for e in learned) and "v3" in c.auditor.evidence
    # A convicted key's checkpoints are no longer cosigned, even honest-looking ones.
    w.grow(2)
    assert not any(isinstance(e, Cosigned) for e in c.publish(w.honest(3), 3_000_000))


def test_gossip_rejects_forged_evidence() -> None:
    w = World()
    w.grow(3)
    p = peer(w, 0)
    good = w.honest(1)
    bogus = SplitViewEvidence("v1", w.signers[1].public_key, good, good)  # no conflict at all
    assert p.receive(evidence_message(bogus), 0) == [] and p.rejected == 1
    assert p.auditor.evidence == {}

