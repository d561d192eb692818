"""Test clients that hold their own account keys and sign every write, and a loopback "public DNS".

The nodes run with `api.unsigned_writes = false` (the production default): a write must be signed by the
client's account key and is checked by every replica. Each client may send from its own loopback source
address, so the per-address limits of the HTTP guard tell clients apart as they would on a network.
"""

from __future__ import annotations

import base64
import hashlib
import http.client
import json
import socket
import threading
import time
import urllib.parse
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ed25519
from cryptography.x509.oid import NameOID
from node_harness import Cluster, until_issued

from reference_node.genesis import Genesis
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.ca import ownership
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, DeleteRRset, ZoneUpdate
from trustchain.encoding import decode


class PublicDNS:
    """The "public DNS" a validator consults, on loopback: TXT and A records a test publishes.

    `lie_with` makes it a poisoned or lying resolver: every TXT query is answered with those values."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.a: dict[str, str] = {}
        self.lie_with: list[str] | None = None
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.address = f"127.0.0.1:{self.sock.getsockname()[1]}"
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            try:
                wire, peer = self.sock.recvfrom(4096)
            except OSError:
                return
            try:
                self.sock.sendto(self._answer(wire), peer)
            except Exception:  # a malformed query must not stop the server
                continue

    def _answer(self, wire: bytes) -> bytes:
        query = dns.message.from_wire(wire)
        response = dns.message.make_response(query)
        question = query.question[0]
        name = question.name.to_text(omit_final_dot=True).lower()
        txt = self.lie_with if self.lie_with is not None else self.txt.get(name)
        if question.rdtype == dns.rdatatype.TXT and txt is not None:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "TXT", [f'"{v}"' for v in txt]))
        elif question.rdtype == dns.rdatatype.A and name in self.a:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A", [self.a[name]]))
        elif txt is None and name not in self.a:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


def request(method: str, url: str, body: Any = None, source: str = "127.0.0.1",
            timeout: float = 60.0) -> tuple[int, Any, dict[str, str]]:
    """One HTTP request from the loopback address `source`: (status, JSON or text, headers)."""
    parts = urllib.parse.urlsplit(url)
    conn = http.client.HTTPConnection(parts.hostname or "", parts.port, timeout=timeout, source_address=(source, 0))
    try:
        data = json.dumps(body).encode() if body is not None else None
        conn.request(method, parts.path + (f"?{parts.query}" if parts.query else ""), body=data,
                     headers={"content-type": "application/json"})
        resp = conn.getresponse()
        raw = resp.read()
        headers = {k.lower(): v for k, v in resp.getheaders()}
    finally:
        conn.close()
    ctype = headers.get("content-type", "")
    return resp.status, (json.loads(raw) if "json" in ctype else raw.decode(errors="replace")), headers


def zone_command(origin: str) -> bytes:
    return dnsapp.create_command(origin, primary_ns=f"ns1.{origin}", admin=f"hostmaster.{origin}",
                                 nameservers=[f"ns1.{origin}"])


def new_csr(*names: str) -> bytes:
    key = ed25519.Ed25519PrivateKey.generate()
    csr = (x509.CertificateSigningRequestBuilder()
           .subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, None))
    return csr.public_bytes(serialization.Encoding.DER)


class Client:
    """A client holding its own account key, sending from its own loopback address; `n` keeps nonces unique.

    Like a well-behaved client it waits and retries when a node answers 429."""

    def __init__(self, cluster: Cluster, signer: Ed25519AccountSigner, source: str = "127.0.0.1") -> None:
        self.cluster, self.signer, self.source = cluster, signer, source
        self.id = Genesis.load(cluster.dir / "genesis.json").cluster_id
        self.account = account_id(signer.key)
        self.n = int.from_bytes(hashlib.sha256(source.encode() + str(time.time_ns()).encode()).digest()[:4], "big")

    def _nonce(self) -> bytes:
        self.n += 1
        return hashlib.sha256(self.account + self.n.to_bytes(8, "big")).digest()[:16]

    def signed(self, target: str, payload: bytes) -> bytes:
        op = tcapp.signed_operation(self.signer, self.account, self.id, target, payload, nonce=self._nonce(),
                                    deadline_us=time.time_ns() // 1000 + 300_000_000)
        return decode(tcapp.Routed, op).payload

    def registration(self) -> bytes:
        op = tcapp.registration_operation(self.signer, self.id, nonce=self._nonce(),
                                          deadline_us=time.time_ns() // 1000 + 300_000_000)
        return decode(tcapp.Routed, op).payload

    def register(self, node: int = 0) -> None:
        code, res = self.post(self.registration(), node)
        assert code == 200 and res["result"]["status"] == "ok", res

    def post(self, write: bytes, node: int = 0, *, retry: bool = True, wait_s: float | None = None) -> tuple[int, Any]:
        body: dict[str, Any] = {"write": base64.b64encode(write).decode()}
        if wait_s is not None:  # how long a certificate request's answer may wait for the certificate
            body["wait_s"] = wait_s
        while True:
            code, res, headers = request("POST", self.cluster.apis[node] + "/api/v1/write", body, self.source)
            if code != 429 or not retry:
                return code, res
            time.sleep(float(headers.get("retry-after", "1")))

    def send(self, target: str, payload: bytes, node: int = 0) -> tuple[int, Any]:
        """One signed write, answered as it is (a 429 included)."""
        return self.post(self.signed(target, payload), node, retry=False)

    def send_registration(self, node: int = 0) -> tuple[int, Any]:
        return self.post(self.registration(), node, retry=False)

    def write(self, target: str, payload: bytes, node: int = 0) -> Any:
        """A write that must succeed: its typed result as JSON."""
        code, res = self.post(self.signed(target, payload), node)
        assert code == 200, (target, res)
        return res["result"]

    def get(self, path: str, node: int = 0) -> tuple[int, Any]:
        code, res, _ = request("GET", self.cluster.apis[node] + path, source=self.source)
        return code, res

    # ---- the flows a client runs

    def create_zone(self, origin: str, node: int = 0) -> None:
        assert self.write("dns", zone_command(origin), node)["origin"] == origin

    def publish_txt(self, origin: str, name: str, value: str, node: int = 0) -> None:
        update = ZoneUpdate(origin, (AddRecords(name, "TXT", 60, (f'"{value}"',)),))
        self.write("dns", dnsapp.update_command(update), node)

    def remove_txt(self, origin: str, name: str, node: int = 0) -> None:
        self.write("dns", dnsapp.update_command(ZoneUpdate(origin, (DeleteRRset(name, "TXT"),))), node)

    def challenge(self, *names: str, node: int = 0) -> list[dict[str, Any]]:
        res = self.write("ca", cacommands.challenge_command(list(names)), node)
        assert res["status"] == cacommands.STATUS_CHALLENGE, res
        return list(res["challenges"])

    def request_certificate(self, names: tuple[str, ...], proofs: tuple[str, ...], node: int = 0,
                            csr: bytes | None = None, wait_s: float | None = None) -> tuple[int, Any]:
        """A signed certificate request: 201 issued or 202 pending (the node waits at most `wait_s`, capped
        by its `api.issue_wait`), or a refusal."""
        req = cacommands.IssueRequest(csr or new_csr(*names), names, proofs, "test", "paid")
        return self.post(self.signed("ca", cacommands.request_command(req)), node, wait_s=wait_s)

    def obtain(self, origin: str, *names: str, node: int = 0, timeout: float = 120.0) -> str:
        """Challenge, publish the dns-01 records in the client's own zone, request, wait: the serial (hex)."""
        proofs = []
        for c in self.challenge(*names, node=node):
            self.publish_txt(origin, f"{ownership.CHALLENGE_LABEL}.{c['name']}.",
                             ownership.dns01_txt(c["key_authorization"]), node)
            proofs.append(c["key_authorization"])
        code, res = self.request_certificate(tuple(names), tuple(proofs), node)
        assert code in (201, 202) and res["result"]["status"] == cacommands.STATUS_PENDING, res
        issued = until_issued(lambda path: self.get(path, node), code, res, timeout)
        return str(issued["serial"])
