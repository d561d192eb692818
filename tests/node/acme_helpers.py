"""What the ACME node tests share: an http-01 web server, a TrustChain client that signs its own writes (to
own a zone and publish dns-01 records) and an `acme`-library client; the loopback "public DNS" is
`signed_client.PublicDNS`."""

from __future__ import annotations

import hashlib
import http.server
import threading
from typing import Any

from node_harness import Cluster
from signed_client import Client

from trustchain.accounts import Ed25519AccountSigner


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


class ZoneOwner(Client):
    """A TrustChain account (Ed25519) that signs its own writes: it owns a zone and publishes records."""

    def __init__(self, cluster: Cluster, seed: bytes) -> None:
        super().__init__(cluster, Ed25519AccountSigner(hashlib.sha256(seed).digest()))
