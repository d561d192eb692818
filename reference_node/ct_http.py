"""Each validator's own CT log over HTTP: the RFC 6962 API under `/ct/v1/`, the static-ct-api read path
(`/checkpoint`, `/tile/...`, `/issuer/<fingerprint>`) and the v3 log list at `/ct/log-list.json`.

The log content is the replicated CT application's, identical on every validator; what makes this node's
log its own is its P-256 key, which signs the tree heads and SCTs served here. Submissions
(add-chain, add-pre-chain) are anonymous, as CT submissions are: anyone may log a certificate that
chains to the CA's root, which the replicated log checks. The node orders them under its API account
and answers with its own SCT once its replica executed them. Input errors are 400 with
`{"error", "field", "reason"}`; a field is named as in the request body (`chain[0]` is the submitted
certificate).
"""

from __future__ import annotations

import datetime as dt
import json
import re
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

from aiohttp import web

from reference_node.http_json import error_response as _error
from trustchain.app import trustchain as tcapp
from trustchain.ct import api as ctapi
from trustchain.ct import app as ctapp
from trustchain.ct import rfc6962, static, tiles
from trustchain.ct.loglist import ListedLog, log_list
from trustchain.ct.sth import SignedTreeHead
from trustchain.ct.submission import accept
from trustchain.encoding import decode

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["CTHTTP", "STH_MAX_AGE_S", "Handler", "openapi_paths", "register", "serve_static_tile"]

STH_MAX_AGE_S = 60.0  # a tree head is re-signed when the tree grows or after this long
MAX_SUBMISSION = 256 * 1024


Handler = Callable[[web.Request], Awaitable[web.Response]]


def _answering_errors(handler: Handler) -> Handler:
    """An `APIError` from request parsing becomes its 4xx JSON answer here, whatever app hosts the routes."""

    async def wrapped(request: web.Request) -> web.Response:
        try:
            return await handler(request)
        except ctapi.APIError as exc:
            return _error(exc.field, exc.reason, exc.status)

    return wrapped


def register(app: web.Application, node: Node) -> CTHTTP:
    ct = CTHTTP(node)
    r = app.router
    for path, handler in (("get-sth", ct.get_sth), ("get-sth-consistency", ct.get_sth_consistency),
                          ("get-proof-by-hash", ct.get_proof_by_hash), ("get-entries", ct.get_entries),
                          ("get-roots", ct.get_roots)):
        r.add_get(f"/ct/v1/{path}", _answering_errors(handler))
    r.add_post("/ct/v1/add-chain", _answering_errors(ct.add_chain))
    r.add_post("/ct/v1/add-pre-chain", _answering_errors(ct.add_pre_chain))
    r.add_get("/ct/log-list.json", ct.loglist)
    r.add_get("/checkpoint", ct.checkpoint)
    r.add_get("/tile/{path:.+}", ct.tile)
    r.add_get("/issuer/{fingerprint}", ct.issuer)
    return ct


def _body_field(detail: str) -> tuple[str, str]:
    """The replicated log's "<field>: <reason>" with the field named as in the request's `chain`."""
    field, _, reason = detail.partition(": ")
    if field in ("certificate", "precertificate"):
        return "chain[0]", reason
    m = re.fullmatch(r"chain\[(\d+)\]", field)
    if m:
        return f"chain[{int(m.group(1)) + 1}]", reason
    return field, reason


class CTHTTP:
    def __init__(self, node: Node) -> None:
        self.node = node
        self._sth: tuple[float, SignedTreeHead] | None = None

    @property
    def app(self) -> ctapp.CTApplication:
        return self.node.app.ct

    def _guard(self) -> web.Response | None:
        if self.app.log_signer is None:
            return _error("log_key", "this node has no CT log key configured ([ct] log_key)", 503)
        return None

    def current_sth(self) -> SignedTreeHead:
        """This log's tree head over the current tree, re-signed when the tree grew or it got old."""
        now = time.monotonic()
        cached = self._sth
        if cached is None or cached[1].tree_size != self.app.size or now - cached[0] > STH_MAX_AGE_S:
            cached = (now, self.app.sth(int(time.time() * 1000)))
            self._sth = cached
        return cached[1]

    async def get_sth(self, request: web.Request) -> web.Response:
        return self._guard() or web.json_response(rfc6962.sth_json(self.current_sth()))

    async def get_sth_consistency(self, request: web.Request) -> web.Response:
        q = request.query
        return web.json_response(rfc6962.RFC6962Log(self.app).get_sth_consistency(q.get("first"), q.get("second")))

    async def get_proof_by_hash(self, request: web.Request) -> web.Response:
        q = request.query
        return web.json_response(rfc6962.RFC6962Log(self.app).get_proof_by_hash(q.get("hash"), q.get("tree_size")))

    async def get_entries(self, request: web.Request) -> web.Response:
        q = request.query
        return web.json_response(rfc6962.RFC6962Log(self.app).get_entries(q.get("start"), q.get("end")))

    async def get_roots(self, request: web.Request) -> web.Response:
        return web.json_response(rfc6962.RFC6962Log(self.app).get_roots())

    async def add_chain(self, request: web.Request) -> web.Response:
        return await self._submit(request, ctapi.add_chain_command)

    async def add_pre_chain(self, request: web.Request) -> web.Response:
        return await self._submit(request, ctapi.add_pre_chain_command)

    async def _submit(self, request: web.Request, build: Callable[[dict[str, Any]], bytes]) -> web.Response:
        guard = self._guard()
        if guard is not None:
            return guard
        if request.content_length is not None and request.content_length > MAX_SUBMISSION:
            return _error("body", f"larger than {MAX_SUBMISSION} bytes", 413)
        raw = await request.content.read(MAX_SUBMISSION + 1)
        if len(raw) > MAX_SUBMISSION:
            return _error("body", f"larger than {MAX_SUBMISSION} bytes", 413)
        try:
            doc = json.loads(raw or b"null")
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error("body", "not valid JSON")
        if not isinstance(doc, dict):
            return _error("body", "must be a JSON object with a \"chain\" list")
        command = build(doc)  # APIError -> 400 naming the field
        cmd = decode(ctapp.CTCommand, command)
        roots = self.app.accepted_roots
        if roots is not None:  # junk never reaches consensus; the replicated log checks again
            accepted = accept(cmd.certificate, cmd.chain, roots, precert=cmd.op == ctapp.OP_ADD_PRE_CHAIN,
                              leaf_field="certificate")
            if isinstance(accepted, str):
                return _error(*_body_field(accepted))
        raw_result = await self.node.submit(tcapp.CT, command, account=True)
        try:
            result = tcapp.decode_routed(raw_result, ctapp.decode_result)
        except tcapp.MalformedResult as exc:
            return _error("result", str(exc), 500)
        if isinstance(result, tcapp.RouteError):
            field, _, reason = result.detail.partition(": ")
            return _error(field, reason, 422)
        if not result.ok:
            field, reason = _body_field(result.detail)
            return _error(field, reason, 503 if field == "log" else 400)
        return web.json_response(rfc6962.add_response(self.app.sct(result.index)))

    @property
    def origin(self) -> str:
        """This log's checkpoint origin: its URL in genesis without the scheme."""
        node, logs = self.node, self.node.genesis.ct_logs
        if 0 <= node.id < len(logs):
            return static.origin_of(logs[node.id].url)
        return f"{node.genesis.ct_origin}/{node.config.trustchain.node_id}"

    async def checkpoint(self, request: web.Request) -> web.Response:
        guard = self._guard()
        if guard is not None:
            return guard
        assert self.app.log_signer is not None
        signed = static.checkpoint(self.current_sth(), self.origin, self.app.log_signer.public_key, self.app.signer)
        return web.Response(body=signed.encode(), content_type="text/plain", charset="utf-8",
                            headers={"Cache-Control": static.MUTABLE})

    async def tile(self, request: web.Request) -> web.Response:
        return serve_static_tile(self.app, "tile/" + request.match_info["path"])

    async def issuer(self, request: web.Request) -> web.Response:
        text = request.match_info["fingerprint"]
        if len(text) != 64 or any(c not in "0123456789abcdef" for c in text):
            return _error("fingerprint", "expected 64 lowercase hexadecimal digits (SHA-256)")
        der = self.app.log.issuer(bytes.fromhex(text))
        if der is None:
            return _error("fingerprint", "no logged entry refers to this issuer", 404)
        return web.Response(body=der, content_type="application/pkix-cert",
                            headers={"Cache-Control": static.IMMUTABLE})

    async def loglist(self, request: web.Request) -> web.Response:
        genesis = self.node.genesis
        logs = [ListedLog(f"TrustChain validator {log.name}", f"TrustChain {genesis.network} log of {log.name}",
                          log.key, log.url, log.mmd, genesis.created) for log in genesis.ct_logs]
        stamp = genesis.created or dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        return web.json_response(log_list(logs, stamp), headers={"Cache-Control": "public, max-age=300"})


def serve_static_tile(app: ctapp.CTApplication, path: str) -> web.Response:
    """A static-ct-api tile (hash or TileLeaf data); full tiles are cacheable forever."""
    try:
        body, full = static.serve_tile(app, path)
    except tiles.TileError as exc:
        return _error("path", str(exc), 404)
    return web.Response(body=body, content_type="application/octet-stream",
                        headers={"Cache-Control": static.IMMUTABLE if full else static.MUTABLE})


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3 entries for these routes (merged into the node's document)."""

    def op(summary: str, params: tuple[str, ...] = (), body: bool = False) -> dict[str, Any]:
        o: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/BadRequest"}}}
        if params:
            o["parameters"] = [{"name": p, "in": "query", "required": True, "schema": {"type": "string"}}
                               for p in params]
        if body:
            o["requestBody"] = {"required": True, "content": {"application/json": {"schema": {
                "type": "object", "required": ["chain"],
                "properties": {"chain": {"type": "array", "items": {"type": "string"}}}}}}}
        return o

    def text(summary: str, ctype: str, param: str = "") -> dict[str, Any]:
        o: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK", "content": {ctype: {"schema": {"type": "string"}}}},
            "404": {"description": "not published at this tree size"}}}
        if param:
            o["parameters"] = [{"name": param, "in": "path", "required": True, "schema": {"type": "string"}}]
        return o

    return {
        "/ct/v1/get-sth": {"get": op("RFC 6962 signed tree head of this validator's log (P-256)")},
        "/ct/v1/get-sth-consistency": {"get": op("Consistency proof between two tree sizes", ("first", "second"))},
        "/ct/v1/get-proof-by-hash": {"get": op("Inclusion proof by leaf hash (base64)", ("hash", "tree_size"))},
        "/ct/v1/get-entries": {"get": op("Entries [start, end] with extra_data", ("start", "end"))},
        "/ct/v1/get-roots": {"get": op("The roots this log accepts")},
        "/ct/v1/add-chain": {"post": op("Log a certificate chain (base64 DER, leaf first); returns this log's SCT",
                                        body=True)},
        "/ct/v1/add-pre-chain": {"post": op("Log a precertificate chain; returns this log's SCT", body=True)},
        "/ct/log-list.json": {"get": op("The validators' CT logs in the v3 log list format")},
        "/checkpoint": {"get": text("static-ct-api checkpoint (RFC6962NoteSignature and Ed25519)", "text/plain")},
        "/tile/{path}": {"get": text("static-ct-api hash tile or TileLeaf data tile", "application/octet-stream",
                                     "path")},
        "/issuer/{fingerprint}": {"get": text("An issuer certificate by SHA-256 fingerprint (hex)",
                                              "application/pkix-cert", "fingerprint")},
    }
