"""`trustchain-cli ca init` and `ca migrate-key`, and the checks on what an operator types.

Why init builds aside: a new CA (DKG, shares, consensus keys, root and intermediate certificates) is
written into a fresh directory beside the target and renamed into place only when complete, after every
argument was checked. `--force` moves the old CA aside under its lock, renames the new one in, then
deletes the old one: a crash leaves the old CA or the new one (or the old one beside an empty target),
never a mix of the two. The operator key is never overwritten: an existing key file is reused.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import re
import secrets
import shutil
import tempfile
import urllib.parse
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization

from reference_node.cli import EXIT_OK, CLIError
from reference_node.cli.ca_store import (
    CONFIG,
    LEGACY_OPERATOR_KEY,
    LOCK,
    OPERATOR_KEY_ENV,
    CADir,
    check_config,
    default_key_dir,
    key_id,
    locked,
    read_operator_key,
    write_private,
)
from reference_node.cluster import run_dkg
from trustchain.ca import names, sharebox
from trustchain.ca import urls as causrls
from trustchain.ca import x509 as cax509
from trustchain.crypto.signing import Ed25519Signer
from trustchain.quorum import check_signing_threshold

__all__ = ["MAX_COMMON_NAME", "check_base_url", "check_common_name", "cmd_init", "cmd_migrate_key", "parse_duration"]

MAX_COMMON_NAME = 64  # X.520 ub-common-name
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_duration(text: str, flag: str, maximum: dt.timedelta) -> dt.timedelta:
    """A positive duration like 3600, 90m, 24h or 7d, at most ``maximum``."""
    m = re.fullmatch(r"(\d{1,12})([smhd]?)", text.strip())
    if not m:
        raise CLIError(f"{flag}: {text!r} is not a duration like 3600, 90m, 24h or 7d")
    seconds = int(m.group(1)) * _UNITS[m.group(2)]
    if seconds == 0:
        raise CLIError(f"{flag}: must be positive")
    if seconds > maximum.total_seconds():
        raise CLIError(f"{flag}: {text!r} is longer than the maximum of {maximum.days} days")
    return dt.timedelta(seconds=seconds)


def check_common_name(flag: str, cn: str) -> str:
    if not cn.strip():
        raise CLIError(f"{flag}: must not be empty")
    if len(cn) > MAX_COMMON_NAME:
        raise CLIError(f"{flag}: {len(cn)} characters, a common name has at most {MAX_COMMON_NAME}")
    if any(not c.isprintable() for c in cn):
        raise CLIError(f"{flag}: must not contain control characters")
    return cn


def check_base_url(text: str) -> str:
    """An http(s) URL with a host and nothing a certificate's URIs should not carry."""
    problem = ""
    try:
        url = urllib.parse.urlsplit(text)
        url.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as exc:
        problem = str(exc)
    else:
        if url.scheme not in ("http", "https"):
            problem = "scheme must be http or https"
        elif not url.hostname:
            problem = "no host"
        elif url.username or url.password or url.query or url.fragment:
            problem = "no user, query or fragment allowed"
        elif not text.isascii() or any(c.isspace() or not c.isprintable() for c in text):
            problem = "spaces and non-ASCII characters are not allowed"
    if problem:
        raise CLIError(f"--base-url: {text!r} is not a valid base URL ({problem}), e.g. http://pki.example.org")
    return text.rstrip("/")


def _target(d: Path, force: bool) -> bool:
    """Whether ``d`` holds a CA to replace; refuses a CA without --force and a non-empty other directory."""
    if (d / CONFIG).exists():
        if not force:
            raise CLIError(f"--dir: {d} already holds a CA (use --force to replace it)")
        return True
    if d.exists() and (not d.is_dir() or any(d.iterdir())):
        raise CLIError(f"--dir: {d} exists and is not an empty directory or a CA directory")
    return False


def _chosen_key_path(explicit: str | None, d: Path) -> Path | None:
    """--operator-key or $TRUSTCHAIN_OPERATOR_KEY, refused inside the CA directory; None if neither."""
    chosen = explicit or os.environ.get(OPERATOR_KEY_ENV)
    if not chosen:
        return None
    path = Path(chosen).expanduser().absolute()
    if path.is_relative_to(d.absolute()):
        raise CLIError(f"--operator-key: {path} is inside the CA directory; keep it apart from the shares")
    return path


def _operator_key(explicit: str | None, d: Path) -> tuple[bytes, Path, bool]:
    """(key, path, is new): an existing key file is reused, never overwritten."""
    path = _chosen_key_path(explicit, d)
    if path is not None and path.exists():
        return read_operator_key(path), path, False
    key = secrets.token_bytes(32)
    return key, path or default_key_dir().absolute() / f"{key_id(key)}.key", True


def _build(tmp: Path, args: argparse.Namespace, operator_key: bytes, key_path: Path, base: str) -> CADir:
    n, t = args.validators, args.threshold
    (tmp / "shares").mkdir()
    (tmp / "consensus").mkdir()
    write_private(tmp / LOCK, b"")
    config: dict[str, Any] = {
        "validators": n, "threshold": t, "ca_domain": names.normalize(args.ca_domain), "seq": 0, "crl_number": 0,
        "root_crl_number": 0, "root_revocations": {},
        "operator_key_id": key_id(operator_key), "operator_key_path": str(key_path),
        # the node's layout (trustchain.ca.urls), so the same URLs work against a node or a copy of its files
        "urls": {key: urls[0] for key, urls in causrls.pki_urls([base]).items()},
    }
    for group, cn in (("root", args.root_name), ("issuing", args.issuing_name)):
        keys, public = run_dkg(n, t, f"trustchain-cli/{group}".encode())
        config[group] = {"common_name": cn, "group_key": public.group_public_key.hex(),
                         "verifying_shares": {str(i): v.hex() for i, v in public.verifying_shares.items()}}
        for i, kp in keys.items():
            blob = sharebox.store_key_package(operator_key, f"validator-{i}", group, kp, secrets.token_bytes)
            write_private(tmp / "shares" / f"validator-{i}.{group}.share", blob)
    cluster = []
    for i in range(1, n + 1):
        seed = secrets.token_bytes(32)
        cluster.append(Ed25519Signer(seed).public_key.hex())
        blob = sharebox.wrap_at_rest(operator_key, f"validator-{i}", "consensus", seed, secrets.token_bytes)
        write_private(tmp / "consensus" / f"validator-{i}.key", blob)
    config["cluster"] = cluster  # consensus (PBFT) keys: what `cert verify --cluster` checks proofs against
    check_config(tmp / CONFIG, config)
    write_private(tmp / CONFIG, json.dumps(config, indent=2, sort_keys=True).encode())
    ca = CADir(tmp, config, operator_key, key_path)
    now = dt.datetime.now(dt.UTC)
    root_profile = ca.profile("root", with_expiry=False)
    root = cax509.issue(cax509.root_tbs(root_profile.name, root_profile.public_key, now), ca.signer("root"),
                        root_profile.public_key)
    (tmp / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    issuing = ca.profile("issuing", with_expiry=False)
    inter = cax509.issue(
        cax509.intermediate_tbs(issuing.name, issuing.public_key, ca.profile("root"), now, 1),
        ca.signer("root", list(range(n - t + 1, n + 1))),  # a different quorum signs, to show any T suffice
        root_profile.public_key,
    )
    (tmp / "intermediate.pem").write_bytes(inter.public_bytes(serialization.Encoding.PEM))
    print(f"root {root.subject.rfc4514_string()} key {root_profile.public_key.hex()}")
    print(f"intermediate {inter.subject.rfc4514_string()} key {issuing.public_key.hex()}")
    return ca


def cmd_init(args: argparse.Namespace) -> int:
    n, t = args.validators, args.threshold
    if n < 4:
        raise CLIError("--validators: PBFT needs at least 4 validators (n = 3f+1)")
    if n > 64:
        raise CLIError("--validators: at most 64 in one process")
    problem = check_signing_threshold(n, t)
    if problem is not None:
        raise CLIError(f"--threshold: {problem}")
    check_common_name("--root-name", args.root_name)
    check_common_name("--issuing-name", args.issuing_name)
    reason = names.check_dns_name(names.normalize(args.ca_domain))
    if reason:
        raise CLIError(f"--ca-domain: {args.ca_domain!r} {reason}")
    base = check_base_url(args.base_url)
    d = Path(args.dir)
    replace = _target(d, args.force)
    operator_key, key_path, new_key = _operator_key(args.operator_key, d)
    d.absolute().parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{d.name}.init-", dir=d.absolute().parent))
    try:
        _build(tmp, args, operator_key, key_path, base)
        if new_key:
            key_path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(key_path, operator_key.hex().encode() + b"\n", exclusive=True)
        if replace:
            with locked(d):
                old = Path(tempfile.mkdtemp(prefix=f".{d.name}.old-", dir=d.absolute().parent))
                d.rename(old / "ca")
                tmp.rename(d)
            shutil.rmtree(old, ignore_errors=True)
        else:
            if d.exists():
                d.rmdir()
            tmp.rename(d)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    print(f"CA initialised in {d}: {n} validators, threshold {t}; operator key {key_path}")
    return EXIT_OK


def cmd_migrate_key(args: argparse.Namespace) -> int:
    """Move an old layout's operator.key out of the CA directory and record where it went."""
    d = Path(args.dir)
    legacy = d / LEGACY_OPERATOR_KEY
    if not legacy.is_file():
        raise CLIError(f"--dir: {legacy}: no operator key to migrate")
    with locked(d):
        key = read_operator_key(legacy)
        try:
            raw = json.loads((d / CONFIG).read_text())
        except (OSError, ValueError) as exc:
            raise CLIError(f"--dir: {d / CONFIG}: unreadable ({exc})") from None
        if not isinstance(raw, dict):
            raise CLIError(f"--dir: {d / CONFIG}: not a JSON object")
        target = _chosen_key_path(args.operator_key, d) or default_key_dir().absolute() / f"{key_id(key)}.key"
        if target.exists():
            if read_operator_key(target) != key:
                raise CLIError(f"--operator-key: {target} already holds another key")
        else:
            target.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            write_private(target, key.hex().encode() + b"\n", exclusive=True)
        raw.update(operator_key_id=key_id(key), operator_key_path=str(target))
        raw.setdefault("root_crl_number", 0)
        raw.setdefault("root_revocations", {})
        check_config(d / CONFIG, raw)
        tmp = d / (CONFIG + ".tmp")
        write_private(tmp, json.dumps(raw, indent=2, sort_keys=True).encode())
        tmp.replace(d / CONFIG)
        legacy.unlink()
    CADir.load(str(d), str(target))
    print(f"operator key moved to {target}; {d} no longer holds it")
    return EXIT_OK
