"""Checks of a master zone file (RFC 1035 text) before it is loaded, refusing what named-checkzone refuses
and what a lenient parser would quietly drop or merge: a second SOA record, a record outside the zone, an
NS target inside the zone with no address (glue) in the file. Each error names the line.

dnspython's own reader parses the text (every directive, parenthesis and escape as it reads them), but
into a recorder, so every record is seen once with its line before any RRset merges it away.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, cast

import dns.exception
import dns.name
import dns.rdata
import dns.rdataclass
import dns.rdatatype
import dns.tokenizer
import dns.transaction
import dns.zonefile

from trustchain.errors import TrustChainError

__all__ = ["NO_ORIGIN", "ZoneFileError", "ZoneFileRecord", "check_zone_text", "read_records"]

RdataType = dns.rdatatype.RdataType
NO_ORIGIN = "no $ORIGIN in the file, and no origin given"


class ZoneFileError(TrustChainError, ValueError):
    """A zone file that must not be loaded; the message names the line and the problem."""


@dataclass(frozen=True)
class ZoneFileRecord:
    line: int
    name: dns.name.Name
    ttl: int
    rdata: dns.rdata.Rdata


class _Recorder:
    """The part of a dnspython transaction its zone-file reader uses: it records instead of merging."""

    def __init__(self, origin: dns.name.Name | None, tok: dns.tokenizer.Tokenizer) -> None:
        self.origin, self.tok = origin, tok
        self.records: list[ZoneFileRecord] = []
        self.manager = self

    def origin_information(self) -> tuple[dns.name.Name | None, bool, dns.name.Name | None]:
        return self.origin, False, self.origin

    def check_put_rdataset(self, check: Any) -> None:
        pass  # CNAME beside other data is the zone model's to refuse

    def _set_origin(self, origin: dns.name.Name) -> None:
        if self.origin is None:
            self.origin = origin

    def add(self, name: dns.name.Name, ttl: int, rdata: dns.rdata.Rdata) -> None:
        line = self.tok.line_number - (1 if self.tok.line_number > 1 else 0)  # the tokenizer has read the EOL
        self.records.append(ZoneFileRecord(line, name, ttl, rdata))


def _read(text: str, origin: dns.name.Name | None, everything: bool) -> _Recorder:
    tok = dns.tokenizer.Tokenizer(text, filename="<zone>")
    recorder = _Recorder(origin, tok)
    try:
        reader = dns.zonefile.Reader(tok, dns.rdataclass.IN, cast(dns.transaction.Transaction, recorder))
        if everything:
            reader.zone_origin = dns.name.root  # the reader skips records outside the zone: see them too
        reader.read()
    except dns.zonefile.UnknownOrigin:
        raise ZoneFileError(NO_ORIGIN) from None
    except dns.exception.DNSException as exc:
        raise ZoneFileError(f"not a valid zone file: {exc}") from None
    return recorder


def read_records(text: str, origin: dns.name.Name | None) -> tuple[dns.name.Name, list[ZoneFileRecord]]:
    """Every record of `text` in file order, names absolute, those outside the zone included;
    ZoneFileError when it does not parse."""
    found = _read(text, origin, False).origin  # the zone: `origin`, else the file's first $ORIGIN
    if found is None:
        raise ZoneFileError(NO_ORIGIN)
    return found, _read(text, found, True).records


def check_zone_text(text: str, origin: dns.name.Name | None) -> None:
    """Raise ZoneFileError for the first problem found (see the module docstring)."""
    zone, records = read_records(text, origin)
    soa: ZoneFileRecord | None = None
    addresses = {r.name for r in records if r.rdata.rdtype in (RdataType.A, RdataType.AAAA)}
    for r in records:
        if not r.name.is_subdomain(zone):
            raise ZoneFileError(f"line {r.line}: {r.name} is outside the zone {zone} (named-checkzone ignores it; "
                                "remove it)")
        if r.rdata.rdtype == RdataType.SOA:
            if r.name != zone:
                raise ZoneFileError(f"line {r.line}: SOA at {r.name}: only the zone apex {zone} has one")
            if soa is not None:
                raise ZoneFileError(f"line {r.line}: a second SOA record (the first is on line {soa.line}): a zone "
                                    "has exactly one")
            soa = r
    if soa is None:
        raise ZoneFileError(f"no SOA record at the zone apex {zone}")
    for r in records:
        target = getattr(r.rdata, "target", None)
        if r.rdata.rdtype == RdataType.NS and isinstance(target, dns.name.Name) and target.is_subdomain(zone) \
                and target not in addresses:
            raise ZoneFileError(f"line {r.line}: NS {target} is inside the zone but has no A or AAAA record (glue)")
