"""`trustchain-cli ct`: a single-operator CT log in a local directory.

Layout of --log DIR: `log.json` (origin, and the verifier key of the first checkpoint), `entries.bin`
(append-only: 4-byte big-endian length + MerkleTreeLeaf, fsynced per command), `checkpoints/<size>.note`
(signed checkpoints). The tree is rebuilt from the entries on each run. With --json, hashes are base64
and sizes numbers, so any RFC 6962 verifier can check the proofs.
"""

from __future__ import annotations

import argparse
import base64
import json
import os
import re
import time
from pathlib import Path
from typing import Any

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_OK, CLIError
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct import merkle, note
from trustchain.ct.api import CTAPI, APIError, b64, parse_b64, sct_json
from trustchain.ct.app import der_sequence_error
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.entry import EntryError, X509Entry, parse_merkle_tree_leaf
from trustchain.ct.log import CTLog, LogError

DEFAULT_ORIGIN = "trustchain.local/ct"
_PEM = re.compile(rb"-----BEGIN CERTIFICATE-----\s*(.*?)\s*-----END CERTIFICATE-----", re.S)


# ---------------------------------------------------------------------------- the log directory


class LogDir:
    def __init__(self, path: str, *, create: bool = False, origin: str | None = None) -> None:
        self.path = Path(path)
        self.meta_path = self.path / "log.json"
        self.entries_path = self.path / "entries.bin"
        self.cp_dir = self.path / "checkpoints"
        if not self.meta_path.exists():
            if not create:
                raise CLIError(f"--log {path}: not a CT log directory (no log.json); add a certificate first")
            self.path.mkdir(parents=True, exist_ok=True)
            self.cp_dir.mkdir(exist_ok=True)
            self.meta: dict[str, Any] = {"format": 1, "origin": origin or DEFAULT_ORIGIN}
            self.save_meta()
        else:
            try:
                self.meta = json.loads(self.meta_path.read_text())
            except json.JSONDecodeError as exc:
                raise CLIError(f"{self.meta_path}: not valid JSON ({exc.msg})") from None
            if origin is not None and origin != self.meta.get("origin"):
                raise CLIError(f"--origin {origin!r}: the log's origin is {self.meta.get('origin')!r}")
        self.origin: str = str(self.meta.get("origin", DEFAULT_ORIGIN))
        self.torn = 0
        self.log = CTLog(None)
        self._load()

    def save_meta(self) -> None:
        tmp = self.meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(self.meta, indent=2, sort_keys=True) + "\n")
        os.replace(tmp, self.meta_path)

    def leaves(self) -> list[bytes]:
        if not self.entries_path.exists():
            return []
        data = self.entries_path.read_bytes()
        out, pos = [], 0
        while pos + 4 <= len(data):
            n = int.from_bytes(data[pos : pos + 4], "big")
            if pos + 4 + n > len(data):
                break
            out.append(data[pos + 4 : pos + 4 + n])
            pos += 4 + n
        self.torn = len(data) - pos  # a record cut short by a crash was never acknowledged
        return out

    def _load(self) -> None:
        for i, leaf in enumerate(self.leaves()):
            try:
                parsed = parse_merkle_tree_leaf(leaf)
                logged = self.log.add(parsed.entry, parsed.timestamp)
            except (EntryError, LogError) as exc:
                raise CLIError(f"{self.entries_path}: entry {i}: {exc}", EXIT_NEGATIVE) from None
            if not logged.new or self.log.entries[i] != leaf:
                raise CLIError(f"{self.entries_path}: entry {i} is a duplicate or not canonical", EXIT_NEGATIVE)

    def append(self, leaves: list[bytes]) -> None:
        if not leaves:
            return
        if self.torn:
            with self.entries_path.open("r+b") as f:
                f.truncate(self.entries_path.stat().st_size - self.torn)
            self.torn = 0
        with self.entries_path.open("ab") as f:
            for leaf in leaves:
                f.write(len(leaf).to_bytes(4, "big") + leaf)
            f.flush()
            os.fsync(f.fileno())

    def checkpoints(self) -> list[Path]:
        if not self.cp_dir.exists():
            return []
        return sorted(self.cp_dir.glob("*.note"), key=lambda p: int(p.stem) if p.stem.isdigit() else -1)


# ---------------------------------------------------------------------------- inputs


def read_certificates(path: str) -> list[bytes]:
    """Every certificate in a PEM file (one or more blocks) or the one in a DER file."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise CLIError(f"{path}: no such file") from None
    except OSError as exc:
        raise CLIError(f"{path}: cannot read ({exc.strerror})", EXIT_IO) from None
    if b"-----BEGIN" in data:
        blocks = _PEM.findall(data)
        if not blocks:
            raise CLIError(f"{path}: PEM file without a CERTIFICATE block")
        certs = []
        for i, block in enumerate(blocks):
            try:
                certs.append(base64.b64decode(b"".join(block.split()), validate=True))
            except ValueError:
                raise CLIError(f"{path}: PEM block {i} is not valid base64") from None
    else:
        certs = [data]
    for i, der in enumerate(certs):
        problem = der_sequence_error(der, "certificate")
        if problem:
            raise CLIError(f"{path}: certificate {i}: {problem.partition(': ')[2]}")
    return certs


def read_key(path: str) -> Ed25519Signer:
    try:
        text = Path(path).read_text().strip()
    except FileNotFoundError:
        raise CLIError(f"--key {path}: no such file") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise CLIError(f"--key {path}: cannot read ({exc})", EXIT_IO) from None
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        raise CLIError(f"--key {path}: not a hex Ed25519 seed (as written by `ct keygen`)") from None
    if len(seed) != 32:
        raise CLIError(f"--key {path}: seed is {len(seed)} bytes, expected 32")
    return Ed25519Signer(seed)


def _emit(args: argparse.Namespace, data: dict[str, Any], text: str) -> None:
    print(json.dumps(data, indent=2, sort_keys=True) if args.json else text)


# ---------------------------------------------------------------------------- commands


def cmd_keygen(args: argparse.Namespace) -> int:
    out = Path(args.out)
    if out.exists() and not args.force:
        raise CLIError(f"--out {out}: exists (use --force to overwrite)")
    try:
        note.check_key_name(args.name)
    except note.NoteError as exc:
        raise CLIError(f"--name: {exc}") from None
    seed = os.urandom(32)
    signer = Ed25519Signer(seed)
    fd = os.open(out, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(seed.hex() + "\n")
    vkey = note.verifier_key(args.name, signer.public_key)
    Path(str(out) + ".pub").write_text(vkey + "\n")
    _emit(args, {"key_file": str(out), "verifier_key": vkey, "public_key": b64(signer.public_key)}, vkey)
    return EXIT_OK


def cmd_add(args: argparse.Namespace) -> int:
    certs = [c for path in args.certs for c in read_certificates(path)]
    d = LogDir(args.log, create=True, origin=args.origin)
    signer = read_key(args.key) if args.key else None
    timestamp = args.timestamp_ms if args.timestamp_ms is not None else int(time.time() * 1000)
    before = d.log.size
    results = []
    for der in certs:
        try:
            logged = d.log.add(X509Entry(der), timestamp)
        except LogError as exc:
            raise CLIError(f"certificate: {exc}") from None
        item: dict[str, Any] = {"leaf_index": logged.index, "leaf_hash": b64(d.log.leaf_hash(logged.index)),
                                "timestamp": logged.timestamp, "new": logged.new}
        if signer is not None:
            item["sct"] = sct_json(d.log.sct(logged.index, signer))
        results.append(item)
    d.append(d.log.entries[before:])
    lines = [f"{'added' if r['new'] else 'already logged'} at index {r['leaf_index']}: leaf hash {r['leaf_hash']}"
             for r in results]
    _emit(args, {"tree_size": d.log.size, "entries": results}, "\n".join([*lines, f"tree size {d.log.size}"]))
    return EXIT_OK


def cmd_checkpoint(args: argparse.Namespace) -> int:
    d = LogDir(args.log)
    signer = read_key(args.key)
    name = args.name or d.origin
    try:
        note.check_key_name(name)
    except note.NoteError as exc:
        raise CLIError(f"--name: {exc}") from None
    vkey = note.verifier_key(name, signer.public_key)
    recorded = d.meta.get("verifier_key")
    if recorded is not None and recorded != vkey and not args.force:
        # another key (or key name) than the log's: `ct verify` would fail its checkpoints, and one at this
        # size would replace a checkpoint the recorded key signed
        raise CLIError(f"--key {args.key}: signs as {vkey}, but the log's checkpoints are signed by {recorded}; "
                       "use that key, or pass --force to sign with this one and record it as the log's key "
                       "(checkpoints signed by the old key then no longer verify)")
    signed = d.log.checkpoint(signer, d.origin, name)
    d.cp_dir.mkdir(exist_ok=True)
    (d.cp_dir / f"{signed.checkpoint.size}.note").write_bytes(signed.encode())
    if recorded != vkey:
        d.meta["verifier_key"] = vkey
        d.save_meta()
    _emit(args, {"tree_size": signed.checkpoint.size, "root_hash": b64(signed.checkpoint.root_hash),
                 "checkpoint": signed.encode().decode(), "verifier_key": vkey}, signed.encode().decode().rstrip("\n"))
    return EXIT_OK


def _not_found(args: argparse.Namespace, field: str, reason: str) -> int:
    """A negative answer (exit 1): one JSON document with --json, else one line."""
    _emit(args, {"found": False, "field": field, "error": reason}, f"trustchain-cli: {field}: {reason}")
    return EXIT_NEGATIVE


def cmd_proof(args: argparse.Namespace) -> int:
    d = LogDir(args.log)
    api = CTAPI(d.log, d.origin)
    if d.log.size == 0:
        raise CLIError(f"--log {args.log}: the log is empty", EXIT_NEGATIVE)
    asked = "--cert" if args.cert else "--leaf-hash"  # what the user gave, named in every answer about it
    if args.cert:
        certs = read_certificates(args.cert)
        index = d.log.find(X509Entry(certs[0]))
        if index is None:
            return _not_found(args, asked, f"{args.cert}: certificate is not in the log")
        leaf_hash = b64(d.log.leaf_hash(index))
    else:
        leaf_hash = args.leaf_hash
    try:
        result = api.get_proof_by_hash(leaf_hash, args.size)
    except APIError as exc:
        field = {"hash": asked, "tree_size": "--size"}.get(exc.field, exc.field)
        if exc.status == 404:
            return _not_found(args, field, exc.reason)
        raise CLIError(f"{field}: {exc.reason}") from None
    text = "\n".join([f"leaf index {result['leaf_index']} in tree size {result['tree_size']}",
                      f"leaf hash  {result['leaf_hash']}", f"root hash  {result['root_hash']}", "audit path:"]
                     + [f"  {h}" for h in result["audit_path"]])
    _emit(args, result, text)
    return EXIT_OK


def cmd_consistency(args: argparse.Namespace) -> int:
    d = LogDir(args.log)
    try:
        result = CTAPI(d.log, d.origin).get_consistency(args.first, args.second)
    except APIError as exc:
        raise CLIError(f"{ {'first': '--from', 'second': '--to'}.get(exc.field, exc.field)}: {exc.reason}") from None
    text = "\n".join([f"size {result['first']} root {result['first_root']}",
                      f"size {result['second']} root {result['second_root']}", "consistency proof:"]
                     + [f"  {h}" for h in result["consistency"]])
    _emit(args, result, text)
    return EXIT_OK


def cmd_verify(args: argparse.Namespace) -> int:
    d = LogDir(args.log)
    problems: list[str] = []
    leaves = d.log.entries
    independent = merkle.root_of([merkle.leaf_hash(leaf) for leaf in leaves])
    root = d.log.root_at(d.log.size)
    if independent != root:
        problems.append(f"tree root {b64(root)} differs from the root recomputed from the entries")
    if d.torn:
        problems.append(f"{d.entries_path}: {d.torn} trailing bytes of a torn record")
    vkey = args.vkey or d.meta.get("verifier_key")
    name = pub = None
    if vkey:
        try:
            name, pub = note.parse_verifier_key(vkey)
        except note.NoteError as exc:
            raise CLIError(f"--vkey: {exc}") from None
    checked = 0
    for path in d.checkpoints():
        try:
            signed = SignedCheckpoint.parse(path.read_bytes())
            if name is not None and pub is not None:
                signed.verify(name, pub)
        except CheckpointError as exc:
            problems.append(f"{path.name}: {exc}")
            continue
        cp = signed.checkpoint
        if cp.origin != d.origin:
            problems.append(f"{path.name}: origin {cp.origin!r} is not the log's {d.origin!r}")
        elif cp.size > d.log.size:
            problems.append(f"{path.name}: size {cp.size} is beyond the log's {d.log.size} entries")
        elif d.log.root_at(cp.size) != cp.root_hash:
            problems.append(f"{path.name}: root does not match the entries at size {cp.size}")
        checked += 1
    if not vkey and d.checkpoints():
        problems.append("no verifier key (--vkey, or log.json from `ct checkpoint`): signatures not checked")
    ok = not problems
    _emit(args, {"ok": ok, "tree_size": d.log.size, "root_hash": b64(root), "checkpoints_checked": checked,
                 "problems": problems},
          "\n".join([f"tree size {d.log.size}, root {b64(root)}", f"{checked} checkpoints checked"]
                    + [f"PROBLEM: {p}" for p in problems] + ["OK" if ok else "FAILED"]))
    return EXIT_OK if ok else EXIT_NEGATIVE


# ---------------------------------------------------------------------------- parser


def _leaf_hash_arg(value: str) -> str:
    try:
        parse_b64(value, "--leaf-hash", size=merkle.HASH_SIZE)
    except APIError as exc:
        raise argparse.ArgumentTypeError(exc.reason) from None
    return value


def _positive(value: str) -> int:
    if not value.isdigit() or int(value) < 1:
        raise argparse.ArgumentTypeError(f"expected a positive integer, got {value!r}")
    return int(value)


def register(subparsers: Any) -> None:
    ct = subparsers.add_parser("ct", help="Certificate Transparency log tools",
                               description="A local, file-backed CT log: add certificates, sign checkpoints, "
                               "serve and check RFC 6962 proofs.")
    sub = ct.add_subparsers(dest="ct_command", required=True, metavar="COMMAND")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--json", action="store_true", help="machine-readable output (base64 hashes)")
    logp = argparse.ArgumentParser(add_help=False)
    logp.add_argument("--log", required=True, metavar="DIR", help="the log directory")

    p = sub.add_parser("keygen", parents=[common], help="create an Ed25519 signing key file",
                       description="Writes a hex Ed25519 seed to FILE (mode 0600) and its verifier key to FILE.pub.")
    p.add_argument("--out", required=True, metavar="FILE")
    p.add_argument("--name", default=DEFAULT_ORIGIN, help="key name for the verifier key (default: %(default)s)")
    p.add_argument("--force", action="store_true", help="overwrite an existing file")
    p.set_defaults(func=cmd_keygen)

    p = sub.add_parser("add", parents=[common, logp], help="add certificates (PEM or DER files)",
                       description="Appends each certificate (every block of a PEM file) to the log, creating "
                       "it if needed; a certificate already logged keeps its index and timestamp.")
    p.add_argument("certs", nargs="+", metavar="CERT")
    p.add_argument("--origin", help=f"log origin when creating the log (default {DEFAULT_ORIGIN})")
    p.add_argument("--key", metavar="FILE", help="sign and print SCTs with this key")
    p.add_argument("--name", help="key name (default: the origin)")
    p.add_argument("--timestamp-ms", type=int, help="entry timestamp (default: now)")
    p.set_defaults(func=cmd_add)

    p = sub.add_parser("checkpoint", parents=[common, logp], help="sign a checkpoint of the current tree",
                       description="Signs (origin, size, root) as a C2SP signed note and stores it.")
    p.add_argument("--key", required=True, metavar="FILE")
    p.add_argument("--name", help="key name (default: the origin)")
    p.add_argument("--force", action="store_true",
                   help="sign with a key other than the log's recorded one, and record it instead")
    p.set_defaults(func=cmd_checkpoint)

    p = sub.add_parser("proof", parents=[common, logp], help="inclusion proof for a certificate or leaf hash",
                       description="RFC 6962 audit path for one entry in the tree of --size (default: current).")
    which = p.add_mutually_exclusive_group(required=True)
    which.add_argument("--cert", metavar="FILE", help="a logged certificate (PEM or DER)")
    which.add_argument("--leaf-hash", type=_leaf_hash_arg, metavar="B64", help="base64 SHA-256 leaf hash")
    p.add_argument("--size", type=_positive, metavar="N", help="tree size (default: current)")
    p.set_defaults(func=cmd_proof)

    p = sub.add_parser("consistency", parents=[common, logp], help="consistency proof between two tree sizes",
                       description="RFC 6962 consistency proof from size --from to size --to.")
    p.add_argument("--from", dest="first", type=_positive, required=True, metavar="N")
    p.add_argument("--to", dest="second", type=_positive, required=True, metavar="M")
    p.set_defaults(func=cmd_consistency)

    p = sub.add_parser("verify", parents=[common, logp], help="check the stored log and its checkpoints",
                       description="Recomputes the root from the entries and checks every stored checkpoint's "
                       "signature and root; exit 1 if anything is wrong.")
    p.add_argument("--vkey", help="verifier key (default: the one recorded by `ct checkpoint`)")
    p.set_defaults(func=cmd_verify)
