"""Certificate serial numbers that no single party can predict or choose: commit-reveal among validators.

Why: a serial derived from what the request and its ordering already fix (sequence, client key, time,
payload) is predictable to the primary that orders the request, and a requester can grind its request
offline until the hash suits it. Serials are meant to be unpredictable (CA/B Forum Baseline Requirements
7.1: at least 64 bits of CSPRNG output) precisely so that nobody can steer the TBS bytes a CA signs.

How. Every validator orders *commitments* ``H(index, r)`` to 32-byte values ``r`` it drew from its own
randomness, ahead of time and in batches (``commit``). When a request is approved, the CA opens a *draw*
for it and assigns, deterministically, the oldest unused commitment of each of ``contributors`` = f+1
validators: the first ones, in a rotation starting at the request's pending id, that have an unused
commitment and are not suspended. The request is fixed at that point, and so is the set of commitments.
Only once every slot of a draw is assigned does each assigned validator order its *reveal* ``r``
(``reveal``); the CA checks it against the commitment, and when all f+1 are in, the draw's output is
``H(request digest, the f+1 (index, r))`` and the serial is 127 bits of it. The TBS is fixed then.

Who can bias it. Among f+1 contributors at least one is honest; its ``r`` is uniform, was committed
before it could know the request, and is revealed only after the request and every other commitment of
the draw were fixed. So neither the requester (the request is ordered before any value of its draw is
revealed), nor the primary (it orders, it learns nothing earlier), nor up to f validators together can
predict the serial or pick it. What a Byzantine contributor *can* do is withhold its reveal once it has
seen the honest ones: after ``reveal_timeout_us`` the draw is discarded whole (every value of it burnt,
so none is reused after being seen) and redrawn from fresh commitments, and the withholder is suspended
from draws for ``suspend_us`` with its unused commitments dropped. Each withheld reveal therefore rejects
one outcome and costs a delay: with f Byzantine validators each able to withhold once per suspension, the
adversary chooses among at most f+1 candidate serials for one request, i.e. at most log2(f+1) bits of
the 127 are biased (1 bit at f = 1); it can never name a serial. A requester can also simply ask for
several certificates and keep one, bounded by the rate limits. Uniqueness: a serial already issued or
pending is re-derived with a counter (never seen at 127 bits, but checked).

Pure state machine: the CA calls it inside ``execute``; ``Contributor`` is what runs on each validator's
node (values from the ``rand_bytes`` passed in, kept by the driver on disk before they are committed).
"""

from __future__ import annotations

import hashlib
import struct
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

from trustchain.encoding import DecodeError

__all__ = [
    "SERIAL_BITS",
    "VALUE_SIZE",
    "Contributor",
    "Draw",
    "Resolved",
    "SerialLimits",
    "SerialRandomness",
    "SerialsSnapshot",
    "Slot",
    "commitment",
    "draw_output",
    "serial_from_output",
]

VALUE_SIZE = 32
SERIAL_BITS = 127  # 16 octets with the top bit clear: a positive DER INTEGER within RFC 5280's 20 octets
_COMMIT_DOMAIN = b"trustchain/ca/serial-commitment/v1\0"
_OUTPUT_DOMAIN = b"trustchain/ca/serial-draw/v1\0"
_SERIAL_DOMAIN = b"trustchain/ca/serial/v1\0"
SNAPSHOT_VERSION = 1


def commitment(validator: int, value: bytes) -> bytes:
    """What validator ``validator`` orders ahead of time for ``value`` (bound to it: never copyable)."""
    return hashlib.sha256(_COMMIT_DOMAIN + struct.pack(">Q", validator) + value).digest()


def draw_output(request: bytes, reveals: Mapping[int, bytes]) -> bytes:
    """The draw's 32 bytes: the request digest and every contributor's value, in validator order."""
    h = hashlib.sha256(_OUTPUT_DOMAIN + struct.pack(">Q", len(request)) + request)
    for validator in sorted(reveals):
        h.update(struct.pack(">Q", validator) + reveals[validator])
    return h.digest()


def serial_from_output(output: bytes, attempt: int = 0) -> int:
    """A positive serial of ``SERIAL_BITS`` bits from a draw's output (``attempt`` > 0 after a collision)."""
    h = hashlib.sha256(_SERIAL_DOMAIN + struct.pack(">Q", attempt) + output).digest()
    return (int.from_bytes(h[:16], "big") >> (128 - SERIAL_BITS)) or 1


@dataclass(frozen=True)
class SerialLimits:
    max_batch: int = 64  # commitments in one command
    max_unused: int = 256  # unused commitments a validator may hold
    max_draws: int = 4096  # requests awaiting their serial at once
    reveal_timeout_us: int = 30_000_000  # after every slot is assigned, until a missing reveal redraws
    suspend_us: int = 3_600_000_000  # a validator that withheld a reveal contributes to no draw this long


@dataclass(frozen=True)
class Slot:
    """One contributor of a draw: its commitment and, once ordered, its value (empty until revealed)."""

    validator: int
    digest: bytes
    value: bytes = b""


@dataclass(frozen=True)
class Draw:
    """The serial randomness of one approved request (``pending_id``). ``payload`` is the caller's (the
    CA's record of what to build once the serial is known); ``deadline_us`` is 0 while slots are missing."""

    pending_id: int
    request: bytes
    payload: bytes
    created_us: int
    slots: tuple[Slot, ...] = ()
    deadline_us: int = 0
    rounds: int = 1

    def complete(self, contributors: int) -> bool:
        return len(self.slots) == contributors

    def revealed(self) -> bool:
        return all(s.value for s in self.slots)


@dataclass(frozen=True)
class _Unused:
    validator: int
    digests: tuple[bytes, ...]


@dataclass(frozen=True)
class _Suspended:
    validator: int
    until_us: int


@dataclass(frozen=True)
class Resolved:
    """A fixed serial and what it was drawn from, kept ``pending TTL`` so that anyone can check it:
    ``serial_from_output(draw_output(request, reveals), attempt)``, each value matching its commitment."""

    pending_id: int
    serial: bytes
    at_us: int
    request: bytes
    slots: tuple[Slot, ...]
    attempt: int


@dataclass(frozen=True)
class SerialsSnapshot:
    version: int
    unused: tuple[_Unused, ...]
    draws: tuple[Draw, ...]
    suspended: tuple[_Suspended, ...]
    resolved: tuple[Resolved, ...]


@dataclass
class Outcome:
    """What one ordered command or expiry did: draws whose randomness is complete (pending id, output),
    and an error detail ("<field>: <reason>") for a refused command."""

    completed: list[tuple[Draw, bytes]] = field(default_factory=list)
    problem: str = ""


class SerialRandomness:
    """Replicated commit-reveal state (see module docstring). Validators are indices 0..n-1."""

    def __init__(self, n: int, contributors: int, limits: SerialLimits | None = None) -> None:
        assert 0 <= contributors <= n
        self.n = n
        self.contributors = contributors
        self.limits = limits or SerialLimits()
        self.unused: dict[int, list[bytes]] = {}  # validator -> its unused commitments, oldest first
        self.draws: dict[int, Draw] = {}  # pending id -> draw, in pending id order
        self.suspended: dict[int, int] = {}  # validator -> consensus time its suspension ends
        self.resolved: dict[int, Resolved] = {}  # pending id -> its serial, kept pending TTL for lookups
        self._reindex()

    @property
    def enabled(self) -> bool:
        return self.contributors > 0

    def _reindex(self) -> None:
        self._slot_of = {(s.validator, s.digest): d.pending_id for d in self.draws.values() for s in d.slots}

    # -- commands ------------------------------------------------------------------------------------

    def commit(self, validator: int, digests: tuple[bytes, ...], now_us: int) -> Outcome:
        if not 0 <= validator < self.n:
            return Outcome(problem="authorization: only a validator may commit serial randomness")
        if len(digests) > self.limits.max_batch:
            return Outcome(problem=f"commitments: at most {self.limits.max_batch} in one command")
        if any(len(d) != 32 for d in digests):
            return Outcome(problem="commitments: each is a 32-byte SHA-256 digest")
        mine = self.unused.setdefault(validator, [])
        fresh = [d for d in dict.fromkeys(digests) if d not in mine and (validator, d) not in self._slot_of]
        if len(mine) + len(fresh) > self.limits.max_unused:
            return Outcome(problem=f"commitments: a validator holds at most {self.limits.max_unused} unused")
        mine.extend(fresh)
        self._assign(now_us)
        return Outcome()

    def reveal(self, validator: int, reveals: tuple[tuple[bytes, bytes], ...], now_us: int) -> Outcome:
        """``reveals`` are (commitment, value) pairs of slots assigned to ``validator`` in complete draws."""
        if not 0 <= validator < self.n:
            return Outcome(problem="authorization: only a validator may reveal serial randomness")
        if len(reveals) > self.limits.max_batch:
            return Outcome(problem=f"reveals: at most {self.limits.max_batch} in one command")
        touched: set[int] = set()
        for digest, value in reveals:
            pid = self._slot_of.get((validator, digest))
            if pid is None:
                continue  # a draw that was redrawn or expired meanwhile: nothing to do
            draw = self.draws[pid]
            if not draw.complete(self.contributors):
                return Outcome(problem="reveals: a value of a draw whose commitments are not all assigned")
            if len(value) != VALUE_SIZE or commitment(validator, value) != digest:
                return Outcome(problem="reveals: a value does not match its commitment")
            slots = tuple(Slot(s.validator, s.digest, value) if (s.validator, s.digest) == (validator, digest)
                          else s for s in draw.slots)
            self.draws[pid] = Draw(draw.pending_id, draw.request, draw.payload, draw.created_us, slots,
                                   draw.deadline_us, draw.rounds)
            touched.add(pid)
        completed = []
        for pid in sorted(touched):
            draw = self.draws[pid]
            if draw.revealed():
                completed.append((draw, draw_output(draw.request, {s.validator: s.value for s in draw.slots})))
                self._remove(pid)
        return Outcome(completed)

    def start(self, pending_id: int, request: bytes, payload: bytes, now_us: int) -> str | None:
        """Open the draw of an approved request; a problem ("<field>: <reason>") if too many are open."""
        assert pending_id not in self.draws
        if len(self.draws) >= self.limits.max_draws:
            return "serial: too many certificates are waiting for their serial; retry later"
        self.draws[pending_id] = Draw(pending_id, request, payload, now_us)
        self._assign(now_us)
        return None

    def resolve(self, draw: Draw, serial: bytes, attempt: int, now_us: int) -> None:
        """Remember the serial a draw produced and its inputs (lookups and audits, until it expires)."""
        self.resolved[draw.pending_id] = Resolved(draw.pending_id, serial, now_us, draw.request, draw.slots, attempt)

    def cancel(self, pending_id: int) -> None:
        self._remove(pending_id)

    # -- time ----------------------------------------------------------------------------------------

    def expire(self, now_us: int, ttl_us: int) -> list[int]:
        """Redraw every draw past its reveal deadline, suspending its withholders; drop draws older than
        ``ttl_us`` and return their pending ids."""
        for v in [v for v, until in self.suspended.items() if until <= now_us]:
            del self.suspended[v]
        dropped = [pid for pid, d in self.draws.items() if now_us - d.created_us > ttl_us]
        for pid in dropped:
            self._remove(pid)
        for pid in [p for p, r in self.resolved.items() if now_us - r.at_us > ttl_us]:
            del self.resolved[pid]
        overdue = [d for d in self.draws.values() if d.deadline_us and d.deadline_us <= now_us]
        for draw in overdue:
            for slot in draw.slots:
                if not slot.value:
                    self.suspended[slot.validator] = now_us + self.limits.suspend_us
                    self.unused.pop(slot.validator, None)
            # every value of this draw may have been seen: none of its commitments is ever used again
            self.draws[draw.pending_id] = Draw(draw.pending_id, draw.request, draw.payload, draw.created_us,
                                               (), 0, draw.rounds + 1)
        if overdue:
            self._reindex()
            self._assign(now_us)
        return dropped

    def next_deadline(self) -> int | None:
        """The earliest reveal deadline (the nodes order a command then, so that expiry runs)."""
        deadlines = [d.deadline_us for d in self.draws.values() if d.deadline_us]
        return min(deadlines) if deadlines else None

    # -- queries -------------------------------------------------------------------------------------

    def assigned_to(self, validator: int) -> list[bytes]:
        """Commitments of ``validator`` in complete draws that it has not revealed yet."""
        return [s.digest for d in self.draws.values() if d.complete(self.contributors)
                for s in d.slots if s.validator == validator and not s.value]

    def unused_count(self, validator: int) -> int:
        return len(self.unused.get(validator, ()))

    # -- internals -----------------------------------------------------------------------------------

    def _remove(self, pending_id: int) -> None:
        draw = self.draws.pop(pending_id, None)
        if draw is not None:
            for s in draw.slots:
                self._slot_of.pop((s.validator, s.digest), None)

    def _assign(self, now_us: int) -> None:
        """Give every draw still short of contributors the oldest unused commitment of the next eligible
        validators (rotation from its pending id), in pending id order; a draw whose slots are all
        assigned gets its reveal deadline."""
        for pid in sorted(self.draws):
            draw = self.draws[pid]
            if draw.complete(self.contributors):
                continue
            slots = list(draw.slots)
            taken = {s.validator for s in slots}
            for k in range(self.n):
                if len(slots) == self.contributors:
                    break
                v = (pid + k) % self.n
                if v in taken or v in self.suspended or not self.unused.get(v):
                    continue
                digest = self.unused[v].pop(0)
                slots.append(Slot(v, digest))
                self._slot_of[(v, digest)] = pid
            slots.sort(key=lambda s: s.validator)
            done = len(slots) == self.contributors
            self.draws[pid] = Draw(pid, draw.request, draw.payload, draw.created_us, tuple(slots),
                                   now_us + self.limits.reveal_timeout_us if done else 0, draw.rounds)

    # -- snapshot ------------------------------------------------------------------------------------

    def snapshot(self) -> SerialsSnapshot:
        return SerialsSnapshot(
            SNAPSHOT_VERSION,
            tuple(_Unused(v, tuple(d)) for v, d in sorted(self.unused.items()) if d),
            tuple(self.draws[p] for p in sorted(self.draws)),
            tuple(_Suspended(v, u) for v, u in sorted(self.suspended.items())),
            tuple(self.resolved[p] for p in sorted(self.resolved)),
        )

    def restore(self, snap: SerialsSnapshot) -> None:
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"SerialsSnapshot.version: {snap.version} is not {SNAPSHOT_VERSION}")
        self.unused = {u.validator: list(u.digests) for u in snap.unused}
        self.draws = {d.pending_id: d for d in snap.draws}
        self.suspended = {s.validator: s.until_us for s in snap.suspended}
        self.resolved = {r.pending_id: r for r in snap.resolved}
        self._reindex()


RandBytes = Callable[[int], bytes]


class Contributor:
    """One validator's side: draws values, says what to commit and what to reveal. The values are secret
    until revealed; the driver must keep ``values`` durable before it orders their commitments (a value
    lost in a crash only costs a redraw and a suspension)."""

    def __init__(self, validator: int, rand_bytes: RandBytes, *, low: int = 32, batch: int = 64) -> None:
        self.validator = validator
        self.rand_bytes = rand_bytes
        self.low = low
        self.batch = batch
        self.values: dict[bytes, bytes] = {}  # commitment -> value
        self._seen: set[bytes] = set()  # commitments the replicated state has held

    def new_commitments(self, state: SerialRandomness) -> tuple[bytes, ...]:
        """Fresh commitments to order when fewer than ``low`` are unused (their values are kept here)."""
        if state.unused_count(self.validator) >= self.low or self.validator in state.suspended:
            return ()
        room = state.limits.max_unused - state.unused_count(self.validator)
        out = []
        for _ in range(max(0, min(self.batch, room, state.limits.max_batch))):
            value = self.rand_bytes(VALUE_SIZE)
            assert len(value) == VALUE_SIZE
            digest = commitment(self.validator, value)
            self.values[digest] = value
            out.append(digest)
        return tuple(out)

    def reveals(self, state: SerialRandomness) -> tuple[tuple[bytes, bytes], ...]:
        """The (commitment, value) pairs to order now: our slots in draws whose slots are all assigned."""
        due = [d for d in state.assigned_to(self.validator) if d in self.values]
        return tuple((d, self.values[d]) for d in due[: state.limits.max_batch])

    def forget(self, state: SerialRandomness) -> None:
        """Drop values that can never be revealed again: held by the replicated state once and gone now
        (revealed, redrawn, dropped), or never ordered while newer batches were (a lost command)."""
        live = set(state.unused.get(self.validator, ())) | set(state.assigned_to(self.validator))
        live |= {s.digest for d in state.draws.values() for s in d.slots if s.validator == self.validator}
        self._seen |= live & set(self.values)
        unseen = [d for d in self.values if d not in self._seen]
        stale = unseen[: max(0, len(unseen) - 2 * self.batch)]
        for digest in [d for d in self.values if (d in self._seen and d not in live)] + stale:
            del self.values[digest]
            self._seen.discard(digest)
