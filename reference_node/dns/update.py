"""RFC 2136 dynamic updates on the node's DNS listener: TSIG in, an ordered delegated update out.

This module only does the I/O around `trustchain.dns.dynamic_update`: it verifies TSIG with the node-local
keyring (dnspython; the check reads the clock), asks the translation for the update, checks that this
node holds a live delegation for the zone and key (so an honest node never orders what the replicas would
refuse), orders the update signed by its validator account, and answers once its replica executed it,
with the response code the replicated result carries, TSIG-signed with the client's key.

Answers: REFUSED for an unsigned update; NOTAUTH for an unknown key, a bad signature or a time outside
the fudge (RFC 8945); NOTAUTH for a zone this cluster does not serve; REFUSED for a key that is not for
the zone, a zone with no delegation to this node under that key, or an update outside the delegation;
the RFC 2136 codes for prerequisites; SERVFAIL when the update was not ordered in time.

A signed request seen again (a UDP retransmission, or a replay within the TSIG time window) gets the
answer of the first one and is not ordered twice.
"""

from __future__ import annotations

import asyncio
import collections
import logging
import time
from typing import TYPE_CHECKING

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.opcode
import dns.rcode
import dns.tsig
import dns.update

from reference_node.dns.tsig import Keyring, TSIGKey
from trustchain.app import trustchain as tcapp
from trustchain.dns import app as dnsapp
from trustchain.dns.delegation import check_scope
from trustchain.dns.dynamic_update import Refusal, UpdateRefused, translate
from trustchain.errors import TrustChainError

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["DynamicUpdates"]

log = logging.getLogger("trustchain.node")
Rcode = dns.rcode.Rcode
MAX_INFLIGHT = 16  # updates being ordered at once; more are answered SERVFAIL (clients retry)
MAX_INFLIGHT_PER_KEY = 4  # so that one key's holder cannot take every slot
SEEN_FOR_S = 600.0  # longer than any TSIG fudge a client uses (300 s): a replay after it fails the time check
MAX_SEEN = 4096
ORDER_TIMEOUT_S = 20.0


class DynamicUpdates:
    def __init__(self, node: Node, keyring: Keyring, *, order_timeout_s: float = ORDER_TIMEOUT_S) -> None:
        self.node = node
        self.keyring = keyring
        self.order_timeout_s = order_timeout_s
        self._inflight = 0
        self._inflight_by_key: collections.Counter[str] = collections.Counter()
        self._seen: collections.OrderedDict[bytes, tuple[float, asyncio.Future[bytes]]] = collections.OrderedDict()

    def _keyring(self, message: dns.message.Message, name: dns.name.Name) -> dns.tsig.Key | None:
        key = self.keyring.current().get(name.canonicalize())
        return key.dns_key() if key is not None else None

    async def handle(self, wire: bytes, client: str, transport: str) -> bytes:
        """The response to one UPDATE message (b"" for nothing to send)."""
        try:
            message = dns.message.from_wire(wire, keyring=self._keyring, one_rr_per_rrset=True)
        except (dns.message.UnknownTSIGKey, dns.tsig.BadSignature, dns.tsig.BadTime, dns.tsig.BadAlgorithm,
                dns.tsig.PeerError) as exc:
            log.info("dynamic update from %s: TSIG not accepted (%s)", client, exc)
            return _unsigned(wire, Rcode.NOTAUTH)
        except Exception:  # dnspython raises many types on hostile input
            return _unsigned(wire, Rcode.FORMERR)
        if not message.had_tsig:
            return _unsigned(wire, Rcode.REFUSED)
        assert message.mac is not None
        mac = bytes(message.mac)
        now = time.monotonic()
        self._forget(now)
        seen = self._seen.get(mac)
        if seen is not None:
            return await asyncio.shield(seen[1])
        future: asyncio.Future[bytes] = asyncio.get_running_loop().create_future()
        self._seen[mac] = (now + SEEN_FOR_S, future)
        try:
            response = await self._respond(message, client)
        except BaseException as exc:
            self._seen.pop(mac, None)
            future.set_exception(exc)
            future.exception()  # retrieved: a retransmission waiting on it gets it, nobody else must
            raise
        future.set_result(response)
        return response

    def _forget(self, now: float) -> None:
        while self._seen and (len(self._seen) >= MAX_SEEN or next(iter(self._seen.values()))[0] < now):
            self._seen.popitem(last=False)

    async def _respond(self, message: dns.message.Message, client: str) -> bytes:
        keyname = message.keyname
        assert keyname is not None
        key = self.keyring.current().get(keyname.canonicalize())
        rcode, reason = await self._apply(message, key)
        log.info("dynamic update from %s with key %s: %s%s", client, keyname, Rcode(rcode).name,
                 f" ({reason})" if reason else "", extra={"event": "dns_update", "fields": {
                     "client": client, "key": keyname.to_text(), "rcode": Rcode(rcode).name, "reason": reason}})
        response = dns.message.make_response(message)  # signed with the request's key, bound to its MAC
        response.set_rcode(Rcode(rcode))
        return response.to_wire()

    async def _apply(self, message: dns.message.Message, key: TSIGKey | None) -> tuple[int, str]:
        if message.opcode() != dns.opcode.UPDATE or key is None:
            return Rcode.REFUSED, "not an update, or the key was removed"
        dns_app = self.node.app.dns
        translated = translate(message, dns_app.zones)
        if isinstance(translated, Refusal):
            return translated.rcode, translated.reason
        origin = dns.name.from_text(translated.origin)
        if dns.name.from_text(key.zone) != origin:
            return Rcode.REFUSED, f"key {key.name} is for zone {key.zone}, not {origin}"
        delegation = dns_app.delegations.find(origin, self.node.account_id, dns.name.from_text(key.name),
                                              int(time.time()) + dns_app.clock_offset_s)
        if delegation is None:
            return Rcode.REFUSED, f"{origin} has no live delegation to this node for key {key.name}"
        try:
            check_scope(delegation, dns_app.zones[origin].zone, translated.update.ops)
        except UpdateRefused as exc:
            return exc.rcode, str(exc)
        except TrustChainError as exc:  # a name the zone would refuse anyway
            return Rcode.REFUSED, str(exc)
        if self._inflight >= MAX_INFLIGHT or self._inflight_by_key[key.name] >= MAX_INFLIGHT_PER_KEY:
            return Rcode.SERVFAIL, "too many updates being ordered"
        self._inflight += 1
        self._inflight_by_key[key.name] += 1
        try:
            payload = dnsapp.delegated_update_command(key.name, translated.prerequisites, translated.update)
            raw = await self.node.submit(tcapp.DNS, payload, timeout_s=self.order_timeout_s)
        except (TrustChainError, TimeoutError) as exc:
            return Rcode.SERVFAIL, f"not ordered: {exc}"
        finally:
            self._inflight -= 1
            self._inflight_by_key[key.name] -= 1
            if not self._inflight_by_key[key.name]:
                del self._inflight_by_key[key.name]
        result = tcapp.decode_routed(raw, dnsapp.decode_result)
        if isinstance(result, tcapp.RouteError):
            return Rcode.SERVFAIL, result.detail
        if result.ok:
            return Rcode.NOERROR, ""
        return (result.rcode or Rcode.SERVFAIL), result.detail

    def signed_query(self, wire: bytes, answer: bytes, max_size: int) -> bytes | None:
        """For a TSIG-signed query (certbot's `sign_query`), `answer` (the authority's response to it
        without its TSIG) signed with the client's key; None when the query is not validly signed."""
        try:
            query = dns.message.from_wire(wire, keyring=self._keyring)
        except Exception:  # unknown key, bad signature or time, malformed: answered as before
            return None
        if not query.had_tsig or query.opcode() != dns.opcode.QUERY:
            return None
        try:
            response = dns.message.from_wire(answer)
            response.use_tsig(query.keyring, query.keyname)  # the verified Key, with its algorithm
            response.request_mac = query.mac or b""
            return response.to_wire(max_size=max_size)
        except dns.exception.DNSException:
            return None

    def strip_tsig(self, wire: bytes) -> bytes | None:
        """`wire` without its TSIG record (not verified here), for the authority to answer; None when
        it has none or does not parse."""
        try:
            query = dns.message.from_wire(wire, keyring=False)
        except Exception:  # dnspython raises many types on hostile input
            return None
        if not query.had_tsig:
            return None
        query.tsig = None
        return query.to_wire()


def _unsigned(wire: bytes, rcode: int) -> bytes:
    """An unsigned answer carrying `rcode`: the request's zone section when it parses, else its header."""
    try:
        request = dns.message.from_wire(wire, keyring=False, one_rr_per_rrset=True)
        response = dns.message.make_response(request)
    except Exception:  # dnspython raises many types on hostile input
        if len(wire) < 12:
            return b""
        response = dns.update.UpdateMessage(id=int.from_bytes(wire[:2], "big"))
        response.flags |= dns.flags.QR
    response.set_rcode(Rcode(rcode))
    return response.to_wire()
