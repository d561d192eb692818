"""OCSP for the CLI CA: both of its issuers, a directory that changes underneath, and a bounded server.

Why a module of its own: `ca ocsp --serve` runs for as long as the operator wants while `ca issue` and
`ca revoke` change the directory, so the responder re-reads the state whenever ca.json or state.bin
changed (checked on every request), and it answers for the root too: a CertID naming the root
(the intermediate's status, from the root revocations in ca.json) is signed with the root shares,
one naming the intermediate with the issuing shares, anything else is `unauthorized`.

The server is threaded, with a bound on simultaneous connections, a size limit on requests, a time
limit on each connection, and plain 4xx answers for HTTP-level mistakes; GET follows RFC 6960 A.1
(base64 DER in the path).
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import datetime as dt
import http.server
import os
import socket
import sys
import threading
import urllib.parse
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography.x509 import ocsp as xocsp

from reference_node.cli import EXIT_IO, CLIError
from reference_node.cli.ca_store import CONFIG, STATE, CADir, locked
from trustchain.ca import issuance, ocsp
from trustchain.ca import x509 as cax509
from trustchain.ca.consensus_time import consensus_datetime

__all__ = ["MAX_REQUEST", "OCSPServer", "Responder", "answer", "make_server", "root_status", "serve_forever"]

MAX_REQUEST = 8192  # a one-CertID request is ~100 bytes; with a nonce and a signature well under this
READ_TIMEOUT = 5.0  # seconds a single read may wait
CONNECTION_DEADLINE = 15.0  # seconds a connection may live, however slowly it trickles
MAX_CONNECTIONS = 32
OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"

SignerFor = Callable[[str], cax509.SignFunction]


def root_status(ca: CADir) -> ocsp.StatusLookup:
    """What the root says: its one issued certificate, the intermediate, and whether it is revoked."""
    serial = ca.certificate("issuing").serial_number
    revoked = ca.config.get("root_revocations", {})

    def lookup(asked: int) -> ocsp.CertStatus:
        if asked != serial:
            return ocsp.CertStatus(known=False)
        entry = revoked.get(f"{serial:x}")
        if entry is None:
            return ocsp.CertStatus(known=True)
        return ocsp.CertStatus(True, consensus_datetime(int(entry["revoked_us"])), int(entry["reason"]))

    return lookup


def answer(ca: CADir, app: issuance.CAApplication, signer: SignerFor, request_der: bytes, now: dt.datetime) -> bytes:
    """The DER OCSPResponse for ``request_der``, signed by the key of the issuer its CertID names."""
    request = ocsp.load_request(request_der)
    if request is None:
        return ocsp.error_response(xocsp.OCSPResponseStatus.MALFORMED_REQUEST)
    issuing = ca.profile("issuing")
    if ocsp.issued_by(issuing, request):
        return ocsp.respond(issuing, request_der, ocsp.status_from_app(app), now, signer("issuing"))
    root = ca.profile("root")
    if ocsp.issued_by(root, request):
        return ocsp.respond(root, request_der, root_status(ca), now, signer("root"))
    return ocsp.error_response(xocsp.OCSPResponseStatus.UNAUTHORIZED)


class Responder:
    """``answer`` over a CA directory, re-read whenever ca.json or state.bin changed."""

    def __init__(self, directory: str, operator_key: str | None) -> None:
        self.directory = Path(directory)
        self.operator_key = operator_key
        self._lock = threading.Lock()
        self._stamp: tuple[tuple[int, int, int], ...] = ()
        self._signers: dict[str, cax509.SignFunction] = {}
        self.ca: CADir | None = None
        self.app: issuance.CAApplication | None = None
        self._reload()

    def _current_stamp(self) -> tuple[tuple[int, int, int], ...]:
        out = []
        for name in (CONFIG, STATE):
            try:
                st = os.stat(self.directory / name)
            except FileNotFoundError:
                out.append((0, 0, 0))
                continue
            out.append((st.st_ino, st.st_mtime_ns, st.st_size))  # saves replace files: a new inode each time
        return tuple(out)

    def _reload(self) -> None:
        with locked(self.directory, exclusive=False):
            stamp = self._current_stamp()
            ca = CADir.load(str(self.directory), self.operator_key)
            app = ca.app()
        old = self.ca
        if old is None or any(ca.config[k] != old.config[k] for k in ("operator_key_id", "root", "issuing")):
            self._signers = {}  # a different CA (init --force): load its shares
        self.ca, self.app, self._stamp = ca, app, stamp

    def _signer(self, group: str) -> cax509.SignFunction:
        assert self.ca is not None
        if group not in self._signers:
            self._signers[group] = self.ca.signer(group)
        return self._signers[group]

    def answer(self, request_der: bytes, now: dt.datetime) -> bytes:
        with self._lock:  # one at a time: the state and the shares are shared by every thread
            if self._current_stamp() != self._stamp:
                self._reload()
            assert self.ca is not None and self.app is not None
            return answer(self.ca, self.app, self._signer, request_der, now)


class OCSPServer(http.server.ThreadingHTTPServer):
    """At most ``MAX_CONNECTIONS`` at once (more are closed at once); each lives ``CONNECTION_DEADLINE``."""

    daemon_threads = True

    def __init__(self, address: tuple[str, int], responder: Responder) -> None:
        super().__init__(address, _Handler)
        self.responder = responder
        self.slots = threading.BoundedSemaphore(MAX_CONNECTIONS)

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self.slots.acquire(blocking=False):
            self.shutdown_request(request)
            return
        try:
            super().process_request(request, client_address)
        except BaseException:
            self.slots.release()
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        def cut() -> None:
            with contextlib.suppress(OSError):
                request.shutdown(socket.SHUT_RDWR)

        timer = threading.Timer(CONNECTION_DEADLINE, cut)
        timer.daemon = True
        timer.start()
        try:
            super().process_request_thread(request, client_address)
        finally:
            timer.cancel()
            self.slots.release()


class _Handler(http.server.BaseHTTPRequestHandler):
    timeout = READ_TIMEOUT
    server: OCSPServer

    def _plain(self, code: int, text: str) -> None:
        body = (text + "\n").encode()
        self.send_response(code)
        self.send_header("Content-Type", "text/plain; charset=utf-8")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def _ocsp(self, request_der: bytes) -> None:
        try:
            body = self.server.responder.answer(request_der, dt.datetime.now(dt.UTC))
        except CLIError as exc:  # the directory became unreadable: say so, keep serving
            print(f"trustchain-cli: error: {exc}", file=sys.stderr)
            self._plain(503, f"responder unavailable: {exc}")
            return
        self.send_response(200)
        self.send_header("Content-Type", OCSP_RESPONSE)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        self.end_headers()
        self.wfile.write(body)

    def _body(self, length: int) -> bytes | None:
        data = b""
        while len(data) < length:
            try:
                chunk = self.rfile.read1(length - len(data))
            except OSError:
                return None
            if not chunk:
                return None
            data += chunk
        return data

    def do_POST(self) -> None:
        ctype = self.headers.get("Content-Type", "").split(";")[0].strip().lower()
        if ctype != OCSP_REQUEST:
            return self._plain(415, f"Content-Type: must be {OCSP_REQUEST}")
        text = self.headers.get("Content-Length")
        if text is None:
            return self._plain(411, "Content-Length: required")
        if not text.strip().isdigit():
            return self._plain(400, f"Content-Length: {text[:40]!r} is not a non-negative integer")
        length = int(text)
        if length > MAX_REQUEST:
            return self._plain(413, f"Content-Length: an OCSP request is at most {MAX_REQUEST} bytes")
        body = self._body(length)
        if body is None:
            return self._plain(400, "body: shorter than Content-Length or too slow")
        return self._ocsp(body)

    def do_GET(self) -> None:
        path = self.path.split("?", 1)[0]
        encoded = path.lstrip("/").removeprefix("ocsp/")
        if not encoded:
            return self._plain(400, "path: GET /<base64 DER OCSP request> (RFC 6960 A.1), or POST")
        if len(encoded) > 3 * MAX_REQUEST:
            return self._plain(414, f"path: an OCSP request is at most {MAX_REQUEST} bytes")
        text = urllib.parse.unquote(encoded)
        try:
            der = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            try:
                der = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                return self._plain(400, "path: not base64 (RFC 6960 A.1: base64 of the DER request)")
        return self._ocsp(der)

    def log_message(self, format: str, *args: Any) -> None:
        print(f"ocsp {self.address_string()} {format % args}", file=sys.stderr)


def make_server(directory: str, operator_key: str | None, port: int, host: str = "127.0.0.1") -> OCSPServer:
    responder = Responder(directory, operator_key)
    try:
        return OCSPServer((host, port), responder)
    except OSError as exc:
        raise CLIError(f"--serve: cannot listen on {host}:{port}: {exc}", EXIT_IO) from None


def serve_forever(server: OCSPServer) -> None:
    host, port = server.server_address[:2]
    print(f"OCSP responder on http://{host!s}:{port}/", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
