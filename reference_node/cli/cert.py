"""`trustchain-cli cert verify`: validate a certificate and say exactly why it fails.

Checks, in order: the chain to a trusted root (wrong issuer, bad signature, expired, not yet valid,
name mismatch, also for a one-certificate chain), revocation against a CRL signed by the issuer and
current at the validation time, and the consensus proof: a commit
certificate from 2f+1 validators over the batch that finalized this certificate. The proof is
required when the validator set is given (`--cluster`), because a certificate without one was not
recorded by the replicated CA. Exit 0 valid, 1 invalid (the message names the reason), 2 bad input.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from reference_node.cli import EXIT_NEGATIVE, EXIT_OK, CLIError
from trustchain.ca import commands as cacommands
from trustchain.ca import validate
from trustchain.ca import x509 as cax509
from trustchain.consensus import certificates, config, messages
from trustchain.crypto.signing import ED25519
from trustchain.encoding import DecodeError, decode


def _load_certs(path: str, what: str) -> list[x509.Certificate]:
    data = Path(path).read_bytes()
    try:
        if b"-----BEGIN" in data:
            return x509.load_pem_x509_certificates(data)
        return [x509.load_der_x509_certificate(data)]
    except ValueError as exc:
        raise CLIError(f"{what}: {path} holds no PEM or DER certificate ({exc})") from None


def _load_crl(path: str) -> x509.CertificateRevocationList:
    data = Path(path).read_bytes()
    try:
        return x509.load_pem_x509_crl(data) if b"-----BEGIN" in data else x509.load_der_x509_crl(data)
    except ValueError as exc:
        raise CLIError(f"--crl: {path} is not a CRL ({exc})") from None


def _fail(reason: str, detail: str) -> CLIError:
    return CLIError(f"{reason}: {detail}", EXIT_NEGATIVE)


def check_revocation(leaf: x509.Certificate, issuer: x509.Certificate, lst: x509.CertificateRevocationList,
                     at: dt.datetime) -> None:
    """The CRL is the issuer's, verifies, is current at ``at`` (RFC 5280 6.3.3: a CRL past its nextUpdate
    proves nothing) and does not list the leaf."""
    if lst.issuer != issuer.subject:
        raise CLIError("--crl: CRL was not issued by the certificate's issuer")
    key = issuer.public_key()
    try:
        if isinstance(key, Ed25519PublicKey):
            key.verify(lst.signature, lst.tbs_certlist_bytes)
        elif not lst.is_signature_valid(key):  # type: ignore[arg-type]
            raise InvalidSignature
    except InvalidSignature:
        raise CLIError("--crl: CRL signature does not verify under the issuer key") from None
    if lst.next_update_utc is None:
        raise _fail("CRL expired", "the CRL has no nextUpdate, so it is never current")
    if at > lst.next_update_utc:
        raise _fail("CRL expired", f"nextUpdate {lst.next_update_utc.isoformat()} is before {at.isoformat()}")
    if at < lst.last_update_utc:
        raise _fail("CRL not yet valid", f"thisUpdate {lst.last_update_utc.isoformat()} is after {at.isoformat()}")
    entry = lst.get_revoked_certificate_by_serial_number(leaf.serial_number)
    if entry is not None:
        try:
            reason = entry.extensions.get_extension_for_class(x509.CRLReason).value.reason.value
        except x509.ExtensionNotFound:
            reason = "unspecified"
        raise _fail(
            "revoked", f"serial {leaf.serial_number:x} revoked {entry.revocation_date_utc.isoformat()} ({reason})"
        )


def _cluster(path: str) -> config.ClusterConfig:
    try:
        data: Any = json.loads(Path(path).read_text())
        keys = data["cluster"] if isinstance(data, dict) else data
        return config.ClusterConfig(tuple(bytes.fromhex(k) for k in keys))
    except (KeyError, ValueError, TypeError, json.JSONDecodeError) as exc:
        raise CLIError(f"--cluster: {path}: expected a JSON list of replica public keys ({exc})") from None


def check_consensus_proof(cert: x509.Certificate, proof_path: Path, cluster: config.ClusterConfig) -> int:
    """The finalize command carrying exactly this signature committed; returns its sequence number."""
    if not proof_path.is_file():
        raise _fail("missing consensus proof", f"no {proof_path}")
    try:
        entry = decode(messages.CommittedEntry, proof_path.read_bytes())
        pp = certificates.check_committed(certificates.SignatureChecker(cluster, ED25519), entry)
    except (DecodeError, certificates.InvalidMessage) as exc:
        raise _fail("missing consensus proof", f"{proof_path} is not a valid commit certificate ({exc})") from None
    for req in pp.batch:
        try:
            cmd = decode(cacommands.CACommand, req.operation)
            if cmd.op == "finalize":
                items: tuple[cacommands.FinalizeCommand, ...] = (decode(cacommands.FinalizeCommand, cmd.body),)
            elif cmd.op == "finalize_batch":
                items = decode(cacommands.FinalizeBatchCommand, cmd.body).items
            else:
                continue
            if any(item.signature == cert.signature for item in items):
                return pp.seq
        except DecodeError:
            continue
    raise _fail("missing consensus proof", f"{proof_path} commits no finalize command for this certificate")


def cmd_verify(args: argparse.Namespace) -> int:
    leaf = _load_certs(args.cert, "CERT")[0]
    chain = _load_certs(args.chain, "--chain") if args.chain else []
    roots = _load_certs(args.root, "--root")
    if args.at:
        try:
            at = dt.datetime.fromisoformat(args.at)
        except ValueError:
            raise CLIError(f"--at: {args.at!r} is not an ISO 8601 time") from None
        at = at if at.tzinfo else at.replace(tzinfo=dt.UTC)
    else:
        at = dt.datetime.now(dt.UTC)
    try:
        path = validate.verify_chain(leaf, chain, roots, at, args.name)
    except validate.ChainError as exc:
        raise _fail(exc.reason.value, str(exc).split(": ", 1)[-1]) from None
    if args.crl:
        check_revocation(leaf, path[1] if len(path) > 1 else path[0], _load_crl(args.crl), at)
    seq = None
    if args.cluster:
        seq = check_consensus_proof(leaf, Path(args.proof or args.cert + ".proof"), _cluster(args.cluster))
    names = ", ".join(cax509.dns_names(leaf))
    print(
        f"OK: {names or leaf.subject.rfc4514_string()} serial {leaf.serial_number:x}, chain of {len(path)}"
        + (f", committed at seq {seq}" if seq is not None else "")
    )
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("cert", help="certificate tools", description=__doc__)
    sub = p.add_subparsers(dest="cert_command", required=True, metavar="COMMAND")
    s = sub.add_parser("verify", help="validate a certificate; errors name the failed check")
    s.add_argument("cert", metavar="CERT", help="certificate (PEM or DER)")
    s.add_argument("--chain", help="intermediate certificates (PEM bundle)")
    s.add_argument("--root", required=True, help="trusted root certificate(s)")
    s.add_argument("--name", help="DNS name the certificate must cover")
    s.add_argument("--at", help="validation time, ISO 8601 (default: now)")
    s.add_argument("--crl", help="CRL of the issuer to check revocation against")
    s.add_argument("--cluster", help="ca.json or JSON list of validator keys: requires a consensus proof")
    s.add_argument("--proof", help="consensus proof file (default CERT.proof)")
    s.set_defaults(func=cmd_verify)
