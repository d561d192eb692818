"""The operator's endpoints for the validator set's operations (`trustchain.authorization.validator_votes`).

- `POST /api/v1/validators/propose` with `{"target": "ca" | "dns", "command": base64}` casts *this
  validator's* vote for that exact operation (signed with its consensus key, its account), or with
  `{"withdraw": "<digest hex>"}` takes the vote back. The answer is the typed vote result: `recorded`
  (with `votes` of `threshold`), `executed` (with the operation's own `result`), `duplicate` or `done`.
- `GET /api/v1/validators/proposals`: the open proposals in replicated state (digest, target,
  operation, the validators who voted), so operators can see what they are asked to approve.

Who may cast the vote: the node's operator only. The node signs the vote itself, so anyone who can
reach the endpoint votes with the validator's weight. It therefore answers only a connection from the
loopback address (the socket's peer, never a forwarded header) that carries the bearer token the node
writes at start to `<storage.path>/operator.token` (0600, new at every start): a reverse proxy or a
sidecar on the same host, which makes remote clients look local, still cannot vote without the file.
Do not expose the API port's loopback side to untrusted local users.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import ipaddress
import json
import secrets
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from reference_node.genesis import write_private
from reference_node.http_json import error_response as _error
from reference_node.http_json import jsonable as _jsonable
from trustchain.app import trustchain as tcapp
from trustchain.app.gate import command_op
from trustchain.authorization import validator_votes as votes
from trustchain.ca import commands as cacommands
from trustchain.dns import app as dnsapp
from trustchain.encoding import DecodeError

if TYPE_CHECKING:
    from reference_node.runtime import Node

__all__ = ["TOKEN_FILE", "openapi_paths", "register", "token_path"]

TOKEN_FILE = "operator.token"
MAX_BODY = 256 * 1024
_INNER: dict[str, Callable[[bytes], cacommands.CAResult | dnsapp.DNSResult]] = {
    tcapp.CA: cacommands.decode_result, tcapp.DNS: dnsapp.decode_result}


def token_path(storage_dir: Path) -> Path:
    return storage_dir / TOKEN_FILE


def register(app: web.Application, node: Node) -> None:
    """Add the routes; when the server starts, a fresh operator token is written next to the node's storage."""
    endpoints = _Validators(node, secrets.token_urlsafe(32))
    app.router.add_post("/api/v1/validators/propose", endpoints.propose)
    app.router.add_get("/api/v1/validators/proposals", endpoints.proposals)
    app.on_startup.append(endpoints.write_token)


class _Validators:
    def __init__(self, node: Node, token: str) -> None:
        self.node = node
        self.token = token

    async def write_token(self, app: web.Application) -> None:
        write_private(token_path(self.node.config.storage.path), self.token.encode() + b"\n")

    def _operator(self, request: web.Request) -> web.Response | None:
        """None for the node's operator, else the 403 to answer."""
        peer = request.transport.get_extra_info("peername") if request.transport is not None else None
        host = peer[0] if isinstance(peer, tuple) and peer else ""
        try:
            local = ipaddress.ip_address(str(host).split("%")[0]).is_loopback
        except ValueError:
            local = False
        if not local:
            return _error("authorization", "only the node's operator may vote, from the node's own host", 403)
        given = request.headers.get("Authorization", "").removeprefix("Bearer ").strip()
        if not hmac.compare_digest(given.encode(), self.token.encode()):
            return _error("authorization", f"send the token in {TOKEN_FILE} in the node's storage directory as "
                          "'Authorization: Bearer <token>'", 403)
        return None

    async def propose(self, request: web.Request) -> web.Response:
        denied = self._operator(request)
        if denied is not None:
            return denied
        if request.content_length is not None and request.content_length > MAX_BODY:
            return _error("body", f"larger than {MAX_BODY} bytes", 413)
        try:
            doc = json.loads(await request.read() or b"null")
        except (UnicodeDecodeError, ValueError, RecursionError):
            return _error("body", "not valid JSON", 400)
        if not isinstance(doc, dict):
            return _error("body", "must be a JSON object", 400)
        if "withdraw" in doc:
            text = doc["withdraw"]
            try:
                digest = bytes.fromhex(text) if isinstance(text, str) else b""
            except ValueError:
                digest = b""
            if len(digest) != 32:
                return _error("withdraw", "expected the proposal's digest, 64 hexadecimal digits", 400)
            payload = votes.withdraw_command(digest)
        else:
            target = doc.get("target")
            if target not in _INNER:
                return _error("target", f"must be one of {', '.join(_INNER)}", 400)
            command = doc.get("command")
            try:
                inner = base64.b64decode(command, validate=True) if isinstance(command, str) else b""
            except (binascii.Error, ValueError):
                inner = b""
            if not inner:
                return _error("command", "expected the operation's command bytes in base64", 400)
            if len(inner) > votes.MAX_PAYLOAD:
                return _error("command", f"longer than {votes.MAX_PAYLOAD} bytes", 400)
            payload = votes.vote_command(target, inner)
        raw = await self.node.submit(votes.VOTES, payload)  # signed by this validator's own account
        return self._answer(raw)

    def _answer(self, raw: bytes) -> web.Response:
        try:
            res = tcapp.decode_routed(raw, votes.decode_result)
        except tcapp.MalformedResult as exc:
            return _error("result", f"malformed result: {exc}", 500)
        if isinstance(res, tcapp.RouteError):
            field, _, reason = res.detail.partition(": ")
            return _error(field, reason, 422)
        doc: dict[str, Any] = {"status": res.status, "detail": res.detail, "digest": res.digest.hex(),
                               "votes": res.votes, "threshold": res.threshold, "target": res.target}
        if not res.ok:
            field, _, reason = res.detail.partition(": ")
            return _error(field, reason, 422, doc)
        if res.status == votes.STATUS_EXECUTED:
            try:
                inner = _INNER[res.target](res.result)
            except (KeyError, DecodeError) as exc:
                return _error("result", f"malformed operation result: {exc}", 500)
            doc["result"] = _jsonable(inner)
            if not inner.ok:  # the vote passed, the operation itself was refused
                field, _, reason = inner.detail.partition(": ")
                return _error(field, reason, 422, doc)
        return web.json_response(doc)

    async def proposals(self, request: web.Request) -> web.Response:
        tally = self.node.app.votes
        out = [{"digest": digest.hex(), "target": p.target, "op": command_op(p.payload) or "",
                "voters": sorted(p.votes), "command": base64.b64encode(p.payload).decode()}
               for digest, p in sorted(tally.proposals.items())]
        return web.json_response({"threshold": tally.threshold, "validators": tally.n, "proposals": out})


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3 entries for these routes (merged into the node's document)."""
    ok = {"200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}}}
    return {
        "/api/v1/validators/propose": {"post": {
            "summary": "The node's operator casts this validator's vote for a validator-set operation "
                       "(loopback and the operator token only)",
            "requestBody": {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}},
            "responses": {**ok, "400": {"description": "invalid request"}, "403": {"description": "not the operator"},
                          "422": {"description": "refused by the replicated application"}}}},
        "/api/v1/validators/proposals": {"get": {"summary": "Open proposals of the validator set and their votes",
                                                 "responses": ok}},
    }
