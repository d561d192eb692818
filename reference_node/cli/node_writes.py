"""The writes of `trustchain-cli node ...`, and the `node account` commands.

With an account key (`--account-key FILE` or `$TRUSTCHAIN_ACCOUNT_KEY`) every write is built here as the
sub-application's typed command, signed by the account (`trustchain.accounts.sign_write`: a random
nonce, a deadline a few minutes ahead, the cluster's id) and posted to `POST /api/v1/write`; the answer
is decoded as the sub-application's typed result. Without a key the write goes to the node's JSON
endpoints, which only a development node (`api.unsigned_writes = true`) accepts.

The cluster id comes from the node's `/api/v1/status`; `--genesis FILE` pins it to the cluster's
genesis, so a node cannot have the account sign a write for another cluster. The `node account` and
`node validate` commands, which exist only as signed writes, are in `node_account`.
"""

from __future__ import annotations

import argparse
import base64
import os
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, CLIError
from reference_node.cli.account import (
    AccountKeyFile,
    load_key_file,
)
from reference_node.cli.node_http import ENV_ACCOUNT_KEY, NodeClient, Refused, client_from_args
from reference_node.genesis import Genesis, GenesisError
from trustchain.accounts import (
    ACCOUNTS,
    NONCE_SIZE,
    AccountCommand,
    AccountResult,
    Register,
    sign_registration,
    sign_write,
)
from trustchain.app import trustchain as tcapp
from trustchain.ca import commands as cacommands
from trustchain.ca import ownership
from trustchain.dns import app as dnsapp
from trustchain.dns.commands import command_from_json
from trustchain.dns.zone import ZoneUpdateError
from trustchain.encoding import DecodeError, decode, encode

__all__ = ["VALIDITY_S", "SignedSession", "Writer", "account_key_from_args", "account_result", "cluster_id",
           "writer_from_args"]

R = TypeVar("R")
VALIDITY_S = 300  # a signed write's deadline: now + this (the network accepts at most 10 minutes)
POLL_S = 0.5
HINTS = {
    "account": "register the account with `trustchain-cli node account register --key FILE`",
    "deadline_us": "check this computer's clock (a signed write is valid for a few minutes)",
    "signature": "the key file does not hold the account's current key (rolled over? another cluster?)",
}


def account_result(data: bytes) -> AccountResult:
    return decode(AccountResult, data)


class SignedSession:
    """Signs writes for one account on one cluster and posts them to `/api/v1/write`."""

    def __init__(self, client: NodeClient, key: AccountKeyFile, genesis: Path | None) -> None:
        self.client, self.key, self.genesis = client, key, genesis
        self._cluster: bytes | None = None

    @property
    def cluster(self) -> bytes:
        if self._cluster is None:
            self._cluster = cluster_id(self.client, self.genesis)
        return self._cluster

    @staticmethod
    def _fresh() -> tuple[bytes, int]:
        return os.urandom(NONCE_SIZE), time.time_ns() // 1000 + VALIDITY_S * 1_000_000

    def write(self, target: str, payload: bytes, decoder: Callable[[bytes], R], what: str) -> R:
        return self.answer(target, payload, decoder, what)[2]

    def answer(self, target: str, payload: bytes, decoder: Callable[[bytes], R], what: str,
               extra: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], R]:
        """(HTTP status, the answer, its typed result) of a signed write; `extra` goes beside it in the body
        (`wait_s` of a certificate request)."""
        nonce, deadline = self._fresh()
        signed = sign_write(self.key.signer, self.key.account, self.cluster, target, payload, nonce=nonce,
                            deadline_us=deadline)
        return self.send(encode(signed), decoder, what, extra)

    def register(self, contact: str) -> AccountResult:
        nonce, deadline = self._fresh()
        payload = encode(AccountCommand.of(Register(contact)))
        signed = sign_registration(self.key.signer, self.cluster, ACCOUNTS, payload, nonce=nonce,
                                   deadline_us=deadline)
        return self.post(encode(signed), account_result, "register")

    def post(self, raw: bytes, decoder: Callable[[bytes], R], what: str) -> R:
        """The typed result of the signed write `raw`; a refusal (typed or by the write gate) raises a
        CLIError naming the field and the reason."""
        return self.send(raw, decoder, what)[2]

    def send(self, raw: bytes, decoder: Callable[[bytes], R], what: str,
             extra: dict[str, Any] | None = None) -> tuple[int, dict[str, Any], R]:
        """`post`, with the HTTP status and the whole answer: 201 or 202 for a certificate request, whose
        answer carries the certificate, or where to poll for it, under `issuance`."""
        try:
            status, doc = self.client.post("/api/v1/write", {**(extra or {}), "write": base64.b64encode(raw).decode()},
                                           ok=(200, 201, 202))
        except Refused as exc:
            if exc.status != 422:
                raise
            field, reason = exc.field or "result", exc.reason or str(exc.body.get("error", ""))
            hint = HINTS.get(field.rsplit(".", 1)[-1], "")
            raise CLIError(f"{what}: refused by the network: {field}: {reason}" + (f" ({hint})" if hint else ""),
                           EXIT_NEGATIVE) from None
        try:
            encoded = base64.b64decode(doc["encoded"], validate=True)
            result = tcapp.decode_routed(encoded, decoder)
        except (KeyError, TypeError, ValueError, DecodeError):
            raise CLIError(f"node {self.client.base}: {what}: the answer carries no typed result", EXIT_IO) from None
        if isinstance(result, tcapp.RouteError):  # the node answers these with 422; never expected here
            raise CLIError(f"{what}: refused by the network: {result.detail}", EXIT_NEGATIVE)
        return status, dict(doc), result


def cluster_id(client: NodeClient, genesis: Path | None) -> bytes:
    """The cluster's id from the node's status, checked against `genesis` when given."""
    status = client.get("/api/v1/status")
    text = status.get("cluster_id") if isinstance(status, dict) else None
    try:
        served = bytes.fromhex(text) if isinstance(text, str) else b""
    except ValueError:
        served = b""
    if genesis is not None:
        try:
            pinned = Genesis.load(genesis).cluster_id
        except GenesisError as exc:
            raise CLIError(f"--genesis: {exc}") from None
        if served and served != pinned:
            raise CLIError(f"node {client.base} serves cluster {served.hex()}, not {pinned.hex()} of {genesis}; "
                           "refusing to sign for another cluster", EXIT_NEGATIVE)
        return pinned
    if len(served) != 32:
        raise CLIError(f"node {client.base}: /api/v1/status has no cluster_id; give --genesis FILE", EXIT_IO)
    return served


def account_key_from_args(args: argparse.Namespace) -> AccountKeyFile | None:
    given = getattr(args, "account_key", None)
    if given is not None:
        return load_key_file(Path(given), "--account-key")
    env = os.environ.get(ENV_ACCOUNT_KEY)
    return load_key_file(Path(env), f"${ENV_ACCOUNT_KEY}") if env else None


def _csr_der(pem: str) -> bytes:
    return x509.load_pem_x509_csr(pem.encode()).public_bytes(serialization.Encoding.DER)


def _dns_payload(body: dict[str, Any]) -> bytes:
    """The DNS command of a JSON body (`trustchain.dns.commands.command_from_json`, the JSON endpoint's form)."""
    try:
        return command_from_json(body)
    except ZoneUpdateError as exc:
        raise CLIError(f"{exc.field}: {exc.reason}") from None
    except ValueError as exc:  # a name dnspython cannot parse
        raise CLIError(f"create: {exc}") from None


class Writer:
    """The node commands' writes, in the JSON shapes of the node's JSON endpoints: signed by the account
    when a key is given, else through those endpoints (a development node)."""

    def __init__(self, client: NodeClient, session: SignedSession | None) -> None:
        self.client, self.session = client, session

    def challenge(self, names: list[str]) -> list[dict[str, str]]:
        if self.session is None:
            return list(self.client.post("/api/v1/cert/challenge", {"names": names})[1]["challenges"])
        res = self._ca(cacommands.challenge_command(names), "cert challenge", cacommands.STATUS_CHALLENGE)
        return [{"name": c.name, "key_authorization": c.key_authorization,
                 "txt_name": f"{ownership.CHALLENGE_LABEL}.{c.name}.",
                 "txt_value": ownership.dns01_txt(c.key_authorization)} for c in res.challenges]

    def dns(self, body: dict[str, Any]) -> dict[str, Any]:
        if self.session is None:
            return dict(self.client.post("/api/v1/dns/update", body)[1])
        res = self.session.write(tcapp.DNS, _dns_payload(body), dnsapp.decode_result, "dns update")
        if not res.ok:
            raise CLIError(f"dns update: refused by the network: {res.detail}", EXIT_NEGATIVE)
        return dnsapp.result_json(res)

    def issue(self, path: str, body: dict[str, Any], names: list[str]) -> tuple[int, dict[str, Any]]:
        """(201, the certificate) or (202, pending) once `body["wait_s"]` seconds passed: the node answers
        within its own `api.issue_wait`, then the request's location is polled."""
        deadline = time.monotonic() + float(body.get("wait_s", 0))
        if self.session is None:
            status, doc = self.client.post(path, body, ok=(201, 202))
        else:
            req = cacommands.IssueRequest(_csr_der(body["csr"]), tuple(names), tuple(body["proofs"]), "", "",
                                          int(body.get("lifetime_s", 0)))
            status, answer, res = self.session.answer(tcapp.CA, cacommands.request_command(req),
                                                      cacommands.decode_result, "cert request",
                                                      {"wait_s": body.get("wait_s", 0)})
            _expect(res, "cert request", cacommands.STATUS_PENDING)
            doc = answer.get("issuance") or {"status": "pending", "pending_id": res.pending_id, "serial": "",
                                             "location": f"/api/v1/cert/request/{res.pending_id}"}
        while status == 202 and time.monotonic() < deadline:  # the serial, then the signature, are awaited
            time.sleep(POLL_S)
            status, doc = self.client.call("GET", str(doc["location"]), ok=(200, 202))
        return (201 if status in (200, 201) else 202), dict(doc)

    def revoke(self, serial: str, reason: int) -> dict[str, Any]:
        if self.session is None:
            return dict(self.client.post("/api/v1/cert/revoke", {"serial": serial, "reason": reason})[1])
        res = self._ca(cacommands.revoke_command(int(serial, 16), reason), "cert revoke", cacommands.STATUS_OK,
                       cacommands.STATUS_UNCHANGED)
        return {"status": "revoked" if res.status == cacommands.STATUS_OK else "already_revoked",
                "serial": res.serial.hex() or serial}

    def _ca(self, payload: bytes, what: str, *expected: str) -> cacommands.CAResult:
        assert self.session is not None
        return _expect(self.session.write(tcapp.CA, payload, cacommands.decode_result, what), what, *expected)


def _expect(res: cacommands.CAResult, what: str, *expected: str) -> cacommands.CAResult:
    if not res.ok:
        raise CLIError(f"{what}: refused by the network: {res.field}: {res.reason}", EXIT_NEGATIVE)
    if res.status not in expected:
        raise CLIError(f"{what}: the CA answered {res.status!r} ({res.detail})", EXIT_IO)
    return res


def writer_from_args(args: argparse.Namespace, client: NodeClient | None = None) -> Writer:
    client = client or client_from_args(args)
    key = account_key_from_args(args)
    return Writer(client, SignedSession(client, key, getattr(args, "genesis", None)) if key else None)
