"""The node-local TSIG keyring for RFC 2136 dynamic updates: `<storage.path>/tsig-keys.json`, mode 0600.

A TSIG secret is shared between one client and one node. It is never replicated: in replicated state any
validator could read it and forge updates. What the node may do with an update signed by a key is
decided by the zone owner's replicated delegation to this node's validator account, which names the key
(`trustchain.dns.delegation`); the keyring only says which secret authenticates which key name, and
for which zone the operator created it.

`trustchain-cli dns tsig add NAME --zone ZONE --data-dir DIR` creates a key (the secret comes from the
OS's random source), `list` and `remove` manage them. A running node rereads the file when it changes.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import logging
import os
import secrets
from dataclasses import dataclass
from pathlib import Path

import dns.name
import dns.tsig

from trustchain.errors import TrustChainError

__all__ = ["ALGORITHMS", "KEYRING_NAME", "Keyring", "TSIGError", "TSIGKey", "add_key", "keyring_path", "load_keys",
           "remove_key"]

log = logging.getLogger("trustchain.node")

KEYRING_NAME = "tsig-keys.json"
#: HMAC-SHA2 only: clients (nsupdate, certbot) name them so; HMAC-MD5 and SHA-1 are not accepted
ALGORITHMS: dict[str, dns.name.Name] = {
    "hmac-sha256": dns.tsig.HMAC_SHA256,
    "hmac-sha384": dns.tsig.HMAC_SHA384,
    "hmac-sha512": dns.tsig.HMAC_SHA512,
}
SECRET_BYTES = 32
MAX_KEYS = 1024


class TSIGError(TrustChainError, ValueError):
    """A keyring file or a key argument that cannot be used; the message names it."""


@dataclass(frozen=True)
class TSIGKey:
    name: str  # absolute, lower-case
    algorithm: str  # a key of ALGORITHMS
    secret: bytes
    zone: str  # the zone (absolute) this key may update, whatever else is delegated to it

    def dns_key(self) -> dns.tsig.Key:
        return dns.tsig.Key(dns.name.from_text(self.name), self.secret, ALGORITHMS[self.algorithm])

    def client_text(self) -> str:
        """The `-y` argument of nsupdate and dig: ALGORITHM:NAME:SECRET."""
        return f"{self.algorithm}:{self.name}:{base64.b64encode(self.secret).decode()}"


def keyring_path(data_dir: Path) -> Path:
    return data_dir / KEYRING_NAME


def _absolute(text: str, what: str) -> str:
    try:
        return dns.name.from_text(text).canonicalize().to_text()
    except Exception as exc:  # dnspython raises several exception types on bad names
        raise TSIGError(f"{what}: {text!r} is not a domain name") from exc


def load_keys(path: Path) -> dict[dns.name.Name, TSIGKey]:
    """Every key in the file (none if there is no file); TSIGError names what is malformed."""
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise TSIGError(f"{path}: unreadable keyring ({exc})") from None
    if not isinstance(doc, dict) or doc.get("version") != 1 or not isinstance(doc.get("keys"), list):
        raise TSIGError(f"{path}: not a TrustChain TSIG keyring (version 1)")
    keys: dict[dns.name.Name, TSIGKey] = {}
    for i, item in enumerate(doc["keys"]):
        where = f"{path}: keys[{i}]"
        try:
            key = TSIGKey(_absolute(str(item["name"]), f"{where}.name"), str(item["algorithm"]),
                          base64.b64decode(str(item["secret"]), validate=True),
                          _absolute(str(item["zone"]), f"{where}.zone"))
        except (KeyError, TypeError, binascii.Error) as exc:
            raise TSIGError(f"{where}: malformed ({exc})") from None
        if key.algorithm not in ALGORITHMS or len(key.secret) < 16:
            raise TSIGError(f"{where}: algorithm must be one of {', '.join(ALGORITHMS)} with a secret of 16+ bytes")
        keys[dns.name.from_text(key.name)] = key
    return keys


def _save(path: Path, keys: dict[dns.name.Name, TSIGKey]) -> None:
    doc = {"version": 1, "keys": [{"name": k.name, "algorithm": k.algorithm, "zone": k.zone,
                                   "secret": base64.b64encode(k.secret).decode()} for _, k in sorted(keys.items())]}
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        json.dump(doc, f, indent=1)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


def add_key(path: Path, name: str, zone: str, algorithm: str = "hmac-sha256", secret: bytes | None = None) -> TSIGKey:
    """Create key `name` for `zone` (a fresh random secret unless one is given); an existing name is refused."""
    if algorithm not in ALGORITHMS:
        raise TSIGError(f"--algorithm: must be one of {', '.join(ALGORITHMS)}")
    if secret is not None and len(secret) < 16:
        raise TSIGError("--secret: must be at least 16 bytes")
    keys = load_keys(path)
    key = TSIGKey(_absolute(name, "NAME"), algorithm, secret or secrets.token_bytes(SECRET_BYTES),
                  _absolute(zone, "--zone"))
    if dns.name.from_text(key.name) in keys:
        raise TSIGError(f"NAME: key {key.name} already exists (remove it first)")
    if len(keys) >= MAX_KEYS:
        raise TSIGError(f"{path}: already holds {MAX_KEYS} keys")
    keys[dns.name.from_text(key.name)] = key
    path.parent.mkdir(parents=True, exist_ok=True)
    _save(path, keys)
    return key


def remove_key(path: Path, name: str) -> bool:
    keys = load_keys(path)
    if keys.pop(dns.name.from_text(_absolute(name, "NAME")), None) is None:
        return False
    _save(path, keys)
    return True


class Keyring:
    """The keys of `path`, reread whenever the file changes (a key added needs no restart). A file that
    does not parse authenticates nothing until it is fixed, and says so in the log."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._stamp: tuple[int, int] | None = None
        self._keys: dict[dns.name.Name, TSIGKey] = {}

    def current(self) -> dict[dns.name.Name, TSIGKey]:
        stamp = None
        with contextlib.suppress(OSError):
            st = self.path.stat()
            stamp = (st.st_mtime_ns, st.st_size)
        if stamp != self._stamp:
            self._stamp = stamp
            try:
                self._keys = load_keys(self.path) if stamp is not None else {}
            except TSIGError as exc:
                self._keys = {}
                log.error("TSIG keyring not loaded: %s", exc, extra={"event": "tsig_keyring_invalid"})
        return self._keys
