"""The node's HTTP API (aiohttp): the REST endpoints of TrustChain's design, WebSocket streams, Prometheus metrics,
an OpenAPI 3 document and CT tiles.

Reads are served from this replica's executed state. Writes become PBFT requests (`Node.submit`) and
are answered once this node's replica executed them. Every validation failure is a 4xx JSON body
`{"error": "<field>: <reason>", "field": "<field>", "reason": "<reason>"}`; a request the replicated
application rejected is 422 with the application's own field and reason (for the CA, its typed result's
`detail`).
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import dns.flags
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
from aiohttp import WSMsgType, web
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node import acme_http, ct_http, http_certs, http_pki, http_validators
from reference_node.health import PEER_SILENCE_S, HealthMonitor
from reference_node.http_guard import (
    ConnectionGuard,
    GuardLimits,
    RateLimiter,
    client_ip,
    rate_limit_middleware,
    retry_after_s,
    too_many,
)
from reference_node.http_json import error_response as _error
from reference_node.http_json import jsonable as _jsonable
from reference_node.http_openapi import STREAMS, openapi_document
from reference_node.runtime import PRESIGNED, Node, NodeHalted, SubmitTimeout
from trustchain.accounts import ACCOUNTS, AccountResult, SignedWrite
from trustchain.app import kvstore, validation
from trustchain.app import trustchain as tcapp
from trustchain.app.gate import SIGNED
from trustchain.app.validation import VALIDATE
from trustchain.authorization import validator_votes as votes
from trustchain.ca import commands as cacommands
from trustchain.ca import ownership
from trustchain.ca import records as carecords
from trustchain.ca import urls as causrls
from trustchain.ct import api as ctapi
from trustchain.ct import app as ctapp
from trustchain.dns import app as dnsapp
from trustchain.dns.commands import command_from_json
from trustchain.dns.validator import Validator, ZoneKeys
from trustchain.dns.zone import ZoneUpdateError
from trustchain.encoding import DecodeError, decode, encode
from trustchain.errors import TrustChainError

log = logging.getLogger("trustchain.api")
R = TypeVar("R")
MAX_BODY = 1 << 20
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class FieldError(TrustChainError):
    def __init__(self, field: str, reason: str, status: int = 400) -> None:
        super().__init__(f"{field}: {reason}")
        self.field, self.reason, self.status = field, reason, status


async def _json_body(request: web.Request) -> dict[str, Any]:
    if request.content_length is not None and request.content_length > MAX_BODY:
        raise FieldError("body", f"larger than {MAX_BODY} bytes", 413)
    raw = await request.read()
    try:
        doc = json.loads(raw or b"null")
    except (UnicodeDecodeError, ValueError) as exc:
        raise FieldError("body", f"not valid JSON: {exc}") from None
    except RecursionError:
        raise FieldError("body", "JSON nested too deeply") from None
    if not isinstance(doc, dict):
        raise FieldError("body", "must be a JSON object")
    try:  # JSON may escape lone UTF-16 surrogates, which no field can use (they cannot be UTF-8 encoded)
        json.dumps(doc, ensure_ascii=False).encode()
    except UnicodeEncodeError:
        raise FieldError("body", "contains an unpaired UTF-16 surrogate (\\ud800-\\udfff)") from None
    return doc


def _str_field(doc: dict[str, Any], key: str, *, required: bool = True, default: str = "") -> str:
    v = doc.get(key)
    if v is None:
        if required:
            raise FieldError(key, "required")
        return default
    if not isinstance(v, str):
        raise FieldError(key, f"expected a string, got {type(v).__name__}")
    return v


def _str_list(doc: dict[str, Any], key: str) -> list[str]:
    v = doc.get(key)
    if not isinstance(v, list) or not v or not all(isinstance(x, str) and x for x in v):
        raise FieldError(key, "expected a non-empty list of strings")
    return v


def _int_field(doc: dict[str, Any], key: str, default: int, minimum: int = 0) -> int:
    v = doc.get(key, default)
    if not isinstance(v, int) or isinstance(v, bool) or v < minimum:
        raise FieldError(key, f"expected an integer >= {minimum}, got {v!r}")
    return v


def _serial_hex(text: str, field: str = "serial") -> bytes:
    t = text.lower().removeprefix("0x")
    try:
        value = int(t, 16)
    except ValueError:
        raise FieldError(field, f"{text!r} is not a hexadecimal serial number") from None
    if value <= 0:
        raise FieldError(field, "must be positive")
    return carecords.serial_bytes(value)


def _csr_der(text: str) -> bytes:
    data = text.encode()
    try:
        if text.lstrip().startswith("-----"):
            csr = x509.load_pem_x509_csr(data)
        else:
            csr = x509.load_der_x509_csr(base64.b64decode(data, validate=True))
    except (ValueError, binascii.Error) as exc:
        raise FieldError("csr", f"not a PEM or base64-DER certificate request ({str(exc)[:80]})") from None
    return csr.public_bytes(serialization.Encoding.DER)


def _wait_field(doc: dict[str, Any]) -> float | None:
    """A client's `wait_s`: how long it lets a certificate request's answer wait (capped by `api.issue_wait`)."""
    v = doc.get("wait_s")
    if v is None:
        return None
    if not isinstance(v, int | float) or isinstance(v, bool) or not 0 <= v <= 86_400:
        raise FieldError("wait_s", f"expected a number of seconds between 0 and 86400, got {v!r}")
    return float(v)


def _ca_result(raw: bytes, *expected: str) -> cacommands.CAResult:
    """The CA's typed result for a routed CA command, if its status is one of `expected`. A rejection becomes a 422
    naming the CA's field; a router error, an undecodable result or another status is this node's fault
    (500)."""
    res = _typed(raw, cacommands.decode_result)
    if not res.ok:
        raise FieldError(res.field, res.reason, 422)
    if res.status not in expected:
        raise FieldError("result", f"CA answered {res.status!r} ({res.detail}), expected {' or '.join(expected)}",
                         500)
    return res
def _rejected(detail: str) -> web.Response:
    """422 for a typed result the replicated application rejected; `detail` is "<field>: <reason>"."""
    field, _, reason = detail.partition(": ")
    return web.json_response({"error": detail, "field": field, "reason": reason}, status=422)


def _typed(raw: bytes, decode_result: Callable[[bytes], R]) -> R:
    """A sub-application's typed result; refused at the write gate (signature, nonce, authorization) is a
    422 naming the field, bytes that are no result at all are this node's fault (500)."""
    try:
        res = tcapp.decode_routed(raw, decode_result)
    except tcapp.MalformedResult as exc:
        raise FieldError("result", f"malformed result: {exc}", 500) from None
    if isinstance(res, tcapp.RouteError):
        field, _, reason = res.detail.partition(": ")
        raise FieldError(field, reason, 422)
    return res


RESULT_DECODERS: dict[str, Callable[[bytes], Any]] = {
    tcapp.CA: cacommands.decode_result,
    tcapp.CT: ctapp.decode_result,
    tcapp.DNS: dnsapp.decode_result,
    tcapp.KV: kvstore.decode_result,
    ACCOUNTS: lambda data: decode(AccountResult, data),
    VALIDATE: validation.decode_result,
    votes.VOTES: votes.decode_result,
}


def _b64_field(doc: dict[str, Any], key: str) -> bytes:
    text = _str_field(doc, key)
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        raise FieldError(key, "not valid base64") from None


def _refusal(request: web.Request, wait: float) -> web.Response:
    """A request over the per-IP limits: an ACME problem document under /acme, the API's JSON elsewhere."""
    return acme_http.rate_limited(request, retry_after_s(wait)) if acme_http.is_acme(request) else too_many(wait)


class API:
    def __init__(self, node: Node, root_pem: bytes = b"", intermediate_pem: bytes = b"",
                 guard_limits: GuardLimits | None = None) -> None:
        guard_limits = guard_limits or GuardLimits()
        self.node = node
        self.root_pem = root_pem
        self.intermediate_pem = intermediate_pem
        self.issuance = http_certs.Issuance(node, [intermediate_pem.decode(), root_pem.decode()])
        self.health_monitor = HealthMonitor()
        self.guard = ConnectionGuard(guard_limits)
        self.limiter = RateLimiter(guard_limits)
        self.app = web.Application(
            middlewares=[self.guard.middleware(), rate_limit_middleware(self.limiter, _refusal), self._middleware],
            client_max_size=MAX_BODY)
        r = self.app.router
        r.add_post("/api/v1/cert/challenge", self.cert_challenge)
        r.add_post("/api/v1/cert/request", self.cert_request)
        r.add_post("/api/v1/cert/renew", self.cert_renew)
        r.add_post("/api/v1/cert/revoke", self.cert_revoke)
        r.add_get("/api/v1/cert/request/{pending_id}", self.issuance.by_request)
        r.add_get("/api/v1/cert/{id}", self.cert_get)
        r.add_get("/api/v1/dns/resolve", self.dns_resolve)
        r.add_post("/api/v1/dns/update", self.dns_update)
        r.add_get("/api/v1/dns/dnssec/validate", self.dns_validate)
        r.add_get("/api/v1/ct/log", self.ct_log)
        r.add_post("/api/v1/ct/submit", self.ct_submit)
        r.add_get("/api/v1/ct/proof/{hash}", self.ct_proof)
        r.add_get("/api/v1/ct/tile/{path:.+}", self.ct_tile)
        r.add_post("/api/v1/kv", self.kv)
        r.add_post("/api/v1/write", self.signed_write)
        r.add_get("/api/v1/status", self.status)
        r.add_get("/api/v1/health", self.health)
        r.add_get("/api/v1/metrics", self.metrics)
        r.add_get("/api/v1/openapi.json", self.openapi)
        r.add_get("/ca/root.pem", self.ca_file)
        r.add_get("/ca/intermediate.pem", self.ca_file)
        r.add_get(causrls.ROOT_ISSUER, self.ca_file)  # the issuer URLs certificates name (trustchain.ca.urls)
        r.add_get(causrls.ISSUING_ISSUER, self.ca_file)
        for topic in STREAMS:
            r.add_get(f"/stream/{topic}", self.stream)
        http_pki.register(self.app, node)  # /ocsp, /crl/<issuer>.crl
        http_validators.register(self.app, node)  # the operator's votes for the validator set's operations
        acme_http.register(self.app, node, intermediate_pem,  # /acme/... (RFC 8555)
                           lambda request: self.limiter.admit_registration(client_ip(request)))
        ct_http.register(self.app, node)  # /ct/v1/* (RFC 6962), the log list

    @web.middleware
    async def _middleware(self, request: web.Request, handler: Handler) -> web.StreamResponse:
        t0 = time.perf_counter()
        route = request.match_info.route.resource.canonical if request.match_info.route.resource else "?"
        try:
            return await handler(request)
        except FieldError as exc:
            return _error(exc.field, exc.reason, exc.status)
        except ctapi.APIError as exc:
            return _error(exc.field, exc.reason, exc.status)
        except SubmitTimeout as exc:
            return _error("consensus", str(exc), 504)
        except NodeHalted as exc:
            return _error("node", f"halted: {exc}", 503)
        except web.HTTPException:
            raise
        except Exception as exc:  # a bug must give a JSON error, not a dropped connection
            log.exception("internal error on %s %s", request.method, request.path)
            return _error("internal", f"{type(exc).__name__}: {exc}", 500)
        finally:
            self.node.metrics.http_latency.observe(time.perf_counter() - t0, route=route, method=request.method)

    # ------------------------------------------------------------------ certificates

    async def cert_challenge(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        names = _str_list(doc, "names")
        raw = await self._submit_unsigned(tcapp.CA, cacommands.challenge_command(names))
        res = _ca_result(raw, cacommands.STATUS_CHALLENGE)
        challenges = [{"name": c.name, "key_authorization": c.key_authorization,
                       "txt_name": f"{ownership.CHALLENGE_LABEL}.{c.name}.",
                       "txt_value": ownership.dns01_txt(c.key_authorization)} for c in res.challenges]
        return web.json_response({"challenges": challenges})

    async def _issue(self, doc: dict[str, Any], names: list[str]) -> web.Response:
        csr = _csr_der(_str_field(doc, "csr"))
        proofs = _str_list(doc, "proofs")
        if len(proofs) != len(names):
            raise FieldError("proofs", f"{len(proofs)} proofs for {len(names)} names (one per name)")
        wait_s = self.issuance.wait_s(_wait_field(doc))
        req = cacommands.IssueRequest(csr, tuple(names), tuple(proofs), _str_field(doc, "identity", required=False),
                                    _str_field(doc, "payment_ref", required=False),
                                    _int_field(doc, "lifetime_s", 0))
        raw = await self._submit_unsigned(tcapp.CA, cacommands.request_command(req))
        res = _ca_result(raw, cacommands.STATUS_PENDING)
        serial = await self.issuance.settle(res.pending_id, res.serial, wait_s)
        return self.issuance.answer(res.pending_id, serial)

    async def cert_request(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        return await self._issue(doc, _str_list(doc, "names"))

    async def cert_renew(self, request: web.Request) -> web.Response:
        """Renewal re-issues for the same names with a new key (or the same CSR); ownership is
        proven again, as the replicated CA requires for every issuance."""
        doc = await _json_body(request)
        serial = _serial_hex(_str_field(doc, "serial"))
        rec = self.node.app.ca.issued.get(serial)
        if rec is None:
            raise FieldError("serial", "not issued by this CA", 404)
        return await self._issue(doc, list(rec.names))

    async def cert_revoke(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        serial = _serial_hex(_str_field(doc, "serial"))
        reason = doc.get("reason", 0)
        if isinstance(reason, str):
            names = {v.lower(): k for k, v in carecords.REVOCATION_REASONS.items()}
            if reason.lower() not in names:
                raise FieldError("reason", f"one of {', '.join(carecords.REVOCATION_REASONS.values())}")
            reason = names[reason.lower()]
        if not isinstance(reason, int) or isinstance(reason, bool) or reason not in carecords.REVOCATION_REASONS:
            raise FieldError("reason", "not a permitted CRLReason code")
        raw = await self._submit_unsigned(tcapp.CA, cacommands.revoke_command(int.from_bytes(serial, "big"), reason))
        res = _ca_result(raw, cacommands.STATUS_OK, cacommands.STATUS_UNCHANGED)
        return web.json_response({"status": "revoked" if res.status == cacommands.STATUS_OK else "already_revoked",
                                  "serial": res.serial.hex()})

    async def cert_get(self, request: web.Request) -> web.Response:
        serial = _serial_hex(request.match_info["id"], "id")
        rec = self.node.app.ca.issued.get(serial)
        if rec is None:
            pending = [p for p in self.node.app.ca.pending.values() if p.serial == serial]
            if pending:
                return web.json_response({"status": "pending", "pending_id": pending[0].pending_id,
                                          "serial": serial.hex()}, status=202)
            raise FieldError("id", "no certificate with this serial", 404)
        return web.json_response({"status": "revoked" if rec.revoked_us is not None else "issued",
                                  **self.issuance.cert_json(rec)})

    async def ca_file(self, request: web.Request) -> web.Response:
        pem = self.root_pem if "root" in request.path else self.intermediate_pem
        if request.path.endswith(".der"):
            der = x509.load_pem_x509_certificate(pem).public_bytes(serialization.Encoding.DER)
            return web.Response(body=der, content_type="application/pkix-cert")
        return web.Response(body=pem, content_type="application/x-pem-file")

    # ------------------------------------------------------------------ DNS

    def _query(self, domain: str, rtype: str, dnssec: bool) -> dns.message.Message:
        try:
            qname = dns.name.from_text(domain if domain.endswith(".") else domain + ".")
        except Exception as exc:  # dnspython raises several types for bad names
            raise FieldError("domain", f"not a valid domain name ({exc})") from None
        try:
            rdtype = dns.rdatatype.from_text(rtype)
        except dns.rdatatype.UnknownRdatatype:
            raise FieldError("type", f"unknown record type {rtype!r}") from None
        query = dns.message.make_query(qname, rdtype, want_dnssec=dnssec)
        wire = self.node.app.dns.answer(query.to_wire(), int(time.time()), max_udp=None)
        self.node.metrics.dns_queries.inc(transport="http")
        return dns.message.from_wire(wire)

    async def dns_resolve(self, request: web.Request) -> web.Response:
        domain = request.query.get("domain")
        if not domain:
            raise FieldError("domain", "required query parameter")
        rtype = request.query.get("type", "A")
        resp = self._query(domain, rtype, request.query.get("dnssec", "0") in ("1", "true"))
        return web.json_response({
            "domain": domain, "type": rtype.upper(), "rcode": dns.rcode.to_text(resp.rcode()),
            "authoritative": bool(resp.flags & dns.flags.AA),
            "answer": [line for rr in resp.answer for line in rr.to_text().splitlines()],
            "authority": [line for rr in resp.authority for line in rr.to_text().splitlines()],
        })

    async def dns_validate(self, request: web.Request) -> web.Response:
        domain = request.query.get("domain")
        if not domain:
            raise FieldError("domain", "required query parameter")
        rtype = request.query.get("type", "A")
        resp = self._query(domain, rtype, True)
        qname = resp.question[0].name
        zones = [z for z in self.node.app.dns.zones if qname.is_subdomain(z)]
        if not zones:
            raise FieldError("domain", "not in any zone this network serves", 404)
        origin = max(zones, key=len)
        keys = self._query(origin.to_text(), "DNSKEY", True)
        dnskey = next((r for r in keys.answer if r.rdtype == dns.rdatatype.DNSKEY), None)
        sigs = next((r for r in keys.answer if r.rdtype == dns.rdatatype.RRSIG), None)
        if dnskey is None:
            return web.json_response({"domain": domain, "secure": False, "detail": "zone has no DNSKEY"})
        anchor = self.node.app.dns.ds(origin)
        result = Validator(anchor).validate(resp, [ZoneKeys(dnskey, sigs)], int(time.time()))
        return web.json_response({"domain": domain, "type": rtype.upper(), "zone": origin.to_text(),
                                  "secure": result.secure, "detail": result.detail,
                                  "trust_anchor": anchor.to_text().splitlines()})

    async def dns_update(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        try:
            payload = command_from_json(doc)
        except ZoneUpdateError as exc:
            raise FieldError(exc.field, exc.reason) from None
        result = _typed(await self._submit_unsigned(tcapp.DNS, payload), dnsapp.decode_result)
        if not result.ok:
            return _rejected(result.detail)
        return web.json_response(dnsapp.result_json(result))

    # ------------------------------------------------------------------ CT

    def _ctapi(self) -> ctapi.CTAPI:
        ct = self.node.app.ct
        return ctapi.CTAPI(ct.log, ct.origin, ct.signer, ct.key_name)

    async def ct_log(self, request: web.Request) -> web.Response:
        api = self._ctapi()
        out = api.get_checkpoint(request.query.get("tree_size"))
        if "start" in request.query or "end" in request.query:
            out.update(api.get_entries(request.query.get("start"), request.query.get("end")))
        return web.json_response(out)

    async def ct_submit(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        command = ctapi.add_chain_command(doc)
        result = _typed(await self._submit_unsigned(tcapp.CT, command), ctapp.decode_result)
        if not result.ok:
            return _rejected(result.detail)
        sct = self.node.app.ct.sct(result.index)
        return web.json_response({**ctapi.result_json(result), "sct": ctapi.sct_json(sct, result.index)})

    async def ct_proof(self, request: web.Request) -> web.Response:
        text = request.match_info["hash"]
        if len(text) == 64 and all(c in "0123456789abcdefABCDEF" for c in text):
            text = base64.b64encode(bytes.fromhex(text)).decode()
        else:
            text = text.replace("-", "+").replace("_", "/")
        return web.json_response(self._ctapi().get_proof_by_hash(text, request.query.get("tree_size")))

    async def ct_tile(self, request: web.Request) -> web.Response:
        return ct_http.serve_static_tile(self.node.app.ct, "tile/" + request.match_info["path"])  # as /tile/...

    # ------------------------------------------------------------------ KV (tests and demos)

    async def kv(self, request: web.Request) -> web.Response:
        doc = await _json_body(request)
        op = _str_field(doc, "op")
        if op not in kvstore.OPS:
            raise FieldError("op", "one of " + ", ".join(kvstore.OPS))
        cmd = kvstore.KVCommand(op, _str_field(doc, "key").encode(), _str_field(doc, "value", required=False).encode())
        result = _typed(await self._submit_unsigned(tcapp.KV, encode(cmd)), kvstore.decode_result)
        if not result.ok:
            return _rejected(result.detail)
        return web.json_response({"status": result.status, "value": result.value.decode(errors="replace"),
                                  "size": result.size})

    # ------------------------------------------------------------------ signed writes

    async def _submit_unsigned(self, target: str, payload: bytes) -> bytes:
        """A JSON write endpoint: it acts for this node's shared API account, so it is off unless the
        operator enabled `api.unsigned_writes` (a development cluster)."""
        if not self.node.config.api.unsigned_writes:
            raise FieldError("authorization", "this node takes only writes signed by the client's own account "
                             "(POST /api/v1/write)", 403)
        return await self.node.submit(target, payload, account=True)

    async def signed_write(self, request: web.Request) -> web.Response:
        """`{"write": base64(SignedWrite)}`: a write signed by the client's own account, forwarded as is;
        the answer is the addressed sub-application's typed result."""
        doc = await _json_body(request)
        raw = _b64_field(doc, "write")
        try:
            write = decode(SignedWrite, raw)
        except DecodeError as exc:
            raise FieldError("write", f"not a signed write ({exc})") from None
        decoder = RESULT_DECODERS.get(write.target)
        if decoder is None:
            raise FieldError("write.target", f"must be one of {', '.join(RESULT_DECODERS)}")
        if write.key is not None:  # a registration: a new account, with quotas of its own
            wait = self.limiter.admit_registration(client_ip(request))
            if wait:
                return too_many(wait, "account registrations")
        wait_s = self.issuance.wait_s(_wait_field(doc))
        encoded = await self.node.submit(PRESIGNED, encode(tcapp.Routed(SIGNED, raw)))
        result = _typed(encoded, decoder)
        answer = {"target": write.target, "result": _jsonable(result),
                  "encoded": base64.b64encode(encoded).decode()}  # the typed result, for clients to decode
        if not result.ok:  # every typed result has `ok` and a "<field>: <reason>" detail
            field, _, reason = result.detail.partition(": ")
            return web.json_response({"error": result.detail, "field": field, "reason": reason, **answer},
                                     status=422)
        if write.target == tcapp.CA and http_certs.is_certificate_request(result):  # 201 issued, 202 to poll
            serial = await self.issuance.settle(result.pending_id, result.serial, wait_s)
            return self.issuance.answer(result.pending_id, serial, extra=answer)
        return web.json_response(answer)

    # ------------------------------------------------------------------ status

    async def status(self, request: web.Request) -> web.Response:
        return web.json_response(self.node.status())

    async def health(self, request: web.Request) -> web.Response:
        n = self.node
        heard = getattr(n.transport, "peers_heard_within", None)
        alive = len(heard(PEER_SILENCE_S)) if heard is not None else n.cluster.n - 1
        st = n.replica_status()
        report = self.health_monitor.evaluate(
            halted=n.halted, n=n.cluster.n, quorum=n.cluster.quorum, peers_alive=alive,
            in_view_change=st.in_view_change, view=st.view, last_executed=st.last_executed,
            peer_executed=st.peer_executed, state_transfer=st.state_transfer)
        return web.json_response({"status": self.health_monitor.status(report), "checks": report.checks,
                                  **report.detail}, status=200 if report.ok else 503)

    async def metrics(self, request: web.Request) -> web.Response:
        return web.Response(text=self.node.metrics.render(), content_type="text/plain",
                            headers={"X-Content-Format": "prometheus-0.0.4"})

    async def openapi(self, request: web.Request) -> web.Response:
        return web.json_response(openapi_document())

    async def stream(self, request: web.Request) -> web.WebSocketResponse:
        topic = request.path.rsplit("/", 1)[1]
        ws = web.WebSocketResponse(heartbeat=20)
        await ws.prepare(request)
        q = self.node.pubsub.subscribe(topic)
        reader = None
        try:
            import asyncio

            async def drain_incoming() -> None:
                async for msg in ws:
                    if msg.type in (WSMsgType.CLOSE, WSMsgType.ERROR):
                        break

            reader = asyncio.create_task(drain_incoming())
            while not ws.closed and not reader.done():
                getter = asyncio.create_task(q.get())
                done, _ = await asyncio.wait({getter, reader}, return_when=asyncio.FIRST_COMPLETED)
                if getter in done:
                    await ws.send_json({"stream": topic, **getter.result()})
                else:
                    getter.cancel()
        finally:
            self.node.pubsub.unsubscribe(topic, q)
            if reader is not None:
                reader.cancel()
        return ws
