"""The JSON bodies clients send for zone commands (the node's `/api/v1/dns/update` and the CLI), turned
into the typed command payloads of `trustchain.dns.app`. One parser, so both accept exactly the same.

    {"create": {"origin", "primary_ns", "admin", "nameservers"?, "ttl"?, "ops"?}}
    {"update": {"origin", "ops"}}
    {"allow_transfer": {"origin", "key_name", "notify"?}}
    {"deny_transfer": {"origin", "key_name"}}

`ops` are `ZoneUpdate.from_json` operations; in `create` they are applied with the creation, atomically.
Every problem is a ZoneUpdateError naming the field.
"""

from __future__ import annotations

from typing import Any

from trustchain.dns import app as dnsapp
from trustchain.dns.records import ZoneUpdateError
from trustchain.dns.zone import ZoneUpdate

__all__ = ["KINDS", "command_from_json"]

KINDS = ("create", "update", "allow_transfer", "deny_transfer")


def _only(doc: dict[str, Any], keys: tuple[str, ...], field: str) -> None:
    unknown = sorted(str(k) for k in doc if k not in keys)
    if unknown:
        raise ZoneUpdateError(f"{field}.{unknown[0]}", "unknown field")


def _str(doc: dict[str, Any], key: str, field: str) -> str:
    value = doc.get(key)
    if not isinstance(value, str):
        raise ZoneUpdateError(f"{field}.{key}", "required, a string")
    return value


def _strings(doc: dict[str, Any], key: str, field: str, default: list[str]) -> list[str]:
    value = doc.get(key, default)
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ZoneUpdateError(f"{field}.{key}", "must be a list of strings")
    return value


def command_from_json(body: object) -> bytes:
    """The command payload for one of the `KINDS` of body."""
    if not isinstance(body, dict) or len(body) != 1 or next(iter(body)) not in KINDS:
        raise ZoneUpdateError("body", "expected one of " + ", ".join(f'{{"{k}": {{...}}}}' for k in KINDS))
    kind, doc = next(iter(body.items()))
    if not isinstance(doc, dict):
        raise ZoneUpdateError(kind, "must be an object")
    if kind == "update":
        return dnsapp.update_command(ZoneUpdate.from_json(doc))
    if kind == "create":
        _only(doc, ("origin", "primary_ns", "admin", "nameservers", "ttl", "ops"), kind)
        origin, primary = _str(doc, "origin", kind), _str(doc, "primary_ns", kind)
        ttl = doc.get("ttl", 3600)
        if not isinstance(ttl, int) or isinstance(ttl, bool) or ttl < 1:
            raise ZoneUpdateError("create.ttl", "must be a positive integer")
        records = ZoneUpdate.from_json({"origin": origin, "ops": doc["ops"]}) if "ops" in doc else None
        return dnsapp.create_command(origin, primary_ns=primary, admin=_str(doc, "admin", kind),
                                     nameservers=_strings(doc, "nameservers", kind, [primary]), ttl=ttl,
                                     records=records)
    if kind == "allow_transfer":
        _only(doc, ("origin", "key_name", "notify"), kind)
        return dnsapp.allow_transfer_command(_str(doc, "origin", kind), _str(doc, "key_name", kind),
                                             _strings(doc, "notify", kind, []))
    _only(doc, ("origin", "key_name"), kind)
    return dnsapp.deny_transfer_command(_str(doc, "origin", kind), _str(doc, "key_name", kind))
