"""What the ACME node tests share: a loopback "public DNS", an http-01 web server, a TrustChain client that
signs its own writes (to own a zone and publish dns-01 records) and an `acme`-library client."""

from __future__ import annotations

import base64
import hashlib
import http.server
import socket
import threading
import time
from typing import Any

import dns.message
import dns.rcode
import dns.rdatatype
import dns.rrset
from node_harness import Cluster
from node_harness import http as api_call

from reference_node.genesis import Genesis
from trustchain.accounts import Ed25519AccountSigner, account_id
from trustchain.app import trustchain as tcapp
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import AddRecords, DeleteRRset, ZoneUpdate
from trustchain.encoding import decode


class PublicDNS:
    """The "public DNS" the validators consult, on loopback: TXT records and A records a test sets."""

    def __init__(self) -> None:
        self.txt: dict[str, list[str]] = {}
        self.a: dict[str, str] = {}
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
        if question.rdtype == dns.rdatatype.TXT and name in self.txt:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "TXT",
                                                            [f'"{v}"' for v in self.txt[name]]))
        elif question.rdtype == dns.rdatatype.A and name in self.a:
            response.answer.append(dns.rrset.from_text_list(question.name, 60, "IN", "A", [self.a[name]]))
        elif name not in self.txt and name not in self.a:
            response.set_rcode(dns.rcode.NXDOMAIN)
        return response.to_wire()


class ChallengeServer:
    """A web server on loopback serving http-01 key authorizations from `tokens` (or a directory)."""

    def __init__(self) -> None:
        self.tokens: dict[str, str] = {}
        self.root: str | None = None
        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                prefix = "/.well-known/acme-challenge/"
                token = self.path[len(prefix):] if self.path.startswith(prefix) else ""
                body = outer.lookup(token)
                if body is None:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "text/plain")
                self.end_headers()
                self.wfile.write(body.encode())

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def lookup(self, token: str) -> str | None:
        if not token or "/" in token or ".." in token:
            return None
        if token in self.tokens:
            return self.tokens[token]
        if self.root is not None:
            try:
                with open(f"{self.root}/.well-known/acme-challenge/{token}") as f:
                    return f.read()
            except OSError:
                return None
        return None


class ZoneOwner:
    """A TrustChain account (Ed25519) that signs its own writes: it owns a zone and publishes records."""

    def __init__(self, cluster: Cluster, seed: bytes) -> None:
        self.cluster = cluster
        self.signer = Ed25519AccountSigner(hashlib.sha256(seed).digest())
        self.id = Genesis.load(cluster.dir / "genesis.json").cluster_id
        self.account = account_id(self.signer.key)
        self.n = int(time.time() * 1000)

    def _nonce(self) -> bytes:
        self.n += 1
        return hashlib.sha256(self.account + self.n.to_bytes(8, "big")).digest()[:16]

    def _post(self, operation: bytes, node: int = 0) -> tuple[int, Any]:
        write = decode(tcapp.Routed, operation).payload
        return api_call("POST", self.cluster.apis[node] + "/api/v1/write", {"write": base64.b64encode(write).decode()})

    def register(self) -> None:
        code, res = self._post(tcapp.registration_operation(self.signer, self.id, nonce=self._nonce(),
                                                            deadline_us=time.time_ns() // 1000 + 300_000_000))
        assert code == 200, res

    def write(self, target: str, payload: bytes, node: int = 0) -> tuple[int, Any]:
        return self._post(tcapp.signed_operation(self.signer, self.account, self.id, target, payload,
                                                 nonce=self._nonce(),
                                                 deadline_us=time.time_ns() // 1000 + 300_000_000), node)

    def create_zone(self, origin: str) -> None:
        create = dnsapp.create_command(origin, primary_ns=f"ns1.{origin}", admin=f"hostmaster.{origin}",
                                       nameservers=[f"ns1.{origin}"])
        code, res = self.write("dns", create)
        assert code == 200, res

    def publish_txt(self, origin: str, name: str, value: str) -> None:
        update = ZoneUpdate(origin, (AddRecords(name, "TXT", 60, (f'"{value}"',)),))
        code, res = self.write("dns", dnsapp.update_command(update))
        assert code == 200, res

    def remove_txt(self, origin: str, name: str) -> None:
        code, res = self.write("dns", dnsapp.update_command(ZoneUpdate(origin, (DeleteRRset(name, "TXT"),))))
        assert code == 200, res
