"""The ACME server's resource paths: built by the replicas (Location headers, object URLs) and matched
for each request. Replicas compare paths, never hosts, so every node can serve every resource."""

from __future__ import annotations

import re
from dataclasses import dataclass

__all__ = [
    "ACCOUNT",
    "AUTHZ",
    "CERTIFICATE",
    "CHALLENGE",
    "DIRECTORY",
    "FINALIZE",
    "KEY_CHANGE",
    "NEW_ACCOUNT",
    "NEW_NONCE",
    "NEW_ORDER",
    "ORDER",
    "ORDERS",
    "RENEWAL_INFO",
    "REVOKE_CERT",
    "Route",
    "account_path",
    "authz_path",
    "certificate_path",
    "challenge_path",
    "finalize_path",
    "match",
    "order_path",
    "orders_path",
]

PREFIX = "/acme"
DIRECTORY = PREFIX + "/directory"
NEW_NONCE = PREFIX + "/new-nonce"
NEW_ACCOUNT = PREFIX + "/new-account"
NEW_ORDER = PREFIX + "/new-order"
REVOKE_CERT = PREFIX + "/revoke-cert"
KEY_CHANGE = PREFIX + "/key-change"
RENEWAL_INFO = PREFIX + "/renewal-info"
# route kinds of the parameterised paths
ACCOUNT, ORDERS, ORDER, FINALIZE, AUTHZ, CHALLENGE, CERTIFICATE = (
    "account", "orders", "order", "finalize", "authz", "challenge", "certificate")
_FIXED = {NEW_ACCOUNT: NEW_ACCOUNT, NEW_ORDER: NEW_ORDER, REVOKE_CERT: REVOKE_CERT, KEY_CHANGE: KEY_CHANGE}
_ID = r"([1-9][0-9]{0,17})"
_PATTERNS = (
    (ACCOUNT, re.compile(PREFIX + r"/acct/([0-9a-f]{64})")),
    (ORDERS, re.compile(PREFIX + r"/acct/([0-9a-f]{64})/orders")),
    (ORDER, re.compile(PREFIX + r"/order/" + _ID)),
    (FINALIZE, re.compile(PREFIX + r"/order/" + _ID + "/finalize")),
    (AUTHZ, re.compile(PREFIX + r"/authz/" + _ID)),
    (CHALLENGE, re.compile(PREFIX + r"/chall/" + _ID + r"/(dns-01|http-01)")),
    (CERTIFICATE, re.compile(PREFIX + r"/cert/([0-9a-f]{2,64})")),
)


@dataclass(frozen=True)
class Route:
    """`kind` is a fixed path (e.g. `NEW_ORDER`) or a parameterised kind with its parameters."""

    kind: str
    account: bytes = b""
    number: int = 0
    challenge: str = ""
    serial: bytes = b""


def match(path: str) -> Route | None:
    if path in _FIXED:
        return Route(_FIXED[path])
    for kind, pattern in _PATTERNS:
        m = pattern.fullmatch(path)
        if m is None:
            continue
        if kind in (ACCOUNT, ORDERS):
            return Route(kind, account=bytes.fromhex(m.group(1)))
        if kind == CERTIFICATE:
            if len(m.group(1)) % 2:
                return None
            return Route(kind, serial=bytes.fromhex(m.group(1)))
        return Route(kind, number=int(m.group(1)), challenge=m.group(2) if kind == CHALLENGE else "")
    return None


def account_path(account: bytes) -> str:
    return f"{PREFIX}/acct/{account.hex()}"


def orders_path(account: bytes) -> str:
    return account_path(account) + "/orders"


def order_path(order_id: int) -> str:
    return f"{PREFIX}/order/{order_id}"


def finalize_path(order_id: int) -> str:
    return order_path(order_id) + "/finalize"


def authz_path(authz_id: int) -> str:
    return f"{PREFIX}/authz/{authz_id}"


def challenge_path(authz_id: int, kind: str) -> str:
    return f"{PREFIX}/chall/{authz_id}/{kind}"


def certificate_path(serial: bytes) -> str:
    return f"{PREFIX}/cert/{serial.hex()}"
