"""ACME resources as the JSON objects of RFC 8555 section 7.1, for the node's HTTP front end.

Pure functions of a typed result and the base URL the client reached (`http://host:port`): replicas
answer in paths, each node writes its own absolute URLs.
"""

from __future__ import annotations

import datetime as dt
from typing import Any

from trustchain.acme import jws as acmejws
from trustchain.acme import paths
from trustchain.acme.objects import PROCESSING, Authorization, Challenge, Order
from trustchain.acme.problems import Problem
from trustchain.acme.results import AccountView

__all__ = [
    "account_json",
    "authz_json",
    "busy",
    "challenge_json",
    "directory_json",
    "order_json",
    "problem_json",
    "rfc3339",
]


def rfc3339(time_us: int) -> str:
    t = dt.datetime.fromtimestamp(time_us // 1_000_000, dt.UTC)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


def directory_json(base: str, website: str = "") -> dict[str, Any]:
    meta: dict[str, Any] = {"externalAccountRequired": False}
    if website:
        meta["website"] = website
    return {
        "newNonce": base + paths.NEW_NONCE,
        "newAccount": base + paths.NEW_ACCOUNT,
        "newOrder": base + paths.NEW_ORDER,
        "revokeCert": base + paths.REVOKE_CERT,
        "keyChange": base + paths.KEY_CHANGE,
        "renewalInfo": base + paths.RENEWAL_INFO,
        "meta": meta,
    }


def problem_json(problem: Problem) -> dict[str, Any]:
    return {"type": problem.type, "detail": problem.detail, "status": problem.status}


def account_json(view: AccountView, base: str) -> dict[str, Any]:
    return {"status": view.status, "contact": list(view.contact), "orders": base + paths.orders_path(view.account),
            "key": acmejws.jwk_of(view.key)}


def order_json(order: Order, base: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "status": order.status,
        "expires": rfc3339(order.expires_us),
        "identifiers": [{"type": "dns", "value": n} for n in order.names],
        "authorizations": [base + paths.authz_path(a) for a in order.authz_ids],
        "finalize": base + paths.finalize_path(order.order_id),
    }
    if order.status == "valid" and order.serial:
        doc["certificate"] = base + paths.certificate_path(order.serial)
    if order.error is not None:
        doc["error"] = problem_json(order.error)
    return doc


def challenge_json(authz: Authorization, challenge: Challenge, base: str) -> dict[str, Any]:
    doc: dict[str, Any] = {"type": challenge.type, "url": base + paths.challenge_path(authz.authz_id, challenge.type),
                           "status": challenge.status, "token": challenge.token}
    if challenge.validated_us:
        doc["validated"] = rfc3339(challenge.validated_us)
    if challenge.error is not None:
        doc["error"] = problem_json(challenge.error)
    return doc


def authz_json(authz: Authorization, base: str) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "identifier": {"type": "dns", "value": authz.name},
        "status": authz.status,
        "expires": rfc3339(authz.expires_us),
        "challenges": [challenge_json(authz, c, base) for c in authz.challenges],
    }
    if authz.wildcard:
        doc["wildcard"] = True
    return doc


def busy(order: Order | None, authz: Authorization | None) -> bool:
    """Whether the client should poll again later (Retry-After): an order being issued or a challenge
    the validators are still looking at."""
    if order is not None and order.status == PROCESSING:
        return True
    return authz is not None and any(c.status == PROCESSING for c in authz.challenges)
