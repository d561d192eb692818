"""node.toml: the validator's configuration, parsed strictly.

Sections follow TrustChain's design document ([trustchain], [ca], [dns], [consensus], [storage]) plus [api]. Every
problem is reported as `ConfigError` naming the file, the key (``section.key``) and the reason; unknown
keys are errors too, so a typo never silently falls back to a default. ``TRUSTCHAIN_NETWORK``,
``TRUSTCHAIN_ROLE`` and ``TRUSTCHAIN_STORAGE_PATH`` override ``trustchain.network``, ``trustchain.role`` and
``storage.path`` (so a container can mount its configuration read-only and its data elsewhere).

Relative paths are resolved against the directory holding node.toml.
"""

from __future__ import annotations

import os
import re
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from trustchain.errors import TrustChainError
from trustchain.quorum import check_signing_threshold

ROLES = ("validator", "observer")
TRANSPORTS = ("tcp", "quic")
SYNC_MODES = ("full", "normal")
LOG_FORMATS = ("text", "json")
MAX_OCSP_BATCH = 256  # trustchain.ca.policy.CAPolicy.ocsp_batch_max
MAX_ISSUE_WAIT_US = 60_000_000  # api.issue_wait: the longest a certificate request's answer may wait
MAX_DNS_WORKERS = 64  # reference_node.dns.workers.MAX_WORKERS

_DURATION = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*(us|ms|s|m|h|d)\s*$")
_DURATION_US = {"us": 1, "ms": 1_000, "s": 1_000_000, "m": 60_000_000, "h": 3_600_000_000, "d": 86_400_000_000}
_SIZE = re.compile(r"^\s*(\d+(?:\.\d+)?)\s*([KMGTP]?i?B)\s*$", re.IGNORECASE)
_SIZE_UNITS = {"": 0, "K": 1, "M": 2, "G": 3, "T": 4, "P": 5}

T = TypeVar("T")


class ConfigError(TrustChainError, ValueError):
    def __init__(self, file: str, key: str, reason: str) -> None:
        super().__init__(f"{file}: {key}: {reason}")
        self.file, self.key, self.reason = file, key, reason


def parse_duration_us(text: object) -> int:
    """'5s', '500ms', '24h', '90d' (or a bare integer number of seconds) -> microseconds."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return int(text) * 1_000_000
    if not isinstance(text, str):
        raise ValueError(f"expected a duration like \"5s\", \"500ms\", \"24h\", got {text!r}")
    m = _DURATION.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a duration like \"5s\", \"500ms\", \"24h\" or \"90d\"")
    return round(float(m.group(1)) * _DURATION_US[m.group(2)])


def parse_size(text: object) -> int:
    """'1GB', '100MiB', '1TB' (or a bare integer of bytes) -> bytes. KB/MB/... are decimal, KiB/... binary."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    if not isinstance(text, str):
        raise ValueError(f"expected a size like \"1GB\" or \"512MiB\", got {text!r}")
    m = _SIZE.match(text)
    if not m:
        raise ValueError(f"{text!r} is not a size like \"1GB\", \"512MiB\" or \"1TB\"")
    unit = m.group(2).upper()
    prefix = unit[0] if unit[0] in "KMGTP" else ""
    base = 1024 if "I" in unit else 1000
    return round(float(m.group(1)) * float(base ** _SIZE_UNITS[prefix]))


def _positive_rate(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e9:
        raise ValueError(f"must be a positive number of requests per second, got {value!r}")
    return float(value)


def _rate_or_off(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1e9:
        raise ValueError(f"must be a number of responses per second (0: off), got {value!r}")
    return float(value)


def _per_hour(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 1e9:
        raise ValueError(f"must be a positive number per hour, got {value!r}")
    return float(value)


def _port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= 65535:
        raise ValueError(f"must be a port number 1..65535, got {value!r}")
    return value


def _boolean(value: object) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"must be true or false, got {value!r}")
    return value


def _positive_int(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
        raise ValueError(f"must be a positive integer, got {value!r}")
    return value


def parse_address(text: object, *, default_host: str = "127.0.0.1") -> tuple[str, int]:
    """'host:port', '[v6]:port' or ':port' -> (host, port)."""
    if not isinstance(text, str):
        raise ValueError(f"expected \"host:port\", got {text!r}")
    m = re.fullmatch(r"\[([^\]]+)\]:(\d+)|([^:\[\]]*):(\d+)", text.strip())
    if not m:
        raise ValueError(f"{text!r} is not \"host:port\" or \"[ipv6]:port\"")
    host = m.group(1) if m.group(1) is not None else m.group(3)
    port = int(m.group(2) if m.group(2) is not None else m.group(4))
    if not 0 <= port <= 65535:
        raise ValueError(f"port {port} out of range 0..65535")
    return (host or default_host), port


@dataclass(frozen=True)
class Validator:
    id: int
    name: str
    address: tuple[str, int]
    public_key: bytes


@dataclass(frozen=True)
class ObserverPeer:
    """A non-voting replica of the overlay (`consensus.observers`): its name and consensus address."""

    name: str
    address: tuple[str, int]


@dataclass(frozen=True)
class TrustChainSection:
    node_id: str
    network: str = "mainnet"
    role: str = "validator"
    key_file: Path | None = None  # this node's Ed25519 consensus key (32-byte seed, hex)
    genesis: Path | None = None
    log_format: str = "text"  # "json": one JSON object per line (time, level, node, event, fields)


@dataclass(frozen=True)
class CASection:
    root_cert: Path | None = None
    root_key: Path | None = None  # threshold CA: this validator's FROST share of the root key
    intermediate_cert: Path | None = None
    intermediate_key: Path | None = None  # this validator's FROST share of the issuing key
    rotation_period_us: int = 24 * 3_600_000_000
    crl_interval_us: int = 60_000_000  # how often the node checks whether a CRL is due and orders sign_crl
    ocsp_interval_us: int = 10_000_000  # how often it checks for OCSP responses to (re)sign
    ocsp_batch: int = 64  # serials per sign_ocsp_batch command
    node_cert_lifetime_us: int = 24 * 3_600_000_000  # lifetime requested when the node renews its TLS certificate


@dataclass(frozen=True)
class DNSSection:
    listen: tuple[str, int] | None = None
    doq_listen: tuple[str, int] | None = None
    upstream: tuple[str, ...] = ()
    cache_size: int = 64 * 1024 * 1024
    ttl_override: bool | int = False
    nsid: str = ""  # RFC 5001 name server identifier sent when a query asks; empty: none
    rrl_rate: float = 0.0  # UDP responses/s per client /24 (/56) and answer class; 0: no rate limiting
    rrl_slip: int = 2  # every N-th limited response goes out truncated (TC=1); 0: none
    workers: int = 1  # processes answering UDP on `listen` (SO_REUSEPORT); the node is one of them


@dataclass(frozen=True)
class ConsensusSection:
    validators: tuple[Validator, ...]
    threshold: int
    timeout_us: int = 5_000_000
    batch_size: int = 16
    batch_delay_us: int = 2_000
    max_in_flight: int = 4  # adaptive batching (`trustchain.consensus.config.ClusterConfig`); 0 = off
    max_batch_size: int = 256
    checkpoint_interval: int = 16
    watermark_window: int = 64
    listen: tuple[str, int] | None = None
    transport: str = "tcp"
    tls_cert: Path | None = None
    tls_key: Path | None = None
    tls_ca: Path | None = None  # trust anchor for peers' node certificates (default: ca.root_cert)
    send_queue: int = 4096
    #: the observers every node of the cluster knows (the overlay's membership); not in genesis
    observers: tuple[ObserverPeer, ...] = ()


@dataclass(frozen=True)
class StorageSection:
    path: Path
    max_size: int = 1 << 40
    prune_age_us: int = 90 * 86_400_000_000
    synchronous: str = "full"


@dataclass(frozen=True)
class APISection:
    listen: tuple[str, int] = ("127.0.0.1", 8443)
    request_timeout_us: int = 30_000_000
    read_rate: float = 100.0  # requests/s per client IP (token bucket; burst = 2 x rate)
    write_rate: float = 10.0  # writes/s per client IP
    global_write_rate: float = 500.0  # writes/s from all clients together
    registrations_per_hour: float = 10.0  # new accounts per client IP per hour (burst: as many at once)
    max_connections_per_ip: int = 32
    header_timeout_us: int = 10_000_000
    # The JSON write endpoints act for one account shared by every caller of this node; off unless an
    # operator turns it on (a development cluster). Clients sign their own writes: POST /api/v1/write.
    unsigned_writes: bool = False
    # How long a certificate request's answer waits for the certificate (its serial is drawn from the
    # validators' reveals, then it is threshold-signed) before it is answered 202 with a pending id to
    # poll; a client's `wait_s` may shorten it, never lengthen it
    issue_wait_us: int = 5_000_000
    # HTTPS listener for the same API (CT log lists and monitors fetch over https); its certificate and
    # key default to the node certificate (consensus.tls_cert / tls_key)
    tls_listen: tuple[str, int] | None = None
    tls_cert: Path | None = None
    tls_key: Path | None = None


@dataclass(frozen=True)
class CTSection:
    log_key: Path | None = None  # this validator's ECDSA P-256 CT log key (PEM), for SCTs and tree heads


@dataclass(frozen=True)
class ACMESection:
    """How this validator looks at an ACME http-01 challenge of an outside name."""

    http01_port: int = 80  # the port validators fetch http://<name>/.well-known/acme-challenge/<token> on
    # Fetch from addresses that are not public (loopback, private, link-local)? Only test clusters need it:
    # otherwise a client could make every validator probe its own internal network.
    http01_private_addresses: bool = False


@dataclass(frozen=True)
class NodeConfig:
    file: str
    trustchain: TrustChainSection
    ca: CASection
    dns: DNSSection
    consensus: ConsensusSection
    storage: StorageSection
    api: APISection
    extra: Mapping[str, Any] = field(default_factory=dict)
    acme: ACMESection = ACMESection()
    ct: CTSection = CTSection()

    @property
    def replica_id(self) -> int:
        """This node's index among the validators (matched by node_id), or -1 for an observer."""
        for v in self.consensus.validators:
            if v.name == self.trustchain.node_id:
                return v.id
        return -1


class _Reader:
    def __init__(self, file: str, base: Path, doc: Mapping[str, Any]) -> None:
        self.file, self.base, self.doc = file, base, doc

    def section(self, name: str, allowed: set[str], required: bool = True) -> dict[str, Any]:
        raw = self.doc.get(name)
        if raw is None:
            if required:
                raise ConfigError(self.file, f"[{name}]", "missing section")
            return {}
        if not isinstance(raw, dict):
            raise ConfigError(self.file, name, "must be a table")
        for key in raw:
            if key not in allowed:
                raise ConfigError(self.file, f"{name}.{key}", f"unknown key (allowed: {', '.join(sorted(allowed))})")
        return dict(raw)

    def get(self, sec: str, table: Mapping[str, Any], key: str, conv: Callable[[Any], T], default: T | None = None,
            required: bool = False) -> T:
        if key not in table:
            if required:
                raise ConfigError(self.file, f"{sec}.{key}", "required")
            return default  # type: ignore[return-value]
        try:
            return conv(table[key])
        except (ValueError, TypeError) as exc:
            raise ConfigError(self.file, f"{sec}.{key}", str(exc)) from None

    def path(self, value: Any) -> Path:
        if not isinstance(value, str) or not value:
            raise ValueError(f"expected a path string, got {value!r}")
        p = Path(value)
        return p if p.is_absolute() else (self.base / p)


def _str(value: Any) -> str:
    if not isinstance(value, str) or not value:
        raise ValueError(f"expected a non-empty string, got {value!r}")
    return value


def _int(minimum: int) -> Callable[[Any], int]:
    def conv(value: Any) -> int:
        if not isinstance(value, int) or isinstance(value, bool):
            raise ValueError(f"expected an integer, got {value!r}")
        if value < minimum:
            raise ValueError(f"must be >= {minimum}, got {value}")
        return value
    return conv


def _bool(value: Any) -> bool:
    if not isinstance(value, bool):
        raise ValueError(f"expected true or false, got {value!r}")
    return value


def _choice(options: tuple[str, ...]) -> Callable[[Any], str]:
    def conv(value: Any) -> str:
        if value not in options:
            raise ValueError(f"must be one of {', '.join(options)}, got {value!r}")
        return str(value)
    return conv


def _ttl_override(value: Any) -> bool | int:
    if isinstance(value, bool):
        return value
    if isinstance(value, int) and value >= 0:
        return value
    raise ValueError(f"expected false, true or a TTL in seconds, got {value!r}")


def _workers(value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_DNS_WORKERS:
        raise ValueError(f"expected a number of processes, 1 to {MAX_DNS_WORKERS}")
    return value


def _nsid(value: Any) -> str:
    if not isinstance(value, str) or len(value.encode()) > 128 or not value.isprintable():
        raise ValueError("expected printable text of at most 128 bytes")
    return value


def _upstream(value: Any) -> tuple[str, ...]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise ValueError("expected a list of resolver addresses")
    return tuple(value)


def _validators(value: Any) -> tuple[Validator, ...]:
    if not isinstance(value, list) or not value:
        raise ValueError("expected a non-empty list of {name, address, public_key} tables")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"[{i}]: expected a table {{name, address, public_key}} (got {item!r})")
        unknown = set(item) - {"name", "address", "public_key"}
        if unknown:
            raise ValueError(f"[{i}].{sorted(unknown)[0]}: unknown key")
        for k in ("name", "address", "public_key"):
            if not isinstance(item.get(k), str):
                raise ValueError(f"[{i}].{k}: required string")
        try:
            address = parse_address(item["address"])
        except ValueError as exc:
            raise ValueError(f"[{i}].address: {exc}") from None
        try:
            key = bytes.fromhex(item["public_key"])
        except ValueError:
            raise ValueError(f"[{i}].public_key: not hexadecimal") from None
        if len(key) != 32:
            raise ValueError(f"[{i}].public_key: Ed25519 key must be 32 bytes, got {len(key)}")
        out.append(Validator(i, item["name"], address, key))
    names = [v.name for v in out]
    if len(set(names)) != len(names):
        raise ValueError("validator names must be distinct")
    if len({v.public_key for v in out}) != len(out):
        raise ValueError("validator public keys must be distinct")
    return tuple(out)


def _observers(value: Any) -> tuple[ObserverPeer, ...]:
    if not isinstance(value, list):
        raise ValueError("expected a list of {name, address} tables")
    out = []
    for i, item in enumerate(value):
        if not isinstance(item, dict):
            raise ValueError(f"[{i}]: expected a table {{name, address}} (got {item!r})")
        unknown = set(item) - {"name", "address"}
        if unknown:
            raise ValueError(f"[{i}].{sorted(unknown)[0]}: unknown key")
        for k in ("name", "address"):
            if not isinstance(item.get(k), str) or not item[k]:
                raise ValueError(f"[{i}].{k}: required string")
        try:
            address = parse_address(item["address"])
        except ValueError as exc:
            raise ValueError(f"[{i}].address: {exc}") from None
        out.append(ObserverPeer(item["name"], address))
    if len({o.name for o in out}) != len(out):
        raise ValueError("observer names must be distinct")
    return tuple(out)


def load(path: str | os.PathLike[str], environ: Mapping[str, str] | None = None) -> NodeConfig:
    file = str(path)
    env = os.environ if environ is None else environ
    try:
        with open(file, "rb") as fh:
            doc = tomllib.load(fh)
    except OSError as exc:
        raise ConfigError(file, "-", f"cannot read: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(file, "-", f"not valid TOML: {exc}") from None
    return parse(doc, file, Path(file).resolve().parent, env)


def parse(doc: Mapping[str, Any], file: str, base: Path, env: Mapping[str, str]) -> NodeConfig:
    known = {"trustchain", "ca", "dns", "consensus", "storage", "api", "acme", "ct"}
    for key in doc:
        if key not in known:
            raise ConfigError(file, f"[{key}]", f"unknown section (allowed: {', '.join(sorted(known))})")
    r = _Reader(file, base, doc)

    t = r.section("trustchain", {"node_id", "network", "role", "key_file", "genesis", "log_format"})
    network = env.get("TRUSTCHAIN_NETWORK") or r.get("trustchain", t, "network", _str, "mainnet")
    role_raw = env.get("TRUSTCHAIN_ROLE") or t.get("role", "validator")
    if role_raw not in ROLES:
        key = "TRUSTCHAIN_ROLE (environment)" if env.get("TRUSTCHAIN_ROLE") else "trustchain.role"
        raise ConfigError(file, key, f"must be one of {', '.join(ROLES)}, got {role_raw!r}")
    trust = TrustChainSection(
        node_id=r.get("trustchain", t, "node_id", _str, required=True),
        network=network,
        role=role_raw,
        key_file=r.get("trustchain", t, "key_file", r.path),
        genesis=r.get("trustchain", t, "genesis", r.path),
        log_format=r.get("trustchain", t, "log_format", _choice(LOG_FORMATS), "text"),
    )

    c = r.section("ca", {"root_cert", "root_key", "intermediate_cert", "intermediate_key", "rotation_period",
                         "crl_interval", "ocsp_interval", "ocsp_batch", "node_cert_lifetime"}, required=False)
    ca = CASection(
        root_cert=r.get("ca", c, "root_cert", r.path),
        root_key=r.get("ca", c, "root_key", r.path),
        intermediate_cert=r.get("ca", c, "intermediate_cert", r.path),
        intermediate_key=r.get("ca", c, "intermediate_key", r.path),
        rotation_period_us=r.get("ca", c, "rotation_period", parse_duration_us, 24 * 3_600_000_000),
        crl_interval_us=r.get("ca", c, "crl_interval", parse_duration_us, 60_000_000),
        ocsp_interval_us=r.get("ca", c, "ocsp_interval", parse_duration_us, 10_000_000),
        ocsp_batch=r.get("ca", c, "ocsp_batch", _int(1), 64),
        node_cert_lifetime_us=r.get("ca", c, "node_cert_lifetime", parse_duration_us, 24 * 3_600_000_000),
    )
    if not 10_000_000 <= ca.node_cert_lifetime_us <= 90 * 86_400_000_000:
        raise ConfigError(file, "ca.node_cert_lifetime", "must be between 10s and 90d")
    for key, value in (("crl_interval", ca.crl_interval_us), ("ocsp_interval", ca.ocsp_interval_us)):
        if not 100_000 <= value <= 86_400_000_000:
            raise ConfigError(file, f"ca.{key}", "must be between 100ms and 24h")
    if ca.ocsp_batch > MAX_OCSP_BATCH:
        raise ConfigError(file, "ca.ocsp_batch", f"must be at most {MAX_OCSP_BATCH} (the CA's per-command limit)")

    d = r.section("dns", {"listen", "doq_listen", "upstream", "cache_size", "ttl_override", "nsid", "rrl_rate",
                          "rrl_slip", "workers"}, required=False)
    dns = DNSSection(
        listen=r.get("dns", d, "listen", parse_address),
        doq_listen=r.get("dns", d, "doq_listen", parse_address),
        upstream=r.get("dns", d, "upstream", _upstream, ()),
        cache_size=r.get("dns", d, "cache_size", parse_size, 64 * 1024 * 1024),
        ttl_override=r.get("dns", d, "ttl_override", _ttl_override, None) or False,
        nsid=r.get("dns", d, "nsid", _nsid, ""),
        rrl_rate=r.get("dns", d, "rrl_rate", _rate_or_off, 0.0),
        rrl_slip=r.get("dns", d, "rrl_slip", _int(0), 2),
        workers=r.get("dns", d, "workers", _workers, 1),
    )

    k = r.section("consensus", {"validators", "threshold", "timeout", "batch_size", "batch_delay",
                                "max_in_flight", "max_batch_size", "checkpoint_interval", "watermark_window",
                                "listen", "transport", "tls_cert", "tls_key", "tls_ca", "send_queue", "observers"})
    validators = r.get("consensus", k, "validators", _validators, required=True)
    if len(validators) < 4:
        raise ConfigError(file, "consensus.validators", f"PBFT needs at least 4 validators (n = 3f+1), got "
                          f"{len(validators)}")
    threshold = r.get("consensus", k, "threshold", _int(1), required=True)
    problem = check_signing_threshold(len(validators), threshold)
    if problem is not None:
        raise ConfigError(file, "consensus.threshold", problem)
    interval = r.get("consensus", k, "checkpoint_interval", _int(1), 16)
    window = r.get("consensus", k, "watermark_window", _int(1), max(64, interval))
    if window < interval:
        raise ConfigError(file, "consensus.watermark_window", f"must be >= checkpoint_interval ({interval})")
    transport = r.get("consensus", k, "transport", _choice(TRANSPORTS), "tcp")
    cons = ConsensusSection(
        validators=validators,
        threshold=threshold,
        timeout_us=r.get("consensus", k, "timeout", parse_duration_us, 5_000_000),
        batch_size=r.get("consensus", k, "batch_size", _int(1), 16),
        batch_delay_us=r.get("consensus", k, "batch_delay", parse_duration_us, 2_000),
        max_in_flight=r.get("consensus", k, "max_in_flight", _int(0), 4),
        max_batch_size=r.get("consensus", k, "max_batch_size", _int(1), 256),
        checkpoint_interval=interval,
        watermark_window=window,
        listen=r.get("consensus", k, "listen", parse_address),
        transport=transport,
        tls_cert=r.get("consensus", k, "tls_cert", r.path),
        tls_key=r.get("consensus", k, "tls_key", r.path),
        tls_ca=r.get("consensus", k, "tls_ca", r.path, ca.root_cert),
        send_queue=r.get("consensus", k, "send_queue", _int(1), 4096),
        observers=r.get("consensus", k, "observers", _observers, ()),
    )
    clash = {o.name for o in cons.observers} & {v.name for v in validators}
    if clash:
        raise ConfigError(file, "consensus.observers", f"{sorted(clash)[0]!r} is also a validator's name")
    if cons.observers and transport != "tcp":
        raise ConfigError(file, "consensus.observers", "observers are fed over consensus.transport = \"tcp\" in "
                          "this version")
    if cons.timeout_us <= 0:
        raise ConfigError(file, "consensus.timeout", "must be > 0")
    if transport == "quic":
        for key in ("tls_cert", "tls_key", "tls_ca"):
            if getattr(cons, key) is None:
                hint = " (or ca.root_cert)" if key == "tls_ca" else ""
                raise ConfigError(file, f"consensus.{key}", f"required{hint} when consensus.transport = \"quic\"")

    s = r.section("storage", {"path", "max_size", "prune_age", "synchronous"})
    storage = StorageSection(
        path=(Path(env["TRUSTCHAIN_STORAGE_PATH"]) if env.get("TRUSTCHAIN_STORAGE_PATH")
              else r.get("storage", s, "path", r.path, required=True)),
        max_size=r.get("storage", s, "max_size", parse_size, 1 << 40),
        prune_age_us=r.get("storage", s, "prune_age", parse_duration_us, 90 * 86_400_000_000),
        synchronous=r.get("storage", s, "synchronous", _choice(SYNC_MODES), "full"),
    )
    if storage.max_size < 1 << 20:
        raise ConfigError(file, "storage.max_size", "must be at least 1MiB")

    a = r.section("api", {"listen", "request_timeout", "read_rate", "write_rate", "global_write_rate",
                          "registrations_per_hour", "max_connections_per_ip", "header_timeout", "unsigned_writes",
                          "issue_wait", "tls_listen", "tls_cert", "tls_key"}, required=False)
    api = APISection(
        listen=r.get("api", a, "listen", parse_address, ("127.0.0.1", 8443)),
        request_timeout_us=r.get("api", a, "request_timeout", parse_duration_us, 30_000_000),
        read_rate=r.get("api", a, "read_rate", _positive_rate, 100.0),
        write_rate=r.get("api", a, "write_rate", _positive_rate, 10.0),
        global_write_rate=r.get("api", a, "global_write_rate", _positive_rate, 500.0),
        registrations_per_hour=r.get("api", a, "registrations_per_hour", _per_hour, 10.0),
        max_connections_per_ip=r.get("api", a, "max_connections_per_ip", _positive_int, 32),
        header_timeout_us=r.get("api", a, "header_timeout", parse_duration_us, 10_000_000),
        unsigned_writes=r.get("api", a, "unsigned_writes", _boolean, False),
        issue_wait_us=r.get("api", a, "issue_wait", parse_duration_us, 5_000_000),
        tls_listen=r.get("api", a, "tls_listen", parse_address),
        tls_cert=r.get("api", a, "tls_cert", r.path, cons.tls_cert),
        tls_key=r.get("api", a, "tls_key", r.path, cons.tls_key),
    )
    if not 0 <= api.issue_wait_us <= MAX_ISSUE_WAIT_US:  # a waiting answer holds a connection
        raise ConfigError(file, "api.issue_wait", f"must be between 0s and {MAX_ISSUE_WAIT_US // 1_000_000}s")
    if api.tls_listen is not None and (api.tls_cert is None or api.tls_key is None):
        raise ConfigError(file, "api.tls_cert", "required (or consensus.tls_cert and tls_key) with api.tls_listen")
    ct_table = r.section("ct", {"log_key"}, required=False)
    ct = CTSection(log_key=r.get("ct", ct_table, "log_key", r.path))

    m = r.section("acme", {"http01_port", "http01_private_addresses"}, required=False)
    acme = ACMESection(
        http01_port=r.get("acme", m, "http01_port", _port, 80),
        http01_private_addresses=r.get("acme", m, "http01_private_addresses", _boolean, False),
    )

    cfg = NodeConfig(file, trust, ca, dns, cons, storage, api, acme=acme, ct=ct)
    if trust.role == "validator":
        if cfg.replica_id < 0:
            raise ConfigError(file, "trustchain.node_id", f"{trust.node_id!r} is not one of consensus.validators' "
                              "names (a validator must be listed)")
        if trust.key_file is None:
            raise ConfigError(file, "trustchain.key_file", "required for a validator (its consensus signing key)")
        if cons.listen is None:
            raise ConfigError(file, "consensus.listen", "required for a validator")
    else:
        _check_observer(cfg)
    return cfg


def _check_observer(cfg: NodeConfig) -> None:
    """An observer votes in nothing and holds no CA share: it must not be configured as if it did."""
    file, t = cfg.file, cfg.trustchain
    if cfg.replica_id >= 0:
        raise ConfigError(file, "trustchain.node_id", f"{t.node_id!r} is a validator's name; observers have "
                          "names of their own (consensus.observers)")
    if t.node_id not in {o.name for o in cfg.consensus.observers}:
        raise ConfigError(file, "trustchain.node_id", f"{t.node_id!r} is not one of consensus.observers' names")
    if t.key_file is None:
        raise ConfigError(file, "trustchain.key_file", "required for an observer (its own node key, not a "
                          "validator's)")
    if cfg.consensus.listen is None:
        raise ConfigError(file, "consensus.listen", "required for an observer (peers feed it there)")
    if cfg.consensus.transport != "tcp":
        raise ConfigError(file, "consensus.transport", "an observer runs over \"tcp\" in this version")
    for key in ("root_key", "intermediate_key"):
        if getattr(cfg.ca, key) is not None:
            raise ConfigError(file, f"ca.{key}", "an observer holds no FROST share: remove it")
    if cfg.ct.log_key is not None:
        raise ConfigError(file, "ct.log_key", "an observer runs no CT log of its own: remove it")
