"""`python -m reference_node --config node.toml` runs one validator;
`python -m reference_node cluster --nodes 5 --dir DIR` generates and runs a local network."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import logging
import signal
import sys
import time
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from reference_node import config as cfgmod
from reference_node.genesis import GenesisError


async def serve(cfg: cfgmod.NodeConfig) -> None:
    from reference_node.http_api import API
    from reference_node.runtime import build_node

    node = build_node(cfg)
    await node.start()
    root = cfg.ca.root_cert.read_bytes() if cfg.ca.root_cert else b""
    inter = cfg.ca.intermediate_cert.read_bytes() if cfg.ca.intermediate_cert else b""
    api = API(node, root, inter)
    runner = web.AppRunner(api.app, access_log=None)
    await runner.setup()
    site = web.TCPSite(runner, cfg.api.listen[0], cfg.api.listen[1])
    await site.start()
    dns_server = None
    if cfg.dns.listen is not None or cfg.dns.doq_listen is not None:
        try:
            from reference_node.dns.server import DNSServer, Transport

            def handle(wire: bytes, client: str, transport: Transport) -> bytes:
                node.m_dns_queries.inc(transport=transport)
                return node.app.dns.answer(wire, int(time.time()), max_udp=1232 if transport == "udp" else None)

            dns_server = DNSServer(handle)
            if cfg.dns.listen is not None:
                await dns_server.start_udp(*cfg.dns.listen)
                await dns_server.start_tcp(*cfg.dns.listen)
            if cfg.dns.doq_listen is not None and cfg.consensus.tls_cert and cfg.consensus.tls_key:
                await dns_server.start_doq(cfg.dns.doq_listen[0], cfg.dns.doq_listen[1], str(cfg.consensus.tls_cert),
                                           str(cfg.consensus.tls_key))
        except Exception as exc:  # DNS listeners are optional for a validator: report and go on
            logging.getLogger("trustchain.node").error("DNS listeners not started: %s", exc)
    print(f"node {cfg.trustchain.node_id} ready: API http://{cfg.api.listen[0]}:{cfg.api.listen[1]}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()
    if dns_server is not None:
        with contextlib.suppress(Exception):
            await dns_server.close()
    await runner.cleanup()
    await node.stop()


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] == "cluster":
        p = argparse.ArgumentParser(prog="python -m reference_node cluster")
        p.add_argument("--nodes", type=int, default=5)
        p.add_argument("--threshold", type=int, default=3)
        p.add_argument("--dir", required=True)
        p.add_argument("--transport", choices=cfgmod.TRANSPORTS, default="tcp")
        a = p.parse_args(argv[1:])
        from reference_node.cluster import run_cluster

        try:
            return run_cluster(Path(a.dir), a.nodes, a.threshold, a.transport)
        except ValueError as exc:
            print(f"reference_node: error: {exc}", file=sys.stderr)
            return 2
    p = argparse.ArgumentParser(prog="python -m reference_node", description="run one TrustChain validator")
    p.add_argument("--config", required=True, help="node.toml")
    p.add_argument("--log-level", default="INFO")
    a = p.parse_args(argv)
    logging.basicConfig(level=a.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    try:
        cfg = cfgmod.load(a.config)
    except cfgmod.ConfigError as exc:
        print(f"reference_node: config error: {exc}", file=sys.stderr)
        return 2
    try:
        asyncio.run(serve(cfg))
    except (GenesisError, ValueError) as exc:
        print(f"reference_node: error: {exc}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
