"""The replicated orders and authorizations of the ACME server, and how they change.

Why a module of its own: `app` checks who is asking (JWS, nonce, account); this book holds what they
asked for and moves it only through the transition tables of `objects`. Challenge validation: dns-01 for
a name in one of TrustChain's own zones is checked against the replicated DNS at once, identically on
every replica; anything else (outside names, http-01) is looked at by each validator on its own and
decided by a quorum of ordered observations (`trustchain.authorization.observations`). An order whose
authorizations are all valid is finalized into the replicated CA, which issues through FROST.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from trustchain.accounts.registry import AccountRegistry
from trustchain.acme import jws as acmejws
from trustchain.acme import problems
from trustchain.acme.objects import (
    AUTHZ_TRANSITIONS,
    CHALLENGE_TRANSITIONS,
    DNS01,
    HTTP01,
    ORDER_TRANSITIONS,
    PENDING,
    PROCESSING,
    READY,
    VALID,
    AcmeLimits,
    Authorization,
    Challenge,
    Order,
    can,
    transition,
)
from trustchain.acme.problems import Problem, problem
from trustchain.acme.results import AcmeResult, refuse
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.app.validation import ValidationApp
from trustchain.authorization import observations
from trustchain.ca import names as canames
from trustchain.ca import ownership
from trustchain.ca.commands import STATUS_UNCHANGED, CAResult
from trustchain.ca.issuance import CAApplication
from trustchain.ca.records import serial_bytes
from trustchain.encoding import DecodeError, decode, encode

__all__ = ["OrderBook"]

SNAPSHOT_VERSION = 1
_LIVE = (PENDING, READY, PROCESSING)
_CA_PROBLEMS = {"csr": problems.BAD_CSR, "rate": problems.RATE_LIMITED, "caa": problems.CAA,
                "names": problems.REJECTED_IDENTIFIER, "payment": problems.UNAUTHORIZED,
                "lifetime": problems.SERVER_INTERNAL, "serial": problems.SERVER_INTERNAL}


@dataclass(frozen=True)
class _Nonce:
    nonce: bytes
    expiry_us: int


@dataclass(frozen=True)
class _SerialNonces:
    serial: bytes
    nonces: tuple[_Nonce, ...]


@dataclass(frozen=True)
class _Snapshot:
    version: int
    next_order_id: int
    next_authz_id: int
    orders: tuple[Order, ...]
    authzs: tuple[Authorization, ...]
    revocation_nonces: tuple[_SerialNonces, ...]


class OrderBook:
    def __init__(self, registry: AccountRegistry, ca: CAApplication, zones: Any, validation: ValidationApp,
                 limits: AcmeLimits) -> None:
        self.registry, self.ca, self.zones, self.validation, self.limits = registry, ca, zones, validation, limits
        self.orders: dict[int, Order] = {}
        self.authzs: dict[int, Authorization] = {}
        self.next_order_id = 1
        self.next_authz_id = 1
        # once-only nonces of revocations signed by a certificate's key (no account): serial -> nonce -> expiry
        self.revocation_nonces: dict[bytes, dict[bytes, int]] = {}
        self._by_validation: dict[int, int] = {}  # derived: validation id -> authz id
        self._by_pending: dict[int, int] = {}  # derived: CA pending id -> order id

    # ------------------------------------------------------------------ queries

    def owned_order(self, order_id: int, account: bytes) -> Order | Problem:
        order = self.orders.get(order_id)
        if order is None:
            return problem(problems.NOT_FOUND, "order: no such order")
        if order.account != account:
            return problem(problems.UNAUTHORIZED, "order: belongs to another account")
        return order

    def owned_authz(self, authz_id: int, account: bytes) -> Authorization | Problem:
        authz = self.authzs.get(authz_id)
        if authz is None:
            return problem(problems.NOT_FOUND, "authorization: no such authorization")
        if authz.account != account:
            return problem(problems.UNAUTHORIZED, "authorization: belongs to another account")
        return authz

    def orders_of(self, account: bytes) -> tuple[int, ...]:
        return tuple(o.order_id for o in self.orders.values() if o.account == account and o.status in _LIVE)

    # ------------------------------------------------------------------ new orders

    def new_order(self, account: bytes, doc: dict[str, Any], seed: bytes, now_us: int) -> Order | Problem:
        for field in ("notBefore", "notAfter"):
            if field in doc:
                return problem(problems.MALFORMED, f"{field}: not supported (certificates start at issuance)")
        names = self._identifiers(doc.get("identifiers"))
        if isinstance(names, Problem):
            return names
        live = [o for o in self.orders.values() if o.status in _LIVE]
        if len(live) >= self.limits.max_live_orders:
            return problem(problems.RATE_LIMITED, "orders: too many open orders, try later")
        if sum(1 for o in live if o.account == account) >= self.limits.max_live_orders_per_account:
            return problem(problems.RATE_LIMITED, "orders: too many open orders for this account")
        if len(self.authzs) + len(names) > self.limits.max_authorizations:
            return problem(problems.RATE_LIMITED, "orders: too many authorizations held, try later")
        order_id = self.next_order_id
        self.next_order_id += 1
        expires = now_us + self.limits.order_lifetime_us
        authz_ids = []
        for name in names:
            base, wildcard = name.removeprefix("*."), name.startswith("*.")
            reused = self._reusable(account, base, wildcard, expires)
            if reused is not None:
                authz_ids.append(reused.authz_id)
                continue
            kinds = (DNS01,) if wildcard else (HTTP01, DNS01)
            challenges = tuple(Challenge(kind, _token(seed, account, name, kind)) for kind in kinds)
            authz = Authorization(self.next_authz_id, order_id, account, base, wildcard, PENDING, expires, challenges)
            self.authzs[authz.authz_id] = authz
            authz_ids.append(authz.authz_id)
            self.next_authz_id += 1
        order = Order(order_id, account, names, tuple(authz_ids), PENDING, now_us, expires)
        self.orders[order_id] = order
        self._settle_order(order_id, now_us)  # ready at once if every authorization was reused
        return self.orders[order_id]

    def _reusable(self, account: bytes, name: str, wildcard: bool, until_us: int) -> Authorization | None:
        """The account's valid authorization for `name` that outlives an order ending at `until_us`."""
        found = [a for a in self.authzs.values() if a.account == account and a.name == name
                 and a.wildcard == wildcard and a.status == VALID and a.expires_us >= until_us]
        return max(found, key=lambda a: (a.expires_us, a.authz_id)) if found else None

    def _keep_for_reuse(self, authz: Authorization, now_us: int) -> Authorization:
        """Extend a just validated authorization to the reuse window, within the bounds on held ones."""
        lim = self.limits
        if lim.authz_reuse_us <= lim.order_lifetime_us:
            return authz
        horizon = now_us + lim.order_lifetime_us
        kept = [a.account for a in self.authzs.values() if a.status == VALID and a.expires_us > horizon]
        if len(kept) >= lim.max_reusable_authzs or kept.count(authz.account) >= lim.max_reusable_authzs_per_account:
            return authz
        extended = dataclasses.replace(authz, expires_us=max(authz.expires_us, now_us + lim.authz_reuse_us))
        self.authzs[authz.authz_id] = extended
        return extended

    def _identifiers(self, raw: object) -> tuple[str, ...] | Problem:
        if not isinstance(raw, list) or not 1 <= len(raw) <= self.limits.max_identifiers:
            return problem(problems.MALFORMED, f"identifiers: a list of 1..{self.limits.max_identifiers} identifiers")
        policy = self.ca.policy
        names: list[str] = []
        for item in raw:
            if not isinstance(item, dict) or not isinstance(item.get("value"), str):
                return problem(problems.MALFORMED, "identifiers: each is {\"type\": \"dns\", \"value\": <name>}")
            if item.get("type") != "dns":
                return problem(problems.UNSUPPORTED_IDENTIFIER, "identifiers: only type \"dns\" is supported")
            name = canames.normalize(item["value"][:300])
            reason = canames.check_dns_name(name, allow_wildcard=policy.allow_wildcards)
            if reason:
                return problem(problems.REJECTED_IDENTIFIER, f"identifiers: {name!r}: {reason}")
            if canames.under(name, policy.node_domain):
                return problem(problems.REJECTED_IDENTIFIER, f"identifiers: {name!r}: node names are the validators'")
            if name not in names:
                names.append(name)
        return tuple(sorted(names))

    # ------------------------------------------------------------------ challenges

    def respond(self, authz: Authorization, kind: str, now_us: int) -> Authorization | Problem:
        """The client says challenge `kind` is ready: validate it (or have the validators look)."""
        chall = authz.challenge(kind)
        assert chall is not None
        if chall.status != PENDING or authz.status != PENDING:
            return authz  # already answered: the current state is the answer (RFC 8555 section 7.5.1)
        key = self.registry.key_of(authz.account)
        assert key is not None
        key_auth = acmejws.key_authorization(chall.token, key)
        if kind == DNS01 and self.zones.serves(authz.name):
            record = f"{ownership.CHALLENGE_LABEL}.{authz.name}"
            if ownership.dns01_txt(key_auth) in self.zones.txt(record):
                return self._decide(authz, kind, True, now_us)
            return self._decide(authz, kind, False, now_us, problem(
                problems.INCORRECT_RESPONSE, f"dns-01: no TXT record at {record} with the expected value"))
        if kind == DNS01:
            method, record, expected = (observations.DNS01, f"{ownership.CHALLENGE_LABEL}.{authz.name}",
                                        ownership.dns01_txt(key_auth))
        else:
            method, record, expected = observations.HTTP01, f"/.well-known/acme-challenge/{chall.token}", key_auth
        opened = self.validation.open_ready(authz.account, authz.name, method, record, expected, now_us)
        if isinstance(opened, str):
            return problem(problems.RATE_LIMITED, opened)
        processing = dataclasses.replace(chall, status=transition(CHALLENGE_TRANSITIONS, chall.status, "respond"),
                                         validation_id=opened.validation_id)
        self._by_validation[opened.validation_id] = authz.authz_id
        return self._put_challenge(authz, processing)

    def _put_challenge(self, authz: Authorization, chall: Challenge) -> Authorization:
        updated = dataclasses.replace(authz, challenges=tuple(chall if c.type == chall.type else c
                                                              for c in authz.challenges))
        self.authzs[authz.authz_id] = updated
        return updated

    def _decide(self, authz: Authorization, kind: str, validated: bool, now_us: int,
                error: Problem | None = None) -> Authorization:
        chall = authz.challenge(kind)
        assert chall is not None
        if chall.status == PENDING:
            chall = dataclasses.replace(chall, status=transition(CHALLENGE_TRANSITIONS, PENDING, "respond"))
        chall = dataclasses.replace(chall, status=transition(CHALLENGE_TRANSITIONS, chall.status,
                                                             "validated" if validated else "failed"),
                                    validated_us=now_us if validated else 0, error=error)
        authz = self._put_challenge(authz, chall)
        return self._settle_authz(authz, "validated" if validated else "failed", now_us)

    def _settle_authz(self, authz: Authorization, event: str, now_us: int) -> Authorization:
        """Move `authz` by `event`, abandon its other challenges if it is done, and settle its order."""
        if not can(AUTHZ_TRANSITIONS, authz.status, event):
            return authz
        status = transition(AUTHZ_TRANSITIONS, authz.status, event)
        challenges = tuple(
            dataclasses.replace(c, status=transition(CHALLENGE_TRANSITIONS, c.status, "abandoned"))
            if status != VALID and can(CHALLENGE_TRANSITIONS, c.status, "abandoned") else c
            for c in authz.challenges)
        for c in authz.challenges:
            if c.validation_id and c.status != PROCESSING:
                self._by_validation.pop(c.validation_id, None)
        authz = dataclasses.replace(authz, status=status, challenges=challenges)
        self.authzs[authz.authz_id] = authz
        if status == VALID:
            authz = self._keep_for_reuse(authz, now_us)
        self._settle_order(authz.order_id, now_us)
        return authz

    def _settle_order(self, order_id: int, now_us: int) -> None:
        order = self.orders.get(order_id)
        if order is None or order.status != PENDING:
            return
        statuses = [self.authzs[a].status for a in order.authz_ids if a in self.authzs]
        if len(statuses) == len(order.authz_ids) and all(s == VALID for s in statuses):
            self.orders[order_id] = dataclasses.replace(order, status=transition(ORDER_TRANSITIONS, PENDING,
                                                                                 "authorized"))
        elif any(s not in (PENDING, VALID) for s in statuses) or len(statuses) != len(order.authz_ids):
            failed = next((c.error for a in order.authz_ids if a in self.authzs
                           for c in self.authzs[a].challenges if c.error is not None), None)
            self.orders[order_id] = dataclasses.replace(
                order, status=transition(ORDER_TRANSITIONS, PENDING, "authorization_failed"),
                error=failed or problem(problems.UNAUTHORIZED, "authorizations: one is no longer pending or valid"))

    def on_decided(self, validation_id: int, validated: bool, now_us: int) -> None:
        """The validators' quorum decided an observed challenge."""
        authz_id = self._by_validation.pop(validation_id, None)
        authz = self.authzs.get(authz_id) if authz_id is not None else None
        if authz is None:
            return
        chall = next((c for c in authz.challenges if c.validation_id == validation_id), None)
        if chall is None or chall.status != PROCESSING:
            return
        error = None if validated else problem(
            problems.INCORRECT_RESPONSE, f"{chall.type}: the validators did not see the expected response")
        self._decide(authz, chall.type, validated, now_us, error)

    def deactivate_authz(self, authz: Authorization, now_us: int) -> Authorization | Problem:
        if not can(AUTHZ_TRANSITIONS, authz.status, "deactivate"):
            return problem(problems.MALFORMED, f"status: a {authz.status} authorization cannot be deactivated")
        return self._settle_authz(authz, "deactivate", now_us)

    def deactivate_account(self, account: bytes, now_us: int) -> None:
        for authz in [a for a in self.authzs.values() if a.account == account]:
            self._settle_authz(authz, "deactivate", now_us)

    # ------------------------------------------------------------------ finalize and issuance

    def finalize(self, order_id: int, account: bytes, doc: dict[str, Any], op: Operation, ctx: ExecutionContext,
                 index: int) -> Order | Problem:
        order = self.owned_order(order_id, account)
        if isinstance(order, Problem):
            return order
        if order.status != READY:
            return problem(problems.ORDER_NOT_READY, f"order: is {order.status}, not ready")
        if any(self.authzs[a].status != VALID if a in self.authzs else True for a in order.authz_ids):
            # a reused authorization deactivated since the order became ready
            return problem(problems.UNAUTHORIZED, "authorizations: one is no longer valid")
        raw = doc.get("csr")
        der = acmejws.b64decode(raw) if isinstance(raw, str) else None
        if der is None:
            return problem(problems.MALFORMED, "csr: required, base64url DER")
        try:
            csr = x509.load_der_x509_csr(der)
            csr_names = _csr_names(csr)
        except (ValueError, TypeError) as exc:
            return problem(problems.BAD_CSR, f"csr: does not parse ({str(exc)[:100]})")
        if not csr.is_signature_valid:
            return problem(problems.BAD_CSR, "csr: signature does not verify")
        if csr_names != set(order.names):
            return problem(problems.BAD_CSR, "csr: its names differ from the order's identifiers")
        # the account is the request's client: the certificate, its rate limits and revocation rights are its own
        result = self.ca.request_validated(der, order.names, Operation(account, op.timestamp, op.payload), ctx, index)
        if not result.ok:
            return problem(_CA_PROBLEMS.get(result.field, problems.BAD_CSR), result.detail)
        processing = dataclasses.replace(order, status=transition(ORDER_TRANSITIONS, READY, "finalize"),
                                         pending_id=result.pending_id, serial=result.serial)
        self.orders[order_id] = processing
        self._by_pending[result.pending_id] = order_id
        return processing

    def on_issued(self, pending_id: int, serial: bytes = b"") -> None:
        """The certificate of the request answered with `pending_id` is issued (its serial is known only
        now: the validators' randomness fixed it after the request)."""
        order_id = self._by_pending.pop(pending_id, None)
        order = self.orders.get(order_id) if order_id is not None else None
        if order is not None and order.status == PROCESSING:
            self.orders[order.order_id] = dataclasses.replace(order, status=transition(ORDER_TRANSITIONS, PROCESSING,
                                                                                       "issued"),
                                                              serial=serial or order.serial)

    def on_pending_expired(self, pending_id: int) -> None:
        order_id = self._by_pending.pop(pending_id, None)
        order = self.orders.get(order_id) if order_id is not None else None
        if order is not None and order.status == PROCESSING:
            self.orders[order.order_id] = dataclasses.replace(
                order, status=transition(ORDER_TRANSITIONS, PROCESSING, "issuance_failed"),
                error=problem(problems.SERVER_INTERNAL, "issuance: the validators did not sign in time"))

    # ------------------------------------------------------------------ revocation

    def revoke_by_account(self, jws: acmejws.ParsedJWS, account: bytes, now_us: int) -> AcmeResult:
        found = self._revocation_target(jws)
        if isinstance(found, Problem):
            return _result(found)
        serial, reason, _ = found
        record = self.ca.issued[serial]
        names = [n.removeprefix("*.") for n in record.names]
        holds = all(any(a.account == account and a.name == n and a.status == VALID for a in self.authzs.values())
                    for n in names)
        return _result(self._revoked(self.ca.revoke(serial, reason, account, key_holder=holds, now_us=now_us)))

    def revoke_by_key(self, jws: acmejws.ParsedJWS, now_us: int, nonce_expiry_us: int) -> AcmeResult:
        """A revocation signed with the certificate's own key (its jwk), with no account."""
        found = self._revocation_target(jws)
        if isinstance(found, Problem):
            return _result(found)
        serial, reason, der = found
        assert jws.jwk is not None
        public = acmejws.public_key_of(jws.jwk)
        cert_key = x509.load_der_x509_certificate(der).public_key()
        if public is None or _spki(public) != _spki(cert_key):
            return _result(problem(problems.UNAUTHORIZED, "jwk: is not the certificate's key"))
        if not acmejws.verify(jws, jws.jwk):
            return _result(problem(problems.MALFORMED, "signature: does not verify with the certificate's key"))
        used = self.revocation_nonces.setdefault(serial, {})
        for n in [n for n, expiry in used.items() if expiry < now_us]:
            del used[n]
        if jws.nonce in used:
            return _result(problem(problems.BAD_NONCE, "nonce: already used (replayed request)"))
        if len(used) >= self.limits.max_revocation_nonces_per_certificate:
            return _result(problem(problems.RATE_LIMITED, "nonce: too many revocation requests for this certificate"))
        used[jws.nonce] = nonce_expiry_us
        client = hashlib.sha256(b"trustchain/acme/certificate-key\0" + _spki(cert_key)).digest()
        return _result(self._revoked(self.ca.revoke(serial, reason, client, key_holder=True, now_us=now_us)))

    def _revocation_target(self, jws: acmejws.ParsedJWS) -> tuple[bytes, int, bytes] | Problem:
        doc = jws.json_payload()
        if isinstance(doc, Problem):
            return doc
        raw, reason = doc.get("certificate"), doc.get("reason", 0)
        der = acmejws.b64decode(raw) if isinstance(raw, str) else None
        if der is None:
            return problem(problems.MALFORMED, "certificate: required, base64url DER")
        if not isinstance(reason, int) or isinstance(reason, bool):
            return problem(problems.BAD_REVOCATION_REASON, "reason: must be a CRLReason code")
        try:
            serial = serial_bytes(x509.load_der_x509_certificate(der).serial_number)
        except (ValueError, AssertionError):
            return problem(problems.MALFORMED, "certificate: not an X.509 certificate")
        record = self.ca.issued.get(serial)
        if record is None or record.certificate_der != der:
            return problem(problems.NOT_FOUND, "certificate: not issued by this CA")
        return serial, reason, der

    @staticmethod
    def _revoked(result: CAResult) -> Problem | None:
        if result.status == STATUS_UNCHANGED:
            return problem(problems.ALREADY_REVOKED, "certificate: already revoked")
        if result.ok:
            return None
        kind = {"reason": problems.BAD_REVOCATION_REASON, "authorization": problems.UNAUTHORIZED}.get(
            result.field, problems.MALFORMED)
        return problem(kind, result.detail)

    # ------------------------------------------------------------------ time

    def expire(self, now_us: int) -> None:
        """Expire what outlived its lifetime, fail challenges whose validation ended undecided, and forget
        records `retention_us` after they expired."""
        for vid, authz_id in list(self._by_validation.items()):
            state = self.validation.validations.state_of(vid)
            if state in (None, observations.FAILED):
                self.on_decided(vid, False, now_us)
            elif authz_id not in self.authzs:
                del self._by_validation[vid]
        for authz in [a for a in self.authzs.values() if a.expires_us < now_us]:
            self._settle_authz(authz, "expired", now_us)
        for order in [o for o in self.orders.values() if o.expires_us < now_us and can(
                ORDER_TRANSITIONS, o.status, "expired")]:
            self.orders[order.order_id] = dataclasses.replace(order, status=transition(ORDER_TRANSITIONS,
                                                                                       order.status, "expired"))
        horizon = now_us - self.limits.retention_us
        for order in [o for o in self.orders.values() if o.expires_us < horizon]:
            del self.orders[order.order_id]
            if order.pending_id:
                self._by_pending.pop(order.pending_id, None)
        # an authorization outlives its order when it is kept for reuse; no live order refers to one past
        # this horizon, since only authorizations outliving the new order are reused
        for authz_id in [a.authz_id for a in self.authzs.values() if a.expires_us < horizon]:
            del self.authzs[authz_id]
        for serial in [s for s, used in self.revocation_nonces.items() if all(e < now_us for e in used.values())]:
            del self.revocation_nonces[serial]

    # ------------------------------------------------------------------ snapshot

    def snapshot(self) -> bytes:
        return encode(_Snapshot(
            SNAPSHOT_VERSION, self.next_order_id, self.next_authz_id,
            tuple(self.orders[k] for k in sorted(self.orders)), tuple(self.authzs[k] for k in sorted(self.authzs)),
            tuple(_SerialNonces(s, tuple(_Nonce(n, e) for n, e in sorted(used.items())))
                  for s, used in sorted(self.revocation_nonces.items()))))

    def restore(self, data: bytes) -> None:
        snap = decode(_Snapshot, data)
        if snap.version != SNAPSHOT_VERSION:
            raise DecodeError(f"ACME snapshot version: {snap.version} is not {SNAPSHOT_VERSION}")
        self.next_order_id, self.next_authz_id = snap.next_order_id, snap.next_authz_id
        self.orders = {o.order_id: o for o in snap.orders}
        self.authzs = {a.authz_id: a for a in snap.authzs}
        self.revocation_nonces = {s.serial: {n.nonce: n.expiry_us for n in s.nonces} for s in snap.revocation_nonces}
        self._by_validation = {c.validation_id: a.authz_id for a in self.authzs.values() for c in a.challenges
                               if c.status == PROCESSING and c.validation_id}
        self._by_pending = {o.pending_id: o.order_id for o in self.orders.values() if o.status == PROCESSING}


def _token(seed: bytes, account: bytes, name: str, kind: str) -> str:
    """128+ bits derived from the ordered request: unpredictable before it is ordered, equal on every replica."""
    digest = hashlib.sha256(b"trustchain/acme/token/v1\0" + seed + account + name.encode() + b"\0" + kind.encode())
    return acmejws.b64encode(digest.digest())


def _csr_names(csr: x509.CertificateSigningRequest) -> set[str]:
    found: set[str] = set()
    try:
        san = csr.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
        found.update(canames.normalize(n) for n in san.get_values_for_type(x509.DNSName))
    except x509.ExtensionNotFound:
        pass
    for attr in csr.subject.get_attributes_for_oid(x509.NameOID.COMMON_NAME):
        found.add(canames.normalize(str(attr.value)))
    return found


def _spki(key: Any) -> bytes:
    return bytes(key.public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo))


def _result(p: Problem | None) -> AcmeResult:
    return AcmeResult(200) if p is None else refuse(p)
