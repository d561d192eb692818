"""The JSON shapes every HTTP module of the node answers with: an error naming the field, and a typed
result (a dataclass) as JSON."""

from __future__ import annotations

import base64
import dataclasses
from typing import Any

from aiohttp import web

__all__ = ["error_response", "jsonable"]


def error_response(field: str, reason: str, status: int = 400, extra: dict[str, Any] | None = None) -> web.Response:
    """A 4xx/5xx naming the field; `extra` carries more of the answer (e.g. a typed result) beside it."""
    return web.json_response({**(extra or {}), "error": f"{field}: {reason}", "field": field, "reason": reason},
                             status=status)


def jsonable(value: Any) -> Any:
    """A typed result as JSON: bytes in base64, nested dataclasses as objects."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, tuple | list):
        return [jsonable(v) for v in value]
    return value
