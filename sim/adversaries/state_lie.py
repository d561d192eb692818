from __future__ import annotations

from dataclasses import replace
from typing import Any

from sim.adversaries.base import Behaviour, Outgoing, own_message_to_replica, reseal
from sim.adversaries.rotation import Rotation
from sim.params import ParamRule
from trustchain.consensus.messages import (
    Checkpoint,
    Commit,
    CommittedEntry,
    Envelope,
    PrePrepare,
    StateReply,
    digest,
    seal,
)
from trustchain.consensus.replica import ReplicaSnapshot
from trustchain.encoding import decode, encode

#: each lie, and the reason the requester must give when it rejects the reply (None: nothing to reject)
REJECTED_AS: dict[str, str | None] = {
    "snapshot": "checkpoint_mismatch",
    "proof_short": "checkpoint_without_quorum",
    "proof_duplicate": "duplicate_voter",
    "commits_short": "committed_without_quorum",
    "commits_forged": "certificate_mismatch",
    "wrong_seq": "certificate_mismatch",
    "batch_forged": "not_primary",
    "gap": None,
}


class StateLie(Behaviour):
    """Serves doctored state transfers. Every STATE-REPLY it sends is rewritten with one of the
    `variants` that fit it (default: all; in turn, in an order drawn from its RNG):

    - `snapshot`: the snapshot is altered (a client's exactly-once record dropped, or the consensus
      clock moved) while the honest checkpoint proof is kept;
    - `proof_short`: the checkpoint proof carries 2f signatures;
    - `proof_duplicate`: the proof reaches 2f+1 signatures by repeating one (its own signature on an
      altered snapshot's digest, repeated, when the reply carries a snapshot);
    - `commits_short`: a committed entry with 2f commits;
    - `commits_forged`: a committed entry whose batch it altered (when it was that view's primary)
      or whose commits it padded with its own commit for another digest;
    - `wrong_seq`: a committed entry whose commits are for another sequence number;
    - `batch_forged`: a committed entry whose pre-prepare it re-signed itself with a request dropped
      (it was not that view's primary), backed by its own commit for the altered batch;
    - `gap`: the first committed entry is left out, the later ones kept.

    Why it matters: state transfer is how a replica that fell behind skips ahead without
    re-executing, so a replica that installed an unproven snapshot or executed an uncertified entry
    would diverge from the others for ever (and, with a dropped client record, execute a request
    twice). Every part of a reply must be re-verified from signatures alone; a rejected or useless
    reply must only cost time (the requester asks another peer)."""

    name = "state_lie"

    def __init__(self, *args: Any, **kw: Any) -> None:
        super().__init__(*args, **kw)
        self.rotation = Rotation(self.rng)
    param_types = {"variants": ParamRule(list, items=str, choices=tuple(REJECTED_AS))}

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        out: list[Outgoing] = []
        wanted = [v for v in self.param("variants", list(REJECTED_AS)) if v in REJECTED_AS]
        for item in items:
            reply = own_message_to_replica(self.node, item, StateReply)
            if reply is None:
                out.append(item)
                continue
            variant = self.rotation.pick(wanted, [v for v in wanted if self._fits(reply, v)])
            if variant is None:
                out.append(item)
                continue
            self.world.count_fault("state_lie")
            self.world.count_fault(f"state_lie_{variant}")
            out.append(replace(item, data=reseal(self.node, self._doctor(reply, variant))))
        return out

    def _fits(self, reply: StateReply, variant: str) -> bool:
        if variant == "batch_forged":
            first = reply.entries[0] if reply.entries else None
            return (first is not None and first.pre_prepare.sender != self.node.replica_id
                    and bool(decode(PrePrepare, first.pre_prepare.body).batch))
        if variant == "snapshot":
            return bool(reply.snapshot)
        if variant in ("proof_short", "proof_duplicate"):
            return bool(reply.checkpoint_proof)
        return bool(reply.entries)

    def _own(self, message: object) -> Envelope:
        return seal(self.node.signer, self.node.replica_id, message)

    @staticmethod
    def _altered_snapshot(snapshot: bytes) -> bytes:
        snap = decode(ReplicaSnapshot, snapshot)
        if snap.clients:  # forget a client's last executed request: it would be executed again
            return encode(replace(snap, clients=snap.clients[:-1]))
        return encode(replace(snap, last_time_us=snap.last_time_us + 1))

    def _doctor(self, reply: StateReply, variant: str) -> StateReply:
        quorum = self.world.config.quorum
        proof, entries = reply.checkpoint_proof, reply.entries
        if variant == "snapshot":
            return replace(reply, snapshot=self._altered_snapshot(reply.snapshot))
        if variant == "proof_short":
            return replace(reply, checkpoint_proof=proof[: quorum - 1])
        if variant == "proof_duplicate":
            if reply.snapshot:
                fake = self._altered_snapshot(reply.snapshot)
                vouch = self._own(Checkpoint(reply.checkpoint_seq, digest(fake)))
                return replace(reply, snapshot=fake, checkpoint_proof=(vouch,) * quorum)
            return replace(reply, checkpoint_proof=(*proof[: quorum - 1], proof[0]))
        first, rest = entries[0], entries[1:]
        pp = decode(PrePrepare, first.pre_prepare.body)
        if variant == "commits_short":
            return replace(reply, entries=(CommittedEntry(first.pre_prepare, first.commits[: quorum - 1]), *rest))
        if variant == "commits_forged":
            if first.pre_prepare.sender == self.node.replica_id and pp.batch:
                batch = pp.batch[:-1]
                altered = replace(pp, batch=batch, batch_digest=PrePrepare.compute_digest(pp.timestamp_us, batch))
                vote = self._own(Commit(pp.view, pp.seq, altered.batch_digest))
                forged = CommittedEntry(self._own(altered), (vote, *first.commits))
            else:
                vote = self._own(Commit(pp.view, pp.seq, digest(pp.batch_digest + b"forged")))
                forged = CommittedEntry(first.pre_prepare, (vote, *first.commits))
            return replace(reply, entries=(forged, *rest))
        if variant == "batch_forged":
            batch = pp.batch[:-1]
            altered = replace(pp, batch=batch, batch_digest=PrePrepare.compute_digest(pp.timestamp_us, batch))
            vote = self._own(Commit(pp.view, pp.seq, altered.batch_digest))
            return replace(reply, entries=(CommittedEntry(self._own(altered), (vote,) * quorum), *rest))
        if variant == "wrong_seq":
            if rest:  # the next sequence's commits under this sequence's pre-prepare
                relabelled = CommittedEntry(first.pre_prepare, rest[0].commits)
            else:
                vote = self._own(Commit(pp.view, pp.seq + 1, pp.batch_digest))
                relabelled = CommittedEntry(first.pre_prepare, (vote, *first.commits))
            return replace(reply, entries=(relabelled, *rest))
        return replace(reply, entries=rest)  # gap
