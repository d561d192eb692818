"""`trustchain-cli node validators ...`: an operator casts its validator's vote for an operation of the
validator set as a whole (revoking without the subscriber, the nodes' own zones); the operation runs once
a quorum of validators voted for the same bytes, so every operator runs the same command against their own
node."""

from __future__ import annotations

import argparse
import base64
import os
from pathlib import Path
from typing import Any

from reference_node.cli import EXIT_OK, CLIError
from reference_node.cli.node_dns import _build_ops, add_record_op_arguments, add_zone_arguments
from reference_node.cli.node_http import client_from_args, emit, reason_arg, serial_arg
from trustchain.ca import commands as cacommands
from trustchain.ca import records as carecords
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import ZoneUpdate, ZoneUpdateError

__all__ = ["ENV_OPERATOR_TOKEN", "register_validators_commands"]

ENV_OPERATOR_TOKEN = "TRUSTCHAIN_OPERATOR_TOKEN"


def _operator_headers(args: argparse.Namespace) -> dict[str, str]:
    path = args.operator_token or os.environ.get(ENV_OPERATOR_TOKEN)
    if not path:
        raise CLIError(f"--operator-token: required (or ${ENV_OPERATOR_TOKEN}): the file operator.token in the "
                       "node's storage directory")
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise CLIError(f"--operator-token: {path}: {exc.strerror or exc}") from None
    return {"Authorization": f"Bearer {token}"}


def _vote(args: argparse.Namespace, body: dict[str, Any], what: str) -> int:
    client = client_from_args(args)
    res = client.post("/api/v1/validators/propose", body, headers=_operator_headers(args))[1]
    status = res.get("status", "")
    text = {
        "recorded": f"{what}: vote recorded, {res.get('votes')} of {res.get('threshold')} validators",
        "executed": f"{what}: executed, the quorum of {res.get('threshold')} validators is reached",
        "duplicate": f"{what}: this validator already voted ({res.get('votes')} of {res.get('threshold')})",
        "done": f"{what}: already executed",
        "withdrawn": f"{what}: vote withdrawn ({res.get('votes')} of {res.get('threshold')} remain)",
    }.get(status, f"{what}: {status}")
    emit(args, res, f"{text}\n  digest {res.get('digest', '')}")
    return EXIT_OK


def cmd_validators_revoke(args: argparse.Namespace) -> int:
    command = cacommands.revoke_command(int(args.serial, 16), args.reason)
    return _vote(args, {"target": "ca", "command": base64.b64encode(command).decode()},
                 f"revoke {args.serial} ({carecords.REVOCATION_REASONS[args.reason]})")


def cmd_validators_revoke_issuer(args: argparse.Namespace) -> int:
    command = cacommands.revoke_issuer_command(int(args.serial, 16), args.reason)
    return _vote(args, {"target": "ca", "command": base64.b64encode(command).decode()},
                 f"revoke issuing CA {args.serial} ({carecords.REVOCATION_REASONS[args.reason]})")


def cmd_validators_dns(args: argparse.Namespace) -> int:
    zone = args.zone if args.zone.endswith(".") else args.zone + "."
    ops = _build_ops(getattr(args, "ops", None) or [], args.ttl)
    if args.create == bool(ops):
        raise CLIError("give either --create or --add/--replace/--delete/--delete-name: each is its own vote")
    try:
        if args.create:
            primary = args.primary_ns or f"ns1.{zone}"
            command = dnsapp.create_command(zone, primary_ns=primary, admin=args.admin or f"hostmaster.{zone}",
                                            nameservers=args.ns or [primary], ttl=args.ttl)
        else:
            command = dnsapp.update_command(ZoneUpdate.from_json({"origin": zone, "ops": ops}))
    except ZoneUpdateError as exc:
        raise CLIError(f"{exc.field}: {exc.reason}") from None
    return _vote(args, {"target": "dns", "command": base64.b64encode(command).decode()},
                 f"{'create' if args.create else 'update'} {zone}")


def cmd_validators_withdraw(args: argparse.Namespace) -> int:
    return _vote(args, {"withdraw": args.digest}, f"proposal {args.digest[:16]}")


def cmd_validators_proposals(args: argparse.Namespace) -> int:
    doc = client_from_args(args).get("/api/v1/validators/proposals")
    lines = [f"{len(doc['proposals'])} open proposals; a quorum is {doc['threshold']} of {doc['validators']}"]
    lines += [f"  {p['digest']}  {p['target']} {p['op']}  votes from validators {p['voters']}"
              for p in doc["proposals"]]
    emit(args, doc, "\n".join(lines))
    return EXIT_OK



def register_validators_commands(sub: Any, leaf: argparse.ArgumentParser) -> None:
    """`node validators ...`: the operator casts this validator's vote; the operation runs once a quorum of
    validators voted for the same bytes (each operator runs the same command against their own node)."""
    vals = sub.add_parser("validators", help="vote for operations of the validator set (operator only)")
    vs = vals.add_subparsers(dest="node_validators", required=True, metavar="COMMAND")
    token = argparse.ArgumentParser(add_help=False)
    token.add_argument("--operator-token", metavar="FILE", help="the node's operator.token (in its storage "
                       f"directory; default ${ENV_OPERATOR_TOKEN})")
    p = vs.add_parser("revoke", parents=[leaf, token], help="vote to revoke SERIAL without its subscriber")
    p.add_argument("serial", type=serial_arg, metavar="SERIAL")
    p.add_argument("--reason", type=reason_arg, default=1, metavar="REASON",
                   help="CRLReason name or code (default keyCompromise)")
    p.set_defaults(func=cmd_validators_revoke)
    p = vs.add_parser("revoke-issuer", parents=[leaf, token],
                      help="vote to revoke the issuing CA certificate SERIAL (root CRL and OCSP)")
    p.add_argument("serial", type=serial_arg, metavar="SERIAL")
    p.add_argument("--reason", type=reason_arg, default=2, metavar="REASON",
                   help="CRLReason name or code (default cACompromise)")
    p.set_defaults(func=cmd_validators_revoke_issuer)
    p = vs.add_parser("dns", parents=[leaf, token], help="vote to create or change a zone of the nodes' domain")
    p.add_argument("zone", metavar="ZONE")
    add_zone_arguments(p, "create ZONE (SOA, NS, DNSSEC keys)")
    add_record_op_arguments(p)
    p.set_defaults(func=cmd_validators_dns, ops=None)
    p = vs.add_parser("withdraw", parents=[leaf, token], help="take back this validator's vote")
    p.add_argument("digest", metavar="DIGEST", help="the proposal's digest (64 hex digits)")
    p.set_defaults(func=cmd_validators_withdraw)
    p = vs.add_parser("proposals", parents=[leaf], help="open proposals and who voted for them")
    p.set_defaults(func=cmd_validators_proposals)
