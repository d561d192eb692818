"""The asyncio driver of one observer: a non-voting replica that follows the validators' committed batches
(`trustchain.consensus.observer.Observer`), runs the same TrustChain application on them, persists them,
and serves every read the validators serve (DNS, CT, OCSP, CRL, certificates, status) from its own copy.

What it trusts. Nothing a peer says: each committed batch is executed only once a quorum of the genesis
validators' commit signatures over it checked out, a snapshot is installed only under a checkpoint
certificate (a quorum of validators' checkpoint signatures over its digest), and persisted state is
verified again on restart (`Observer.recover`). It holds no validator key and no FROST share; its node
key (`trustchain.key_file`) is its own and listed nowhere in genesis: it signs its PBFT client requests
and its CT checkpoints, which name the observer, not a log operator.

Writes. A write reaching an observer's API (a signed write, a JSON write on a development cluster, a DNS
UPDATE, an ACME POST) is made into a PBFT request exactly as on a validator and sent to every validator
over the overlay link; the observer answers its client once its own replica executed that request, from
its own result. A client thus sees the answer a validator would give, with no redirect to follow (an
ACME client could not follow one: its JWS names the URL it posted to).

Everything else, timers, the submission pool, answering waiting writers, the application's events, is
the validator's driver (`runtime.Node`), which this class extends and whose replica parts it replaces.
"""

from __future__ import annotations

import asyncio
import logging
import random
import secrets
import time
from typing import Any

from reference_node.clock import now_us
from reference_node.config import NodeConfig
from reference_node.feed_driver import Membership, membership_of
from reference_node.genesis import Genesis, load_seed
from reference_node.node_cert import NodeCertificates
from reference_node.node_metrics import NodeMetrics
from reference_node.observer import OutsideObserver
from reference_node.pubsub import PubSub
from reference_node.runtime import CLIENT_POOL, Node, Submission, api_account_signer, bind_to_genesis, cluster_config
from reference_node.storage import Storage, StorageFull
from reference_node.transport import CHANNEL_FEED, PeerTransport
from reference_node.transport_tcp import TCPTransport
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.ca import events as caevents
from trustchain.consensus.effects import Executed, PersistExecuted, PersistStable, Rejected, StateRestored
from trustchain.consensus.feed import CertificateCache
from trustchain.consensus.observer import Observer, ObserverEffect, ObserverParams, SendToPeer
from trustchain.consensus.replica_state import ClientRecord, Phase, ReplicaStatus
from trustchain.crypto.signing import ED25519, Ed25519Signer

__all__ = ["ObserverNode", "build_observer"]

log = logging.getLogger("trustchain.observer_node")


class ObserverNode(Node):
    """One observer process. `follower` is the protocol's Observer; `id` is -1 (no replica index)."""

    def __init__(self, config: NodeConfig, genesis: Genesis, transport: PeerTransport, membership: Membership,
                 params: ObserverParams | None = None) -> None:
        # Node.__init__ is not called: it builds a voting replica, the FROST signing service and a CT log.
        assert config.trustchain.key_file is not None, "checked by the configuration"
        self.config = config
        self.genesis = genesis
        self.id = -1
        self.name = config.trustchain.node_id
        self.seed = load_seed(config.trustchain.key_file)
        self.signer = Ed25519Signer(self.seed)
        keys = tuple(v.public_key for v in config.consensus.validators)
        if self.signer.public_key in keys:
            raise ValueError(f"{config.trustchain.key_file}: an observer's key must be its own, not a validator's")
        self.write_signer = Ed25519AccountSigner(self.seed)
        self.account_id = account_id(self.write_signer.key)
        self.api_signer = api_account_signer(genesis)
        self.api_account_id = account_id(self.api_signer.key)
        self._api_account_registered = False
        self.cluster = cluster_config(config)
        self.storage = Storage(config.storage.path, max_size=config.storage.max_size,
                               prune_age_us=config.storage.prune_age_us, synchronous=config.storage.synchronous)
        bind_to_genesis(self.storage, genesis.cluster_id, config.storage.path)
        self.app = self._new_app()
        self.membership = membership
        neighbours = membership.overlay[self.name]
        self.follower = Observer(self.cluster, self.name, self.app, CertificateCache(self.cluster, ED25519),
                                 neighbours.children, membership.validators, membership.observers,
                                 random.Random(secrets.randbits(64)), params or ObserverParams())
        self._records = self.storage.records()
        self.recovered_records = len(self._records)
        self._persisted_stable = 0
        self._recovering = False
        self.view = 0  # the view of the newest batch executed: whose primary the validators follow
        self.snapshots_installed = 0  # certified snapshots installed (catching up, or recovering from disk)
        self.signing = None
        self.root_signing = None
        self.serials = None
        self.feed = None
        self.transport = transport
        self.clients = [Ed25519Signer(secrets.token_bytes(32)) for _ in range(CLIENT_POOL)]  # fresh per run
        self._last_ts = {c.public_key: 0 for c in self.clients}
        self._account_lock = asyncio.Lock()
        self.certificates = NodeCertificates(self)
        self._free: asyncio.Queue[int] | None = None
        self._waiting: dict[tuple[bytes, int], Submission] = {}
        self._snapshot_installed = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._cert_waiters: dict[int, list[asyncio.Future[caevents.Finalized | None]]] = {}
        self._scts_ordered: set[int] = set()
        self.pubsub = PubSub()
        self.halted: str | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = NodeMetrics(self)
        self.observer = OutsideObserver(self)  # inert on an observer: it reports nothing

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._free = asyncio.Queue()
        for i in range(CLIENT_POOL):
            self._free.put_nowait(i)
        stable = next((r for r in reversed(self._records) if isinstance(r, PersistStable)), None)
        entries = sorted((r for r in self._records if isinstance(r, PersistExecuted)), key=lambda r: r.seq)
        self._persisted_stable = stable.seq if stable is not None else 0
        self._recovering = True  # re-executing what is on disk: nothing new to persist
        try:
            self._apply_observer(self.follower.recover(stable, [e.entry for e in entries]))
        finally:
            self._recovering = False
        self._records = []
        await self.transport.start(self._on_peer, self._on_link)
        self._apply_observer(self.follower.start(now_us()))
        log.info("observer %s started: executed %d, %d records recovered", self.name, self.follower.last_executed,
                 self.recovered_records, extra={"event": "started", "fields": {
                     "role": "observer", "last_executed": self.follower.last_executed,
                     "recovered_records": self.recovered_records}})

    # ------------------------------------------------------------------ inputs

    def _on_peer(self, sender: int, channel: int, data: bytes) -> None:
        if self.halted is None and channel == CHANNEL_FEED and sender in self.membership.addresses:
            self._apply_observer(self.follower.receive(self.membership.name_of(sender), data, now_us()))

    def _on_link(self, peer: int) -> None:
        """Nothing to announce: an observer learns what it lacks by pulling."""

    def _fire(self, name: str, at_us: int) -> None:
        self._timers.pop(name, None)
        if self.halted is not None:
            return
        now = now_us()
        if now < at_us:
            self._timers[name] = self._loop.call_later((at_us - now) / 1e6, self._fire, name, at_us)
            return
        self._apply_observer(self.follower.on_timer(name, now))

    # ------------------------------------------------------------------ effects

    def _apply_observer(self, effects: list[ObserverEffect]) -> None:
        try:
            for e in effects:
                if isinstance(e, SendToPeer):
                    self.transport.send(self.membership.id_of(e.peer), CHANNEL_FEED, e.data)
                    continue
                if isinstance(e, Executed):
                    self.view = max(self.view, e.view)
                    if not self._recovering:
                        self.storage.append(PersistExecuted(e.seq, e.certificate))
                if isinstance(e, StateRestored):
                    self.snapshots_installed += 1
                    log.info("installed the certified snapshot at %d", e.seq,
                             extra={"event": "observer_snapshot", "fields": {"seq": e.seq}})
                if isinstance(e, Rejected):
                    self.metrics.failures.inc(kind=f"observer_{e.reason}")
                    log.debug("observer refused a packet: %s (%s)", e.reason, e.detail,  # counted; no log flood
                             extra={"event": "observer_rejected", "fields": {"reason": e.reason}})
                    continue
                self._perform(e)
            log_ = self.follower.log
            if log_.stable_seq > self._persisted_stable and not self._recovering:
                self.storage.append(PersistStable(log_.stable_seq, log_.stable_snapshot, log_.stable_proof))
                self._persisted_stable = log_.stable_seq
            self._flush()
        except StorageFull as exc:
            self._halt(str(exc))
            return
        self._after_execution()

    # ------------------------------------------------------------------ the replica's part, for an observer

    def client_record(self, client: bytes) -> ClientRecord | None:
        return self.follower.client_record(client)

    def replica_status(self) -> ReplicaStatus:
        s = self.follower.status
        return ReplicaStatus(replica_id=-1, view=self.view, primary=self.cluster.primary(self.view),
                             phase=Phase.NORMAL, last_executed=s.last_executed, low_watermark=s.stable_seq,
                             last_time_us=s.last_time_us, pending=len(self._waiting), next_seq=0,
                             peer_executed=s.last_executed, state_transfer=s.held > 0)

    def _send_request(self, packet: bytes) -> None:
        """A write taken by this observer goes to every validator (as a PBFT client sends it); the answer
        is our own replica's result once the committed batch holding it arrives."""
        for v in range(self.cluster.n):
            self.transport.send(v, CHANNEL_FEED, packet)

    def status(self) -> dict[str, Any]:
        s = self.follower.status
        return {
            "node_id": self.name,
            "network": self.config.trustchain.network,
            "cluster_id": self.genesis.cluster_id.hex(),
            "role": "observer",
            "replica": -1,
            "validators": self.cluster.n,
            "f": self.cluster.f,
            "view": self.view,
            "primary": self.cluster.primary(self.view),
            "status": "catching_up" if s.held else "following",
            "last_executed": s.last_executed,
            "stable_checkpoint": s.stable_seq,
            "consensus_time_us": s.last_time_us,
            "pending_requests": len(self._waiting),
            **self.state_status(),
            "observer": {"parents": list(self.membership.overlay[self.name].parents),
                         "children": list(self.follower.children), "held": s.held,
                         "received": dict(self.follower.received), "rejected": dict(self.follower.rejected),
                         "duplicates": self.follower.duplicates, "snapshots_installed": self.snapshots_installed},
            "halted": self.halted,
            "uptime_s": round(time.time() - self.started_at, 3),
        }


def build_observer(config: NodeConfig, genesis: Genesis) -> ObserverNode:
    cons = config.consensus
    assert cons.listen is not None, "checked by the configuration"
    membership = membership_of(config, genesis.cluster_id)
    transport = TCPTransport(membership.id_of(config.trustchain.node_id), cons.listen, membership.addresses,
                             cons.send_queue)
    return ObserverNode(config, genesis, transport, membership)
