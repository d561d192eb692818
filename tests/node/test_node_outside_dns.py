"""Outside names validated against a real authoritative server: a local knotd on loopback plays the
public DNS that every validator of a real cluster consults on its own (nothing leaves the machine)."""

from __future__ import annotations

import hashlib
import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from node_harness import Cluster
from signed_client import Client, zone_command

from reference_node.cluster import free_ports
from trustchain.accounts import Ed25519AccountSigner
from trustchain.app import validation

pytestmark = pytest.mark.skipif(shutil.which("knotd") is None or shutil.which("knotc") is None,
                                reason="knotd is not installed (.ci/run installs it)")

ZONES = ("alice-corp.net", "victim-bank.net")


class Knot:
    """knotd serving `ZONES` from a scratch directory; records change through knotc transactions."""

    def __init__(self, directory: Path) -> None:
        self.dir = directory
        self.port = free_ports(1, "127.0.0.1")[0]
        zones = "".join(f"  - domain: {z}\n" for z in ZONES)
        (directory / "knot.conf").write_text(
            f'server:\n    rundir: "{directory}"\n    listen: 127.0.0.1@{self.port}\n'
            f'log:\n  - target: stderr\n    any: warning\ndatabase:\n    storage: "{directory}"\n'
            f'template:\n  - id: default\n    storage: "{directory}"\n    file: "%s.zone"\n'
            f"    zonefile-sync: -1\n    journal-content: all\nzone:\n{zones}")
        for z in ZONES:
            (directory / f"{z}.zone").write_text(
                f"$ORIGIN {z}.\n@ 60 SOA ns1 hostmaster 1 3600 600 86400 60\n@ 60 NS ns1\nns1 60 A 127.0.0.1\n")
        self.proc = subprocess.Popen(["knotd", "-c", str(directory / "knot.conf")], stdout=subprocess.DEVNULL,
                                     stderr=open(directory / "knotd.log", "wb"))  # noqa: SIM115
        deadline = time.monotonic() + 10
        while not (directory / "knot.sock").exists():
            assert time.monotonic() < deadline and self.proc.poll() is None, (directory / "knotd.log").read_text()
            time.sleep(0.05)

    def knotc(self, *args: str) -> None:
        subprocess.run(["knotc", "-s", str(self.dir / "knot.sock"), *args], check=True, capture_output=True)

    def publish_txt(self, zone: str, name: str, value: str) -> None:
        relative = name.rstrip(".").removesuffix("." + zone)
        self.knotc("zone-begin", zone)
        self.knotc("zone-set", zone, relative, "60", "TXT", f'"{value}"')
        self.knotc("zone-commit", zone)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(10)


@pytest.fixture(scope="module")
def knot(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Knot]:
    server = Knot(tmp_path_factory.mktemp("knot"))
    yield server
    server.stop()


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory, knot: Knot) -> Iterator[Cluster]:
    with Cluster(tmp_path_factory.mktemp("outside"), 4, 3, unsigned_writes=False, dns_listeners=False,
                 dns_upstream=(f"127.0.0.1:{knot.port}",)) as c:
        yield c


def test_a_name_validated_in_knotd_is_created_and_an_unpublished_one_is_not(cluster: Cluster, knot: Knot) -> None:
    alice = Client(cluster, Ed25519AccountSigner(hashlib.sha256(b"alice").digest()), source="127.0.0.2")
    mallory = Client(cluster, Ed25519AccountSigner(hashlib.sha256(b"mallory").digest()), source="127.0.0.3")
    alice.register()
    mallory.register(node=1)
    opened = alice.write("validate", validation.open_command("alice-corp.net"), node=1)
    knot.publish_txt("alice-corp.net", opened["record_name"], opened["expected"])  # in the public DNS
    alice.write("validate", validation.ready_command(opened["validation_id"]), node=2)
    theirs = mallory.write("validate", validation.open_command("victim-bank.net"), node=3)
    mallory.write("validate", validation.ready_command(theirs["validation_id"]), node=3)  # published nowhere
    deadline = time.monotonic() + 120
    while True:
        code, res = alice.post(alice.signed("dns", zone_command("alice-corp.net.")), node=0)
        if code == 200 or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert code == 200 and res["result"]["origin"] == "alice-corp.net.", res
    time.sleep(2)  # every validator has looked at victim-bank.net by now
    code, res = mallory.post(mallory.signed("dns", zone_command("victim-bank.net.")), node=2)
    assert code == 422 and res["field"] == "create.origin", res
