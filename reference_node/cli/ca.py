"""`trustchain-cli ca ...`: run the threshold CA in one process (all validators simulated).

For operators trying TrustChain and for tests: `init` runs the DKG among N simulated validators and
writes the root and intermediate certificates plus each validator's key shares encrypted at rest
(AES-256-GCM under the operator key, which lives outside the directory: see `ca_store`). `issue`,
`revoke`, `crl` and `ocsp` load any T shares that check out and sign through FROST; requests go through
the same replicated `CAApplication` the validators run, with the CLI's clock as consensus time and a
single local "account" that publishes its own dns-01 records. Each issued certificate comes with
`CERT.proof`: a commit certificate (2f+1 signed commits over the batch holding the finalize command)
from the simulated validators, which `cert verify` checks. The root has revocation too: `crl --issuer
root` lists revoked intermediates and the OCSP responder answers for the intermediate with the root key.

Every command that changes the directory holds its lock (`ca_store.locked`) from read to write. Leaf
serials carry 128 bits from os.urandom (through the request's audit label, which the serial hashes),
so two copies of one directory never issue the same serial.
"""

from __future__ import annotations

import argparse
import datetime as dt
import os
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from reference_node.cli import EXIT_IO, EXIT_NEGATIVE, EXIT_OK, EXIT_USAGE, CLIError, ca_ocsp
from reference_node.cli.ca_setup import cmd_init, cmd_migrate_key, parse_duration
from reference_node.cli.ca_store import MAX_LEAF_LIFETIME, CADir, locked, write_private
from trustchain.app.interface import ExecutionContext, Operation
from trustchain.ca import caa, crl, issuance, names, ownership
from trustchain.ca import commands as cacommands
from trustchain.ca import consensus_time as catime
from trustchain.ca import records as carecords
from trustchain.consensus import messages as pbft
from trustchain.encoding import DecodeError, encode
from trustchain.quorum import quorum_size

GROUPS = ("root", "issuing")
REASONS = {v.lower(): k for k, v in carecords.REVOCATION_REASONS.items()}
MAX_CRL_LIFETIME = dt.timedelta(days=10)  # Baseline Requirements 4.9.7


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


def _us(when: dt.datetime) -> int:
    return catime.datetime_us(when)


# --- consensus proof (simulated validators) ------------------------------------------------------


def committed_entry(ca: CADir, request: pbft.Request, seq: int, time_us: int) -> pbft.CommittedEntry:
    """What the validators would sign: a pre-prepare by the view-0 primary and a quorum of commits."""
    replicas = ca.consensus_signers()
    batch = (request,)
    pp = pbft.PrePrepare(0, seq, pbft.PrePrepare.compute_digest(time_us, batch), time_us, batch)
    pp_env = pbft.seal(replicas[0], 0, pp)
    commit = pbft.Commit(0, seq, pp.batch_digest)
    commits = tuple(pbft.seal(replicas[i], i, commit) for i in range(quorum_size(len(replicas))))
    return pbft.CommittedEntry(pp_env, commits)


def _execute(
    ca: CADir, app: issuance.CAApplication, payload: bytes, when: dt.datetime, expected: tuple[str, ...],
    rejected: int = EXIT_USAGE,
) -> tuple[cacommands.CAResult, pbft.Request, int]:
    """Execute one command as the operator. A rejection is a CLIError with exit code ``rejected``; a result
    that does not decode or whose status is not in ``expected`` is one with ``EXIT_IO``."""
    account = ca.operator_account()
    seq = ca.next_seq()
    request = pbft.Request.create(account, seq, payload)
    out = app.execute([Operation(account.public_key, seq, payload)], ExecutionContext(seq, _us(when)))[0]
    try:
        res = cacommands.decode_result(out)
    except DecodeError as exc:
        raise CLIError(f"result: malformed CA result ({exc})", EXIT_IO) from None
    if not res.ok:
        raise CLIError(res.detail, rejected)
    if res.status not in expected:
        raise CLIError(f"result: CA answered {res.status!r} ({res.detail}), expected {' or '.join(expected)}",
                       EXIT_IO)
    return res, request, seq


# --- commands -----------------------------------------------------------------------------------


def _load_csr(path: str) -> bytes:
    data = Path(path).read_bytes()
    try:
        csr = x509.load_pem_x509_csr(data) if data.lstrip().startswith(b"-----") else x509.load_der_x509_csr(data)
    except ValueError as exc:
        raise CLIError(f"--csr: {path} is not a PEM or DER certificate request ({exc})") from None
    return csr.public_bytes(serialization.Encoding.DER)


def _names(raw: list[str]) -> list[str]:
    """Normalized names, each checked before anything is generated or signed."""
    if not raw:
        raise CLIError("--name: at least one DNS name is required")
    out = []
    for name in raw:
        normalized = names.normalize(name)
        reason = names.check_dns_name(normalized)
        if reason:
            raise CLIError(f"--name: {name!r} {reason}")
        out.append(normalized)
    return out


def cmd_issue(args: argparse.Namespace) -> int:
    normalized = _names(list(args.name or []))
    lifetime = parse_duration(args.lifetime, "--lifetime", MAX_LEAF_LIFETIME)
    CADir.load(args.dir, args.operator_key)  # a bad directory fails before a key is generated
    key_out = None
    if args.csr:
        csr_der = _load_csr(args.csr)
    else:
        key = Ed25519PrivateKey.generate()
        key_out = Path(args.key_out or (str(args.out) + ".key"))
        csr_der = (
            x509.CertificateSigningRequestBuilder()
            .subject_name(x509.Name([]))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in normalized]), critical=False)
            .sign(key, None)
            .public_bytes(serialization.Encoding.DER)
        )
    with locked(Path(args.dir)):
        ca = CADir.load(args.dir, args.operator_key)
        dns = caa.StaticDNS({}, {})
        app = ca.app(dns)
        now = _now()
        challenge, _, _ = _execute(ca, app, cacommands.challenge_command(normalized), now,
                                   (cacommands.STATUS_CHALLENGE,))
        proofs = challenge.proofs()
        for base, key_auth in proofs.items():  # the operator controls the names: publish dns-01 records
            dns.txt_records[f"{ownership.CHALLENGE_LABEL}.{base}"] = [ownership.dns01_txt(key_auth)]  # type: ignore[index]
        # The serial hashes the request: 128 bits from os.urandom in its audit label make it unpredictable
        # and keep copies of this directory from issuing the same serial twice.
        req = cacommands.IssueRequest(
            csr_der, tuple(normalized), tuple(proofs[n.removeprefix("*.")] for n in normalized),
            f"trustchain-cli/{os.urandom(16).hex()}", "", int(lifetime.total_seconds()),
        )
        pending, _, _ = _execute(ca, app, cacommands.request_command(req), now, (cacommands.STATUS_PENDING,))
        signature = ca.signer("issuing")(app.pending[pending.pending_id].tbs)
        issued, request, seq = _execute(ca, app, cacommands.finalize_command(pending.pending_id, signature), now,
                                        (cacommands.STATUS_OK,), EXIT_IO)
        cert = x509.load_der_x509_certificate(issued.certificate_der)
        proof = committed_entry(ca, request, seq, _us(now))
        ca.save(app)
    if key_out is not None:
        write_private(key_out, key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                 serialization.NoEncryption()))
    Path(args.out).write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    Path(str(args.out) + ".proof").write_bytes(encode(proof))
    clamped = " (clamped to the intermediate's notAfter)" if cert.not_valid_after_utc - cert.not_valid_before_utc \
        < lifetime - dt.timedelta(seconds=1) else ""
    print(f"issued serial {cert.serial_number:x} for {', '.join(normalized)} -> {args.out}{clamped}")
    return EXIT_OK


def _serial(text: str) -> int:
    try:
        value = int(text.removeprefix("0x"), 16)
    except ValueError:
        raise CLIError(f"SERIAL: {text!r} is not a hexadecimal serial number") from None
    if value <= 0 or value.bit_length() > 160:
        raise CLIError("SERIAL: must be positive and at most 20 bytes")
    return value


def _reason(text: str) -> int:
    code = int(text) if text.isdigit() and len(text) < 4 else REASONS.get(text.lower())
    if code is None:
        code = carecords.CERTIFICATE_HOLD if text.lower() == "certificatehold" else -1
    problem = carecords.reason_problem(code)
    if problem:
        raise CLIError(f"--{problem}" + ("" if code == carecords.CERTIFICATE_HOLD else
                       f"; one of {', '.join(carecords.REVOCATION_REASONS.values())}"))
    return code


def _revoke_intermediate(ca: CADir, serial: int, reason: int) -> str:
    """The root's revocation of its intermediate, recorded in ca.json for the root CRL and OCSP."""
    entries = ca.config.setdefault("root_revocations", {})
    entry = entries.get(f"{serial:x}")
    if entry is not None:
        if reason != carecords.KEY_COMPROMISE or entry["reason"] == carecords.KEY_COMPROMISE:
            return f"intermediate {serial:x} was already revoked"
        entry["reason"] = reason
        return f"intermediate {serial:x}: reason now keyCompromise"
    entries[f"{serial:x}"] = {"revoked_us": _us(_now()), "reason": reason}
    return f"revoked intermediate {serial:x}"


def cmd_revoke(args: argparse.Namespace) -> int:
    serial, reason = _serial(args.serial), _reason(args.reason)
    with locked(Path(args.dir)):
        ca = CADir.load(args.dir, args.operator_key)
        app = ca.app()
        if serial == ca.certificate("issuing").serial_number:
            message = _revoke_intermediate(ca, serial, reason)
        else:
            res, _, _ = _execute(ca, app, cacommands.revoke_command(serial, reason), _now(),
                                 (cacommands.STATUS_OK, cacommands.STATUS_UNCHANGED), EXIT_NEGATIVE)
            if res.status == cacommands.STATUS_UNCHANGED:
                message = f"serial {res.serial.hex()} was already revoked"
            else:
                message = f"revoked serial {res.serial.hex()}" + (f" ({res.detail})" if res.detail else "")
        ca.save(app)
    print(message)
    return EXIT_OK


def _root_revocations(ca: CADir) -> list[crl.Revocation]:
    return [crl.Revocation(int(s, 16), catime.consensus_datetime(e["revoked_us"]), e["reason"])
            for s, e in ca.config.get("root_revocations", {}).items()]


def cmd_crl(args: argparse.Namespace) -> int:
    lifetime = parse_duration(args.lifetime, "--lifetime", MAX_CRL_LIFETIME)
    with locked(Path(args.dir)):
        ca = CADir.load(args.dir, args.operator_key)
        app = ca.app()
        counter = "crl_number" if args.issuer == "issuing" else "root_crl_number"
        number = int(ca.config.get(counter, 0)) + 1
        ca.config[counter] = number
        revocations = crl.revocations_from(app.revoked()) if args.issuer == "issuing" else _root_revocations(ca)
        lst = crl.build_crl(ca.profile(args.issuer), revocations, _now(), number, ca.signer(args.issuer), lifetime)
        ca.save(app)
    enc = serialization.Encoding.DER if args.der else serialization.Encoding.PEM
    Path(args.out).write_bytes(lst.public_bytes(enc))
    print(f"{args.issuer} CRL #{number} with {len(revocations)} revoked certificate(s) -> {args.out}")
    return EXIT_OK


def cmd_ocsp(args: argparse.Namespace) -> int:
    if args.serve is not None:
        if not 0 <= args.serve <= 65535:
            raise CLIError("--serve: a port is between 0 and 65535")
        ca_ocsp.serve_forever(ca_ocsp.make_server(args.dir, args.operator_key, args.serve))
        return EXIT_OK
    if not args.request or not args.out:
        raise CLIError("ocsp: give --request FILE and --out FILE, or --serve PORT")
    request = Path(args.request).read_bytes()
    if len(request) > ca_ocsp.MAX_REQUEST:
        raise CLIError(f"--request: {args.request} is larger than {ca_ocsp.MAX_REQUEST} bytes")
    resp = ca_ocsp.Responder(args.dir, args.operator_key).answer(request, _now())
    Path(args.out).write_bytes(resp)
    parsed = x509.ocsp.load_der_ocsp_response(resp)
    if parsed.response_status == x509.ocsp.OCSPResponseStatus.SUCCESSFUL:
        print(f"serial {parsed.serial_number:x}: {parsed.certificate_status.name.lower()}")
    else:
        print(f"error response: {parsed.response_status.name.lower()}")
    return EXIT_OK


def register(subparsers: Any) -> None:
    p = subparsers.add_parser("ca", help="threshold certificate authority (simulated validators)", description=__doc__)
    sub = p.add_subparsers(dest="ca_command", required=True, metavar="COMMAND")
    key_help = ("operator key file (default: $TRUSTCHAIN_OPERATOR_KEY, else the path recorded at init, else "
                "~/.config/trustchain/operator-keys/<key id>.key); never inside --dir")

    s = sub.add_parser("init", help="run the DKG and create root and intermediate certificates")
    s.add_argument("--validators", type=int, default=5, help="number of validators N (>= 4)")
    s.add_argument("--threshold", type=int, default=3, help="signers needed T")
    s.add_argument("--dir", required=True, help="directory for certificates and encrypted shares")
    s.add_argument("--operator-key", help=key_help + "; an existing file is reused, never overwritten")
    s.add_argument("--ca-domain", default="trustchain.example", help="CA domain name checked in CAA records")
    s.add_argument("--base-url", default="http://pki.trustchain.example", help="base of CRL/OCSP/issuer URLs")
    s.add_argument("--root-name", default="TrustChain Root R1", help="root common name (1..64 characters)")
    s.add_argument("--issuing-name", default="TrustChain Issuing E1", help="intermediate common name")
    s.add_argument("--force", action="store_true", help="replace an existing CA directory")
    s.set_defaults(func=cmd_init)

    s = sub.add_parser("migrate-key", help="move an old layout's operator.key out of the CA directory")
    s.add_argument("--dir", required=True)
    s.add_argument("--operator-key", help="where to put it (default ~/.config/trustchain/operator-keys/)")
    s.set_defaults(func=cmd_migrate_key)

    s = sub.add_parser("issue", help="issue a certificate through FROST (T shares from --dir)")
    s.add_argument("--dir", required=True)
    s.add_argument("--operator-key", help=key_help)
    s.add_argument("--csr", help="PEM or DER CSR; without it an Ed25519 key is generated")
    s.add_argument("--key-out", help="where to write the generated key (default OUT.key)")
    s.add_argument("--name", action="append", help="DNS name, A-label form (repeatable)")
    s.add_argument("--lifetime", default="24h", help="validity, e.g. 3600, 90m, 24h, 7d (default 24h, max 398d)")
    s.add_argument("--out", required=True, help="certificate PEM; the consensus proof goes to OUT.proof")
    s.set_defaults(func=cmd_issue)

    s = sub.add_parser("revoke", help="revoke a certificate (or the intermediate) by serial number")
    s.add_argument("serial", metavar="SERIAL", help="hexadecimal serial number")
    s.add_argument("--reason", default="unspecified",
                   help="CRLReason name or code (e.g. keyCompromise, 1); keyCompromise may replace an earlier one")
    s.add_argument("--dir", required=True)
    s.add_argument("--operator-key", help=key_help)
    s.set_defaults(func=cmd_revoke)

    s = sub.add_parser("crl", help="write a CRL signed through FROST")
    s.add_argument("--dir", required=True)
    s.add_argument("--operator-key", help=key_help)
    s.add_argument("--issuer", choices=GROUPS[::-1], default="issuing",
                   help="whose CRL: the intermediate's (default) or the root's (root.crl, lists revoked intermediates)")
    s.add_argument("--out", required=True)
    s.add_argument("--lifetime", default="24h", help="nextUpdate - thisUpdate (default 24h, max 10d)")
    s.add_argument("--der", action="store_true", help="write DER instead of PEM")
    s.set_defaults(func=cmd_crl)

    s = sub.add_parser("ocsp", help="answer an OCSP request file, or serve OCSP on 127.0.0.1")
    s.add_argument("--dir", required=True)
    s.add_argument("--operator-key", help=key_help)
    s.add_argument("--request", help="DER OCSP request file")
    s.add_argument("--out", help="DER OCSP response file")
    s.add_argument("--serve", type=int, metavar="PORT", help="serve OCSP (POST, and GET per RFC 6960 A.1) on "
                   "127.0.0.1:PORT, re-reading the directory when it changes")
    s.set_defaults(func=cmd_ocsp)
