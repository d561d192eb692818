"""Serial numbers from the validators' commit-reveal randomness: nobody alone predicts or picks them.

The replicated CA is driven directly with four validators (f = 1, so every serial takes the values of
two of them). Commitments are computed here by hand (SHA-256 over the documented encoding), not with
the production helper, and expectations are outcomes: which serials differ, which commands are refused.
"""

from __future__ import annotations

import hashlib
import random
import struct

from cryptography import x509

from tests.ca.ca_testutil import (
    CA_DOMAIN,
    T0_US,
    Client,
    MutableDNS,
    ca_name,
    issuer_profile,
    prove_and_request,
    run,
)
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import commands as cacommands
from trustchain.ca import frost, issuance
from trustchain.ca import policy as capolicy
from trustchain.ca import x509 as cax509
from trustchain.ca.records import IssuedCertificate, PendingIssuance

GROUP = frost.trusted_dealer_keygen(5, 3, random.Random(11).randbytes)
PROFILE = issuer_profile(ca_name("TrustChain Issuing E1"), GROUP.public.group_public_key)
VALIDATORS = tuple(hashlib.sha256(b"validator %d" % i).digest() for i in range(4))
ALICE = b"\xaa" * 32
SECOND = 1_000_000


def commit(validator: int, value: bytes) -> bytes:
    """The commitment as documented: SHA-256(domain, validator index as 8 bytes, value)."""
    return hashlib.sha256(b"trustchain/ca/serial-commitment/v1\0" + struct.pack(">Q", validator) + value).digest()


def value(validator: int, k: int, tag: bytes = b"") -> bytes:
    return hashlib.sha256(b"value %d %d " % (validator, k) + tag).digest()


class Harness:
    """One replica's CA, Alice's account with a domain, and the validators' commit/reveal writes."""

    def __init__(self, honest_tag: bytes = b"") -> None:
        self.dns = MutableDNS()
        self.app = issuance.CAApplication(capolicy.CAPolicy(
            PROFILE, CA_DOMAIN, validator_keys=VALIDATORS, serial_contributors=2, require_payment=False), self.dns)
        self.alice = Client(ALICE)
        self.validators = [Client(k) for k in VALIDATORS]
        self.seq, self.now = 0, T0_US
        self.honest_tag = honest_tag  # validator 1's values differ between harnesses with different tags
        self.values: dict[bytes, bytes] = {}

    def run(self, client: Client, payload: bytes) -> cacommands.CAResult:
        self.seq += 1
        self.now += SECOND
        return run(self.app, client.op(payload), self.seq, self.now)

    def commit_all(self, count: int = 4, validators: tuple[int, ...] = (0, 1, 2, 3)) -> None:
        for v in validators:
            digests = []
            for k in range(count):
                val = value(v, k + 100 * self.seq, self.honest_tag if v == 1 else b"")
                digests.append(commit(v, val))
                self.values[digests[-1]] = val
            res = self.run(self.validators[v], cacommands.serial_commit_command(digests))
            assert res.ok, res

    def request(self, name: str = "www.example.org", seed: int = 1) -> cacommands.CAResult:
        self.seq += 2
        self.now += SECOND
        res = prove_and_request(self.app, self.dns, self.alice, [name], self.seq, self.now, csr_seed=seed)
        self.seq += 1
        return res

    def reveal(self, v: int) -> cacommands.CAResult:
        digests = self.app.serials.assigned_to(v)
        return self.run(self.validators[v], cacommands.serial_reveal_command([(d, self.values[d]) for d in digests]))

    def reveal_all(self) -> None:
        for v in range(4):
            if self.app.serials.assigned_to(v):
                assert self.reveal(v).ok

    def stage(self, pending_id: int) -> PendingIssuance:
        """The pending issuance answering request ``pending_id`` (recorded once its serial is fixed)."""
        found = [p for p in self.app.pending.values() if p.request_id == pending_id]
        assert len(found) == 1, found
        return found[0]

    def serial(self, pending_id: int) -> int:
        return int.from_bytes(self.stage(pending_id).serial, "big")


def test_a_request_waits_for_its_serial_and_gets_one_after_two_reveals() -> None:
    h = Harness()
    h.commit_all()
    res = h.request()
    assert res.status == cacommands.STATUS_PENDING and res.serial == b""  # nobody knows it yet
    pid = res.pending_id
    assert h.app.pending_items() == {} and h.app.request_serial(pid) is None  # nothing to sign yet
    draw = h.app.serials.draws[pid]
    assert len(draw.slots) == 2 and len({s.validator for s in draw.slots}) == 2
    first, second = (s.validator for s in draw.slots)
    assert h.reveal(first).ok and not h.app.pending  # one reveal is not enough
    assert h.reveal(second).ok and h.stage(pid).pending_id > pid
    serial = h.app.request_serial(pid)
    assert serial is not None and serial == h.stage(pid).serial
    # the TBS the signers get carries exactly that serial
    cert_serial = x509.load_der_x509_certificate(_fake_signed(h.stage(pid).tbs)).serial_number
    assert cert_serial.to_bytes(len(serial), "big") == serial and 0 < cert_serial < 2**127


def _fake_signed(tbs: bytes) -> bytes:
    """A certificate structure around ``tbs`` (signature not checked) so that cryptography parses it."""
    return cax509.assemble_certificate(tbs, b"\x00" * 64)


def test_the_serial_depends_on_the_honest_reveal_and_no_request_choice_fixes_it() -> None:
    """The requester (or the primary, which orders it) may pick among many requests before it is ordered,
    but each one's serial is fixed only by the honest validator's value revealed after it: under two
    different honest values no candidate request keeps its serial, so choosing the request picks nothing."""
    outcomes: dict[bytes, list[int]] = {}
    for tag in (b"world A", b"world B"):
        serials = []
        for candidate in range(8):
            h = Harness(tag)
            h.commit_all()
            pid = h.request(f"h{candidate}.example.org", seed=candidate + 1).pending_id
            assert 1 in {s.validator for s in h.app.serials.draws[pid].slots}
            h.reveal_all()
            serials.append(h.serial(pid))
        outcomes[tag] = serials
    a, b = outcomes[b"world A"], outcomes[b"world B"]
    assert len(set(a)) == len(set(b)) == 8
    # Every draw of this harness includes validator 1 (rotation from the pending id over four validators
    # with f+1 = 2 slots takes validators 1 and 2 for the first request), so its value alone changes all.
    assert all(x != y for x, y in zip(a, b, strict=True))
    assert not set(a) & set(b)


def test_reveals_before_the_set_is_fixed_or_not_matching_are_refused() -> None:
    h = Harness()
    h.commit_all(validators=(1,))  # only one validator has commitments: the draw waits for a second
    pid = h.request().pending_id
    draw = h.app.serials.draws[pid]
    assert len(draw.slots) == 1 and draw.deadline_us == 0
    slot = draw.slots[0]
    early = h.run(h.validators[1], cacommands.serial_reveal_command([(slot.digest, h.values[slot.digest])]))
    assert early.status == cacommands.STATUS_ERROR and early.field == "reveals"  # would let a later commit adapt
    h.commit_all(validators=(3,))
    assert len(h.app.serials.draws[pid].slots) == 2 and h.app.serials.draws[pid].deadline_us > 0
    wrong = h.run(h.validators[1], cacommands.serial_reveal_command([(slot.digest, b"\x00" * 32)]))
    assert wrong.status == cacommands.STATUS_ERROR and wrong.field == "reveals"
    # another validator cannot reveal for validator 1's slot (the commitment binds the validator index)
    other = h.run(h.validators[0], cacommands.serial_reveal_command([(slot.digest, h.values[slot.digest])]))
    assert other.ok and h.app.serials.draws[pid].slots[0].value == b""
    h.reveal_all()
    assert h.stage(pid)


def test_only_validators_commit_and_commitments_are_bounded() -> None:
    h = Harness()
    res = h.run(h.alice, cacommands.serial_commit_command([b"\x01" * 32]))
    assert res.status == cacommands.STATUS_ERROR and res.field == "authorization"
    res = h.run(h.validators[0], cacommands.serial_commit_command([b"\x01" * 31]))
    assert res.field == "commitments"
    too_many = [hashlib.sha256(b"%d" % i).digest() for i in range(65)]
    assert h.run(h.validators[0], cacommands.serial_commit_command(too_many)).field == "commitments"
    for k in range(4):
        batch = [hashlib.sha256(b"%d/%d" % (k, i)).digest() for i in range(64)]
        assert h.run(h.validators[0], cacommands.serial_commit_command(batch)).ok
    assert h.run(h.validators[0], cacommands.serial_commit_command([b"\x02" * 32])).field == "commitments"


def test_a_withheld_reveal_redraws_from_fresh_commitments_and_suspends_the_withholder() -> None:
    h = Harness()
    h.commit_all()
    pid = h.request().pending_id
    first = h.app.serials.draws[pid].slots
    withholder, honest = first[0].validator, first[1].validator
    assert h.reveal(honest).ok  # the honest value is public now
    h.now += 31 * SECOND  # past the reveal deadline: the next ordered command redraws
    h.commit_all(validators=())
    assert h.run(h.validators[2], cacommands.serial_commit_command([])).ok
    redrawn = h.app.serials.draws[pid]
    assert redrawn.rounds == 2 and withholder in h.app.serials.suspended
    assert withholder not in {s.validator for s in redrawn.slots}
    assert not {s.digest for s in redrawn.slots} & {s.digest for s in first}  # nothing seen is reused
    assert len(redrawn.slots) == 2
    late = h.run(h.validators[withholder], cacommands.serial_reveal_command(
        [(first[0].digest, h.values[first[0].digest])]))
    assert late.ok and not h.app.pending  # the withheld value no longer counts
    h.reveal_all()
    assert h.stage(pid)


def test_serials_are_unique_and_use_the_top_bits() -> None:
    h = Harness()
    h.commit_all(count=40)
    pids = [h.request(f"n{i}.example.org", seed=i + 1).pending_id for i in range(24)]
    h.reveal_all()
    serials = [h.serial(p) for p in pids]
    assert len(set(serials)) == len(serials) and all(0 < s < 2**127 for s in serials)
    assert max(s.bit_length() for s in serials) >= 120  # 127 random bits, not a small counter


def test_a_serial_already_taken_is_derived_again() -> None:
    """Two replicas fed the same inputs, one of which already holds the serial the draw yields."""
    plain, taken = Harness(), Harness()
    for h in (plain, taken):
        h.commit_all()
    pid = plain.request().pending_id
    plain.reveal_all()
    serial = plain.stage(pid).serial
    taken.app.issued[serial] = IssuedCertificate(serial, b"", b"", (), T0_US + 10**12)
    assert taken.request().pending_id == pid
    taken.reveal_all()
    assert taken.stage(pid).serial != serial and len(taken.stage(pid).serial) <= 16


def test_state_survives_a_snapshot_and_both_replicas_agree() -> None:
    h = Harness()
    h.commit_all()
    pid = h.request().pending_id
    restored = issuance.CAApplication(h.app.policy, h.app.lookup)
    restored.restore(h.app.snapshot())
    assert restored.snapshot() == h.app.snapshot()
    ops = [Operation(VALIDATORS[v], 99, cacommands.serial_reveal_command(
        [(d, h.values[d]) for d in h.app.serials.assigned_to(v)])) for v in range(4) if h.app.serials.assigned_to(v)]
    assert len(ops) == 2
    for app in (h.app, restored):
        app.execute(ops, ExecutionContext(500, h.now + SECOND))
    assert [p for p in restored.pending.values() if p.request_id == pid] == [h.stage(pid)]


def test_a_ca_without_validators_keeps_deriving_serials_from_the_request() -> None:
    app = issuance.CAApplication(capolicy.CAPolicy(PROFILE, CA_DOMAIN, require_payment=False), MutableDNS())
    assert not app.serials.enabled
    dns = app.lookup
    assert isinstance(dns, MutableDNS)
    res = prove_and_request(app, dns, Client(ALICE), ["www.example.org"], 1, T0_US)
    assert res.status == cacommands.STATUS_PENDING and res.serial and res.pending_id in app.pending
