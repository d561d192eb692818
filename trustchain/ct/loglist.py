"""The v3 log list (the JSON schema Chrome publishes and certspotter and other monitors read): operators,
each with logs carrying log_id, key (base64 DER SPKI), url, mmd and state.

Each TrustChain validator runs its own log with its own key, so each is listed as its own operator:
a monitor then follows every validator's log independently, which is the point of having several.
Timestamps are handed in as RFC 3339 strings; nothing here reads a clock.
"""

from __future__ import annotations

import base64
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from trustchain.ct.logkey import spki_log_id

__all__ = ["LISTED_STATE", "LOG_LIST_VERSION", "ListedLog", "log_list"]

LOG_LIST_VERSION = "3.0"
LISTED_STATE = "usable"


@dataclass(frozen=True)
class ListedLog:
    operator: str
    description: str
    key: bytes  # DER SubjectPublicKeyInfo
    url: str  # the RFC 6962 base URL (get-sth is at <url>ct/v1/get-sth)
    mmd: int = 86400
    state_since: str = ""  # RFC 3339


def log_list(logs: Sequence[ListedLog], timestamp: str) -> dict[str, Any]:
    """The log list document; `timestamp` is the list's own log_list_timestamp (RFC 3339)."""
    operators = []
    for log in logs:
        entry: dict[str, Any] = {
            "description": log.description,
            "log_id": base64.b64encode(spki_log_id(log.key)).decode(),
            "key": base64.b64encode(log.key).decode(),
            "url": log.url if log.url.endswith("/") else log.url + "/",
            "mmd": log.mmd,
            "state": {LISTED_STATE: {"timestamp": log.state_since or timestamp}},
        }
        operators.append({"name": log.operator, "email": [], "logs": [entry]})
    return {"version": LOG_LIST_VERSION, "log_list_timestamp": timestamp, "operators": operators}
