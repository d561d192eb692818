"""The asyncio driver of the FROST `SigningService` that runs beside a node's replica.

The service is a sans-I/O state machine like the replica: it gets peer messages on the signing channel,
timer firings and the replicated pending set, and returns effects. This module carries them out:
`Send` goes to a peer on `CHANNEL_SIGNING`, `SetTimer` becomes a `loop.call_later` handle (re-arming
replaces), `SubmitFinalize` orders the signature through consensus like any API write (those of one loop
iteration together, as one `finalize_batch`), and
`Misbehaviour` is logged and kept for the operator.

A node runs two: one with its share of the issuing key (certificates, the issuing CRL, OCSP for leaves) on
`CHANNEL_SIGNING`, one with its share of the root key (the root CRL, OCSP for issuing CAs) on
`CHANNEL_ROOT_SIGNING`; each follows its own part of the replicated pending set.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, assert_never

from reference_node.clock import now_us
from reference_node.transport import CHANNEL_SIGNING
from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.ca import signing_service as ss

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["EPOCH_FILE", "ROOT_EPOCH_FILE", "SigningDriver", "next_signing_epoch"]

log = logging.getLogger("trustchain.node")

EPOCH_FILE = "signing.epoch"
ROOT_EPOCH_FILE = "root-signing.epoch"


def next_signing_epoch(storage_dir: Path, name: str = EPOCH_FILE) -> int:
    """A signing-service epoch larger than every earlier incarnation's (their nonce ids may still sit in
    peers' pools): one more than the persisted one, and at least the wall-clock second, so that a
    node whose storage directory was lost still moves forward. Written and fsynced before use."""
    path = storage_dir / name
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


class SigningDriver:
    """Feeds `service` and performs its effects for `node` (whose id, transport and submit it uses)."""

    def __init__(self, node: Node, service: ss.SigningService, epoch: int, *, channel: int = CHANNEL_SIGNING,
                 items: Callable[[], dict[int, bytes]] | None = None) -> None:
        """`items` is the replicated pending set this service signs (default: the issuing key's)."""
        self.node = node
        self.service = service
        self.epoch = epoch
        self.channel = channel
        self.items = items or (lambda: node.app.ca.pending_items())
        self.misbehaviour: list[tuple[int, str]] = []
        self._synced_at = -1
        self._timers: dict[ss.TimerKey, asyncio.TimerHandle] = {}
        self._finalizing: list[tuple[int, bytes]] = []  # aggregated this loop iteration, ordered together

    def start(self) -> None:
        self.apply(self.service.start(now_us()))

    def on_message(self, data: bytes) -> None:
        self.apply(self.service.on_message(data, now_us()))

    def cancel_timers(self) -> None:
        for h in list(self._timers.values()):
            h.cancel()

    def sync(self) -> None:
        """The signing service follows the replicated pending set (certificates, CRLs, OCSP responses)
        whenever the replica executed something, which includes recovery and state transfer: a restored
        snapshot emits no events, `reconcile` compares the whole set."""
        node = self.node
        if node.halted is not None:
            return
        last_executed = node.replica.status.last_executed
        if last_executed == self._synced_at:
            return
        self._synced_at = last_executed
        effects = self.service.reconcile(self.items(), now_us())
        if effects:
            self.apply(effects)

    def apply(self, effects: list[ss.Effect]) -> None:
        loop = asyncio.get_running_loop()
        for e in effects:
            match e:
                case ss.Send():
                    if e.to - 1 != self.node.id:
                        self.node.transport.send(e.to - 1, self.channel, e.data)
                case ss.SetTimer():
                    old = self._timers.pop(e.key, None)
                    if old is not None:
                        old.cancel()
                    delay = max(0.0, (e.at_us - now_us()) / 1e6)
                    self._timers[e.key] = loop.call_later(delay, self._fire, e.key)
                case ss.SubmitFinalize():
                    if not self._finalizing:
                        loop.call_soon(self._submit_finalize)
                    self._finalizing.append((e.pending_id, e.signature))
                case ss.Misbehaviour():
                    self.misbehaviour.append((e.accused, e.reason))
                    log.warning("validator %d misbehaved: %s", e.accused, e.reason,
                                extra={"event": "misbehaviour", "fields": {"accused": e.accused, "reason": e.reason}})
                case _:
                    assert_never(e)

    def _submit_finalize(self) -> None:
        """The signatures aggregated during one loop iteration, ordered as one `finalize_batch`: the
        per-request costs (two signatures, their checks on every replica) are paid once for all."""
        items, self._finalizing = self._finalizing, []
        if self.node.halted is None:
            for command in cacommands.finalize_batch_commands(items):
                self.node.background(self._submit_quietly(tcapp.CA, command))

    def _fire(self, key: ss.TimerKey) -> None:
        self._timers.pop(key, None)
        if self.node.halted is None:
            self.apply(self.service.on_timer(key, now_us()))

    async def _submit_quietly(self, target: str, payload: bytes) -> None:
        with contextlib.suppress(Exception):
            await self.node.submit(target, payload, timeout_s=30.0)
