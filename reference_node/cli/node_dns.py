"""`trustchain-cli node dns ...`: resolve names from the network's replicated zones, and create zones
and change records (writes: signed by the account with --account-key, see `node_writes`)."""

from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization

from reference_node.cli import EXIT_NEGATIVE, EXIT_OK, CLIError
from reference_node.cli.node_http import client_from_args, emit, positive_int
from reference_node.cli.node_writes import writer_from_args

__all__ = ["cmd_dns_keys", "cmd_dns_resolve", "cmd_dns_tlsa", "cmd_dns_update", "register_dns_commands", "tlsa_record"]
DAY_S = 86400


def cmd_dns_resolve(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    res = client.get("/api/v1/dns/resolve", {"domain": args.name, "type": args.type,
                                             "dnssec": "1" if args.dnssec or args.validate else "0"})
    out: dict[str, Any] = dict(res)
    lines = [f"{res['domain']} {res['type']}: {res['rcode']}" + (" (authoritative)" if res["authoritative"] else "")]
    lines += [f"  {rr}" for rr in res["answer"]]
    if not res["answer"] and res["authority"]:
        lines += ["  authority:"] + [f"    {rr}" for rr in res["authority"]]
    ok = res["rcode"] == "NOERROR" and bool(res["answer"])
    if args.validate:
        v = client.get("/api/v1/dns/dnssec/validate", {"domain": args.name, "type": args.type})
        out["dnssec"] = v
        lines.append(f"  DNSSEC: {'secure' if v['secure'] else 'NOT secure'}: {v['detail']} (zone {v['zone']})")
        ok = ok and bool(v["secure"])
    emit(args, out, "\n".join(lines))
    return EXIT_OK if ok else EXIT_NEGATIVE


class _OpAction(argparse.Action):
    """Collects --add/--replace/--delete/--delete-name in command-line order."""

    def __call__(self, parser: argparse.ArgumentParser, namespace: argparse.Namespace, values: Any,
                 option_string: str | None = None) -> None:
        ops = list(getattr(namespace, "ops", None) or [])
        ops.append((self.const, values))
        namespace.ops = ops


def _parse_record(text: str, default_ttl: int, flag: str) -> tuple[str, int, str, str]:
    """`NAME [TTL] TYPE DATA...` (zone-file order; NAME relative to the zone or absolute)."""
    parts = text.split(None, 3)
    if len(parts) >= 3 and parts[1].isdigit():
        if len(parts) < 4:
            raise CLIError(f"{flag}: {text!r}: expected 'NAME [TTL] TYPE DATA'")
        return parts[0], int(parts[1]), parts[2].upper(), parts[3]
    parts = text.split(None, 2)
    if len(parts) < 3:
        raise CLIError(f"{flag}: {text!r}: expected 'NAME [TTL] TYPE DATA'")
    return parts[0], default_ttl, parts[1].upper(), parts[2]


def _build_ops(raw: list[tuple[str, str]], default_ttl: int) -> list[dict[str, Any]]:
    ops: list[dict[str, Any]] = []
    for kind, text in raw:
        flag = "--" + kind.replace("_", "-")
        if kind in ("add", "replace"):
            name, ttl, rtype, data = _parse_record(text, default_ttl, flag)
            last = ops[-1] if ops else None
            if (last is not None and last["op"] == kind and (last["name"], last["type"], last["ttl"])
                    == (name, rtype, ttl)):
                last["values"].append(data)  # several values of one RRset
            else:
                ops.append({"op": kind, "name": name, "type": rtype, "ttl": ttl, "values": [data]})
        elif kind == "delete_rrset":
            parts = text.split()
            if len(parts) != 2:
                raise CLIError(f"--delete: {text!r}: expected 'NAME TYPE'")
            ops.append({"op": kind, "name": parts[0], "type": parts[1].upper()})
        else:
            ops.append({"op": kind, "name": text})
    return ops


def _dns_line(res: dict[str, Any], operations: int | None = None) -> str:
    """One line from a DNS result's typed fields (rejections are HTTP errors and never get here)."""
    verb = {"create": "created", "update": "updated", "keys": "keys changed"}.get(res.get("op", ""),
                                                                                   str(res.get("op", "")))
    if res.get("status") == "unchanged":
        verb = "unchanged"
    count = "" if operations is None else f"{operations} operation{'s' if operations != 1 else ''}: "
    return f"{res.get('origin', '')}: {count}{verb} at serial {res.get('serial', 0)}"


def cmd_dns_update(args: argparse.Namespace) -> int:
    writer = writer_from_args(args)
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    if args.file:
        try:
            body = json.loads(args.file.read_text())
        except ValueError as exc:
            raise CLIError(f"--file: {args.file} is not valid JSON ({exc})") from None
        if not isinstance(body, dict) or not ({"create", "update", "keys"} & body.keys()):
            raise CLIError(f'--file: {args.file}: expected {{"create": {{...}}}}, {{"update": {{"origin", "ops"}}}} '
                           'or {"keys": {...}}')
        res = writer.dns(body)
        emit(args, res, _dns_line(res))
        return EXIT_OK
    if not args.zone:
        raise CLIError("ZONE: required (or --file)")
    zone = args.zone if args.zone.endswith(".") else args.zone + "."
    ops = _build_ops(getattr(args, "ops", None) or [], args.ttl)
    if not args.create and not ops:
        raise CLIError("nothing to do: give --create and/or --add/--replace/--delete/--delete-name")
    if args.create:
        primary = args.primary_ns or f"ns1.{zone}"
        create = {"origin": zone, "primary_ns": primary, "admin": args.admin or f"hostmaster.{zone}",
                  "nameservers": args.ns or [primary], "ttl": args.ttl, "algorithm": args.algorithm,
                  "presigned": args.presigned}
        res = writer.dns({"create": create})
        results.append({"create": create, **res})
        lines.append(_dns_line(res))
    if ops:
        res = writer.dns({"update": {"origin": zone, "ops": ops}})
        results.append({"update": {"origin": zone, "ops": ops}, **res})
        lines.append(_dns_line(res, len(ops)))
    emit(args, results, "\n".join(lines))
    return EXIT_OK


def tlsa_record(cert_pem: bytes) -> str:
    """RFC 6698 `3 1 1` data for a certificate: DANE-EE, its SubjectPublicKeyInfo, SHA-256. The key, not
    the certificate, so the record survives renewals that keep the key."""
    try:
        cert = x509.load_pem_x509_certificate(cert_pem)
    except ValueError as exc:
        raise CLIError(f"--cert: not a PEM certificate ({exc})") from None
    spki = cert.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return f"3 1 1 {hashlib.sha256(spki).hexdigest()}"


def cmd_dns_tlsa(args: argparse.Namespace) -> int:
    try:
        pem = args.cert.read_bytes()
    except OSError as exc:
        raise CLIError(f"--cert: {args.cert}: {exc.strerror or exc}") from None
    name = args.name if args.name.endswith(".") else args.name + "."
    if not 0 < args.port < 65536:
        raise CLIError(f"--port: {args.port}: must be within 1..65535")
    owner = f"_{args.port}._{args.proto}.{name}"
    zone = args.zone or name.split(".", 1)[1]
    zone = zone if zone.endswith(".") else zone + "."
    if not zone.strip("."):
        raise CLIError("--zone: required for a top-level name")
    if not (name == zone or name.endswith("." + zone)):
        raise CLIError(f"--name: {name} is not inside --zone {zone}")
    data = tlsa_record(pem)
    line = f"{owner} {args.ttl} IN TLSA {data}"
    if args.dry_run:
        emit(args, {"record": line}, line)
        return EXIT_OK
    update = {"origin": zone, "ops": [{"op": "replace", "name": owner, "type": "TLSA", "ttl": args.ttl,
                                       "values": [data]}]}
    res = writer_from_args(args).dns({"update": update})
    emit(args, {"record": line, **res}, f"{line}\n{_dns_line(res, 1)}")
    return EXIT_OK


def cmd_dns_keys(args: argparse.Namespace) -> int:
    zone = args.zone if args.zone.endswith(".") else args.zone + "."
    keys: dict[str, Any] = {"origin": zone, "action": args.action}
    if args.action == "lifetimes":
        if args.zsk_days is None and args.ksk_days is None:
            raise CLIError("lifetimes: give --zsk-days and/or --ksk-days (0: roll on command only)")
        keys.update(zsk_lifetime_s=(args.zsk_days or 0) * DAY_S, ksk_lifetime_s=(args.ksk_days or 0) * DAY_S)
    else:
        if args.role is None:
            raise CLIError(f"{args.action}: give --ksk or --zsk")
        keys["role"] = args.role
    res = writer_from_args(args).dns({"keys": keys})
    emit(args, res, _dns_line(res))
    return EXIT_OK


def register_dns_commands(sub: Any, leaf: argparse.ArgumentParser) -> None:
    dns_p = sub.add_parser("dns", help="DNS: resolve, update")
    ds = dns_p.add_subparsers(dest="node_dns", required=True, metavar="COMMAND")
    p = ds.add_parser("resolve", parents=[leaf], help="authoritative answer from the node's replicated zones")
    p.add_argument("name", metavar="NAME")
    p.add_argument("type", nargs="?", default="A", metavar="TYPE", help="record type (default A)")
    p.add_argument("--dnssec", action="store_true", help="include RRSIGs (DO bit)")
    p.add_argument("--validate", action="store_true", help="validate DS -> DNSKEY -> RRSIG; exit 1 if not secure")
    p.set_defaults(func=cmd_dns_resolve)
    p = ds.add_parser("update", parents=[leaf], help="create a zone and/or change records (ordered by consensus)",
                      description="Records are 'NAME [TTL] TYPE DATA' in zone-file order, NAME relative to ZONE "
                      "or absolute; options apply in the order given, in one atomic update.")
    p.add_argument("zone", nargs="?", metavar="ZONE")
    p.add_argument("--create", action="store_true", help="create ZONE first (SOA, NS, DNSSEC keys)")
    p.add_argument("--primary-ns", metavar="NAME", help="with --create: SOA MNAME (default ns1.ZONE)")
    p.add_argument("--admin", metavar="NAME", help="with --create: SOA RNAME (default hostmaster.ZONE)")
    p.add_argument("--ns", action="append", metavar="NAME", help="with --create: apex NS (repeatable)")
    p.add_argument("--ttl", type=positive_int, default=3600, help="default TTL (default 3600)")
    p.add_argument("--algorithm", type=int, choices=(13, 15), default=15,
                   help="with --create: DNSSEC algorithm, 15 Ed25519 (default) or 13 ECDSA P-256")
    p.add_argument("--presigned", action="store_true", help="with --create: the zone is signed elsewhere; its "
                   "DNSKEY, RRSIG and NSEC/NSEC3 records come in updates and are served as they are")
    p.add_argument("--add", action=_OpAction, const="add", metavar="RR", help="add a record")
    p.add_argument("--replace", action=_OpAction, const="replace", metavar="RR", help="replace an RRset")
    p.add_argument("--delete", action=_OpAction, const="delete_rrset", metavar="'NAME TYPE'",
                   help="delete an RRset")
    p.add_argument("--delete-name", action=_OpAction, const="delete_name", metavar="NAME",
                   help="delete every RRset at NAME")
    p.add_argument("--file", type=Path, metavar="FILE", help="send this JSON body as is "
                   '({"create": {...}} or {"update": {"origin", "ops"}})')
    p.set_defaults(func=cmd_dns_update, ops=None)
    p = ds.add_parser("tlsa", parents=[leaf], help="publish a TLSA record (3 1 1) for a certificate's key",
                      description="Publish _PORT._PROTO.NAME TLSA 3 1 1 <SHA-256 of the certificate's "
                      "SubjectPublicKeyInfo> (RFC 6698 DANE-EE), replacing the RRset, in --zone.")
    p.add_argument("--cert", required=True, type=Path, metavar="CERT.pem", help="the server's certificate (PEM)")
    p.add_argument("--port", required=True, type=int, help="the service's port, e.g. 443")
    p.add_argument("--name", required=True, metavar="NAME", help="the service's host name, e.g. www.example.")
    p.add_argument("--proto", choices=("tcp", "udp", "sctp"), default="tcp", help="transport (default tcp)")
    p.add_argument("--zone", metavar="ZONE", help="the zone holding NAME (default: NAME without its first label)")
    p.add_argument("--ttl", type=positive_int, default=3600, help="TTL (default 3600)")
    p.add_argument("--dry-run", action="store_true", help="print the record, change nothing")
    p.set_defaults(func=cmd_dns_tlsa)
    p = ds.add_parser("keys", parents=[leaf], help="DNSSEC key rollovers of a zone (ordered by consensus)",
                      description="roll: start a ZSK (pre-publication) or KSK (double-KSK) rollover; the network "
                      "takes each later step itself on consensus time. complete: end a KSK rollover once the "
                      "parent serves the new DS (CDS/CDNSKEY name it). lifetimes: roll each kind by itself this "
                      "often.")
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("action", choices=("roll", "complete", "lifetimes"))
    role = p.add_mutually_exclusive_group()
    role.add_argument("--ksk", dest="role", action="store_const", const="ksk", help="the key-signing key")
    role.add_argument("--zsk", dest="role", action="store_const", const="zsk", help="the zone-signing key")
    p.add_argument("--zsk-days", type=int, metavar="DAYS", help="lifetimes: ZSK lifetime in days (0: on command)")
    p.add_argument("--ksk-days", type=int, metavar="DAYS", help="lifetimes: KSK lifetime in days (0: on command)")
    p.set_defaults(func=cmd_dns_keys, role=None)
