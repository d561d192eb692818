"""The adversary plug-in interface.

A Byzantine replica runs the honest `Replica` code (so it knows what an honest replica would say) and
its behaviours rewrite what leaves it: drop, delay, corrupt, equivocate, replay. Behaviours sign with
the replica's own key, so they can lie but never forge another replica's signature.

A behaviour that lies with what the honest code holds (pending requests, prepared certificates,
checkpoint votes) reads it through `Behaviour.held`, the replica's `internals` seam for test doubles,
and never writes to it: the honest state machine must stay honest underneath.
"""

from __future__ import annotations

import functools
import random
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sim.params import ParamSchema
from trustchain.consensus.messages import Envelope, Request, pack, seal, unpack
from trustchain.consensus.replica_state import ReplicaInternals
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from sim.world import ReplicaNode, World


M = TypeVar("M")


@dataclass(frozen=True)
class Outgoing:
    """One message leaving a node: `dst` is a replica id or a client id (bytes)."""

    dst: int | bytes
    data: bytes
    delay_us: int = 0


@dataclass
class Coalition:
    """State shared by colluding replicas: which digest each target was shown at (view, seq)."""

    shown: dict[tuple[int, int], dict[int, bytes]] = field(default_factory=dict)


class Behaviour:
    name: ClassVar[str] = ""
    #: the scenario `params` this behaviour reads through `param`, with their types (sim/params.py);
    #: checked when the scenario loads. A behaviour that declares none accepts none.
    param_types: ClassVar[ParamSchema] = {}

    def __init__(self, params: dict[str, Any], world: World, node: ReplicaNode, rng: random.Random) -> None:
        self.params = params
        self.world = world
        self.node = node
        self.rng = rng

    def param(self, key: str, default: Any) -> Any:
        return self.params.get(key, default)

    @property
    def held(self) -> ReplicaInternals:
        """What the honest replica code underneath currently holds (read only; see the module docstring)."""
        return self.node.replica.internals

    def start(self) -> None:
        """Called once when the simulation starts."""

    def incoming(self, data: bytes, now_us: int) -> None:
        """Observe a message delivered to this node."""

    def outgoing(self, items: list[Outgoing], now_us: int) -> list[Outgoing]:
        return items


@functools.lru_cache(maxsize=4096)
def open_envelope(data: bytes) -> tuple[Envelope, Any] | None:
    """Decode a replica envelope from wire bytes; None for client requests or garbage. Cached: a
    broadcast hands the same bytes to a behaviour once per destination."""
    try:
        payload = unpack(data)
        if isinstance(payload, Request):
            return None
        return payload, payload.open()
    except DecodeError:
        return None


def own_message_to_replica(node: ReplicaNode, item: Outgoing, kind: type[M]) -> M | None:
    """The `kind` message that `node` itself signed, when `item` carries one to a replica (else None)."""
    opened = open_envelope(item.data)
    if (opened is None or not isinstance(item.dst, int) or not isinstance(opened[1], kind)
            or opened[0].sender != node.replica_id):
        return None
    return opened[1]


def reseal(node: ReplicaNode, message: Any) -> bytes:
    return pack(seal(node.signer, node.replica_id, message))


def with_digest(message: Any, digest: bytes) -> Any:
    return replace(message, batch_digest=digest)
