"""`trustchain-cli dns`: sign a zone file, serve it (UDP/TCP/DoQ), resolve a name with optional
DNSSEC validation. All DNS logic is in trustchain.dns; this module reads files and runs the loop."""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import signal
import ssl
import sys
import time
from pathlib import Path

import dns.exception
import dns.message
import dns.name
import dns.rcode
import dns.rdatatype
import dns.rrset
import dns.zone
from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node import eventloop
from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_OK, CLIError, dns_tsig
from reference_node.dns.client import drive, random_id
from reference_node.dns.server import DNSServer, authority_handler, cookie_exemption
from reference_node.dns.workers import MAX_WORKERS, TableDriver, WorkerPool
from reference_node.listen import ListenError
from trustchain.dns.authority import Authority
from trustchain.dns.denial import NSEC3Params
from trustchain.dns.dnssec import SignedZone, SigningPolicy, sign_zone
from trustchain.dns.edns_options import ServerIdentity
from trustchain.dns.keys import KeySet
from trustchain.dns.ratelimit import ResponseRateLimiter
from trustchain.dns.resolver import Resolver, Source, Upstream
from trustchain.dns.validator import Validator
from trustchain.dns.zone import SNAPSHOT_MAGIC, Zone, ZoneUpdateError
from trustchain.dns.zonefile import NO_ORIGIN, ZoneFileError, check_zone_text

RESIGN_CHECK_S = 60


def register(subparsers: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    parser = subparsers.add_parser("dns", help="DNSSEC zones: sign, serve, resolve; a node's TSIG keys",
                                   description="Sign a zone, serve it over UDP/TCP/DoQ, resolve names.")
    sub = parser.add_subparsers(dest="dns_command", required=True, metavar="COMMAND")

    sign = sub.add_parser("sign", help="sign a zone file; writes the signed zone and its DS record",
                          description="Sign ZONEFILE with Ed25519 (algorithm 15). Key seeds are read from "
                          "--ksk-seed/--zsk-seed files, or from KEY_DIR (generated there if absent).")
    _zone_args(sign)
    sign.add_argument("--out", type=Path, help="signed zone output (default: ZONEFILE.signed)")
    sign.add_argument("--ds-out", type=Path, help="DS record output (default: dsset-ORIGIN next to ZONEFILE)")
    sign.add_argument("--now", type=int, help="signing time, seconds since the epoch (default: now)")
    sign.set_defaults(func=cmd_sign)

    serve = sub.add_parser("serve", help="serve a zone, signed, as a standalone authoritative server",
                           description="Serve ZONEFILE signed over UDP and TCP on --listen, and over "
                           "DNS-over-QUIC (RFC 9250) on --doq. Runs until interrupted.")
    serve.add_argument("--zone", required=True, type=Path, metavar="ZONEFILE", help="unsigned zone file")
    _zone_args(serve, positional=False)
    serve.add_argument("--listen", default="127.0.0.1:53", metavar="HOST:PORT",
                       help="UDP and TCP address (default 127.0.0.1:53; port 0 picks one)")
    serve.add_argument("--doq", metavar="HOST:PORT", help="also serve DNS over QUIC here (port 853 is usual)")
    serve.add_argument("--tls-cert", type=Path, help="certificate (PEM) for --doq")
    serve.add_argument("--tls-key", type=Path, help="private key (PEM) for --doq")
    serve.add_argument("--rrl-rate", type=float, default=0.0,
                       help="response rate limit per client /24 (v4) or /56 (v6), per second; 0: off. "
                       "Queries with a valid DNS cookie from this server are exempt")
    serve.add_argument("--rrl-slip", type=int, default=2, help="every N-th limited response is truncated")
    serve.add_argument("--workers", type=int, default=1, metavar="N",
                       help="processes answering UDP on the same port (SO_REUSEPORT), one per core (default 1)")
    serve.add_argument("--duration", type=float, help=argparse.SUPPRESS)  # tests: stop after N seconds
    serve.set_defaults(func=cmd_serve)

    resolve = sub.add_parser("resolve", help="resolve NAME [TYPE] through a server",
                             description="Resolve NAME through --server (default: the first nameserver "
                             "in /etc/resolv.conf), optionally validating DNSSEC against a trust anchor.")
    resolve.add_argument("name", metavar="NAME")
    resolve.add_argument("type", nargs="?", default="A", metavar="TYPE", help="record type (default A)")
    resolve.add_argument("--server", metavar="HOST:PORT", help="upstream resolver or authoritative server")
    resolve.add_argument("--authoritative", action="store_true",
                         help="the server is authoritative (not recursive): send RD=0 and minimise QNAMEs")
    resolve.add_argument("--validate", action="store_true", help="validate DNSSEC (needs --trust-anchor)")
    resolve.add_argument("--trust-anchor", type=Path, metavar="FILE",
                         help="DS or DNSKEY records in zone-file format (e.g. the dsset file from `sign`)")
    resolve.add_argument("--timeout", type=float, default=2.0, help="per-query timeout in seconds")
    resolve.set_defaults(func=cmd_resolve)

    dns_tsig.register(sub)


def _zone_args(parser: argparse.ArgumentParser, positional: bool = True) -> None:
    if positional:
        parser.add_argument("zonefile", type=Path, metavar="ZONEFILE", help="unsigned zone file")
    parser.add_argument("--origin", help="zone origin (default: $ORIGIN in the file)")
    parser.add_argument("--key-dir", type=Path, help="directory of key seeds (default: keys/ beside ZONEFILE)")
    parser.add_argument("--ksk-seed", type=Path, help="file holding the KSK seed (64 hex digits)")
    parser.add_argument("--zsk-seed", type=Path, help="file holding the ZSK seed (64 hex digits)")
    parser.add_argument("--nsec3", action="store_true", help="NSEC3 (RFC 9276 parameters) instead of NSEC")


# --- sign -----------------------------------------------------------------------------------------


def cmd_sign(args: argparse.Namespace) -> int:
    now = args.now if args.now is not None else int(time.time())
    policy = SigningPolicy()
    earliest, latest = policy.skew + policy.refresh, 2**32 - 1 - policy.validity - policy.refresh
    if not earliest <= now <= latest:  # RRSIG inception and expiration are unsigned 32-bit seconds
        raise CLIError(f"--now: {now} is outside the times a signature can carry ({earliest}..{latest} seconds "
                       "since the epoch)")
    zone = load_zone(args.zonefile, args.origin)
    keys = load_keys(args, args.zonefile, zone.origin)
    signed = _sign(zone, keys, now, args.nsec3)
    out = args.out or args.zonefile.with_name(args.zonefile.name + ".signed")
    ds_out = args.ds_out or args.zonefile.with_name(f"dsset-{zone.origin.to_text()}")
    out.write_text(signed.to_text())
    ds_text = signed.ds().to_text() + "\n"
    ds_out.write_text(ds_text)
    print(f"signed {zone.origin} serial {zone.serial}: {len(signed.sigs)} RRsets -> {out}")
    print(f"DS -> {ds_out}")
    sys.stdout.write(ds_text)
    return EXIT_OK


def _sign(zone: Zone, keys: KeySet, now: int, nsec3: bool) -> SignedZone:
    return sign_zone(zone, keys, now, SigningPolicy(nsec3=NSEC3Params() if nsec3 else None))


def load_zone(path: Path, origin: str | None) -> Zone:
    """Read a master file into our validated Zone model; errors name the file and the problem, and what
    named-checkzone refuses is refused too (`check_zone_text`)."""
    try:
        text = path.read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise CLIError(f"{path}: not a zone file: not UTF-8 text (byte {exc.start})") from None
    if not text.strip():
        raise CLIError(f"{path}: not a zone file: it is empty")
    try:
        org = dns.name.from_text(origin) if origin else None
        check_zone_text(text, org)
        parsed = dns.zone.from_text(text, origin=org, relativize=False, check_origin=True)
    except ZoneFileError as exc:
        raise CLIError(f"{path}: {exc}" + (" (--origin)" if str(exc) == NO_ORIGIN else "")) from None
    except (dns.exception.DNSException, ValueError) as exc:
        raise CLIError(f"{path}: not a valid zone file: {exc}") from exc
    if parsed.origin is None:
        raise CLIError(f"{path}: no $ORIGIN in the file: give --origin")
    lines = [SNAPSHOT_MAGIC, f"$ORIGIN {parsed.origin.to_text()}"]
    for name, rdataset in parsed.iterate_rdatasets():
        for rdata in rdataset:
            lines.append(f"{name} {rdataset.ttl} IN {dns.rdatatype.to_text(rdataset.rdtype)} "
                         f"{rdata.to_text(origin=None, relativize=False)}")
    try:
        return Zone.restore(("\n".join(lines) + "\n").encode("ascii"))
    except ZoneUpdateError as exc:
        raise CLIError(f"{path}: {exc}") from exc


def load_keys(args: argparse.Namespace, zonefile: Path, origin: dns.name.Name) -> KeySet:
    if bool(args.ksk_seed) != bool(args.zsk_seed):
        raise CLIError("--ksk-seed and --zsk-seed must be given together")
    if args.ksk_seed:
        return KeySet.initial(_read_seed(args.ksk_seed), _read_seed(args.zsk_seed))
    key_dir: Path = args.key_dir or zonefile.parent / "keys"
    key_dir.mkdir(parents=True, exist_ok=True)
    seeds = []
    for role in ("ksk", "zsk"):
        path = key_dir / f"{origin.to_text()}{role}.seed"
        if not path.exists():
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "w") as fh:
                fh.write(os.urandom(32).hex() + "\n")
            print(f"generated {role.upper()} seed {path}", file=sys.stderr)
        seeds.append(_read_seed(path))
    return KeySet.initial(seeds[0], seeds[1])


def _read_seed(path: Path) -> bytes:
    text = path.read_text().strip()
    try:
        seed = bytes.fromhex(text)
    except ValueError:
        seed = b""
    if len(seed) != 32:
        raise CLIError(f"{path}: key seed must be 64 hex digits (32 bytes)")
    return seed


# --- serve ----------------------------------------------------------------------------------------


def parse_hostport(text: str, option: str, default_port: int = 53) -> tuple[str, int]:
    host, sep, port_text = text.rpartition(":")
    if not sep:
        host, port_text = text, str(default_port)
    host = host.strip("[]")
    try:
        port = int(port_text)
    except ValueError:
        raise CLIError(f"{option}: {text!r} is not HOST:PORT") from None
    if not host or not 0 <= port <= 65535:
        raise CLIError(f"{option}: {text!r} is not HOST:PORT with a port in 0..65535")
    return host, port


def cmd_serve(args: argparse.Namespace) -> int:
    host, port = parse_hostport(args.listen, "--listen")
    doq = parse_hostport(args.doq, "--doq", 853) if args.doq else None
    if doq and not (args.tls_cert and args.tls_key):
        raise CLIError("--doq needs --tls-cert and --tls-key")
    for opt, path in (("--tls-cert", args.tls_cert), ("--tls-key", args.tls_key)):
        if doq and not path.is_file():
            raise CLIError(f"{opt}: {path}: no such file")
    if doq:
        check_tls_pair(args.tls_cert, args.tls_key)
    if not 1 <= args.workers <= MAX_WORKERS:
        raise CLIError(f"--workers: must be 1..{MAX_WORKERS}")
    zone = load_zone(args.zone, args.origin)
    keys = load_keys(args, args.zone, zone.origin)
    return eventloop.run(_serve(args, zone, keys, (host, port), doq))


async def _serve(args: argparse.Namespace, zone: Zone, keys: KeySet, listen: tuple[str, int],
                 doq: tuple[str, int] | None) -> int:
    authority = Authority(identity=ServerIdentity(cookie_secret=os.urandom(32)))  # DNS cookies (RFC 7873)
    signed = _sign(zone, keys, int(time.time()), args.nsec3)
    authority.load(zone, signed)
    authority.precompute()
    rrl = ResponseRateLimiter(args.rrl_rate, slip=args.rrl_slip) if args.rrl_rate > 0 else None
    server = DNSServer(authority_handler(authority), rrl=rrl, rrl_exempt=cookie_exemption(authority),
                       fast=authority.table.lookup if authority.table is not None else None)
    pool: WorkerPool | None = None
    try:
        udp, tcp = await server.start_udp_tcp(*listen, reuse_port=args.workers > 1)
        if args.workers > 1:
            pool = WorkerPool(args.workers - 1, udp[0], udp[1], lambda: authority.table, server.answer_forwarded)
            await pool.start()
        authority.on_change.append(TableDriver(lambda: authority, pool, server).changed)
        where = [f"udp {udp[0]}:{udp[1]}", f"tcp {tcp[0]}:{tcp[1]}"]
        if doq:
            quic = await server.start_doq(doq[0], doq[1], str(args.tls_cert), str(args.tls_key))
            where.append(f"doq {quic[0]}:{quic[1]}")
    except ListenError as exc:
        await _close(server, pool)
        raise CLIError(str(exc).replace("dns.listen", "--listen", 1), EXIT_IO) from None
    except (OSError, TimeoutError) as exc:
        await _close(server, pool)
        raise CLIError(f"cannot listen: {getattr(exc, 'strerror', None) or exc}", EXIT_IO) from exc
    procs = f", {args.workers} processes" if args.workers > 1 else ""
    print(f"serving {zone.origin} serial {zone.serial} on " + ", ".join(where) + f" ({eventloop.loop_name()}{procs})",
          flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError, ValueError):  # ValueError: uvloop, not main thread
            loop.add_signal_handler(sig, stop.set)
    deadline = time.monotonic() + args.duration if args.duration else None
    try:
        while not stop.is_set():
            wait = RESIGN_CHECK_S if deadline is None else max(0.0, min(RESIGN_CHECK_S, deadline - time.monotonic()))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), wait)
            if deadline is not None and time.monotonic() >= deadline:
                break
            now = int(time.time())
            if signed.needs_resign(now):  # keep signatures fresh while running for weeks
                signed = sign_zone(zone, keys, now, signed.policy, previous=signed)
                authority.load(zone, signed)
    finally:
        await _close(server, pool)
    c = server.counters
    print(f"stopped: {c.udp_queries} udp, {c.tcp_queries} tcp, {c.doq_queries} doq queries; "
          f"{c.malformed} malformed, {c.oversize} oversize, {c.rrl_dropped} rate-limited", flush=True)
    return EXIT_OK


async def _close(server: DNSServer, pool: WorkerPool | None) -> None:
    if pool is not None:
        await pool.close()
    await server.close()


def check_tls_pair(cert: Path, key: Path) -> None:
    """A certificate chain and its private key, both PEM, that belong together (CLIError names which not)."""
    try:
        x509.load_pem_x509_certificates(cert.read_bytes())
    except ValueError:
        raise CLIError(f"--tls-cert: {cert}: not a PEM certificate") from None
    try:
        serialization.load_pem_private_key(key.read_bytes(), password=None)
    except (ValueError, TypeError):
        raise CLIError(f"--tls-key: {key}: not an unencrypted PEM private key") from None
    try:
        ssl.create_default_context(ssl.Purpose.CLIENT_AUTH).load_cert_chain(str(cert), str(key))
    except ssl.SSLError:
        raise CLIError(f"--tls-key: {key}: does not match the certificate in --tls-cert") from None


# --- resolve --------------------------------------------------------------------------------------


def default_server() -> str:
    try:
        for line in Path("/etc/resolv.conf").read_text().splitlines():
            parts = line.split()
            if len(parts) >= 2 and parts[0] == "nameserver":
                return parts[1]
    except OSError:
        pass
    raise CLIError("--server: not given and no nameserver in /etc/resolv.conf")


def load_anchor(path: Path) -> dns.rrset.RRset:
    """DS or DNSKEY records in zone-file format, one per line, all for one owner name."""
    anchor: dns.rrset.RRset | None = None
    for number, line in enumerate(path.read_text().splitlines(), 1):
        line = line.split(";", 1)[0].strip()
        if not line:
            continue
        try:
            rrset = dns.rrset.from_text_list(*_split_rr(line))
        except (dns.exception.DNSException, ValueError) as exc:
            raise CLIError(f"{path}:{number}: not a DS or DNSKEY record: {exc}") from exc
        if rrset.rdtype not in (dns.rdatatype.DS, dns.rdatatype.DNSKEY):
            raise CLIError(f"{path}:{number}: trust anchors must be DS or DNSKEY records")
        if anchor is None:
            anchor = rrset
        elif anchor.name != rrset.name or anchor.rdtype != rrset.rdtype:
            raise CLIError(f"{path}:{number}: all anchors must share one owner name and type")
        else:
            anchor.union_update(rrset)  # type: ignore[no-untyped-call]  # untyped in dnspython
    if anchor is None:
        raise CLIError(f"{path}: no trust anchor records")
    return anchor


def _split_rr(line: str) -> tuple[str, int, str, str, list[str]]:
    tokens = line.split()
    for i, token in enumerate(tokens):
        if token.upper() in ("DS", "DNSKEY") and i >= 1:
            head = tokens[1:i]
            ttl = next((int(t) for t in head if t.isdigit()), 3600)
            return tokens[0], ttl, "IN", token.upper(), [" ".join(tokens[i + 1 :])]
    raise ValueError("no DS or DNSKEY type field")


def cmd_resolve(args: argparse.Namespace) -> int:
    try:
        qname = dns.name.from_text(args.name)
        qtype = dns.rdatatype.from_text(args.type)
    except dns.exception.DNSException as exc:
        raise CLIError(f"NAME/TYPE: {exc}") from exc
    if args.validate and not args.trust_anchor:
        raise CLIError("--validate needs --trust-anchor FILE")
    validator = Validator(load_anchor(args.trust_anchor)) if args.validate else None
    host, port = parse_hostport(args.server or default_server(), "--server")
    upstream = Upstream(host, port, recursive=not args.authoritative,
                        zone=validator.anchor.name.to_text() if validator and args.authoritative else ".")
    resolver = Resolver(next_id=random_id, upstreams=(upstream,), validator=validator, timeout=args.timeout)
    resolved = asyncio.run(drive(resolver.resolve(qname, qtype, time.time())))
    print(resolved.response.to_text())
    if validator is not None:
        v = resolved.validation
        print(";; validation: " + ("secure" if v and v.secure else f"BOGUS ({v.detail if v else 'not validated'})"))
    if resolved.source is Source.FAILURE:
        if resolved.validation is not None or not resolver.stats.timeouts:
            return EXIT_NEGATIVE  # bogus, or the server answered with an error rcode
        print(f"trustchain-cli: error: no answer from {host}:{port}: " + "; ".join(resolved.trace), file=sys.stderr)
        return EXIT_IO
    rcode = resolved.response.rcode()
    return EXIT_OK if rcode == dns.rcode.NOERROR and resolved.response.answer else EXIT_NEGATIVE
