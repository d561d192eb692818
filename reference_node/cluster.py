"""`python -m reference_node cluster --nodes 5 --dir DIR`: a local test network on 127.0.0.1.

`generate` is the genesis ceremony run in one place (a real network runs the DKG between operators'
machines; the math is the same `trustchain.ca.dkg`): consensus keys, a Pedersen DKG for the root and
for the issuing CA key (threshold T of N), the root and intermediate certificates signed through
FROST, the DNS master seed, the CT origin, each validator's P-256 CT log key (its log is listed in
`ct-log-list.json`, the v3 log list monitors read), one TLS node certificate per validator issued by that
intermediate through FROST (for the QUIC transport and DoQ: peers verify each other against the
TrustChain root, the system's one trust anchor), and one node.toml per validator with distinct ports. `run_cluster` then
starts one `python -m reference_node --config ...` process per validator under `supervisor.Supervisor`.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import random
import secrets
import socket
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from reference_node.config import parse_duration_us
from reference_node.genesis import ca_name, key_package_to_json, public_to_json, write_private
from reference_node.supervisor import ManagedNode, RestartPolicy, Supervisor
from trustchain.ca import dkg, frost, sharebox
from trustchain.ca import names as canames
from trustchain.ca import urls as causrls
from trustchain.ca import x509 as cax509
from trustchain.crypto.signing import Ed25519Signer
from trustchain.ct.loglist import ListedLog, log_list
from trustchain.quorum import check_signing_threshold


@dataclass(frozen=True)
class NodePorts:
    consensus: int
    api: int
    dns: int
    doq: int
    https: int = 0  # the API over HTTPS (0: none)


def _ephemeral_range() -> tuple[int, int]:
    try:
        low, high = (int(x) for x in Path("/proc/sys/net/ipv4/ip_local_port_range").read_text().split())
        return low, high
    except (OSError, ValueError):
        return 32768, 60999  # Linux's default; also close to what BSDs and Windows use (49152..65535)


def free_ports(count: int, host: str = "127.0.0.1") -> list[int]:
    """Ports free for both TCP and UDP (QUIC and DNS listen on UDP) at the time of the call.

    They are drawn below the kernel's ephemeral range, so the outgoing connections of this or any other
    process (which take ephemeral ports) cannot occupy one between this call and the node binding it;
    another caller drawing at random from the same 10,000-odd ports is the remaining (small) risk."""
    low, _ = _ephemeral_range()
    floor = max(1025, low - 12_000)
    candidates = list(range(floor, low)) if low - floor >= 4 * count else []
    random.SystemRandom().shuffle(candidates)
    socks: list[socket.socket] = []
    ports: list[int] = []
    try:
        while len(ports) < count:
            t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            try:
                t.bind((host, candidates.pop() if candidates else 0))
            except OSError:
                t.close()
                continue
            socks.append(t)
            port = t.getsockname()[1]
            u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            try:
                u.bind((host, port))
            except OSError:
                u.close()
                continue
            socks.append(u)
            ports.append(port)
    finally:
        for s in socks:
            s.close()
    return ports


def run_dkg(n: int, t: int, context: bytes) -> tuple[dict[int, frost.KeyPackage], frost.PublicKeyPackage]:
    """Pedersen DKG among n participants; round-2 shares travel in hybrid (X25519+ML-KEM) share boxes."""
    rb = secrets.token_bytes
    box_keys = {i: sharebox.RecipientKey.generate(rb) for i in range(1, n + 1)}

    def carry(sender: int, receiver: int, share: dkg.Round2Share) -> dkg.Round2Share:
        box = sharebox.seal_share(share, box_keys[receiver].public_key(), context, rb)
        return sharebox.open_share(box_keys[receiver], box, context, sender, receiver)

    return dkg.run_local(n, t, context, lambda _i: rb, carry)


def frost_sign(keys: dict[int, frost.KeyPackage], public: frost.PublicKeyPackage,
               ids: list[int]) -> cax509.SignFunction:
    quorum = {i: keys[i] for i in ids}
    return lambda msg: frost.sign_with_quorum(quorum, public, msg, secrets.token_bytes)


def node_certificate(sign: cax509.SignFunction, issuer: cax509.IssuerProfile, index: int, now: dt.datetime,
                     lifetime: dt.timedelta, node_domain: str = canames.NODE_DOMAIN, *,
                     ip_addresses: tuple[str, ...] = (),
                     name: str | None = None) -> tuple[ed25519.Ed25519PrivateKey, x509.Certificate]:
    """Validator `index`'s genesis TLS node certificate: a fresh Ed25519 key, SAN
    `validator-<index>.<node_domain>`, EKU serverAuth+clientAuth, issued by the TrustChain
    intermediate through FROST (the same profile `CAApplication` uses when the node renews it: the name
    also in CN, SAN non-critical). An observer's certificate passes its own `name`
    (`observer-<i>.<node_domain>`), which no validator rule covers."""
    key = ed25519.Ed25519PrivateKey.generate()
    name = name or canames.node_name(index, node_domain)
    tbs = cax509.leaf_tbs(key.public_key(), [name], issuer, now, 0,
                          cax509.request_digest(b"genesis-node", name.encode(), key.public_key().public_bytes_raw()),
                          lifetime, common_name=True, ip_addresses=ip_addresses)
    return key, cax509.issue(tbs, sign, issuer.public_key)


def _rfc3339(t: dt.datetime) -> str:
    return t.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def pem_key(key: ed25519.Ed25519PrivateKey | ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def pem_chain(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


DEV_REGISTRY_SUFFIXES = ("test", "example", "org")
# The HTTPS API certificate names the node's bare address (the node certificate names only
# validator-<i>.<node_domain>); it is not renewed, so it lasts as long as the CA allows a leaf.
API_CERT_LIFETIME = dt.timedelta(days=90)


def pki_bases(host: str, ports: list[NodePorts]) -> tuple[str, ...]:
    """Every node's API as a base URL for CRLs, OCSP and issuer certificates, node 0 first.

    Why every node, and not one name: a development cluster's nodes share one address and differ by
    port, and a DNS name resolves to addresses, never ports; clients also resolve with the system's
    resolver, not TrustChain's DNS. So certificates list each node: the CRL as further names of its one
    distribution point (RFC 5280 4.2.1.13: each a way to the same CRL), OCSP and the issuer as further
    access descriptions in priority order, and a client that tries the next URL when one fails is served
    while any node is up. A deployment whose nodes share a port on different hosts passes one name
    that resolves to all of them (`--pki-url http://pki.example.net`) instead."""
    return tuple(f"http://{host}:{p.api}" for p in ports)


def _profile(name: str, key: bytes, urls: dict[str, list[str]], group: str,
             not_after: dt.datetime | None = None) -> cax509.IssuerProfile:
    crl, ocsp, issuer = urls[f"{group}_crl"], urls["ocsp"], urls[f"{group}_issuer"]
    return cax509.IssuerProfile(ca_name(name), key, crl[0], ocsp[0], issuer[0], not_after=not_after,
                                mirrors=cax509.PKIMirrors(tuple(crl[1:]), tuple(ocsp[1:]), tuple(issuer[1:])))


def generate(directory: Path, nodes: int = 5, threshold: int = 3, *, host: str = "127.0.0.1",
             network: str = "devnet", transport: str = "tcp", ports: list[NodePorts] | None = None,
             checkpoint_interval: int = 16, timeout: str = "2s", synchronous: str = "full",
             dns_listeners: bool = True, node_cert_lifetime: str = "24h",
             api_write_rate: float = 10.0, unsigned_writes: bool = True,
             dns_upstream: tuple[str, ...] = (), limits: dict[str, Any] | None = None,
             acme_http01_port: int | None = None, pki_urls: tuple[str, ...] = (),
             observers: int = 0) -> list[Path]:
    """Write genesis, keys, certificates and one node.toml per validator, then per observer; return the
    node.toml paths (validators first, `node<i>/`, then observers, `observer<i>/`).
    `pki_urls`: the base URLs certificates name for CRLs, OCSP and issuer certificates (the preferred
    first); by default every node's API, in node order (see `pki_bases`).
    `limits`: the genesis resource policy (`trustchain.app.limits`); None keeps the defaults.
    `acme_http01_port`: validators fetch ACME http-01 challenges on this port, from any address (a test
    cluster whose web server listens on loopback)."""
    if nodes < 4:
        raise ValueError("--nodes: PBFT needs at least 4 validators (n = 3f+1)")
    problem = check_signing_threshold(nodes, threshold)
    if problem is not None:
        raise ValueError(f"--threshold: {problem}")
    node_lifetime = dt.timedelta(microseconds=parse_duration_us(node_cert_lifetime))
    directory.mkdir(parents=True, exist_ok=True)
    if observers < 0:
        raise ValueError("--observers: must be >= 0")
    if ports is None:
        flat = free_ports(5 * nodes, host)
        ports = [NodePorts(*flat[5 * i: 5 * i + 5]) for i in range(nodes)]
    flat = free_ports(4 * observers, host) if observers else []
    observer_ports = [NodePorts(*flat[4 * i: 4 * i + 4]) for i in range(observers)]
    now = dt.datetime.now(dt.UTC)
    seeds = [secrets.token_bytes(32) for _ in range(nodes)]
    signers = [Ed25519Signer(s) for s in seeds]
    root_keys, root_public = run_dkg(nodes, threshold, f"trustchain/{network}/root".encode())
    issuing_keys, issuing_public = run_dkg(nodes, threshold, f"trustchain/{network}/issuing".encode())
    urls = causrls.pki_urls(pki_urls or pki_bases(host, ports))
    root_name, issuing_name = "TrustChain Root R1", "TrustChain Issuing E1"
    root_profile = _profile(root_name, root_public.group_public_key, urls, "root")
    root = cax509.issue(cax509.root_tbs(root_profile.name, root_profile.public_key, now),
                        frost_sign(root_keys, root_public, list(range(1, threshold + 1))), root_public.group_public_key)
    inter = cax509.issue(
        cax509.intermediate_tbs(ca_name(issuing_name), issuing_public.group_public_key, root_profile, now, 1),
        frost_sign(root_keys, root_public, list(range(nodes - threshold + 1, nodes + 1))),
        root_public.group_public_key)
    (directory / "root.pem").write_bytes(root.public_bytes(serialization.Encoding.PEM))
    (directory / "intermediate.pem").write_bytes(inter.public_bytes(serialization.Encoding.PEM))
    log_keys = [ec.generate_private_key(ec.SECP256R1()) for _ in range(nodes)]
    ct_logs = [ListedLog(f"TrustChain validator node{i}", f"TrustChain {network} log of node{i}",
                         log_keys[i].public_key().public_bytes(serialization.Encoding.DER,
                                                               serialization.PublicFormat.SubjectPublicKeyInfo),
                         f"https://{host}:{ports[i].https}/", state_since=_rfc3339(now))
               for i in range(nodes) if ports[i].https]
    genesis = {
        "network": network,
        "ca": {"domain": "trustchain.example", "root": public_to_json(root_public, root_name),
               "issuing": public_to_json(issuing_public, issuing_name), "urls": urls, "operators": [],
               "issuing_not_after": inter.not_valid_after_utc.isoformat(),
               "node_domain": canames.NODE_DOMAIN},
        # a development cluster is the registry of these namespaces (first come, first served below them)
        "dns": {"master_seed": secrets.token_bytes(32).hex(), "registry_suffixes": list(DEV_REGISTRY_SUFFIXES)},
        "ct": {"origin": f"trustchain.example/{network}/log",
               "logs": [{"name": f"node{i}", "key": base64.b64encode(log.key).decode(), "url": log.url,
                         "mmd": log.mmd} for i, log in enumerate(ct_logs)]},
        "created": _rfc3339(now),
    }
    if limits is not None:
        genesis["limits"] = limits
    genesis_path = directory / "genesis.json"
    write_private(genesis_path, json.dumps(genesis, indent=2, sort_keys=True).encode())
    # the monitors' view: certspotter -logs takes this file (or any node's https://.../ct/log-list.json)
    (directory / "ct-log-list.json").write_text(json.dumps(log_list(ct_logs, _rfc3339(now)), indent=2) + "\n")
    issuing_profile = _profile(issuing_name, issuing_public.group_public_key, urls, "issuing",
                               inter.not_valid_after_utc)
    validators = "\n".join(
        f'    {{ name = "node{i}", address = "{host}:{ports[i].consensus}", '
        f'public_key = "{signers[i].public_key.hex()}" }},'
        for i in range(nodes))
    observer_list = "\n".join(f'    {{ name = "observer{i}", address = "{host}:{observer_ports[i].consensus}" }},'
                              for i in range(observers))
    observer_lines = f"observers = [\n{observer_list}\n]\n" if observers else ""
    out = []
    for i in range(nodes):
        nd = directory / f"node{i}"
        nd.mkdir(exist_ok=True)
        write_private(nd / "consensus.key", seeds[i].hex().encode() + b"\n")
        write_private(nd / "issuing.share.json", json.dumps(key_package_to_json(issuing_keys[i + 1])).encode())
        write_private(nd / "root.share.json", json.dumps(key_package_to_json(root_keys[i + 1])).encode())
        # a different quorum for each certificate: any T of the N shares sign
        quorum = [(i + k) % nodes + 1 for k in range(threshold)]
        tkey, tcert = node_certificate(frost_sign(issuing_keys, issuing_public, quorum), issuing_profile, i, now,
                                       node_lifetime)
        write_private(nd / "tls.key", pem_key(tkey))
        (nd / "tls.crt").write_bytes(pem_chain(tcert, inter))
        write_private(nd / "ct.key", pem_key(log_keys[i]))
        https_lines = ""
        if ports[i].https:
            akey, acert = node_certificate(frost_sign(issuing_keys, issuing_public, quorum), issuing_profile, i, now,
                                           API_CERT_LIFETIME, ip_addresses=(host,))
            write_private(nd / "api-tls.key", pem_key(akey))
            (nd / "api-tls.crt").write_bytes(pem_chain(acert, inter))
            https_lines = (f'tls_listen = "{host}:{ports[i].https}"\ntls_cert = "api-tls.crt"\n'
                           'tls_key = "api-tls.key"\n')
        dns_lines = (f'listen = "{host}:{ports[i].dns}"\ndoq_listen = "{host}:{ports[i].doq}"\n'
                     if dns_listeners else "")
        toml = f"""# TrustChain validator node{i} (generated by `python -m reference_node cluster`)
[trustchain]
node_id = "node{i}"
network = "{network}"
role = "validator"
key_file = "consensus.key"
genesis = "../genesis.json"

[ca]
root_cert = "../root.pem"
root_key = "root.share.json"
intermediate_cert = "../intermediate.pem"
intermediate_key = "issuing.share.json"
rotation_period = "24h"
node_cert_lifetime = "{node_cert_lifetime}"

[dns]
{dns_lines}upstream = {json.dumps(list(dns_upstream))}
cache_size = "64MB"
ttl_override = false

[consensus]
validators = [
{validators}
]
threshold = {threshold}
timeout = "{timeout}"
listen = "{host}:{ports[i].consensus}"
transport = "{transport}"
tls_cert = "tls.crt"
tls_key = "tls.key"
batch_size = 16
batch_delay = "2ms"
checkpoint_interval = {checkpoint_interval}
{observer_lines}
[storage]
path = "data"
max_size = "1GB"
prune_age = "90d"
synchronous = "{synchronous}"

[api]
listen = "{host}:{ports[i].api}"
write_rate = {api_write_rate!r}
# development cluster: the JSON write endpoints share one account per node (clients should sign their
# own writes through POST /api/v1/write)
unsigned_writes = {str(unsigned_writes).lower()}
{https_lines}
[ct]
log_key = "ct.key"
"""
        if acme_http01_port is not None:
            toml += f"""
[acme]
http01_port = {acme_http01_port}
http01_private_addresses = true
"""
        (nd / "node.toml").write_text(toml)
        out.append(nd / "node.toml")
    common = _Common(network, host, threshold, timeout, checkpoint_interval, synchronous, api_write_rate,
                     unsigned_writes, dns_listeners, validators, observer_lines)
    sign = frost_sign(issuing_keys, issuing_public, list(range(1, threshold + 1)))
    for i in range(observers):
        tkey, tcert = node_certificate(sign, issuing_profile, -1, now, node_lifetime,
                                       name=f"observer-{i}.{canames.NODE_DOMAIN}")
        out.append(_write_observer(directory / f"observer{i}", i, observer_ports[i], common,
                                   pem_key(tkey), pem_chain(tcert, inter)))
    return out


@dataclass(frozen=True)
class _Common:
    """What every node.toml of a generated cluster shares."""

    network: str
    host: str
    threshold: int
    timeout: str
    checkpoint_interval: int
    synchronous: str
    api_write_rate: float
    unsigned_writes: bool
    dns_listeners: bool
    validators: str
    observer_lines: str


def _write_observer(nd: Path, i: int, ports: NodePorts, c: _Common, tls_key: bytes, tls_chain: bytes) -> Path:
    """An observer's directory: its own node key (listed nowhere: it is trusted for nothing), a TLS
    certificate for DoQ, and a node.toml without FROST shares or a CT log key."""
    nd.mkdir(exist_ok=True)
    write_private(nd / "node.key", secrets.token_bytes(32).hex().encode() + b"\n")
    write_private(nd / "tls.key", tls_key)
    (nd / "tls.crt").write_bytes(tls_chain)
    dns_lines = (f'listen = "{c.host}:{ports.dns}"\ndoq_listen = "{c.host}:{ports.doq}"\n' if c.dns_listeners else "")
    toml = f"""# TrustChain observer{i}: a non-voting replica (generated by `python -m reference_node cluster`)
[trustchain]
node_id = "observer{i}"
network = "{c.network}"
role = "observer"
key_file = "node.key"
genesis = "../genesis.json"

[ca]
root_cert = "../root.pem"
intermediate_cert = "../intermediate.pem"

[dns]
{dns_lines}cache_size = "64MB"

[consensus]
validators = [
{c.validators}
]
threshold = {c.threshold}
timeout = "{c.timeout}"
listen = "{c.host}:{ports.consensus}"
transport = "tcp"
tls_cert = "tls.crt"
tls_key = "tls.key"
checkpoint_interval = {c.checkpoint_interval}
{c.observer_lines}
[storage]
path = "data"
max_size = "1GB"
synchronous = "{c.synchronous}"

[api]
listen = "{c.host}:{ports.api}"
write_rate = {c.api_write_rate!r}
unsigned_writes = {str(c.unsigned_writes).lower()}
"""
    (nd / "node.toml").write_text(toml)
    return nd / "node.toml"


def init_cluster(directory: Path, nodes: int, threshold: int, transport: str,
                 pki_urls: tuple[str, ...] = (), observers: int = 0) -> list[Path]:
    """Generate a new cluster in `directory`, refusing one that already holds a cluster: generating over
    it would pair the old data with new keys."""
    if (directory / "genesis.json").exists():
        raise ValueError(f"--dir: {directory} already holds a cluster (genesis.json); start it with "
                         f"`python -m reference_node cluster start --dir {directory}` or choose an empty directory")
    for url in pki_urls:
        if not url.startswith(("http://", "https://")) or "?" in url or "#" in url:
            raise ValueError(f"--pki-url: {url!r} is not an http:// or https:// base URL")
    if observers and transport != "tcp":
        raise ValueError("--observers: observers are fed over --transport tcp in this version")
    return generate(directory, nodes, threshold, transport=transport, pki_urls=pki_urls, observers=observers)


def cluster_configs(directory: Path) -> list[Path]:
    """The node.toml of every node of the cluster in `directory`: validators in node order, then observers."""
    if not (directory / "genesis.json").exists():
        raise ValueError(f"--dir: {directory} holds no cluster (no genesis.json); create one with "
                         f"`python -m reference_node cluster init --dir {directory}`")
    configs = sorted(directory.glob("node*/node.toml"), key=lambda p: int(p.parent.name.removeprefix("node") or 0))
    configs += sorted(directory.glob("observer*/node.toml"),
                      key=lambda p: int(p.parent.name.removeprefix("observer") or 0))
    if not configs:
        raise ValueError(f"--dir: {directory} has a genesis.json but no node*/node.toml")
    return configs


def start_cluster(directory: Path, policy: RestartPolicy | None = None) -> int:
    """Run every node of the cluster in `directory` under a supervisor until SIGTERM or Ctrl-C."""
    import tomllib

    configs = cluster_configs(directory)
    nodes = [ManagedNode(c.parent.name, [sys.executable, "-m", "reference_node", "--config", str(c)],
                         c.parent / "node.log") for c in configs]
    apis = [tomllib.loads(c.read_text())["api"]["listen"] for c in configs]
    watchers = sum(c.parent.name.startswith("observer") for c in configs)
    print(f"{len(configs) - watchers} validators and {watchers} observers started from {directory}:")
    for c, api in zip(configs, apis, strict=True):
        print(f"  {c.parent.name}: API http://{api}/api/v1/status, config {c}, log {c.parent}/node.log")
    print(f"""
Try:
  curl http://{apis[0]}/api/v1/health
  curl -X POST http://{apis[0]}/api/v1/dns/update -H 'content-type: application/json' \\
       -d '{{"create": {{"origin": "example.org.", "primary_ns": "ns1.example.org.",
            "admin": "hostmaster.example.org.", "nameservers": ["ns1.example.org."]}}}}'
  curl 'http://{apis[1]}/api/v1/dns/resolve?domain=example.org&type=SOA'
  curl http://{apis[2]}/api/v1/ct/log
  openssl verify -CAfile {directory}/root.pem -untrusted {directory}/intermediate.pem CERT.pem
A node that crashes is restarted; Ctrl-C or SIGTERM stops all nodes.""", flush=True)
    return Supervisor(nodes, policy or RestartPolicy()).run()


def run_cluster(directory: Path, nodes: int, threshold: int, transport: str, pki_urls: tuple[str, ...] = (),
                observers: int = 0) -> int:
    """`cluster --dir D`: create the cluster if D holds none, then start it."""
    if not (directory / "genesis.json").exists():
        init_cluster(directory, nodes, threshold, transport, pki_urls, observers)
    return start_cluster(directory)
