"""The asyncio driver of this validator's share of certificate serial randomness.

`trustchain.ca.serials.Contributor` decides what to order: fresh commitments when the replicated CA holds
too few of ours, and our values for commitments assigned to requests whose draw is complete. This module
carries that out: values come from the OS CSPRNG, are written to `<storage.path>/serial-values.json`
(mode 0600, fsynced, replaced atomically) *before* their commitments are ordered, so that a restarted node
can still reveal them, and commitments and reveals are ordered as this validator's signed writes (only
validators may order them). One command of each kind is in flight at a time, and each carries everything
that is due when it is sent (up to 64 values): under load one reveal command serves many draws. The file is
rewritten only with fresh values, not after each reveal (values already revealed or burnt are public or
useless, so keeping them on disk a little longer costs nothing). While a draw is past its
reveal deadline the node orders an empty commitment, so that the replicated CA redraws it even when
nothing else is being ordered.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import os
import secrets
from collections.abc import Coroutine
from pathlib import Path
from typing import TYPE_CHECKING, Any

from reference_node.clock import now_us
from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.ca.serials import Contributor

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["VALUES_FILE", "SerialDriver"]

log = logging.getLogger("trustchain.node")

VALUES_FILE = "serial-values.json"
TICK_S = 2.0


def _load(path: Path) -> dict[bytes, bytes]:
    try:
        doc = json.loads(path.read_text())
        return {bytes.fromhex(k): bytes.fromhex(v) for k, v in doc.items()}
    except FileNotFoundError:
        return {}
    except (OSError, ValueError, AttributeError) as exc:
        log.warning("%s unreadable (%s): its serial values are lost, their draws will be redrawn", path, exc)
        return {}


def _store(path: Path, values: dict[bytes, bytes]) -> None:
    tmp = path.with_suffix(".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as fh:
        json.dump({k.hex(): v.hex() for k, v in values.items()}, fh)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)


class SerialDriver:
    """Orders this validator's commitments and reveals for `node` (validator index `node.id`)."""

    def __init__(self, node: Node) -> None:
        self.node = node
        self.path = node.config.storage.path / VALUES_FILE
        self.contributor = Contributor(node.id, secrets.token_bytes)
        self.contributor.values = _load(self.path)
        self._commit: asyncio.Task[None] | None = None
        self._reveal: asyncio.Task[None] | None = None
        self.commits = self.reveals = 0
        self.closed = False

    def close(self) -> None:
        """The node is stopping: order nothing more."""
        self.closed = True

    @property
    def enabled(self) -> bool:
        return self.node.app.ca.serials.enabled

    def sync(self) -> None:
        """After every execution: reveal what is due, top up commitments (values on disk first)."""
        node = self.node
        if not self.enabled or node.halted is not None or self.closed:
            return
        state = node.app.ca.serials
        self.contributor.forget(state)
        if self._reveal is None:
            due = self.contributor.reveals(state)
            if due:
                self._reveal = self._spawn(self._order(cacommands.serial_reveal_command(due), "reveal"))
        if self._commit is None:
            fresh = self.contributor.new_commitments(state)
            if fresh:  # durable before ordered; the file drops forgotten values then too (they are public or dead)
                _store(self.path, self.contributor.values)
                self._commit = self._spawn(self._order(cacommands.serial_commit_command(fresh), "commit"))

    async def ticker(self) -> None:
        """Keeps draws moving when nothing else is ordered: an overdue reveal deadline needs an ordered
        command for the replicated CA to redraw."""
        while True:
            await asyncio.sleep(TICK_S)
            if not self.enabled or self.node.halted is not None:
                continue
            deadline = self.node.app.ca.serials.next_deadline()
            if deadline is not None and now_us() > deadline and self._commit is None:
                self._commit = self._spawn(self._order(cacommands.serial_commit_command([]), "commit"))
            self.sync()

    def _spawn(self, coro: Coroutine[Any, Any, None]) -> asyncio.Task[None]:
        task = asyncio.create_task(coro, name="serial-randomness")
        self.node.track(task)
        return task

    async def _order(self, payload: bytes, kind: str) -> None:
        try:
            raw = await self.node.submit(tcapp.CA, payload, timeout_s=30.0)
            res = tcapp.decode_routed(raw, cacommands.decode_result)
            if isinstance(res, tcapp.RouteError) or not res.ok:
                log.warning("serial %s refused: %s", kind, res.detail, extra={"event": "serial_randomness"})
            elif kind == "commit":
                self.commits += 1
            else:
                self.reveals += 1
        except Exception as exc:  # retried at the next sync
            log.warning("serial %s not ordered: %s", kind, exc, extra={"event": "serial_randomness"})
        finally:
            if kind == "commit":
                self._commit = None
            else:
                self._reveal = None
            if not self.closed:
                with contextlib.suppress(RuntimeError):
                    self.sync()
