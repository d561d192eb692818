"""Zone transfers out (AXFR, RFC 5936; IXFR, RFC 1995), sans-I/O: who may transfer a zone, the journal
of signed diffs IXFR answers from, and the records each answer carries.

A transfer hands over the whole zone, so nothing is transferred by default. A zone's owner grants it
per TSIG key name (`AllowTransfer`, replicated like every other change of the zone): "a secondary
holding key K may transfer my zone, and these addresses want a NOTIFY when it changes". The secret of K
is node-local (the operator's keyring, never replicated); a node answers a transfer only when the
request is signed with a key of its keyring made for that zone *and* the owner granted that key name,
so the owner decides who sees the zone and each operator which secondaries it serves.

What is transferred is the signed zone: its DNSKEYs, RRSIGs and NSEC/NSEC3 chain. A re-sign changes
the signatures, so the DNS application bumps the SOA serial whenever it re-signs (a secondary never
keeps serving signatures that are about to expire). The journal keeps the difference between
consecutive signed versions of zones that have a transfer grant, bounded in diffs and records; an
IXFR whose serial the journal no longer reaches gets the whole zone (RFC 1995 section 4).
"""

from __future__ import annotations

import collections
import io
import ipaddress
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass

import dns.message
import dns.name
import dns.rcode
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.rrset

from trustchain.dns.dnssec import SignedZone
from trustchain.dns.records import ZoneUpdateError

__all__ = [
    "MAX_GRANTS_PER_ZONE",
    "MAX_NOTIFY",
    "MESSAGE_BYTES",
    "AllowTransfer",
    "DenyTransfer",
    "Diff",
    "Journal",
    "TransferAnswer",
    "TransferGrant",
    "Transfers",
    "answer_transfer",
    "parse_notify_target",
    "serial_gt",
]

RdataType = dns.rdatatype.RdataType
MAX_GRANTS_PER_ZONE = 8
MAX_NOTIFY = 4  # addresses per grant: each node sends one NOTIFY to each when the zone changes
JOURNAL_MAX_DIFFS = 64
JOURNAL_MIN_RECORDS = 4096  # the journal may hold max(this, 4 x the signed zone's records) records
MESSAGE_BYTES = 16 * 1024  # records per transfer message (uncompressed), well below the 64 KiB of TCP
_RecordKey = tuple[dns.name.Name, RdataType, RdataType, int, bytes]


@dataclass(frozen=True)
class AllowTransfer:
    """The owner of `origin` lets a secondary signing with TSIG key `key_name` transfer the zone, and asks
    the nodes holding that key to NOTIFY `notify` (``IP`` or ``IP:PORT``, ``[IPv6]:PORT``) on changes.
    Replaces an earlier grant for the same key name."""

    origin: str
    key_name: str
    notify: tuple[str, ...] = ()


@dataclass(frozen=True)
class DenyTransfer:
    origin: str
    key_name: str


@dataclass(frozen=True)
class TransferGrant:
    origin: dns.name.Name
    key_name: dns.name.Name
    notify: tuple[tuple[str, int], ...]  # (IP address, port)


def parse_notify_target(text: object, field: str) -> tuple[str, int]:
    """``IP``, ``IP:PORT``, ``[IPv6]`` or ``[IPv6]:PORT`` (port 53 by default): addresses only, so that
    every replica reads the same target without a lookup."""
    if not isinstance(text, str) or not text or len(text) > 64:
        raise ZoneUpdateError(field, "must be an IP address, optionally with :PORT")
    host, port = text, "53"
    if text.startswith("["):
        host, sep, rest = text[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ZoneUpdateError(field, f"{text!r}: expected [IPv6]:PORT")
        port = rest[1:] or "53"
    elif text.count(":") == 1:
        host, port = text.split(":")
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise ZoneUpdateError(field, f"{text!r}: not an IP address (names are not looked up)") from None
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise ZoneUpdateError(field, f"{text!r}: port must be 1..65535")
    if address.is_multicast or address.is_unspecified:
        raise ZoneUpdateError(field, f"{text!r}: not a unicast address")
    return address.compressed, int(port)


class Transfers:
    """Every zone's transfer grants, keyed by zone and TSIG key name (both absolute, lower-case)."""

    def __init__(self) -> None:
        self._grants: dict[dns.name.Name, dict[dns.name.Name, TransferGrant]] = {}

    def __len__(self) -> int:
        return sum(len(g) for g in self._grants.values())

    def grant(self, origin: dns.name.Name, key_name: str, notify: Sequence[str]) -> TransferGrant:
        """Validate and record an owner's grant (ZoneUpdateError names the field)."""
        key = _key_name(key_name, "allow_transfer.key_name")
        if isinstance(notify, str) or len(notify) > MAX_NOTIFY:
            raise ZoneUpdateError("allow_transfer.notify", f"at most {MAX_NOTIFY} addresses")
        targets = tuple(sorted({parse_notify_target(t, f"allow_transfer.notify[{i}]") for i, t in enumerate(notify)}))
        zone = self._grants.setdefault(origin, {})
        if key not in zone and len(zone) >= MAX_GRANTS_PER_ZONE:
            raise ZoneUpdateError("allow_transfer", f"{origin} already grants {MAX_GRANTS_PER_ZONE} keys")
        grant = zone[key] = TransferGrant(origin, key, targets)
        return grant

    def revoke(self, origin: dns.name.Name, key_name: str) -> bool:
        key = _key_name(key_name, "deny_transfer.key_name")
        zone = self._grants.get(origin, {})
        if zone.pop(key, None) is None:
            return False
        if not zone:
            del self._grants[origin]
        return True

    def allowed(self, origin: dns.name.Name, key_name: dns.name.Name) -> bool:
        return key_name.canonicalize() in self._grants.get(origin, {})

    def for_zone(self, origin: dns.name.Name) -> list[TransferGrant]:
        return [g for _, g in sorted(self._grants.get(origin, {}).items())]

    def zones(self) -> list[dns.name.Name]:
        return sorted(self._grants)

    def to_json(self) -> list[dict[str, object]]:
        return [{"origin": g.origin.to_text(), "key_name": g.key_name.to_text(),
                 "notify": [f"[{a}]:{p}" if ":" in a else f"{a}:{p}" for a, p in g.notify]}
                for origin in sorted(self._grants) for g in self.for_zone(origin)]

    @classmethod
    def from_json(cls, doc: object, zones: Mapping[dns.name.Name, object]) -> Transfers:
        """Re-validates everything: a snapshot may come from a peer."""
        out = cls()
        if not isinstance(doc, list):
            raise ZoneUpdateError("snapshot.transfers", "must be a list")
        for item in doc:
            if not isinstance(item, dict):
                raise ZoneUpdateError("snapshot.transfers", "entries must be objects")
            origin = _key_name(item.get("origin"), "snapshot.transfers.origin")
            if origin not in zones:
                raise ZoneUpdateError("snapshot.transfers.origin", f"no such zone {origin}")
            notify = item.get("notify")
            out.grant(origin, str(item.get("key_name")), notify if isinstance(notify, list) else ["?"])
        return out


def _key_name(text: object, field: str) -> dns.name.Name:
    if not isinstance(text, str) or not text or len(text) > 255:
        raise ZoneUpdateError(field, "must be a domain name")
    try:
        return dns.name.from_text(text).canonicalize()
    except Exception as exc:  # dnspython raises several exception types on bad names
        raise ZoneUpdateError(field, f"malformed name {text[:64]!r}") from exc


def serial_gt(a: int, b: int) -> bool:
    """RFC 1982 serial number arithmetic: a > b."""
    return a != b and ((a < b and b - a > 2**31) or (a > b and a - b < 2**31))


# --- the journal ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Diff:
    """From one signed serial to the next: the records gone and the records new (SOAs apart)."""

    old_soa: dns.rrset.RRset
    new_soa: dns.rrset.RRset
    removed: tuple[dns.rrset.RRset, ...]
    added: tuple[dns.rrset.RRset, ...]
    records: int

    @property
    def old_serial(self) -> int:
        return int(self.old_soa[0].serial)


def _records(signed: SignedZone) -> dict[_RecordKey, tuple[dns.rrset.RRset, dns.rdata.Rdata]]:
    out: dict[_RecordKey, tuple[dns.rrset.RRset, dns.rdata.Rdata]] = {}
    for rrset in signed.all_rrsets():
        if rrset.rdtype == RdataType.SOA:
            continue
        for rdata in rrset:
            key = (rrset.name, rrset.rdtype, rrset.covers, rrset.ttl, rdata.to_digestable(signed.origin))
            out[key] = (rrset, rdata)
    return out


def _group(keys: Iterable[_RecordKey], index: Mapping[_RecordKey, tuple[dns.rrset.RRset, dns.rdata.Rdata]]
           ) -> tuple[dns.rrset.RRset, ...]:
    groups: dict[tuple[dns.name.Name, RdataType, RdataType, int], dns.rrset.RRset] = {}
    for key in sorted(keys):
        src, rdata = index[key]
        out = groups.get(key[:4])
        if out is None:
            out = groups[key[:4]] = dns.rrset.RRset(src.name, dns.rdataclass.IN, src.rdtype, src.covers)
        out.add(rdata, src.ttl)
    return tuple(groups.values())


def _soa(signed: SignedZone) -> dns.rrset.RRset:
    return signed.rrsets[(signed.origin, RdataType.SOA)]


class Journal:
    """The recent diffs of one zone's signed versions, oldest first, within `JOURNAL_MAX_DIFFS` diffs and
    max(`JOURNAL_MIN_RECORDS`, 4 x the zone's signed records) records."""

    def __init__(self) -> None:
        self._diffs: collections.deque[Diff] = collections.deque()
        self._records = 0

    def __len__(self) -> int:
        return len(self._diffs)

    def record(self, old: SignedZone, new: SignedZone) -> None:
        if old.serial == new.serial:
            self.clear()  # content changed under the same serial: no IXFR can describe it
            return
        before, after = _records(old), _records(new)
        gone, came = before.keys() - after.keys(), after.keys() - before.keys()
        diff = Diff(_soa(old), _soa(new), _group(gone, before), _group(came, after), len(gone) + len(came) + 2)
        if self._diffs and int(self._diffs[-1].new_soa[0].serial) != old.serial:
            self.clear()  # a gap (e.g. restored from a snapshot): earlier diffs no longer chain
        self._diffs.append(diff)
        self._records += diff.records
        cap = max(JOURNAL_MIN_RECORDS, 4 * len(after))
        while self._diffs and (len(self._diffs) > JOURNAL_MAX_DIFFS or self._records > cap):
            self._records -= self._diffs.popleft().records

    def clear(self) -> None:
        self._diffs.clear()
        self._records = 0

    def since(self, serial: int) -> list[Diff] | None:
        """The diffs leading from `serial` to the newest version, or None if the journal does not reach it."""
        for i, diff in enumerate(self._diffs):
            if diff.old_serial == serial:
                return list(self._diffs)[i:]
        return None


# --- answers ----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class TransferAnswer:
    """What to send: `rcode` alone when not NOERROR; else `messages`, each a list of answer RRsets, sent
    in order on one stream (the first and the last record are the zone's SOA). `kind` names what was
    served, for logs and counters: axfr, ixfr, ixfr-full (journal does not reach), ixfr-current."""

    rcode: int
    messages: tuple[tuple[dns.rrset.RRset, ...], ...] = ()
    kind: str = ""


def _full(signed: SignedZone) -> list[dns.rrset.RRset]:
    soa = _soa(signed)
    return [soa, *(r for r in signed.all_rrsets() if r.rdtype != RdataType.SOA), soa]


def _incremental(signed: SignedZone, diffs: Sequence[Diff]) -> list[dns.rrset.RRset]:
    out = [_soa(signed)]
    for diff in diffs:
        out += [diff.old_soa, *diff.removed, diff.new_soa, *diff.added]
    out.append(_soa(signed))
    return out


def _wire_size(rrset: dns.rrset.RRset) -> int:
    out = io.BytesIO()
    rrset.to_wire(out, origin=dns.name.root)
    return out.tell()


def _split(rrset: dns.rrset.RRset) -> Iterator[dns.rrset.RRset]:
    """An RRset too large for one message goes out one record per RRset (RFC 5936 allows it)."""
    if len(rrset) == 1 or _wire_size(rrset) <= MESSAGE_BYTES:
        yield rrset
        return
    for rdata in rrset:
        part = dns.rrset.RRset(rrset.name, rrset.rdclass, rrset.rdtype, rrset.covers)
        part.add(rdata, rrset.ttl)
        yield part


def _pack(rrsets: Iterable[dns.rrset.RRset]) -> tuple[tuple[dns.rrset.RRset, ...], ...]:
    messages: list[tuple[dns.rrset.RRset, ...]] = []
    current: list[dns.rrset.RRset] = []
    size = 0
    for whole in rrsets:
        for rrset in _split(whole):
            n = _wire_size(rrset)
            if current and size + n > MESSAGE_BYTES:
                messages.append(tuple(current))
                current, size = [], 0
            current.append(rrset)
            size += n
    if current:
        messages.append(tuple(current))
    return tuple(messages)


def answer_transfer(query: dns.message.Message, signed: SignedZone | None, journal: Journal | None,
                    now: int) -> TransferAnswer:
    """The answer to an authorized AXFR or IXFR `query` for the zone `signed` (None: not ours)."""
    if len(query.question) != 1:
        return TransferAnswer(dns.rcode.FORMERR)
    question = query.question[0]
    if signed is None or question.name.canonicalize() != signed.origin or question.rdclass != dns.rdataclass.IN:
        return TransferAnswer(dns.rcode.NOTAUTH)  # RFC 5936 section 2.2.1: not authoritative for that zone
    if now > signed.expiration:
        return TransferAnswer(dns.rcode.SERVFAIL)  # never hand out signatures known to be dead
    if question.rdtype == RdataType.AXFR:
        return TransferAnswer(dns.rcode.NOERROR, _pack(_full(signed)), "axfr")
    theirs = [r for r in query.authority if r.rdtype == RdataType.SOA and r.name.canonicalize() == signed.origin]
    if question.rdtype != RdataType.IXFR or len(theirs) != 1 or len(theirs[0]) != 1:
        return TransferAnswer(dns.rcode.FORMERR)  # RFC 1995 section 3: the client's SOA is in authority
    serial = int(theirs[0][0].serial)
    if serial == signed.serial or serial_gt(serial, signed.serial):
        return TransferAnswer(dns.rcode.NOERROR, ((_soa(signed),),), "ixfr-current")
    diffs = journal.since(serial) if journal is not None else None
    full = _full(signed)
    if not diffs or int(diffs[-1].new_soa[0].serial) != signed.serial:
        return TransferAnswer(dns.rcode.NOERROR, _pack(full), "ixfr-full")
    incremental = _incremental(signed, diffs)
    if sum(len(r) for r in incremental) >= sum(len(r) for r in full):  # the zone itself is the shorter answer
        return TransferAnswer(dns.rcode.NOERROR, _pack(full), "ixfr-full")
    return TransferAnswer(dns.rcode.NOERROR, _pack(incremental), "ixfr")
