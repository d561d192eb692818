"""Operations of the validator set as a whole pass only when a quorum of validators voted for them,
through the real router: one validator alone does nothing, a quorum executes once, at n = 4..7."""

from __future__ import annotations

import hashlib
import random
from dataclasses import dataclass

import dns.name
import dns.rdatatype
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import Encoding

from reference_node.genesis import Genesis
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import kvstore
from trustchain.app import trustchain as tcapp
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.authorization import validator_votes as votes
from trustchain.authorization.observations import ValidationsSnapshot
from trustchain.ca import commands as cacommands
from trustchain.ca import frost
from trustchain.ca import names as canames
from trustchain.crypto.signing import Ed25519Signer
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, ZoneUpdate
from trustchain.encoding import DecodeError, decode, encode

T0 = 1_750_000_000_000_000
HOUR = 3600 * 1_000_000
CLUSTER = b"votes-test-cluster"
GROUP = frost.trusted_dealer_keygen(5, 3, random.Random(7).randbytes)
GENESIS = Genesis("t", "trustchain.example", GROUP.public, "Root", GROUP.public, "Issuing",
                  {"ocsp": "http://o/", "root_crl": "http://c/r", "issuing_crl": "http://c/i",
                   "root_issuer": "http://i/r", "issuing_issuer": "http://i/i"}, b"\x07" * 32, "example/log", (),
                  registry_suffixes=("internal",))
NODE_ZONE = "nodes.trustchain.internal."
ALICE = Ed25519AccountSigner(hashlib.sha256(b"alice").digest())
#: the quorum ceil((n + f + 1) / 2) with f = (n - 1) // 3, worked out by hand
EXPECTED_THRESHOLD = {4: 3, 5: 4, 6: 4, 7: 5}


class Cluster:
    """One replica's application of an n-validator cluster, and the validators' signed writes to it."""

    def __init__(self, n: int) -> None:
        self.seeds = [hashlib.sha256(b"validator %d" % i).digest() for i in range(n)]
        self.validators = [Ed25519AccountSigner(s) for s in self.seeds]
        keys = tuple(Ed25519Signer(s).public_key for s in self.seeds)
        self.app = tcapp.TrustChainApplication(
            GENESIS.ca_policy(keys), GENESIS.dns_master_seed, Ed25519Signer(self.seeds[0]), "v0", "example/log",
            cluster=CLUSTER, validator_keys=keys, registry_suffixes=GENESIS.registry_suffixes)
        self.seq = 0
        self.nonce = 0
        self.now = T0
        self.run(tcapp.registration_operation(ALICE, CLUSTER, nonce=b"\x01" * 16, deadline_us=T0 + 1))

    def write(self, signer: Ed25519AccountSigner, target: str, payload: bytes) -> bytes:
        self.nonce += 1
        return tcapp.signed_operation(signer, account_id(signer.key), CLUSTER, target, payload,
                                      nonce=self.nonce.to_bytes(16, "big"), deadline_us=self.now + 60_000_000)

    def run(self, *operations: bytes) -> list[bytes]:
        self.seq += 1
        ops = [Operation(b"\xaa" * 32, self.seq * 100 + i, p) for i, p in enumerate(operations)]
        return self.app.execute(ops, ExecutionContext(self.seq, self.now))

    def vote(self, i: int, target: str, payload: bytes) -> votes.VoteResult:
        raw = self.run(self.write(self.validators[i], votes.VOTES, votes.vote_command(target, payload)))[0]
        result = tcapp.decode_routed(raw, votes.decode_result)
        assert isinstance(result, votes.VoteResult), result
        return result

    def dns(self, signer: Ed25519AccountSigner, payload: bytes) -> dnsapp.DNSResult:
        result = tcapp.decode_routed(self.run(self.write(signer, tcapp.DNS, payload))[0], dnsapp.decode_result)
        assert isinstance(result, dnsapp.DNSResult), result
        return result

    def issue_node_certificate(self, i: int) -> bytes:
        """Validator i's own node certificate (the node-name rule), FROST-signed: its serial."""
        name = canames.node_name(i, GENESIS.node_domain)
        key = ec.derive_private_key(1000 + i, ec.SECP256R1())
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(name)]), critical=False)
               .sign(key, hashes.SHA256()))
        request = cacommands.request_command(cacommands.IssueRequest(csr.public_bytes(Encoding.DER), (name,), ("",),
                                                                     "node", "", 3600))
        values = {}
        for v, signer in enumerate(self.validators):  # serial randomness: every validator commits ahead
            value = hashlib.sha256(b"serial value %d %d" % (v, self.seq)).digest()
            digest = hashlib.sha256(b"trustchain/ca/serial-commitment/v1\0" + v.to_bytes(8, "big") + value).digest()
            values[digest] = value
            self.run(self.write(signer, tcapp.CA, cacommands.serial_commit_command([digest])))
        pending = cacommands.decode_result(self.run(self.write(self.validators[i], tcapp.CA, request))[0])
        assert pending.status == cacommands.STATUS_PENDING, pending
        for v, signer in enumerate(self.validators):  # then the f+1 drawn for the request reveal
            mine = [(d, values[d]) for d in self.app.ca.serials.assigned_to(v)]
            if mine:
                self.run(self.write(signer, tcapp.CA, cacommands.serial_reveal_command(mine)))
        stage = self.app.ca.pending_of(pending.pending_id)
        assert stage is not None
        tbs = stage.tbs
        signature = frost.sign_with_quorum({k: GROUP.key_packages[k] for k in (1, 2, 3)}, GROUP.public, tbs,
                                           random.Random(i).randbytes)
        done = cacommands.decode_result(self.run(self.write(
            self.validators[i], tcapp.CA, cacommands.finalize_command(stage.pending_id, signature)))[0])
        assert done.status == cacommands.STATUS_OK, done
        return done.serial


def _create_node_zone() -> bytes:
    return dnsapp.create_command(NODE_ZONE, primary_ns=f"ns1.{NODE_ZONE}", admin=f"hostmaster.{NODE_ZONE}",
                                 nameservers=[f"ns1.{NODE_ZONE}"])


def _node_record(address: str) -> bytes:
    return dnsapp.update_command(ZoneUpdate(NODE_ZONE, (AddRecords(f"validator-0.{NODE_ZONE}", "A", 300,
                                                                    (address,)),)))


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_a_certificate_is_revoked_once_a_quorum_voted_and_never_by_fewer(n: int) -> None:
    c = Cluster(n)
    serial = c.issue_node_certificate(1)
    revoke = cacommands.revoke_command(int.from_bytes(serial, "big"), 1)  # keyCompromise
    threshold = EXPECTED_THRESHOLD[n]
    # validator 0 acting alone with its own account: not the subscriber, not an operator
    alone = cacommands.decode_result(c.run(c.write(c.validators[0], tcapp.CA, revoke))[0])
    assert alone.field == "authorization"
    for i in range(threshold - 1):
        result = c.vote(i, tcapp.CA, revoke)
        assert (result.status, result.votes, result.threshold) == (votes.STATUS_RECORDED, i + 1, threshold)
        assert c.app.ca.issued[serial].revoked_us is None
    passed = c.vote(threshold - 1, tcapp.CA, revoke)
    assert (passed.status, passed.votes, passed.target) == (votes.STATUS_EXECUTED, threshold, tcapp.CA)
    inner = cacommands.decode_result(passed.result)
    assert (inner.status, inner.serial) == (cacommands.STATUS_OK, serial)
    assert c.app.ca.issued[serial].revoked_us == c.now and c.app.ca.issued[serial].reason == 1
    revoked_events = [e for e in c.app.take_events() if type(e).__name__ == "Revoked"]
    assert len(revoked_events) == 1
    for late in range(threshold, n):  # the remaining validators' votes arrive after it passed
        assert c.vote(late, tcapp.CA, revoke).status == votes.STATUS_DONE
    assert c.app.take_events() == [] and c.app.votes.proposals == {}


@pytest.mark.parametrize("n", [4, 5, 6, 7])
def test_one_validator_cannot_change_the_node_zone_and_a_quorum_can(n: int) -> None:
    c = Cluster(n)
    threshold = EXPECTED_THRESHOLD[n]
    for signer in (c.validators[0], ALICE):  # neither one validator nor any other account
        assert c.dns(signer, _create_node_zone()).detail.startswith(
            "create.origin: nodes.trustchain.internal. is under the validators' domain")
    results = [c.vote(i, tcapp.DNS, _create_node_zone()) for i in range(threshold)]
    assert [r.status for r in results] == [votes.STATUS_RECORDED] * (threshold - 1) + [votes.STATUS_EXECUTED]
    created = dnsapp.decode_result(results[-1].result)
    assert (created.status, created.origin) == (dnsapp.STATUS_OK, NODE_ZONE)
    # one validator alone cannot change it now that it exists either
    denied = c.dns(c.validators[1], _node_record("192.0.2.66"))
    assert denied.detail.startswith("update.origin: nodes.trustchain.internal. is under the validators' domain")
    assert _node_address(c) is None
    results = [c.vote(i, tcapp.DNS, _node_record("192.0.2.10")) for i in range(n - threshold, n)]
    assert results[-1].status == votes.STATUS_EXECUTED
    assert dnsapp.decode_result(results[-1].result).serial == 2
    assert _node_address(c) == ["192.0.2.10"]


def _node_address(c: Cluster) -> list[str] | None:
    zone = c.app.dns.zones[dns.name.from_text(NODE_ZONE)].zone
    rrset = zone.get(dns.name.from_text(f"validator-0.{NODE_ZONE}"), dns.rdatatype.A)
    return None if rrset is None else sorted(rd.to_text() for rd in rrset)


def test_duplicate_votes_are_ignored() -> None:
    c = Cluster(4)
    payload = _create_node_zone()
    assert c.vote(0, tcapp.DNS, payload).votes == 1
    again = c.vote(0, tcapp.DNS, payload)  # the same validator again, with a fresh nonce
    assert (again.status, again.votes, again.detail) == (votes.STATUS_DUPLICATE, 1,
                                                         "validator: already voted for this operation")
    assert c.vote(1, tcapp.DNS, payload).status == votes.STATUS_RECORDED
    assert c.vote(1, tcapp.DNS, payload).status == votes.STATUS_DUPLICATE
    assert dnsapp.decode_result(c.vote(2, tcapp.DNS, payload).result).ok
    assert len(c.app.dns.zones) == 1


def test_a_non_validator_cannot_vote() -> None:
    c = Cluster(4)
    raw = c.run(c.write(ALICE, votes.VOTES, votes.vote_command(tcapp.DNS, _create_node_zone())))[0]
    refused = tcapp.decode_routed(raw, votes.decode_result)
    assert refused == tcapp.RouteError("authorization: only a validator may order validators *")
    # the tally itself refuses anyone the gate did not authenticate as a validator, naming the field
    direct = c.app.votes.handle(None, votes.vote_command(tcapp.DNS, _create_node_zone()), T0)
    assert isinstance(direct, votes.VoteResult) and direct.status == votes.STATUS_ERROR
    assert direct.detail.split(": ")[0] == "validator"
    assert c.app.votes.proposals == {}


def test_only_the_validator_set_operations_can_be_voted_on() -> None:
    c = Cluster(4)
    for target, payload in ((tcapp.KV, kvstore.put(b"a", b"1")), (tcapp.CA, cacommands.challenge_command(["a.b.c"])),
                            (tcapp.DNS, dnsapp.tick_command()), ("nope", b"")):
        refused = c.vote(0, target, payload)
        assert refused.status == votes.STATUS_ERROR and refused.detail.startswith("target: "), target
    malformed = tcapp.decode_routed(c.run(c.write(c.validators[0], votes.VOTES, b"\x00garbage"))[0],
                                    votes.decode_result)
    assert isinstance(malformed, votes.VoteResult) and malformed.detail.startswith("command: malformed")


def test_votes_expire_after_their_time() -> None:
    c = Cluster(4)
    c.app.votes.limits = votes.VoteLimits(vote_ttl_us=HOUR, max_open_per_validator=16)
    payload = _create_node_zone()
    assert c.vote(0, tcapp.DNS, payload).votes == 1
    c.now += HOUR // 2
    assert c.vote(1, tcapp.DNS, payload).votes == 2
    c.now += HOUR // 2 + 1  # validator 0's vote is now older than an hour
    third = c.vote(2, tcapp.DNS, payload)
    assert (third.status, third.votes) == (votes.STATUS_RECORDED, 2)
    assert not c.app.dns.zones
    c.now += 2 * HOUR  # every vote expired: the proposal is gone from replicated state
    c.run()
    c.app.votes.expire(c.now)
    assert c.app.votes.proposals == {}


def test_a_validator_holds_a_bounded_number_of_open_votes_and_can_withdraw() -> None:
    c = Cluster(4)
    c.app.votes.limits = votes.VoteLimits(max_open_per_validator=3)
    payloads = [_node_record(f"192.0.2.{i}") for i in range(4)]
    for p in payloads[:3]:
        assert c.vote(0, tcapp.DNS, p).status == votes.STATUS_RECORDED
    full = c.vote(0, tcapp.DNS, payloads[3])
    assert full.status == votes.STATUS_ERROR and full.detail.startswith("validator: already 3 open votes")
    assert c.vote(1, tcapp.DNS, payloads[3]).status == votes.STATUS_RECORDED  # another validator's quota
    digest = c.vote(0, tcapp.DNS, payloads[0]).digest
    raw = c.run(c.write(c.validators[0], votes.VOTES, votes.withdraw_command(digest)))[0]
    assert votes.decode_result(raw).status == votes.STATUS_WITHDRAWN
    assert c.vote(0, tcapp.DNS, payloads[3]).status == votes.STATUS_RECORDED
    again = votes.decode_result(c.run(c.write(c.validators[0], votes.VOTES, votes.withdraw_command(digest)))[0])
    assert again.status == votes.STATUS_ERROR and again.detail.startswith("digest: ")


def test_an_oversized_operation_is_refused() -> None:
    c = Cluster(4)
    update = ZoneUpdate(NODE_ZONE, tuple(AddRecords(f"n{i}.{NODE_ZONE}", "TXT", 300, ('"' + "x" * 200 + '"',))
                                         for i in range(400)))
    refused = c.vote(0, tcapp.DNS, dnsapp.update_command(update))
    assert refused.status == votes.STATUS_ERROR and refused.detail.startswith("payload: longer than")


def test_snapshot_round_trip_keeps_open_votes() -> None:
    a, b = Cluster(5), Cluster(5)
    for c in (a, b):
        c.vote(0, tcapp.DNS, _create_node_zone())
        c.vote(3, tcapp.DNS, _create_node_zone())
        c.vote(2, tcapp.DNS, _node_record("192.0.2.1"))
    snap = a.app.snapshot()
    assert snap == b.app.snapshot()
    restored = Cluster(5)
    restored.app.restore(snap)
    assert restored.app.snapshot() == snap
    restored.seq, restored.nonce = a.seq, a.nonce
    assert restored.vote(3, tcapp.DNS, _create_node_zone()).status == votes.STATUS_DUPLICATE
    assert restored.vote(1, tcapp.DNS, _create_node_zone()).votes == 3
    assert restored.vote(4, tcapp.DNS, _create_node_zone()).status == votes.STATUS_EXECUTED
    assert [z.to_text() for z in restored.app.dns.zones] == [NODE_ZONE]
    # a tampered snapshot (a vote for a validator that does not exist) is refused
    tampered = decode(votes.VotesSnapshot, encode(a.app.votes.snapshot()))
    record = tampered.proposals[0]
    bad = votes.VotesSnapshot(tampered.version, (type(record)(record.digest, record.target, record.payload, (
        type(record.votes[0])(9, T0),)),), ())
    with pytest.raises(DecodeError, match=r"VotesSnapshot\.proposals"):
        restored.app.votes.restore(bad)


def test_a_zone_around_the_validators_domain_cannot_hold_its_names() -> None:
    c = Cluster(4)
    outer = dnsapp.create_command("trustchain.internal.", primary_ns="ns1.trustchain.internal.",
                                  admin="h.trustchain.internal.", nameservers=["ns1.trustchain.internal."])
    assert c.dns(ALICE, outer).ok  # first come, first served directly below the registry suffix
    squat = ZoneUpdate("trustchain.internal.", (AddRecords(f"validator-0.{NODE_ZONE}", "A", 300, ("192.0.2.66",)),))
    refused = c.dns(ALICE, dnsapp.update_command(squat))
    assert refused.detail.startswith("update.ops[0].name: validator-0.nodes.trustchain.internal. is under")
    mine = ZoneUpdate("trustchain.internal.", (AddRecords("www.trustchain.internal.", "A", 300, ("192.0.2.1",)),))
    assert c.dns(ALICE, dnsapp.update_command(mine)).status == dnsapp.STATUS_OK
    # the validator set's zone is created inside Alice's zone all the same, and it acts nowhere else
    assert c.vote(0, tcapp.DNS, _create_node_zone()).ok
    assert c.vote(1, tcapp.DNS, _create_node_zone()).ok
    assert dnsapp.decode_result(c.vote(2, tcapp.DNS, _create_node_zone()).result).ok
    elsewhere = ZoneUpdate("trustchain.internal.", (AddRecords("x.trustchain.internal.", "A", 300, ("192.0.2.9",)),))
    results = [c.vote(i, tcapp.DNS, dnsapp.update_command(elsewhere)) for i in range(3)]
    assert dnsapp.decode_result(results[-1].result).detail.startswith(
        "update.origin: trustchain.internal.: the validator set acts only under")


@pytest.mark.parametrize("n", range(1, 11))
def test_the_threshold_is_more_than_f_and_at_most_n_minus_f(n: int) -> None:
    tally = votes.ValidatorVotes(n, lambda target, payload: None)
    f = (n - 1) // 3
    assert f + 1 <= tally.threshold <= n - f
    assert 2 * tally.threshold - n >= f + 1  # two quorums share an honest validator
    with pytest.raises(votes.VoteConfigError, match="threshold"):
        votes.ValidatorVotes(n, lambda target, payload: None, threshold=f)


@dataclass(frozen=True)
class _RouterSnapshotV2:
    """The router's snapshot layout before validator votes."""

    version: int
    accounts: bytes
    validations: ValidationsSnapshot
    ca: bytes
    ct: bytes
    dns: bytes
    kv: bytes
    certificates_logged: int


def test_a_snapshot_from_before_votes_restores_with_none_open() -> None:
    c = Cluster(4)
    assert c.dns(ALICE, dnsapp.create_command("alice.internal.", primary_ns="ns1.alice.internal.",
                                              admin="h.alice.internal.", nameservers=["ns1.alice.internal."])).ok
    c.vote(0, tcapp.DNS, _create_node_zone())
    app = c.app
    old = encode(_RouterSnapshotV2(2, app.accounts.snapshot(), app.validation.validations.snapshot(),
                                   app.ca.snapshot(), app.ct.snapshot(), app.dns.snapshot(), app.kv.snapshot(), 0))
    restored = Cluster(4)
    restored.app.restore(old)
    assert [z.to_text() for z in restored.app.dns.zones] == ["alice.internal."]
    assert restored.app.votes.proposals == {}
