"""Helpers shared by the DNS tests: one small zone with every supported type, deterministic keys."""

from __future__ import annotations

import hashlib

from trustchain.dns.zone import AddRecords, Zone, ZoneUpdate

ORIGIN = "tc.example."
NOW = 1_700_000_000


def seed(label: str) -> bytes:
    return hashlib.sha256(label.encode()).digest()


def make_zone() -> Zone:
    zone = Zone.create(ORIGIN, primary_ns="ns1", admin="hostmaster", nameservers=("ns1", "ns2"))
    zone.apply(
        ZoneUpdate(
            ORIGIN,
            (
                AddRecords("ns1", "A", 300, ("192.0.2.53",)),
                AddRecords("ns2", "AAAA", 300, ("2001:db8::53",)),
                AddRecords("www", "A", 300, ("192.0.2.1", "192.0.2.2")),
                AddRecords("www", "AAAA", 300, ("2001:db8::1",)),
                AddRecords("@", "MX", 300, ("10 mail",)),
                AddRecords("mail", "A", 300, ("192.0.2.25",)),
                AddRecords("_acme-challenge.www", "TXT", 60, ('"token-123"',)),
                AddRecords("a.b.deep", "TXT", 60, ('"hello world" "second string"',)),
                AddRecords("alias", "CNAME", 60, ("www",)),
                AddRecords("alias2", "CNAME", 60, ("alias",)),
                AddRecords("dangling", "CNAME", 60, ("nothere",)),
                AddRecords("@", "CAA", 3600, ('0 issue "ca.trustchain.example"',)),
            ),
        )
    )
    return zone
