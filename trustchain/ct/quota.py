"""Per-account limits on CT submissions: how often an account may submit and how much it may store.

Every replica verifies each submitted chain and keeps each new entry forever, so one account must not
be able to spend the log's capacity or the replicas' CPU for everyone. Submissions are counted per
account over a sliding window of consensus time (every submission that reaches the checks counts, so a
flood of bad chains is cut off before its signatures are verified), and stored bytes per account and in
all. The CA's own certificates are appended without passing here: they are bounded by the CA's rules.

Deterministic (consensus time only) and part of the CT snapshot, so a replica that restores a
snapshot refuses exactly what the others refuse.
"""

from __future__ import annotations

from dataclasses import dataclass, field

__all__ = ["AccountUsage", "CTQuota", "SubmissionQuotas"]


@dataclass(frozen=True)
class CTQuota:
    """Replicated policy (genesis `limits.ct`). Defaults: 1000 submissions per account per hour, 16 MiB
    stored per account, 1 GiB of submitted entries in all."""

    submissions_per_window: int = 1000
    window_us: int = 3600 * 1_000_000
    max_account_bytes: int = 16 << 20
    max_total_bytes: int = 1 << 30

    def __post_init__(self) -> None:
        for name, value in vars(self).items():
            if type(value) is not int or value < 1:
                raise ValueError(f"{name}: must be a positive integer, got {value!r}")


@dataclass(frozen=True)
class AccountUsage:
    """One account's usage as the snapshot carries it."""

    account: bytes
    stored_bytes: int
    recent_us: tuple[int, ...]  # consensus times of its submissions, oldest first


@dataclass
class _Usage:
    stored_bytes: int = 0
    recent_us: list[int] = field(default_factory=list)


class SubmissionQuotas:
    def __init__(self, quota: CTQuota) -> None:
        self.quota = quota
        self._usage: dict[bytes, _Usage] = {}
        self.total_bytes = 0

    def admit(self, account: bytes, now_us: int) -> str | None:
        """Count one submission by `account` now, or say ("<field>: <reason>") why it is over the rate."""
        q = self.quota
        usage = self._usage.setdefault(account, _Usage())
        cutoff = now_us - q.window_us
        usage.recent_us = [t for t in usage.recent_us if t > cutoff]
        if len(usage.recent_us) >= q.submissions_per_window:
            return (f"limits.ct.submissions_per_window: this account made {len(usage.recent_us)} submissions "
                    f"in the last {q.window_us // 1_000_000} s, at most {q.submissions_per_window}")
        usage.recent_us.append(now_us)
        return None

    def storage_error(self, account: bytes, size: int) -> str | None:
        """Why storing `size` more bytes for `account` is over a limit, or None."""
        q = self.quota
        used = self._usage[account].stored_bytes if account in self._usage else 0
        if used + size > q.max_account_bytes:
            return (f"limits.ct.max_account_bytes: this account's entries would take {used + size} bytes, "
                    f"at most {q.max_account_bytes}")
        if self.total_bytes + size > q.max_total_bytes:
            return f"limits.ct.max_total_bytes: submitted entries would take {self.total_bytes + size} bytes, " \
                   f"at most {q.max_total_bytes}"
        return None

    def stored(self, account: bytes, size: int) -> None:
        assert self.storage_error(account, size) is None, "stored over the quota"
        self._usage.setdefault(account, _Usage()).stored_bytes += size
        self.total_bytes += size

    def usage(self, account: bytes) -> tuple[int, int]:
        """(stored bytes, submissions in the window as last counted) of `account`."""
        u = self._usage.get(account)
        return (0, 0) if u is None else (u.stored_bytes, len(u.recent_us))

    def snapshot(self) -> tuple[AccountUsage, ...]:
        return tuple(AccountUsage(a, u.stored_bytes, tuple(u.recent_us)) for a, u in sorted(self._usage.items())
                     if u.stored_bytes or u.recent_us)

    def restore(self, records: tuple[AccountUsage, ...]) -> None:
        """Raises ValueError for records no honest replica produces."""
        usage: dict[bytes, _Usage] = {}
        for r in records:
            if r.account in usage or r.stored_bytes < 0 or list(r.recent_us) != sorted(r.recent_us) \
                    or len(r.recent_us) > self.quota.submissions_per_window:
                raise ValueError("duplicate account, negative bytes or a bad submission window")
            usage[r.account] = _Usage(r.stored_bytes, list(r.recent_us))
        self._usage = usage
        self.total_bytes = sum(u.stored_bytes for u in usage.values())
