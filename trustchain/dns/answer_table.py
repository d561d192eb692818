"""Precomputed wire answers: the authoritative fast path, a dictionary lookup instead of a dnspython
parse and render per query.

Between two zone changes an authoritative answer to a plain query depends only on the lower-cased
question name, the question type, whether the client sent EDNS and the DO bit, and the RD bit that is
copied back. The response bytes after the question do not even depend on the question name's case:
dnspython compresses names case-insensitively, so every later occurrence of the name is a pointer into
the question, whose length is the same in any case. So an entry holds, per (RD, EDNS) variant, the 10
header bytes after the message ID and the bytes after the question (with the OPT record, which carries
no option, at the end); a hit is ``id + head + question-as-sent + tail``.

Entries are rendered by the full path itself (the `render` callable: `Authority` answering a canonical
query over a stream transport, so nothing is cut), which is what makes a hit byte-identical to a fresh
answer. When a zone changes, its entries are dropped and the zone queued: `precompute` (driven by the
listener, in slices, never inside consensus execution) renders the answer to every (name, type) the zone
holds, with and without DO. Anything else (NODATA for other types, NXDOMAIN, whose proofs depend on
the name) is rendered on its first query and kept in a bounded, oldest-first evicted part, emptied on
every zone change, so a flood of distinct names cannot grow memory.

`lookup` handles only the common case, parsing just the header and question: opcode QUERY, one
question of class IN with an uncompressed name, no answer or authority records, and either no
additional record or exactly one option-less OPT of version 0. Anything else (DNS cookies, NSID,
TSIG, several questions, ANY, AXFR/IXFR, metatypes, truncation against the client's buffer size,
expired signatures, rcodes other than NOERROR and NXDOMAIN) returns None: the caller takes the full
path, which stays the single definition of a correct answer.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass

__all__ = [
    "ENTRY_OVERHEAD", "AnswerTable", "Entry", "TableStats", "canonical_query", "entry_from_response", "question_key",
]

MAX_LEARNED = 4096  # keys remembered for `take_learned` between two takes
ENTRY_OVERHEAD = 200  # bytes charged per lazily kept entry for dict slot, tuples and bytes headers
_OPT = 41
_MAX_QUERY = 512  # a plain query is far shorter; longer ones take the full path
_IN = b"\x00\x01"
#: Question types never answered from the table: ANY (minimal answers are chosen per name), the
#: transfer and mail metatypes (REFUSED) and OPT/TSIG/TKEY in a question.
_SLOW_TYPES = frozenset((255, 252, 251, 253, 254, 250, 249, 41))
#: The OPT record of a response to a canonical query: root owner, payload 1232, version 0, no options.
_OPT_PLAIN = b"\x00\x00\x29\x04\xd0\x00\x00\x00\x00\x00\x00"
_OPT_DO = b"\x00\x00\x29\x04\xd0\x00\x00\x80\x00\x00\x00"
_OPT_HEAD = b"\x00\x00\x29"  # root owner, TYPE OPT
_PLAIN_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x00"  # QD 1, AN 0, NS 0, AR 0
_EDNS_COUNTS = b"\x00\x01\x00\x00\x00\x00\x00\x01"  # QD 1, AN 0, NS 0, AR 1 (the OPT)

#: Per variant (index: RD bit | EDNS << 1): (header bytes 2..11, bytes after the question) or None when
#: the variant cannot occur (DO without EDNS); then the response code.
Entry = tuple[tuple[tuple[bytes, bytes] | None, ...], int]
Render = Callable[[bytes], bytes]
_SLOW: Entry = ((None, None, None, None), -1)  # remembered: this question takes the full path


@dataclass
class TableStats:
    hits: int = 0
    misses: int = 0  # plain queries whose entry had to be rendered on demand
    slow: int = 0  # queries the table does not handle (full path)
    too_big: int = 0  # entries larger than the client's UDP limit (full path truncates)
    precomputed: int = 0
    lazy_inserts: int = 0
    evictions: int = 0
    invalidations: int = 0


def question_key(wire: bytes) -> tuple[bytes, int, int] | None:
    """(key, end of the question, payload) for a plain query, else None. The key is the lower-cased name
    in wire form, the DO bit (one byte) and the type (two); payload is -1 without EDNS, else the
    client's UDP payload size.

    Reads only the header, the question and an optional option-less OPT record; never raises."""
    n = len(wire)
    if n < 17 or n > _MAX_QUERY or wire[2] & 0xF8 or wire[4:10] != b"\x00\x01\x00\x00\x00\x00":
        return None
    pos = 12
    while True:
        length = wire[pos]
        if length == 0:
            break
        if length > 63:  # compression pointer or extended label type
            return None
        pos += length + 1
        if pos >= n or pos > 266:
            return None
    end = pos + 5
    if end > n or wire[end - 2 : end] != _IN or (wire[end - 4] == 0 and wire[end - 3] in _SLOW_TYPES):
        return None
    if wire[11] == 0 and wire[10] == 0:
        if end != n:
            return None
        return wire[12 : end - 4].lower() + b"\x00" + wire[end - 4 : end - 2], end, -1
    if wire[10] != 0 or wire[11] != 1 or end + 11 != n:
        return None
    # OPT: root owner, TYPE 41, CLASS = payload, TTL = ext-rcode 0 / version 0 / flags, RDLENGTH 0
    if wire[end] != 0 or wire[end + 1] != 0 or wire[end + 2] != _OPT or wire[end + 5] or wire[end + 6] \
            or wire[n - 2] or wire[n - 1]:
        return None
    do = b"\x01" if wire[end + 7] & 0x80 else b"\x00"
    return wire[12 : end - 4].lower() + do + wire[end - 4 : end - 2], end, (wire[end + 3] << 8) | wire[end + 4]


def canonical_query(qname: bytes, qtype: int, do: bool) -> bytes:
    """The query an entry is rendered from: ID 0, no flags, EDNS with DO as asked, `qname` in wire form."""
    return (b"\x00\x00\x00\x00\x00\x01\x00\x00\x00\x00\x00\x01" + qname + qtype.to_bytes(2, "big") + _IN
            + (_OPT_DO if do else _OPT_PLAIN))


def entry_from_response(qname: bytes, do: bool, response: bytes) -> Entry | None:
    """Split the full path's response to `canonical_query(qname, _, do)` into an entry, or None when the
    answer is not one the table serves (another rcode, truncated, unexpected OPT)."""
    opt = _OPT_DO if do else _OPT_PLAIN
    question_end = 12 + len(qname) + 4
    if len(response) < question_end + len(opt) or response[:2] != b"\x00\x00" or response[4:6] != b"\x00\x01":
        return None
    b2, b3 = response[2], response[3]
    rcode = b3 & 0x0F
    if rcode not in (0, 3) or b2 & 0x03 != 0 or not response.endswith(opt):  # TC or RD set: not ours to copy
        return None
    arcount = int.from_bytes(response[10:12], "big")
    if arcount < 1:
        return None
    counts = response[6:10]
    body = response[question_end : len(response) - len(opt)]
    variants: list[tuple[bytes, bytes] | None] = []
    for edns in (False, True):
        if do and not edns:
            variants += [None, None]
            continue
        ar = (arcount if edns else arcount - 1).to_bytes(2, "big")
        tail = body + opt if edns else body
        for rd in (0, 1):
            variants.append((bytes((b2 | rd, b3)) + b"\x00\x01" + counts + ar, tail))
    return tuple(variants), rcode


class AnswerTable:
    """(lower-cased name, type, DO) -> rendered answer, filled from `render` (see module docstring)."""

    def __init__(self, render: Render | None, max_lazy_bytes: int,
                 zones: Callable[[], Iterable[bytes]] = tuple,
                 questions: Callable[[bytes], list[tuple[bytes, int]]] = lambda origin: [],
                 memo_limit: int | None = 1232) -> None:
        """`render`: the full path for a canonical query (None: a copy that only serves what it is given
        by `install`); `zones`: the origins served (wire form); `questions`: a zone's (name, type) pairs
        to precompute; `memo_limit`: the UDP limit whose answers are memoised by exact query bytes (the
        listeners' EDNS limit; None: stream transports)."""
        if max_lazy_bytes <= 0:
            raise ValueError("max_lazy_bytes must be positive")
        self.render, self.zones, self.questions = render, zones, questions
        self.max_lazy_bytes = max_lazy_bytes
        self.stats = TableStats()
        self.valid_until = 2**63  # the earliest signature expiration of the zones served
        self.memo_limit: int | None = memo_limit
        self._memo: dict[bytes, bytes] = {}
        self._memo_used = 0
        self.learned: list[bytes] = []  # keys rendered on demand since a driver last took them (`take_learned`)
        self.version = 0  # bumped on every change of the entries a worker copy must mirror
        self.entries: dict[bytes, Entry] = {}  # precomputed and lazily rendered, one dict for one lookup
        self._zone_keys: dict[bytes, set[bytes]] = {}  # origin (wire) -> its precomputed keys
        self._lazy: dict[bytes, int] = {}  # lazily rendered keys, oldest first -> charged size
        self._lazy_used = 0
        # (origin, (name, type) pairs left to render, None: not listed yet)
        self._pending: list[tuple[bytes, list[tuple[bytes, int]] | None]] = []

    def __len__(self) -> int:
        return len(self.entries)

    # --- the query path -----------------------------------------------------------------------------

    def lookup(self, wire: bytes, max_udp: int | None, now: int) -> bytes | None:
        """The response to `wire`, or None when the full path must answer (see module docstring).
        `max_udp`: the transport's UDP limit, None for stream transports; `now` in seconds, checked
        against `valid_until` (expired signatures are the full path's to refuse).

        The name is delimited by the first zero byte: when that prefix is a key, it is a valid name in
        wire form, so walking the labels would have ended at the same byte. Only a miss walks them.

        In front of that, for the UDP limit `memo_limit`: a memo of exact query bytes after the ID to the
        response after the ID (the answer depends on nothing else), so a client repeating a query costs
        one dictionary lookup. Emptied with the entries; when its budget is spent it is emptied too."""
        if max_udp == self.memo_limit and now <= self.valid_until:
            hit = self._memo.get(wire[2:])
            if hit is not None:
                self.stats.hits += 1
                return wire[:2] + hit
        response = self._lookup(wire, max_udp, now)
        if response is not None and max_udp == self.memo_limit:
            size = len(wire) + len(response) + ENTRY_OVERHEAD
            if self._memo_used + size > self.max_lazy_bytes:
                self._memo.clear()
                self._memo_used = 0
            self._memo[wire[2:]] = response[2:]
            self._memo_used += size
        return response

    def _lookup(self, wire: bytes, max_udp: int | None, now: int) -> bytes | None:
        n = len(wire)
        z = wire.find(0, 12)
        end = z + 5
        if now > self.valid_until or z < 0 or n > _MAX_QUERY or wire[2] & 0xF8 or wire[end - 2 : end] != _IN:
            self.stats.slow += 1
            return None
        counts = wire[4:12]
        if end == n and counts == _PLAIN_COUNTS:
            payload, do = -1, b"\x00"
        elif end + 11 == n and counts == _EDNS_COUNTS and wire[end : end + 3] == _OPT_HEAD \
                and wire[end + 5 : end + 7] == b"\x00\x00" and wire[n - 2 :] == b"\x00\x00":
            payload, do = (wire[end + 3] << 8) | wire[end + 4], (b"\x01" if wire[end + 7] & 0x80 else b"\x00")
        else:
            self.stats.slow += 1
            return None
        key = wire[12 : z + 1].lower() + do + wire[z + 1 : z + 3]
        entry = self.entries.get(key)
        if entry is None:
            parsed = question_key(wire) if self.render is not None else None
            if parsed is None or parsed[0] != key:
                self.stats.slow += 1
                return None
            entry = self._learn(key)
            self.stats.misses += 1
        variant = entry[0][(wire[2] & 1) | (0 if payload < 0 else 2)]
        if variant is None:
            self.stats.slow += 1
            return None
        head, tail = variant
        if max_udp is not None and end + len(tail) > (512 if payload < 0 else max(512, min(max_udp, payload))):
            self.stats.too_big += 1
            return None
        self.stats.hits += 1
        return wire[:2] + head + wire[12:end] + tail

    def _learn(self, key: bytes) -> Entry:
        """Render the entry for `key` on demand and keep it, within the lazy budget."""
        entry = self._render(key[:-3], int.from_bytes(key[-2:], "big"), key[-3] == 1) or _SLOW
        size = len(key) + sum(len(v[0]) + len(v[1]) for v in entry[0] if v is not None) + ENTRY_OVERHEAD
        if size > self.max_lazy_bytes:
            return entry
        while self._lazy_used + size > self.max_lazy_bytes and self._lazy:
            old = next(iter(self._lazy))
            self._lazy_used -= self._lazy.pop(old)
            self.entries.pop(old, None)
            self.stats.evictions += 1
        self.entries[key] = entry
        self._lazy[key] = size
        if len(self.learned) < MAX_LEARNED:
            self.learned.append(key)
        self._lazy_used += size
        self.stats.lazy_inserts += 1
        return entry

    def _render(self, qname: bytes, qtype: int, do: bool) -> Entry | None:
        assert self.render is not None
        return entry_from_response(qname, do, self.render(canonical_query(qname, qtype, do)))

    # --- zone changes -------------------------------------------------------------------------------

    def zone_changed(self, origin: bytes, *, all_zones: bool) -> None:
        """Drop what the change may have made stale and queue the zone for `precompute`. `all_zones`: the
        set of served zones changed (a name may now belong to another zone), so every entry goes and
        every zone in `served` is queued; otherwise only this zone's entries and the lazily rendered ones.
        Cheap: the zone's (name, type) pairs are listed by `precompute`, never inside the change."""
        self.stats.invalidations += 1
        self.version += 1
        self._memo.clear()
        self._memo_used = 0
        self.learned = []
        if all_zones:
            self.entries.clear()
            self._zone_keys.clear()
            self._pending = [(o, None) for o in self.zones()]  # `origin` too, if it is still served
        else:
            for key in self._zone_keys.pop(origin, set()):
                self.entries.pop(key, None)
            self._pending = [(o, work) for o, work in self._pending if o != origin] + [(origin, None)]
        for key in self._lazy:
            self.entries.pop(key, None)
        self._lazy.clear()
        self._lazy_used = 0

    @property
    def pending(self) -> int:
        """Work left for `precompute`: (name, type) pairs, a zone not listed yet counting one."""
        return sum(1 if work is None else len(work) for _, work in self._pending)

    def precompute(self, budget: int) -> int:
        """Render up to `budget` queued (name, type) pairs, both DO variants each; returns `pending`.
        An entry already rendered on demand is moved from the lazy part into the zone's own."""
        while budget > 0 and self._pending:
            origin, work = self._pending[-1]
            if work is None:
                work = self.questions(origin)
                self._pending[-1] = (origin, work)
                budget -= 1
            keys = self._zone_keys.setdefault(origin, set())
            while budget > 0 and work:
                qname, qtype = work.pop()
                budget -= 1
                for do in (False, True):
                    key = qname.lower() + (b"\x01" if do else b"\x00") + qtype.to_bytes(2, "big")
                    entry = self.entries.get(key) or self._render(qname, qtype, do)
                    if entry is _SLOW or entry is None:
                        continue
                    if key in self._lazy:
                        self._lazy_used -= self._lazy.pop(key)
                    self.entries[key] = entry
                    keys.add(key)
                    self.stats.precomputed += 1
            if not work:
                self._pending.pop()
        self.version += 1
        return self.pending

    # --- copies for worker processes -----------------------------------------------------------------

    def export(self) -> dict[bytes, Entry]:
        """The entries, for a worker process's `install` (a snapshot: later changes need a new export).
        Remembered full-path questions are left out: a worker passes anything it lacks to the node."""
        return {k: v for k, v in self.entries.items() if v is not _SLOW}

    def take_learned(self) -> dict[bytes, Entry]:
        """The entries rendered on demand since the last take (and still held), for worker copies."""
        out = {k: e for k in self.learned if (e := self.entries.get(k)) is not None and e is not _SLOW}
        self.learned = []
        return out

    def add(self, entries: dict[bytes, Entry], limit: int) -> None:
        """A worker copy takes entries its node learnt, while it holds fewer than `limit`."""
        if len(self.entries) + len(entries) <= limit:
            self.entries.update(entries)

    def install(self, entries: dict[bytes, Entry], valid_until: int) -> None:
        """Serve exactly `entries` (a worker's copy of the node's table)."""
        self.entries = entries
        self.valid_until = valid_until
        self._memo.clear()
        self._memo_used = 0
        self._zone_keys.clear()
        self._lazy.clear()
        self._lazy_used = 0
        self._pending.clear()
        self.version += 1
