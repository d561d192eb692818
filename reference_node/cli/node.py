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
    node validators revoke SERIAL [--reason R] node validators dns ZONE (--create | --add RR ...)
    node validators withdraw DIGEST            node validators proposals

`--node URL` (default `$TRUSTCHAIN_NODE`, else http://127.0.0.1:8443) and `--json` go before or after
the command. Output is readable text; `--json` prints one JSON document for scripts.

Exit codes: 0 success; 1 the node answered and the answer is negative (not found, rejected by the
replicated application (422), revoked, a proof or chain that does not verify, health failing, a name
that does not resolve); 2 bad usage or input (the message names the argument, or the field the node
rejected with a 400); 3 the node cannot be reached, or it failed (5xx: halted, timeout, internal).
"""

from __future__ import annotations

import argparse
import base64
import datetime as dt
import json
import os
import sys
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_OK, EXIT_USAGE, CLIError
from trustchain.ca import commands as cacommands
from trustchain.ca import records as carecords
from trustchain.ca import validate
from trustchain.ct import merkle, note
from trustchain.ct.checkpoint import CheckpointError, SignedCheckpoint
from trustchain.ct.entry import EntryError, X509Entry, parse_merkle_tree_leaf
from trustchain.dns import app as dnsapp
from trustchain.dns.zone import ZoneUpdate, ZoneUpdateError

ENV_NODE = "TRUSTCHAIN_NODE"
ENV_OPERATOR_TOKEN = "TRUSTCHAIN_OPERATOR_TOKEN"
DEFAULT_NODE = "http://127.0.0.1:8443"
ENTRY_PAGE = 256


# --------------------------------------------------------------------------------------------- HTTP


def node_url(text: str) -> str:
    """`host:port` or an http(s) URL; returns the base URL without a trailing slash."""
    url = text if "://" in text else f"http://{text}"
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise CLIError(f"--node: {text!r} is not an http(s) URL or HOST:PORT")
    try:
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError:
        raise CLIError(f"--node: {text!r} has an invalid port") from None
    return url.rstrip("/")


@dataclass
class NodeClient:
    base: str
    timeout: float

    def call(self, method: str, path: str, body: Any = None, query: dict[str, str] | None = None,
             ok: tuple[int, ...] = (200,), headers: dict[str, str] | None = None) -> tuple[int, Any]:
        """(status, decoded body) for a status in `ok`; any other answer raises a CLIError naming it."""
        url = self.base + path + ("?" + urllib.parse.urlencode(query) if query else "")
        data = json.dumps(body).encode() if body is not None else None
        req = urllib.request.Request(url, data=data, method=method, headers={"content-type": "application/json",
                                                                              "accept": "application/json",
                                                                              **(headers or {})})
        try:
            with urllib.request.urlopen(req, timeout=self.timeout) as resp:
                status, raw, ctype = resp.status, resp.read(), resp.headers.get("content-type", "")
        except urllib.error.HTTPError as exc:
            status, raw, ctype = exc.code, exc.read(), exc.headers.get("content-type", "")
        except urllib.error.URLError as exc:
            raise CLIError(f"node {self.base}: cannot connect ({exc.reason}); is it running? "
                           f"(set --node or ${ENV_NODE})", EXIT_IO) from None
        except TimeoutError:
            raise CLIError(f"node {self.base}: {method} {path}: no answer within {self.timeout:g} s "
                           "(raise --timeout)", EXIT_IO) from None
        except OSError as exc:
            raise CLIError(f"node {self.base}: {method} {path}: {exc}", EXIT_IO) from None
        doc: Any
        if "json" in ctype:
            try:
                doc = json.loads(raw)
            except ValueError:
                raise CLIError(f"node {self.base}: {method} {path}: answer is not valid JSON", EXIT_IO) from None
        elif ctype.startswith("text/") or "pem" in ctype:
            doc = raw.decode(errors="replace")
        else:
            doc = raw
        if status in ok:
            return status, doc
        detail = doc.get("error", "") if isinstance(doc, dict) else str(doc)[:200]
        where = f"node {self.base}: {method} {path}: HTTP {status}"
        if status in (400, 413):
            raise CLIError(f"{where}: {detail}", EXIT_USAGE)
        if status in (404, 409, 422):
            raise CLIError(f"{where}: {detail}", EXIT_NEGATIVE)
        raise CLIError(f"{where}: {detail or 'node failure'}", EXIT_IO)

    def get(self, path: str, query: dict[str, str] | None = None, ok: tuple[int, ...] = (200,)) -> Any:
        return self.call("GET", path, query=query, ok=ok)[1]

    def post(self, path: str, body: Any, ok: tuple[int, ...] = (200,),
             headers: dict[str, str] | None = None) -> tuple[int, Any]:
        return self.call("POST", path, body, ok=ok, headers=headers)


def _client(args: argparse.Namespace) -> NodeClient:
    raw = getattr(args, "node", None) or os.environ.get(ENV_NODE) or DEFAULT_NODE
    timeout = getattr(args, "timeout", 60.0)
    if timeout <= 0:
        raise CLIError(f"--timeout: must be positive, got {timeout:g}")
    return NodeClient(node_url(raw), timeout)


def _json_mode(args: argparse.Namespace) -> bool:
    return bool(getattr(args, "json", False))


def _emit(args: argparse.Namespace, doc: Any, text: str) -> None:
    if _json_mode(args):
        print(json.dumps(doc, indent=2, sort_keys=True))
    elif text:
        print(text)


# ------------------------------------------------------------------------------------- certificates


def _serial(text: str) -> str:
    t = text.strip().lower().removeprefix("0x").replace(":", "")
    if not t or any(c not in "0123456789abcdef" for c in t) or int(t, 16) == 0:
        raise argparse.ArgumentTypeError(f"{text!r} is not a positive hexadecimal serial number")
    return t


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


def _prove(client: NodeClient, names: list[str], zone: str | None,
           progress: bool) -> tuple[list[str], list[dict[str, Any]]]:
    """dns-01: order challenges, publish each TXT in the zone that holds it; the key authorizations
    and the TXT records to remove afterwards."""
    challenges = client.post("/api/v1/cert/challenge", {"names": names})[1]["challenges"]
    zones = [zone if zone.endswith(".") else zone + "."] if zone else client.get("/api/v1/status")["dns"]["zones"]
    published: list[dict[str, Any]] = []
    for ch in challenges:
        origin = _zone_for(ch["txt_name"], zones)
        if origin is None:
            raise CLIError(f"{ch['name']}: no zone served by the network holds {ch['txt_name']} (zones: "
                           f"{', '.join(zones) or 'none'}); create one with `trustchain-cli node dns update ZONE "
                           "--create`, or give --zone", EXIT_NEGATIVE)
        op = {"op": "add", "name": ch["txt_name"], "type": "TXT", "ttl": 60, "values": [f'"{ch["txt_value"]}"']}
        client.post("/api/v1/dns/update", {"update": {"origin": origin, "ops": [op]}})
        published.append({"origin": origin, "name": ch["txt_name"]})
        if progress:
            print(f"published dns-01 TXT {ch['txt_name']} in {origin}", file=sys.stderr)
    by_name = {ch["name"]: ch["key_authorization"] for ch in challenges}
    return [by_name[n] for n in names], published


def _cleanup(client: NodeClient, published: list[dict[str, Any]]) -> None:
    for rec in published:
        try:
            client.post("/api/v1/dns/update", {"update": {"origin": rec["origin"], "ops": [
                {"op": "delete_rrset", "name": rec["name"], "type": "TXT"}]}})
        except CLIError as exc:  # the certificate is what was asked for; a stale TXT is only untidy
            print(f"warning: could not remove {rec['name']} TXT: {exc}", file=sys.stderr)


def _issue(args: argparse.Namespace, client: NodeClient, path: str, names: list[str],
           extra: dict[str, Any]) -> int:
    csr = _read_csr(args.csr) if args.csr else _new_csr(names, args.key_out, f"`{args.node_command_label}`")
    published: list[dict[str, Any]] = []
    if args.proof:
        if len(args.proof) != len(names):
            raise CLIError(f"--proof: {len(args.proof)} given for {len(names)} names (one per name, in order)")
        proofs = list(args.proof)
    else:
        proofs, published = _prove(client, names, args.zone, not _json_mode(args))
    body = {"csr": csr, "names": names, "proofs": proofs, "wait_s": args.wait, **extra}
    if args.lifetime:
        body["lifetime_s"] = args.lifetime
    try:
        status, res = client.post(path, body, ok=(201, 202))
    finally:
        if published and not args.keep_challenge:
            _cleanup(client, published)
    if status == 202:
        _emit(args, res, f"pending: serial {res['serial']} (pending id {res['pending_id']}) is waiting for "
                         f"threshold signatures; fetch it with `trustchain-cli node cert get {res['serial']}`")
        return EXIT_OK
    if args.out:
        args.out.write_text(res["certificate"] + ("".join(res["chain"]) if args.with_chain else ""))
    lines = [f"issued serial {res['serial']} for {', '.join(res['names'])} (not after {res['not_after']})"]
    if args.out:
        lines.append(f"certificate written to {args.out}" + (" with its chain" if args.with_chain else ""))
    if args.key_out and not args.csr:
        lines.append(f"private key written to {args.key_out}")
    if not args.out and not _json_mode(args):
        lines.append(res["certificate"].rstrip())
    _emit(args, res, "\n".join(lines))
    return EXIT_OK


def cmd_cert_request(args: argparse.Namespace) -> int:
    args.node_command_label = "node cert request"
    return _issue(args, _client(args), "/api/v1/cert/request", list(args.names), {})


def cmd_cert_renew(args: argparse.Namespace) -> int:
    args.node_command_label = "node cert renew"
    client = _client(args)
    current = client.get(f"/api/v1/cert/{args.serial}", ok=(200, 202))
    if "names" not in current:
        raise CLIError(f"serial {args.serial}: pending, not signed yet; nothing to renew", EXIT_NEGATIVE)
    return _issue(args, client, "/api/v1/cert/renew", list(current["names"]), {"serial": args.serial})


def _describe(res: dict[str, Any]) -> str:
    if res.get("status") == "pending":
        return f"serial {res['serial']}: pending (pending id {res['pending_id']}), not yet signed"
    state = res["status"]
    if res.get("revoked"):
        reason = carecords.REVOCATION_REASONS.get(res.get("revocation_reason") or 0, "unspecified")
        state = f"revoked ({reason})"
    return (f"serial {res['serial']}: {state}\n  names: {', '.join(res['names'])}\n"
            f"  not after: {res['not_after']}")


def cmd_cert_get(args: argparse.Namespace) -> int:
    res = _client(args).get(f"/api/v1/cert/{args.serial}", ok=(200, 202))
    text = _describe(res)
    if args.out and "certificate" in res:
        args.out.write_text(res["certificate"] + ("".join(res["chain"]) if args.with_chain else ""))
        text += f"\ncertificate written to {args.out}"
    elif "certificate" in res and not _json_mode(args):
        text += "\n" + res["certificate"].rstrip()
    _emit(args, res, text)
    return EXIT_OK


def _reason(text: str) -> int:
    names = {v.lower(): k for k, v in carecords.REVOCATION_REASONS.items()}
    if text.isdigit() and int(text) in carecords.REVOCATION_REASONS:
        return int(text)
    if text.lower() in names:
        return names[text.lower()]
    raise argparse.ArgumentTypeError(
        f"{text!r} is not a CRLReason (one of {', '.join(carecords.REVOCATION_REASONS.values())}, or its code)")


def cmd_cert_revoke(args: argparse.Namespace) -> int:
    res = _client(args).post("/api/v1/cert/revoke", {"serial": args.serial, "reason": args.reason})[1]
    reason = carecords.REVOCATION_REASONS[args.reason]
    _emit(args, {**res, "serial": args.serial, "reason": args.reason, "reason_name": reason},
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
    client = _client(args)
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
    _emit(args, checks, text)
    return EXIT_OK if ok else EXIT_NEGATIVE


# ---------------------------------------------------------------------------------------------- DNS


def cmd_dns_resolve(args: argparse.Namespace) -> int:
    client = _client(args)
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
    _emit(args, out, "\n".join(lines))
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
    verb = {"create": "created", "update": "updated"}.get(res.get("op", ""), str(res.get("op", "")))
    if res.get("status") == "unchanged":
        verb = "unchanged"
    count = "" if operations is None else f"{operations} operation{'s' if operations != 1 else ''}: "
    return f"{res.get('origin', '')}: {count}{verb} at serial {res.get('serial', 0)}"


def cmd_dns_update(args: argparse.Namespace) -> int:
    client = _client(args)
    results: list[dict[str, Any]] = []
    lines: list[str] = []
    if args.file:
        try:
            body = json.loads(args.file.read_text())
        except ValueError as exc:
            raise CLIError(f"--file: {args.file} is not valid JSON ({exc})") from None
        if not isinstance(body, dict) or not ({"create", "update"} & body.keys()):
            raise CLIError(f'--file: {args.file}: expected {{"create": {{...}}}} or {{"update": {{"origin", "ops"}}}}')
        res = client.post("/api/v1/dns/update", body)[1]
        _emit(args, res, _dns_line(res))
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
                  "nameservers": args.ns or [primary], "ttl": args.ttl}
        res = client.post("/api/v1/dns/update", {"create": create})[1]
        results.append({"create": create, **res})
        lines.append(_dns_line(res))
    if ops:
        res = client.post("/api/v1/dns/update", {"update": {"origin": zone, "ops": ops}})[1]
        results.append({"update": {"origin": zone, "ops": ops}, **res})
        lines.append(_dns_line(res, len(ops)))
    _emit(args, results, "\n".join(lines))
    return EXIT_OK


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
    client = _client(args)
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
    _emit(args, proof, "\n".join(lines))
    return EXIT_OK if proof["verifies"] else EXIT_NEGATIVE


def cmd_ct_verify(args: argparse.Namespace) -> int:
    """Inclusion in the node's *signed* checkpoint: the proof is taken at the checkpoint's size and
    must lead to its root hash; with --vkey the checkpoint signature is checked too."""
    client = _client(args)
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
    _emit(args, report, text)
    return EXIT_OK if not problems else EXIT_NEGATIVE


# ------------------------------------------------------------------------------------ status, health


def cmd_consensus_status(args: argparse.Namespace) -> int:
    st = _client(args).get("/api/v1/status")
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
    _emit(args, st, text)
    return EXIT_OK


def cmd_health(args: argparse.Namespace) -> int:
    client = _client(args)
    doc = client.get("/api/v1/health", ok=(200, 503))
    ok = doc.get("status") == "ok"
    failing = [k for k, v in doc.get("checks", {}).items() if not v]
    text = (f"{client.base}: ok (view {doc.get('view')}, last executed {doc.get('last_executed')})" if ok else
            f"{client.base}: FAILING ({', '.join(failing) or 'unknown'}): {doc.get('halted') or ''}".rstrip(": "))
    _emit(args, doc, text)
    return EXIT_OK if ok else EXIT_NEGATIVE


# ----------------------------------------------------------------------------------- validator set


def _operator_headers(args: argparse.Namespace) -> dict[str, str]:
    path = args.operator_token or os.environ.get(ENV_OPERATOR_TOKEN)
    if not path:
        raise CLIError(f"--operator-token: required (or ${ENV_OPERATOR_TOKEN}): the file operator.token in the "
                       "node's storage directory")
    try:
        token = Path(path).read_text().strip()
    except OSError as exc:
        raise CLIError(f"--operator-token: {path}: {exc.strerror or exc}") from None
    return {"Authorization": f"Bearer {token}"}


def _vote(args: argparse.Namespace, body: dict[str, Any], what: str) -> int:
    client = _client(args)
    res = client.post("/api/v1/validators/propose", body, headers=_operator_headers(args))[1]
    status = res.get("status", "")
    text = {
        "recorded": f"{what}: vote recorded, {res.get('votes')} of {res.get('threshold')} validators",
        "executed": f"{what}: executed, the quorum of {res.get('threshold')} validators is reached",
        "duplicate": f"{what}: this validator already voted ({res.get('votes')} of {res.get('threshold')})",
        "done": f"{what}: already executed",
        "withdrawn": f"{what}: vote withdrawn ({res.get('votes')} of {res.get('threshold')} remain)",
    }.get(status, f"{what}: {status}")
    _emit(args, res, f"{text}\n  digest {res.get('digest', '')}")
    return EXIT_OK


def cmd_validators_revoke(args: argparse.Namespace) -> int:
    command = cacommands.revoke_command(int(args.serial, 16), args.reason)
    return _vote(args, {"target": "ca", "command": base64.b64encode(command).decode()},
                 f"revoke {args.serial} ({carecords.REVOCATION_REASONS[args.reason]})")


def cmd_validators_dns(args: argparse.Namespace) -> int:
    zone = args.zone if args.zone.endswith(".") else args.zone + "."
    ops = _build_ops(getattr(args, "ops", None) or [], args.ttl)
    if args.create == bool(ops):
        raise CLIError("give either --create or --add/--replace/--delete/--delete-name: each is its own vote")
    try:
        if args.create:
            primary = args.primary_ns or f"ns1.{zone}"
            command = dnsapp.create_command(zone, primary_ns=primary, admin=args.admin or f"hostmaster.{zone}",
                                            nameservers=args.ns or [primary], ttl=args.ttl)
        else:
            command = dnsapp.update_command(ZoneUpdate.from_json({"origin": zone, "ops": ops}))
    except ZoneUpdateError as exc:
        raise CLIError(f"{exc.field}: {exc.reason}") from None
    return _vote(args, {"target": "dns", "command": base64.b64encode(command).decode()},
                 f"{'create' if args.create else 'update'} {zone}")


def cmd_validators_withdraw(args: argparse.Namespace) -> int:
    return _vote(args, {"withdraw": args.digest}, f"proposal {args.digest[:16]}")


def cmd_validators_proposals(args: argparse.Namespace) -> int:
    doc = _client(args).get("/api/v1/validators/proposals")
    lines = [f"{len(doc['proposals'])} open proposals; a quorum is {doc['threshold']} of {doc['validators']}"]
    lines += [f"  {p['digest']}  {p['target']} {p['op']}  votes from validators {p['voters']}"
              for p in doc["proposals"]]
    _emit(args, doc, "\n".join(lines))
    return EXIT_OK


# ------------------------------------------------------------------------------------------- parser


def _positive_int(text: str) -> int:
    try:
        v = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if v <= 0:
        raise argparse.ArgumentTypeError(f"{text!r} must be positive")
    return v


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
                   help="seconds the node waits for threshold signing before answering 'pending' (default 30)")
    p.add_argument("--lifetime", type=_positive_int, metavar="S", help="requested validity in seconds")


def _ct_target(p: argparse.ArgumentParser) -> None:
    p.add_argument("leaf_hash", nargs="?", metavar="HASH", help="leaf hash (64 hex digits or base64)")
    p.add_argument("--cert", type=Path, metavar="FILE", help="a logged certificate (PEM or DER)")
    p.add_argument("--serial", type=_serial, metavar="SERIAL", help="a certificate issued by the network")


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
    p = cs.add_parser("get", parents=[leaf], help="show (or save) a certificate by serial")
    p.add_argument("serial", type=_serial, metavar="SERIAL")
    p.add_argument("--out", type=Path, metavar="FILE", help="write the certificate (PEM) here")
    p.add_argument("--with-chain", action="store_true", help="append the intermediate and root to --out")
    p.set_defaults(func=cmd_cert_get)
    p = cs.add_parser("renew", parents=[leaf], help="re-issue for the names of SERIAL (ownership proven again)")
    p.add_argument("serial", type=_serial, metavar="SERIAL")
    _issue_args(p)
    p.set_defaults(func=cmd_cert_renew)
    p = cs.add_parser("revoke", parents=[leaf], help="revoke SERIAL (through the node that requested it)")
    p.add_argument("serial", type=_serial, metavar="SERIAL")
    p.add_argument("--reason", type=_reason, default=0, metavar="REASON",
                   help="CRLReason name or code, e.g. keyCompromise or 1 (default unspecified)")
    p.set_defaults(func=cmd_cert_revoke)
    p = cs.add_parser("verify", parents=[leaf], help="check chain and revocation status with the node")
    p.add_argument("serial", nargs="?", type=_serial, metavar="SERIAL")
    p.add_argument("--cert", type=Path, metavar="FILE", help="verify this certificate file instead of SERIAL")
    p.add_argument("--root", type=Path, metavar="FILE", help="trusted root (PEM); default: the node's /ca/root.pem")
    p.add_argument("--name", metavar="NAME", help="DNS name the certificate must cover")

    def verify(args: argparse.Namespace) -> int:
        if bool(args.serial) == bool(args.cert):
            raise CLIError("give exactly one of SERIAL or --cert FILE")
        return cmd_cert_verify(args)

    p.set_defaults(func=verify)

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
    p.add_argument("--ttl", type=_positive_int, default=3600, help="default TTL (default 3600)")
    p.add_argument("--add", action=_OpAction, const="add", metavar="RR", help="add a record")
    p.add_argument("--replace", action=_OpAction, const="replace", metavar="RR", help="replace an RRset")
    p.add_argument("--delete", action=_OpAction, const="delete_rrset", metavar="'NAME TYPE'",
                   help="delete an RRset")
    p.add_argument("--delete-name", action=_OpAction, const="delete_name", metavar="NAME",
                   help="delete every RRset at NAME")
    p.add_argument("--file", type=Path, metavar="FILE", help="send this JSON body as is "
                   '({"create": {...}} or {"update": {"origin", "ops"}})')
    p.set_defaults(func=cmd_dns_update, ops=None)

    ct = sub.add_parser("ct", help="Certificate Transparency: proof, verify")
    cts = ct.add_subparsers(dest="node_ct", required=True, metavar="COMMAND")
    p = cts.add_parser("proof", parents=[leaf], help="inclusion proof from the node (checked locally)")
    _ct_target(p)
    p.add_argument("--tree-size", type=_positive_int, metavar="N", help="tree size (default: current)")
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
    _validators_parser(sub, leaf)


def _validators_parser(sub: Any, leaf: argparse.ArgumentParser) -> None:
    """`node validators ...`: the operator casts this validator's vote; the operation runs once a quorum of
    validators voted for the same bytes (each operator runs the same command against their own node)."""
    vals = sub.add_parser("validators", help="vote for operations of the validator set (operator only)")
    vs = vals.add_subparsers(dest="node_validators", required=True, metavar="COMMAND")
    token = argparse.ArgumentParser(add_help=False)
    token.add_argument("--operator-token", metavar="FILE", help="the node's operator.token (in its storage "
                       f"directory; default ${ENV_OPERATOR_TOKEN})")
    p = vs.add_parser("revoke", parents=[leaf, token], help="vote to revoke SERIAL without its subscriber")
    p.add_argument("serial", type=_serial, metavar="SERIAL")
    p.add_argument("--reason", type=_reason, default=1, metavar="REASON",
                   help="CRLReason name or code (default keyCompromise)")
    p.set_defaults(func=cmd_validators_revoke)
    p = vs.add_parser("dns", parents=[leaf, token], help="vote to create or change a zone of the nodes' domain")
    p.add_argument("zone", metavar="ZONE")
    p.add_argument("--create", action="store_true", help="create ZONE (SOA, NS, DNSSEC keys)")
    p.add_argument("--primary-ns", metavar="NAME", help="with --create: SOA MNAME (default ns1.ZONE)")
    p.add_argument("--admin", metavar="NAME", help="with --create: SOA RNAME (default hostmaster.ZONE)")
    p.add_argument("--ns", action="append", metavar="NAME", help="with --create: apex NS (repeatable)")
    p.add_argument("--ttl", type=_positive_int, default=3600, help="default TTL (default 3600)")
    p.add_argument("--add", action=_OpAction, const="add", metavar="RR", help="add a record")
    p.add_argument("--replace", action=_OpAction, const="replace", metavar="RR", help="replace an RRset")
    p.add_argument("--delete", action=_OpAction, const="delete_rrset", metavar="'NAME TYPE'",
                   help="delete an RRset")
    p.add_argument("--delete-name", action=_OpAction, const="delete_name", metavar="NAME",
                   help="delete every RRset at NAME")
    p.set_defaults(func=cmd_validators_dns, ops=None)
    p = vs.add_parser("withdraw", parents=[leaf, token], help="take back this validator's vote")
    p.add_argument("digest", metavar="DIGEST", help="the proposal's digest (64 hex digits)")
    p.set_defaults(func=cmd_validators_withdraw)
    p = vs.add_parser("proposals", parents=[leaf], help="open proposals and who voted for them")
    p.set_defaults(func=cmd_validators_proposals)
