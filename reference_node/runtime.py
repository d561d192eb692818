"""The asyncio driver of one validator: a `Replica` with the TrustChain application, the FROST
`SigningService` beside it, durable storage and a peer transport.

It makes no protocol decision. It feeds inputs (peer bytes, timer firings, API submissions) to the
state machines with the wall-clock time in microseconds and carries their effects out in order,
exactly like `sim/world.py` does in virtual time: `Persist` records are committed to SQLite before any
later effect is performed; timers become `loop.call_later` handles (re-arming replaces, cancelling
removes); broadcasts go to every peer through the transport.

API writes are PBFT client requests: the node signs them with one of its own client keys, hands them
to its replica and broadcasts them to the peers (as a PBFT client does), and answers when its *own*
replica has executed the request (a client that does not trust this node would instead wait for f+1
matching replies).

CRLs and OCSP responses: on the `[ca]` cadences the node asks its replicated CA whether a CRL or an OCSP
batch is due and, if so, orders `sign_crl` / `sign_ocsp_batch`; the signing service signs the pending
TBS like a certificate and the finalized bytes land in replicated state, which `http_pki` serves. With
its share of the root key (`ca.root_key`) it also orders `sign_root` when the root CRL or an issuing CA's
OCSP response is due, signed by a second service holding the root shares.

Serials: `serial_driver` orders this validator's commitments to serial randomness and its reveals.

Beside this module: `signing_driver` (the FROST signing service's effects), `node_cert` (renewal of the
TLS node certificate), `node_metrics` (what is exported to Prometheus) and `pubsub` (the event streams).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import hashlib
import logging
import secrets
import time
from collections.abc import Callable, Coroutine
from dataclasses import dataclass
from pathlib import Path
from typing import Any, assert_never

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node.clock import now_us
from reference_node.config import NodeConfig
from reference_node.feed_driver import ValidatorFeedDriver, membership_of
from reference_node.genesis import Genesis, GenesisError, load_key_package, load_seed
from reference_node.node_cert import NodeCertificates, newest_pair, renewed_paths
from reference_node.node_metrics import NodeMetrics
from reference_node.observer import OutsideObserver
from reference_node.pubsub import PubSub
from reference_node.serial_driver import SerialDriver
from reference_node.signing_driver import ROOT_EPOCH_FILE, SigningDriver, next_signing_epoch
from reference_node.storage import Storage, StorageFull
from reference_node.transport import CHANNEL_FEED, CHANNEL_ROOT_SIGNING, PeerTransport
from reference_node.transport_tcp import CHANNEL_CONSENSUS, CHANNEL_SIGNING, TCPTransport
from trustchain.accounts import MAX_VALIDITY_US, NONCE_SIZE, Ed25519AccountSigner, account_id
from trustchain.app import trustchain as tcapp
from trustchain.app.embedded_scts import sct_command
from trustchain.ca import commands as cacommands
from trustchain.ca import events as caevents
from trustchain.ca import signing_service as ss
from trustchain.ca.frost import KeyPackage as frost_KeyPackage
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.durability import Sync, with_syncs
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Executed,
    Persist,
    Rejected,
    RequestCompleted,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
from trustchain.consensus.messages import Request, pack
from trustchain.consensus.replica import Replica
from trustchain.consensus.replica_state import ClientRecord, ReplicaStatus
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as ctapp
from trustchain.ct.logkey import LogKeyError, P256LogSigner, load_private_pem
from trustchain.dns import app as dnsapp
from trustchain.encoding import DecodeError
from trustchain.errors import TrustChainError

log = logging.getLogger("trustchain.node")

CLIENT_POOL = 16
RETRANSMIT_S = 1.0
DNS_TICK_S = 600.0


PRESIGNED = "presigned"  # `submit` target for an operation a client already signed (`tcapp.signed_operation`)


class SubmitTimeout(TrustChainError, TimeoutError):
    pass


class NodeHalted(TrustChainError, RuntimeError):
    pass


@dataclass
class Submission:
    target: str
    started: float
    future: asyncio.Future[bytes]


class Node:
    def __init__(self, config: NodeConfig, genesis: Genesis, transport: PeerTransport) -> None:
        self.config = config
        self.genesis = genesis
        cons = config.consensus
        self.id = config.replica_id
        if self.id < 0 or config.trustchain.key_file is None:
            raise ValueError("only validators can run a replica (trustchain.node_id must be in consensus.validators)")
        self.seed = load_seed(config.trustchain.key_file)
        self.signer = Ed25519Signer(self.seed)
        self.write_signer = Ed25519AccountSigner(self.seed)  # the validator's account: same key
        self.account_id = account_id(self.write_signer.key)
        self.api_signer = api_account_signer(genesis)
        self.api_account_id = account_id(self.api_signer.key)
        self._api_account_registered = False
        keys = tuple(v.public_key for v in cons.validators)
        if keys[self.id] != self.signer.public_key:
            raise ValueError(f"{config.trustchain.key_file}: key does not match consensus.validators[{self.id}]")
        self.cluster = cluster_config(config)
        self.storage = Storage(config.storage.path, max_size=config.storage.max_size,
                               prune_age_us=config.storage.prune_age_us, synchronous=config.storage.synchronous)
        bind_to_genesis(self.storage, genesis.cluster_id, config.storage.path)
        self.app = self._new_app()
        records = self.storage.records()
        self.recovered_records = len(records)
        self.replica = Replica.recover(self.cluster, self.id, self.signer, self.app, records)
        self.app.take_events()  # replayed history: the signing service is synced from state below
        self.app.validation.take_events()  # replayed: not observed again (an open one expires, then is reopened)
        self.signing: SigningDriver | None = None
        self.root_signing: SigningDriver | None = None
        peers = {i + 1: k for i, k in enumerate(keys)}
        if config.ca.intermediate_key is not None:
            kp = _share(config.ca.intermediate_key, genesis.issuing.group_public_key, "ca.intermediate_key")
            epoch = next_signing_epoch(config.storage.path)
            self.signing = SigningDriver(self, ss.SigningService(kp, genesis.issuing, self.signer, peers,
                                                                 secrets.token_bytes, epoch=epoch), epoch)
        if config.ca.root_key is not None:
            rkp = _share(config.ca.root_key, genesis.root.group_public_key, "ca.root_key")
            repoch = next_signing_epoch(config.storage.path, ROOT_EPOCH_FILE)
            self.root_signing = SigningDriver(
                self, ss.SigningService(rkp, genesis.root, self.signer, peers, secrets.token_bytes, epoch=repoch,
                                        domain=ss.ROOT_DOMAIN), repoch,
                channel=CHANNEL_ROOT_SIGNING, items=lambda: self.app.ca.root_pending_items())
        self.serials: SerialDriver | None = SerialDriver(self)  # None on an observer: it contributes no randomness
        self.transport = transport
        # the observers' overlay: this validator feeds its children and answers their catch-up requests
        self.feed = (ValidatorFeedDriver(membership_of(config, genesis.cluster_id), self.id, transport)
                     if cons.observers else None)
        self.clients = [Ed25519Signer(hashlib.sha256(b"trustchain/node-client/%d/" % i + self.seed).digest())
                        for i in range(CLIENT_POOL)]
        self._last_ts = {c.public_key: self._executed_ts(c.public_key)
                         for c in [*self.clients, self.signer]}
        self._account_lock = asyncio.Lock()
        self.certificates = NodeCertificates(self)
        self._free: asyncio.Queue[int] | None = None
        self._waiting: dict[tuple[bytes, int], Submission] = {}
        # Set by a StateRestored effect: the snapshot's requests and issuances announced nothing
        self._snapshot_installed = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sync_owed = False  # records appended that must be committed before `_deferred` leaves
        self._deferred: list[Effect] = []
        self._commit_scheduled = False
        self._feed_owed: list[Effect] = []  # effects the observers are told of once the owed commit is done
        self._cert_waiters: dict[int, list[asyncio.Future[caevents.Finalized | None]]] = {}
        self._scts_ordered: set[int] = set()  # CT log entries whose SCT this node has ordered
        self.pubsub = PubSub()
        self.halted: str | None = None
        self.started_at = time.time()
        self._tasks: list[asyncio.Task[None]] = []
        self.metrics = NodeMetrics(self)
        self.observer = OutsideObserver(self)

    # ------------------------------------------------------------------ construction helpers

    def _new_app(self) -> tcapp.TrustChainApplication:
        keys = tuple(v.public_key for v in self.config.consensus.validators)
        root = self.config.ca.root_cert
        roots = (x509.load_pem_x509_certificate(root.read_bytes()).public_bytes(serialization.Encoding.DER),) \
            if root is not None and root.exists() else None
        inter = self.config.ca.intermediate_cert
        ca_chain = tuple(x509.load_pem_x509_certificate(p.read_bytes()).public_bytes(serialization.Encoding.DER)
                         for p in (inter, root) if p is not None and p.exists())
        return tcapp.TrustChainApplication(
            self.genesis.ca_policy(keys), self.genesis.dns_master_seed, self.signer,
            f"{self.genesis.ct_origin}/{self.config.trustchain.node_id}", self.genesis.ct_origin,
            cluster=self.genesis.cluster_id, validator_keys=keys, ct_accepted_roots=roots,
            registry_suffixes=self.genesis.registry_suffixes, limits=self.genesis.limits,
            ct_log_signer=self._ct_log_signer(),
            ca_chain=ca_chain if len(ca_chain) == 2 else (), ct_log_keys=tuple(log.key for log in self.genesis.ct_logs))

    def _ct_log_signer(self) -> P256LogSigner | None:
        """This validator's P-256 CT log key (`ct.log_key`), checked against its entry in genesis."""
        path = self.config.ct.log_key
        if path is None:
            return None
        try:
            signer = load_private_pem(path.read_bytes())
        except (OSError, LogKeyError) as exc:
            raise ValueError(f"{path}: not a CT log key: {exc}") from None
        listed = self.genesis.ct_logs[self.id].key if self.id < len(self.genesis.ct_logs) else None
        if listed is not None and listed != signer.public_key:
            raise ValueError(f"{path}: key does not match genesis ct.logs[{self.id}]")
        return signer

    def _executed_ts(self, client: bytes) -> int:
        rec = self.client_record(client)
        return rec.timestamp if rec is not None else 0

    def client_record(self, client: bytes) -> ClientRecord | None:
        """The last request of `client` this node executed."""
        return self.replica.client_record(client)

    def replica_status(self) -> ReplicaStatus:
        """What health checks and metrics read of this node's replica."""
        return self.replica.status

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._free = asyncio.Queue()
        for i in range(CLIENT_POOL):
            self._free.put_nowait(i)
        await self.transport.start(self._on_peer, self._on_link)
        self._apply(self.replica.start(now_us()))
        for driver in self._signing_drivers():
            driver.start()
            driver.sync()
        self._tasks.append(asyncio.create_task(self._ticker(), name="dns-tick"))
        if self.serials is not None:
            self._tasks.append(asyncio.create_task(self.serials.ticker(), name="serial-randomness"))
            self.serials.sync()
        self._order_sct()  # precertificates recovered from storage that still wait for this log's SCT
        if self.signing is not None:
            ca = self.config.ca
            self._tasks.append(asyncio.create_task(
                self._pki_ticker(ca.crl_interval_us, self.app.ca.crl_due, cacommands.sign_crl_command), name="crl"))
            self._tasks.append(asyncio.create_task(self._pki_ticker(
                ca.ocsp_interval_us, self.app.ca.ocsp_due, lambda: cacommands.sign_ocsp_batch_command(ca.ocsp_batch)),
                name="ocsp"))
        if self.root_signing is not None:
            self._tasks.append(asyncio.create_task(self._pki_ticker(
                self.config.ca.crl_interval_us, self.app.ca.root.due, cacommands.sign_root_command), name="root"))
        if self.certificates.paths() is not None:
            self._tasks.append(asyncio.create_task(self.certificates.renewer(), name="node-cert"))
        log.info("node %s (replica %d) started: view %d, executed %d, %d records recovered",
                 self.config.trustchain.node_id, self.id, self.replica.status.view,
                 self.replica.status.last_executed,
                 self.recovered_records, extra={"event": "started", "fields": {
                     "replica": self.id, "view": self.replica.status.view,
                     "last_executed": self.replica.status.last_executed,
                     "recovered_records": self.recovered_records, "transport": self.config.consensus.transport}})

    async def stop(self) -> None:
        if self.serials is not None:
            self.serials.close()
        tasks = list(self._tasks)  # done tasks leave `_tasks` as they finish
        for t in tasks:
            t.cancel()
        for t in tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for h in list(self._timers.values()):
            h.cancel()
        for driver in self._signing_drivers():
            driver.cancel_timers()
        await self.transport.close()
        self.storage.close()

    def background(self, coro: Coroutine[Any, Any, None]) -> None:
        """Run `coro` as a task the node cancels on `stop`."""
        self._tasks.append(asyncio.create_task(coro))

    def track(self, task: asyncio.Task[None]) -> None:
        """Cancel `task` on `stop`; forget it once done."""
        self._tasks.append(task)
        task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    def _signing_drivers(self) -> list[SigningDriver]:
        return [d for d in (self.signing, self.root_signing) if d is not None]

    async def _ticker(self) -> None:
        """Quiet zones still need fresh RRSIGs: the primary orders a DNS TICK now and then."""
        while True:
            await asyncio.sleep(DNS_TICK_S)
            if self.replica.status.is_primary and self.app.dns.zones and self.halted is None:
                with contextlib.suppress(Exception):
                    await self.submit(tcapp.DNS, dnsapp.tick_command(), timeout_s=60.0)

    async def _pki_ticker(self, interval_us: int, due: Callable[[int], bool], command: Callable[[], bytes]) -> None:
        """Every `interval_us`, order a CRL / OCSP signing command if the replicated CA says one is due.
        Every validator does this (not only the primary, which could withhold it): the CA records at most
        one pending CRL and one OCSP batch, so the others' copies execute as cheap no-ops."""
        while True:
            await asyncio.sleep(interval_us / 1e6)
            if self.halted is None and due(now_us()):
                with contextlib.suppress(Exception):
                    await self.submit(tcapp.CA, command(), timeout_s=max(30.0, interval_us / 1e6))

    # ------------------------------------------------------------------ inputs

    def _on_peer(self, sender: int, channel: int, data: bytes) -> None:
        if self.halted is not None:
            return
        if channel == CHANNEL_CONSENSUS:
            self._apply(self.replica.receive(data, now_us()))
        elif channel == CHANNEL_SIGNING and self.signing is not None:
            self.signing.on_message(data)
        elif channel == CHANNEL_ROOT_SIGNING and self.root_signing is not None:
            self.root_signing.on_message(data)
        elif channel == CHANNEL_FEED and self.feed is not None:
            request = self.feed.receive(sender, data, now_us())  # an observer's pull, or a write it forwards
            if request is not None:
                self._apply(self.replica.receive(request, now_us()))

    def _on_link(self, peer: int) -> None:
        """Our link to `peer` came up: tell it how far we got (it may have restarted into an idle network)."""
        if self.halted is None and peer < self.cluster.n:  # observers get no STATUS: they pull
            self._apply(self.replica.link_up(peer, now_us()))

    def _fire(self, name: str, at_us: int) -> None:
        self._timers.pop(name, None)
        if self.halted is not None:
            return
        now = now_us()
        if now < at_us:  # loop clock and wall clock drift apart slightly: never fire early
            self._timers[name] = self._loop.call_later((at_us - now) / 1e6, self._fire, name, at_us)
            return
        self._apply(self.replica.on_timer(name, now))

    # ------------------------------------------------------------------ effects

    def _flush(self) -> None:
        t0 = time.perf_counter()
        self.storage.commit()
        self.metrics.persist_latency.observe(time.perf_counter() - t0)

    def _apply(self, effects: list[Effect]) -> None:
        """Group commit: records are appended at once, but the commit (one fsync) is owed until the
        inputs already queued on the loop have been handled, and every effect after the first `Sync`
        waits for it, in order. So everything the peers' messages of one loop iteration make durable
        shares one transaction, and still nothing leaves the node before the records it depends on."""
        try:
            for e in with_syncs(effects):  # a Persist is durable before the effects that depend on it
                if isinstance(e, Sync):
                    self._sync_owed = True
                elif isinstance(e, Persist):
                    self.storage.append(e.record)
                elif self._sync_owed:
                    self._deferred.append(e)
                else:
                    self._perform(e)
        except StorageFull as exc:
            self._halt(str(exc))
            return
        if self._sync_owed:
            if self.feed is not None:
                self._feed_owed.extend(effects)
            if not self._commit_scheduled:
                self._commit_scheduled = True
                self._loop.call_soon(self._group_commit)
            return
        if self.feed is not None:
            self.feed.on_effects(effects)
        self._after_execution()

    def _group_commit(self) -> None:
        """The owed commit, then the effects that waited for it and what execution announced."""
        self._commit_scheduled = False
        if self.halted is not None or not self._sync_owed:
            return
        self._flush()
        self._sync_owed = False
        deferred, self._deferred = self._deferred, []
        for e in deferred:
            self._perform(e)
        if self.feed is not None:  # after the flush: observers never see a batch before it is durable here
            owed, self._feed_owed = self._feed_owed, []
            self.feed.on_effects(owed)
        self._after_execution()

    def _perform(self, e: Effect) -> None:
        match e:
            case Broadcast():
                for peer in range(self.cluster.n):
                    if peer != self.id:
                        self.transport.send(peer, CHANNEL_CONSENSUS, e.data)
            case SendToReplica():
                if e.to == self.id:
                    self._loop.call_soon(self._on_peer, self.id, CHANNEL_CONSENSUS, e.data)
                else:
                    self.transport.send(e.to, CHANNEL_CONSENSUS, e.data)
            case SetTimer():
                old = self._timers.pop(e.name, None)
                if old is not None:
                    old.cancel()
                delay = max(0.0, (e.at_us - now_us()) / 1e6)
                self._timers[e.name] = self._loop.call_later(delay, self._fire, e.name, e.at_us)
            case CancelTimer():
                old = self._timers.pop(e.name, None)
                if old is not None:
                    old.cancel()
            case Executed():
                self._on_executed(e)
            case StateRestored():
                self._snapshot_installed = True  # answered in `_resolve_from_snapshot` after this step
            case ViewEntered():
                self.metrics.failures.inc(kind="view_change")
                self.pubsub.publish("consensus", {"event": "view", "view": e.view})
            case SendToClient():
                pass  # our own clients are answered from Executed (or `_resolve_from_snapshot`); remote PBFT
                # clients are not served here
            case RequestCompleted():
                pass  # a PBFT client's effect: a replica never emits it
            case Rejected():
                log.debug("replica rejected an input: %s (%s)", e.reason, e.detail)
            case Persist():
                raise AssertionError("Persist is made durable by _apply, never performed")
            case _:
                assert_never(e)

    def _halt(self, reason: str) -> None:
        self.halted = reason
        self.metrics.failures.inc(kind="storage_full")
        log.error("node halted: %s", reason, extra={"event": "halted", "fields": {"reason": reason}})
        for h in list(self._timers.values()):
            h.cancel()
        for driver in self._signing_drivers():
            driver.cancel_timers()
        for sub in list(self._waiting.values()):
            if not sub.future.done():
                sub.future.set_exception(NodeHalted(reason))

    def _on_executed(self, e: Executed) -> None:
        self.metrics.rounds.inc()
        now = time.perf_counter()
        watched_dns, watched_ct = self.pubsub.watched("dns"), self.pubsub.watched("ct")
        targets = []
        for req, result in zip(e.requests, e.results, strict=True):
            target = tcapp.operation_target(req.operation) or "?"
            targets.append(target)
            if target == tcapp.CT:
                with contextlib.suppress(DecodeError):
                    if ctapp.decode_result(result).status == ctapp.STATUS_OK:
                        self.metrics.ct.inc()
                if watched_ct:
                    self.pubsub.publish("ct", {"seq": e.seq, "tree_size": self.app.ct.size})
            elif target == tcapp.DNS and watched_dns:  # results only for subscribers
                with contextlib.suppress(DecodeError):
                    self.pubsub.publish("dns", {"seq": e.seq, **dnsapp.result_json(dnsapp.decode_result(result))})
            self._resolve(req.client, req.timestamp, result, now)
        if self.pubsub.watched("consensus"):
            self.pubsub.publish("consensus", {"event": "executed", "seq": e.seq, "view": e.view,
                                              "time_us": e.timestamp_us, "batch_digest": e.batch_digest.hex(),
                                              "requests": len(e.requests), "targets": targets})

    def _resolve(self, client: bytes, timestamp: int, result: bytes, now: float) -> None:
        sub = self._waiting.pop((client, timestamp), None)
        if sub is not None and not sub.future.done():
            self.metrics.commit_latency.observe(now - sub.started, target=sub.target)
            sub.future.set_result(result)

    def _resolve_from_snapshot(self) -> None:
        """A snapshot installed by state transfer (a lagging replica catching up) produces no Executed effect
        and no application events for what it contains. Answer waiting requests from the replicated client
        table, and wake certificate waiters whose issuance left the pending set (callers then read `issued`)."""
        if not self._snapshot_installed:
            return  # the normal path: everything executed was announced by an Executed effect
        self._snapshot_installed = False
        now = time.perf_counter()
        for client, timestamp in list(self._waiting):
            record = self.client_record(client)
            if record is not None and record.timestamp == timestamp:
                self._resolve(client, timestamp, record.result, now)
        for pending_id in [p for p in self._cert_waiters if not self.app.issuance_in_progress(p)]:
            for fut in self._cert_waiters.pop(pending_id):
                if not fut.done():
                    fut.set_result(None)

    def _after_execution(self) -> None:
        for event in self.app.take_events():
            if isinstance(event, caevents.Finalized):
                self.metrics.issued.inc()
                self.metrics.ct.inc()
                self.pubsub.publish("certificates", {"event": "issued", "pending_id": event.pending_id,
                                                     "serial": event.serial.hex()})
                for pid in {event.pending_id, event.request_id or event.pending_id}:
                    for fut in self._cert_waiters.pop(pid, []):
                        if not fut.done():
                            fut.set_result(event)
            elif isinstance(event, caevents.PrecertSigned):
                self._order_sct()
            elif isinstance(event, caevents.Revoked):
                self.metrics.revoked.inc()
                self.pubsub.publish("certificates", {"event": "revoked", "serial": event.serial.hex(),
                                                     "reason": event.reason})
            elif isinstance(event, caevents.PendingRecorded):
                self.pubsub.publish("certificates", {"event": "pending", "pending_id": event.pending.pending_id,
                                                     "serial": event.pending.serial.hex()})
        self.observer.on_events(list(self.app.validation.take_events()))
        self._resolve_from_snapshot()
        for driver in self._signing_drivers():
            driver.sync()
        if self.serials is not None:
            self.serials.sync()

    def _order_sct(self) -> None:
        """This validator's log signs an SCT for every logged precertificate still short of SCTs that
        it has not answered, and orders it (a validator-only write) so replicated state can embed it."""
        if self.app.ct.log_signer is None or self.halted is not None:
            return
        for waiting in list(self.app.scts.awaiting.values()):
            if waiting.index in self._scts_ordered or any(c.validator == self.id for c in waiting.scts):
                continue
            self._scts_ordered.add(waiting.index)
            payload = sct_command(self.app.ct.sct(waiting.index).encode())
            task = asyncio.create_task(self._submit_sct(waiting.index, payload), name="ct-sct")
            self._tasks.append(task)
            task.add_done_callback(lambda t: self._tasks.remove(t) if t in self._tasks else None)

    async def _submit_sct(self, index: int, payload: bytes) -> None:
        try:
            await self.submit(tcapp.CT, payload)
        except (SubmitTimeout, NodeHalted) as exc:
            self._scts_ordered.discard(index)  # tried again on the next precertificate or restart
            log.warning("SCT for log entry %d not ordered: %s", index, exc, extra={"event": "ct_sct_failed"})

    # ------------------------------------------------------------------ API side

    async def submit(self, target: str, payload: bytes, timeout_s: float | None = None, *,
                     account: bool = False) -> bytes:
        """Order `payload` for sub-application `target`; the result once our replica executed it.

        `account=True` signs the write with this node's shared API account (the unsigned JSON write
        endpoints, allowed only with `api.unsigned_writes`), registered on first use; otherwise with this
        validator's own account. The PBFT request is signed by one of a pool of client keys (one
        outstanding request per key, so PBFT's per-client timestamp order is never violated)."""
        if self.halted is not None:
            raise NodeHalted(self.halted)
        assert self._free is not None
        timeout = timeout_s if timeout_s is not None else self.config.api.request_timeout_us / 1e6
        if account and not self._api_account_registered:
            await self._register_api_account(timeout)
        deadline = time.monotonic() + timeout
        try:
            idx = await asyncio.wait_for(self._free.get(), timeout)
        except TimeoutError:
            self.metrics.failures.inc(kind="submit_timeout")
            raise SubmitTimeout(f"not executed within {timeout:.1f} s: all {CLIENT_POOL} of this node's request "
                                "slots stayed busy") from None
        try:
            return await self.submit_as(self.clients[idx], target, payload, deadline, timeout, api=account)
        finally:
            self._free.put_nowait(idx)

    async def _register_api_account(self, timeout_s: float) -> None:
        operation = tcapp.registration_operation(
            self.api_signer, self.genesis.cluster_id, f"node {self.config.trustchain.node_id} API",
            nonce=secrets.token_bytes(NONCE_SIZE), deadline_us=now_us() + int(timeout_s * 1e6) + 60_000_000)
        async with self._account_lock:
            if not self._api_account_registered:
                await self.submit(PRESIGNED, operation, timeout_s)
                self._api_account_registered = self.app.accounts.is_active(self.api_account_id)

    def operation(self, target: str, payload: bytes, timeout_s: float, *, api: bool = False) -> bytes:
        """The consensus payload: a client's own signed write as is (`PRESIGNED`), else `payload` signed
        by the node's API account (`api`) or this validator's account (its consensus key), valid for about
        as long as we wait for it."""
        if target == PRESIGNED:
            return payload
        signer, account = (self.api_signer, self.api_account_id) if api else (self.write_signer, self.account_id)
        validity_us = min(int(timeout_s * 1e6) + 60_000_000, MAX_VALIDITY_US - 1_000_000)
        return tcapp.signed_operation(signer, account, self.genesis.cluster_id, target, payload,
                                      nonce=secrets.token_bytes(NONCE_SIZE), deadline_us=now_us() + validity_us)

    async def submit_as(self, signer: Ed25519Signer, target: str, payload: bytes, deadline: float,
                        timeout: float, *, api: bool = False) -> bytes:
        """Order `payload` as a request signed by `signer`, retransmitting until `deadline`. The caller
        keeps one request per signer outstanding (PBFT orders each client's timestamps)."""
        ts = max(self._last_ts[signer.public_key] + 1, now_us())
        self._last_ts[signer.public_key] = ts
        request = Request.create(signer, ts, self.operation(target, payload, timeout, api=api))
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[(signer.public_key, ts)] = Submission(target, time.perf_counter(), fut)
        packet = pack(request)
        backoff = RETRANSMIT_S
        try:
            while True:
                self._send_request(packet)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.metrics.failures.inc(kind="submit_timeout")
                    raise SubmitTimeout(f"not executed within {timeout:.1f} s")
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(backoff, remaining))
                except TimeoutError:
                    backoff = min(backoff * 2, 8.0)
        finally:
            self._waiting.pop((signer.public_key, ts), None)

    def _send_request(self, packet: bytes) -> None:
        """Hand a PBFT request to every replica, ours included (as a PBFT client broadcasts it)."""
        self._perform(Broadcast(packet))
        self._apply(self.replica.receive(packet, now_us()))

    async def wait_certificate(self, pending_id: int, timeout_s: float) -> caevents.Finalized | None:
        """The Finalized event for `pending_id`; None on timeout (it may still finalize later) or when the
        issuance left the pending set without an event (inside a state-transfer snapshot): read `issued`."""
        if not self.app.issuance_in_progress(pending_id):
            return None
        fut: asyncio.Future[caevents.Finalized | None] = self._loop.create_future()
        self._cert_waiters.setdefault(pending_id, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None

    def status(self) -> dict[str, Any]:
        r = self.replica.status
        return {
            "node_id": self.config.trustchain.node_id,
            "network": self.config.trustchain.network,
            "cluster_id": self.genesis.cluster_id.hex(),  # what clients' signed writes name
            "role": self.config.trustchain.role,
            "replica": self.id,
            "validators": self.cluster.n,
            "f": self.cluster.f,
            "view": r.view,
            "primary": r.primary,
            "status": r.phase.name.lower(),
            "last_executed": r.last_executed,
            "stable_checkpoint": r.low_watermark,
            "consensus_time_us": r.last_time_us,
            "pending_requests": r.pending,
            **self.state_status(),
            "account": self.account_id.hex(),  # this validator's account: zone owners delegate updates to it
            "observers": len(self.config.consensus.observers),
            "halted": self.halted,
            "uptime_s": round(time.time() - self.started_at, 3),
        }

    def state_status(self) -> dict[str, Any]:
        """The replicated state's part of the status document (the same on a validator and an observer)."""
        return {
            "ca": {"issued": len(self.app.ca.issued), "pending": len(self.app.ca.pending),
                   "threshold": self.genesis.issuing.min_signers,
                   "crl_number": self.app.ca.crl.number if self.app.ca.crl is not None else 0,
                   "ocsp_responses": len(self.app.ca.ocsp), "signatures_pending": len(self.app.ca.signatures),
                   "root_crl_number": self.app.ca.root.crl.number if self.app.ca.root.crl is not None else 0,
                   "serial_draws_open": len(self.app.ca.serials.draws),
                   "serial_commitments_unused": self.app.ca.serials.unused_count(self.id),
                   "serial_commits_ordered": self.serials.commits if self.serials is not None else 0,
                   "serial_reveals_ordered": self.serials.reveals if self.serials is not None else 0},
            "ct": {"tree_size": self.app.ct.size, "origin": self.genesis.ct_origin},
            "dns": {"zones": sorted(z.to_text() for z in self.app.dns.zones),
                    "delegations": len(self.app.dns.delegations)},
            "kv": {"keys": len(self.app.kv.data)},
            "storage": {"path": str(self.storage.path), "usage_bytes": self.storage.usage_bytes(),
                        "max_size": self.storage.max_size, "records": self.storage.count()},
        }


def api_account_signer(genesis: Genesis) -> Ed25519AccountSigner:
    """The one account every node's unsigned JSON endpoints act for (development clusters), derived from
    genesis, so a zone created through one node can be changed through another."""
    return Ed25519AccountSigner(hashlib.sha256(
        b"trustchain/unsigned-api-account/" + genesis.cluster_id + genesis.dns_master_seed).digest())


def cluster_config(config: NodeConfig) -> ClusterConfig:
    """The PBFT configuration every node derives from its [consensus] section."""
    cons = config.consensus
    return ClusterConfig(
        tuple(v.public_key for v in cons.validators),
        batch_size=cons.batch_size,
        batch_delay_us=cons.batch_delay_us,
        max_in_flight=cons.max_in_flight,
        max_batch_size=cons.max_batch_size,
        checkpoint_interval=cons.checkpoint_interval,
        watermark_window=cons.watermark_window,
        view_change_timeout_us=cons.timeout_us,
    )


CLUSTER_ID_KEY = "cluster_id"  # storage meta key: the genesis this data directory belongs to


def bind_to_genesis(storage: Storage, cluster_id: bytes, path: Path) -> None:
    """A data directory belongs to one cluster: the first start records the genesis' cluster id, and a
    node refuses data recorded under another genesis (replaying it under new keys would resurrect or
    rewrite what that cluster decided)."""
    recorded = storage.get_meta(CLUSTER_ID_KEY)
    if recorded is None:
        storage.set_meta(CLUSTER_ID_KEY, cluster_id)
        storage.commit()
    elif recorded != cluster_id:
        raise GenesisError(f"storage.path {path} holds the data of another cluster (cluster id "
                           f"{recorded.hex()[:16]}…, this genesis is {cluster_id.hex()[:16]}…): point storage.path "
                           "at an empty directory, or trustchain.genesis at that cluster's genesis")


def _share(path: Path, group_key: bytes, field: str) -> frost_KeyPackage:
    """This validator's FROST key package at `path`, refused unless it belongs to the genesis group key."""
    kp = load_key_package(path)
    if kp.group_public_key != group_key:
        raise GenesisError(f"{path}: {field} is a share of another key than the genesis one")
    return kp


def build_node(config: NodeConfig) -> Node:
    if config.trustchain.genesis is None:
        raise ValueError(f"{config.file}: trustchain.genesis: required to run a node")
    genesis = Genesis.load(config.trustchain.genesis)
    if genesis.network != config.trustchain.network:
        raise GenesisError(f"{config.file}: trustchain.network is {config.trustchain.network!r} but the genesis "
                           f"{config.trustchain.genesis} is for network {genesis.network!r}")
    if config.trustchain.role == "observer":
        from reference_node.observer_node import build_observer

        return build_observer(config, genesis)
    if config.replica_id < 0:
        raise GenesisError(f"{config.file}: trustchain.node_id {config.trustchain.node_id!r} is not among "
                           "consensus.validators")
    cons = config.consensus
    if cons.tls_cert is not None and cons.tls_key is not None:  # start with the newest certificate the node has
        tls_cert, tls_key = newest_pair((cons.tls_cert, cons.tls_key), renewed_paths(config.storage.path))
        cons = dataclasses.replace(cons, tls_cert=tls_cert, tls_key=tls_key)
        config = dataclasses.replace(config, consensus=cons)
    transport: PeerTransport
    if cons.transport == "quic":
        from reference_node.transport_quic import QUICTransport

        transport = QUICTransport.from_config(config, genesis.node_domain)
    else:
        assert cons.listen is not None
        transport = TCPTransport(config.replica_id, cons.listen, membership_of(config, genesis.cluster_id).addresses,
                                 cons.send_queue)
    return Node(config, genesis, transport)
