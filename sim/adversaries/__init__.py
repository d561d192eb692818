"""Byzantine behaviours, by the name scenarios use. `twins` is structural (a second copy of the
replica with the same keys) and is built by the world, not here. Byzantine clients (scenario
`byzantine_clients`) are nodes of their own, in `sim.adversaries.clients`."""

from __future__ import annotations

from sim.adversaries.bad_signatures import BadSignatures
from sim.adversaries.base import Behaviour, Coalition, Outgoing
from sim.adversaries.checkpoint_lie import CheckpointLie
from sim.adversaries.clients import CLIENT_BEHAVIOURS, ByzantineClient
from sim.adversaries.corrupt_batch import CorruptBatch
from sim.adversaries.crash import CrashWorstMoment
from sim.adversaries.double_vote import DoubleVote
from sim.adversaries.equivocate import Equivocate
from sim.adversaries.impersonate import ImpersonatePrimary
from sim.adversaries.nv_forge import NvForge
from sim.adversaries.replay import ReplayStale
from sim.adversaries.selective_delay import SelectiveDelay
from sim.adversaries.silent import Silent
from sim.adversaries.state_lie import StateLie
from sim.adversaries.vc_equivocate import VcEquivocate
from sim.adversaries.vc_forge import VcForge
from sim.adversaries.vc_withhold import VcWithhold

BEHAVIOURS: dict[str, type[Behaviour]] = {
    cls.name: cls
    for cls in (Silent, CrashWorstMoment, Equivocate, DoubleVote, BadSignatures, ReplayStale, SelectiveDelay,
                ImpersonatePrimary, CorruptBatch, VcEquivocate, VcForge, VcWithhold, NvForge, CheckpointLie,
                StateLie)
}

__all__ = ["BEHAVIOURS", "CLIENT_BEHAVIOURS", "Behaviour", "ByzantineClient", "Coalition", "Outgoing"]
