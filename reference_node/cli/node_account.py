"""`trustchain-cli node account ...` and `node validate ...`: writes that exist only signed by an account.

    node account register --key FILE [--contact TEXT]     the key's account (self-signed registration)
    node account rollover --key OLD --new-key NEW          replace the key; the account id stays
    node account deactivate --key FILE --yes               end every write of the account, permanently
    node validate open NAME --account-key FILE             an outside name: the TXT record to publish
    node validate ready ID --account-key FILE              the record is published: validators may look

After a rollover the new key file names the account in a line before its PEM block, since the account
id (the digest of the first key) no longer follows from the key.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_OK, CLIError
from reference_node.cli.account import (
    KEY_TYPES,
    AccountKeyFile,
    describe,
    generate_private_key,
    load_key_file,
    write_key_file,
)
from reference_node.cli.node_http import ENV_ACCOUNT_KEY, client_from_args, emit
from reference_node.cli.node_writes import SignedSession, account_key_from_args, account_result
from trustchain.accounts import ACCOUNTS, AccountCommand, AccountResult, Deactivate, RolloverKey, rollover_proof_input
from trustchain.app import validation
from trustchain.encoding import encode

__all__ = ["register_account_commands", "register_validate_commands"]


def _session(args: argparse.Namespace, key: AccountKeyFile) -> SignedSession:
    return SignedSession(client_from_args(args), key, args.genesis)


def _account_ok(res: AccountResult, what: str) -> AccountResult:
    if not res.ok:
        field, _, reason = res.detail.partition(": ")
        raise CLIError(f"{what}: refused by the network: {field}: {reason}", EXIT_NEGATIVE)
    return res


def cmd_account_register(args: argparse.Namespace) -> int:
    key = load_key_file(args.key, "--key")
    if not key.original:
        raise CLIError(f"--key: {args.key} is a rolled-over key of account {key.account.hex()}, which is "
                       "registered already")
    session = _session(args, key)
    res = _account_ok(session.register(args.contact), "account register")
    what = "already registered" if res.detail == "already registered" else "registered"
    emit(args, {**describe(key), "status": res.status, "detail": res.detail, "cluster_id": session.cluster.hex()},
         f"account {key.account.hex()}: {what} on cluster {session.cluster.hex()[:16]}...")
    return EXIT_OK


def cmd_account_rollover(args: argparse.Namespace) -> int:
    """The new key signs its consent to the account (`rollover_proof_input`), the old key signs the
    write. A missing NEW file is generated first; an existing one is rewritten to name the account. If
    the network refuses, NEW is restored (or removed, if it was generated); if no answer came, NEW is
    kept, since the rollover may still be ordered."""
    old = load_key_file(args.key, "--key")
    session = _session(args, old)
    cluster = session.cluster
    existed = args.new_key.exists()
    original_bytes = args.new_key.read_bytes() if existed else b""
    if existed:
        loaded = load_key_file(args.new_key, "--new-key")
        if loaded.signer.key == old.signer.key:
            raise CLIError("--new-key: holds the same key as --key")
        new = write_key_file(args.new_key, loaded.private, old.account, "--new-key", replace=True)
    else:
        new = write_key_file(args.new_key, generate_private_key(args.type), old.account, "--new-key")
    proof = new.signer.sign(rollover_proof_input(cluster, old.account, old.signer.key))
    payload = encode(AccountCommand.of(RolloverKey(new.signer.key, proof)))
    try:
        _account_ok(session.write(ACCOUNTS, payload, account_result, "account rollover"), "account rollover")
    except CLIError as exc:
        if exc.exit_code == EXIT_IO:  # no answer: the rollover may still be ordered, so NEW must stay
            raise CLIError(f"{exc}; the rollover may still take effect: {args.new_key} is kept (it names the "
                           f"account) and {args.key} is unchanged; a write with each shows which key the account "
                           "has", EXIT_IO) from None
        if existed:
            args.new_key.write_bytes(original_bytes)
        else:
            args.new_key.unlink()
        raise
    emit(args, {**describe(new), "previous_key_file": str(args.key)},
         f"account {old.account.hex()}: key replaced; it now signs with {args.new_key} ({new.algorithm}); "
         f"{args.key} no longer writes for it")
    print(f"the old key in {args.key} is no longer the account's; delete it", file=sys.stderr)
    return EXIT_OK


def cmd_account_deactivate(args: argparse.Namespace) -> int:
    key = load_key_file(args.key, "--key")
    if not args.yes:
        raise CLIError(f"deactivating account {key.account.hex()} is permanent (it can never write again); "
                       "add --yes to confirm")
    session = _session(args, key)
    res = _account_ok(session.write(ACCOUNTS, encode(AccountCommand.of(Deactivate())), account_result,
                                    "account deactivate"), "account deactivate")
    emit(args, {**describe(key), "status": res.status, "detail": res.detail},
         f"account {key.account.hex()}: deactivated")
    return EXIT_OK


def register_account_commands(sub: Any, leaf: argparse.ArgumentParser) -> None:
    acct = sub.add_parser("account", help="your account on the network: register, rollover, deactivate")
    acs = acct.add_subparsers(dest="node_account", required=True, metavar="COMMAND")
    p = acs.add_parser("register", parents=[leaf], help="register the account of a key file (self-signed)")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="account key (trustchain-cli account new)")
    p.add_argument("--contact", default="", metavar="TEXT", help="contact for the account (at most 256 characters)")
    p.set_defaults(func=cmd_account_register)
    p = acs.add_parser("rollover", parents=[leaf], help="replace the account's key (the account id stays)")
    p.add_argument("--key", type=Path, required=True, metavar="OLD", help="the account's current key file")
    p.add_argument("--new-key", type=Path, required=True, metavar="NEW",
                   help="the new key file: generated if missing, else rewritten to name the account")
    p.add_argument("--type", choices=KEY_TYPES, default="ed25519", help="algorithm of a generated NEW key")
    p.set_defaults(func=cmd_account_rollover)
    p = acs.add_parser("deactivate", parents=[leaf], help="end every write of the account (permanent)")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="the account's current key file")
    p.add_argument("--yes", action="store_true", help="confirm: the account can never write again")
    p.set_defaults(func=cmd_account_deactivate)


# -------------------------------------------------------------------------------------- node validate


def _validate_session(args: argparse.Namespace) -> SignedSession:
    key = account_key_from_args(args)
    if key is None:
        raise CLIError(f"--account-key: required (or ${ENV_ACCOUNT_KEY}): a name is validated for an account")
    return SignedSession(client_from_args(args), key, args.genesis)


def _validation(session: SignedSession, payload: bytes, what: str) -> validation.ValidationResult:
    res = session.write(validation.VALIDATE, payload, validation.decode_result, what)
    if not res.ok:
        field, _, reason = res.detail.partition(": ")
        raise CLIError(f"{what}: refused by the network: {field}: {reason}", EXIT_NEGATIVE)
    return res


def cmd_validate_open(args: argparse.Namespace) -> int:
    session = _validate_session(args)
    res = _validation(session, validation.open_command(args.name), "validate open")
    emit(args, {"status": res.status, "validation_id": res.validation_id, "record_name": res.record_name,
                "txt_value": res.expected},
         f"validation {res.validation_id} for {args.name}: publish in the public DNS\n"
         f"  {res.record_name} TXT \"{res.expected}\"\n"
         f"then run: trustchain-cli node validate ready {res.validation_id} --account-key {session.key.path}")
    return EXIT_OK


def cmd_validate_ready(args: argparse.Namespace) -> int:
    session = _validate_session(args)
    res = _validation(session, validation.ready_command(args.validation_id), "validate ready")
    emit(args, {"status": res.status, "validation_id": res.validation_id, "record_name": res.record_name,
                "txt_value": res.expected},
         f"validation {res.validation_id}: the validators now look up {res.record_name}; once a quorum has "
         "seen it, the account may create the zone (`node dns update NAME --create`)")
    return EXIT_OK


def register_validate_commands(sub: Any, leaf: argparse.ArgumentParser) -> None:
    val = sub.add_parser("validate", help="prove control of a name outside the network's zones: open, ready")
    vs = val.add_subparsers(dest="node_validate", required=True, metavar="COMMAND")
    p = vs.add_parser("open", parents=[leaf], help="start validating NAME: prints the TXT record to publish")
    p.add_argument("name", metavar="NAME", help="a name in the public DNS, e.g. example.net")
    p.set_defaults(func=cmd_validate_open)
    p = vs.add_parser("ready", parents=[leaf], help="the TXT record is published: the validators may look")
    p.add_argument("validation_id", type=int, metavar="ID", help="the id `validate open` printed")
    p.set_defaults(func=cmd_validate_ready)
