"""Byzantine behaviours, by the name scenarios use. `twins` is structural (a second copy of the
replica with the same keys) and is built by the world, not here."""

from __future__ import annotations

from sim.adversaries.bad_signatures import BadSignatures
from sim.adversaries.base import Behaviour, Coalition, Outgoing
from sim.adversaries.corrupt_batch import CorruptBatch
from sim.adversaries.crash import CrashWorstMoment
from sim.adversaries.double_vote import DoubleVote
from sim.adversaries.equivocate import Equivocate
from sim.adversaries.impersonate import ImpersonatePrimary
from sim.adversaries.replay import ReplayStale
from sim.adversaries.selective_delay import SelectiveDelay
from sim.adversaries.silent import Silent

BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (Silent, CrashWorstMoment, Equivocate, DoubleVote, BadSignatures, ReplayStale, SelectiveDelay,
                ImpersonatePrimary, CorruptBatch)
}

__all__ = ["BEHAVIOURS", "Behaviour", "Coalition", "Outgoing"]
