"""Simulator plug-ins for replicated applications.

A `SimApp` tells the world how to build the application each replica runs (fresh, and again after a
crash-restart), what operations the workload sends, and which application-level checks to run after
the run. It may start SimPy processes of its own (monitors, auditors, gossip) through `world`.
"""

from __future__ import annotations

import random
from typing import TYPE_CHECKING, Any, ClassVar, TypeVar

from sim.params import ParamSchema
from trustchain.app.interface import Application

if TYPE_CHECKING:
    from sim.checkers import Verdict
    from sim.world import ReplicaNode, World
    from trustchain.consensus.effects import Executed


A = TypeVar("A")


class SimApp:
    name: ClassVar[str] = ""
    #: Byzantine behaviours this application adds (scenario `byzantine[].behaviours` may name them);
    #: they are implemented by the plug-in itself, e.g. by giving that replica a forked application.
    behaviours: ClassVar[tuple[str, ...]] = ()
    #: the `application.params` this application reads, with their types (sim/params.py), checked when
    #: the scenario loads; an application that declares none accepts none
    param_types: ClassVar[ParamSchema] = {}
    #: per behaviour in `behaviours`, the `byzantine[].params` it reads (none if it is not listed)
    behaviour_params: ClassVar[dict[str, ParamSchema]] = {}

    @classmethod
    def check_params(cls, params: dict[str, Any], n: int) -> tuple[str, str] | None:
        """A problem with well-typed `params` taken together, for a cluster of `n` replicas, as (key,
        reason), or None. Runs when the scenario loads, after each value was checked on its own."""
        return None

    @classmethod
    def faulty_nodes(cls, params: dict[str, Any]) -> set[int]:
        """Replicas that `params` make faulty at the application level (e.g. validators that lie about
        what they observe), which count against f like Byzantine ones."""
        return set()

    def __init__(self, params: dict[str, Any], world: World, rng: random.Random) -> None:
        self.params = params
        self.world = world
        self.rng = rng

    def create_application(self, replica_id: int) -> Application:
        raise NotImplementedError

    def next_operation(self, client: int) -> bytes:
        """The payload of the next request of workload client number `client`."""
        raise NotImplementedError

    def start(self) -> None:
        """Called once before the run starts."""

    def on_executed(self, node: ReplicaNode, event: Executed) -> None:
        """Called after `node`'s replica executed a batch (its effects already carried out): the
        place to drive components that run beside consensus, such as threshold signing."""

    #: how long (µs) the run may go on after the last client request completed, waiting for `settled`
    settle_bound_us: int = 0

    def settled(self) -> bool:
        """Whether the work that client requests started beside consensus is finished (the run ends
        when it is, or `settle_bound_us` after the last client request completed)."""
        return True

    def checks(self) -> list[Verdict]:
        """Application-level checks, run after the consensus checks."""
        return []

    def honest_replica_apps(self, cls: type[A]) -> dict[str, A]:
        """Each honest replica's application by node name (sorted), checked to be a `cls`."""
        out: dict[str, A] = {}
        for name, node in sorted(self.world.nodes.items()):
            if not node.byzantine:
                app = node.replica.app
                assert isinstance(app, cls), f"node {name} runs {type(app).__name__}, not {cls.__name__}"
                out[name] = app
        return out
