"""`trustchain-cli node ...`: talk to a running validator over its HTTP API.

The other areas (`ca`, `cert`, `ct`, `dns`) are offline tools that work on local files; this area is
their online counterpart, so `trustchain-cli node cert request` asks a node while `trustchain-cli cert
verify` checks files. Commands:

    node cert request NAME... [--csr FILE | --key-out FILE] [--out FILE]
    node cert get SERIAL [--out FILE]          node cert renew SERIAL [--csr FILE | --key-out FILE]
    node cert revoke SERIAL [--reason R]       node cert verify (SERIAL | --cert FILE) [--root FILE]
    node dns resolve NAME [TYPE] [--validate]  node dns update ZONE (--create | --add RR | --delete ...)
    node ct proof (HASH | --cert FILE | --serial S)      node ct verify (same) [--vkey VKEY]
    node consensus status                      node health
    node account register --key FILE           node account rollover --key OLD --new-key NEW
    node account deactivate --key FILE --yes   node validate (open NAME | ready ID)

Writes (dns update, cert request/renew/revoke, validate) are signed by your account with
`--account-key FILE` (or $TRUSTCHAIN_ACCOUNT_KEY) and posted to /api/v1/write, as production nodes require; make a key
with `trustchain-cli account new --key FILE` and register it with `node account register`. Without
a key they use the unsigned JSON endpoints of a development node (`api.unsigned_writes = true`);
`account` and `validate` exist only signed.
    node validators revoke SERIAL [--reason R] node validators dns ZONE (--create | --add RR ...)
    node validators withdraw DIGEST            node validators proposals

`--node URL` (default `$TRUSTCHAIN_NODE`, else http://127.0.0.1:8443) and `--json` go before or after
the command. Output is readable text; `--json` prints one JSON document for scripts.

Exit codes: 0 success; 1 the node answered and the answer is negative (not found, a write refused by
the network (422, printed as its field and reason: not authorized, replayed, expired, ...), revoked,
a proof or chain that does not verify, health failing, a name that does not resolve); 2 bad usage or
input (the message names the argument, the key file, or the field the node rejected with a 400; a
node that takes only signed writes (403) without --account-key); 3 the node cannot be reached, or it
failed (5xx: halted, timeout, internal).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import os
import sys
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reference_node.cli import EXIT_NEGATIVE, EXIT_OK, CLIError
from reference_node.cli.node_account import register_account_commands, register_validate_commands
from reference_node.cli.node_dns import register_dns_commands
from reference_node.cli.node_http import (
    DEFAULT_NODE,
    ENV_ACCOUNT_KEY,
    ENV_NODE,
    NodeClient,
    client_from_args,
    emit,
    json_mode,
    positive_int,
    reason_arg,
    serial_arg,
)
from reference_node.cli.node_validators import register_validators_commands
from reference_node.cli.node_writes import Writer, writer_from_args
from trustchain.ca import records as carecords
from trustchain.ca import validate
from trustchain.ct import merkle, note
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.entry import EntryError, X509Entry, parse_merkle_tree_leaf

ENTRY_PAGE = 256


# ------------------------------------------------------------------------------------- certificates


def _read_csr(path: Path) -> str:
    data = path.read_bytes()
    try:
        csr = x509.load_pem_x509_csr(data) if b"-----BEGIN" in data else x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CLIError(f"--csr: {path} is not a PEM or DER certificate request ({str(exc)[:80]})") from None
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _new_csr(names: list[str], key_out: Path | None, flag_hint: str) -> str:
    """A P-256 key written to `key_out` (mode 0600) and a CSR for `names`."""
    if key_out is None:
        raise CLIError(f"--key-out: required without --csr ({flag_hint} generates a new private key and "
                       "needs a file to write it to)")
    if key_out.exists():
        raise CLIError(f"--key-out: {key_out} exists; refusing to overwrite a private key")
    key = ec.generate_private_key(ec.SECP256R1())
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    fd = os.open(key_out, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(pem)
    csr = (x509.CertificateSigningRequestBuilder().subject_name(x509.Name([]))
           .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
           .sign(key, hashes.SHA256()))
    return csr.public_bytes(serialization.Encoding.PEM).decode()


def _zone_for(name: str, zones: list[str]) -> str | None:
    n = name.rstrip(".").lower() + "."
    matches = [z for z in zones if n == z.lower() or n.endswith("." + z.lower())]
    return max(matches, key=len) if matches else None


def _prove(writer: Writer, names: list[str], zone: str | None,
           progress: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """dns-01: order challenges, publish each TXT in the zone that holds it; the key authorizations
    and the TXT records to remove afterwards."""
    challenges = writer.challenge(names)
    zones = ([zone if zone.endswith(".") else zone + "."] if zone
             else writer.client.get("/api/v1/status")["dns"]["zones"])
    published: list[dict[str, Any]] = []
    for ch in challenges:
        origin = _zone_for(ch["txt_name"], zones)
        if origin is None:
            raise CLIError(f"{ch['name']}: no zone served by the network holds {ch['txt_name']} (zones: "
                           f"{', '.join(zones) or 'none'}); create one with `trustchain-cli node dns update ZONE "
                           "--create`, or give --zone", EXIT_NEGATIVE)
        op = {"op": "add", "name": ch["txt_name"], "type": "TXT", "ttl": 60, "values": [f'"{ch["txt_value"]}"']}
        writer.dns({"update": {"origin": origin, "ops": [op]}})
        published.append({"origin": origin, "name": ch["txt_name"]})
        if progress:
            print(f"published dns-01 TXT {ch['txt_name']} in {origin}", file=sys.stderr)
    by_name = {ch["name"]: ch["key_authorization"] for ch in challenges}
    return [by_name[n] for n in names], published


def _cleanup(writer: Writer, published: list[dict[str, Any]]) -> None:
    for rec in published:
        try:
            writer.dns({"update": {"origin": rec["origin"], "ops": [
                {"op": "delete_rrset", "name": rec["name"], "type": "TXT"}]}})
        except CLIError as exc:  # the certificate is what was asked for; a stale TXT is only untidy
            print(f"warning: could not remove {rec['name']} TXT: {exc}", file=sys.stderr)


def _issue(args: argparse.Namespace, writer: Writer, path: str, names: list[str],
           extra: dict[str, Any]) -> int:
    csr = _read_csr(args.csr) if args.csr else _new_csr(names, args.key_out, f"`{args.node_command_label}`")
    published: list[dict[str, Any]] = []
    if args.proof:
        if len(args.proof) != len(names):
            raise CLIError(f"--proof: {len(args.proof)} given for {len(names)} names (one per name, in order)")
        proofs = list(args.proof)
    else:
        proofs, published = _prove(writer, names, args.zone, not json_mode(args))
    body = {"csr": csr, "names": names, "proofs": proofs, "wait_s": args.wait, **extra}
    if args.lifetime:
        body["lifetime_s"] = args.lifetime
    try:
        status, res = writer.issue(path, body, names)
    finally:
        if published and not args.keep_challenge:
            _cleanup(writer, published)
    if status == 202:
        emit(args, res, f"pending: request {res['pending_id']} is waiting for its serial (the validators' "
                         f"reveals) or its threshold signature; fetch it with "
                         f"`trustchain-cli node cert get --request {res['pending_id']}`")
        return EXIT_OK
    if args.out:
        args.out.write_text(res["certificate"] + ("".join(res["chain"]) if args.with_chain else ""))
    lines = [f"issued serial {res['serial']} for {', '.join(res['names'])} (not after {res['not_after']})"]
    if args.out:
        lines.append(f"certificate written to {args.out}" + (" with its chain" if args.with_chain else ""))
    if args.key_out and not args.csr:
        lines.append(f"private key written to {args.key_out}")
    if not args.out and not json_mode(args):
        lines.append(res["certificate"].rstrip())
    emit(args, res, "\n".join(lines))
    return EXIT_OK


def cmd_cert_request(args: argparse.Namespace) -> int:
    args.node_command_label = "node cert request"
    return _issue(args, writer_from_args(args), "/api/v1/cert/request", list(args.names), {})


def cmd_cert_renew(args: argparse.Namespace) -> int:
    args.node_command_label = "node cert renew"
    writer = writer_from_args(args)
    current = writer.client.get(f"/api/v1/cert/{args.serial}", ok=(200, 202))
    if "names" not in current:
        raise CLIError(f"serial {args.serial}: pending, not signed yet; nothing to renew", EXIT_NEGATIVE)
    return _issue(args, writer, "/api/v1/cert/renew", list(current["names"]), {"serial": args.serial})


def _describe(res: dict[str, Any]) -> str:
    if res.get("status") == "pending":
        serial = f"serial {res['serial']}" if res.get("serial") else "serial not drawn yet"
        return f"request {res['pending_id']} ({serial}): pending, not yet signed"
    state = res["status"]
    if res.get("revoked"):
        reason = carecords.REVOCATION_REASONS.get(res.get("revocation_reason") or 0, "unspecified")
        state = f"revoked ({reason})"
    return (f"serial {res['serial']}: {state}\n  names: {', '.join(res['names'])}\n"
            f"  not after: {res['not_after']}")


def cmd_cert_get(args: argparse.Namespace) -> int:
    if (args.serial is None) == (args.request is None):
        raise CLIError("give exactly one of SERIAL or --request PENDING_ID")
    path = f"/api/v1/cert/{args.serial}" if args.serial is not None else f"/api/v1/cert/request/{args.request}"
    res = client_from_args(args).get(path, ok=(200, 202))
    text = _describe(res)
    if args.out and "certificate" in res:
        args.out.write_text(res["certificate"] + ("".join(res["chain"]) if args.with_chain else ""))
        text += f"\ncertificate written to {args.out}"
    elif "certificate" in res and not json_mode(args):
        text += "\n" + res["certificate"].rstrip()
    emit(args, res, text)
    return EXIT_OK


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    res = writer_from_args(args).revoke(args.serial, args.reason)
    reason = carecords.REVOCATION_REASONS[args.reason]
    emit(args, {**res, "serial": args.serial, "reason": args.reason, "reason_name": reason},
          f"revoked serial {args.serial} ({reason})" if res["status"] == "revoked" else
          f"serial {args.serial} was already revoked")
    return EXIT_OK


def _load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    try:
        return x509.load_pem_x509_certificate(data) if b"-----BEGIN" in data else x509.load_der_x509_certificate(data)
    except ValueError as exc:
        raise CLIError(f"--cert: {path} holds no PEM or DER certificate ({str(exc)[:80]})") from None


def cmd_cert_verify(args: argparse.Namespace) -> int:
    """Chain to the root (a local --root, or the node's own), and the node's revocation status."""
    client = client_from_args(args)
    if args.cert:
        leaf = _load_cert(args.cert)
        serial = carecords.serial_bytes(leaf.serial_number).hex()
    else:
        serial = args.serial
        leaf = None
    rec = client.get(f"/api/v1/cert/{serial}", ok=(200, 202))
    if rec.get("status") == "pending":
        raise CLIError(f"serial {serial}: pending, not signed yet", EXIT_NEGATIVE)
    node_leaf = x509.load_pem_x509_certificate(rec["certificate"].encode())
    if leaf is None:
        leaf = node_leaf
    elif leaf != node_leaf:
        raise CLIError(f"{args.cert}: serial {serial} was issued by the network for a different certificate",
                       EXIT_NEGATIVE)
    chain = [x509.load_pem_x509_certificate(p.encode()) for p in rec["chain"] if p.strip()]
    if args.root:
        roots = x509.load_pem_x509_certificates(args.root.read_bytes())
        root_source = str(args.root)
    else:
        roots = x509.load_pem_x509_certificates(client.get("/ca/root.pem").encode())
        root_source = f"{client.base}/ca/root.pem (as served by the node; give --root to pin it)"
    checks: dict[str, Any] = {"serial": serial, "root": root_source}
    try:
        path = validate.verify_chain(leaf, chain[:-1] or chain, roots, dt.datetime.now(dt.UTC), args.name)
        checks["chain"] = f"OK ({len(path)} certificates)"
    except validate.ChainError as exc:
        checks["chain"] = f"FAILED: {exc}"
    checks["revoked"] = bool(rec.get("revoked"))
    ok = checks["chain"].startswith("OK") and not checks["revoked"]
    checks["valid"] = ok
    text = "\n".join([f"serial {serial}: {'VALID' if ok else 'INVALID'}", f"  chain: {checks['chain']}",
                      f"  revocation: {'revoked' if checks['revoked'] else 'not revoked'} (node {client.base})",
                      f"  root: {root_source}"])
    emit(args, checks, text)
    return EXIT_OK if ok else EXIT_NEGATIVE


# ----------------------------------------------------------------------------------------------- CT


def _leaf_hash_of_cert(client: NodeClient, der: bytes) -> str:
    """Find the certificate's entry in the node's log (pages of entries) and hash it locally."""
    size = client.get("/api/v1/ct/log")["tree_size"]
    target = X509Entry(der)
    for start in range(0, size, ENTRY_PAGE):
        end = min(size, start + ENTRY_PAGE) - 1
        entries = client.get("/api/v1/ct/log", {"start": str(start), "end": str(end)})["entries"]
        for leaf_b64 in entries:
            leaf = base64.b64decode(leaf_b64["leaf_input"])
            try:
                if parse_merkle_tree_leaf(leaf).entry == target:
                    return merkle.leaf_hash(leaf).hex()
            except EntryError:
                continue
    raise CLIError(f"certificate is not in the log of {client.base} (tree size {size})", EXIT_NEGATIVE)


def _target_hash(args: argparse.Namespace, client: NodeClient) -> str:
    if args.leaf_hash:
        text = args.leaf_hash
        try:
            raw = bytes.fromhex(text) if len(text) == 64 else base64.b64decode(text, validate=True)
        except ValueError:
            raise CLIError(f"HASH: {text!r} is neither 64 hex digits nor base64") from None
        if len(raw) != 32:
            raise CLIError(f"HASH: {text!r} is {len(raw)} bytes, a SHA-256 leaf hash is 32")
        return raw.hex()
    if args.cert:
        der = _load_cert(args.cert).public_bytes(serialization.Encoding.DER)
    else:
        rec = client.get(f"/api/v1/cert/{args.serial}", ok=(200, 202))
        if "certificate" not in rec:
            raise CLIError(f"serial {args.serial}: pending, not signed (nor logged) yet", EXIT_NEGATIVE)
        der = x509.load_pem_x509_certificate(rec["certificate"].encode()).public_bytes(serialization.Encoding.DER)
    return _leaf_hash_of_cert(client, der)


def cmd_ct_proof(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    leaf_hash = _target_hash(args, client)
    query = {"tree_size": str(args.tree_size)} if args.tree_size else None
    proof = client.get(f"/api/v1/ct/proof/{leaf_hash}", query)
    path = [base64.b64decode(p) for p in proof["audit_path"]]
    try:
        merkle.verify_inclusion(proof["leaf_index"], proof["tree_size"], bytes.fromhex(leaf_hash), path,
                                base64.b64decode(proof["root_hash"]))
        proof["verifies"] = True
    except ValueError:
        proof["verifies"] = False
    lines = [f"leaf {leaf_hash}", f"  index {proof['leaf_index']} in tree of size {proof['tree_size']}",
             f"  root {base64.b64decode(proof['root_hash']).hex()}",
             f"  audit path ({len(path)}):"] + [f"    {p.hex()}" for p in path]
    lines.append("  proof verifies against that root" if proof["verifies"] else "  proof does NOT verify")
    emit(args, proof, "\n".join(lines))
    return EXIT_OK if proof["verifies"] else EXIT_NEGATIVE


def cmd_ct_verify(args: argparse.Namespace) -> int:
    """Inclusion in the node's *signed* checkpoint: the proof is taken at the checkpoint's size and
    must lead to its root hash; with --vkey the checkpoint signature is checked too."""
    client = client_from_args(args)
    leaf_hash = _target_hash(args, client)
    log = client.get("/api/v1/ct/log")
    try:
        signed = SignedCheckpoint.parse(log["checkpoint"].encode())
    except CheckpointError as exc:
        raise CLIError(f"node {client.base}: checkpoint does not parse: {exc}", EXIT_NEGATIVE) from None
    cp = signed.checkpoint
    report: dict[str, Any] = {"leaf_hash": leaf_hash, "origin": cp.origin, "tree_size": cp.size,
                              "root_hash": cp.root_hash.hex()}
    problems: list[str] = []
    if args.vkey:
        try:
            name, pub = note.parse_verifier_key(args.vkey)
        except note.NoteError as exc:
            raise CLIError(f"--vkey: {exc}") from None
        try:
            signed.verify(name, pub)
            report["signature"] = f"verified ({name})"
        except CheckpointError as exc:
            report["signature"] = f"FAILED: {exc}"
            problems.append(f"checkpoint signature: {exc}")
    else:
        report["signature"] = "not checked (no --vkey)"
    proof = client.get(f"/api/v1/ct/proof/{leaf_hash}", {"tree_size": str(cp.size)})
    report["leaf_index"] = proof["leaf_index"]
    try:
        merkle.verify_inclusion(proof["leaf_index"], cp.size, bytes.fromhex(leaf_hash),
                                [base64.b64decode(p) for p in proof["audit_path"]], cp.root_hash)
        report["inclusion"] = "verified"
    except ValueError as exc:
        report["inclusion"] = f"FAILED: {exc}"
        problems.append(f"inclusion: {exc}")
    report["valid"] = not problems
    text = "\n".join([f"leaf {leaf_hash}: {'INCLUDED' if not problems else 'NOT VERIFIED'}",
                      f"  checkpoint: {cp.origin} size {cp.size} root {cp.root_hash.hex()}",
                      f"  signature: {report['signature']}",
                      f"  inclusion at index {proof['leaf_index']}: {report['inclusion']}"])
    emit(args, report, text)
    return EXIT_OK if not problems else EXIT_NEGATIVE


# ------------------------------------------------------------------------------------ status, health


def cmd_consensus_status(args: argparse.Namespace) -> int:
    st = client_from_args(args).get("/api/v1/status")
    text = "\n".join([
        f"{st['node_id']} (replica {st['replica']} of {st['validators']}, f={st['f']}, {st['network']})",
        f"  view {st['view']}, primary replica {st['primary']}, status {st['status']}",
        f"  last executed {st['last_executed']}, stable checkpoint {st['stable_checkpoint']}, "
        f"pending requests {st['pending_requests']}",
        f"  CA: {st['ca']['issued']} issued, {st['ca']['pending']} pending, threshold {st['ca']['threshold']}",
        f"  CT: tree size {st['ct']['tree_size']} ({st['ct']['origin']})",
        f"  DNS zones: {', '.join(st['dns']['zones']) or 'none'}",
        f"  storage: {st['storage']['usage_bytes']} bytes, {st['storage']['records']} records",
        f"  halted: {st['halted']}" if st.get("halted") else f"  uptime {st['uptime_s']} s",
    ])
    emit(args, st, text)
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    client = client_from_args(args)
    doc = client.get("/api/v1/health", ok=(200, 503))
    ok = doc.get("status") == "ok"
    failing = [k for k, v in doc.get("checks", {}).items() if not v]
    text = (f"{client.base}: ok (view {doc.get('view')}, last executed {doc.get('last_executed')})" if ok else
            f"{client.base}: FAILING ({', '.join(failing) or 'unknown'}): {doc.get('halted') or ''}".rstrip(": "))
    emit(args, doc, text)
    return EXIT_OK if ok else EXIT_NEGATIVE


# ------------------------------------------------------------------------------------------- parser


def _common(suppress: bool) -> argparse.ArgumentParser:
    """--node/--json/--timeout, accepted both after `node` and after the command. The copies on the
    commands default to SUPPRESS so they do not overwrite a value given earlier."""
    p = argparse.ArgumentParser(add_help=False)
    d = argparse.SUPPRESS if suppress else None
    p.add_argument("--node", metavar="URL", default=d,
                   help=f"node API, http://HOST:PORT or HOST:PORT (default ${ENV_NODE}, else {DEFAULT_NODE})")
    p.add_argument("--json", action="store_true", default=d if suppress else False,
                   help="print one JSON document (for scripts)")
    p.add_argument("--timeout", type=float, metavar="S", default=d if suppress else 60.0,
                   help="HTTP timeout in seconds (default 60)")
    p.add_argument("--account-key", type=Path, metavar="FILE", default=d,
                   help=f"writes: sign as this account (default ${ENV_ACCOUNT_KEY}); without it writes go to "
                   "the unsigned JSON endpoints, which only development nodes accept")
    p.add_argument("--genesis", type=Path, metavar="FILE", default=d,
                   help="signed writes: take the cluster id from this genesis file and refuse a node that "
                   "serves another cluster (default: the node's /api/v1/status)")
    return p


def _issue_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--csr", type=Path, metavar="FILE", help="certificate request (PEM or DER); without it a new "
                   "P-256 key is generated and written to --key-out")
    p.add_argument("--key-out", type=Path, metavar="FILE", help="where to write the generated private key (0600)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the certificate (PEM) here instead of printing")
    p.add_argument("--with-chain", action="store_true", help="append the intermediate and root to --out")
    p.add_argument("--proof", action="append", metavar="KEYAUTH",
                   help="dns-01 key authorization per name, in order, if you published the TXT records "
                   "yourself; by default the command orders the challenges and publishes them through the node")
    p.add_argument("--zone", metavar="ZONE", help="zone to publish the challenge TXT records in "
                   "(default: the longest matching zone the network serves)")
    p.add_argument("--keep-challenge", action="store_true", help="leave the challenge TXT records in place")
    p.add_argument("--wait", type=int, default=30, metavar="S",
                   help="seconds to wait for the certificate (its serial is drawn, then it is threshold-signed) "
                   "before answering 'pending'; the node waits up to its api.issue_wait, then the CLI polls "
                   "(default 30)")
    p.add_argument("--lifetime", type=positive_int, metavar="S", help="requested validity in seconds")


def _ct_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("leaf_hash", nargs="?", metavar="HASH", help="leaf hash (64 hex digits or base64)")
    p.add_argument("--cert", type=Path, metavar="FILE", help="a logged certificate (PEM or DER)")
    p.add_argument("--serial", type=serial_arg, metavar="SERIAL", help="a certificate issued by the network")


def _check_ct_target(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        given = [x for x in (args.leaf_hash, args.cert, args.serial) if x]
        if len(given) != 1:
            raise CLIError("give exactly one of HASH, --cert FILE or --serial SERIAL")
        return int(func(args))

    return run


def register(subparsers: Any) -> None:
    top = _common(suppress=False)
    leaf = _common(suppress=True)
    parser = subparsers.add_parser("node", parents=[top], help="talk to a running node over its HTTP API",
                                   description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = parser.add_subparsers(dest="node_area", required=True, metavar="COMMAND")

    cert = sub.add_parser("cert", help="certificates: request, get, renew, revoke, verify")
    cs = cert.add_subparsers(dest="node_cert", required=True, metavar="COMMAND")
    p = cs.add_parser("request", parents=[leaf], help="request a certificate (dns-01 through the node, 3-of-5 "
                      "threshold signing)")
    p.add_argument("names", nargs="+", metavar="NAME", help="DNS names for the certificate")
    _issue_args(p)
    p.set_defaults(func=cmd_cert_request)
    p = cs.add_parser("get", parents=[leaf], help="show (or save) a certificate by serial, or by the pending "
                      "id its request was answered with")
    p.add_argument("serial", type=serial_arg, nargs="?", metavar="SERIAL")
    p.add_argument("--request", type=positive_int, metavar="PENDING_ID",
                   help="the pending id a certificate request was answered with (before its serial is known)")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the certificate (PEM) here")
    p.add_argument("--with-chain", action="store_true", help="append the intermediate and root to --out")
    p.set_defaults(func=cmd_cert_get)
    p = cs.add_parser("renew", parents=[leaf], help="re-issue for the names of SERIAL (ownership proven again)")
    p.add_argument("serial", type=serial_arg, metavar="SERIAL")
    _issue_args(p)
    p.set_defaults(func=cmd_cert_renew)
    p = cs.add_parser("revoke", parents=[leaf], help="revoke SERIAL (through the node that requested it)")
    p.add_argument("serial", type=serial_arg, metavar="SERIAL")
    p.add_argument("--reason", type=reason_arg, default=0, metavar="REASON",
                   help="CRLReason name or code, e.g. keyCompromise or 1 (default unspecified)")
    p.set_defaults(func=cmd_cert_revoke)
    p = cs.add_parser("verify", parents=[leaf], help="check chain and revocation status with the node")
    p.add_argument("serial", nargs="?", type=serial_arg, metavar="SERIAL")
    p.add_argument("--cert", type=Path, metavar="FILE", help="verify this certificate file instead of SERIAL")
    p.add_argument("--root", type=Path, metavar="FILE", help="trusted root (PEM); default: the node's /ca/root.pem")
    p.add_argument("--name", metavar="NAME", help="DNS name the certificate must cover")

    def verify(args: argparse.Namespace) -> int:
        if bool(args.serial) == bool(args.cert):
            raise CLIError("give exactly one of SERIAL or --cert FILE")
        return cmd_cert_verify(args)

    p.set_defaults(func=verify)

    register_dns_commands(sub, leaf)

    ct = sub.add_parser("ct", help="Certificate Transparency: proof, verify")
    cts = ct.add_subparsers(dest="node_ct", required=True, metavar="COMMAND")
    p = cts.add_parser("proof", parents=[leaf], help="inclusion proof from the node (checked locally)")
    _ct_target(p)
    p.add_argument("--tree-size", type=positive_int, metavar="N", help="tree size (default: current)")
    p.set_defaults(func=_check_ct_target(cmd_ct_proof))
    p = cts.add_parser("verify", parents=[leaf], help="inclusion in the node's signed checkpoint")
    _ct_target(p)
    p.add_argument("--vkey", metavar="VKEY", help="the node's checkpoint verifier key (name+id+key)")
    p.set_defaults(func=_check_ct_target(cmd_ct_verify))

    cons = sub.add_parser("consensus", help="consensus: status")
    cos = cons.add_subparsers(dest="node_consensus", required=True, metavar="COMMAND")
    p = cos.add_parser("status", parents=[leaf], help="view, primary, executed sequence, sizes")
    p.set_defaults(func=cmd_consensus_status)

    p = sub.add_parser("health", parents=[leaf], help="health check (exit 1 when the node reports failing)")
    p.set_defaults(func=cmd_health)

    register_account_commands(sub, leaf)
    register_validate_commands(sub, leaf)
    register_validators_commands(sub, leaf)
