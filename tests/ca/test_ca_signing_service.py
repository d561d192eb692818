"""FROST signing coordinator: 5 services in a synchronous harness, with a bad signer and a silent aggregator."""

from __future__ import annotations

import hashlib
from collections import deque

from ca_testutil import CA_DOMAIN, T0_US, Client, MutableDNS, ca_name, issuer_profile, prove_and_request, seeded
from cryptography import x509

from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import events as caevents
from trustchain.ca import frost, issuance
from trustchain.ca import policy as capolicy
from trustchain.ca import records as carecords
from trustchain.ca import signing_service as ss
from trustchain.crypto.signing import Ed25519Signer

GROUP = frost.trusted_dealer_keygen(5, 3, seeded(11))
SIGNERS = {i: Ed25519Signer(hashlib.sha256(b"validator %d" % i).digest()) for i in range(1, 6)}
PEERS = {i: s.public_key for i, s in SIGNERS.items()}


class BadShareService(ss.SigningService):
    """Byzantine signer: answers every sign request with a share that does not verify."""

    def _make_share(self, nonces: frost.SigningNonces, ctx: frost.SigningContext) -> bytes:
        good = super()._make_share(nonces, ctx)
        return frost.group.scalar_add(good, frost.group.ONE)


class Harness:
    """Delivers messages FIFO; when the network is idle, fires the earliest timer. ``silent`` validators'
    outgoing messages and finalize submissions are dropped (a crashed or withholding aggregator)."""

    def __init__(self, services: dict[int, ss.SigningService], app: issuance.CAApplication, silent: set[int]) -> None:
        self.services = services
        self.app = app
        self.silent = silent
        self.now = T0_US
        self.queue: deque[tuple[int, bytes]] = deque()
        self.timers: list[tuple[int, int, ss.TimerKey]] = []
        self.misbehaviour: list[tuple[int, int, str]] = []
        self.submissions: list[int] = []
        self.messages = 0
        self.seq = 100

    def apply(self, who: int, effects: list[ss.Effect]) -> None:
        for e in effects:
            if isinstance(e, ss.Send):
                if who not in self.silent:
                    self.queue.append((e.to, e.data))
            elif isinstance(e, ss.SetTimer):
                self.timers.append((e.at_us, who, e.key))
            elif isinstance(e, ss.Misbehaviour):
                self.misbehaviour.append((who, e.accused, e.reason))
            elif who not in self.silent:
                self.submissions.append(who)
                self.seq += 1
                out = self.app.execute(
                    [Operation(PEERS[who], self.seq, e.command)], ExecutionContext(self.seq, self.now)
                )[0]
                if cacommands.decode_result(out).status in (cacommands.STATUS_OK, cacommands.STATUS_STALE):
                    for s in self.services.values():
                        s.on_finalized(e.pending_id)

    def run(self, limit_us: int = 60_000_000) -> None:
        while self.now < T0_US + limit_us:
            if self.queue:
                to, data = self.queue.popleft()
                self.messages += 1
                self.apply(to, self.services[to].on_message(data, self.now))
                continue
            if not self.timers:
                return
            self.timers.sort(key=lambda t: (t[0], t[1]))
            at, who, key = self.timers.pop(0)
            self.now = max(self.now, at)
            self.apply(who, self.services[who].on_timer(key, self.now))


def setup(bad: set[int], silent: set[int]) -> tuple[Harness, MutableDNS]:
    dns = MutableDNS()
    app = issuance.CAApplication(
        capolicy.CAPolicy(issuer_profile(ca_name("TrustChain Issuing E1"), GROUP.public.group_public_key), CA_DOMAIN),
        dns,
    )
    services: dict[int, ss.SigningService] = {}
    for i in range(1, 6):
        cls = BadShareService if i in bad else ss.SigningService
        services[i] = cls(GROUP.key_packages[i], GROUP.public, SIGNERS[i], PEERS, seeded(200 + i))
    h = Harness(services, app, silent)
    for i, s in services.items():
        h.apply(i, s.start(T0_US))
    h.run()  # deliver the pre-published commitments
    h.messages = 0
    return h, dns


def issue_through_services(h: Harness, dns: MutableDNS, names: list[str], seq: int) -> carecords.PendingIssuance:
    res = prove_and_request(h.app, dns, Client(b"\xaa" * 32), names, seq, h.now)
    assert res.status == cacommands.STATUS_PENDING, res
    events = [e for e in h.app.take_events() if isinstance(e, caevents.PendingRecorded)]
    pending = events[-1].pending
    for i, s in h.services.items():  # every replica executed the request and tells its own service
        h.apply(i, s.on_pending(pending.pending_id, pending.tbs, h.now))
    h.run()
    return pending


def test_honest_validators_finalize_quickly() -> None:
    h, dns = setup(set(), set())
    pending = issue_through_services(h, dns, ["www.example.org"], 1)
    record = h.app.issued[pending.serial]
    cert = x509.load_der_x509_certificate(record.certificate_der)
    assert frost.verify_signature(GROUP.public.group_public_key, pending.tbs, cert.signature)
    assert h.misbehaviour == [] and h.submissions == [h.services[1].aggregator(pending.pending_id, 0)]
    # pre-published commitments: one sign request + one share per remote signer, nothing else
    assert h.messages == 2 * (GROUP.public.min_signers - 1)


def test_bad_share_named_and_silent_aggregator_replaced() -> None:
    # pending 1's first aggregator is ids[(1 + 0) % 5] = 2: make it silent; validator 1 sends bad shares.
    h, dns = setup(bad={1}, silent={2})
    assert h.services[1].aggregator(1, 0) == 2
    pending = issue_through_services(h, dns, ["www.example.org", "example.org"], 1)
    assert pending.pending_id == 1
    record = h.app.issued.get(pending.serial)
    assert record is not None, "certificate was not finalized"
    cert = x509.load_der_x509_certificate(record.certificate_der)
    assert cert.tbs_certificate_bytes == pending.tbs
    assert frost.verify_signature(GROUP.public.group_public_key, pending.tbs, cert.signature)
    cert.public_key()  # parses
    # the bad signer is named, by the aggregator that took over after the timeout (validator 3)
    accused = {(who, accused) for who, accused, _ in h.misbehaviour}
    assert accused == {(3, 1)}
    assert h.submissions == [3]
    assert h.now >= T0_US + ss.SigningConfig().attempt_timeout_us
    # later issuances skip the known cheater from the start
    pending2 = issue_through_services(h, dns, ["api.example.org"], 3)
    assert pending2.serial in h.app.issued


def test_messages_are_authenticated_and_addressed() -> None:
    h, _ = setup(set(), set())
    s1, s2 = h.services[1], h.services[2]
    data = ss.seal(SIGNERS[1], 1, 2, ss.CommitmentRequest(2))
    assert ss.open_message(data, PEERS, 2)[0] == 1
    for bad in (
        ss.seal(SIGNERS[3], 1, 2, ss.CommitmentRequest(2)),  # signed by the wrong key
        ss.seal(SIGNERS[1], 1, 3, ss.CommitmentRequest(2)),  # addressed to another validator
        b"\x00garbage",
    ):
        assert s2.on_message(bad, T0_US) == []
    replies = s2.on_message(data, T0_US)
    assert len(replies) == 1 and isinstance(replies[0], ss.Send) and replies[0].to == 1
    sender, msg = ss.open_message(replies[0].data, PEERS, 1)
    assert sender == 2 and isinstance(msg, ss.Commitments) and len(msg.commitments) == 2
    assert s1.on_message(replies[0].data, T0_US) == []


def test_signer_refuses_unrecorded_messages_and_nonce_reuse() -> None:
    h, _ = setup(set(), set())
    s2 = h.services[2]
    tbs = b"\x30\x03\x02\x01\x01"
    s2.on_pending(7, tbs, T0_US)
    agg = h.services[1]
    pool = agg.pools[2]
    nonce_id = min(pool)
    c = pool[nonce_id]
    _, own_c = frost.commit(1, GROUP.key_packages[1].signing_share, seeded(5))
    _, other_c = frost.commit(3, GROUP.key_packages[3].signing_share, seeded(6))
    req = ss.SignRequest(
        7,
        1,
        (
            ss.SessionCommitment(1, 999, own_c.hiding, own_c.binding),
            ss.SessionCommitment(2, nonce_id, c.hiding, c.binding),
            ss.SessionCommitment(3, 998, other_c.hiding, other_c.binding),
        ),
    )
    out = s2.on_message(ss.seal(SIGNERS[1], 1, 2, req), T0_US)
    assert len(out) == 1
    _, share = ss.open_message(out[0].data, PEERS, 1)  # type: ignore[union-attr]
    assert isinstance(share, ss.Share)
    # the same nonce is never used twice, even for the same request
    assert s2.on_message(ss.seal(SIGNERS[1], 1, 2, req), T0_US) == []
    # a request for an issuance this replica never recorded is held back, not signed
    req_unknown = ss.SignRequest(8, 2, req.commitments)
    assert s2.on_message(ss.seal(SIGNERS[1], 1, 2, req_unknown), T0_US) == []
    assert 8 in s2.early


def test_one_message_per_signer_carries_a_whole_batch() -> None:
    h, dns = setup(set(), set())
    for k in range(10):  # ten issuances, as if ordered in one consensus batch
        res = prove_and_request(h.app, dns, Client(bytes([0xB0 + k]) * 32), [f"h{k}.example.org"], 10 + 2 * k, h.now)
        assert res.status == cacommands.STATUS_PENDING, res
    pendings = [e.pending for e in h.app.take_events() if isinstance(e, caevents.PendingRecorded)]
    assert len(pendings) == 10
    items = {p.pending_id: p.tbs for p in pendings}
    sent: list[tuple[int, int]] = []
    requests: list[ss.SignRequests] = []
    for i, s in h.services.items():  # every replica executed the batch; its service follows the pending set
        effects = s.reconcile(items, h.now)
        for e in effects:
            if isinstance(e, ss.Send):
                sent.append((i, e.to))
                msg = ss.open_message(e.data, PEERS, e.to)[1]
                assert not isinstance(msg, ss.SignRequest), "a lone sign request although several were due"
                if isinstance(msg, ss.SignRequests):
                    requests.append(msg)
        h.apply(i, effects)
    assert len(sent) == len(set(sent)), "more than one message from one aggregator to one signer"
    assert sum(len(m.requests) for m in requests) == 10 * (GROUP.public.min_signers - 1)
    h.run()
    assert h.misbehaviour == []
    for p in pendings:
        cert = x509.load_der_x509_certificate(h.app.issued[p.serial].certificate_der)
        assert frost.verify_signature(GROUP.public.group_public_key, p.tbs, cert.signature)
