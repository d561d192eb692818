"""End to end: BIND's validator (delv) queries our Authority over loopback UDP and must fully
validate positive, CNAME, NXDOMAIN and NODATA answers against our DS as trust anchor."""

from __future__ import annotations

import shutil
import socket
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import dns.rrset
import pytest
from dns_testutil import make_zone, seed

from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SigningPolicy, sign_zone
from trustchain.dns.keys import KeySet

pytestmark = pytest.mark.skipif(
    shutil.which("delv") is None, reason="delv not installed (apt: bind9-dnsutils)"
)


class LoopbackServer:
    """Bounded UDP loop on 127.0.0.1 feeding Authority.answer; stops by itself."""

    def __init__(self, auth: Authority) -> None:
        self.auth = auth
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.settimeout(0.2)
        self.port = self.sock.getsockname()[1]
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        deadline = time.monotonic() + 60
        for _ in range(5000):
            if self.stop.is_set() or time.monotonic() > deadline:
                break
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            out = self.auth.answer(data, int(time.time()), max_udp=1232)
            if out:
                self.sock.sendto(out, addr)
        self.sock.close()


def _anchor_file(path: Path, ds: dns.rrset.RRset) -> Path:
    lines = [
        f'  {ds.name} static-ds {r.key_tag} {r.algorithm} {r.digest_type} "{r.digest.hex().upper()}";'
        for r in ds
    ]
    path.write_text("trust-anchors {\n" + "\n".join(lines) + "\n};\n")
    return path


@pytest.fixture(params=[None, NSEC3Params()], ids=["nsec", "nsec3"])
def served(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[tuple[int, Path, Path]]:
    zone = make_zone()
    keys = KeySet.initial(seed("ksk"), seed("zsk"))
    signed = sign_zone(zone, keys, int(time.time()), SigningPolicy(nsec3=request.param))
    auth = Authority()
    auth.load(zone, signed)
    server = LoopbackServer(auth)
    server.thread.start()
    good = _anchor_file(tmp_path / "good.conf", signed.ds())
    bad = _anchor_file(
        tmp_path / "bad.conf", KeySet.initial(seed("other"), seed("zsk")).ds_records(zone.origin)
    )
    yield server.port, good, bad
    server.stop.set()
    server.thread.join(timeout=5)


def _delv(port: int, anchors: Path, qname: str, qtype: str) -> str:
    cmd = ["delv", "@127.0.0.1", "-p", str(port), "-a", str(anchors), "+root=tc.example.", qname, qtype]
    result = subprocess.run(cmd, capture_output=True, text=True, timeout=30, check=False)
    return result.stdout + result.stderr


@pytest.mark.parametrize(
    ("qname", "qtype", "expect"),
    [
        ("www.tc.example.", "A", "192.0.2.1"),
        ("alias2.tc.example.", "AAAA", "2001:db8::1"),
        ("nope.tc.example.", "A", "NXDOMAIN"),
        ("x.y.a.b.deep.tc.example.", "TXT", "NXDOMAIN"),
        ("www.tc.example.", "TXT", "NXRRSET"),
        ("deep.tc.example.", "A", "NXRRSET"),
        ("tc.example.", "CAA", "ca.trustchain.example"),
    ],
)
def test_delv_fully_validates(served: tuple[int, Path, Path], qname: str, qtype: str, expect: str) -> None:
    port, good, _bad = served
    out = _delv(port, good, qname, qtype)
    assert "fully validated" in out and expect in out, out


def test_delv_rejects_wrong_anchor(served: tuple[int, Path, Path]) -> None:
    port, _good, bad = served
    out = _delv(port, bad, "www.tc.example.", "A")
    assert "fully validated" not in out, out
