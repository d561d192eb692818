"""Domain control observed outside TrustChain, decided by a validator quorum.

For a name TrustChain does not serve, no replicated record can prove control. Instead each validator
resolves the challenge record in the public DNS on its own and submits what it saw as an ordered
command; the decision is taken in consensus when `threshold` validators agree. With f < threshold and
threshold <= n - f (the signing-threshold rule of `trustchain.quorum`), f Byzantine validators can
neither validate a name alone nor block a name every honest validator sees: multi-perspective
corroboration with a BFT quorum instead of a fixed set of vantage points.

Pure and deterministic: validators' observations are inputs; time is consensus time.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from trustchain.errors import TrustChainError
from trustchain.quorum import check_signing_threshold

__all__ = [
    "DNS01",
    "FAILED",
    "HTTP01",
    "METHODS",
    "OPEN",
    "VALIDATED",
    "Decided",
    "ExternalValidations",
    "ValidationConfigError",
    "ValidationLimits",
    "ValidationOpened",
    "ValidationsSnapshot",
]

OPEN, VALIDATED, FAILED = "open", "validated", "failed"
#: what the validators look at: a TXT record (`record_name`, must hold `expected`), or an HTTP resource
#: (`record_name` is the path under http://<name>/, its body must be `expected`)
DNS01, HTTP01 = "dns-01", "http-01"
METHODS = (DNS01, HTTP01)
SNAPSHOT_VERSION = 2  # 2: the method


class ValidationConfigError(TrustChainError, ValueError):
    """A validator count and threshold that would let f validators decide alone or block."""


@dataclass(frozen=True)
class ValidationLimits:
    open_ttl_us: int = 10 * 60 * 1_000_000  # an undecided validation expires (fails) after this
    valid_for_us: int = 3600 * 1_000_000  # a decided validation authorizes the account this long
    max_open_per_account: int = 16
    max_open: int = 10_000


@dataclass(frozen=True)
class ValidationOpened:
    """Event: every validator should look up `record_name` by `method` and report whether `expected`
    is there."""

    validation_id: int
    account: bytes
    name: str
    record_name: str
    expected: str
    method: str = DNS01


@dataclass(frozen=True)
class Decided:
    validation_id: int
    account: bytes
    name: str
    outcome: str  # VALIDATED or FAILED


@dataclass
class _Validation:
    account: bytes
    name: str
    record_name: str
    expected: str
    opened_us: int
    state: str = OPEN
    decided_us: int = 0
    votes: dict[int, bool] = field(default_factory=dict)  # validator index -> saw the record
    ready: bool = False  # the account published its record: the validators may look now
    method: str = DNS01


class ExternalValidations:
    def __init__(self, n: int, threshold: int, limits: ValidationLimits | None = None) -> None:
        reason = check_signing_threshold(n, threshold)
        if reason is not None:
            raise ValidationConfigError(f"threshold: {reason}")
        self.n = n
        self.threshold = threshold
        self.limits = limits or ValidationLimits()
        self._items: dict[int, _Validation] = {}
        self._next_id = 1

    def open(self, account: bytes, name: str, record_name: str, expected: str,
             now_us: int, method: str = DNS01) -> ValidationOpened | str:
        """Start a validation, or say why not (field-named reason). Validators look only once the
        account says its record is published (`ready`), as an ACME client answers a challenge."""
        assert method in METHODS
        self.expire(now_us)
        live = [v for v in self._items.values() if v.state == OPEN]
        if len(live) >= self.limits.max_open:
            return "validations: too many open validations, try later"
        if sum(1 for v in live if v.account == account) >= self.limits.max_open_per_account:
            return "validations: too many open validations for this account"
        vid = self._next_id
        self._next_id += 1
        self._items[vid] = _Validation(account, name, record_name, expected, now_us, method=method)
        return ValidationOpened(vid, account, name, record_name, expected, method)

    def ready(self, account: bytes, validation_id: int, now_us: int) -> ValidationOpened | str:
        """The account published its record: the event that asks every validator to look."""
        self.expire(now_us)
        item = self._items.get(validation_id)
        if item is None or item.account != account:
            return "validation_id: unknown, expired or another account's"
        if item.state != OPEN or item.ready:
            return "validation_id: already being observed or decided"
        item.ready = True
        return ValidationOpened(validation_id, account, item.name, item.record_name, item.expected, item.method)

    def observe(self, validator: int, validation_id: int, seen: bool, now_us: int) -> Decided | str | None:
        """Record validator `validator`'s observation. Returns the decision when this vote makes it,
        None while undecided, or an error reason. A validator's first vote is final."""
        assert 0 <= validator < self.n
        self.expire(now_us)
        item = self._items.get(validation_id)
        if item is None:
            return "validation_id: unknown or expired"
        if item.state != OPEN:
            return None  # late votes after the decision are harmless
        if not item.ready:
            return "validation_id: the account has not published its record yet"
        if validator in item.votes:
            return "validator: already observed this validation"
        item.votes[validator] = seen
        yes = sum(1 for v in item.votes.values() if v)
        no = len(item.votes) - yes
        if yes >= self.threshold:
            return self._decide(validation_id, item, VALIDATED, now_us)
        if no > self.n - self.threshold:  # the remaining validators can no longer reach the threshold
            return self._decide(validation_id, item, FAILED, now_us)
        return None

    def _decide(self, vid: int, item: _Validation, outcome: str, now_us: int) -> Decided:
        item.state = outcome
        item.decided_us = now_us
        return Decided(vid, item.account, item.name, outcome)

    def expire(self, now_us: int) -> None:
        """Fail open validations past their time; forget decided ones past their validity."""
        for vid in list(self._items):
            item = self._items[vid]
            if item.state == OPEN and now_us - item.opened_us > self.limits.open_ttl_us:
                item.state, item.decided_us = FAILED, now_us
            if item.state != OPEN and now_us - item.decided_us > self.limits.valid_for_us:
                del self._items[vid]

    def validated(self, account: bytes, name: str, now_us: int) -> bool:
        """Has `account`'s control of `name`'s DNS been validated within the validity period? (An http-01
        validation shows control of a web server, never of the name's DNS.)"""
        return any(
            v.state == VALIDATED and v.account == account and v.name == name and v.method == DNS01
            and now_us - v.decided_us <= self.limits.valid_for_us
            for v in self._items.values()
        )

    def state_of(self, validation_id: int) -> str | None:
        item = self._items.get(validation_id)
        return item.state if item is not None else None

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> ValidationsSnapshot:
        return ValidationsSnapshot(SNAPSHOT_VERSION, self._next_id, tuple(
            _ValidationRecord(vid, v.account, v.name, v.record_name, v.expected, v.opened_us, v.state, v.decided_us,
                              tuple(_Vote(i, seen) for i, seen in sorted(v.votes.items())), v.ready, v.method)
            for vid, v in sorted(self._items.items())
        ))

    def restore(self, snap: ValidationsSnapshot) -> None:
        assert snap.version == SNAPSHOT_VERSION
        self._next_id = snap.next_id
        self._items = {
            r.validation_id: _Validation(r.account, r.name, r.record_name, r.expected, r.opened_us, r.state,
                                         r.decided_us, {v.validator: v.seen for v in r.votes}, r.ready, r.method)
            for r in snap.items
        }


@dataclass(frozen=True)
class _Vote:
    validator: int
    seen: bool


@dataclass(frozen=True)
class _ValidationRecord:
    validation_id: int
    account: bytes
    name: str
    record_name: str
    expected: str
    opened_us: int
    state: str
    decided_us: int
    votes: tuple[_Vote, ...]
    ready: bool
    method: str


@dataclass(frozen=True)
class ValidationsSnapshot:
    version: int
    next_id: int
    items: tuple[_ValidationRecord, ...]
