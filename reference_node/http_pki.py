"""OCSP (RFC 6960, RFC 5019 profile) and CRL download over HTTP, served from replicated state.

Nothing here signs anything. The responses and the CRL were FROST-signed beside consensus and stored by
the replicated CA (`sign_ocsp_batch`, `sign_crl`, `finalize`), so every validator serves identical bytes
and a client may ask any of them:

- `POST /ocsp` with `application/ocsp-request`, or `GET /ocsp/<base64 DER request>` (RFC 6960 A.1;
  URL-encoded or not): the stored response for the serial (`application/ocsp-response`, cacheable until
  its nextUpdate), or an unsigned error: `malformedRequest`, `unauthorized` (not a serial this CA
  answers for), `tryLater` (known serial whose response is being signed, e.g. just after a revocation).
- `GET /crl/issuing.crl` (also `intermediate.crl`): the latest CRL of the issuing CA, DER
  (`application/pkix-crl`); `GET /crl/root.crl`: the latest CRL of the root, which lists revoked issuing
  CAs, signed with the root's FROST shares. 404 until the first one is signed.
- OCSP for an issuing CA's certificate (a CertID naming the root as its issuer) is answered from the
  root-signed responses; any other CertID from the issuing CA's.
"""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import urllib.parse
from typing import TYPE_CHECKING, Any

from aiohttp import web
from cryptography.x509 import ocsp as xocsp

from trustchain.ca import ocsp
from trustchain.ca import urls as causrls

if TYPE_CHECKING:
    from reference_node.runtime import Node

OCSP_REQUEST = "application/ocsp-request"
OCSP_RESPONSE = "application/ocsp-response"
MAX_OCSP_REQUEST = 8192
ISSUING_CRL_NAMES = ("issuing", "intermediate")
ROOT_CRL_NAMES = ("root",)
HTTP_DATE = "%a, %d %b %Y %H:%M:%S GMT"


def register(app: web.Application, node: Node) -> None:
    pki = PKI(node)
    app.router.add_post(causrls.OCSP, pki.ocsp_post)  # the URLs certificates name (trustchain.ca.urls)
    app.router.add_post(causrls.OCSP + "/", pki.ocsp_post)
    app.router.add_get(causrls.OCSP + "/{request:.+}", pki.ocsp_get)
    app.router.add_get("/crl/{name}", pki.crl)  # causrls.ISSUING_CRL, and the root's (not produced)


class PKI:
    def __init__(self, node: Node) -> None:
        self.node = node

    def _answer(self, request_der: bytes) -> web.Response:
        ca = self.node.app.ca
        root, parsed_request = ca.policy.root, ocsp.load_request(request_der)
        if root is not None and parsed_request is not None and ocsp.issued_by(root, parsed_request):
            body = ocsp.serve(root, request_der, ca.root.ocsp_response, ca.root.ocsp_known)
        else:
            body = ocsp.serve(ca.current_issuer, request_der, ca.ocsp_response, ca.ocsp_known)
        headers = {"Cache-Control": "no-store"}
        parsed = xocsp.load_der_ocsp_response(body)
        if parsed.response_status == xocsp.OCSPResponseStatus.SUCCESSFUL and parsed.next_update_utc is not None:
            # RFC 5019 6.2 caching headers; capped at an hour so that a cache does not keep serving "good"
            # long after a revocation.
            left = (parsed.next_update_utc - dt.datetime.now(dt.UTC)).total_seconds()
            headers["Cache-Control"] = f"public, max-age={max(0, min(int(left), 3600))}, no-transform, must-revalidate"
            headers["Last-Modified"] = parsed.produced_at_utc.strftime(HTTP_DATE)
            headers["Expires"] = parsed.next_update_utc.strftime(HTTP_DATE)
        return web.Response(body=body, content_type=OCSP_RESPONSE, headers=headers)

    async def ocsp_post(self, request: web.Request) -> web.Response:
        if request.content_type != OCSP_REQUEST:
            raise web.HTTPUnsupportedMediaType(text=f"content-type must be {OCSP_REQUEST}")
        if request.content_length is not None and request.content_length > MAX_OCSP_REQUEST:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_OCSP_REQUEST, actual_size=request.content_length)
        body = await request.content.read(MAX_OCSP_REQUEST + 1)
        if len(body) > MAX_OCSP_REQUEST:
            raise web.HTTPRequestEntityTooLarge(max_size=MAX_OCSP_REQUEST, actual_size=len(body))
        return self._answer(body)

    async def ocsp_get(self, request: web.Request) -> web.Response:
        text = urllib.parse.unquote(request.match_info["request"])
        if len(text) > 2 * MAX_OCSP_REQUEST:
            raise web.HTTPRequestURITooLong()
        try:
            der = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
        except (binascii.Error, ValueError):
            try:  # some clients use the URL-safe alphabet
                der = base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))
            except (binascii.Error, ValueError):
                der = b""
        return self._answer(der)

    async def crl(self, request: web.Request) -> web.Response:
        name = request.match_info["name"]
        if not name.endswith(".crl"):
            raise web.HTTPNotFound(text="CRLs are at /crl/<issuer>.crl")
        stem = name.removesuffix(".crl")
        if stem not in ISSUING_CRL_NAMES + ROOT_CRL_NAMES:
            raise web.HTTPNotFound(text=f"no CRL for {stem!r} (this node serves "
                                        f"{', '.join(ISSUING_CRL_NAMES + ROOT_CRL_NAMES)})")
        signed = self.node.app.ca.crl if stem in ISSUING_CRL_NAMES else self.node.app.ca.root.crl
        if signed is None:
            raise web.HTTPNotFound(text="no CRL has been signed yet")
        next_update = dt.datetime.fromtimestamp(signed.next_update_us / 1e6, dt.UTC)
        max_age = max(0, int((next_update - dt.datetime.now(dt.UTC)).total_seconds()))
        return web.Response(body=signed.der, content_type="application/pkix-crl", headers={
            "Cache-Control": f"public, max-age={min(max_age, 3600)}", "X-CRL-Number": str(signed.number)})


def openapi_paths() -> dict[str, Any]:
    """The OpenAPI 3 entries for these routes (merged into the node's document)."""

    def binary(summary: str, ctype: str, params: tuple[str, ...] = ()) -> dict[str, Any]:
        op: dict[str, Any] = {"summary": summary, "responses": {
            "200": {"description": "DER", "content": {ctype: {"schema": {"type": "string", "format": "binary"}}}}}}
        if params:
            op["parameters"] = [{"name": p, "in": "path", "required": True, "schema": {"type": "string"}}
                                for p in params]
        return op

    # The body (a DER OCSPRequest, content-type application/ocsp-request) is described, not declared as a
    # requestBody: OpenAPI tooling has no serializer for that media type.
    post = binary("OCSP request (RFC 6960): body is a DER OCSPRequest sent as application/ocsp-request; answered "
                  "from pre-signed responses (415 for another content type)", OCSP_RESPONSE)
    return {
        "/ocsp": {"post": post},
        "/ocsp/": {"post": post},
        "/ocsp/{request}": {"get": binary("OCSP request as URL-encoded base64 DER (RFC 6960 A.1)", OCSP_RESPONSE,
                                          ("request",))},
        "/crl/{name}": {"get": {**binary("Latest FROST-signed CRL of the issuing CA (issuing.crl) or of the root "
                                         "(root.crl)",
                                         "application/pkix-crl", ("name",)),
                                "responses": {
                                    "200": {"description": "DER CRL", "content": {"application/pkix-crl": {
                                        "schema": {"type": "string", "format": "binary"}}}},
                                    "404": {"description": "no CRL signed yet, or not an issuer this node serves"}}}},
    }
