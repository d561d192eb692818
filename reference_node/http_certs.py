"""How the node answers a certificate request: the certificate itself when it is issued within a bounded
wait, else a pending id to poll.

Why a wait: the replicated CA answers every approved request `pending`. Its serial is drawn from the
reveals of f+1 validators, which are ordered only after the request (`trustchain.ca.serials`), and the
certificate is then threshold-signed and logged. Both usually take well under a second, so the node
holds the answer for up to `api.issue_wait` (a client's `wait_s` may shorten it, never lengthen it: a
waiting answer holds a connection, and the per-address connection limit bounds how many one client
holds). Issued by then: 201 with the serial and the certificate. Not yet: 202 with the request's
`pending_id`, `Location: /api/v1/cert/request/{pending_id}` and `Retry-After`; `GET` on that location
answers 200 with the certificate once it is issued, 202 while it is pending, 404 once it expired.

The same answer, under `issuance`, comes with a signed write (`POST /api/v1/write`) whose result is a
certificate request's.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node.http_json import error_response
from trustchain.ca import commands as cacommands
from trustchain.ca import records as carecords

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["RETRY_AFTER_S", "Issuance", "is_certificate_request", "location"]

RETRY_AFTER_S = 1  # what a 202 tells the client to wait before it polls


def location(pending_id: int) -> str:
    """Where the certificate of the request answered with `pending_id` is polled."""
    return f"/api/v1/cert/request/{pending_id}"


def is_certificate_request(result: Any) -> bool:
    """Is `result` the CA's answer to an approved certificate request (pending, with its pending id)?"""
    return (isinstance(result, cacommands.CAResult) and result.ok and result.status == cacommands.STATUS_PENDING
            and result.kind == cacommands.KIND_CERTIFICATE and bool(result.pending_ids))


class Issuance:
    """The certificate answers of one node's API. `chain_pem` is sent beside each certificate."""

    def __init__(self, node: Node, chain_pem: list[str]) -> None:
        self.node = node
        self.chain_pem = chain_pem

    @property
    def max_wait_s(self) -> float:
        return self.node.config.api.issue_wait_us / 1e6

    def wait_s(self, asked: float | None) -> float:
        """How long an answer waits: `api.issue_wait`, or less if the client asked for less."""
        return self.max_wait_s if asked is None else max(0.0, min(float(asked), self.max_wait_s))

    async def settle(self, pending_id: int, serial: bytes, wait_s: float) -> bytes | None:
        """Wait at most `wait_s` for the certificate of the request `pending_id`; its serial once known
        (`serial` is what the request's result said, empty while the validators' reveals are awaited)."""
        ca = self.node.app.ca
        known = serial or ca.request_serial(pending_id)
        if (known is None or known not in ca.issued) and wait_s > 0:
            done = await self.node.wait_certificate(pending_id, wait_s)
            known = done.serial if done is not None else ca.request_serial(pending_id)
        return known

    def document(self, pending_id: int, serial: bytes | None) -> tuple[bool, dict[str, Any]]:
        """(issued?, the JSON of the request `pending_id`). `serial_randomness` shows what its serial was
        drawn from, for anyone to check (`trustchain.ca.serials`); `serial` is empty until it is fixed."""
        ca = self.node.app.ca
        record = ca.issued.get(serial) if serial else None
        drawn = ca.serials.resolved.get(pending_id)
        audit = {} if drawn is None else {"serial_randomness": {
            "request": drawn.request.hex(), "attempt": drawn.attempt,
            "contributors": [{"validator": s.validator, "commitment": s.digest.hex(), "value": s.value.hex()}
                             for s in drawn.slots]}}
        if record is None:
            return False, {"status": "pending", "pending_id": pending_id, "serial": (serial or b"").hex(),
                           "location": location(pending_id), **audit}
        return True, {"status": "issued", "pending_id": pending_id, **self.cert_json(record), **audit}

    def answer(self, pending_id: int, serial: bytes | None, *, issued_status: int = 201,
               extra: dict[str, Any] | None = None) -> web.Response:
        """`issued_status` (201 to a request, 200 to a poll) with the certificate, else 202 with where to
        poll; `extra` is the rest of the answer (a signed write's typed result), the request's JSON is
        then under `issuance`."""
        issued, doc = self.document(pending_id, serial)
        body = doc if extra is None else {**extra, "issuance": doc}
        if issued:
            return web.json_response(body, status=issued_status)
        return web.json_response(body, status=202, headers={"Location": location(pending_id),
                                                            "Retry-After": str(RETRY_AFTER_S)})

    async def by_request(self, request: web.Request) -> web.Response:
        """`GET /api/v1/cert/request/{pending_id}`: 200 with the certificate once issued, 202 pending."""
        text = request.match_info["pending_id"]
        if not text.isascii() or not text.isdigit() or len(text) > 19:
            return error_response("pending_id", "a decimal pending id")
        pending_id = int(text)
        serial = self.node.app.ca.request_serial(pending_id)
        issued = serial is not None and serial in self.node.app.ca.issued
        if not issued and not self.node.app.issuance_in_progress(pending_id):
            return error_response("pending_id", "no request with this pending id is known (or it expired)", 404)
        return self.answer(pending_id, serial, issued_status=200)

    def cert_json(self, rec: carecords.IssuedCertificate) -> dict[str, Any]:
        cert = x509.load_der_x509_certificate(rec.certificate_der)
        return {
            "serial": rec.serial.hex(),
            "names": list(rec.names),
            "not_after": cert.not_valid_after_utc.isoformat(),
            "revoked": rec.revoked_us is not None,
            "revocation_reason": rec.reason,
            "certificate": cert.public_bytes(serialization.Encoding.PEM).decode(),
            "chain": list(self.chain_pem),
        }
