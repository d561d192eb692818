"""UDP worker processes: more cores for the authoritative fast path.

Python answers on one core per process. With `dns.workers = N` (or `dns serve --workers N`) the
serving process binds its UDP socket with SO_REUSEPORT and starts N - 1 worker processes bound to the
same address; the kernel spreads clients over the N sockets by 4-tuple hash.

A worker holds only a copy of the answer table (`trustchain.dns.answer_table`), never zones or keys. It
answers what the table holds and passes every other datagram (updates, cookies, NXDOMAIN not seen
yet, truncation...) to the serving process over its pipe, which answers it exactly as one of its own
datagrams (same handler, same RRL) and hands the response back for the worker to send. The serving
process sends an empty table the moment a zone changes (before the change's result goes out) and the
new table once it is precomputed, and the worker reads its pipe before each burst of datagrams: a
worker never answers from a table older than the last change.

The pipe carries pickled tuples between a process and its own children (nothing from the network is
unpickled: client datagrams travel as bytes inside them). A worker that dies is logged and restarted
(at most `MAX_RESTARTS` times a minute, then reported and left down); closing the pool stops them all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import multiprocessing
import multiprocessing.connection
import os
import pickle
import selectors
import socket
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from trustchain.dns.answer_table import AnswerTable
from trustchain.dns.authority import Authority

if TYPE_CHECKING:
    from reference_node.dns.server import DNSServer

__all__ = ["MAX_PENDING", "MAX_RESTARTS", "MAX_WORKERS", "TableDriver", "WorkerPool", "WorkerStats", "worker_main"]

log = logging.getLogger("trustchain.node")
EDNS_UDP = 1232  # as `reference_node.dns.server.EDNS_UDP` (not imported: workers stay light to start)
MAX_QUERY = 4096
BATCH = 64
MAX_PENDING = 1024  # datagrams a worker has passed on and waits for; the oldest is forgotten beyond this
MAX_RESTARTS = 5  # per minute, per worker
MAX_LEARNT_ENTRIES = 65536  # entries a worker takes between two tables (answers its node rendered on demand)
LEARNT_S = 1.0  # how often entries the serving process rendered on demand are passed on
MAX_WORKERS = 64  # processes per listener (config and CLI limit)
REPORT_S = 1.0
MEMO_BYTES = 8 * 1024 * 1024  # a worker's memo of exact queries (`AnswerTable.lookup`)
QUIET_S = 0.5  # zones unchanged this long get their answers precomputed (`TableDriver`)
Forward = Callable[[bytes, str, Callable[[bytes], None]], None]  # (datagram, client, send) in the server


# --- the worker process ---------------------------------------------------------------------------------


def worker_main(conn: multiprocessing.connection.Connection, host: str, port: int) -> None:
    """Entry point of a worker process: serve UDP on host:port (SO_REUSEPORT) until told to stop or the
    serving process goes away."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4 * 1024 * 1024)
    if family == socket.AF_INET6:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 0)
    try:
        sock.bind((host, port))
    except OSError as exc:
        conn.send_bytes(pickle.dumps(("error", f"cannot listen on {host}:{port}/udp: {exc.strerror or exc}")))
        return
    sock.setblocking(False)
    conn.send_bytes(pickle.dumps(("ready", os.getpid())))
    _Worker(conn, sock).run()


class _Worker:
    def __init__(self, conn: multiprocessing.connection.Connection, sock: socket.socket) -> None:
        self.conn, self.sock = conn, sock
        self.table = AnswerTable(None, MEMO_BYTES, memo_limit=EDNS_UDP)
        self.table.valid_until = -1  # nothing is served before the first table arrives
        self.pending: dict[int, Any] = {}
        self.limit = 0  # entries held at most: the table given plus MAX_LEARNT_ENTRIES learnt later
        self.token = 0
        self.answered = self.forwarded = self.dropped = 0

    def run(self) -> None:
        sel = selectors.DefaultSelector()
        sel.register(self.sock, selectors.EVENT_READ)
        sel.register(self.conn, selectors.EVENT_READ)
        next_report = time.monotonic() + REPORT_S
        while True:
            sel.select(REPORT_S)
            if not self._control():
                return
            self._serve()
            if time.monotonic() >= next_report:
                next_report = time.monotonic() + REPORT_S
                self._send(("count", self.answered, self.forwarded, self.dropped))
                self.answered = self.forwarded = self.dropped = 0

    def _control(self) -> bool:
        """Apply every message waiting on the pipe; False when the worker must stop."""
        conn = self.conn
        try:
            while conn.poll():
                msg = pickle.loads(conn.recv_bytes())
                kind = msg[0]
                if kind == "table":
                    self.table.install(msg[1], msg[2])
                    self.limit = len(msg[1]) + MAX_LEARNT_ENTRIES
                elif kind == "add":
                    self.table.add(msg[1], self.limit)
                elif kind == "answer":
                    addr = self.pending.pop(msg[1], None)
                    if addr is not None:
                        with contextlib.suppress(OSError):
                            self.sock.sendto(msg[2], addr)
                elif kind == "stop":
                    return False
        except (EOFError, OSError):  # the serving process is gone
            return False
        return True

    def _serve(self) -> None:
        recvfrom, sendto, lookup = self.sock.recvfrom, self.sock.sendto, self.table.lookup
        now = int(time.time())
        answered = 0
        for _ in range(BATCH):
            try:
                data, addr = recvfrom(MAX_QUERY + 1)
            except (BlockingIOError, InterruptedError):
                break
            except OSError:
                continue
            response = lookup(data, EDNS_UDP, now)
            if response is not None:
                with contextlib.suppress(OSError):
                    sendto(response, addr)
                    answered += 1
                continue
            self.token = (self.token + 1) & 0xFFFFFFFF
            if len(self.pending) >= MAX_PENDING:
                self.pending.pop(next(iter(self.pending)))
                self.dropped += 1
            self.pending[self.token] = addr
            self.forwarded += 1
            self._send(("query", self.token, data, str(addr[0])))
        self.answered += answered

    def _send(self, msg: tuple[Any, ...]) -> None:
        with contextlib.suppress(OSError):
            self.conn.send_bytes(pickle.dumps(msg))


# --- the serving process's side -----------------------------------------------------------------------


@dataclass
class WorkerStats:
    answered: int = 0  # by workers from their table
    forwarded: int = 0  # passed to the serving process
    dropped: int = 0  # forgotten while waiting (MAX_PENDING)
    restarts: int = 0
    deaths: int = 0
    pushes: int = 0
    pids: list[int] = field(default_factory=list)


class _Handle:
    def __init__(self, index: int) -> None:
        self.index = index
        self.process: Any = None
        self.conn: multiprocessing.connection.Connection | None = None
        self.ready: asyncio.Future[int] | None = None
        self.restarts: list[float] = []
        self.given_up = False


class WorkerPool:
    """`count` worker processes on host:port (the serving process's own socket makes one more)."""

    def __init__(self, count: int, host: str, port: int, table: Callable[[], AnswerTable | None],
                 forward: Forward, on_answered: Callable[[int], None] | None = None) -> None:
        """`table`: the serving process's current answer table (looked up each time: the node's may be
        replaced); `forward`: answers a datagram a worker passed on, calling `send` with the response."""
        if count < 0:
            raise ValueError("count must be >= 0")
        self.host, self.port = host, port
        self.table, self.forward, self.on_answered = table, forward, on_answered
        self.stats = WorkerStats()
        self._workers = [_Handle(i) for i in range(count)]
        self._ctx = multiprocessing.get_context("spawn")  # never fork an event loop with threads
        self._supervisor: asyncio.Task[None] | None = None
        self._closing = False

    async def start(self, timeout: float = 60.0) -> None:
        """Start every worker and give it the current table; OSError when one cannot bind."""
        for handle in self._workers:
            self._spawn(handle)
        for handle in self._workers:
            assert handle.ready is not None
            await asyncio.wait_for(handle.ready, timeout)
        self.push()
        self._supervisor = asyncio.get_running_loop().create_task(self._supervise())

    def _spawn(self, handle: _Handle) -> None:
        loop = asyncio.get_running_loop()
        parent, child = self._ctx.Pipe(duplex=True)
        handle.process = self._ctx.Process(target=worker_main, args=(child, self.host, self.port), daemon=True,
                                           name=f"trustchain-dns-worker-{handle.index}")
        handle.process.start()
        child.close()
        handle.conn = parent
        handle.ready = loop.create_future()
        loop.add_reader(parent.fileno(), self._readable, handle)
        os.set_blocking(parent.fileno(), True)  # libuv makes a watched fd non-blocking; pipe messages need whole writes

    def _readable(self, handle: _Handle) -> None:
        conn = handle.conn
        if conn is None:
            return
        try:
            while conn.poll():
                msg = pickle.loads(conn.recv_bytes())
                self._on_message(handle, msg)
        except (EOFError, OSError):
            self._detach(handle)

    def _on_message(self, handle: _Handle, msg: tuple[Any, ...]) -> None:
        kind = msg[0]
        if kind == "query":
            token, data, client = msg[1], msg[2], msg[3]
            self.forward(data, client, lambda response: self._send(handle, ("answer", token, response)))
        elif kind == "count":
            self.stats.answered += msg[1]
            self.stats.forwarded += msg[2]
            self.stats.dropped += msg[3]
            if self.on_answered is not None and msg[1]:
                self.on_answered(msg[1])
        elif kind == "ready" and handle.ready is not None and not handle.ready.done():
            handle.ready.set_result(msg[1])
        elif kind == "error" and handle.ready is not None and not handle.ready.done():
            handle.ready.set_exception(OSError(msg[1]))

    def _detach(self, handle: _Handle) -> None:
        if handle.conn is not None:
            with contextlib.suppress(Exception):
                asyncio.get_running_loop().remove_reader(handle.conn.fileno())
            handle.conn.close()
            handle.conn = None

    def _send(self, handle: _Handle, msg: tuple[Any, ...], blob: bytes | None = None) -> None:
        if handle.conn is None:
            return
        try:
            handle.conn.send_bytes(blob if blob is not None else pickle.dumps(msg))
        except OSError:
            self._detach(handle)

    # --- the table ----------------------------------------------------------------------------------

    def invalidate(self) -> None:
        """A zone changed: workers stop answering from their table now (everything goes to the serving
        process until `push`). Small enough to send synchronously from the change itself."""
        blob = pickle.dumps(("table", {}, -1))
        for handle in self._workers:
            self._send(handle, (), blob)

    def push(self) -> None:
        """Give every worker the serving process's current table."""
        blob = pickle.dumps(self._table_message())
        self.stats.pushes += 1
        for handle in self._workers:
            self._send(handle, (), blob)

    # --- supervision --------------------------------------------------------------------------------

    def share_learned(self) -> None:
        """Pass on the answers the serving process rendered on demand (NXDOMAIN, NODATA...) since the last
        call, so that workers stop forwarding those questions."""
        table = self.table()
        learned = table.take_learned() if table is not None else {}
        if learned:
            blob = pickle.dumps(("add", learned))
            for handle in self._workers:
                self._send(handle, (), blob)

    async def _supervise(self) -> None:
        while not self._closing:
            await asyncio.sleep(LEARNT_S)
            self.share_learned()
            for handle in self._workers:
                if handle.given_up or handle.process is None or handle.process.is_alive() or self._closing:
                    continue
                self.stats.deaths += 1
                self._detach(handle)
                now = time.monotonic()
                handle.restarts = [t for t in handle.restarts if now - t < 60] + [now]
                if len(handle.restarts) > MAX_RESTARTS:
                    handle.given_up = True
                    log.error("DNS worker %d died (exit code %s) too often; not restarted", handle.index,
                              handle.process.exitcode, extra={"event": "dns_worker_given_up"})
                    continue
                log.warning("DNS worker %d died (exit code %s); restarting", handle.index, handle.process.exitcode,
                            extra={"event": "dns_worker_restart"})
                self.stats.restarts += 1
                try:
                    self._spawn(handle)
                    assert handle.ready is not None
                    await asyncio.wait_for(handle.ready, 60)
                    self._send(handle, self._table_message())
                except (OSError, TimeoutError) as exc:
                    log.error("DNS worker %d did not restart: %s", handle.index, exc,
                              extra={"event": "dns_worker_failed"})

    def _table_message(self) -> tuple[Any, ...]:
        table = self.table()
        return ("table", {}, -1) if table is None else ("table", table.export(), table.valid_until)

    def pids(self) -> list[int]:
        return [h.process.pid for h in self._workers if h.process is not None and h.process.is_alive()]

    async def close(self) -> None:
        self._closing = True
        if self._supervisor is not None:
            self._supervisor.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._supervisor
        for handle in self._workers:
            self._send(handle, ("stop",))
        for handle in self._workers:
            proc = handle.process
            if proc is None:
                continue
            for _ in range(50):
                if not proc.is_alive():
                    break
                await asyncio.sleep(0.05)
            if proc.is_alive():
                proc.terminate()
                await asyncio.get_running_loop().run_in_executor(None, proc.join, 5)
            self._detach(handle)


class TableDriver:
    """Keeps an authority's answer table precomputed after changes, in slices between other work, the
    workers' copies current and `server`'s UDP fast path bound to the current authority's table:
    `changed` is the authority's change listener.

    The precompute waits until the zones have been quiet for `quiet_s`: re-rendering every answer of a
    zone is worth it for a zone that then stays put, not for one that changes many times a second (ACME
    challenges under load), whose answers the table renders on their first query instead."""

    def __init__(self, authority: Callable[[], Authority], pool: WorkerPool | None = None,
                 server: DNSServer | None = None, slice_size: int = 128, quiet_s: float = QUIET_S) -> None:
        self.authority, self.pool, self.server, self.slice_size = authority, pool, server, slice_size
        self.quiet_s = quiet_s
        self._loop = asyncio.get_running_loop()
        self._scheduled = False
        self._last_change = float("-inf")

    def changed(self) -> None:
        """Synchronous, inside the change: workers stop using their copy now; the precompute follows."""
        if self.server is not None:
            table = self.authority().table
            self.server.fast = table.lookup if table is not None else None
        if self.pool is not None:
            self.pool.invalidate()
        self._last_change = self._loop.time()
        if not self._scheduled:
            self._scheduled = True
            self._loop.call_soon(self._step)

    def _step(self) -> None:
        wait = self._last_change + self.quiet_s - self._loop.time()
        if wait > 0:  # still changing: look again once it may have settled
            self._loop.call_later(wait, self._step)
            return
        if self.authority().precompute(self.slice_size):
            self._loop.call_soon(self._step)
            return
        self._scheduled = False
        if self.pool is not None:
            self.pool.push()
