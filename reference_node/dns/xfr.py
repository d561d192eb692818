"""Zone transfers out (AXFR, IXFR) on the node's TCP and DoQ listeners, and NOTIFY to the zones' secondaries.

The rules are in `trustchain.dns.transfer`; this module does the I/O around them. A transfer is answered
only when its TSIG verifies with a key of the node-local keyring (`<storage.path>/tsig-keys.json`, the
one RFC 2136 updates use) made for that zone, and the zone's owner granted that key name transfers in
replicated state. Every message of the answer is TSIG-signed (RFC 8945 section 5.3.1).

Answers: REFUSED for an unsigned request, for a key made for another zone, for a key the owner did not
grant, or when `MAX_CONCURRENT` transfers are running; NOTAUTH for an unknown key, a bad signature or
time, or a zone this cluster does not serve; FORMERR for an IXFR without the client's SOA.

NOTIFY (RFC 1996): every `interval_s` the node compares the serial of each zone with grants against the
serial it last announced, and for each grant whose key its keyring holds for that zone, sends a NOTIFY
signed with that key to the grant's addresses over UDP, retried until answered (`NOTIFY_TRIES`). Only
nodes whose operator holds the key send: an owner cannot make every validator send packets anywhere.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass

import dns.asyncquery
import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.rdatatype
import dns.tsig

from reference_node.dns.tsig import Keyring
from trustchain.dns.app import DNSApplication
from trustchain.dns.transfer import answer_transfer

__all__ = ["NOTIFY_TRIES", "TransferCounters", "ZoneTransfers", "is_transfer"]

log = logging.getLogger("trustchain.node")
Rcode = dns.rcode.Rcode
MAX_CONCURRENT = 4  # transfers being sent at once; a zone transfer can be large
NOTIFY_TRIES = 5
NOTIFY_TIMEOUT_S = 2.0
MAX_NOTIFYING = 16  # NOTIFY exchanges in flight at once
_XFR_TYPES = (int(dns.rdatatype.AXFR), int(dns.rdatatype.IXFR))


def is_transfer(wire: bytes) -> bool:
    """Whether `wire` is a query (opcode QUERY) with one question of type AXFR or IXFR, read from the
    header and question alone (the message is parsed, and its TSIG checked, only when it is)."""
    if len(wire) < 17 or wire[2] & 0xF8 or wire[4:6] != b"\0\1":
        return False
    pos = 12
    while pos < len(wire) and wire[pos]:
        if wire[pos] & 0xC0:
            return False
        pos += wire[pos] + 1
    return pos + 3 <= len(wire) and int.from_bytes(wire[pos + 1:pos + 3], "big") in _XFR_TYPES


@dataclass
class TransferCounters:
    axfr: int = 0
    ixfr: int = 0  # incremental answers from the journal
    ixfr_full: int = 0  # IXFR answered with the whole zone: the journal did not reach the client's serial
    ixfr_current: int = 0  # the client was up to date
    refused: int = 0
    notifies_sent: int = 0
    notifies_answered: int = 0


class ZoneTransfers:
    def __init__(self, dns_app: Callable[[], DNSApplication], keyring: Keyring, *, interval_s: float = 1.0,
                 clock: Callable[[], float] = time.time) -> None:
        """`dns_app` returns the replicated DNS application (read at each use: a restore replaces its state)."""
        self.dns_app = dns_app
        self.keyring = keyring
        self.interval_s = interval_s
        self.clock = clock
        self.counters = TransferCounters()
        self._running = 0
        self._announced: dict[tuple[dns.name.Name, dns.name.Name, tuple[str, int]], int] = {}
        self._notifying: set[asyncio.Task[None]] = set()
        self._task: asyncio.Task[None] | None = None

    # --- transfers out ----------------------------------------------------------------------------------

    def _key(self, message: dns.message.Message, name: dns.name.Name) -> dns.tsig.Key | None:
        key = self.keyring.current().get(name.canonicalize())
        return key.dns_key() if key is not None else None

    async def handle(self, wire: bytes, client: str) -> AsyncIterator[bytes]:
        """The messages answering one AXFR or IXFR request, in order (nothing: close the connection)."""
        try:
            query = dns.message.from_wire(wire, keyring=self._key)
        except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm,
                dns.tsig.PeerError) as exc:
            yield self._refuse(wire, Rcode.NOTAUTH, client, f"TSIG not accepted ({exc})")
            return
        except Exception:  # dnspython raises many types on hostile input
            yield self._refuse(wire, Rcode.FORMERR, client, "malformed")
            return
        reason = self._refusal(query)
        if reason is not None:
            yield self._refuse(wire, reason[0], client, reason[1], query)
            return
        app = self.dns_app()
        origin = query.question[0].name.canonicalize()
        st = app.zones.get(origin)
        answer = answer_transfer(query, st.signed if st else None, app.journals.get(origin), int(self.clock()))
        if answer.rcode != Rcode.NOERROR:
            yield self._refuse(wire, answer.rcode, client, "cannot transfer", query)
            return
        setattr(self.counters, answer.kind.replace("-", "_"), getattr(self.counters, answer.kind.replace("-", "_")) + 1)
        log.info("zone transfer of %s to %s (key %s): %s serial %d, %d messages", origin, client, query.keyname,
                 answer.kind, st.signed.serial if st else 0, len(answer.messages),
                 extra={"event": "dns_transfer", "fields": {"zone": origin.to_text(), "client": client,
                                                            "kind": answer.kind}})
        self._running += 1
        try:
            ctx = None
            for i, rrsets in enumerate(answer.messages):
                response = dns.message.make_response(query)  # signed with the request's key
                if i:
                    response.question = []  # RFC 5936 section 2.2: the question only in the first message
                response.flags |= dns.flags.AA
                response.answer = list(rrsets)
                yield response.to_wire(max_size=65535, multi=True, tsig_ctx=ctx)  # not the client's EDNS size
                ctx = response.tsig_ctx
        finally:
            self._running -= 1

    def _refusal(self, query: dns.message.Message) -> tuple[int, str] | None:
        if not query.had_tsig or query.keyname is None:
            return Rcode.REFUSED, "not TSIG-signed"
        if len(query.question) != 1:
            return Rcode.FORMERR, "not one question"
        origin = query.question[0].name.canonicalize()
        key = self.keyring.current().get(query.keyname.canonicalize())
        app = self.dns_app()
        if origin not in app.zones:
            return Rcode.NOTAUTH, f"{origin} is not served here"
        if key is None or dns.name.from_text(key.zone) != origin:
            return Rcode.REFUSED, f"key {query.keyname} is not for zone {origin}"
        if not app.transfers.allowed(origin, query.keyname):
            return Rcode.REFUSED, f"the owner of {origin} did not allow transfers with key {query.keyname}"
        if self._running >= MAX_CONCURRENT:
            return Rcode.REFUSED, "too many transfers running"
        return None

    def _refuse(self, wire: bytes, rcode: int, client: str, reason: str,
                query: dns.message.Message | None = None) -> bytes:
        self.counters.refused += 1
        log.info("zone transfer refused to %s: %s (%s)", client, Rcode(rcode).name, reason,
                 extra={"event": "dns_transfer_refused", "fields": {"client": client, "rcode": Rcode(rcode).name,
                                                                    "reason": reason}})
        if query is not None:  # signed with the client's key when its TSIG verified
            response = dns.message.make_response(query)
            response.set_rcode(Rcode(rcode))
            return response.to_wire()
        try:
            plain = dns.message.make_response(dns.message.from_wire(wire, keyring=False))
            plain.tsig = None
            plain.set_rcode(Rcode(rcode))
            return plain.to_wire()
        except Exception:  # dnspython raises many types on hostile input
            header = bytearray(wire[:12]) if len(wire) >= 12 else bytearray(12)
            header[2] = 0x80 | (header[2] & 0x78)
            header[3] = rcode & 0x0F
            header[4:12] = bytes(8)
            return bytes(header)

    # --- NOTIFY -------------------------------------------------------------------------------------

    def start(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._notify_loop(), name="dns-notify")

    async def close(self) -> None:
        tasks = [t for t in (self._task, *self._notifying) if t is not None]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(BaseException):
                await task

    async def _notify_loop(self) -> None:
        while True:
            try:
                self.notify_changed()
            except Exception:  # a bug here must not stop the next round
                log.exception("NOTIFY round failed", extra={"event": "dns_notify_failed"})
            await asyncio.sleep(self.interval_s)

    def notify_changed(self) -> int:
        """Start a NOTIFY for each (zone, key, address) whose serial was not announced yet; how many started."""
        app, keys = self.dns_app(), self.keyring.current()
        started = 0
        for origin in app.transfers.zones():
            st = app.zones.get(origin)
            if st is None:
                continue
            for grant in app.transfers.for_zone(origin):
                key = keys.get(grant.key_name)
                if key is None or dns.name.from_text(key.zone) != origin:
                    continue
                for target in grant.notify:
                    slot = (origin, grant.key_name, target)
                    if self._announced.get(slot) == st.signed.serial or len(self._notifying) >= MAX_NOTIFYING:
                        continue
                    self._announced[slot] = st.signed.serial
                    task = asyncio.get_running_loop().create_task(
                        self._notify(origin, st.signed.serial, key.dns_key(), target))
                    self._notifying.add(task)
                    task.add_done_callback(self._notifying.discard)
                    started += 1
        return started

    async def _notify(self, origin: dns.name.Name, serial: int, key: dns.tsig.Key, target: tuple[str, int]) -> None:
        soa = self.dns_app().zones[origin].signed.rrsets[(origin, dns.rdatatype.SOA)]
        for attempt in range(NOTIFY_TRIES):
            message = dns.message.make_query(origin, dns.rdatatype.SOA)
            message.set_opcode(dns.opcode.NOTIFY)
            message.flags = (message.flags & ~dns.flags.RD) | dns.flags.AA  # the opcode lives in the flags too
            message.answer.append(soa)  # RFC 1996 section 3.7: the new SOA, a hint
            message.use_tsig(key)
            self.counters.notifies_sent += 1
            try:
                response = await dns.asyncquery.udp(message, target[0], timeout=NOTIFY_TIMEOUT_S, port=target[1])
            except (dns.exception.DNSException, OSError) as exc:
                log.debug("NOTIFY of %s serial %d to %s: %s (try %d)", origin, serial, target, exc, attempt + 1)
                await asyncio.sleep(NOTIFY_TIMEOUT_S * attempt)
                continue
            self.counters.notifies_answered += 1
            log.info("NOTIFY of %s serial %d to %s:%d: %s", origin, serial, *target, Rcode(response.rcode()).name,
                     extra={"event": "dns_notify", "fields": {"zone": origin.to_text(), "serial": serial,
                                                              "target": f"{target[0]}:{target[1]}"}})
            return
        log.warning("NOTIFY of %s serial %d to %s:%d: no answer after %d tries", origin, serial, *target,
                    NOTIFY_TRIES, extra={"event": "dns_notify_unanswered"})
