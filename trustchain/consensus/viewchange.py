"""View change: validating view-change messages and computing the new view's pre-prepares.

Both the new primary (to build NEW-VIEW) and every backup (to check it) run `new_view_pre_prepares`
on the same 2f+1 view-change messages, so a primary that omits or alters a prepared request is
caught: the backups compute a different set and refuse the new view.
"""

from __future__ import annotations

from dataclasses import dataclass

from trustchain.consensus.certificates import (
    InvalidMessage,
    SignatureChecker,
    check_checkpoint_proof,
    check_prepared,
)
from trustchain.consensus.messages import Envelope, Kind, PrePrepare, ViewChange


@dataclass(frozen=True)
class CheckedViewChange:
    envelope: Envelope
    message: ViewChange
    prepared: dict[int, PrePrepare]  # seq -> the pre-prepare of its prepared certificate


def check_view_change(checker: SignatureChecker, env: Envelope) -> CheckedViewChange:
    vc: ViewChange = checker.open(env, Kind.VIEW_CHANGE)
    check_checkpoint_proof(checker, vc.checkpoint_proof, vc.stable_seq, None)
    window = checker.config.watermark_window
    prepared: dict[int, PrePrepare] = {}
    for cert in vc.prepared:
        pp = check_prepared(checker, cert)
        if pp.view >= vc.new_view:
            raise InvalidMessage("invalid_view_change", f"prepared in view {pp.view} >= {vc.new_view}")
        if not vc.stable_seq < pp.seq <= vc.stable_seq + window:
            raise InvalidMessage("invalid_view_change", f"prepared seq {pp.seq} outside the window")
        if pp.seq in prepared:
            raise InvalidMessage("invalid_view_change", f"two prepared certificates for seq {pp.seq}")
        prepared[pp.seq] = pp
    return CheckedViewChange(env, vc, prepared)


NULL_DIGEST = PrePrepare.compute_digest(0, ())


def new_view_pre_prepares(new_view: int, vcs: list[CheckedViewChange]) -> tuple[int, list[PrePrepare]]:
    """PBFT's O set: for every sequence between the highest stable checkpoint (min-s) and the highest
    prepared sequence (max-s), re-propose the batch prepared in the highest view, or a null batch."""
    assert vcs, "a new view needs view-change messages"
    min_s = max(c.message.stable_seq for c in vcs)
    best: dict[int, PrePrepare] = {}
    for c in vcs:
        for seq, pp in c.prepared.items():
            if seq > min_s and (seq not in best or pp.view > best[seq].view):
                best[seq] = pp
    max_s = max(best, default=min_s)
    out = []
    for seq in range(min_s + 1, max_s + 1):
        if seq in best:
            pp = best[seq]
            out.append(PrePrepare(new_view, seq, pp.batch_digest, pp.timestamp_us, pp.batch))
        else:
            out.append(PrePrepare(new_view, seq, NULL_DIGEST, 0, ()))
    return min_s, out
