"""ACME (RFC 8555) over HTTP: the thin front end of the replicated ACME server (`trustchain.acme`).

Every POST is ordered as the client sent it (the path and the JWS bytes) and answered from the typed
result of this node's replica; this module only maps HTTP to that request and the result back to
ACME's JSON objects, headers (Replay-Nonce on every response, Location, Link rel="index"/"up",
Retry-After while an order is processed or a challenge is being looked at) and status codes. It
decides nothing: a node cannot make a request in a client's name, and any node can serve any step.

Served here without consensus: the directory, new nonces (they embed this node's clock, which every
replica checks against consensus time) and renewal information (RFC 9773, from the replicated CA).
A POST every replica would refuse whatever its state (no such resource, no JWS, a url for another
resource) is answered here without ordering it.
"""

from __future__ import annotations

import datetime as dt
import logging
import math
import secrets
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from multidict import CIMultiDict

from reference_node.clock import now_us
from reference_node.runtime import PRESIGNED, NodeHalted, SubmitTimeout
from trustchain.acme import jws as acmejws
from trustchain.acme import paths, problems, renewal, views
from trustchain.acme.problems import Problem, problem
from trustchain.acme.results import (
    KIND_ACCOUNT,
    KIND_AUTHZ,
    KIND_CERTIFICATE,
    KIND_CHALLENGE,
    KIND_ORDER,
    KIND_ORDERS,
    AcmeResult,
    acme_request,
    decode_result,
)
from trustchain.app import trustchain as tcapp
from trustchain.ca.records import serial_bytes
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["ACMEFrontEnd", "is_acme", "openapi_paths", "rate_limited", "register"]

log = logging.getLogger("trustchain.acme")
JOSE = "application/jose+json"
PROBLEM = "application/problem+json"
PEM_CHAIN = "application/pem-certificate-chain"
RETRY_AFTER_S = 1


def register(app: web.Application, node: Node, intermediate_pem: bytes,
             admit_registration: Callable[[web.Request], float] | None = None) -> None:
    """Serve ACME under /acme on `app` (the node's API application). `admit_registration(request)`: 0, or
    the seconds until this client may create another account (the node's per-IP registration limit,
    which newAccount passes like a signed registration does)."""
    front = ACMEFrontEnd(node, intermediate_pem, admit_registration)
    r = app.router
    r.add_get(paths.DIRECTORY, front.directory)
    r.add_get(paths.NEW_NONCE, front.new_nonce)  # and HEAD
    r.add_get(paths.RENEWAL_INFO + "/{cert_id}", front.renewal_info)
    r.add_post(paths.PREFIX + "/{resource:.+}", front.post)


def _base(request: web.Request) -> str:
    return f"{request.scheme}://{request.host}"


def is_acme(request: web.Request) -> bool:
    return request.path == paths.PREFIX or request.path.startswith(paths.PREFIX + "/")


def _headers(request: web.Request) -> CIMultiDict[str]:
    headers: CIMultiDict[str] = CIMultiDict()
    headers["Replay-Nonce"] = acmejws.issue_nonce(now_us(), secrets.token_bytes(16))
    headers["Cache-Control"] = "no-store"
    headers.add("Link", f'<{_base(request)}{paths.DIRECTORY}>;rel="index"')
    return headers


def rate_limited(request: web.Request, wait_s: int, what: str = "requests") -> web.Response:
    """The node's per-IP limiter refusing an ACME request: a `rateLimited` problem document with
    Retry-After (RFC 8555 section 6.6) and a fresh nonce, as ACME clients expect of any error."""
    p = problem(problems.RATE_LIMITED, f"rate: too many {what} from this address, retry in {wait_s} s")
    headers = _headers(request)
    headers["Retry-After"] = str(wait_s)
    return web.json_response(views.problem_json(p), status=p.status, headers=headers, content_type=PROBLEM)


class ACMEFrontEnd:
    def __init__(self, node: Node, intermediate_pem: bytes,
                 admit_registration: Callable[[web.Request], float] | None = None) -> None:
        self.node = node
        self.admit_registration = admit_registration
        self.intermediates = x509.load_pem_x509_certificates(intermediate_pem) if intermediate_pem else []

    def _headers(self, request: web.Request) -> CIMultiDict[str]:
        return _headers(request)

    def _problem(self, request: web.Request, p: Problem, location: str = "") -> web.Response:
        headers = self._headers(request)
        if location:
            headers["Location"] = _base(request) + location
        return web.json_response(views.problem_json(p), status=p.status, headers=headers, content_type=PROBLEM)

    async def directory(self, request: web.Request) -> web.Response:
        return web.json_response(views.directory_json(_base(request)), headers=self._headers(request))

    async def new_nonce(self, request: web.Request) -> web.Response:
        return web.Response(status=200 if request.method == "HEAD" else 204, headers=self._headers(request))

    async def post(self, request: web.Request) -> web.Response:
        if request.content_type != JOSE:
            return self._problem(request, problem(problems.MALFORMED, f"content-type: must be {JOSE}"))
        if request.content_length is not None and request.content_length > acmejws.MAX_JWS_BYTES:
            return self._problem(request, problem(problems.MALFORMED, f"body: larger than {acmejws.MAX_JWS_BYTES}"))
        body = await request.content.read(acmejws.MAX_JWS_BYTES + 1)
        if len(body) > acmejws.MAX_JWS_BYTES:
            return self._problem(request, problem(problems.MALFORMED, f"body: larger than {acmejws.MAX_JWS_BYTES}"))
        junk = _precheck(request.path, body)
        if junk is not None:
            return self._problem(request, junk)
        if request.path == paths.NEW_ACCOUNT and self.admit_registration is not None:
            wait = self.admit_registration(request)  # each may create an account, with quotas of its own
            if wait:
                return rate_limited(request, max(1, math.ceil(wait)), "account registrations")
        operation = tcapp.acme_operation(acme_request(request.path, body))
        try:
            raw = await self.node.submit(PRESIGNED, operation)
        except SubmitTimeout as exc:
            return self._problem(request, problems.Problem(problems.SERVER_INTERNAL, f"consensus: {exc}", 503))
        except NodeHalted as exc:
            return self._problem(request, problems.Problem(problems.SERVER_INTERNAL, f"node: halted ({exc})", 503))
        try:
            result = decode_result(raw)
        except DecodeError:
            log.error("ACME request answered with a result that is not an ACME result")
            return self._problem(request, problem(problems.SERVER_INTERNAL, "result: not an ACME result"))
        return self._render(request, result)

    def _render(self, request: web.Request, res: AcmeResult) -> web.Response:
        if res.problem is not None:
            return self._problem(request, res.problem, res.location)
        base = _base(request)
        headers = self._headers(request)
        if res.location:
            headers["Location"] = base + res.location
        if views.busy(res.order, res.authz):
            headers["Retry-After"] = str(RETRY_AFTER_S)
        doc: Any
        if res.kind == KIND_ACCOUNT and res.account is not None:
            doc = views.account_json(res.account, base)
        elif res.kind == KIND_ORDER and res.order is not None:
            doc = views.order_json(res.order, base)
        elif res.kind == KIND_AUTHZ and res.authz is not None:
            doc = views.authz_json(res.authz, base)
        elif res.kind == KIND_CHALLENGE and res.authz is not None:
            challenge = res.authz.challenge(res.challenge)
            assert challenge is not None
            headers.add("Link", f'<{base}{paths.authz_path(res.authz.authz_id)}>;rel="up"')
            doc = views.challenge_json(res.authz, challenge, base)
        elif res.kind == KIND_ORDERS:
            doc = {"orders": [base + paths.order_path(o) for o in res.orders]}
        elif res.kind == KIND_CERTIFICATE:
            return web.Response(body=self._chain(res.certificate_der), status=res.status, headers=headers,
                                content_type=PEM_CHAIN)
        else:
            return web.Response(status=res.status, headers=headers)
        return web.json_response(doc, status=res.status, headers=headers)

    def _chain(self, leaf_der: bytes) -> bytes:
        """The leaf and the issuing CA certificate that signed it (installed issuers first, newest first)."""
        leaf = x509.load_der_x509_certificate(leaf_der)
        issued = [x509.load_der_x509_certificate(d) for d in reversed(self.node.app.ca.issuer_certificates)]
        issuer = next((c for c in [*issued, *self.intermediates] if c.subject == leaf.issuer), None)
        pem = leaf.public_bytes(Encoding.PEM)
        return pem + issuer.public_bytes(Encoding.PEM) if issuer is not None else pem

    async def renewal_info(self, request: web.Request) -> web.Response:
        parsed = renewal.parse_cert_id(request.match_info["cert_id"])
        if parsed is None:
            return self._problem(request, problem(problems.MALFORMED, "certID: not base64url(AKI).base64url(serial)"))
        _, serial = parsed
        record = self.node.app.ca.issued.get(serial_bytes(serial))
        if record is None:
            return self._problem(request, problem(problems.NOT_FOUND, "certID: no certificate with this serial"))
        cert = x509.load_der_x509_certificate(record.certificate_der)
        if renewal.cert_id(cert) != request.match_info["cert_id"]:
            return self._problem(request, problem(problems.NOT_FOUND, "certID: the key identifier does not match"))
        start, end = renewal.suggested_window(_us(cert.not_valid_before_utc), _us(cert.not_valid_after_utc),
                                              record.revoked_us is not None, now_us())
        headers = self._headers(request)
        headers["Retry-After"] = str(renewal.RETRY_AFTER_S)
        return web.json_response({"suggestedWindow": {"start": views.rfc3339(start), "end": views.rfc3339(end)}},
                                 headers=headers)


def _precheck(path: str, body: bytes) -> Problem | None:
    """What every replica would refuse whatever its state (no such resource, a body that is no JWS, a
    signed url for another resource), answered here so that junk never reaches consensus. The replicas
    check all of it again, and the rest (signature, nonce, account) only they can."""
    if paths.match(path) is None:
        return problem(problems.NOT_FOUND, f"path: no ACME resource at {path[:100]!r}")
    parsed = acmejws.parse(body)
    if isinstance(parsed, Problem):
        return parsed
    if parsed.url_path != path:
        return problem(problems.UNAUTHORIZED, "url: the signed url is not the URL this was posted to")
    return None


def _us(t: dt.datetime) -> int:
    return int(t.timestamp()) * 1_000_000


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3 entries for the ACME routes (merged into the node's document). Every POST is a JWS
    (RFC 8555 section 6.2), ordered and checked by every replica; refusals are problem documents."""
    problem_doc = {"description": "an ACME problem document (RFC 8555 section 6.7; 429: rateLimited, with "
                   "Retry-After)", "content": {PROBLEM: {"schema": {"type": "object", "required": ["type"],
                                                                      "properties": {"type": {"type": "string"},
                                                                                     "detail": {"type": "string"},
                                                                                     "status": {"type": "integer"}}}}}}
    json_ok = {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}

    def get(summary: str, ok: dict[str, Any], param: str = "") -> dict[str, Any]:
        o: dict[str, Any] = {"summary": summary, "responses": {"200": ok, "4XX": problem_doc}}
        if param:
            o["parameters"] = [{"name": param, "in": "path", "required": True, "schema": {"type": "string"}}]
        return o

    post = {"summary": "An ACME request (new-account, new-order, acct/..., order/..., authz/..., chall/..., "
            "cert/..., revoke-cert, key-change): a flattened JWS, ordered as sent",
            "parameters": [{"name": "resource", "in": "path", "required": True, "schema": {"type": "string"}}],
            "requestBody": {"required": True, "content": {JOSE: {"schema": {
                "type": "object", "required": ["protected", "payload", "signature"],
                "properties": {"protected": {"type": "string"}, "payload": {"type": "string"},
                               "signature": {"type": "string"}}}}}},
            "responses": {"200": json_ok, "201": json_ok, "4XX": problem_doc,
                          "503": {"description": "not ordered in time, or the node halted (a problem document)"}}}
    return {
        paths.DIRECTORY: {"get": get("ACME directory (RFC 8555 section 7.1.1)", json_ok)},
        paths.NEW_NONCE: {"get": get("A fresh Replay-Nonce (204; HEAD answers 200)",
                                     {"description": "a nonce in Replay-Nonce"})},
        paths.RENEWAL_INFO + "/{cert_id}": {"get": get("Renewal information (RFC 9773)", json_ok, "cert_id")},
        paths.PREFIX + "/{resource}": {"post": post},
    }
