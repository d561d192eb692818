"""The OpenAPI 3 document of the node's HTTP API (`GET /api/v1/openapi.json`), and the event streams it
lists: kept beside the handlers, in `http_api` and the modules it registers, so that each stays short."""

from __future__ import annotations

from typing import Any

from reference_node import acme_http, ct_http, http_pki, http_validators

__all__ = ["STREAMS", "openapi_document"]

STREAMS = ("certificates", "dns", "ct", "consensus")
PATH_PARAMS = ("id", "hash", "path", "pending_id")  # parameters that are path segments


def openapi_document() -> dict[str, Any]:
    def op(summary: str, body: bool = False, params: list[str] | None = None) -> dict[str, Any]:
        o: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "OK", "content": {"application/json": {"schema": {"type": "object"}}}},
            "400": {"$ref": "#/components/responses/BadRequest"},
            "422": {"description": "rejected by the replicated application"},
            "504": {"description": "not executed within the request timeout"}}}
        if body:
            o["requestBody"] = {"required": True, "content": {"application/json": {"schema": {"type": "object"}}}}
        if params:
            o["parameters"] = [{"name": p, "in": "path" if p in PATH_PARAMS else "query",
                                "required": p in (*PATH_PARAMS, "domain"), "schema": {"type": "string"}}
                               for p in params]
        return o

    def issuing(o: dict[str, Any], issued: int) -> dict[str, Any]:
        """A certificate request's answers: the certificate, or 202 with where to poll."""
        o["responses"].pop("200")
        o["responses"][str(issued)] = {"description": "issued: serial and certificate", "content": {
            "application/json": {"schema": {"type": "object"}}}}
        o["responses"]["202"] = {"description": "pending: poll Location (/api/v1/cert/request/{pending_id}) "
                                 "after Retry-After", "content": {"application/json": {"schema": {"type": "object"}}}}
        return o

    paths = {
        "/api/v1/cert/challenge": {"post": op("Order a dns-01 challenge for names", True)},
        "/api/v1/cert/request": {"post": issuing(op("Request a certificate (CSR, names, proofs; wait_s at most "
                                                    "api.issue_wait)", True), 201)},
        "/api/v1/cert/{id}": {"get": op("Certificate by serial (hex)", params=["id"])},
        "/api/v1/cert/request/{pending_id}": {"get": issuing(op("Certificate of a request by its pending id (202 "
                                                                "while its serial or signature is pending)",
                                                                params=["pending_id"]), 200)},
        "/api/v1/cert/renew": {"post": issuing(op("Renew: re-issue for the names of an existing serial", True),
                                               201)},
        "/api/v1/cert/revoke": {"post": op("Revoke by serial with a CRLReason", True)},
        "/api/v1/dns/resolve": {"get": op("Authoritative answer", params=["domain", "type", "dnssec"])},
        "/api/v1/dns/update": {"post": op("Create a zone, apply a zone update, or roll its keys", True)},
        "/api/v1/dns/dnssec/validate": {"get": op("Validate an answer DS->DNSKEY->RRSIG", params=["domain", "type"])},
        "/api/v1/ct/log": {"get": op("Signed checkpoint (and entries)", params=["tree_size", "start", "end"])},
        "/api/v1/ct/submit": {"post": op("Submit a certificate chain; returns this validator's SCT", True)},
        "/api/v1/ct/proof/{hash}": {"get": op("Inclusion proof by leaf hash (hex or base64)", params=["hash"])},
        "/api/v1/ct/tile/{path}": {"get": op("tlog-tiles static path", params=["path"])},
        "/api/v1/kv": {"post": op("Key-value command (demo application)", True)},
        "/api/v1/write": {"post": op("A write signed by the client's own account, forwarded as is (a certificate "
                                     "request's: 201 issued or 202 pending, as /api/v1/cert/request)", True)},
        "/api/v1/status": {"get": op("Node and consensus status")},
        "/api/v1/health": {"get": op("Health (503 when failing)")},
        "/api/v1/openapi.json": {"get": op("This OpenAPI 3 document")},
        "/api/v1/metrics": {"get": {"summary": "Prometheus metrics", "responses": {
            "200": {"description": "text exposition", "content": {"text/plain": {"schema": {"type": "string"}}}}}}},
    }
    for ca_path in ("/ca/root.pem", "/ca/intermediate.pem", "/ca/root.der", "/ca/intermediate.der"):
        ctype = "application/pkix-cert" if ca_path.endswith(".der") else "application/x-pem-file"
        paths[ca_path] = {"get": {"summary": "CA certificate", "responses": {
            "200": {"description": "certificate", "content": {ctype: {"schema": {"type": "string"}}}}}}}
    paths.update(http_pki.openapi_paths())
    paths.update(http_validators.openapi_paths())
    paths.update(ct_http.openapi_paths())
    paths.update(acme_http.openapi_paths())
    return {
        "openapi": "3.0.3",
        "info": {"title": "TrustChain node API", "version": "1.0.0"},
        "paths": paths,
        "components": {"responses": {"BadRequest": {"description": "invalid request", "content": {
            "application/json": {"schema": {"type": "object", "required": ["error", "field"], "properties": {
                "error": {"type": "string"}, "field": {"type": "string"}}}}}}}},
        "x-websocket-streams": [f"/stream/{t}" for t in STREAMS],
    }
