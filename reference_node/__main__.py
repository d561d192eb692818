"""`python -m reference_node --config node.toml` runs one validator or observer (`trustchain.role`);
`python -m reference_node cluster --nodes 5 --dir DIR` generates and runs a local network."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import dataclasses
import datetime as dt
import functools
import json
import logging
import os
import signal
import ssl
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from aiohttp import web

from reference_node import config as cfgmod
from reference_node import eventloop, log_filters
from reference_node.genesis import GenesisError
from reference_node.listen import bind_socket

if TYPE_CHECKING:
    from reference_node.dns.workers import WorkerPool

log = logging.getLogger("trustchain.node")

# LogRecord attributes that are not caller-supplied fields
_RECORD_KEYS = set(vars(logging.makeLogRecord({}))) | {"message", "asctime", "event", "fields"}


class JSONFormatter(logging.Formatter):
    """One JSON object per line: time (RFC 3339, UTC), level, node, logger, event, message, fields.

    `event` is the `extra={"event": ...}` of the call (a stable name to alert on), else "log"; `fields`
    holds `extra={"fields": {...}}` and any other extra keys; an exception goes into `fields.exception`."""

    def __init__(self, node: str) -> None:
        super().__init__()
        self.node = node

    def format(self, record: logging.LogRecord) -> str:
        fields: dict[str, object] = {}
        extra = getattr(record, "fields", None)
        if isinstance(extra, dict):
            fields.update(extra)
        fields.update((k, v) for k, v in vars(record).items() if k not in _RECORD_KEYS)
        if record.exc_info:
            fields["exception"] = self.formatException(record.exc_info)
        doc = {
            "time": dt.datetime.fromtimestamp(record.created, dt.UTC).isoformat(timespec="milliseconds")
            .replace("+00:00", "Z"),
            "level": record.levelname,
            "node": self.node,
            "logger": record.name,
            "event": str(getattr(record, "event", "log")),
            "message": record.getMessage(),
            "fields": fields,
        }
        return json.dumps(doc, default=str, separators=(",", ":"))


def _reload_doq(dns_server: Any, chain_pem: bytes, key_pem: bytes) -> None:
    """New DoQ connections present the renewed node certificate. aioquic's QuicServer hands its one
    configuration object to every new connection, so updating it in place is enough."""
    from reference_node.transport_quic import Identity

    identity = Identity(chain_pem, key_pem)
    for server in getattr(dns_server, "_quic", []):
        identity.apply(server._configuration)


async def _start_https(cfg: cfgmod.NodeConfig, node: Any, factory: Any) -> asyncio.Server | None:
    """The API over TLS at `api.tls_listen` (CT log lists and monitors fetch over https). When it serves
    the node certificate, a renewal reloads it in place: new connections present the new one."""
    a = cfg.api
    if a.tls_listen is None or a.tls_cert is None or a.tls_key is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    current = node.certificates.paths()
    if a.tls_cert == cfg.consensus.tls_cert and current is not None:  # the node certificate, renewed in place
        context.load_cert_chain(str(current[0]), str(current[1]))

        def reload(_chain: bytes, _key: bytes) -> None:
            renewed = node.certificates.paths()
            if renewed is not None:
                context.load_cert_chain(str(renewed[0]), str(renewed[1]))

        node.certificates.listeners.append(reload)
    else:
        context.load_cert_chain(str(a.tls_cert), str(a.tls_key))
    return await asyncio.get_running_loop().create_server(factory, sock=bind_socket("api.tls_listen", *a.tls_listen),
                                                          ssl=context)


def configure_logging(level: str, fmt: str, node: str) -> None:
    handler = logging.StreamHandler()
    if fmt == "json":
        handler.setFormatter(JSONFormatter(node))
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
    logging.basicConfig(level=level.upper(), handlers=[handler], force=True)
    log_filters.install()  # a client's malformed HTTP: one INFO line, not an ERROR traceback


async def serve(cfg: cfgmod.NodeConfig) -> None:
    from reference_node.http_api import API
    from reference_node.http_guard import GuardLimits
    from reference_node.runtime import build_node

    node = build_node(cfg)
    await node.start()
    root = cfg.ca.root_cert.read_bytes() if cfg.ca.root_cert else b""
    inter = cfg.ca.intermediate_cert.read_bytes() if cfg.ca.intermediate_cert else b""
    a = cfg.api
    api = API(node, root, inter, GuardLimits(
        read_rate=a.read_rate, read_burst=2 * a.read_rate, write_rate=a.write_rate, write_burst=2 * a.write_rate,
        global_write_rate=a.global_write_rate, global_write_burst=2 * a.global_write_rate,
        registration_rate=a.registrations_per_hour / 3600, registration_burst=a.registrations_per_hour,
        max_connections_per_ip=a.max_connections_per_ip, header_timeout_s=a.header_timeout_us / 1e6))
    runner = web.AppRunner(api.app, access_log=None)
    await runner.setup()
    assert runner.server is not None
    api_server = await asyncio.get_running_loop().create_server(
        api.guard.factory(runner.server), sock=bind_socket("api.listen", *cfg.api.listen))
    https_server = await _start_https(cfg, node, api.guard.factory(runner.server))
    dns_server = None
    dns_pool: WorkerPool | None = None
    if cfg.dns.listen is not None or cfg.dns.doq_listen is not None:
        try:
            from reference_node.dns.server import EDNS_UDP, DNSServer, Transport, authority_handler, cookie_exemption
            from reference_node.dns.tsig import Keyring, keyring_path
            from reference_node.dns.update import DynamicUpdates
            from reference_node.dns.workers import TableDriver, WorkerPool
            from reference_node.dns.xfr import ZoneTransfers, is_transfer
            from trustchain.dns.edns_options import ServerIdentity
            from trustchain.dns.ratelimit import ResponseRateLimiter

            node.app.dns.set_identity(ServerIdentity(nsid=cfg.dns.nsid.encode(), cookie_secret=os.urandom(32)))
            answer = authority_handler(node.app.dns)
            keyring = Keyring(keyring_path(cfg.storage.path))
            updates = DynamicUpdates(node, keyring)
            transfers = ZoneTransfers(lambda: node.app.dns, keyring)

            def handle(wire: bytes, client: str, transport: Transport) -> bytes:
                node.metrics.dns_queries.inc(transport=transport)
                response = answer(wire, client, transport)
                if len(response) > 3 and response[3] & 0x0F == 1 and wire[10:12] != b"\0\0":  # FORMERR: TSIG?
                    plain = updates.strip_tsig(wire)
                    signed = None if plain is None else updates.signed_query(
                        wire, answer(plain, client, transport), EDNS_UDP if transport == "udp" else 65535)
                    return signed or response
                return response

            def count_fast(n: int) -> None:
                node.metrics.dns_queries.inc(n, transport="udp")

            rrl = ResponseRateLimiter(cfg.dns.rrl_rate, slip=cfg.dns.rrl_slip) if cfg.dns.rrl_rate > 0 else None
            dns_server = DNSServer(handle, update_handler=updates.handle, transfer_handler=transfers.handle,
                                   is_transfer=is_transfer, rrl=rrl, rrl_exempt=cookie_exemption(node.app.dns),
                                   count_fast=count_fast)
            transfers.start()
            if cfg.dns.listen is not None:
                udp, _ = await dns_server.start_udp_tcp(*cfg.dns.listen, reuse_port=cfg.dns.workers > 1)
                if cfg.dns.workers > 1:
                    dns_pool = WorkerPool(cfg.dns.workers - 1, udp[0], udp[1], lambda: node.app.dns.authority.table,
                                          dns_server.answer_forwarded, on_answered=count_fast)
                    await dns_pool.start()
            driver = TableDriver(lambda: node.app.dns.authority, dns_pool, dns_server)
            node.app.dns.zone_listeners.append(driver.changed)
            driver.changed()  # the zones loaded before the listener started
            node_tls = node.certificates.paths()  # the newest node certificate (renewed ones in the data directory)
            if cfg.dns.doq_listen is not None and node_tls is not None:
                await dns_server.start_doq(cfg.dns.doq_listen[0], cfg.dns.doq_listen[1], str(node_tls[0]),
                                           str(node_tls[1]))
                node.certificates.listeners.append(functools.partial(_reload_doq, dns_server))
        except Exception as exc:  # DNS listeners are optional for a validator: report and go on
            log.error("DNS listeners not started: %s", exc, extra={"event": "dns_listeners_failed"})
    api_url = f"http://{cfg.api.listen[0]}:{cfg.api.listen[1]}"
    loop_name = eventloop.loop_name()
    if cfg.trustchain.log_format == "json":
        log.info("node ready", extra={"event": "ready", "fields": {"api": api_url, "event_loop": loop_name}})
    else:
        print(f"node {cfg.trustchain.node_id} ready: API {api_url} ({loop_name})", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    log.info("stopping", extra={"event": "stopping"})
    if dns_pool is not None:
        with contextlib.suppress(Exception):
            await dns_pool.close()
    if dns_server is not None:
        with contextlib.suppress(Exception):
            await transfers.close()
        with contextlib.suppress(Exception):
            await dns_server.close()
    api_server.close()
    if https_server is not None:
        https_server.close()
    await runner.cleanup()
    await node.stop()


def cluster_main(argv: list[str]) -> int:
    """`cluster init` creates a local cluster, `cluster start` supervises it, `cluster` does both
    (creating only when the directory holds none)."""
    from reference_node.cluster import init_cluster, run_cluster, start_cluster

    action = argv[0] if argv and argv[0] in ("init", "start") else "run"
    p = argparse.ArgumentParser(prog="python -m reference_node cluster" + ("" if action == "run" else f" {action}"))
    p.add_argument("--dir", required=True, help="the cluster directory (genesis.json and one node<i>/ per node)")
    if action != "start":
        p.add_argument("--nodes", type=int, default=5)
        p.add_argument("--observers", type=int, default=0,
                       help="non-voting replicas serving reads (observer<i>/, fed by the validators)")
        p.add_argument("--threshold", type=int, default=3)
        p.add_argument("--transport", choices=cfgmod.TRANSPORTS, default="tcp")
        p.add_argument("--pki-url", action="append", default=[], metavar="URL",
                       help="base URL certificates name for CRLs, OCSP and issuer certificates (repeatable, the "
                       "preferred first; default: every node's API)")
    a = p.parse_args(argv[1:] if action != "run" else argv)
    try:
        if action == "init":
            init_cluster(Path(a.dir), a.nodes, a.threshold, a.transport, tuple(a.pki_url), a.observers)
            print(f"{a.nodes} validators and {a.observers} observers created in {a.dir}; start them with "
                  f"`python -m reference_node cluster start --dir {a.dir}`")
            return 0
        if action == "start":
            return start_cluster(Path(a.dir))
        return run_cluster(Path(a.dir), a.nodes, a.threshold, a.transport, tuple(a.pki_url), a.observers)
    except ValueError as exc:
        print(f"reference_node: error: {exc}", file=sys.stderr)
        return 2


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "cluster":
        return cluster_main(argv[1:])
    p = argparse.ArgumentParser(prog="python -m reference_node", description="run one TrustChain validator")
    p.add_argument("--config", required=True, help="node.toml")
    p.add_argument("--log-level", default="INFO")
    p.add_argument("--log-format", choices=cfgmod.LOG_FORMATS, default=None,
                   help="text or json (one object per line); overrides trustchain.log_format")
    a = p.parse_args(argv)
    configure_logging(a.log_level, a.log_format or "text", "-")
    try:
        cfg = cfgmod.load(a.config)
    except cfgmod.ConfigError as exc:
        print(f"reference_node: config error: {exc}", file=sys.stderr)
        return 2
    if a.log_format is not None:
        cfg = dataclasses.replace(cfg, trustchain=dataclasses.replace(cfg.trustchain, log_format=a.log_format))
    configure_logging(a.log_level, cfg.trustchain.log_format, cfg.trustchain.node_id)
    try:
        eventloop.run(serve(cfg))
    except (GenesisError, ValueError) as exc:
        print(f"reference_node: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
