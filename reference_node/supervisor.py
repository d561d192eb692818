"""Supervise a local cluster's node processes: restart one that crashes, stop all of them together.

What `python -m reference_node cluster start` runs. A node that dies (a crash, `kill -9`) is restarted
after a back-off and reported; the others keep running, since a BFT cluster is built to ride out the
loss of a node. A node that exits with status 2 (its configuration, genesis or data directory is wrong)
is not restarted: it would only fail again. SIGTERM or SIGINT stops every node and waits for it, and on
Linux each node also receives SIGTERM if the supervisor itself dies, so no node is ever orphaned.
"""

from __future__ import annotations

import contextlib
import ctypes
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import IO

__all__ = ["ManagedNode", "RestartPolicy", "Supervisor"]

FATAL_EXIT = 2  # the node's own "configuration error" status: restarting cannot help
_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    """Ask the kernel to send SIGTERM to this process when its parent (the supervisor) dies."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


@dataclass(frozen=True)
class RestartPolicy:
    """Back-off doubles from `first_delay_s` to `max_delay_s`; more than `max_restarts` within
    `window_s` means the node is crash-looping and is left down (reported)."""

    first_delay_s: float = 1.0
    max_delay_s: float = 30.0
    max_restarts: int = 10
    window_s: float = 300.0


@dataclass
class ManagedNode:
    name: str
    command: list[str]
    log: Path
    proc: subprocess.Popen[bytes] | None = None
    restarts: list[float] = field(default_factory=list)  # monotonic times of recent restarts
    restart_at: float | None = None
    given_up: bool = False


class Supervisor:
    def __init__(self, nodes: Sequence[ManagedNode], policy: RestartPolicy | None = None, *,
                 report: Callable[[str], None] | None = None, poll_s: float = 0.2) -> None:
        self.nodes = list(nodes)
        self.policy = policy or RestartPolicy()
        self.report = report or (lambda line: print(line, file=sys.stderr, flush=True))
        self.poll_s = poll_s
        self.stopping = False
        self._logs: list[IO[bytes]] = []

    def start(self, node: ManagedNode) -> None:
        log = open(node.log, "ab")  # noqa: SIM115 - kept open while the process lives
        self._logs.append(log)
        node.proc = subprocess.Popen(node.command, stdout=log, stderr=subprocess.STDOUT,
                                     preexec_fn=_die_with_parent if sys.platform == "linux" else None)
        node.restart_at = None

    def _on_exit(self, node: ManagedNode, code: int, now: float) -> None:
        if code == FATAL_EXIT:
            node.given_up = True
            self.report(f"{node.name} exited with status {code} (configuration, genesis or data directory "
                        f"error; see {node.log}); not restarting it")
            return
        node.restarts = [t for t in node.restarts if t > now - self.policy.window_s]
        if len(node.restarts) >= self.policy.max_restarts:
            node.given_up = True
            self.report(f"{node.name} exited with status {code} and restarted {len(node.restarts)} times in "
                        f"{self.policy.window_s:.0f} s; leaving it down (see {node.log})")
            return
        delay = min(self.policy.max_delay_s, self.policy.first_delay_s * 2 ** len(node.restarts))
        node.restarts.append(now)
        node.restart_at = now + delay
        self.report(f"{node.name} exited with status {code}; restarting it in {delay:.0f} s")

    def step(self, now: float) -> None:
        """Notice exits and start nodes whose back-off is over."""
        for node in self.nodes:
            if node.given_up:
                continue
            if node.proc is not None and node.restart_at is None:
                code = node.proc.poll()
                if code is not None:
                    node.proc = None
                    self._on_exit(node, code, now)
            if node.restart_at is not None and now >= node.restart_at:
                self.start(node)
                self.report(f"{node.name} restarted (pid {node.proc.pid if node.proc else '?'})")

    def _signalled(self, signum: int, frame: FrameType | None) -> None:
        self.stopping = True

    def run(self) -> int:
        """Start every node and supervise until SIGTERM/SIGINT (then 0) or until every node is given up (1)."""
        previous = {s: signal.signal(s, self._signalled) for s in (signal.SIGTERM, signal.SIGINT)}
        try:
            for node in self.nodes:
                self.start(node)
            while not self.stopping:
                self.step(time.monotonic())
                if all(n.given_up for n in self.nodes):
                    self.report("every node is down; stopping")
                    return 1
                time.sleep(self.poll_s)
            return 0
        finally:
            self.stop()
            for s, handler in previous.items():
                signal.signal(s, handler)

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM every node, wait up to `grace_s`, then SIGKILL what is left."""
        live = [n.proc for n in self.nodes if n.proc is not None and n.proc.poll() is None]
        for p in live:
            p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace_s
        for p in live:
            try:
                p.wait(max(0.0, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait(5)
        for log in self._logs:
            log.close()
        self._logs.clear()
