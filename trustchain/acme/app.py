"""The replicated ACME server (RFC 8555): every replica executes the client's own JWS identically.

Why a sub-application of the router: an ACME request is ordered as the client sent it (`AcmeRequest`:
the path it was posted to and the JWS bytes), so no node can act for a client. Each replica checks the
JWS against the replicated account registry (the ACME account *is* the TrustChain account), the `url`
against the path, and the nonce against its issuing time and the account's replicated once-only set;
then it applies the request to the replicated orders and authorizations (`objects`), validates
challenges (dns-01 in TrustChain's zones deterministically, everything else by the validators'
ordered observations) and hands a finalized order's CSR to the replicated CA.

Reads (POST-as-GET) are ordered too: they consume a nonce like any request, and every node answers
them from the same ordered state, so a client can poll any node.
"""

from __future__ import annotations

import dataclasses
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, Protocol

from trustchain.accounts.keys import AccountKey
from trustchain.accounts.registry import AccountRegistry
from trustchain.acme import jws as acmejws
from trustchain.acme import paths, problems
from trustchain.acme.objects import AcmeLimits
from trustchain.acme.orders import OrderBook
from trustchain.acme.problems import Problem, problem
from trustchain.acme.results import (
    KIND_ACCOUNT,
    KIND_AUTHZ,
    KIND_CERTIFICATE,
    KIND_CHALLENGE,
    KIND_ORDER,
    KIND_ORDERS,
    AccountView,
    AcmeRequest,
    AcmeResult,
)
from trustchain.acme.results import refuse as _refuse
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.validation import ValidationApp
from trustchain.ca.issuance import CAApplication
from trustchain.encoding import DecodeError, decode

__all__ = ["ACME", "AcmeApplication", "ZoneView"]

ACME = "acme"  # the routing target of an ACME request
MAX_CONTACTS = 4


class ZoneView(Protocol):
    """The replicated DNS as of the ordered request (`trustchain.app.trustchain.ZoneLookup`)."""

    def serves(self, name: str) -> bool: ...

    def txt(self, name: str) -> Any: ...


@dataclass(frozen=True)
class _Request:
    """A request whose JWS parsed and whose nonce is fresh (`nonce_expiry_us`: until when it is kept)."""

    route: paths.Route
    jws: acmejws.ParsedJWS
    op: Operation
    ctx: ExecutionContext
    index: int
    nonce_expiry_us: int

    @property
    def now_us(self) -> int:
        return self.ctx.time_us


class AcmeApplication:
    def __init__(self, registry: AccountRegistry, ca: CAApplication, zones: ZoneView, validation: ValidationApp,
                 limits: AcmeLimits | None = None) -> None:
        self.registry = registry
        self.ca = ca
        self.book = OrderBook(registry, ca, zones, validation, limits or AcmeLimits())

    # ------------------------------------------------------------------ execution

    def execute(self, op: Operation, ctx: ExecutionContext, index: int) -> AcmeResult:
        """One ordered ACME request. Never raises on client input."""
        now = ctx.time_us
        self.book.expire(now)
        try:
            req = decode(AcmeRequest, op.payload)
        except DecodeError as exc:
            return _refuse(problem(problems.MALFORMED, f"request: {exc}"))
        route = paths.match(req.path)
        if route is None:
            return _refuse(problem(problems.NOT_FOUND, f"path: no ACME resource at {req.path[:100]!r}"))
        parsed = acmejws.parse(req.jws)
        if isinstance(parsed, Problem):
            return _refuse(parsed)
        if parsed.url_path != req.path:
            return _refuse(problem(problems.UNAUTHORIZED, "url: the signed url is not the URL this was posted to"))
        issued = acmejws.nonce_time_us(parsed.nonce)
        assert issued is not None  # `parse` checked it
        if not now - acmejws.NONCE_LIFETIME_US <= issued <= now + acmejws.NONCE_SKEW_US:
            return _refuse(problem(problems.BAD_NONCE, "nonce: expired or not yet valid, use a fresh one"))
        request = _Request(route, parsed, Operation(op.client, op.timestamp, req.jws), ctx, index,
                           issued + acmejws.NONCE_LIFETIME_US + acmejws.NONCE_SKEW_US)
        if route.kind == paths.NEW_ACCOUNT:
            return self._new_account(request)
        if route.kind == paths.REVOKE_CERT and parsed.jwk is not None:
            return self.book.revoke_by_key(request.jws, request.now_us, request.nonce_expiry_us)
        account = self._authenticate(request)
        if isinstance(account, Problem):
            return _refuse(account)
        handler = _HANDLERS.get(route.kind)
        assert handler is not None, route.kind
        return handler(self, request, account)

    def _authenticate(self, req: _Request) -> bytes | Problem:
        """The account that signed `req` (kid), its nonce recorded; or why not."""
        jws = req.jws
        if jws.jwk is not None:
            return problem(problems.MALFORMED, "jwk: this request must be signed by an account key named by kid")
        kid = paths.match(acmejws.url_path(jws.kid))
        if kid is None or kid.kind != paths.ACCOUNT:
            return problem(problems.ACCOUNT_DOES_NOT_EXIST, "kid: not an account URL of this server")
        key = self.registry.key_of(kid.account)
        if key is None:
            return problem(problems.ACCOUNT_DOES_NOT_EXIST, "kid: no such account")
        if self.registry.validator_index(kid.account) is not None:
            return problem(problems.UNAUTHORIZED, "kid: a validator account does not use ACME")
        if not self.registry.is_active(kid.account):
            return problem(problems.UNAUTHORIZED, "kid: the account is deactivated")
        if not acmejws.verify(jws, key):
            return problem(problems.MALFORMED, "signature: does not verify with the account's key")
        reason = self.registry.use_nonce(kid.account, jws.nonce, req.nonce_expiry_us, req.now_us)
        if reason is not None:
            return _nonce_problem(reason)
        return kid.account

    # ------------------------------------------------------------------ accounts

    def _view(self, account: bytes) -> AccountView:
        key = self.registry.key_of(account)
        assert key is not None
        contact = self.registry.contact_of(account)
        return AccountView(account, self.registry.status_of(account) or "", tuple(c for c in contact.split("\n") if c),
                           key)

    def _account_result(self, account: bytes, status: int = 200) -> AcmeResult:
        return AcmeResult(status, KIND_ACCOUNT, location=paths.account_path(account), account=self._view(account))

    def _new_account(self, req: _Request) -> AcmeResult:
        jws = req.jws
        if jws.jwk is None:
            return _refuse(problem(problems.MALFORMED, "jwk: newAccount is signed with the new account's key (jwk)"))
        key = acmejws.account_key(jws.jwk, jws.alg)
        if isinstance(key, Problem):
            return _refuse(key)
        if not acmejws.verify(jws, key):
            return _refuse(problem(problems.MALFORMED, "signature: does not verify with the jwk"))
        doc = jws.json_payload()
        if isinstance(doc, Problem):
            return _refuse(doc)
        contact = _contacts(doc)
        if isinstance(contact, Problem):
            return _refuse(contact)
        existing = self.registry.account_of_key(key)
        if existing is not None:
            if self.registry.validator_index(existing) is not None:
                return _refuse(problem(problems.UNAUTHORIZED, "jwk: a validator account does not use ACME"))
            reason = self.registry.use_nonce(existing, jws.nonce, req.nonce_expiry_us, req.now_us)
            if reason is not None:
                return _refuse(_nonce_problem(reason))
            return self._account_result(existing)
        if doc.get("onlyReturnExisting") is True:
            return _refuse(problem(problems.ACCOUNT_DOES_NOT_EXIST, "jwk: no account has this key"))
        if doc.get("termsOfServiceAgreed", False) not in (True, False):
            return _refuse(problem(problems.MALFORMED, "termsOfServiceAgreed: must be a boolean"))
        created = self.registry.register_key(key, "\n".join(contact), jws.nonce, req.nonce_expiry_us, req.now_us)
        if not created.ok:
            kind = problems.RATE_LIMITED if created.detail.startswith(("rate", "accounts")) else problems.UNAUTHORIZED
            return _refuse(problem(kind, created.detail))
        if self.registry.key_of(created.account) != key:  # its first key, since rolled over to another
            return _refuse(problem(problems.UNAUTHORIZED, "jwk: this key's account has rolled over to another key"))
        return self._account_result(created.account, 201)

    def _account(self, req: _Request, account: bytes) -> AcmeResult:
        if req.route.account != account:
            return _refuse(problem(problems.UNAUTHORIZED, "kid: this is another account's URL"))
        if req.jws.post_as_get:
            return self._account_result(account)
        doc = req.jws.json_payload()
        if isinstance(doc, Problem):
            return _refuse(doc)
        if "contact" in doc:
            contact = _contacts(doc)
            if isinstance(contact, Problem):
                return _refuse(contact)
            self.registry.set_contact(account, "\n".join(contact))
        status = doc.get("status")
        if status is not None:
            if status != "deactivated":
                return _refuse(problem(problems.MALFORMED, "status: an account can only be set to \"deactivated\""))
            view = dataclasses.replace(self._view(account), status="deactivated")
            self.registry.deactivate(account)
            self.book.deactivate_account(account, req.now_us)
            return AcmeResult(200, KIND_ACCOUNT, location=paths.account_path(account), account=view)
        return self._account_result(account)

    def _orders(self, req: _Request, account: bytes) -> AcmeResult:
        if req.route.account != account:
            return _refuse(problem(problems.UNAUTHORIZED, "kid: this is another account's URL"))
        return AcmeResult(200, KIND_ORDERS, orders=self.book.orders_of(account))

    def _key_change(self, req: _Request, account: bytes) -> AcmeResult:
        inner = acmejws.parse(req.jws.payload, inner=True)
        if isinstance(inner, Problem):
            return _refuse(dataclasses.replace(inner, detail="inner JWS: " + inner.detail))
        if inner.url != req.jws.url:
            return _refuse(problem(problems.MALFORMED, "url: the inner and outer JWS name different URLs"))
        assert inner.jwk is not None
        new_key = acmejws.account_key(inner.jwk, inner.alg)
        if isinstance(new_key, Problem):
            return _refuse(new_key)
        if not acmejws.verify(inner, new_key):
            return _refuse(problem(problems.MALFORMED, "inner JWS: signature does not verify with its jwk"))
        doc = inner.json_payload()
        if isinstance(doc, Problem):
            return _refuse(doc)
        named = doc.get("account")
        own = paths.Route(paths.ACCOUNT, account=account)
        if not isinstance(named, str) or paths.match(acmejws.url_path(named)) != own:
            return _refuse(problem(problems.MALFORMED, "account: must be the URL of the account making the change"))
        old = doc.get("oldKey")
        current = self.registry.key_of(account)
        if not isinstance(old, dict) or current is None or _any_account_key(old) != current:
            return _refuse(problem(problems.MALFORMED, "oldKey: is not the account's current key"))
        changed = self.registry.replace_key(account, new_key)
        if not changed.ok:
            if changed.detail.startswith("new_key"):
                return AcmeResult(409, problem=problem(problems.CONFLICT, changed.detail),
                                  location=paths.account_path(changed.account))
            return _refuse(problem(problems.UNAUTHORIZED, changed.detail))
        return self._account_result(account)

    # ------------------------------------------------------------------ orders, authorizations, challenges

    def _new_order(self, req: _Request, account: bytes) -> AcmeResult:
        doc = req.jws.json_payload()
        if isinstance(doc, Problem):
            return _refuse(doc)
        seed = struct.pack(">QQQ", req.ctx.seq, req.index, req.op.timestamp)
        order = self.book.new_order(account, doc, seed, req.now_us)
        if isinstance(order, Problem):
            return _refuse(order)
        return AcmeResult(201, KIND_ORDER, location=paths.order_path(order.order_id), order=order)

    def _order(self, req: _Request, account: bytes) -> AcmeResult:
        order = self.book.owned_order(req.route.number, account)
        if isinstance(order, Problem):
            return _refuse(order)
        return AcmeResult(200, KIND_ORDER, location=paths.order_path(order.order_id), order=order)

    def _finalize(self, req: _Request, account: bytes) -> AcmeResult:
        doc = req.jws.json_payload()
        if isinstance(doc, Problem):
            return _refuse(doc)
        order = self.book.finalize(req.route.number, account, doc, req.op, req.ctx, req.index)
        if isinstance(order, Problem):
            return _refuse(order)
        return AcmeResult(200, KIND_ORDER, location=paths.order_path(order.order_id), order=order)

    def _authz(self, req: _Request, account: bytes) -> AcmeResult:
        authz = self.book.owned_authz(req.route.number, account)
        if isinstance(authz, Problem):
            return _refuse(authz)
        if not req.jws.post_as_get:
            doc = req.jws.json_payload()
            if isinstance(doc, Problem):
                return _refuse(doc)
            if doc.get("status", "deactivated") != "deactivated" or "status" not in doc:
                return _refuse(problem(problems.MALFORMED, "status: an authorization can only be \"deactivated\""))
            changed = self.book.deactivate_authz(authz, req.now_us)
            if isinstance(changed, Problem):
                return _refuse(changed)
            authz = changed
        return AcmeResult(200, KIND_AUTHZ, location=paths.authz_path(authz.authz_id), authz=authz)

    def _challenge(self, req: _Request, account: bytes) -> AcmeResult:
        authz = self.book.owned_authz(req.route.number, account)
        if isinstance(authz, Problem):
            return _refuse(authz)
        if authz.challenge(req.route.challenge) is None:
            return _refuse(problem(problems.NOT_FOUND, "challenge: this authorization offers no such challenge"))
        if not req.jws.post_as_get:
            doc = req.jws.json_payload()
            if isinstance(doc, Problem):
                return _refuse(doc)
            responded = self.book.respond(authz, req.route.challenge, req.now_us)
            if isinstance(responded, Problem):
                return _refuse(responded)
            authz = responded
        return AcmeResult(200, KIND_CHALLENGE, location=paths.challenge_path(authz.authz_id, req.route.challenge),
                          authz=authz, challenge=req.route.challenge)

    def _certificate(self, req: _Request, account: bytes) -> AcmeResult:
        record = self.ca.issued.get(req.route.serial)
        if record is None:
            return _refuse(problem(problems.NOT_FOUND, "certificate: not issued by this CA"))
        if record.account != account:
            return _refuse(problem(problems.UNAUTHORIZED, "certificate: issued to another account"))
        return AcmeResult(200, KIND_CERTIFICATE, certificate_der=record.certificate_der)

    def _revoke(self, req: _Request, account: bytes) -> AcmeResult:
        return self.book.revoke_by_account(req.jws, account, req.now_us)

    # ------------------------------------------------------------------ events from the rest of the cluster

    def on_decided(self, validation_id: int, validated: bool, now_us: int) -> None:
        self.book.on_decided(validation_id, validated, now_us)

    def on_issued(self, pending_id: int, serial: bytes = b"") -> None:
        self.book.on_issued(pending_id, serial)

    def on_pending_expired(self, pending_id: int) -> None:
        self.book.on_pending_expired(pending_id)

    def snapshot(self) -> bytes:
        return self.book.snapshot()

    def restore(self, snapshot: bytes) -> None:
        self.book.restore(snapshot)


def _nonce_problem(reason: str) -> Problem:
    if reason.startswith("nonce"):
        return problem(problems.BAD_NONCE, reason)
    if reason.startswith("rate"):
        return problem(problems.RATE_LIMITED, reason)
    return problem(problems.UNAUTHORIZED, reason)


def _any_account_key(jwk: dict[str, Any]) -> AccountKey | None:
    for alg in acmejws.ACCOUNT_ALGORITHMS:
        key = acmejws.account_key(jwk, alg)
        if isinstance(key, AccountKey):
            return key
    return None


def _contacts(doc: dict[str, Any]) -> list[str] | Problem:
    contact = doc.get("contact", [])
    if not isinstance(contact, list) or len(contact) > MAX_CONTACTS:
        return problem(problems.INVALID_CONTACT, f"contact: a list of at most {MAX_CONTACTS} mailto: URLs")
    for c in contact:
        if not isinstance(c, str) or not c.startswith("mailto:"):
            return problem(problems.UNSUPPORTED_CONTACT, "contact: only mailto: URLs are supported")
        address = c.removeprefix("mailto:")
        if "@" not in address or any(ch in address for ch in ",\n\r ?") or len(address) > 200:
            return problem(problems.INVALID_CONTACT, f"contact: {c[:64]!r} is not one email address")
    return list(contact)


_Handler = Callable[[AcmeApplication, _Request, bytes], AcmeResult]
_HANDLERS: dict[str, _Handler] = {
    paths.ACCOUNT: AcmeApplication._account,
    paths.ORDERS: AcmeApplication._orders,
    paths.KEY_CHANGE: AcmeApplication._key_change,
    paths.NEW_ORDER: AcmeApplication._new_order,
    paths.ORDER: AcmeApplication._order,
    paths.FINALIZE: AcmeApplication._finalize,
    paths.AUTHZ: AcmeApplication._authz,
    paths.CHALLENGE: AcmeApplication._challenge,
    paths.CERTIFICATE: AcmeApplication._certificate,
    paths.REVOKE_CERT: AcmeApplication._revoke,
}
