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
TBS like a certificate and the finalized bytes land in replicated state, which `http_pki` serves.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import hashlib
import logging
import os
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519

from reference_node.config import NodeConfig
from reference_node.genesis import Genesis, load_key_package, load_seed
from reference_node.metrics import Registry
from reference_node.storage import Storage, StorageFull
from reference_node.transport_tcp import CHANNEL_CONSENSUS, CHANNEL_SIGNING, Deliver, TCPTransport
from trustchain.app import trustchain as tcapp
from trustchain.ca import issuance, rotation
from trustchain.ca import signing_service as ss
from trustchain.ca import x509 as cax509
from trustchain.consensus.config import ClusterConfig
from trustchain.consensus.effects import (
    Broadcast,
    CancelTimer,
    Effect,
    Executed,
    Persist,
    SendToClient,
    SendToReplica,
    SetTimer,
    StateRestored,
    ViewEntered,
)
from trustchain.consensus.messages import Request, pack
from trustchain.consensus.replica import Replica
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import app as ctapp
from trustchain.dns import app as dnsapp
from trustchain.encoding import DecodeError

log = logging.getLogger("trustchain.node")

CLIENT_POOL = 16
RETRANSMIT_S = 1.0
DNS_TICK_S = 600.0
EPOCH_FILE = "signing.epoch"


class PeerTransport(Protocol):
    async def start(self, deliver: Deliver) -> None: ...

    def send(self, peer: int, channel: int, data: bytes) -> bool: ...

    async def close(self) -> None: ...


class SubmitTimeout(TimeoutError):
    pass


class NodeHalted(RuntimeError):
    pass


def now_us() -> int:
    return time.time_ns() // 1000


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
        keys = tuple(v.public_key for v in cons.validators)
        if keys[self.id] != self.signer.public_key:
            raise ValueError(f"{config.trustchain.key_file}: key does not match consensus.validators[{self.id}]")
        self.cluster = ClusterConfig(
            keys,
            batch_size=cons.batch_size,
            batch_delay_us=cons.batch_delay_us,
            checkpoint_interval=cons.checkpoint_interval,
            watermark_window=cons.watermark_window,
            view_change_timeout_us=cons.timeout_us,
        )
        self.storage = Storage(config.storage.path, max_size=config.storage.max_size,
                               prune_age_us=config.storage.prune_age_us, synchronous=config.storage.synchronous)
        self.app = self._new_app()
        records = self.storage.records()
        self.recovered_records = len(records)
        self.replica = Replica.recover(self.cluster, self.id, self.signer, self.app, records)
        self.app.take_events()  # replayed history: the signing service is synced from state below
        self.signing: ss.SigningService | None = None
        self.signing_epoch = 0
        if config.ca.intermediate_key is not None:
            kp = load_key_package(config.ca.intermediate_key)
            peers = {i + 1: k for i, k in enumerate(keys)}
            self.signing_epoch = self._next_signing_epoch()
            self.signing = ss.SigningService(kp, genesis.issuing, self.signer, peers, secrets.token_bytes,
                                             epoch=self.signing_epoch)
        self._signing_synced_at = -1
        self.transport = transport
        self.clients = [Ed25519Signer(hashlib.sha256(b"trustchain/node-client/%d/" % i + self.seed).digest())
                        for i in range(CLIENT_POOL)]
        self.account = Ed25519Signer(hashlib.sha256(b"trustchain/node-account/" + self.seed).digest())
        self._last_ts = {c.public_key: self._executed_ts(c.public_key)
                         for c in [*self.clients, self.account, self.signer]}
        self._account_lock = asyncio.Lock()
        self._validator_lock = asyncio.Lock()  # requests signed with the consensus key (node certificate)
        self.node_name = issuance.node_name(self.id, genesis.node_domain)
        self.node_cert_renewals = 0
        # called with (chain PEM, key PEM) after each renewal, e.g. to reload the DoQ listener
        self.certificate_listeners: list[Callable[[bytes, bytes], None]] = []
        self._free: asyncio.Queue[int] | None = None
        self._waiting: dict[tuple[bytes, int], Submission] = {}
        # Set by a StateRestored effect: the snapshot's requests and issuances announced nothing
        self._snapshot_installed = False
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self._sign_timers: dict[ss.TimerKey, asyncio.TimerHandle] = {}
        self._cert_waiters: dict[int, list[asyncio.Future[issuance.Finalized | None]]] = {}
        self.subscribers: dict[str, set[asyncio.Queue[dict[str, Any]]]] = {}
        self.halted: str | None = None
        self.started_at = time.time()
        self.misbehaviour: list[tuple[int, str]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._init_metrics()

    # ------------------------------------------------------------------ construction helpers

    def _new_app(self) -> tcapp.TrustChainApplication:
        return tcapp.TrustChainApplication(
            self.genesis.ca_policy(tuple(v.public_key for v in self.config.consensus.validators)),
            self.genesis.dns_master_seed, self.signer,
            f"{self.genesis.ct_origin}/{self.config.trustchain.node_id}", self.genesis.ct_origin)

    def _next_signing_epoch(self) -> int:
        """A signing-service epoch larger than every earlier incarnation's (their nonce ids may still sit in
        peers' pools): one more than the persisted one, and at least the wall-clock second, so that a
        node whose storage directory was lost still moves forward. Written and fsynced before use."""
        path = self.config.storage.path / EPOCH_FILE
        previous = 0
        with contextlib.suppress(OSError, ValueError):
            previous = int(path.read_text().strip())
        epoch = min(max(previous + 1, int(time.time())), (1 << 31) - 1)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "w") as fh:
            fh.write(f"{epoch}\n")
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        return epoch

    def _dns_cache_hit_ratio(self) -> float:
        cache = self.app.dns.authority.cache  # the authority is replaced on restore: look it up each time
        if cache is None or cache.stats.hits + cache.stats.misses == 0:
            return 0.0
        return cache.stats.hits / (cache.stats.hits + cache.stats.misses)

    def _executed_ts(self, client: bytes) -> int:
        rec = self.replica.client_table.get(client)
        return rec.timestamp if rec is not None else 0

    def _init_metrics(self) -> None:
        r = self.metrics = Registry()
        self.m_issued = r.counter("trustchain_certificates_issued_total", "Certificates finalized (FROST-signed).")
        self.m_revoked = r.counter("trustchain_certificates_revoked_total", "Certificates revoked.")
        self.m_dns_queries = r.counter("trustchain_dns_queries_total", "DNS queries answered (API and listeners).")
        r.gauge("trustchain_dns_cache_hit_ratio", "Share of authoritative DNS answers served from the answer cache.",
                self._dns_cache_hit_ratio)
        self.m_rounds = r.counter("trustchain_consensus_rounds_total", "Batches executed by this replica.")
        self.m_failures = r.counter("trustchain_consensus_failures_total",
                                    "View changes entered, storage refusals and timed-out submissions.")
        self.m_ct = r.counter("trustchain_ct_submissions_total", "CT entries appended (submissions and issuance).")
        r.gauge("trustchain_storage_usage_bytes", "Bytes used by the node database (with WAL).",
                lambda: float(self.storage.usage_bytes()))
        r.gauge("trustchain_consensus_view", "Current PBFT view.", lambda: float(self.replica.view))
        r.gauge("trustchain_consensus_last_executed", "Last executed sequence number.",
                lambda: float(self.replica.last_executed))
        self.m_sent_dropped = r.gauge("trustchain_transport_dropped_total", "Messages dropped by full send queues.",
                                      lambda: float(getattr(getattr(self.transport, "stats", None), "dropped", 0)))
        self.m_commit_latency = r.histogram("trustchain_request_latency_seconds",
                                            "Submission to own-replica execution, by sub-application.")
        self.m_http_latency = r.histogram("trustchain_http_request_duration_seconds", "HTTP API latency by route.")
        self.m_persist_latency = r.histogram("trustchain_storage_commit_seconds", "Durable commit (fsync) latency.")

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._free = asyncio.Queue()
        for i in range(CLIENT_POOL):
            self._free.put_nowait(i)
        await self.transport.start(self._on_peer)
        self._apply(self.replica.start(now_us()))
        if self.signing is not None:
            self._apply_signing(self.signing.start(now_us()))
        self._sync_signing()
        self._tasks.append(asyncio.create_task(self._ticker(), name="dns-tick"))
        if self.signing is not None:
            ca = self.config.ca
            self._tasks.append(asyncio.create_task(
                self._pki_ticker(ca.crl_interval_us, self.app.ca.crl_due, issuance.sign_crl_command), name="crl"))
            self._tasks.append(asyncio.create_task(self._pki_ticker(
                ca.ocsp_interval_us, self.app.ca.ocsp_due, lambda: issuance.sign_ocsp_batch_command(ca.ocsp_batch)),
                name="ocsp"))
        if self._node_cert_paths() is not None:
            self._tasks.append(asyncio.create_task(self._node_cert_renewer(), name="node-cert"))
        log.info("node %s (replica %d) started: view %d, executed %d, %d records recovered",
                 self.config.trustchain.node_id, self.id, self.replica.view, self.replica.last_executed,
                 self.recovered_records, extra={"event": "started", "fields": {
                     "replica": self.id, "view": self.replica.view, "last_executed": self.replica.last_executed,
                     "recovered_records": self.recovered_records, "transport": self.config.consensus.transport}})

    async def stop(self) -> None:
        for t in self._tasks:
            t.cancel()
        for t in self._tasks:
            with contextlib.suppress(asyncio.CancelledError):
                await t
        for h in list(self._timers.values()) + list(self._sign_timers.values()):
            h.cancel()
        await self.transport.close()
        self.storage.close()

    async def _ticker(self) -> None:
        """Quiet zones still need fresh RRSIGs: the primary orders a DNS TICK now and then."""
        while True:
            await asyncio.sleep(DNS_TICK_S)
            if self.replica.is_primary and self.app.dns.zones and self.halted is None:
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

    # ------------------------------------------------------------------ node certificate renewal

    def _node_cert_paths(self) -> tuple[Path, Path] | None:
        c = self.config.consensus
        return (c.tls_cert, c.tls_key) if c.tls_cert is not None and c.tls_key is not None else None

    def node_certificate(self) -> x509.Certificate | None:
        """This node's current TLS node certificate (the first one in `consensus.tls_cert`)."""
        paths = self._node_cert_paths()
        if paths is None:
            return None
        try:
            return x509.load_pem_x509_certificates(paths[0].read_bytes())[0]
        except (OSError, ValueError):
            return None

    async def _node_cert_renewer(self) -> None:
        """Renew the node certificate at 2/3 of its lifetime (`rotation.renewal_time`), through consensus,
        then sleep until the new one is due. Failures are retried after 1/20 of the lifetime (1 s..60 s)."""
        while True:
            cert = self.node_certificate()
            if cert is None or self.node_name not in cax509.dns_names(cert):
                log.warning("node certificate: %s is not a node certificate for %s; not renewing it",
                            self.config.consensus.tls_cert, self.node_name, extra={"event": "node_cert_unusable"})
                return
            nb, na = cert.not_valid_before_utc, cert.not_valid_after_utc
            due = rotation.renewal_time(nb, na)
            delay = (due - dt.datetime.now(dt.UTC)).total_seconds()
            if delay > 0:
                await asyncio.sleep(delay)
            if self.halted is not None:
                return
            try:
                await self.renew_node_certificate()
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                retry = min(60.0, max(1.0, (na - nb).total_seconds() / 20))
                log.warning("node certificate renewal failed (retry in %.0f s): %s", retry, exc, extra={
                    "event": "node_cert_renewal_failed", "fields": {"retry_s": retry, "error": str(exc)}})
                await asyncio.sleep(retry)

    async def renew_node_certificate(self, timeout_s: float = 60.0) -> x509.Certificate:
        """Order a certificate request for this node's name, signed with the consensus key (the CA's
        node-name rule: only validator i's key may request `validator-<i>.<node_domain>`), wait for the
        FROST-signed certificate, store key and chain, and install them in the transport."""
        paths = self._node_cert_paths()
        assert paths is not None
        key = ed25519.Ed25519PrivateKey.generate()
        csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
               .add_extension(x509.SubjectAlternativeName([x509.DNSName(self.node_name)]), critical=False)
               .sign(key, None))
        lifetime_s = max(10, self.config.ca.node_cert_lifetime_us // 1_000_000)
        command = issuance.request_command(issuance.IssueRequest(
            csr.public_bytes(serialization.Encoding.DER), (self.node_name,), ("",), f"node {self.node_name}", "",
            lifetime_s))
        deadline = time.monotonic() + timeout_s
        async with self._validator_lock:
            result = await self._submit_as(self.signer, tcapp.CA, command, deadline, timeout_s)
        pending = issuance.parse_pending(result)
        if pending is None:
            raise RuntimeError(f"node certificate request refused: {result.decode(errors='replace')}")
        pending_id, serial = pending
        serial_hex = serial.hex()
        await self.wait_certificate(pending_id, max(0.1, deadline - time.monotonic()))
        issued = self.app.ca.issued.get(serial)  # also covers a finalize executed before we started waiting
        if issued is None:
            raise RuntimeError(f"node certificate {serial_hex} not signed within {timeout_s:.0f} s")
        cert = x509.load_der_x509_certificate(issued.certificate_der)
        if self.app.ca.issuer_certificates:
            chain = [x509.load_der_x509_certificate(self.app.ca.issuer_certificates[-1])]
        else:
            chain = x509.load_pem_x509_certificates(paths[0].read_bytes())[1:]
        chain_pem = b"".join(c.public_bytes(serialization.Encoding.PEM) for c in [cert, *chain])
        key_pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                    serialization.NoEncryption())
        # Each file is replaced atomically. A crash between the two leaves a key that does not match the
        # certificate: the QUIC transport then refuses to start (`Identity`) instead of using either.
        _replace(paths[1], key_pem, 0o600)
        _replace(paths[0], chain_pem, 0o644)
        install = getattr(self.transport, "install_identity", None)
        if install is not None:
            from reference_node.transport_quic import Identity

            install(Identity(chain_pem, key_pem))
        for listener in self.certificate_listeners:
            listener(chain_pem, key_pem)
        self.node_cert_renewals += 1
        log.info("node certificate renewed", extra={"event": "node_cert_renewed", "fields": {
            "serial": serial_hex, "not_after": cert.not_valid_after_utc.isoformat(), "name": self.node_name}})
        self.publish("certificates", {"event": "node_renewed", "serial": serial_hex,
                                      "not_after": cert.not_valid_after_utc.isoformat()})
        return cert

    # ------------------------------------------------------------------ inputs

    def _on_peer(self, sender: int, channel: int, data: bytes) -> None:
        if self.halted is not None:
            return
        if channel == CHANNEL_CONSENSUS:
            self._apply(self.replica.receive(data, now_us()))
        elif channel == CHANNEL_SIGNING and self.signing is not None:
            self._apply_signing(self.signing.on_message(data, now_us()))

    def _fire(self, name: str, at_us: int) -> None:
        self._timers.pop(name, None)
        if self.halted is not None:
            return
        now = now_us()
        if now < at_us:  # loop clock and wall clock drift apart slightly: never fire early
            self._timers[name] = self._loop.call_later((at_us - now) / 1e6, self._fire, name, at_us)
            return
        self._apply(self.replica.on_timer(name, now))

    def _fire_signing(self, key: ss.TimerKey) -> None:
        self._sign_timers.pop(key, None)
        if self.signing is not None and self.halted is None:
            self._apply_signing(self.signing.on_timer(key, now_us()))

    # ------------------------------------------------------------------ effects

    def _flush(self) -> None:
        t0 = time.perf_counter()
        self.storage.commit()
        self.m_persist_latency.observe(time.perf_counter() - t0)

    def _apply(self, effects: list[Effect]) -> None:
        dirty = False
        try:
            for e in effects:
                if isinstance(e, Persist):
                    self.storage.append(e.record)
                    dirty = True
                    continue
                if dirty:  # a Persist is durable before any later effect
                    self._flush()
                    dirty = False
                self._perform(e)
            if dirty:
                self._flush()
        except StorageFull as exc:
            self._halt(str(exc))
            return
        self._after_execution()

    def _perform(self, e: Effect) -> None:
        if isinstance(e, Broadcast):
            for peer in range(self.cluster.n):
                if peer != self.id:
                    self.transport.send(peer, CHANNEL_CONSENSUS, e.data)
        elif isinstance(e, SendToReplica):
            if e.to == self.id:
                self._loop.call_soon(self._on_peer, self.id, CHANNEL_CONSENSUS, e.data)
            else:
                self.transport.send(e.to, CHANNEL_CONSENSUS, e.data)
        elif isinstance(e, SetTimer):
            old = self._timers.pop(e.name, None)
            if old is not None:
                old.cancel()
            delay = max(0.0, (e.at_us - now_us()) / 1e6)
            self._timers[e.name] = self._loop.call_later(delay, self._fire, e.name, e.at_us)
        elif isinstance(e, CancelTimer):
            old = self._timers.pop(e.name, None)
            if old is not None:
                old.cancel()
        elif isinstance(e, Executed):
            self._on_executed(e)
        elif isinstance(e, StateRestored):
            self._snapshot_installed = True  # answered in `_resolve_from_snapshot` after this step
        elif isinstance(e, ViewEntered):
            self.m_failures.inc(kind="view_change")
            self.publish("consensus", {"event": "view", "view": e.view})
        elif isinstance(e, SendToClient):
            pass  # our own clients are answered from Executed (or `_resolve_from_snapshot`); remote PBFT
            # clients are not served here

    def _halt(self, reason: str) -> None:
        self.halted = reason
        self.m_failures.inc(kind="storage_full")
        log.error("node halted: %s", reason, extra={"event": "halted", "fields": {"reason": reason}})
        for h in list(self._timers.values()) + list(self._sign_timers.values()):
            h.cancel()
        for sub in list(self._waiting.values()):
            if not sub.future.done():
                sub.future.set_exception(NodeHalted(reason))

    def _on_executed(self, e: Executed) -> None:
        self.m_rounds.inc()
        now = time.perf_counter()
        watched_dns, watched_ct = bool(self.subscribers.get("dns")), bool(self.subscribers.get("ct"))
        targets = []
        for req, result in zip(e.requests, e.results, strict=True):
            routed = tcapp.unroute(req.operation)
            target = routed.target if routed is not None else "?"
            targets.append(target)
            if target == tcapp.CT:
                with contextlib.suppress(DecodeError):
                    if ctapp.decode_result(result).status == ctapp.STATUS_OK:
                        self.m_ct.inc()
                if watched_ct:
                    self.publish("ct", {"seq": e.seq, "tree_size": self.app.ct.size})
            elif target == tcapp.DNS and routed is not None and watched_dns:  # results only for subscribers
                with contextlib.suppress(DecodeError):
                    self.publish("dns", {"seq": e.seq, **dnsapp.result_json(dnsapp.decode_result(result))})
            self._resolve(req.client, req.timestamp, result, now)
        if self.subscribers.get("consensus"):
            self.publish("consensus", {"event": "executed", "seq": e.seq, "view": e.view,
                                       "time_us": e.timestamp_us, "batch_digest": e.batch_digest.hex(),
                                       "requests": len(e.requests), "targets": targets})

    def _resolve(self, client: bytes, timestamp: int, result: bytes, now: float) -> None:
        sub = self._waiting.pop((client, timestamp), None)
        if sub is not None and not sub.future.done():
            self.m_commit_latency.observe(now - sub.started, target=sub.target)
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
            record = self.replica.client_table.get(client)
            if record is not None and record.timestamp == timestamp:
                self._resolve(client, timestamp, record.result, now)
        for pending_id in [p for p in self._cert_waiters if p not in self.app.ca.pending]:
            for fut in self._cert_waiters.pop(pending_id):
                if not fut.done():
                    fut.set_result(None)

    def _after_execution(self) -> None:
        for event in self.app.take_events():
            if isinstance(event, issuance.Finalized):
                self.m_issued.inc()
                self.m_ct.inc()
                self.publish("certificates", {"event": "issued", "pending_id": event.pending_id,
                                              "serial": event.serial.hex()})
                for fut in self._cert_waiters.pop(event.pending_id, []):
                    if not fut.done():
                        fut.set_result(event)
            elif isinstance(event, issuance.Revoked):
                self.m_revoked.inc()
                self.publish("certificates", {"event": "revoked", "serial": event.serial.hex(),
                                              "reason": event.reason})
            elif isinstance(event, issuance.PendingRecorded):
                self.publish("certificates", {"event": "pending", "pending_id": event.pending.pending_id,
                                              "serial": event.pending.serial.hex()})
        self._resolve_from_snapshot()
        self._sync_signing()

    def _sync_signing(self) -> None:
        """The signing service follows the replicated pending set (certificates, CRLs, OCSP responses)
        whenever the replica executed something, which includes recovery and state transfer: a restored
        snapshot emits no events, `reconcile` compares the whole set."""
        s = self.signing
        if s is None or self.halted is not None:
            return
        if self.replica.last_executed == self._signing_synced_at:
            return
        self._signing_synced_at = self.replica.last_executed
        effects = s.reconcile(self.app.ca.pending_items(), now_us())
        if effects:
            self._apply_signing(effects)

    def _apply_signing(self, effects: list[ss.Effect]) -> None:
        for e in effects:
            if isinstance(e, ss.Send):
                if e.to - 1 != self.id:
                    self.transport.send(e.to - 1, CHANNEL_SIGNING, e.data)
            elif isinstance(e, ss.SetTimer):
                old = self._sign_timers.pop(e.key, None)
                if old is not None:
                    old.cancel()
                delay = max(0.0, (e.at_us - now_us()) / 1e6)
                self._sign_timers[e.key] = self._loop.call_later(delay, self._fire_signing, e.key)
            elif isinstance(e, ss.SubmitFinalize):
                task = asyncio.create_task(self._submit_quietly(tcapp.CA, e.command))
                self._tasks.append(task)
            elif isinstance(e, ss.Misbehaviour):
                self.misbehaviour.append((e.accused, e.reason))
                log.warning("validator %d misbehaved: %s", e.accused, e.reason,
                            extra={"event": "misbehaviour", "fields": {"accused": e.accused, "reason": e.reason}})

    async def _submit_quietly(self, target: str, payload: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.submit(target, payload, timeout_s=30.0)

    # ------------------------------------------------------------------ API side

    async def submit(self, target: str, payload: bytes, timeout_s: float | None = None, *,
                     account: bool = False) -> bytes:
        """Order `payload` for sub-application `target`; the result once our replica executed it.

        `account=True` signs with this node's CA account key (one request at a time), so a challenge
        and the issuance request that answers it come from the same account, as the CA requires;
        otherwise one of a pool of client keys is used (one outstanding request per key, so PBFT's
        per-client timestamp order is never violated)."""
        if self.halted is not None:
            raise NodeHalted(self.halted)
        assert self._free is not None
        timeout = timeout_s if timeout_s is not None else self.config.api.request_timeout_us / 1e6
        deadline = time.monotonic() + timeout
        if account:
            await asyncio.wait_for(self._account_lock.acquire(), timeout)
            try:
                return await self._submit_as(self.account, target, payload, deadline, timeout)
            finally:
                self._account_lock.release()
        idx = await asyncio.wait_for(self._free.get(), timeout)
        try:
            return await self._submit_as(self.clients[idx], target, payload, deadline, timeout)
        finally:
            self._free.put_nowait(idx)

    async def _submit_as(self, signer: Ed25519Signer, target: str, payload: bytes, deadline: float,
                         timeout: float) -> bytes:
        ts = max(self._last_ts[signer.public_key] + 1, now_us())
        self._last_ts[signer.public_key] = ts
        request = Request.create(signer, ts, tcapp.route(target, payload))
        fut: asyncio.Future[bytes] = self._loop.create_future()
        self._waiting[(signer.public_key, ts)] = Submission(target, time.perf_counter(), fut)
        packet = pack(request)
        backoff = RETRANSMIT_S
        try:
            while True:
                self._perform(Broadcast(packet))
                self._apply(self.replica.receive(packet, now_us()))
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    self.m_failures.inc(kind="submit_timeout")
                    raise SubmitTimeout(f"not executed within {timeout:.1f} s")
                try:
                    return await asyncio.wait_for(asyncio.shield(fut), min(backoff, remaining))
                except TimeoutError:
                    backoff = min(backoff * 2, 8.0)
        finally:
            self._waiting.pop((signer.public_key, ts), None)

    async def wait_certificate(self, pending_id: int, timeout_s: float) -> issuance.Finalized | None:
        """The Finalized event for `pending_id`; None on timeout (it may still finalize later) or when the
        issuance left the pending set without an event (inside a state-transfer snapshot): read `issued`."""
        if pending_id not in self.app.ca.pending:
            return None
        fut: asyncio.Future[issuance.Finalized | None] = self._loop.create_future()
        self._cert_waiters.setdefault(pending_id, []).append(fut)
        try:
            return await asyncio.wait_for(fut, timeout_s)
        except TimeoutError:
            return None

    def subscribe(self, topic: str) -> asyncio.Queue[dict[str, Any]]:
        q: asyncio.Queue[dict[str, Any]] = asyncio.Queue(256)
        self.subscribers.setdefault(topic, set()).add(q)
        return q

    def unsubscribe(self, topic: str, q: asyncio.Queue[dict[str, Any]]) -> None:
        self.subscribers.get(topic, set()).discard(q)

    def publish(self, topic: str, event: dict[str, Any]) -> None:
        for q in list(self.subscribers.get(topic, ())):
            with contextlib.suppress(asyncio.QueueFull):
                q.put_nowait(event)

    def status(self) -> dict[str, Any]:
        r = self.replica
        return {
            "node_id": self.config.trustchain.node_id,
            "network": self.config.trustchain.network,
            "role": self.config.trustchain.role,
            "replica": self.id,
            "validators": self.cluster.n,
            "f": self.cluster.f,
            "view": r.view,
            "primary": r.primary,
            "status": r.status.name.lower(),
            "last_executed": r.last_executed,
            "stable_checkpoint": r.low_watermark,
            "consensus_time_us": r.last_time_us,
            "pending_requests": len(r.pending),
            "ca": {"issued": len(self.app.ca.issued), "pending": len(self.app.ca.pending),
                   "threshold": self.genesis.issuing.min_signers,
                   "crl_number": self.app.ca.crl.number if self.app.ca.crl is not None else 0,
                   "ocsp_responses": len(self.app.ca.ocsp), "signatures_pending": len(self.app.ca.signatures)},
            "ct": {"tree_size": self.app.ct.size, "origin": self.genesis.ct_origin},
            "dns": {"zones": sorted(z.to_text() for z in self.app.dns.zones)},
            "kv": {"keys": len(self.app.kv.data)},
            "storage": {"path": str(self.storage.path), "usage_bytes": self.storage.usage_bytes(),
                        "max_size": self.storage.max_size, "records": self.storage.count()},
            "halted": self.halted,
            "uptime_s": round(time.time() - self.started_at, 3),
        }


def _replace(path: Path, data: bytes, mode: int) -> None:
    """Write `data` to `path` atomically (temporary file, fsync, rename)."""
    tmp = path.with_name(path.name + ".new")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, mode)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


def build_node(config: NodeConfig) -> Node:
    if config.trustchain.genesis is None:
        raise ValueError(f"{config.file}: trustchain.genesis: required to run a node")
    genesis = Genesis.load(config.trustchain.genesis)
    cons = config.consensus
    transport: PeerTransport
    if cons.transport == "quic":
        from reference_node.transport_quic import QUICTransport

        transport = QUICTransport.from_config(config, genesis.node_domain)
    else:
        assert cons.listen is not None
        transport = TCPTransport(config.replica_id, cons.listen, {v.id: v.address for v in cons.validators},
                                 cons.send_queue)
    return Node(config, genesis, transport)
