"""Zone transfers from a real cluster to a real secondary: knotd pulls the signed zone from node1 by
AXFR, takes an update by IXFR when node1 NOTIFYs it, and then answers queries exactly as the nodes do.
Transfers without TSIG, with a wrong secret, or from a node that does not hold the key are refused and
carry no records.

The zone's SOA refresh is an hour, so knotd catching up within seconds is NOTIFY's doing."""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
import sys
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import REPO, Cluster, http

from reference_node.cluster import free_ports

pytestmark = pytest.mark.skipif(shutil.which("knotd") is None or shutil.which("kdig") is None,
                                reason="knotd/kdig not installed (.ci/run installs them)")

ZONE = "alice.example."
KEY = "xfr.alice.example."
RECORDS = [
    {"op": "add", "name": "@", "type": "MX", "ttl": 300, "values": [f"10 mail.{ZONE}"]},
    {"op": "add", "name": "@", "type": "TXT", "ttl": 300, "values": ['"v=spf1 -all"']},
    {"op": "add", "name": "ns1", "type": "A", "ttl": 300, "values": ["192.0.2.53"]},
    {"op": "add", "name": "www", "type": "A", "ttl": 300, "values": ["192.0.2.1", "192.0.2.2"]},
    {"op": "add", "name": "www", "type": "AAAA", "ttl": 300, "values": ["2001:db8::1"]},
    {"op": "add", "name": "mail", "type": "A", "ttl": 300, "values": ["192.0.2.25"]},
    {"op": "add", "name": "web", "type": "CNAME", "ttl": 300, "values": [f"www.{ZONE}"]},
    {"op": "add", "name": "deep.sub", "type": "TXT", "ttl": 60, "values": ['"below an empty non-terminal"']},
]
QUERIES = [(ZONE, "SOA"), (ZONE, "NS"), (ZONE, "DNSKEY"), (ZONE, "MX"), (ZONE, "TXT"), (f"www.{ZONE}", "A"),
           (f"www.{ZONE}", "AAAA"), (f"web.{ZONE}", "A"), (f"www.{ZONE}", "TXT"), (f"nope.{ZONE}", "A"),
           (f"sub.{ZONE}", "TXT"), (f"deep.sub.{ZONE}", "TXT"), (f"www.{ZONE}", "RRSIG"), (f"new.{ZONE}", "A")]


def dns_port(c: Cluster, i: int) -> int:
    return int(tomllib.loads(c.configs[i].read_text())["dns"]["listen"].rsplit(":", 1)[1])


class KnotSecondary:
    """knotd in a scratch directory, secondary for ZONE from one node, with the TSIG key for both ways."""

    def __init__(self, directory: Path, primary_port: int, secret: str) -> None:
        self.dir = directory
        self.port = free_ports(1, "127.0.0.1")[0]
        (directory / "knot.conf").write_text(
            f'server:\n    rundir: "{directory}"\n    listen: 127.0.0.1@{self.port}\n'
            f'log:\n  - target: "{directory}/knotd.log"\n    any: info\n'
            f'database:\n    storage: "{directory}"\n'
            f"key:\n  - id: {KEY}\n    algorithm: hmac-sha256\n    secret: {secret}\n"
            f"remote:\n  - id: node1\n    address: 127.0.0.1@{primary_port}\n    key: {KEY}\n"
            f"acl:\n  - id: notify-from-node1\n    address: 127.0.0.1\n    key: {KEY}\n    action: notify\n"
            f'template:\n  - id: default\n    storage: "{directory}"\n    file: "%s.zone"\n'
            f"    zonefile-sync: -1\n    journal-content: changes\n"
            f"zone:\n  - domain: {ZONE}\n    master: node1\n    acl: notify-from-node1\n")
        self.proc = subprocess.Popen(["knotd", "-c", str(directory / "knot.conf")], stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 10
        while not (directory / "knot.sock").exists():
            assert time.monotonic() < deadline and self.proc.poll() is None, self.log()
            time.sleep(0.05)

    def log(self) -> str:
        path = self.dir / "knotd.log"
        return path.read_text(errors="replace") if path.exists() else ""

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


def kdig(port: int, *args: str) -> str:
    out = subprocess.run(["kdig", "@127.0.0.1", "-p", str(port), "+tcp", "+retry=0", "+time=5", *args],
                         capture_output=True, text=True, timeout=30, check=False)
    return out.stdout + out.stderr


def normalized(port: int, name: str, rtype: str) -> tuple[str, list[str], list[str]]:
    """(status, answer records, authority records) of `kdig +dnssec`, each record with its TTL, sorted:
    everything a validating resolver uses, and nothing that differs by server (IDs, timings)."""
    out = kdig(port, "+dnssec", "+norecurse", name, rtype)
    status = re.search(r"status: (\w+)", out)
    sections: dict[str, list[str]] = {"ANSWER": [], "AUTHORITY": []}
    current = None
    for line in out.splitlines():
        header = re.match(r";; (\w+) SECTION:", line)
        if header:
            current = header.group(1) if header.group(1) in sections else None
        elif current and line.strip() and not line.startswith(";"):
            sections[current].append(" ".join(line.split()))
    return (status.group(1) if status else out), sorted(sections["ANSWER"]), sorted(sections["AUTHORITY"])


def serial(port: int) -> int:
    out = kdig(port, "+short", ZONE, "SOA")
    fields = out.split()
    return int(fields[2]) if len(fields) >= 7 and fields[2].isdigit() else -1


@pytest.fixture(scope="module")
def setup(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Cluster, KnotSecondary, str]]:
    with Cluster(tmp_path_factory.mktemp("transfer"), 4, 3) as c:
        code, res = http("POST", c.apis[0] + "/api/v1/dns/update", {"create": {
            "origin": ZONE, "primary_ns": f"ns1.{ZONE}", "admin": f"hostmaster.{ZONE}", "ops": RECORDS}})
        assert code == 200 and res["status"] == "ok", res
        out = subprocess.run([sys.executable, "-m", "reference_node.cli", "dns", "tsig", "add", KEY, "--zone", ZONE,
                              "--config", str(c.configs[1]), "--json"], capture_output=True, text=True, check=True,
                             cwd=str(REPO), env=dict(os.environ, PYTHONPATH=str(REPO)))
        secret = json.loads(out.stdout)["secret"]
        knot = KnotSecondary(tmp_path_factory.mktemp("knot"), dns_port(c, 1), secret)
        try:
            code, res = http("POST", c.apis[2] + "/api/v1/dns/update", {"allow_transfer": {
                "origin": ZONE, "key_name": KEY, "notify": [f"127.0.0.1:{knot.port}"]}})
            assert code == 200 and res["status"] == "ok", res
            yield c, knot, secret
        finally:
            knot.stop()


def test_knot_pulls_the_signed_zone_then_an_update_by_ixfr_and_answers_like_the_nodes(
        setup: tuple[Cluster, KnotSecondary, str]) -> None:
    c, knot, _ = setup
    node = dns_port(c, 0)
    try:
        c.wait_for(lambda: serial(knot.port) == serial(node), timeout=60, what="knotd to transfer")
    except AssertionError as exc:
        raise AssertionError(f"{exc}\n{knot.log()[-3000:]}\n{c.log(1)[-3000:]}") from None
    assert "AXFR, incoming" in knot.log() and "finished" in knot.log()
    for name, rtype in QUERIES:
        ours = normalized(node, name, rtype)
        assert ours == normalized(knot.port, name, rtype), (name, rtype)
        assert ours[0] in ("NOERROR", "NXDOMAIN"), ours
    before = serial(node)
    code, res = http("POST", c.apis[3] + "/api/v1/dns/update", {"update": {"origin": ZONE, "ops": [
        {"op": "add", "name": "new", "type": "A", "ttl": 300, "values": ["192.0.2.77"]},
        {"op": "delete_rrset", "name": "www", "type": "AAAA"}]}})
    assert code == 200 and res["serial"] == before + 1, res
    c.wait_for(lambda: serial(knot.port) == before + 1, timeout=30, what=f"the update on knotd: {knot.log()[-800:]}")
    log = knot.log()
    assert "notify, incoming, remote 127.0.0.1@" in log and f"serial {before + 1}" in log, log[-2000:]
    assert re.search(r"IXFR, incoming, remote 127\.0\.0\.1@\d+, finished", log), log[-2000:]
    assert f"serial {before} -> {before + 1}" in log and "AXFR-style" not in log, log[-2000:]
    for name, rtype in [*QUERIES, (f"www.{ZONE}", "AAAA")]:
        assert normalized(node, name, rtype) == normalized(knot.port, name, rtype), (name, rtype)
    assert "192.0.2.77" in kdig(knot.port, "+short", f"new.{ZONE}", "A")


def test_transfers_without_the_key_are_refused_and_leak_nothing(setup: tuple[Cluster, KnotSecondary, str]) -> None:
    c, _, secret = setup
    node1 = dns_port(c, 1)
    wrong = base64.b64encode(b"not the secret, not at all!!!!!").decode()
    for args, rcode in (((), "REFUSED"), (("-y", f"hmac-sha256:{KEY}:{wrong}"), "NOTAUTH"),
                        (("-y", f"hmac-sha256:other.{ZONE}:{secret}"), "NOTAUTH")):
        for rtype in ("AXFR", "IXFR=1"):
            out = kdig(node1, *args, ZONE, rtype)
            assert rcode in out and "192.0.2.1" not in out and "DNSKEY" not in out, (args, rtype, out)
    out = kdig(dns_port(c, 2), "-y", f"hmac-sha256:{KEY}:{secret}", ZONE, "AXFR")  # node2's operator has no key
    assert "NOTAUTH" in out and "192.0.2.1" not in out, out
    out = kdig(node1, "-y", f"hmac-sha256:{KEY}:{secret}", ZONE, "AXFR")  # the key itself works
    assert "192.0.2.1" in out and "RRSIG" in out and "NSEC" in out, out
