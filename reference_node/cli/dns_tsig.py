"""`trustchain-cli dns tsig add|list|remove`: the node-local TSIG keys of RFC 2136 dynamic updates.

These commands edit a file in the node's data directory (`storage.path`); the running node rereads it.
They print what the key's holder needs: the `nsupdate -y` argument, a certbot `--dns-rfc2136`
credentials file, and the validator account the zone's owner delegates to (`delegate` in the DNS
application's `delegate` command). A key does nothing until the owner signs that delegation.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import json
from pathlib import Path

from reference_node import config as cfgmod
from reference_node.cli import EXIT_NEGATIVE, EXIT_OK, CLIError
from reference_node.dns.tsig import ALGORITHMS, TSIGError, TSIGKey, add_key, keyring_path, load_keys, remove_key
from reference_node.genesis import GenesisError, load_seed
from trustchain.accounts import Ed25519AccountSigner, account_id

__all__ = ["register"]


def register(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    tsig = sub.add_parser("tsig", help="TSIG keys of a node's RFC 2136 dynamic updates (local file)",
                          description="Manage the TSIG keys a node's DNS listener accepts dynamic updates with. "
                          "Give the node's data directory (--data-dir, its storage.path) or its --config.")
    ops = tsig.add_subparsers(dest="tsig_command", required=True, metavar="COMMAND")
    add = ops.add_parser("add", help="create a key for a zone and print how clients use it")
    add.add_argument("name", metavar="NAME", help="key name, e.g. certbot.example.org.")
    add.add_argument("--zone", required=True, help="the zone this key may update (within the owner's delegation)")
    add.add_argument("--algorithm", default="hmac-sha256", choices=sorted(ALGORITHMS))
    add.add_argument("--secret", help="base64 secret to use instead of a fresh random one")
    listing = ops.add_parser("list", help="the keys (names, algorithms and zones; never the secrets)")
    remove = ops.add_parser("remove", help="delete a key: updates signed with it are refused from now on")
    remove.add_argument("name", metavar="NAME")
    for p in (add, listing, remove):
        where = p.add_mutually_exclusive_group(required=True)
        where.add_argument("--data-dir", type=Path, help="the node's storage.path")
        where.add_argument("--config", type=Path, help="the node's node.toml")
        p.add_argument("--json", action="store_true", help="print one JSON document")
    add.set_defaults(func=cmd_add)
    listing.set_defaults(func=cmd_list)
    remove.set_defaults(func=cmd_remove)


_ANY = ("0.0.0.0", "::", "")


def _dns_listener(args: argparse.Namespace) -> tuple[str, str]:
    """(address, port) of the node's DNS listener for a certbot credentials file; placeholders when unknown
    (no --config, no `dns.listen`) or when it listens on every address (the client picks one)."""
    host, port = "<this node's DNS address>", "<its DNS port>"
    if args.config is not None:
        listen = cfgmod.load(args.config).dns.listen
        if listen is not None:
            port = str(listen[1])
            if listen[0] not in _ANY:
                host = listen[0]
    return host, port


def _where(args: argparse.Namespace) -> tuple[Path, str]:
    """(keyring path, the node's validator account id in hex or "" when unknown)."""
    if args.data_dir is not None:
        return keyring_path(args.data_dir), ""
    try:
        cfg = cfgmod.load(args.config)
    except cfgmod.ConfigError as exc:
        raise CLIError(f"--config: {exc}") from None
    account = ""
    if cfg.trustchain.key_file is not None:
        try:
            account = account_id(Ed25519AccountSigner(load_seed(cfg.trustchain.key_file)).key).hex()
        except GenesisError as exc:
            raise CLIError(f"--config: {exc}") from None
    return keyring_path(cfg.storage.path), account


def _describe(key: TSIGKey, account: str, *, secret: bool) -> dict[str, str]:
    doc = {"name": key.name, "algorithm": key.algorithm, "zone": key.zone}
    if account:
        doc["delegate"] = account
    if secret:
        doc["secret"] = base64.b64encode(key.secret).decode()
        doc["nsupdate"] = f"nsupdate -y {key.client_text()}"
    return doc


def cmd_add(args: argparse.Namespace) -> int:
    path, account = _where(args)
    try:
        secret = base64.b64decode(args.secret, validate=True) if args.secret is not None else None
    except binascii.Error:
        raise CLIError("--secret: not base64") from None
    try:
        key = add_key(path, args.name, args.zone, args.algorithm, secret)
    except TSIGError as exc:
        raise CLIError(str(exc)) from None
    doc = _describe(key, account, secret=True)
    host, port = _dns_listener(args)
    # certbot-dns-rfc2136's INI: its default algorithm is HMAC-MD5, which nodes refuse, so it is always named
    doc["certbot_credentials"] = (f"dns_rfc2136_server = {host}\ndns_rfc2136_port = {port}\n"
                                  f"dns_rfc2136_name = {key.name}\ndns_rfc2136_secret = {doc['secret']}\n"
                                  f"dns_rfc2136_algorithm = {key.algorithm.upper()}\n")
    if args.json:
        print(json.dumps(doc, indent=1))
        return EXIT_OK
    print(f"TSIG key {key.name} ({key.algorithm}) for zone {key.zone} -> {path}")
    print(f"nsupdate:  {doc['nsupdate']}")
    print("certbot --dns-rfc2136 credentials (INI, mode 0600):")
    print("".join(f"  {line}\n" for line in doc["certbot_credentials"].splitlines()), end="")
    print("The zone's owner must still delegate to this node: DNS command `delegate` with key_name "
          f"{key.name}" + (f" and delegate {account}" if account else " and the node's validator account"))
    return EXIT_OK


def cmd_list(args: argparse.Namespace) -> int:
    path, account = _where(args)
    try:
        keys = [_describe(k, account, secret=False) for _, k in sorted(load_keys(path).items())]
    except TSIGError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps(keys, indent=1))
    for k in [] if args.json else keys:
        print(f"{k['name']} {k['algorithm']} zone {k['zone']}")
    return EXIT_OK


def cmd_remove(args: argparse.Namespace) -> int:
    path, _ = _where(args)
    try:
        removed = remove_key(path, args.name)
    except TSIGError as exc:
        raise CLIError(str(exc)) from None
    if args.json:
        print(json.dumps({"removed": removed}))
    elif removed:
        print(f"removed {args.name}")
    else:
        print(f"no key {args.name} in {path}")
    return EXIT_OK if removed else EXIT_NEGATIVE
