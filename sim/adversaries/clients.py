"""Byzantine clients: misbehaving clients beside the workload (scenario `byzantine_clients`).

Clients are outside the replicas' fault threshold: any number of them may misbehave, so the replicas
must cope with whatever a client sends while the workload's honest clients still complete. A
Byzantine client is a network node of its own (placed at a replica site, like workload clients); it
holds its own client key and never signs with anyone else's.
"""

from __future__ import annotations

import hashlib
import random
from typing import TYPE_CHECKING

from trustchain.app.kvstore import put
from trustchain.consensus.messages import Request, pack
from trustchain.crypto.signing import Ed25519Signer, Signer

if TYPE_CHECKING:
    from sim.scenario import ByzantineClientSpec
    from sim.world import World

CLIENT_BEHAVIOURS = ("bad_signature", "replay", "equivocate", "flood")


class ByzantineClient:
    """Every `1 / rate_per_s` seconds (exponential gaps, from `start_s` until `stop_s`), acts out one
    of its behaviours, in turn:

    - `bad_signature`: a request whose signature does not verify: its own with a bit flipped, or
      one claiming to come from a workload client (signed with its own key);
    - `replay`: re-sends a request already executed: half of the time its own newest one, otherwise
      one picked from executed batches (a workload client's or its own; batches travel in
      pre-prepares, so any network observer could capture them);
    - `equivocate`: one timestamp, a different operation (each validly signed) to every replica;
    - `flood`: a burst of `burst` (default 16) new valid requests to every replica, sent in a
      shuffled timestamp order.

    Why it matters: a forged request must never execute, a replayed one never twice (exactly-once
    per client timestamp), equivocation must not let replicas execute different operations for the
    same request, and a flood must not stop the honest clients' requests from completing.

    Its validly signed requests may execute; they are registered in `world.side_requests` so that the
    validity checker knows they were really sent (the liveness check counts workload requests only)."""

    def __init__(self, world: World, index: int, spec: ByzantineClientSpec) -> None:
        self.world = world
        self.index = index
        self.name = f"bc{index}"
        self.behaviours = [b for b in spec.behaviours if b in CLIENT_BEHAVIOURS]
        self.spec = spec
        self.rng = random.Random(f"{world.seed}/byzantine-client/{index}")
        self.signer = self._signer(world, index)
        self.site = index % world.config.n
        self.timestamp = 0
        self.sent: list[Request] = []
        self.turn = 0
        world.network.place(self.name, self.site)

    @staticmethod
    def _signer(world: World, index: int) -> Signer:
        seed = hashlib.sha256(f"trustchain-sim/{world.seed}/byzantine-client/{index}".encode()).digest()
        if world.scenario.cluster.signatures == "modelled":
            from sim.modelled import ModelledSigner

            return ModelledSigner(seed)
        return Ed25519Signer(seed)

    def start(self) -> None:
        if self.behaviours:
            self.world.schedule(round(self.spec.start_s * 1e6), self._tick)

    def _tick(self) -> None:
        w = self.world
        stop = self.spec.stop_s
        if w.done.triggered or (stop is not None and w.now >= stop * 1e6):
            return
        behaviour = self.behaviours[self.turn % len(self.behaviours)]
        self.turn += 1
        getattr(self, f"_{behaviour}")()
        gap_us = 1e6 / self.spec.rate_per_s
        w.after(max(1, round(self.rng.expovariate(1.0) * gap_us)), self._tick)

    # ------------------------------------------------------------------ sending

    def _operation(self) -> bytes:
        return put(b"byzantine/%d/%d" % (self.index, self.rng.randrange(16)), self.rng.randbytes(16))

    def _new_request(self, operation: bytes | None = None) -> Request:
        self.timestamp += 1
        req = Request.create(self.signer, self.timestamp, operation if operation is not None else self._operation())
        self.world.side_requests.add(req.digest)
        return req

    def _send(self, rid: int, req: Request) -> None:
        for inst in self.world.instances[rid]:
            self.world.transmit(self.name, inst.name, pack(req))

    def _broadcast(self, req: Request) -> None:
        for rid in range(self.world.config.n):
            self._send(rid, req)

    # ------------------------------------------------------------------ behaviours

    def _bad_signature(self) -> None:
        honest = sorted(self.world.clients)
        if honest and self.rng.random() < 0.5:  # a workload client's identity, our signature
            victim = honest[self.rng.randrange(len(honest))]
            own = Request.create(self.signer, 1 << 40, self._operation())
            req = Request(victim, own.timestamp, own.operation, own.signature)
        else:
            self.timestamp += 1
            own = Request.create(self.signer, self.timestamp, self._operation())
            sig = bytearray(own.signature)
            sig[self.rng.randrange(len(sig))] ^= 1 << self.rng.randrange(8)
            req = Request(own.client, own.timestamp, own.operation, bytes(sig))
        self.world.count_fault("client_bad_signature")
        self._broadcast(req)

    def _replay(self) -> None:
        executed = [r for rec in self.world.executions[-256:] for r in rec.event.requests]
        mine = [r for r in executed if r.client == self.signer.public_key]
        if not executed:  # nothing to replay yet: send something worth replaying later
            req = self._new_request()
            self.sent.append(req)
            self._broadcast(req)
            return
        if mine and self.rng.random() < 0.5:
            req = max(mine, key=lambda r: r.timestamp)
        else:
            req = executed[self.rng.randrange(len(executed))]
        self.world.count_fault("client_replay")
        self._broadcast(req)

    def _equivocate(self) -> None:
        self.timestamp += 1
        ts = self.timestamp
        for rid in range(self.world.config.n):
            req = Request.create(self.signer, ts, self._operation())
            self.world.side_requests.add(req.digest)
            self._send(rid, req)
            self.sent.append(req)
        self.world.count_fault("client_equivocation")

    def _flood(self) -> None:
        burst = [self._new_request() for _ in range(self.spec.burst)]
        self.rng.shuffle(burst)
        for req in burst:
            self.sent.append(req)
            self._broadcast(req)
            self.world.count_fault("client_flood")
        del self.sent[:-256]
