"""The directory of `trustchain-cli ca`: configuration, replicated state, encrypted shares, and its lock.

Why a module of its own: every `ca` command reads the directory the same way, and each must fail closed:
a missing or mistyped field in ca.json, a corrupt state.bin or a share that belongs to another key is a
one-line error naming the file, never a traceback and never a signature under the wrong key.

The operator key that encrypts the shares is kept apart from them (a copy of the CA directory alone
discloses nothing): `--operator-key PATH`, else `$TRUSTCHAIN_OPERATOR_KEY`, else the path recorded at
init, else `$XDG_CONFIG_HOME/trustchain/operator-keys/<key id>.key`. ca.json records the key's id, so a
key that is not this CA's is refused by name. Every read-modify-write runs under an exclusive
`flock` on the directory's lock file (`locked`), so concurrent commands never lose a record.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import hashlib
import json
import os
import secrets
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.x509.oid import NameOID

from reference_node.cli import EXIT_IO, EXIT_USAGE, CLIError
from trustchain.ca import caa, frost, group, issuance, sharebox
from trustchain.ca import policy as capolicy
from trustchain.ca import urls as causrls
from trustchain.ca import x509 as cax509
from trustchain.crypto.signing import Ed25519Signer
from trustchain.encoding import DecodeError

__all__ = [
    "CONFIG",
    "GROUPS",
    "LEGACY_OPERATOR_KEY",
    "LOCK",
    "MAX_LEAF_LIFETIME",
    "OPERATOR_KEY_ENV",
    "STATE",
    "CADir",
    "ca_name",
    "default_key_dir",
    "key_id",
    "locked",
    "read_operator_key",
    "write_private",
]

CONFIG = "ca.json"
STATE = "state.bin"
LOCK = ".lock"
LEGACY_OPERATOR_KEY = "operator.key"
OPERATOR_KEY_ENV = "TRUSTCHAIN_OPERATOR_KEY"
GROUPS = ("root", "issuing")
MAX_LEAF_LIFETIME = dt.timedelta(days=398)  # Baseline Requirements 6.3.2


def ca_name(cn: str) -> x509.Name:
    return x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "CH"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "TrustChain"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])


def default_key_dir() -> Path:
    base = os.environ.get("XDG_CONFIG_HOME") or str(Path.home() / ".config")
    return Path(base) / "trustchain" / "operator-keys"


def key_id(key: bytes) -> str:
    """Names an operator key without disclosing it (recorded in ca.json)."""
    return hashlib.sha256(b"trustchain-cli operator key id\0" + key).hexdigest()[:16]


def write_private(path: Path, data: bytes, *, exclusive: bool = False) -> None:
    """Owner-only file, flushed to disk; ``exclusive`` refuses an existing file."""
    flags = os.O_WRONLY | os.O_CREAT | (os.O_EXCL if exclusive else os.O_TRUNC)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def read_operator_key(path: Path) -> bytes:
    try:
        key = bytes.fromhex(path.read_text().strip())
    except ValueError:
        raise CLIError(f"--operator-key: {path}: not a hexadecimal key") from None
    if len(key) != 32:
        raise CLIError(f"--operator-key: {path}: an operator key is 32 bytes, this file holds {len(key)}")
    return key


@contextlib.contextmanager
def locked(directory: Path, *, exclusive: bool = True) -> Iterator[None]:
    """Hold the directory's lock. Re-checked after acquiring: `ca init --force` replaces the directory,
    and a lock taken on the replaced one's file would exclude nobody."""
    while True:
        try:
            fd = os.open(directory / LOCK, os.O_RDWR | os.O_CREAT, 0o600)
        except FileNotFoundError:
            raise CLIError(f"--dir: {directory} is not a CA directory (run `trustchain-cli ca init`)") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
            try:
                same = os.stat(directory / LOCK).st_ino == os.fstat(fd).st_ino
            except FileNotFoundError:
                same = False
            if same:
                yield
                return
        finally:
            os.close(fd)


# --- ca.json ---------------------------------------------------------------------------------------


def _field(where: Path, config: dict[str, Any], key: str, kind: type, default: Any = None) -> Any:
    value = config.get(key, default)
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is not bool):
        raise CLIError(f"--dir: {where}: field {key!r} is missing or not a {kind.__name__}")
    return value


def _hex32(where: Path, field: str, value: Any) -> bytes:
    try:
        raw = bytes.fromhex(value) if isinstance(value, str) else b""
    except ValueError:
        raw = b""
    if len(raw) != 32:
        raise CLIError(f"--dir: {where}: field {field!r} must be 32 bytes in hexadecimal")
    return raw


def check_config(where: Path, config: Any) -> dict[str, Any]:
    """ca.json as the commands read it, or a CLIError naming the first missing or mistyped field."""
    if not isinstance(config, dict):
        raise CLIError(f"--dir: {where}: not a JSON object")
    n = _field(where, config, "validators", int)
    t = _field(where, config, "threshold", int)
    if not 1 <= t <= n:
        raise CLIError(f"--dir: {where}: field 'threshold' must be between 1 and 'validators'")
    _field(where, config, "ca_domain", str)
    for key in ("seq", "crl_number", "root_crl_number"):
        if _field(where, config, key, int, 0) < 0:
            raise CLIError(f"--dir: {where}: field {key!r} must not be negative")
    urls = _field(where, config, "urls", dict)
    for key in causrls.URL_KEYS:
        _field(where, urls, key, str)
    for g in GROUPS:
        entry = _field(where, config, g, dict)
        _field(where, entry, "common_name", str)
        _hex32(where, f"{g}.group_key", entry.get("group_key"))
        shares = _field(where, entry, "verifying_shares", dict)
        if sorted(shares) != sorted(str(i) for i in range(1, n + 1)):
            raise CLIError(f"--dir: {where}: field '{g}.verifying_shares' must list validators 1..{n}")
        for i, v in shares.items():
            _hex32(where, f"{g}.verifying_shares.{i}", v)
    cluster = _field(where, config, "cluster", list)
    if len(cluster) != n:
        raise CLIError(f"--dir: {where}: field 'cluster' must list {n} keys")
    for i, k in enumerate(cluster):
        _hex32(where, f"cluster[{i}]", k)
    for serial, entry in _field(where, config, "root_revocations", dict, {}).items():
        if not isinstance(entry, dict) or not isinstance(entry.get("revoked_us"), int) \
                or not isinstance(entry.get("reason"), int):
            raise CLIError(f"--dir: {where}: field 'root_revocations.{serial}' needs integer revoked_us and reason")
    _field(where, config, "operator_key_id", str)
    _field(where, config, "operator_key_path", str, "")
    return config


# --- the directory ---------------------------------------------------------------------------------


def _legacy_message(d: Path) -> str:
    target = default_key_dir() / "<key id>.key"
    return (f"--dir: {d / LEGACY_OPERATOR_KEY}: the operator key sits beside the shares it encrypts; move it "
            f"out with `trustchain-cli ca migrate-key --dir {d}` (to {target}, or --operator-key PATH)")


@dataclass
class CADir:
    path: Path
    config: dict[str, Any]
    operator_key: bytes
    key_path: Path

    @classmethod
    def load(cls, path: str, operator_key: str | None = None) -> CADir:
        p = Path(path)
        if not (p / CONFIG).is_file():
            raise CLIError(f"--dir: {p} is not a CA directory (no {CONFIG}; run `trustchain-cli ca init`)")
        if (p / LEGACY_OPERATOR_KEY).exists():
            raise CLIError(_legacy_message(p))
        config = cls.read_config(p)
        key_path = cls.resolve_key_path(config, operator_key)
        if not key_path.is_file():
            raise CLIError(f"--operator-key: {key_path}: no operator key there (give --operator-key PATH or set "
                           f"{OPERATOR_KEY_ENV})")
        key = read_operator_key(key_path)
        if key_id(key) != config["operator_key_id"]:
            raise CLIError(f"--operator-key: {key_path}: key {key_id(key)} is not this CA's operator key "
                           f"({config['operator_key_id']})")
        return cls(p, config, key, key_path)

    @staticmethod
    def read_config(p: Path) -> dict[str, Any]:
        try:
            config = json.loads((p / CONFIG).read_text())
        except (ValueError, UnicodeDecodeError) as exc:
            raise CLIError(f"--dir: {p / CONFIG}: not valid JSON ({exc})") from None
        return check_config(p / CONFIG, config)

    @staticmethod
    def resolve_key_path(config: dict[str, Any], explicit: str | None) -> Path:
        chosen = explicit or os.environ.get(OPERATOR_KEY_ENV) or config.get("operator_key_path")
        if chosen:
            return Path(chosen).expanduser()
        return default_key_dir() / f"{config['operator_key_id']}.key"

    def public(self, g: str) -> frost.PublicKeyPackage:
        entry = self.config[g]
        return frost.PublicKeyPackage(
            bytes.fromhex(entry["group_key"]),
            {int(i): bytes.fromhex(v) for i, v in entry["verifying_shares"].items()},
            int(self.config["threshold"]),
        )

    def certificate(self, g: str) -> x509.Certificate:
        name = "root.pem" if g == "root" else "intermediate.pem"
        try:
            return x509.load_pem_x509_certificate((self.path / name).read_bytes())
        except ValueError as exc:
            raise CLIError(f"--dir: {self.path / name}: not a PEM certificate ({exc})") from None

    def profile(self, g: str, *, with_expiry: bool = True) -> cax509.IssuerProfile:
        """``with_expiry``: carry the certificate's notAfter, so nothing it issues outlives it."""
        urls = self.config["urls"]
        not_after = self.certificate(g).not_valid_after_utc if with_expiry else None
        return cax509.IssuerProfile(ca_name(self.config[g]["common_name"]), bytes.fromhex(self.config[g]["group_key"]),
                                    urls[f"{g}_crl"], urls["ocsp"], urls[f"{g}_issuer"], not_after=not_after)

    def _share_problem(self, g: str, i: int, public: frost.PublicKeyPackage) -> tuple[frost.KeyPackage | None, str]:
        path = self.path / "shares" / f"validator-{i}.{g}.share"
        try:
            blob = path.read_bytes()
        except FileNotFoundError:
            return None, f"{path}: missing"
        try:
            kp = sharebox.load_key_package(self.operator_key, f"validator-{i}", g, blob)
        except sharebox.ShareboxError:
            return None, f"{path}: does not decrypt under the operator key (damaged or another CA's share)"
        if (kp.identifier != i or kp.group_public_key != public.group_public_key
                or group.base_mult(kp.signing_share) != public.verifying_shares.get(i)):
            return None, f"{path}: not validator {i}'s share of this CA's {g} key"
        return kp, ""

    def shares(self, g: str, prefer: list[int] | None = None) -> dict[int, frost.KeyPackage]:
        """T shares that check out against the group's verifying shares, from any validators (``prefer``
        first). A bad file is named on stderr and skipped; fewer than T good ones is an error."""
        t, n = int(self.config["threshold"]), int(self.config["validators"])
        public = self.public(g)
        order = [*(prefer or []), *(i for i in range(1, n + 1) if i not in (prefer or []))]
        good: dict[int, frost.KeyPackage] = {}
        problems = []
        for i in order:
            kp, problem = self._share_problem(g, i, public)
            if kp is None:
                problems.append(problem)
                if "missing" not in problem:
                    print(f"trustchain-cli: warning: {problem} (skipped)", file=sys.stderr)
            elif len(good) < t:
                good[i] = kp
        if len(good) < t:
            raise CLIError(f"shares: {len(good)} usable {g} shares, {t} needed: " + "; ".join(problems), EXIT_IO)
        return good

    def signer(self, g: str, prefer: list[int] | None = None) -> cax509.SignFunction:
        """FROST over T checked shares loaded from disk."""
        keys = self.shares(g, prefer)
        public = self.public(g)
        return lambda msg: frost.sign_with_quorum(keys, public, msg, secrets.token_bytes)

    def consensus_signers(self) -> list[Ed25519Signer]:
        out = []
        for i in range(1, int(self.config["validators"]) + 1):
            path = self.path / "consensus" / f"validator-{i}.key"
            try:
                seed = sharebox.unwrap_at_rest(self.operator_key, f"validator-{i}", "consensus", path.read_bytes())
            except sharebox.ShareboxError:
                raise CLIError(f"--dir: {path}: does not decrypt under the operator key", EXIT_IO) from None
            out.append(Ed25519Signer(seed))
        return out

    def operator_account(self) -> Ed25519Signer:
        return Ed25519Signer(hashlib.sha256(b"trustchain-cli operator account" + self.operator_key).digest())

    def app(self, dns: caa.DNSLookup | None = None) -> issuance.CAApplication:
        policy = capolicy.CAPolicy(
            issuer=self.profile("issuing"),
            ca_domain=self.config["ca_domain"],
            root_keys=(self.public("root").group_public_key,),
            operators=(self.operator_account().public_key,),
            max_lifetime=MAX_LEAF_LIFETIME,
            require_payment=False,
        )
        app = issuance.CAApplication(policy, dns or caa.StaticDNS())
        state = self.path / STATE
        if state.is_file():
            try:
                app.restore(state.read_bytes())
            except (DecodeError, ValueError, TypeError) as exc:
                raise CLIError(f"--dir: {state}: corrupt CA state ({str(exc)[:120]})", EXIT_USAGE) from None
        return app

    def save(self, app: issuance.CAApplication) -> None:
        """State, then ca.json, each replaced atomically (the caller holds the lock)."""
        for name, data in ((STATE, app.snapshot()), (CONFIG, json.dumps(self.config, indent=2, sort_keys=True)
                                                       .encode())):
            tmp = self.path / (name + ".tmp")
            write_private(tmp, data)
            tmp.replace(self.path / name)

    def next_seq(self) -> int:
        self.config["seq"] = int(self.config.get("seq", 0)) + 1
        return int(self.config["seq"])
