"""What honest replicas signed and sent, and the two properties that crash recovery must keep:

* no equivocation: an honest replica never sends two conflicting signed votes, in one incarnation or
  across crashes and restarts: two pre-prepares (as primary, including those inside its NEW-VIEW) or
  two prepares or two commits for one (view, seq) with different digests, two different view-changes
  or new-views for one view, two checkpoints with different state digests for one seq;
* persisted before sent: every signed vote an honest replica sends is already in its synced storage.

`World` feeds every message an honest replica actually sends (after a crash point, nothing more is
sent) to `SentVotes.observe`, and records a violation of kind "equivocation" or "unpersisted_vote";
`check_equivocation` and `check_persisted_before_sent` turn those into checker verdicts.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sim.adversaries.base import open_envelope
from sim.verdict import Verdict
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    Envelope,
    NewView,
    Prepare,
    PrePrepare,
    ViewChange,
    peek_kind,
)
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from sim.world import World

#: wire kinds (as `peek_kind` names them) that are signed votes a replica persists before sending
VOTE_KINDS = frozenset({"pre_prepare", "prepare", "commit", "checkpoint", "view_change", "new_view"})

Claim = tuple[tuple[Any, ...], bytes]  # (what the vote is for, what it says about it)


def claims(env: Envelope, msg: Any) -> list[Claim]:
    """The commitments one signed message makes, each keyed by what no honest replica may say two
    different things about."""
    if isinstance(msg, PrePrepare):
        return [(("pre-prepare", msg.view, msg.seq), msg.batch_digest)]
    if isinstance(msg, Prepare):
        return [(("prepare", msg.view, msg.seq), msg.batch_digest)]
    if isinstance(msg, Commit):
        return [(("commit", msg.view, msg.seq), msg.batch_digest)]
    if isinstance(msg, Checkpoint):
        return [(("checkpoint", msg.seq), msg.state_digest)]
    if isinstance(msg, ViewChange):
        return [(("view-change", msg.new_view), env.digest)]
    if isinstance(msg, NewView):
        out: list[Claim] = [(("new-view", msg.view), env.digest)]
        for pp_env in msg.pre_prepares:
            if pp_env.sender != env.sender:
                continue
            try:
                pp = pp_env.open()
            except DecodeError:
                continue
            if isinstance(pp, PrePrepare):
                out.append((("pre-prepare", pp.view, pp.seq), pp.batch_digest))
        return out
    return []


@dataclass(frozen=True)
class Sent:
    value: bytes
    incarnation: int
    time_us: int


@dataclass
class SentVotes:
    """Per honest node: every vote it sent, with the incarnation and time it was first sent."""

    by_node: dict[str, dict[tuple[Any, ...], Sent]] = field(default_factory=dict)
    observed: int = 0

    def observe(self, node: str, incarnation: int, time_us: int, data: bytes) -> tuple[str, list[str]] | None:
        """Record one sent packet. Returns what the vote is for (None if the packet is not a signed
        vote) and a description of each earlier vote it conflicts with."""
        if peek_kind(data) not in VOTE_KINDS:
            return None
        opened = open_envelope(data)
        if opened is None:
            return None
        env, msg = opened
        self.observed += 1
        mine = self.by_node.setdefault(node, {})
        conflicts = []
        made = claims(env, msg)
        for key, value in made:
            held = mine.get(key)
            if held is None:
                mine[key] = Sent(value, incarnation, time_us)
            elif held.value != value:
                what = " ".join(str(k) for k in key)
                conflicts.append(f"sent two different {what} votes: {held.value.hex()[:16]} (incarnation "
                                 f"{held.incarnation}, t={held.time_us / 1e6:.6f} s) and {value.hex()[:16]} "
                                 f"(incarnation {incarnation})")
        return (" ".join(str(k) for k in made[0][0]) if made else peek_kind(data)), conflicts


def _verdict(world: World, kind: str, name: str, ok_detail: str) -> Verdict:
    found = [v for v in world.violations if v.kind == kind]
    if not found:
        return Verdict(name, True, ok_detail, checked=world.sent_votes.observed)
    v = found[0]
    more = f" (and {len(found) - 1} more replicas)" if len(found) > 1 else ""
    return Verdict(name, False, f"replica {v.node}: {v.detail}{more}",
                   {"time_us": v.time_us, "trace_index": v.trace_index, "node": v.node},
                   checked=world.sent_votes.observed)


def check_equivocation(world: World) -> Verdict:
    """No honest replica sent two conflicting signed votes, across its crashes and restarts."""
    return _verdict(world, "equivocation", "equivocation",
                    f"no honest replica contradicted itself in {world.sent_votes.observed} signed votes sent")


def check_persisted_before_sent(world: World) -> Verdict:
    """Every signed vote an honest replica sent was in its synced storage when it left."""
    return _verdict(world, "unpersisted_vote", "votes_synced",
                    f"all {world.sent_votes.observed} signed votes sent were durable first")
