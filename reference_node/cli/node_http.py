"""The HTTP side of `trustchain-cli node ...`: one small client for the node's JSON API, shared by the
read commands, the write commands and the account commands, so every answer maps to the same exit codes."""

from __future__ import annotations

import argparse
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Any

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_USAGE, CLIError
from trustchain.ca import records as carecords

__all__ = ["DEFAULT_NODE", "ENV_ACCOUNT_KEY", "ENV_NODE", "NodeClient", "client_from_args", "emit", "json_mode",
           "node_url", "positive_int", "reason_arg", "serial_arg"]

ENV_NODE = "TRUSTCHAIN_NODE"
ENV_ACCOUNT_KEY = "TRUSTCHAIN_ACCOUNT_KEY"
DEFAULT_NODE = "http://127.0.0.1:8443"
UNSIGNED_REFUSED_HINT = (f"pass --account-key FILE (or set "
                         f"${ENV_ACCOUNT_KEY}); make a key with `trustchain-cli account new --key FILE` and register "
                         "it with `trustchain-cli node account register --key FILE`")


def node_url(text: str) -> str:
    """`host:port` or an http(s) URL; returns the base URL without a trailing slash."""
    url = text if "://" in text else f"http://{text}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(f"--node: {text!r} is not an http(s) URL or HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise CLIError(f"--node: {text!r} has an invalid port") from None
    return url.rstrip("/")


class Refused(CLIError):
    """A 4xx answer whose JSON body names the field (`field`, `reason`; for a signed write also the
    typed result under `body`)."""

    def __init__(self, message: str, exit_code: int, status: int, body: dict[str, Any]) -> None:
        super().__init__(message, exit_code)
        self.status = status
        self.field = str(body.get("field", ""))
        self.reason = str(body.get("reason", ""))
        self.body = body


@dataclass
class NodeClient:
    base: str
    timeout: float

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200,), headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded body) for a status in `ok`; any other answer raises a CLIError naming it."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json",
                                                                              "accept": "application/json",
                                                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        except urllib.error.URLError as exc:
            raise CLIError(f"node {self.base}: cannot connect ({exc.reason}); is it running? "
                           f"(set --node or ${ENV_NODE})", EXIT_IO) from None
        except TimeoutError:
            raise CLIError(f"node {self.base}: {method} {path}: no answer within {self.timeout:g} s "
                           "(raise --timeout)", EXIT_IO) from None
        except OSError as exc:
            raise CLIError(f"node {self.base}: {method} {path}: {exc}", EXIT_IO) from None
        doc: Any
        if "json" in ctype:
            try:
                doc = json.loads(raw)
            except ValueError:
                raise CLIError(f"node {self.base}: {method} {path}: answer is not valid JSON", EXIT_IO) from None
        elif ctype.startswith("text/") or "pem" in ctype:
            doc = raw.decode(errors="replace")
        else:
            doc = raw
        if status in ok:
            return status, doc
        detail = str(doc.get("error", "")) if isinstance(doc, dict) else str(doc)[:200]
        where = f"node {self.base}: {method} {path}: HTTP {status}"
        fields = doc if isinstance(doc, dict) else {}
        if status == 403 and fields.get("field") == "authorization" and "/api/v1/write" in detail:  # unsigned
            raise Refused(f"{where}: {detail}; {UNSIGNED_REFUSED_HINT}", EXIT_USAGE, status, fields)
        if status in (400, 413):
            raise Refused(f"{where}: {detail}", EXIT_USAGE, status, fields)
        if status in (404, 409, 422):
            raise Refused(f"{where}: {detail}", EXIT_NEGATIVE, status, fields)
        raise CLIError(f"{where}: {detail or 'node failure'}", EXIT_IO)

    def get(self, path: str, query: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        return self.call("GET", path, query=query, ok=ok)[1]

    def post(self, path: str, body: Any, ok: tuple[int, ...] = (200,),
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.call("POST", path, body, ok=ok, headers=headers)


def client_from_args(args: argparse.Namespace) -> NodeClient:
    raw = getattr(args, "node", None) or os.environ.get(ENV_NODE) or DEFAULT_NODE
    timeout = getattr(args, "timeout", 60.0)
    if timeout <= 0:
        raise CLIError(f"--timeout: must be positive, got {timeout:g}")
    return NodeClient(node_url(raw), timeout)


def json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    if json_mode(args):
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif text:
        print(text)


def positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


def serial_arg(text: str) -> str:
    t = text.strip().lower().removeprefix("0x").replace(":", "")
    if not t or any(c not in "0123456789abcdef" for c in t) or int(t, 16) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive hexadecimal serial number")
    return t


def reason_arg(text: str) -> int:
    names = {v.lower(): k for k, v in carecords.REVOCATION_REASONS.items()}
    if text.isdigit() and int(text) in carecords.REVOCATION_REASONS:
        return int(text)
    if text.lower() in names:
        return names[text.lower()]
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a CRLReason (one of {', '.join(carecords.REVOCATION_REASONS.values())}, or its code)")
