"""`trustchain-cli account ...`: account key files, offline. Commands:

    account new --key FILE [--type ed25519|p256]     write a new account private key (mode 0600)
    account show --key FILE                           print the account id and public key

An account key signs every write a client makes on a production node (`trustchain-cli node ...
--account-key FILE`). The file is a PKCS#8 PEM private key; a line of explanatory text before the PEM
block (RFC 7468 section 5.2) names the account, since after a key rollover the account id (the digest
of the key it registered with) no longer follows from the key. Register the account with
`trustchain-cli node account register --key FILE`.

Exit codes: 0 success; 2 bad usage, or a key file that is missing, unreadable, not a PEM private key,
or not an Ed25519 or P-256 key; 3 the file cannot be written.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import stat
import sys
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from reference_node.cli import EXIT_IO, EXIT_OK, CLIError
from trustchain.accounts import (
    ED25519,
    AccountKeyError,
    AccountSigner,
    Ed25519AccountSigner,
    P256AccountSigner,
    account_id,
)

__all__ = ["KEY_TYPES", "AccountKeyFile", "generate_private_key", "load_key_file", "register", "write_key_file"]

KEY_TYPES = ("ed25519", "p256")
ACCOUNT_LINE = "TrustChain account: "
MAX_KEY_FILE = 64 << 10
_PEM_BLOCK = re.compile(rb"-----BEGIN ([A-Z0-9 ]+)-----\r?\n.*?-----END \1-----", re.DOTALL)
_ACCOUNT_RE = re.compile(r"^" + re.escape(ACCOUNT_LINE) + r"([0-9a-f]{64})\s*$", re.MULTILINE)

PrivateKey = ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey


@dataclass(frozen=True)
class AccountKeyFile:
    """A loaded account key: the signer, the account it signs for, and whether that account was
    registered with this very key (False after a rollover)."""

    path: Path
    signer: AccountSigner
    account: bytes
    private: PrivateKey = field(repr=False)

    @property
    def original(self) -> bool:
        return self.account == account_id(self.signer.key)

    @property
    def algorithm(self) -> str:
        return "ed25519" if self.signer.key.algorithm == ED25519 else "p256"


def generate_private_key(kind: str) -> PrivateKey:
    assert kind in KEY_TYPES, kind
    return ed25519.Ed25519PrivateKey.generate() if kind == "ed25519" else ec.generate_private_key(ec.SECP256R1())


def _signer(private: object, where: str) -> AccountSigner:
    if isinstance(private, ed25519.Ed25519PrivateKey):
        seed = private.private_bytes(serialization.Encoding.Raw, serialization.PrivateFormat.Raw,
                                     serialization.NoEncryption())
        return Ed25519AccountSigner(seed)
    if isinstance(private, ec.EllipticCurvePrivateKey) and isinstance(private.curve, ec.SECP256R1):
        return P256AccountSigner(private)
    raise CLIError(f"{where}: not an Ed25519 or P-256 private key (account keys are one of {', '.join(KEY_TYPES)})")


def load_key_file(path: Path, flag: str) -> AccountKeyFile:
    """The account key in `path`; every problem is a CLIError naming `flag` and the file."""
    where = f"{flag}: {path}"
    try:
        if path.stat().st_size > MAX_KEY_FILE:
            raise CLIError(f"{where}: larger than {MAX_KEY_FILE} bytes, not a key file")
        data = path.read_bytes()
    except FileNotFoundError:
        raise CLIError(f"{where}: no such file (make one with `trustchain-cli account new --key {path}`)") from None
    except IsADirectoryError:
        raise CLIError(f"{where}: is a directory, not a key file") from None
    except OSError as exc:
        raise CLIError(f"{where}: cannot read ({exc.strerror or exc})") from None
    blocks = [m for m in _PEM_BLOCK.finditer(data) if m.group(1).endswith(b"PRIVATE KEY")]
    if len(blocks) != 1:
        found = "no PEM private key" if not blocks else f"{len(blocks)} PEM private keys"
        raise CLIError(f"{where}: {found} (expected one, as written by `trustchain-cli account new`)")
    if blocks[0].group(1) == b"ENCRYPTED PRIVATE KEY":
        raise CLIError(f"{where}: the key is encrypted; account keys are stored unencrypted with mode 0600")
    try:
        private = serialization.load_pem_private_key(blocks[0].group(0), password=None)
    except (ValueError, TypeError) as exc:
        raise CLIError(f"{where}: not a valid PEM private key ({str(exc)[:80]})") from None
    try:
        signer = _signer(private, where)
    except AccountKeyError as exc:
        raise CLIError(f"{where}: {exc}") from None
    header = data[:blocks[0].start()].decode("utf-8", errors="replace")
    named = _ACCOUNT_RE.search(header)
    account = bytes.fromhex(named.group(1)) if named else account_id(signer.key)
    if os.name == "posix" and path.stat().st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        print(f"trustchain-cli: warning: {where}: readable by other users; run `chmod 600 {path}`", file=sys.stderr)
    assert isinstance(private, ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey)  # _signer checked it
    return AccountKeyFile(path, signer, account, private)


def _file_text(private: PrivateKey, account: bytes) -> bytes:
    pem = private.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
    return f"{ACCOUNT_LINE}{account.hex()}\n".encode() + pem


def write_key_file(path: Path, private: PrivateKey, account: bytes | None, flag: str, *,
                   replace: bool = False) -> AccountKeyFile:
    """Write `private` (for `account`, default the key's own) with mode 0600. A new file is created
    exclusively (never overwriting a key); `replace` swaps an existing file atomically."""
    signer = _signer(private, f"{flag}: {path}")
    account = account if account is not None else account_id(signer.key)
    data = _file_text(private, account)
    try:
        if replace:
            fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # mkstemp files are 0600
            with os.fdopen(fd, "wb") as f:
                f.write(data)
            os.replace(tmp, path)
        else:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as f:
                f.write(data)
    except FileExistsError:
        raise CLIError(f"{flag}: {path} exists; refusing to overwrite a private key") from None
    except OSError as exc:
        raise CLIError(f"{flag}: {path}: cannot write ({exc.strerror or exc})", EXIT_IO) from None
    return AccountKeyFile(path, signer, account, private)


def describe(key: AccountKeyFile) -> dict[str, Any]:
    return {"account": key.account.hex(), "algorithm": key.algorithm, "public_key": key.signer.key.public.hex(),
            "registered_with_this_key": key.original, "key_file": str(key.path)}


def _emit(args: argparse.Namespace, doc: dict[str, Any], text: str) -> None:
    print(json.dumps(doc, indent=2, sort_keys=True) if args.json else text)


def cmd_new(args: argparse.Namespace) -> int:
    key = write_key_file(args.key, generate_private_key(args.type), None, "--key")
    _emit(args, describe(key), f"account {key.account.hex()} ({key.algorithm}): key written to {args.key} (mode "
          f"0600)\nregister it with: trustchain-cli node account register --key {args.key}")
    return EXIT_OK


def cmd_show(args: argparse.Namespace) -> int:
    key = load_key_file(args.key, "--key")
    lines = [f"account {key.account.hex()}", f"  key: {key.algorithm} {key.signer.key.public.hex()}"]
    if not key.original:
        lines.append("  (a rolled-over key: the account was registered with an earlier key)")
    _emit(args, describe(key), "\n".join(lines))
    return EXIT_OK


def register(subparsers: Any) -> None:
    parser = subparsers.add_parser("account", help="account keys (offline): new, show", description=__doc__,
                                   formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="account_command", required=True, metavar="COMMAND")
    p = sub.add_parser("new", help="write a new account private key (never overwrites)")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="where to write the key (mode 0600)")
    p.add_argument("--type", choices=KEY_TYPES, default="ed25519", help="key algorithm (default ed25519)")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_new)
    p = sub.add_parser("show", help="print the account id and public key of a key file")
    p.add_argument("--key", type=Path, required=True, metavar="FILE", help="account key file")
    p.add_argument("--json", action="store_true", help="print one JSON document")
    p.set_defaults(func=cmd_show)

