"""A minimal synchronous driver for unit tests: delivers effects through an in-memory queue with no
latency model, so tests can reason about single message interleavings (the simulator does the rest)."""

from __future__ import annotations

import hashlib
from collections import deque
from collections.abc import Callable
from typing import assert_never

from trustchain.app.kvstore import KVStore
from trustchain.consensus.client import Client
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.durability import Sync, compact, with_syncs
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Executed,
    Persist,
    PersistRecord,
    PersistStable,
    Rejected,
    RequestCompleted,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
from trustchain.consensus.replica import Replica
from trustchain.crypto.signing import Ed25519Signer


def key_seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def make_config(n: int = 4, **kw: int) -> tuple[ClusterConfig, list[Ed25519Signer]]:
    signers = [Ed25519Signer(key_seed(f"replica-{i}")) for i in range(n)]
    return ClusterConfig(tuple(s.public_key for s in signers), **kw), signers


Filter = Callable[[int | str, int | str, bytes], bool]


class Cluster:
    def __init__(self, n: int = 4, clients: int = 1, **kw: int) -> None:
        self.config, self.signers = make_config(n, **kw)
        self.apps = [KVStore() for _ in range(n)]
        self.replicas = [Replica(self.config, i, self.signers[i], self.apps[i]) for i in range(n)]
        self.clients = [Client(self.config, Ed25519Signer(key_seed(f"client-{c}"))) for c in range(clients)]
        self.client_index = {c.id: i for i, c in enumerate(self.clients)}
        self.queue: deque[tuple[int | str, int | str, bytes]] = deque()
        self.timers: dict[tuple[int | str, str], int] = {}
        self.storage: list[list[PersistRecord]] = [[] for _ in range(n)]
        self.executed: list[list[Executed]] = [[] for _ in range(n)]
        self.completed: list[RequestCompleted] = []
        self.down: set[int] = set()
        self.drop: Filter = lambda src, dst, data: False
        self.now = 1_000_000

    def _apply(self, src: int | str, effects: list[Effect]) -> None:
        for e in with_syncs(effects):
            match e:
                case Sync():
                    pass  # the in-memory log is durable as soon as it is written
                case Broadcast():
                    for t in range(self.config.n):
                        if t != src:
                            self.queue.append((src, t, e.data))
                case SendToReplica():
                    self.queue.append((src, e.to, e.data))
                case SendToClient():
                    self.queue.append((src, f"c{self.client_index[e.client]}", e.data))
                case SetTimer():
                    self.timers[(src, e.name)] = e.at_us
                case CancelTimer():
                    self.timers.pop((src, e.name), None)
                case Persist():
                    assert isinstance(src, int)
                    if isinstance(e.record, PersistStable):
                        self.storage[src] = compact(self.storage[src], e.record)
                    self.storage[src].append(e.record)
                case Executed():
                    assert isinstance(src, int)
                    self.executed[src].append(e)
                case RequestCompleted():
                    self.completed.append(e)
                case ViewEntered() | StateRestored() | Rejected():
                    pass  # observations only; tests read the replicas' state directly
                case _:
                    assert_never(e)

    def submit(self, client: int, op: bytes) -> None:
        self._apply(f"c{client}", self.clients[client].submit(op, self.now))

    def run(self, max_steps: int = 100_000) -> int:
        steps = 0
        while self.queue and steps < max_steps:
            src, dst, data = self.queue.popleft()
            steps += 1
            if self.drop(src, dst, data):
                continue
            if isinstance(dst, str):
                c = int(dst[1:])
                self._apply(dst, self.clients[c].receive(data, self.now))
            elif dst not in self.down:
                self._apply(dst, self.replicas[dst].receive(data, self.now))
        return steps

    def fire_timers(self, advance_us: int) -> None:
        """Advance time and fire every due timer, earliest first."""
        self.now += advance_us
        due = sorted((at, str(k[0]), k) for k, at in self.timers.items() if at <= self.now)
        for _, _, key in due:
            if self.timers.get(key) is None:
                continue
            owner, name = key
            del self.timers[key]
            if isinstance(owner, str):
                self._apply(owner, self.clients[int(owner[1:])].on_timer(name, self.now))
            elif owner not in self.down:
                self._apply(owner, self.replicas[owner].on_timer(name, self.now))

    def settle(self, rounds: int = 50, advance_us: int = 100_000) -> None:
        for _ in range(rounds):
            self.run()
            self.fire_timers(advance_us)
        self.run()
