"""The observers' overlay seen from one node: who is who on the wire, and a validator's part in feeding
observers (`trustchain.consensus.observer.ValidatorFeed` carried out over the peer transport).

Membership. Validators are listed in every node.toml (`consensus.validators`, their consensus keys) and
observers too (`consensus.observers`, name and address). Observers are not in genesis: nothing an observer
sends is believed because of who sent it (batches carry a quorum of validators' commit signatures,
checkpoints a quorum of checkpoint signatures, forwarded writes their client's signature), so listing one
grants it nothing. On the transport a validator is its replica index and an observer `n + its index`.
The overlay (`build_overlay`) is salted with `overlay_salt(genesis cluster id)`, so every node computes
the same trees and no node can choose its place in them.

Frames on `CHANNEL_FEED` carry feed packets (`trustchain.consensus.feed`) and, from an observer to a
validator, PBFT client requests: writes that reached the observer's API, handed to the replica as a
client's request would be.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from reference_node.config import NodeConfig
from reference_node.transport import CHANNEL_FEED, PeerTransport
from trustchain.consensus.certificates import InvalidMessage
from trustchain.consensus.feed import is_feed_packet
from trustchain.consensus.messages import peek_kind
from trustchain.consensus.observer import ObserverParams, ValidatorFeed
from trustchain.consensus.overlay import Neighbours, build_overlay, overlay_salt

__all__ = ["Membership", "ValidatorFeedDriver", "membership_of"]

log = logging.getLogger("trustchain.feed")


@dataclass(frozen=True)
class Membership:
    validators: tuple[str, ...]  # names in replica order
    observers: tuple[str, ...]
    addresses: dict[int, tuple[str, int]]  # transport id -> consensus address
    overlay: dict[str, Neighbours]

    def id_of(self, name: str) -> int:
        if name in self.validators:
            return self.validators.index(name)
        return len(self.validators) + self.observers.index(name)

    def name_of(self, peer: int) -> str:
        n = len(self.validators)
        return self.validators[peer] if peer < n else self.observers[peer - n]


def membership_of(config: NodeConfig, cluster_id: bytes) -> Membership:
    cons = config.consensus
    validators = tuple(v.name for v in cons.validators)
    observers = tuple(o.name for o in cons.observers)
    addresses = {v.id: v.address for v in cons.validators}
    addresses.update({len(validators) + i: o.address for i, o in enumerate(cons.observers)})
    return Membership(validators, observers, addresses, build_overlay(validators, observers, overlay_salt(cluster_id)))


class ValidatorFeedDriver:
    """Sends this validator's certified batches and stable checkpoints to its overlay children and
    answers observers' catch-up requests; a PBFT request an observer forwards is handed back to the
    caller for the replica."""

    def __init__(self, membership: Membership, replica_id: int, transport: PeerTransport,
                 params: ObserverParams | None = None) -> None:
        self.membership = membership
        self.transport = transport
        children = membership.overlay[membership.validators[replica_id]].children
        self.feed = ValidatorFeed(children, params or ObserverParams())
        self.refused: Counter[str] = Counter()
        self.forwarded_writes = 0

    def on_effects(self, effects: Sequence[object]) -> None:
        for send in self.feed.on_effects(effects):
            self.transport.send(self.membership.id_of(send.peer), CHANNEL_FEED, send.data)

    def receive(self, sender: int, data: bytes, now: int) -> bytes | None:
        """A frame from an observer: a catch-up request is answered here; a client request is returned
        for the replica; anything else is refused and counted."""
        if not data:
            self.refused["empty"] += 1
            return None
        if not is_feed_packet(data):
            if peek_kind(data) == "request":
                self.forwarded_writes += 1
                return data
            self.refused["not_a_request"] += 1
            return None
        if sender < len(self.membership.validators):
            self.refused["validator_pull"] += 1  # validators catch up by PBFT state transfer, not here
            return None
        try:
            replies = self.feed.receive(self.membership.name_of(sender), data, now)
        except InvalidMessage as exc:
            self.refused[exc.reason] += 1
            log.debug("refused a feed packet from %s: %s", self.membership.name_of(sender), exc)
            return None
        for r in replies:
            self.transport.send(self.membership.id_of(r.peer), CHANNEL_FEED, r.data)
        return None
