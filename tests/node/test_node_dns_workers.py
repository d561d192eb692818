"""`dns.workers = 2`: the node and one worker process answer UDP on the same port (SO_REUSEPORT). An
update through consensus shows in every answer, whichever process gives it; a worker that dies is
restarted; stopping the node stops its workers."""

from __future__ import annotations

import os
import signal
import socket
import time
import tomllib
from collections.abc import Iterator
from pathlib import Path

import dns.message
import dns.rcode
import pytest
from node_harness import Cluster, http

ZONE = "workers.example."


def dns_port(c: Cluster) -> int:
    return int(tomllib.loads(c.configs[0].read_text())["dns"]["listen"].rsplit(":", 1)[1])


def children(pid: int) -> set[int]:
    """Processes whose parent is `pid` (Linux /proc)."""
    out = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                out.add(int(entry.name))
    return out


def workers(pid: int) -> set[int]:
    found = set()
    for child in children(pid):
        try:
            cmdline = Path(f"/proc/{child}/cmdline").read_bytes()
        except OSError:
            continue
        if b"multiprocessing.spawn" in cmdline and b"resource_tracker" not in cmdline:
            found.add(child)
    return found


def ask(port: int, name: str) -> dns.message.Message:
    """One query from a fresh socket (a new source port: the kernel's SO_REUSEPORT hash picks anew)."""
    query = dns.message.make_query(name, "A", want_dnssec=True)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(query.to_wire(), ("127.0.0.1", port))
        reply = dns.message.from_wire(s.recv(65535))
    assert reply.id == query.id
    return reply


def addresses(reply: dns.message.Message) -> list[str]:
    return sorted(r.address for rrset in reply.answer if rrset.rdtype == 1 for r in rrset)


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    c = Cluster(tmp_path_factory.mktemp("dns-workers"), nodes=4, threshold=3, timeout="1s")
    text = c.configs[0].read_text()
    assert "[dns]\n" in text
    c.configs[0].write_text(text.replace("[dns]\n", "[dns]\nworkers = 2\n", 1))
    with c:
        code, res = c.create_zone(ZONE)
        assert code == 200, res
        code, res = http("POST", c.apis[0] + "/api/v1/dns/update", {"update": {"origin": ZONE, "ops": [
            {"op": "add", "name": f"www.{ZONE}", "type": "A", "ttl": 300, "values": ["192.0.2.1"]}]}})
        assert code == 200, res
        port = dns_port(c)
        c.wait_for(lambda: addresses(ask(port, f"www.{ZONE}")) == ["192.0.2.1"], timeout=60, what="first record")
        yield c


def test_an_update_through_consensus_shows_in_every_worker(cluster: Cluster) -> None:
    proc = cluster.procs[0]
    assert proc is not None
    assert len(workers(proc.pid)) == 1  # workers = 2: the node and one worker process
    port = dns_port(cluster)
    for value in ("192.0.2.2", "192.0.2.3"):
        code, res = http("POST", cluster.apis[0] + "/api/v1/dns/update", {"update": {"origin": ZONE, "ops": [
            {"op": "replace", "name": f"www.{ZONE}", "type": "A", "ttl": 300, "values": [value]}]}})
        assert code == 200 and res["status"] == "ok", res
        cluster.wait_for(lambda v=value: addresses(ask(port, f"www.{ZONE}")) == [v], timeout=30, what=value)
        seen = [addresses(ask(port, f"www.{ZONE}")) for _ in range(200)]
        assert seen == [[value]] * 200  # never the old address, from either process
        time.sleep(1.5)  # the precomputed table reaches the worker; answers stay the same
        replies = [ask(port, f"www.{ZONE}") for _ in range(200)]
        assert all(addresses(r) == [value] and len(r.answer) == 2 for r in replies)  # A and its RRSIG
        nx = ask(port, f"nothing-here.{ZONE}")
        assert nx.rcode() == dns.rcode.NXDOMAIN and nx.authority


def test_a_dead_worker_is_restarted_and_stopping_the_node_stops_it(cluster: Cluster) -> None:
    proc = cluster.procs[0]
    assert proc is not None
    (old,) = workers(proc.pid)
    os.kill(old, signal.SIGKILL)
    cluster.wait_for(lambda: len(workers(proc.pid) - {old}) == 1, timeout=60, what="a new worker")
    (new,) = workers(proc.pid) - {old}
    port = dns_port(cluster)
    time.sleep(2)  # the new worker has its table
    assert all(addresses(ask(port, f"www.{ZONE}")) == ["192.0.2.3"] for _ in range(100))
    cluster.stop_all()
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline and Path(f"/proc/{new}").exists():
        time.sleep(0.1)
    stat = Path(f"/proc/{new}/stat")
    assert not stat.exists() or stat.read_text().rsplit(")", 1)[1].split()[0] == "Z", "worker outlived the node"
